#!/usr/bin/env bash
# End-to-end throughput of the release build, as ratios against baselines measured in the same
# run on the same files (these machines are shared and noisy: compare ratios, not MB/s).
#
#   benches/throughput.sh            # 1 GiB upload/download, actor API, 4 GiB RSS
#   FULL=1 benches/throughput.sh     # also: upload speed with 10 GiB already stored
#
# Needs curl and openssl; WORK (default /tmp/codex-bench) needs ~6 GiB free (~17 GiB with FULL=1).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/codex-bench}
PORT=${PORT:-18080}
RUNS=${RUNS:-3}
mkdir -p "$WORK"
cargo build --release --quiet
cargo build --release --quiet -p codex-actors --example embed
BIN=target/release/codex-node
EMBED=target/release/examples/embed
URL=http://127.0.0.1:$PORT/api/codex/v1

# Incompressible, distinct content without waiting on /dev/urandom.
gen() { { openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 -in /dev/zero 2>/dev/null || true; } | head -c "$2"; }
[ -f "$WORK/1g" ] || gen one $((1 << 30)) > "$WORK/1g"
[ -f "$WORK/4g" ] || gen four $((4 << 30)) > "$WORK/4g"

now() { date +%s.%N; }
best() { sort -g | head -1; }
node_pid=
start_node() { # start_node DATA_DIR
  "$BIN" --data-dir "$1" --api-port "$PORT" 2>"$WORK/node.log" & node_pid=$!
  for _ in $(seq 100); do curl -sf "$URL/space" >/dev/null && return; sleep 0.05; done
  echo "node did not start" >&2; exit 1
}
stop_node() { kill -INT "$node_pid"; wait "$node_pid" || true; }
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$node_pid/stat"; } # user + system seconds so far
upload() { curl -sf -X POST -T "$1" "$URL/data"; }
trap 'kill $node_pid 2>/dev/null || true' EXIT

# Baselines: hashing and a synced file copy of the same file.
openssl_s=$(for _ in $(seq $RUNS); do s=$(now); openssl dgst -sha256 "$WORK/1g" >/dev/null; e=$(now); echo "$e - $s" | bc; done | best)
copy_s=$(for _ in $(seq $RUNS); do s=$(now); dd if="$WORK/1g" of="$WORK/copy" bs=1M conv=fdatasync status=none; e=$(now); rm -f "$WORK/copy"; echo "$e - $s" | bc; done | best)

# HTTP upload and download of 1 GiB, fresh data directory per run.
up_s=(); down_s=()
for _ in $(seq $RUNS); do
  rm -rf "$WORK/data"; sync; start_node "$WORK/data"
  s=$(now); cid=$(upload "$WORK/1g"); e=$(now); up_s+=("$(echo "$e - $s" | bc)")
  s=$(now); curl -sf "$URL/data/$cid" -o /dev/null; e=$(now); down_s+=("$(echo "$e - $s" | bc)")
  stop_node
done
up=$(printf '%s\n' "${up_s[@]}" | best); down=$(printf '%s\n' "${down_s[@]}" | best)

# The same upload through the actor message API (no HTTP).
embed_s=$(for _ in $(seq $RUNS); do rm -rf "$WORK/data"; "$EMBED" "$WORK/1g" "$WORK/data" 2>&1 >/dev/null | sed -n 's/^stored .* in \([0-9.]*\) s.*/\1/p'; done | best)

# Peak RSS while uploading 1 GiB and 4 GiB: must not grow with the file.
rss() { rm -rf "$WORK/data"; start_node "$WORK/data"; upload "$1" >/dev/null; grep VmHWM /proc/$node_pid/status | awk '{print $2}'; stop_node; }
rss1=$(rss "$WORK/1g"); rss4=$(rss "$WORK/4g")

full=
# The virtual disk slows down under sustained writes (burst credits), so each 4 GiB upload is
# compared with a synced 4 GiB dd copy measured just before it.
dd4() { s=$(now); dd if="$WORK/4g" of="$WORK/copy" bs=1M conv=fdatasync status=none; e=$(now); rm -f "$WORK/copy"; sync; echo "$e - $s" | bc; }
if [ "${FULL:-0}" = 1 ]; then
  rm -rf "$WORK/data"; start_node "$WORK/data"
  for i in $(seq 10); do gen "fill$i" $((1 << 30)) > "$WORK/fill"; upload "$WORK/fill" >/dev/null; done
  rm -f "$WORK/fill"; sync; sleep 2
  dd_full=$(dd4)
  c=$(cpu); s=$(now); upload "$WORK/4g" >/dev/null; e=$(now); full=$(echo "$e - $s" | bc); cpu_full=$(echo "$(cpu) - $c" | bc)
  stop_node
  rm -rf "$WORK/data"; sync; sleep 2
  dd_empty=$(dd4)
  start_node "$WORK/data"
  c=$(cpu); s=$(now); upload "$WORK/4g" >/dev/null; e=$(now); empty=$(echo "$e - $s" | bc); cpu_empty=$(echo "$(cpu) - $c" | bc)
  stop_node
fi
rm -rf "$WORK/data"

gbps() { echo "scale=3; 1.073741824 / $1" | bc; }
ratio() { echo "scale=2; $1 / $2" | bc; }
echo "| measure | seconds (1 GiB) | GB/s | ratio |"
echo "|---|---|---|---|"
echo "| openssl dgst -sha256 (baseline) | $openssl_s | $(gbps "$openssl_s") | 1.00 |"
echo "| dd copy with fdatasync (baseline) | $copy_s | $(gbps "$copy_s") | $(ratio "$openssl_s" "$copy_s") × openssl |"
echo "| HTTP upload, curl -T | $up | $(gbps "$up") | $(ratio "$openssl_s" "$up") × openssl, $(ratio "$copy_s" "$up") × copy |"
echo "| actor API upload (examples/embed) | $embed_s | $(gbps "$embed_s") | $(ratio "$openssl_s" "$embed_s") × openssl |"
echo "| HTTP download (verified blocks) | $down | $(gbps "$down") | $(ratio "$up" "$down") × upload |"
echo
echo "Peak RSS of the node: 1 GiB upload ${rss1} kB, 4 GiB upload ${rss4} kB"
if [ -n "$full" ]; then
  echo "4 GiB upload, empty store: $empty s against a 4 GiB synced dd of $dd_empty s ($(ratio "$dd_empty" "$empty") × dd), node CPU $cpu_empty s"
  echo "4 GiB upload, 10 GiB already stored: $full s against a 4 GiB synced dd of $dd_full s ($(ratio "$dd_full" "$full") × dd), node CPU $cpu_full s"
fi
