#!/usr/bin/env bash
# GET latency while a 1 GiB upload runs, against the same GETs on an idle node (issue 10: reads
# must not wait behind a writer's fsync). Each run: fresh data directory, a 256 KiB dataset
# stored, the probe (benches/read_latency.py: the dataset's bytes, its /network/manifest and
# /space, in turn, 5 ms apart) runs for IDLE_S seconds on the idle node, then again during a
# 1 GiB `curl -T` upload. Prints p50/p99/max of the samples pooled over RUNS runs.
#
#   benches/read_latency.sh                                  # the current build
#   BIN=/tmp/before/target/release/codex-node benches/read_latency.sh   # another build
#
# Needs curl, openssl and python3; WORK (default /tmp/codex-bench) needs ~2.2 GiB free.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/codex-bench}
PORT=${PORT:-18182}
RUNS=${RUNS:-3}
IDLE_S=${IDLE_S:-5}
GAP_MS=${GAP_MS:-5}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/codex-node
fi
URL=http://127.0.0.1:$PORT/api/codex/v1
PROBE=benches/read_latency.py
mkdir -p "$WORK"

[ -f "$WORK/1g" ] || gen one $((1 << 30)) > "$WORK/1g"
gen small $((256 << 10)) > "$WORK/256k"

trap 'kill $node_pid 2>/dev/null || true' EXIT

# probe LABEL COMMAND...: runs the probe while COMMAND runs; appends its figures to $RESULTS.
probe() {
  local label=$1 stop="$WORK/lat-stop"; shift
  rm -f "$stop"
  python3 "$PROBE" probe "$URL" "$cid" "$stop" "$GAP_MS" | sed "s/^/$label $run /" >> "$RESULTS" & local p=$!
  sleep 0.2
  "$@" >/dev/null
  touch "$stop"
  wait "$p"
}

RESULTS="$WORK/lat-results.txt"
: > "$RESULTS"
for run in $(seq "$RUNS"); do
  rm -rf "$WORK/lat-data"; sync; start_node "$BIN" "$WORK/lat-data" "$WORK/lat-node.log"
  cid=$(curl -sf -X POST -T "$WORK/256k" "$URL/data")
  probe idle sleep "$IDLE_S"
  s=$(date +%s.%N)
  probe busy curl -sf -X POST -T "$WORK/1g" "$URL/data"
  echo "run $run: upload took $(echo "$(date +%s.%N) - $s" | bc) s" >&2
  stop_node
done
rm -rf "$WORK/lat-data"

python3 "$PROBE" table "$RESULTS" "$RUNS"
