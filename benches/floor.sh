#!/usr/bin/env bash
# The floor under issue 20's targets: what a 1 GiB upload and a 1 GiB transfer between two
# nodes cannot avoid on this machine and stack, each piece measured alone in CPU seconds, next
# to `openssl dgst -sha256` of the same file in the same run (benches/floor.rs has the
# in-process pieces; this adds the disk). benches/README.md compares the sums with what the
# node spends.
#
#   benches/floor.sh            # WORK (default /tmp/codex-bench) must be on the nodes' disk
#
# Needs openssl, dd and bc; WORK needs ~2 GiB free.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/codex-bench}
mkdir -p "$WORK"
[ -f "$WORK/1g" ] || gen one $((1 << 30)) > "$WORK/1g"
cat "$WORK/1g" > /dev/null

# Best of three of the baseline, as of every piece.
o=$(for _ in 1 2 3; do openssl_s "$WORK/1g"; done | best)
echo "openssl dgst -sha256, 1 GiB: $o s"
OPENSSL_S=$o cargo bench --quiet --bench floor 2>/dev/null

# The disk: 1 GiB written around the page cache in 4 MiB pieces and synced (as the block store
# writes a fetch's or an upload's runs), then read back the same way (as the seeder reads).
# dd's system time is the kernel's share of it; the copy from the page cache into dd's buffer
# is in the write's figure too, so it is an upper bound.
sys_of() { /usr/bin/time -f %S "$@" 2>&1 >/dev/null | tail -1; }
w=(); r=()
for _ in 1 2 3; do
  w+=("$(sys_of dd if="$WORK/1g" of="$WORK/floor-copy" bs=4M oflag=direct conv=fdatasync status=none)")
  r+=("$(sys_of dd if="$WORK/floor-copy" of=/dev/null bs=4M iflag=direct status=none)")
done
rm -f "$WORK/floor-copy"
w=$(printf '%s\n' "${w[@]}" | best); r=$(printf '%s\n' "${r[@]}" | best)
echo "| direct write, synced | $w | $(echo "scale=2; $w / $o" | bc) |"
echo "| direct read | $r | $(echo "scale=2; $r / $o" | bc) |"
