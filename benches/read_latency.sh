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

node_pid=
trap 'kill $node_pid 2>/dev/null || true' EXIT
start_node() {
  ! curl -s "$URL/space" >/dev/null || { echo "port $PORT is taken: set PORT" >&2; exit 1; }
  "$BIN" $(no_network "$BIN") --data-dir "$WORK/lat-data" --api-port "$PORT" 2>"$WORK/lat-node.log" & node_pid=$!
  for _ in $(seq 100); do
    kill -0 "$node_pid" 2>/dev/null || { echo "node exited (port $PORT taken?), see its log" >&2; exit 1; }
    curl -sf "$URL/space" >/dev/null && return; sleep 0.05
  done
  echo "node did not start" >&2; exit 1
}
stop_node() { kill -INT "$node_pid"; wait "$node_pid" || true; }

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
  rm -rf "$WORK/lat-data"; sync; start_node
  cid=$(curl -sf -X POST -T "$WORK/256k" "$URL/data")
  probe idle sleep "$IDLE_S"
  s=$(date +%s.%N)
  probe busy curl -sf -X POST -T "$WORK/1g" "$URL/data"
  echo "run $run: upload took $(echo "$(date +%s.%N) - $s" | bc) s" >&2
  stop_node
done
rm -rf "$WORK/lat-data"

python3 "$PROBE" table "$RESULTS" "$RUNS"
