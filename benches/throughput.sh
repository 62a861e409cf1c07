#!/usr/bin/env bash
# End-to-end throughput of the release build, as ratios against baselines measured in the same
# run on the same files (these machines are shared and noisy: compare ratios, not MB/s).
#
#   benches/throughput.sh            # 1 GiB upload/download, actor API, RSS at 1 and 4 GiB
#   RUNS=5 RSS4=0 benches/throughput.sh   # more runs; skip the 4 GiB RSS upload
#   BIN=… EMBED=… benches/throughput.sh   # other builds (e.g. copies kept from an earlier commit)
#   FULL=1 benches/throughput.sh     # also: upload speed with 10 GiB already stored
#
# Needs curl, openssl and python3; WORK (default /tmp/codex-bench) needs ~3 GiB free, ~6 GiB
# with the 4 GiB RSS upload (streamed from a generator, so only the node stores it), ~17 GiB
# with FULL=1.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/codex-bench}
PORT=${PORT:-18180}
RUNS=${RUNS:-3}
mkdir -p "$WORK"
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  cargo build --release --quiet -p codex-actors --example embed
fi
BIN=${BIN:-target/release/codex-node}
EMBED=${EMBED:-target/release/examples/embed}
URL=http://127.0.0.1:$PORT/api/codex/v1

[ -f "$WORK/1g" ] || gen one $((1 << 30)) > "$WORK/1g"
cat "$WORK/1g" > /dev/null # in the page cache, so no run pays for reading it from disk
[ "${FULL:-0}" != 1 ] || [ -f "$WORK/4g" ] || gen four $((4 << 30)) > "$WORK/4g"

upload() { curl -sf -X POST -T "$1" "$URL/data"; }
trap 'kill $node_pid 2>/dev/null || true' EXIT
timed() { local s e; s=$(now); "$@" >/dev/null; e=$(now); echo "$e - $s" | bc; }

# Each run measures its own baselines (hashing and a synced copy of the same file) right
# before the node's figures, so every ratio compares things measured seconds apart; the table
# gives the median over the runs and the range.
: > "$WORK/runs.txt"
for run in $(seq "$RUNS"); do
  openssl_s=$(timed openssl dgst -sha256 "$WORK/1g")
  copy_s=$(timed dd if="$WORK/1g" of="$WORK/copy" bs=1M conv=fdatasync status=none); rm -f "$WORK/copy"
  rm -rf "$WORK/data"; sync; start_node "$BIN" "$WORK/data" "$WORK/node.log"
  c=$(cpu); s=$(now); cid=$(upload "$WORK/1g"); e=$(now); up_s=$(echo "$e - $s" | bc)
  up_cpu=$(echo "$(cpu) - $c" | bc)
  down_s=$(timed curl -sf "$URL/data/$cid" -o /dev/null)
  stop_node
  rm -rf "$WORK/data"; sync
  embed_s=$("$EMBED" "$WORK/1g" "$WORK/data" 2>&1 >/dev/null | sed -n 's/^stored .* in \([0-9.]*\) s.*/\1/p')
  echo "$openssl_s $copy_s $up_s $up_cpu $embed_s $down_s" >> "$WORK/runs.txt"
  echo "run $run: openssl $openssl_s s, dd $copy_s s, HTTP upload $up_s s (node CPU $up_cpu s), actor API $embed_s s, download $down_s s" >&2
done
rm -rf "$WORK/data"

# Peak RSS while uploading 1 GiB and 4 GiB: must not grow with the file.
rss() { rm -rf "$WORK/data"; start_node "$BIN" "$WORK/data" "$WORK/node.log"; "$@" >/dev/null; grep VmHWM /proc/$node_pid/status | awk '{print $2}'; stop_node; }
rss1=$(rss upload "$WORK/1g"); rss4="skipped (RSS4=0), no"
if [ "${RSS4:-1}" = 1 ]; then
  rss4=$(rss sh -c "$(declare -f gen); gen four $((4 << 30)) | curl -sf -X POST -T - '$URL/data'")
fi

full=
# The virtual disk slows down under sustained writes (burst credits), so each 4 GiB upload is
# compared with a synced 4 GiB dd copy measured just before it.
dd4() { s=$(now); dd if="$WORK/4g" of="$WORK/copy" bs=1M conv=fdatasync status=none; e=$(now); rm -f "$WORK/copy"; sync; echo "$e - $s" | bc; }
if [ "${FULL:-0}" = 1 ]; then
  rm -rf "$WORK/data"; start_node "$BIN" "$WORK/data" "$WORK/node.log"
  for i in $(seq 10); do gen "fill$i" $((1 << 30)) > "$WORK/fill"; upload "$WORK/fill" >/dev/null; done
  rm -f "$WORK/fill"; sync; sleep 2
  dd_full=$(dd4)
  c=$(cpu); s=$(now); upload "$WORK/4g" >/dev/null; e=$(now); full=$(echo "$e - $s" | bc); cpu_full=$(echo "$(cpu) - $c" | bc)
  stop_node
  rm -rf "$WORK/data"; sync; sleep 2
  dd_empty=$(dd4)
  start_node "$BIN" "$WORK/data" "$WORK/node.log"
  c=$(cpu); s=$(now); upload "$WORK/4g" >/dev/null; e=$(now); empty=$(echo "$e - $s" | bc); cpu_empty=$(echo "$(cpu) - $c" | bc)
  stop_node
fi
rm -rf "$WORK/data"

python3 - "$WORK/runs.txt" <<'PY'
import statistics, sys
runs = [[float(x) for x in line.split()] for line in open(sys.argv[1])]
col = lambda i: [r[i] for r in runs]
med = lambda xs: statistics.median(xs)
def row(name, i, base=None, base_name="openssl", invert=False):
    secs = med(col(i))
    text = f"| {name} | {secs:.3f} | {1.073741824 / secs:.2f} |"
    if base is None:
        return text + " 1.00 |"
    ratios = sorted(r[base] / r[i] for r in runs)
    return text + f" **{med(ratios):.2f} × {base_name}** ({ratios[0]:.2f}–{ratios[-1]:.2f}) |"
print(f"| measure | seconds (1 GiB, median of {len(runs)}) | GB/s | ratio, median (range over runs) |")
print("|---|---|---|---|")
print(row("openssl dgst -sha256 (baseline)", 0))
print(row("dd copy with fdatasync (baseline)", 1, 0))
print(row("HTTP upload, curl -X POST -T", 2, 0))
print(row("actor API upload (examples/embed)", 4, 0))
print(row("HTTP download (verified blocks)", 5, 2, "upload"))
print(f"\nNode CPU per HTTP upload: median {med(col(3)):.2f} s (range {min(col(3)):.2f}–{max(col(3)):.2f})")
PY
echo "Peak RSS of the node: 1 GiB upload ${rss1} kB, 4 GiB upload ${rss4} kB"
if [ -n "$full" ]; then
  ratio() { echo "scale=2; $1 / $2" | bc; }
  echo "4 GiB upload, empty store: $empty s against a 4 GiB synced dd of $dd_empty s ($(ratio "$dd_empty" "$empty") × dd), node CPU $cpu_empty s"
  echo "4 GiB upload, 10 GiB already stored: $full s against a 4 GiB synced dd of $dd_full s ($(ratio "$dd_full" "$full") × dd), node CPU $cpu_full s"
fi
