#!/usr/bin/env bash
# Local download speed of several builds, interleaved, as ratios to openssl measured in the
# same round. Each build is a directory holding `codex-node`. One round: for each build, a
# fresh node stores the same 1 GiB file, then it is downloaded over HTTP right after an
# `openssl dgst -sha256` of that file. The node reads block bytes around the page cache
# (O_DIRECT), so every download reads the disk. Prints, per build, the median ratio with its
# range, and the node's CPU seconds per download.
#
#   benches/compare_download.sh /tmp/bins/before /tmp/bins/after    # ROUNDS=5 by default
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/codex-bench}
PORT=${PORT:-18182}
ROUNDS=${ROUNDS:-5}
URL=http://127.0.0.1:$PORT/api/codex/v1
mkdir -p "$WORK"
[ -f "$WORK/1g" ] || gen one $((1 << 30)) > "$WORK/1g"
cat "$WORK/1g" > /dev/null

trap 'kill $node_pid 2>/dev/null || true' EXIT

: > "$WORK/down.txt"
for round in $(seq "$ROUNDS"); do
  for build in "$@"; do
    rm -rf "$WORK/down-data"; sync
    start_node "$build/codex-node" "$WORK/down-data" "$WORK/down-node.log"
    cid=$(curl -sf -X POST -T "$WORK/1g" "$URL/data")
    o=$(openssl_s "$WORK/1g")
    c=$(cpu); s=$(now); curl -sf "$URL/data/$cid" -o /dev/null; e=$(now)
    down=$(echo "$e - $s" | bc); node_cpu=$(echo "$(cpu) - $c" | bc)
    stop_node
    echo "$build $o $down $node_cpu" >> "$WORK/down.txt"
    echo "round $round $build: openssl $o s, download $down s (node CPU $node_cpu s)" >&2
  done
done
rm -rf "$WORK/down-data"

python3 - "$WORK/down.txt" "$@" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print("| build | HTTP download × openssl | node CPU s per download |")
print("|---|---|---|")
for build in sys.argv[2:]:
    r = [[float(x) for x in row[1:]] for row in rows if row[0] == build]
    ratio = sorted(o / d for o, d, c in r)
    cpu = sorted(c for *_, c in r)
    fmt = lambda xs: f"{statistics.median(xs):.2f} ({xs[0]:.2f}–{xs[-1]:.2f})"
    print(f"| {build} | {fmt(ratio)} | {fmt(cpu)} |")
print(f"\nmedian (range) over {len(rows) // max(1, len(sys.argv) - 2)} rounds")
PY
