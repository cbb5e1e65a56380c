#!/usr/bin/env bash
# IPv4 fragments through rvs-dp on net_pcap ports: a first fragment and its
# later fragments of UDP datagrams to a NAT VIP are read from an rx_pcap,
# and what rvs-dp sends toward the real servers is captured in a tx_pcap and
# checked (fragments.py): every fragment of a datagram on one real server,
# rewritten, valid checksums, the datagram intact. No network namespace, no
# hugepages (--no-huge).
#
#   tests/pcap/fragments.sh      (root not needed; python3 with scapy: apt python3-scapy)
#
# Env: RVS_DP (default target/release/rvs-dp), PYTHON (a python3 with scapy;
# default /usr/bin/python3, Debian's, where python3-scapy installs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
RVS_DP=${RVS_DP:-${CARGO_TARGET_DIR:-$root/target}/release/rvs-dp}
PY=${PYTHON:-/usr/bin/python3}
[ -x "$RVS_DP" ] || { echo "fragments: no rvs-dp at $RVS_DP (cargo build --release --features dpdk -p rvs-dp)" >&2; exit 1; }
"$PY" -c 'import scapy' 2>/dev/null || { echo "fragments: $PY has no scapy (apt-get install python3-scapy)" >&2; exit 1; }

W=$(mktemp -d /tmp/rvs-frag.XXXXXX)
DP_PID=
cleanup() {
  [ -n "$DP_PID" ] && kill -KILL "$DP_PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

"$PY" "$here/fragments.py" make "$W/in.pcap"
{
  printf '[dataplane]\nworkers = [0]\nconn_capacity = 4096\nmbufs = 4096\n\n'
  printf '[[port]]\nname = "client"\ndevice = "net_pcap0,rx_pcap=%s,tx_pcap=%s"\n' "$W/in.pcap" "$W/out0.pcap"
  printf 'address = "10.1.0.1/24"\nmac = "02:00:00:00:d0:00"\n\n'
  printf '[[port]]\nname = "servers"\ndevice = "net_pcap1,tx_pcap=%s"\n' "$W/out1.pcap"
  printf 'address = "10.2.0.1/24"\nmac = "02:00:00:00:d0:01"\n\n'
  printf '[[neighbor]]\nip = "10.1.0.10"\nmac = "02:00:00:00:00:0c"\n\n'
  for i in 0 1 2; do
    printf '[[neighbor]]\nip = "10.2.0.%d"\nmac = "02:00:00:00:02:%02x"\n\n' $((11 + i)) $((11 + i))
  done
  printf '[[virtual_server]]\naddress = "10.1.0.100"\nport = 53\nprotocol = "UDP"\nlb_algo = "rr"\nlb_kind = "NAT"\n'
  for i in 0 1 2; do
    printf '[[virtual_server.real_server]]\naddress = "10.2.0.%d"\nport = %d\n' $((11 + i)) $((5300 + i))
  done
} > "$W/rvs.toml"

"$RVS_DP" -l 0 --no-huge -m 512 --no-pci --no-shconf --log-level=lib.eal:error -- \
  --config "$W/rvs.toml" --ctl "$W/ctl" >"$W/dp.out" 2>"$W/dp.err" </dev/null &
DP_PID=$!
# The rx_pcap is read once at start; give it time, then stop rvs-dp (SIGINT:
# it prints its counters and flushes the captures).
for _ in $(seq 100); do
  grep -q "worker(s) on lcores" "$W/dp.err" 2>/dev/null && break
  kill -0 "$DP_PID" 2>/dev/null || break
  sleep 0.1
done
sleep 1
kill -INT "$DP_PID" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "$DP_PID" 2>/dev/null || break; sleep 0.1; done
wait "$DP_PID" 2>/dev/null || true
DP_PID=
grep -hE "fragments_followed|nat_in|drop" "$W/dp.out" "$W/dp.err" | sed 's/^/rvs-dp: /' | head -20 || true
if ! "$PY" "$here/fragments.py" check "$W/out1.pcap"; then
  echo "----- rvs-dp stderr" >&2; tail -n 40 "$W/dp.err" >&2
  exit 1
fi
