#!/usr/bin/env bash
# The whole test suite, from a fresh clone on Debian 12, as root:
#   scripts/test.sh
# 1. installs what is missing; 2. format and lint; 3. the pure core's unit,
# property and integration tests; 4. the DPDK layer on virtual devices;
# 5. end-to-end scenarios in network namespaces (NAT, DR, TUN, 2 workers, SYN flood,
# port reuse under wrk, kernel interfaces, virtio), with real kernel TCP/UDP clients
# and servers; IPv4 fragments through net_pcap ports.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { printf '\n######## %s (t+%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

step "dependencies"
scripts/install-deps.sh

step "rustfmt"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "layout: no import cycles between files"
python3 scripts/import_cycles.py proto/src dp/src cp/src

step "benchmark harness (benches/macro, its own workspace): format, lint, tests"
(cd benches/macro && cargo fmt --check && CARGO_TARGET_DIR="$PWD/../../target" cargo clippy --all-targets -- -D warnings \
  && CARGO_TARGET_DIR="$PWD/../../target" cargo test)

step "unit, property and integration tests (no DPDK needed)"
cargo test --workspace

step "DPDK layer on virtual devices"
cargo test -p rvs-dp --features dpdk --test dpdk_port --test dp_binary

step "release build"
cargo build --release -p rvs-dp --features dpdk -p rvs-cp

failed=()
run() {
  local name=$1; shift
  step "e2e: $name"
  if "$@"; then echo "PASS $name"; else echo "FAIL $name"; failed+=("$name"); fi
}
run "nat" tests/e2e/forwarding.sh nat
run "dr" tests/e2e/forwarding.sh dr
run "tun" tests/e2e/forwarding.sh tun
run "nat, 2 workers" tests/e2e/nat_two_workers.sh
run "af_packet checksum offload" tests/e2e/af_packet_offload.sh
run "nat, 2 workers, persistence /24" tests/e2e/nat_two_workers_persistence.sh
run "kernel interface, VIP ownership" tests/e2e/kernel_iface.sh
run "nat, failover with keepalived (two directors)" tests/e2e/ha_failover.sh nat
run "dr, failover with keepalived (two directors)" tests/e2e/ha_failover.sh dr
run "nat, connection sync: kill -9 of the master, resync and takeback keep every stream" tests/e2e/ha_sync.sh nat
run "dr, connection sync: kill -9 of the master, resync and takeback keep every stream" tests/e2e/ha_sync.sh dr
run "nat, SYN flood" tests/e2e/syn_flood.sh
run "fullnat: two arms, one arm, PROXY v2, 2 workers, LIP exhaustion" tests/e2e/fullnat.sh
run "fullnat: rte_flow reply steering on net_tap (2 queues), redirect fallback, steering off" tests/e2e/fullnat_steer.sh
run "nat, port reuse under draining (wrk)" tests/e2e/port_reuse.sh nat
run "dr, port reuse under draining (wrk)" tests/e2e/port_reuse.sh dr
run "IPv4 fragments on net_pcap" tests/pcap/fragments.sh
for t in tests/e2e/control_*.sh; do
  [ -e "$t" ] && run "$(basename "$t" .sh)" "$t"
done
[ -x tests/virtio/run.sh ] && run "virtio" tests/virtio/run.sh

step "done"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all tests passed in $(( $(date +%s) - t0 )) s"
