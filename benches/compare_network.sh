#!/usr/bin/env bash
# Node-to-node speed of several builds, interleaved, as ratios to openssl measured in the same
# round. Each build is a directory holding `codex-node` (a copy of target/release/codex-node
# kept from one commit). One round: for each build, a fresh seeder stores the same 1 GiB file,
# `openssl dgst -sha256` hashes it, then a fresh downloader of the same build connects and
# streams it (`GET /data/{cid}/network/stream`, to /dev/null). Prints, per build, the median
# ratio with its range, both nodes' CPU seconds for the transfer (utime + stime from
# /proc/PID/stat, the figure the machine's noise moves least), their peak RSS, and how busy the
# machine's cores were during the transfer (the nodes' CPU seconds miss the kernel's work that
# no process is charged for).
#
# MODE=store fetches into B's store instead (`POST /data/{cid}/network`, then asks
# `/network/progress` every 20 ms, over one connection, until complete: `wait_complete` in
# common.sh, whose CPU is a fifth of a `curl` per poll's): node to node without a client reading the
# stream, the comparison iroh-blobs' figure (data fetched and synced) asks for.
#
# TRANSPORT=quic connects the nodes over QUIC (`/ip4/127.0.0.1/udp/PORT/quic-v1`, for builds
# that have it) instead of TCP; a build given as DIR:tcp or DIR:quic uses that transport whatever
# TRANSPORT says, so one build can be measured both ways, interleaved, in one run.
#
#   benches/compare_network.sh /tmp/bins/before /tmp/bins/after   # ROUNDS=5 by default
#   MODE=store benches/compare_network.sh /tmp/bins/new:tcp /tmp/bins/new:quic
#
# PERF=DIR also records each node with `perf record -F 2999 -g --call-graph dwarf,16384` from
# just before the transfer to its end, into DIR/ROUND-BUILDNAME-TRANSPORT-{seeder,downloader}.data
# (fold with `perf script -i FILE | inferno-collapse-perf`). The CPU figures of such a round
# include perf's own cost: use them for profiles, not for the table.
#
# Ports: API BASE+1/BASE+2, p2p BASE+101/BASE+102 (TCP, or UDP for QUIC), DHT BASE+201/BASE+202
# (UDP) (BASE=19700).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/codex-netbench}
ROUNDS=${ROUNDS:-5}
MODE=${MODE:-stream}
TRANSPORT=${TRANSPORT:-tcp}
BASE=${BASE:-19700}
mkdir -p "$WORK"
[ -f "$WORK/1g" ] || gen one $((1 << 30)) > "$WORK/1g"
cat "$WORK/1g" > /dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

api() { echo "http://127.0.0.1:$((BASE + $1))/api/codex/v1"; }
# p2p_addr TRANSPORT N: node N's listen address.
p2p_addr() {
  case $1 in
    tcp) echo "/ip4/127.0.0.1/tcp/$((BASE + 100 + $2))" ;;
    quic) echo "/ip4/127.0.0.1/udp/$((BASE + 100 + $2))/quic-v1" ;;
    *) echo "unknown transport $1 (tcp or quic)" >&2; exit 1 ;;
  esac
}
# start BIN NAME N TRANSPORT: a node on 127.0.0.1 only; its pid in pid_NAME.
start() {
  local bin=$1 name=$2 n=$3 transport=$4
  rm -rf "${WORK:?}/cmpnet-$name"
  ! curl -s "$(api "$n")/space" >/dev/null || { echo "port $((BASE + n)) is taken: set BASE" >&2; exit 1; }
  "$bin" --data-dir "$WORK/cmpnet-$name" --api-port $((BASE + n)) \
    --listen-addrs "$(p2p_addr "$transport" "$n")" --disc-port $((BASE + 200 + n)) \
    2>"$WORK/cmpnet-$name.log" &
  pids+=($!)
  eval "pid_$name=$!"
  for _ in $(seq 200); do curl -sf "$(api "$n")/space" >/dev/null && return; sleep 0.05; done
  echo "$name did not start, see $WORK/cmpnet-$name.log" >&2; exit 1
}
stop_all() { cleanup; wait 2>/dev/null || true; pids=(); }
cpu_of() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
peer_id() { curl -sf "$1/peerid" | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])'; }
# The machine's CPU ticks so far, busy and in all (/proc/stat's first line; idle and iowait
# count as not busy): what the nodes' own CPU seconds miss, such as the kernel's network and
# disk work charged to no process, shows in how busy the cores were.
ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit}' /proc/stat; }

: > "$WORK/cmpnet.txt"
for round in $(seq "$ROUNDS"); do
  for build in "$@"; do
    dir=${build%:*}; transport=$TRANSPORT
    [ "$dir" = "$build" ] || transport=${build##*:}
    start "$dir/codex-node" a 1 "$transport"; start "$dir/codex-node" b 2 "$transport"
    cid=$(curl -sf -X POST -T "$WORK/1g" "$(api 1)/data")
    curl -sf "$(api 2)/connect/$(peer_id "$(api 1)")?addrs=$(p2p_addr "$transport" 1)" >/dev/null
    o=$(openssl_s "$WORK/1g")
    ca=$(cpu_of "$pid_a"); cb=$(cpu_of "$pid_b")
    perfs=()
    if [ -n "${PERF:-}" ]; then
      mkdir -p "$PERF"
      tag="$round-$(basename "$dir")-$transport"
      for side in "seeder $pid_a" "downloader $pid_b"; do
        read -r role pid <<<"$side"
        perf record -q -F 2999 -g --call-graph dwarf,16384 -p "$pid" -o "$PERF/$tag-$role.data" 2>/dev/null &
        perfs+=($!)
      done
      # perf needs a moment to attach; without it the transfer's first blocks go unrecorded.
      sleep 1
    fi
    read -r busy0 all0 < <(ticks)
    s=$(now)
    if [ "$MODE" = store ]; then
      curl -sf -X POST "$(api 2)/data/$cid/network" >/dev/null
      wait_complete "$(api 2)/data/$cid/network/progress"
    else
      curl -sf "$(api 2)/data/$cid/network/stream" -o /dev/null
    fi
    e=$(now)
    read -r busy1 all1 < <(ticks)
    for p in "${perfs[@]}"; do kill -INT "$p"; wait "$p" || true; done
    t=$(echo "$e - $s" | bc)
    da=$(echo "$(cpu_of "$pid_a") - $ca" | bc); db=$(echo "$(cpu_of "$pid_b") - $cb" | bc)
    ra=$(hwm "$pid_a"); rb=$(hwm "$pid_b")
    stop_all
    busy=$(echo "scale=3; 100 * ($busy1 - $busy0) / ($all1 - $all0)" | bc)
    echo "$build $o $t $da $db $ra $rb $busy" >> "$WORK/cmpnet.txt"
    echo "round $round $build: openssl $o s, A->B $t s, CPU seeder $da s downloader $db s, VmHWM $ra / $rb kB, cores busy $busy %" >&2
  done
done
rm -rf "$WORK"/cmpnet-a "$WORK"/cmpnet-b

python3 - "$WORK/cmpnet.txt" "$@" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print("| build | A→B 1 GiB × openssl | seeder CPU s | downloader CPU s | peak RSS seeder / downloader MB | cores busy % |")
print("|---|---|---|---|---|---|")
for build in sys.argv[2:]:
    r = [[float(x) for x in row[1:]] for row in rows if row[0] == build]
    ratio = sorted(o / t for o, t, *_ in r)
    sa = sorted(x[2] for x in r)
    sb = sorted(x[3] for x in r)
    fmt = lambda xs: f"{statistics.median(xs):.2f} ({xs[0]:.2f}–{xs[-1]:.2f})"
    rss = f"{max(x[4] for x in r) / 1024:.0f} / {max(x[5] for x in r) / 1024:.0f}"
    busy = sorted(x[6] for x in r)
    busy = f"{statistics.median(busy):.0f} ({busy[0]:.0f}–{busy[-1]:.0f})"
    print(f"| {build} | {fmt(ratio)} | {fmt(sa)} | {fmt(sb)} | {rss} | {busy} |")
print(f"\nmedian (range) over {len(rows) // max(1, len(sys.argv) - 2)} rounds; peak RSS is the most over the rounds")
PY
