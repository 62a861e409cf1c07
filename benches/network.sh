#!/usr/bin/env bash
# Node-to-node throughput on loopback (issues 11 and 12), as ratios against baselines measured in
# the same run: `openssl dgst -sha256` on the same file, and two live Codex nodes doing the same.
#
#   benches/network.sh                # 1 GiB A->B, Codex pair, 1 seeder -> 4 downloaders, swarm
#   BIG=1 benches/network.sh          # also a 4 GiB transfer (peak RSS of both nodes)
#   CODEX=0 benches/network.sh        # without the Codex baseline (it takes about a minute)
#
# Every transfer is `GET /data/{cid}/network/stream` on the downloader (what a user does), to
# /dev/null; each node runs the release build with a fresh data directory, on 127.0.0.1 only.
# Needs curl, openssl, python3; WORK (default /tmp/codex-netbench) needs ~12 GiB (~24 with BIG=1).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/codex-netbench}
RUNS=${RUNS:-3}
CODEX=${CODEX:-1}
CODEX_RUN=${CODEX_RUN:-$(cd .. && pwd)/shared/codex/run-codex}
mkdir -p "$WORK"
cargo build --release --quiet
BIN=target/release/codex-node

[ -f "$WORK/1g" ] || gen one $((1 << 30)) > "$WORK/1g"
[ -f "$WORK/256m" ] || gen quarter $((256 << 20)) > "$WORK/256m"
if [ "${BIG:-0}" = 1 ] && [ ! -f "$WORK/4g" ]; then gen four $((4 << 30)) > "$WORK/4g"; fi

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start NAME N [extra flags...]: our node N (API port 19100+N, p2p port 19200+N, Codex DHT
# UDP port 19600+N).
start() {
  local name=$1 n=$2; shift 2
  rm -rf "$WORK/$name"
  "$BIN" --data-dir "$WORK/$name" --api-port $((19100 + n)) \
    --listen-addrs "/ip4/127.0.0.1/tcp/$((19200 + n))" --disc-port $((19600 + n)) "$@" 2>"$WORK/$name.log" &
  pids+=($!)
  eval "pid_$name=$!"
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$((19100 + n))/api/codex/v1/space" >/dev/null && return; sleep 0.05; done
  echo "$name did not start" >&2; exit 1
}
api() { echo "http://127.0.0.1:$((19100 + $1))/api/codex/v1"; }
peer_id() { curl -sf "$1/peerid" | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])'; }
stop_all() { cleanup; wait 2>/dev/null || true; pids=(); }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
upload() { curl -sf -X POST -T "$2" "$1/data"; }
# pull DOWNLOADER_API SEEDER_API SEEDER_P2P_PORT CID: connect, then stream, printing seconds.
pull() {
  curl -sf "$1/connect/$(peer_id "$2")?addrs=/ip4/127.0.0.1/tcp/$3" >/dev/null
  local s e; s=$(now); curl -sf "$1/data/$4/network/stream" -o /dev/null; e=$(now)
  echo "$e - $s" | bc
}

openssl_s=$(for _ in $(seq $RUNS); do openssl_s "$WORK/1g"; done | best)
openssl_q=$(echo "$openssl_s / 4" | bc -l)

# 1. Two of our nodes, 1 GiB, fresh downloader each run.
pair=(); rss_a=0; rss_b=0
for r in $(seq $RUNS); do
  start a 1; start b 2
  cid=$(upload "$(api 1)" "$WORK/1g")
  pair+=("$(pull "$(api 2)" "$(api 1)" 19201 "$cid")")
  rss_a=$(hwm "$pid_a"); rss_b=$(hwm "$pid_b")
  stop_all
done
pair_s=$(printf '%s\n' "${pair[@]}" | median)

# 2. Two live Codex nodes, the same file (the baseline the issue gives: about 0.02 x openssl).
codex_s=
if [ "$CODEX" = 1 ] && [ -x "$CODEX_RUN" ]; then
  cx() { # cx NAME N
    rm -rf "$WORK/cx-$1"
    "$CODEX_RUN" --data-dir="$WORK/cx-$1" --api-port=$((19300 + $2)) --api-bindaddr=127.0.0.1 \
      --listen-addrs="/ip4/127.0.0.1/tcp/$((19400 + $2))" --disc-port=$((19500 + $2)) >"$WORK/cx-$1.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$((19300 + $2))/api/codex/v1/space" >/dev/null && return; sleep 0.1; done
    echo "codex $1 did not start" >&2; exit 1
  }
  cx a 1; cx b 2
  ca=http://127.0.0.1:19301/api/codex/v1; cb=http://127.0.0.1:19302/api/codex/v1
  cid=$(curl -sf -X POST -T "$WORK/1g" -H 'Content-Type: application/octet-stream' "$ca/data")
  codex_s=$(pull "$cb" "$ca" 19401 "$cid")
  stop_all
fi

# 3. One seeder, four downloaders at once (1 GiB each); the time until all four hold it.
start s 10
cid=$(upload "$(api 10)" "$WORK/1g")
for n in 1 2 3 4; do start "d$n" $((10 + n)); curl -sf "$(api $((10 + n)))/connect/$(peer_id "$(api 10)")?addrs=/ip4/127.0.0.1/tcp/19210" >/dev/null; done
s=$(now)
dl=()
for n in 1 2 3 4; do curl -sf "$(api $((10 + n)))/data/$cid/network/stream" -o /dev/null & dl+=($!); done
for p in "${dl[@]}"; do wait "$p"; done
e=$(now); fan_s=$(echo "$e - $s" | bc)
rss_seeder=$(hwm "$pid_s"); rss_d1=$(hwm "$pid_d1")
stop_all

# 4. The swarm (issue 12): N downloaders that know only a bootstrap node fetch 256 MiB by CID.
swarm() { # swarm N -> seconds until all N hold it
  local n=$1 boot
  # Every node here dials from 127.0.0.1: the bootstrap node and the uploader take more than
  # the 8 inbound connections per address a node accepts by default, or the ninth node to
  # arrive is refused and never joins (its fetch start then fails with 404 after 20 s).
  start boot 30 --max-inbound-per-ip 64
  start up 31 --max-inbound-per-ip 64 --bootstrap-node "/ip4/127.0.0.1/tcp/19230/p2p/$(peer_id "$(api 30)")"
  boot="/ip4/127.0.0.1/tcp/19230/p2p/$(peer_id "$(api 30)")"
  local cid; cid=$(upload "$(api 31)" "$WORK/256m")
  for i in $(seq "$n"); do start "sw$i" $((40 + i)) --bootstrap-node "$boot"; done
  sleep 1 # the announcement goes out
  local s e; s=$(now)
  # Each downloader fetches in the background (from a leaf of its own); done when all hold it.
  # A start refused (404: the manifest not found through the DHT yet) is asked again; a fetch
  # that stops or never completes ends the script instead of hanging it.
  for i in $(seq "$n"); do
    local tries=0
    until curl -sf -X POST "$(api $((40 + i)))/data/$cid/network" >/dev/null; do
      tries=$((tries + 1))
      [ "$tries" -lt 5 ] || { echo "swarm $n: downloader $i could not start the fetch" >&2; stop_all; exit 1; }
      sleep 1
    done
  done
  for i in $(seq "$n"); do
    wait_complete "$(api $((40 + i)))/data/$cid/network/progress" ||
      { echo "swarm $n: downloader $i did not complete" >&2; stop_all; exit 1; }
  done
  e=$(now)
  # Who served it: the uploader's share of the blocks sent (the rest came from downloaders).
  local up_sent all_sent=0 x
  up_sent=$(sent "$(api 31)")
  for i in $(seq "$n"); do x=$(sent "$(api $((40 + i)))"); all_sent=$((all_sent + x)); done
  all_sent=$((all_sent + up_sent))
  echo "$n $up_sent $all_sent" >> "$WORK/uploader-shares"
  stop_all
  echo "$e - $s" | bc
}
sent() { curl -sf "$1/debug/info" | python3 -c 'import sys,json; print(json.load(sys.stdin)["exchange"]["blocksSent"])'; }
start q1 50; start q2 51
cid=$(upload "$(api 50)" "$WORK/256m")
single_q=$(pull "$(api 51)" "$(api 50)" 19250 "$cid")
stop_all
rm -f "$WORK/uploader-shares"
swarm1=$(swarm 1); swarm4=$(swarm 4); swarm8=$(swarm 8)

big=
if [ "${BIG:-0}" = 1 ]; then
  start a 1; start b 2
  cid=$(upload "$(api 1)" "$WORK/4g")
  big=$(pull "$(api 2)" "$(api 1)" 19201 "$cid")
  big_rss_a=$(hwm "$pid_a"); big_rss_b=$(hwm "$pid_b")
  stop_all
fi
rm -rf "$WORK"/a "$WORK"/b "$WORK"/s "$WORK"/d? "$WORK"/sw* "$WORK"/boot "$WORK"/up "$WORK"/q? "$WORK"/cx-*

ratio() { echo "scale=3; $1 / $2" | bc; }
mibs() { echo "scale=0; $1 / $2" | bc; }
echo "| measure | seconds | MiB/s | ratio |"
echo "|---|---|---|---|"
echo "| openssl dgst -sha256, 1 GiB (baseline) | $openssl_s | $(mibs 1024 "$openssl_s") | 1.00 |"
echo "| ours A -> B, 1 GiB, network/stream (median of $RUNS) | $pair_s | $(mibs 1024 "$pair_s") | $(ratio "$openssl_s" "$pair_s") x openssl |"
[ -n "$codex_s" ] && echo "| Codex A -> Codex B, 1 GiB | $codex_s | $(mibs 1024 "$codex_s") | $(ratio "$openssl_s" "$codex_s") x openssl; ours = $(ratio "$codex_s" "$pair_s") x Codex |"
echo "| ours, 1 seeder -> 4 downloaders, 1 GiB each, until all hold it | $fan_s | $(mibs 4096 "$fan_s") total | $(ratio "$pair_s" "$fan_s") x one pair's time, x4 the data |"
echo
echo "Peak RSS: seeder ${rss_a} kB and downloader ${rss_b} kB (1 GiB); 1->4: seeder ${rss_seeder} kB, a downloader ${rss_d1} kB"
[ -n "$big" ] && echo "4 GiB A -> B: $big s ($(mibs 4096 "$big") MiB/s), peak RSS seeder ${big_rss_a} kB, downloader ${big_rss_b} kB"
echo
share() { awk -v n="$1" '$1 == n { printf "%d of %d (%.0f %%)", $2, $3, 100 * $2 / $3 }' "$WORK/uploader-shares"; }
echo "| swarm, 256 MiB by CID | seconds until all hold it | ratio to one two-node transfer ($single_q s) | blocks the uploader sent, of all sent |"
echo "|---|---|---|---|"
echo "| N = 1 | $swarm1 | $(ratio "$swarm1" "$single_q") | $(share 1) |"
echo "| N = 4 | $swarm4 | $(ratio "$swarm4" "$single_q") | $(share 4) |"
echo "| N = 8 | $swarm8 | $(ratio "$swarm8" "$single_q") | $(share 8) |"
echo "(openssl on 256 MiB: $(printf '%.3f' "$openssl_q") s)"
