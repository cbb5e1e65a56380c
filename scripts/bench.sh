#!/usr/bin/env bash
# DPDK macro-benchmarks: rvs-dp against dpdk-testpmd on the same virtual
# devices (net_pcap replaying generated traffic with infinite_rx → net_null),
# in the same memory mode, one table in one run (~3-5 minutes here).
#
#   scripts/bench.sh [rvs-bench options...]     e.g. --only nat,dr --reps 3
#
# Hugepages are used when they can be set up (RVS_BENCH_HUGEPAGES pages of
# 2 MB, default 3600: the 10M-flow scenario holds 10M mbufs); otherwise everything runs with --no-huge. The table
# says which. RVS_BENCH_NO_HUGE=1 forces --no-huge. Needs root (EAL, hugepages).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
work=${RVS_BENCH_DIR:-/tmp/rvs-bench}
pages=${RVS_BENCH_HUGEPAGES:-3600}

command -v dpdk-testpmd >/dev/null || { echo "bench.sh: dpdk-testpmd not found (apt-get install dpdk)" >&2; exit 1; }
echo "bench.sh: building (release)..." >&2
(cd "$root" && cargo build --release -p rvs-dp --features dpdk -p rvs-cp >&2)
(cd "$root/benches/macro" && cargo build --release >&2)

mem=--no-huge
restore_pages=""
mounted=""
cleanup() {
  # The sync scenario's namespace, should rvs-bench have exited on a failure.
  ip netns del rvsbench 2>/dev/null || true
  if [ -n "$mounted" ]; then umount /dev/hugepages 2>/dev/null || true; fi
  if [ -n "$restore_pages" ]; then echo "$restore_pages" > /proc/sys/vm/nr_hugepages 2>/dev/null || true; fi
}
trap cleanup EXIT
if [ "${RVS_BENCH_NO_HUGE:-0}" != 1 ]; then
  cur=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
  if [ "$cur" -lt "$pages" ]; then
    if echo "$pages" > /proc/sys/vm/nr_hugepages 2>/dev/null; then restore_pages=$cur; fi
  fi
  if ! mountpoint -q /dev/hugepages 2>/dev/null; then
    mkdir -p /dev/hugepages 2>/dev/null || true
    if mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null; then mounted=1; fi
  fi
  free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
  if mountpoint -q /dev/hugepages 2>/dev/null && [ "${free:-0}" -ge "$pages" ]; then
    mem=--huge
  else
    echo "bench.sh: only ${free:-0} free hugepages (need $pages) or no hugetlbfs: using --no-huge" >&2
  fi
fi

mkdir -p "$work"
{
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $(free -g | awk '/Mem:/ {print $2}') GiB RAM; DPDK $(pkg-config --modversion libdpdk 2>/dev/null || echo '?')"
  echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Command: scripts/bench.sh $*  (rvs-bench $mem)"
  echo
} | tee "$work/table.md"
"$CARGO_TARGET_DIR/release/rvs-bench" --rvs-dp "$CARGO_TARGET_DIR/release/rvs-dp" \
  --rvs-cp "$CARGO_TARGET_DIR/release/rvs-cp" \
  --work "$work" "$mem" "$@" 2>"$work/bench.log" | tee -a "$work/table.md"
echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$work/table.md"
echo "bench.sh: table in $work/table.md, per-run logs and final counters in $work/" >&2
