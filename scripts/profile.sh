#!/usr/bin/env bash
# Instructions per packet of the forwarding core, under callgrind: deterministic,
# so unaffected by a noisy machine. For each case of benches/profile_core.rs,
# runs PACKETS packets and 0 packets (the set-up: director, table, frames) and
# prints (Ir(PACKETS) - Ir(0)) / PACKETS.
#
#   scripts/profile.sh [--tree DIR] [--keep DIR] [CASE...]
#
# CASE defaults to nat_in nat_out dr_in tun_in nat_new nat_in_burst dr_in_burst
# nat_in_hwcsum nat_new_hwcsum fnat_in fnat_out fnat_new nat_in_udp (the last
# ones where the checkout has them).
# --tree DIR profiles another checkout (e.g. a worktree of an older commit) with
# this script. --keep DIR leaves each case's callgrind.out.CASE there, for
# `callgrind_annotate --inclusive=yes DIR/callgrind.out.nat_in`.
# RVS_PROFILE_CONNS (default 1024) and RVS_PROFILE_PACKETS (default 200000).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tree) root="$(cd "$2" && pwd)"; shift 2 ;;
    --keep) keep="$2"; mkdir -p "$keep"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
  cases=(nat_in nat_out dr_in tun_in nat_new nat_in_burst dr_in_burst)
  if grep -q nat_new_hwcsum "$root/benches/profile_core.rs"; then cases+=(nat_in_hwcsum nat_new_hwcsum); fi
  if grep -q fnat_new "$root/benches/profile_core.rs"; then cases+=(fnat_in fnat_out fnat_new); fi
  if grep -q nat_in_udp "$root/benches/profile_core.rs"; then cases+=(nat_in_udp); fi
fi
conns=${RVS_PROFILE_CONNS:-1024}
packets=${RVS_PROFILE_PACKETS:-200000}
command -v valgrind >/dev/null || { echo "profile.sh: valgrind not found (apt-get install valgrind)" >&2; exit 1; }

bin=$(cd "$root" && cargo bench -p rvs-dp --bench profile_core --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*profile_core[^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "profile.sh: could not build profile_core in $root" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Total instructions of one run.
ir() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$bin" "$1" "$conns" "$2" >/dev/null 2>&1
  if [ -n "$keep" ] && [ "$2" != 0 ]; then cp "$tmp/cg.out" "$keep/callgrind.out.$1"; fi
  sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$tmp/cg.out"
}

echo "# $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?'): instructions per packet, $conns connections, $packets packets"
printf '%-14s %10s\n' case instr/pkt
for c in "${cases[@]}"; do
  base=$(ir "$c" 0)
  full=$(ir "$c" "$packets")
  awk -v c="$c" -v a="$full" -v b="$base" -v n="$packets" 'BEGIN { printf "%-14s %10.1f\n", c, (a - b) / n }'
done
