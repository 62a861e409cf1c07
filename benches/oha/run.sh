#!/usr/bin/env bash
# Load tests with oha against a release node on a temporary data directory.
# Writes a markdown table to benches/oha/results.md (and prints it).
#
#   benches/oha/run.sh               # 20 s per scenario
#   DURATION=5s benches/oha/run.sh   # quicker
#
# Needs oha (`cargo install oha --locked`, about 6 minutes on 2 cores) and python3.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
cd "$(dirname "$0")/../.."
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked" >&2; exit 1; }
DURATION=${DURATION:-20s}
PORT=${PORT:-18081}
WORK=$(mktemp -d)
API=http://127.0.0.1:$PORT/api/codex/v1
cargo build --release --quiet
target/release/codex-node $(no_network target/release/codex-node) --data-dir "$WORK/data" --api-port "$PORT" 2>"$WORK/node.log" & node=$!
trap 'kill $node 2>/dev/null; wait $node 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "$API/space" >/dev/null && break; sleep 0.05; done

head -c 65536 /dev/urandom > "$WORK/64k"
head -c $((1 << 20)) /dev/urandom > "$WORK/1m"
head -c $((16 << 20)) /dev/urandom > "$WORK/16m"
small=$(curl -sf -X POST -T "$WORK/64k" "$API/data")
large=$(curl -sf -X POST -T "$WORK/16m" "$API/data")

row() { # row NAME CONCURRENCY OHA-ARGS...
  local name=$1 c=$2; shift 2
  oha --no-tui --output-format json -z "$DURATION" -c "$c" "$@" > "$WORK/out.json"
  python3 - "$WORK/out.json" "$name" "$c" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); s = d["summary"]; p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
# Requests still in flight when the duration ends are cut by oha itself: not errors.
cut = lambda k: "deadline" in k
errors = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(v for k, v in d.get("errorDistribution", {}).items() if not cut(k))
mbs = s.get("sizePerSec", 0) / 1e6
print(f"| {sys.argv[2]} | {sys.argv[3]} | {s['requestsPerSec']:.0f} | {p['p50']*1000:.1f} | {p['p99']*1000:.1f} | {mbs:.0f} | {errors} |")
PY
}

{
  echo "| scenario | connections | requests/s | p50 ms | p99 ms | response MB/s | errors |"
  echo "|---|---|---|---|---|---|---|"
  for c in 1 16 64; do
    row "POST 64 KiB (same body: deduplicated after the first)" "$c" -m POST -D "$WORK/64k" -H "Content-Type: application/octet-stream" "$API/data"
  done
  row "POST 1 MiB" 16 -m POST -D "$WORK/1m" -H "Content-Type: application/octet-stream" "$API/data"
  for c in 1 16 64; do
    row "GET 64 KiB dataset" "$c" "$API/data/$small"
  done
  row "GET 16 MiB dataset" 4 "$API/data/$large"
  row "GET 16 MiB range (1 MiB in the middle)" 16 -H "Range: bytes=8388608-9437183" "$API/data/$large"
} | tee benches/oha/results.md
