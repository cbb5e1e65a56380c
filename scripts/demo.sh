#!/usr/bin/env bash
# The first thing to run: builds rvs, brings up a netns lab (a client, the
# director running rvs-dp on af_packet, three real servers), configures a wrr
# service with rvsadm exactly as with ipvsadm, sends requests from the client
# and shows how they spread, then the counters. Tears the lab down at the end.
#   scripts/demo.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-60}
scripts/install-deps.sh
echo "== building (release)"
cargo build --release -q -p rvs-dp --features dpdk -p rvs-cp
export RVS_LAB=${RVS_LAB:-rvs}  # scripts/lab.sh: the lab's name
export RVS_CTL=/run/$RVS_LAB-lab/rvs.ctl  # scripts/lab.sh CTL
ADM=target/release/rvsadm
trap 'scripts/lab.sh down >/dev/null 2>&1 || true' EXIT
echo "== lab up (NAT: client 10.1.0.10 -> VIP 10.1.0.100 -> real servers 10.2.0.11-13)"
scripts/lab.sh up nat
VIP=10.1.0.100
run() { echo "# $*"; "$@"; }
run $ADM -A -t $VIP:80 -s wrr
run $ADM -a -t $VIP:80 -r 10.2.0.11:80 -m -w 3
run $ADM -a -t $VIP:80 -r 10.2.0.12:80 -m -w 2
run $ADM -a -t $VIP:80 -r 10.2.0.13:80 -m -w 1
run $ADM -Ln
echo "== $N requests from the client (each a new TCP connection), live:"
declare -A tally=([s1]=0 [s2]=0 [s3]=0)
for i in $(seq "$N"); do
  s=$(ip netns exec $RVS_LAB-c curl -s -m 3 http://$VIP/ || echo failed)
  tally[$s]=$(( ${tally[$s]:-0} + 1 ))
  printf '\r  request %3d -> %-6s  s1(w3)=%-3d s2(w2)=%-3d s3(w1)=%-3d' "$i" "$s" "${tally[s1]}" "${tally[s2]}" "${tally[s3]}"
done
echo
echo "== counters (ipvsadm -Ln --stats format)"
run $ADM -Ln --stats
echo "== per-worker packet latency inside rvs-dp (rvsadm --latency; in this lab af_packet TX is a system call per burst)"
sleep 0.3
run $ADM --latency || true
echo "== connections (ipvsadm -Lnc format), first lines"
$ADM -Lnc | head -6
