#!/usr/bin/env bash
# Long and narrow links (issue 18): how full a node keeps a link with a long round trip, as
# ratios measured in the same run. Every byte between the two nodes goes through a forwarder
# (`benches/slowlink.rs`, the same code as tests/common/slowlink.rs) that paces to the link's
# rate and holds each byte for half the round trip, both ways; the kernel has no netem.
#
#   benches/slowlink.sh                         # (a) 100 Mbit/s, 100 ms and (b) 1 Gbit/s, 50 ms
#   RUNS=3 benches/slowlink.sh                  # medians of 3
#   CASES="20:100:64" benches/slowlink.sh       # other links: MBIT:RTT_MS:MiB, space-separated
#   CASES="0:0:1024" benches/slowlink.sh        # MBIT 0: no link, straight over loopback (MiB/s)
#   FIXED=1 benches/slowlink.sh                 # also the old fixed window (256 blocks) in the same run
#   BASE_BIN=/path/codex-node benches/slowlink.sh   # also another build, e.g. main before this change
#
# For each link it prints: raw TCP through the forwarder (its ratio to the link rate is the
# baseline), then a node-to-node fetch (`GET /data/{cid}/network/stream` on the downloader, to
# /dev/null, both release builds on 127.0.0.1) as a ratio to the link rate and to raw TCP, and
# the most blocks the downloader had wanted at once (its fetch window at work) and its peak RSS.
# Needs curl, python3, bc; WORK (default /tmp/codex-slowlink) needs twice the largest dataset.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/codex-slowlink}
RUNS=${RUNS:-1}
# MBIT:RTT_MS:MiB, each dataset at least 20 s at the link's rate.
CASES=${CASES:-"100:100:256 1000:50:2560"}
mkdir -p "$WORK"
if [ "${NO_BUILD:-0}" != 1 ]; then cargo build --release --quiet --bin codex-node; fi
BIN=${BIN:-target/release/codex-node}
LINK=${LINK:-$(cargo bench --quiet --bench slowlink --no-run 2>&1 | grep -o 'target/release/deps/slowlink-[0-9a-f]*' | head -1)}
[ -x "$LINK" ] || { echo "could not build the slowlink forwarder" >&2; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
stop_all() { cleanup; wait 2>/dev/null || true; pids=(); }

# start NAME N BIN [flags...]: a node (API port 19700+N, p2p port 19800+N, Codex DHT 19900+N).
start() {
  local name=$1 n=$2 bin=$3; shift 3
  rm -rf "$WORK/$name"
  "$bin" --data-dir "$WORK/$name" --api-port $((19700 + n)) \
    --listen-addrs "/ip4/127.0.0.1/tcp/$((19800 + n))" --disc-port $((19900 + n)) "$@" 2>"$WORK/$name.log" &
  pids+=($!)
  for _ in $(seq 200); do curl -sf "$(api "$n")/space" >/dev/null && return; sleep 0.05; done
  echo "$name did not start, see $WORK/$name.log" >&2; exit 1
}
api() { echo "http://127.0.0.1:$((19700 + $1))/api/codex/v1"; }
peer_id() { curl -sf "$1/peerid" | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])'; }
most_pending() { curl -sf "$1/debug/info" | python3 -c 'import sys,json; print(json.load(sys.stdin)["exchange"].get("mostPendingBlocks", "-"))'; }

# fetch MBIT RTT_MS FILE BIN [downloader flags...]: seconds of one node-to-node transfer over
# the link, and the downloader's most blocks wanted at once.
fetch() {
  local mbit=$1 rtt=$2 file=$3 bin=$4; shift 4
  start a 1 "$bin"; start b 2 "$bin" "$@"
  local cid; cid=$(curl -sf -X POST -T "$file" "$(api 1)/data")
  local port=19801 # MBIT 0: straight to A, no link (the loopback figure)
  if [ "$mbit" != 0 ]; then
    port=19850
    "$LINK" forward 127.0.0.1:$port 127.0.0.1:19801 "$mbit" "$rtt" >/dev/null & pids+=($!)
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  fi
  curl -sf "$(api 2)/connect/$(peer_id "$(api 1)")?addrs=/ip4/127.0.0.1/tcp/$port" >/dev/null
  local s e; s=$(now); curl -sf "$(api 2)/data/$cid/network/stream" -o /dev/null; e=$(now)
  echo "$(echo "$e - $s" | bc) $(most_pending "$(api 2)") $(awk '/VmHWM/ {print $2}' "/proc/${pids[1]}/status")"
  stop_all
}

rows=()
for case in $CASES; do
  IFS=: read -r mbit rtt mib <<<"$case"
  file="$WORK/$mib.m"
  [ -f "$file" ] || gen "slow$mib" $((mib << 20)) > "$file"
  cat "$file" >/dev/null
  bytes=$((mib << 20))
  rate=$(echo "$mbit * 1000000 / 8" | bc -l)
  raw=-
  [ "$mbit" = 0 ] || raw=$(for _ in $(seq "$RUNS"); do "$LINK" raw "$mbit" "$rtt" "$bytes" | cut -d' ' -f2; done | median)
  variants=("this build|$BIN|")
  [ "${FIXED:-0}" = 1 ] && variants+=("this build, fixed window of 256|$BIN|--fetch-window-min 256 --fetch-window-max 256")
  [ -n "${BASE_BIN:-}" ] && variants+=("BASE_BIN|$BASE_BIN|")
  # Runs interleaved, variant by variant, so that the machine's load moves them alike.
  rm -f "$WORK"/result.*
  for _ in $(seq "$RUNS"); do
    for i in "${!variants[@]}"; do
      IFS='|' read -r label bin flags <<<"${variants[$i]}"
      # shellcheck disable=SC2086 # flags split on purpose
      fetch "$mbit" "$rtt" "$file" "$bin" $flags >> "$WORK/result.$i"
      echo "$case | $label | $(tail -1 "$WORK/result.$i")" >> "$WORK/runs.log" # every run, for ranges
    done
  done
  for i in "${!variants[@]}"; do
    label=${variants[$i]%%|*}
    secs=$(cut -d' ' -f1 "$WORK/result.$i" | median)
    most=$(cut -d' ' -f2 "$WORK/result.$i" | sort -g | tail -1)
    rss=$(( $(cut -d' ' -f3 "$WORK/result.$i" | sort -g | tail -1) / 1024 ))
    secs=$(printf '%.2f' "$secs")
    if [ "$mbit" = 0 ]; then
      rows+=("| loopback, no link | $mib MiB | $label | - | $secs | $(echo "$mib / $secs" | bc) MiB/s | - | $most | $rss |")
      continue
    fi
    link_ratio=$(printf '%.3f' "$(echo "$bytes / $secs / $rate" | bc -l)")
    raw_ratio=$(printf '%.3f' "$(echo "$link_ratio / $raw" | bc -l)")
    rows+=("| $mbit Mbit/s, $rtt ms | $mib MiB | $label | $raw | $secs | **$link_ratio** | $raw_ratio | $most | $rss |")
  done
  rm -rf "$WORK"/a "$WORK"/b
done
echo "| link | dataset | node | raw TCP ÷ rate | fetch s (median of $RUNS) | fetch ÷ rate | fetch ÷ raw TCP | most blocks wanted at once | downloader peak RSS, MB |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
