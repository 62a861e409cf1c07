#!/usr/bin/env bash
# Upload speed of several builds, interleaved, as ratios to openssl measured in the same round.
# Each build is a directory holding `codex-node` and `embed` (copies of target/release/…,
# kept from the commits being compared). One round: for each build, a 1 GiB HTTP upload and an
# actor-API upload (fresh data directory each), each right after its own openssl dgst -sha256
# of the same file. Prints, per build, the median ratio over the rounds with its range, and
# the node's CPU seconds per HTTP upload (the steadiest figure on a shared machine).
#
#   benches/compare.sh /tmp/bins/before /tmp/bins/after         # ROUNDS=5 by default
#
# Used for the "what each change bought" table in benches/README.md.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/codex-bench}
PORT=${PORT:-18181}
ROUNDS=${ROUNDS:-5}
URL=http://127.0.0.1:$PORT/api/codex/v1
mkdir -p "$WORK"
[ -f "$WORK/1g" ] || gen one $((1 << 30)) > "$WORK/1g"
cat "$WORK/1g" > /dev/null # in the page cache, so no run pays for reading it from disk

trap 'kill $node_pid 2>/dev/null || true' EXIT

: > "$WORK/cmp.txt"
for round in $(seq "$ROUNDS"); do
  for build in "$@"; do
    rm -rf "$WORK/cmp-data"; sync; start_node "$build/codex-node" "$WORK/cmp-data" "$WORK/cmp-node.log"
    o=$(openssl_s "$WORK/1g")
    c=$(cpu); s=$(now); curl -sf -X POST -T "$WORK/1g" "$URL/data" >/dev/null; e=$(now)
    up=$(echo "$e - $s" | bc); node_cpu=$(echo "$(cpu) - $c" | bc)
    stop_node
    rm -rf "$WORK/cmp-data"; sync
    o2=$(openssl_s "$WORK/1g")
    api=$("$build/embed" "$WORK/1g" "$WORK/cmp-data" 2>&1 >/dev/null | sed -n 's/^stored .* in \([0-9.]*\) s.*/\1/p')
    echo "$build $o $up $o2 $api $node_cpu" >> "$WORK/cmp.txt"
    echo "round $round $build: openssl $o s, HTTP $up s (node CPU $node_cpu s); openssl $o2 s, actor API $api s" >&2
  done
done
rm -rf "$WORK/cmp-data"

python3 - "$WORK/cmp.txt" "$@" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print("| build | HTTP upload × openssl | actor API × openssl | node CPU s per HTTP upload |")
print("|---|---|---|---|")
for build in sys.argv[2:]:
    r = [[float(x) for x in row[1:]] for row in rows if row[0] == build]
    http = sorted(o / up for o, up, o2, api, c in r)
    api = sorted(o2 / api for o, up, o2, api, c in r)
    cpu = sorted(c for *_, c in r)
    fmt = lambda xs: f"{statistics.median(xs):.2f} ({xs[0]:.2f}–{xs[-1]:.2f})"
    print(f"| {build} | {fmt(http)} | {fmt(api)} | {fmt(cpu)} |")
print(f"\nmedian (range) over {len(rows) // max(1, len(sys.argv) - 2)} rounds")
PY
