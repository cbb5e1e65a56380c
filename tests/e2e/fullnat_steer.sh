#!/usr/bin/env bash
# FULLNAT reply steering with rte_flow (issue 12): rvs-dp with 2 workers, its
# real-server port on DPDK net_tap with 2 queues, the real server in its own
# netns bridged to the tap; the client port on af_packet.
#   tests/e2e/fullnat_steer.sh
#
# Arm 1 (flow_steering on, the default): rvs-dp tries rte_flow rules for the
# tap port's LIP (masked port classes, then one exact rule per local port of
# [fullnat]'s 128-port range) and logs the mode each port got. The
# af_packet port's LIP must come out as mode none without DPDK error noise.
#   - mode exact (a kernel with TC flower, multiq and skbedit): replies are
#     counted `steered`, none `redirected`;
#   - mode none (a kernel without them, such as this lab's: net_tap turns
#     rte_flow off when it cannot create its multiq qdisc, and the kernel
#     refuses each TC filter): the reason is logged, nothing is counted
#     `steered`, and the software redirect does the work.
# Arm 2 (flow_steering = false): mode none (disabled) on every port, and
# some replies redirected for the same traffic.
# Arm 1 takes its services from rvs-cp (a keepalived.conf with DPVS's
# local_address_group, then a SIGHUP that adds a LIP) and reads rvs-cp's
# /metrics: rvs_flow_rules{port,name,mode} and the steered path. Arm 2 takes
# them from rvsadm (--add-laddr).
# Both arms: 40 requests from 8 client addresses and a 1 MB download
# (sha256) all succeed.
# Only addresses inside the namespaces made here; every loop is bounded; the
# EXIT trap stops rvs-dp and removes the namespaces, whatever happened.
source "$(dirname "$0")/lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"
L=${RVS_LAB:-rvs}fs
NS_C=$L-c NS_D=$L-d NS_S=$L-s1
CTL=/run/$L/rvs.ctl
export RVS_CTL=$CTL
work=$(mktemp -d "/tmp/rvs-e2e-steer.XXXXXX")
dp_pid=""
rs_pid=""
cp_pid=""

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
quiet_if() {  # no IPv6 chatter, no offloads: the forwarder must see complete frames
  nsx "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1" 2>/dev/null || true
  nsx "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
}
stop_dp() {
  [ -n "$dp_pid" ] || return 0
  kill -INT "$dp_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$dp_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$dp_pid" 2>/dev/null || true
  wait "$dp_pid" 2>/dev/null || true
  dp_pid=""
}
down() {
  stop_cp
  stop_dp
  if [ -n "$rs_pid" ]; then kill "$rs_pid" 2>/dev/null || true; wait "$rs_pid" 2>/dev/null || true; rs_pid=""; fi
  for ns in "$NS_C" "$NS_D" "$NS_S"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap 'down; rm -rf "$work"' EXIT
[ -x "$RVS_DP" ] || die "no rvs-dp at $RVS_DP (cargo build --release -p rvs-dp --features dpdk; RVS_DP=...)"

# The namespaces, the client's veth and the real server's veth; the tap
# comes with rvs-dp.
lab_up() {
  down
  for ns in "$NS_C" "$NS_D" "$NS_S"; do
    ip netns add "$ns"
    nsx "$ns" ip link set lo up
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add eth0 netns "$NS_C" type veth peer name d0 netns "$NS_D"
  ip link add eth0 netns "$NS_S" type veth peer name b1 netns "$NS_D"
  for p in "$NS_C eth0" "$NS_D d0" "$NS_S eth0" "$NS_D b1"; do
    set -- $p
    nsx "$1" ip link set "$2" up
    quiet_if "$1" "$2"
  done
  nsx "$NS_C" ip addr add 10.1.0.10/24 dev eth0
  for k in $(seq 20 27); do nsx "$NS_C" ip addr add 10.1.0.$k/24 dev eth0; done
  nsx "$NS_C" ip route add default via 10.1.0.1
  nsx "$NS_D" ip link add br0 type bridge
  nsx "$NS_D" ip link set br0 up
  nsx "$NS_D" ip link set b1 master br0
  # The director's own kernel on the servers' link (rvs-cp's side), as a
  # real director keeps a management interface beside its DPDK ports.
  nsx "$NS_D" ip addr add 10.2.0.2/24 dev br0
  # The real server: no route to the clients, only its subnet (the LIPs').
  nsx "$NS_S" ip addr add 10.2.0.11/24 dev eth0
  # `ip netns exec` execs: $! is the server itself (a function would be a subshell).
  ip netns exec "$NS_S" python3 "$E2E_ROOT/scripts/rs_server.py" s1 80 53 "/tmp/$L-s1.fail" >"$work/s1.log" 2>&1 &
  rs_pid=$!
}

# start_dp STEERING: rvs-dp with 2 workers; port 0 af_packet (2 queues),
# port 1 net_tap (2 queues) bridged to the real server.
start_dp() {
  cat >"$work/rvs.toml" <<EOF
[dataplane]
workers = [0, 1]
conn_capacity = 65536
idle_sleep_us = 20

[fullnat]
lport_min = 40000
lport_max = 40127
flow_steering = $1

[[port]]
name = "client"
device = "net_af_packet0,iface=d0,qpairs=2"
address = "10.1.0.1/24"

[[port]]
name = "servers"
device = "net_tap0,iface=rvstap0"
address = "10.2.0.1/24"
# Not the tap's own MAC: the bridge would keep frames to it for itself.
mac = "02:00:0a:02:00:01"
EOF
  mkdir -p "/run/$L" && chmod 700 "/run/$L"
  : >"$work/dp.log"
  ip netns exec "$NS_D" "$RVS_DP" -l 0-1 --no-huge -m 1024 --no-pci --file-prefix "$L" \
    --log-level=lib.eal:error -- --config "$work/rvs.toml" >>"$work/dp.log" 2>&1 </dev/null &
  dp_pid=$!
  for _ in $(seq 100); do
    adm -Ln >/dev/null 2>&1 && break
    kill -0 "$dp_pid" 2>/dev/null || { cat "$work/dp.log" >&2; die "rvs-dp exited"; }
    sleep 0.2
  done
  adm -Ln >/dev/null 2>&1 || die "rvs-dp does not answer"
  # The tap exists once the port is up: into the bridge, offloads off.
  for _ in $(seq 50); do nsx "$NS_D" ip link show rvstap0 >/dev/null 2>&1 && break; sleep 0.1; done
  nsx "$NS_D" ip link set rvstap0 master br0 || die "no rvstap0 from net_tap"
  nsx "$NS_D" ip link set rvstap0 up
  quiet_if "$NS_D" rvstap0
}

# configure LIP: a FULLNAT service on the VIP, its LIP on the tap port, and
# a second service whose LIP is on the af_packet port (no traffic: its mode).
configure() {
  adm -A -t $VIP:80 -s rr || die "rvsadm -A"
  adm -a -t $VIP:80 -r 10.2.0.11:80 -b || die "rvsadm -a"
  adm --add-laddr -z "$1" -t $VIP:80 -F servers || die "rvsadm --add-laddr $1"
  adm -A -t $VIP:8080 -s rr || die "rvsadm -A 8080"
  adm -a -t $VIP:8080 -r 10.1.0.50:8080 -b || die "rvsadm -a 8080"
  adm --add-laddr -z 10.1.0.200 -t $VIP:8080 -F client || die "rvsadm --add-laddr af_packet"
}

# traffic: 40 requests over 8 client addresses, and a 1 MB download.
traffic() {
  local out nfail sha want
  out=$(nsx "$NS_C" bash -c "for i in \$(seq 40); do curl -s -m 3 --interface 10.1.0.\$((20 + i % 8)) http://$VIP/ || echo FAILED; done" | sort | uniq -c)
  nfail=$(awk '$2=="FAILED"{print $1}' <<<"$out")
  expect_eq "${nfail:-0}" 0 "$1: failed requests of 40"
  sha=$({ nsx "$NS_C" timeout 20 curl -s -m 15 "http://$VIP/blob?size=1000000" || true; } | sha256sum | cut -d" " -f1)
  want=$(blob_sha 1000000)
  expect_eq "$sha" "$want" "$1: 1 MB download intact"
}

# paths: sums the exit report's FULLNAT reply paths: "direct redirected steered".
paths() {
  local d=0 r=0 s=0 w x y z
  for w in 0 1; do
    read -r x y z < <(sed -n "s/^worker $w: .* fnat_replies direct \([0-9]*\) redirected \([0-9]*\) steered \([0-9]*\).*/\1 \2 \3/p" "$work/dp.log" | head -1)
    [ -n "$x" ] || { fail "worker $w: no 'fnat_replies direct N redirected M steered K' in the exit report"; continue; }
    echo "   worker $w: direct $x redirected $y steered $z" >&2
    d=$((d + x)); r=$((r + y)); s=$((s + z))
  done
  echo "$d $r $s"
}

mode_line() { grep -o "port $1 flow steering: .*" "$work/dp.log" | head -1; }

# kconf LIP...: DPVS's keepalived.conf for the same two services.
kconf() {
  {
    echo "local_address_group lg_tap {"
    for l in "$@"; do echo "    $l servers"; done
    echo "}"
    echo "local_address_group lg_afp {"
    echo "    10.1.0.200 client"
    echo "}"
    echo "virtual_server $VIP 80 {"
    echo "    lb_algo rr"
    echo "    lb_kind FNAT"
    echo "    protocol TCP"
    echo "    laddr_group_name lg_tap"
    echo "    real_server 10.2.0.11 80 {"
    echo "        weight 1"
    echo "    }"
    echo "}"
    echo "virtual_server $VIP 8080 {"
    echo "    lb_algo rr"
    echo "    lb_kind FNAT"
    echo "    protocol TCP"
    echo "    laddr_group_name lg_afp"
    echo "    real_server 10.1.0.50 8080 {"
    echo "        weight 1"
    echo "    }"
    echo "}"
  } >"$work/keepalived.conf"
}
metric() { sed -n "s/^$1 \([0-9]*\)\$/\1/p" "$work/metrics" | head -1; }

say "arm 1: flow_steering on; the tap port tries rte_flow rules"
lab_up
start_dp true
kconf 10.2.0.200
ip netns exec "$NS_D" "$RVSCP" --keepalived-conf "$work/keepalived.conf" --ctl "$CTL" \
  --metrics-listen 127.0.0.1:19290 >"$work/cp.log" 2>&1 &
cp_pid=$!
for _ in $(seq 100); do [ "$(adm -Ln | grep -c FullNat)" = 2 ] && break; sleep 0.1; done
expect_eq "$(adm -Ln | grep -c FullNat)" 2 "rvs-cp applied the keepalived.conf's FNAT services"
for _ in $(seq 50); do [ -n "$(mode_line 0)" ] && break; sleep 0.1; done
tap=$(mode_line 1); afp=$(mode_line 0)
echo "   $tap"; echo "   $afp"
[ -n "$tap" ] && ok "the tap port's mode is logged" || fail "no 'port 1 flow steering:' line in rvs-dp's log"
[ "$(grep -c "port 1 flow steering:" "$work/dp.log")" = 1 ] && ok "logged once" || fail "the tap port's mode logged more than once"
case "$afp" in
  "port 0 flow steering: none ("*) ok "the af_packet port: mode none" ;;
  *) fail "the af_packet port: '$afp', want mode none" ;;
esac
# No DPDK complaint about the af_packet port's refusal (the tap's own PMD
# messages are its driver's; af_packet has no rte_flow at all).
noise=$(grep -iE "af_packet.*(flow|error)|rte_flow.*port 0" "$work/dp.log" | grep -v "flow steering:" || true)
expect_eq "$noise" "" "no error noise for the af_packet port"
traffic "arm 1"
say "arm 1: a SIGHUP adds a LIP on the tap port; /metrics"
kconf 10.2.0.200 10.2.0.202
kill -HUP "$cp_pid"
wait_laddrs $VIP:80 "10.2.0.200 10.2.0.202 " || true
expect_eq "$(laddrs_of $VIP:80)" "10.2.0.200 10.2.0.202 " "the reload's LIPs"
expect_eq "$(grep -c "port 1 flow steering:" "$work/dp.log")" 1 "the tap port's mode, remembered, not logged again"
sleep 1.5   # one stats interval: the snapshot /metrics renders is taken every second
nsx "$NS_D" curl -s -m 3 -o "$work/metrics" http://127.0.0.1:19290/metrics || true
grep -E '^rvs_flow_rules|^rvs_fnat_replies_total' "$work/metrics" | sed 's/^/   /' || true
tapmode=$(sed -n 's/^port 1 flow steering: \([a-z]*\).*/\1/p' <<<"$tap")
tapn=$(metric "rvs_flow_rules{port=\"1\",name=\"servers\",mode=\"$tapmode\"}")
[ -n "$tapn" ] && ok "/metrics: rvs_flow_rules for the tap port, mode $tapmode, $tapn rules" \
  || fail "/metrics lacks rvs_flow_rules{port=\"1\",name=\"servers\",mode=\"$tapmode\"}"
expect_eq "$(metric 'rvs_flow_rules{port="0",name="client",mode="none"}')" 0 "/metrics: the af_packet port, mode none, 0 rules"
live_s=0
for w in 0 1; do live_s=$((live_s + $(metric "rvs_fnat_replies_total{worker=\"$w\",path=\"steered\"}" | grep . || echo 0))); done
adm --workers | sed 's/^/   /'
stop_cp
stop_dp
read -r d1 r1 s1 < <(paths)
echo "   arm 1 replies: direct $d1 redirected $r1 steered $s1"
expect_eq "$live_s" "$s1" "/metrics' steered replies (live) match the exit report"
[ $((d1 + r1 + s1)) -gt 0 ] || fail "arm 1: no FULLNAT reply counted"
case "$tap" in
  *"exact("*|*"classes("*)
    [ "$s1" -gt 0 ] && ok "replies steered by the NIC rules ($s1)" || fail "rules installed, yet no reply counted steered"
    expect_eq "$r1" 0 "replies redirected with rules installed"
    ;;
  *"none ("*)
    echo "   NOTE: net_tap installed no rule on this kernel ($tap):"
    echo "         the steered arm cannot be shown here; the fallback is."
    expect_eq "$s1" 0 "replies counted steered with no rule installed"
    [ "$r1" -gt 0 ] && ok "the software redirect took the misdelivered replies ($r1)" \
      || fail "no reply redirected: the two-queue path was not exercised"
    ;;
  *) fail "unexpected tap port mode: '$tap'" ;;
esac
if grep -q 'drop.out_no_conn' "$work/dp.log"; then fail "replies dropped for want of their connection"; else ok "no reply lost its connection"; fi

say "arm 2: flow_steering = false, the same traffic"
lab_up
start_dp false
configure 10.2.0.201
tap=$(mode_line 1)
expect_eq "$tap" "port 1 flow steering: none (disabled by flow_steering = false)" "the tap port's mode"
traffic "arm 2"
stop_dp
read -r d2 r2 s2 < <(paths)
echo "   arm 2 replies: direct $d2 redirected $r2 steered $s2"
expect_eq "$s2" 0 "replies counted steered with steering off"
[ "$r2" -gt 0 ] && ok "replies redirected with steering off ($r2)" || fail "no reply redirected with steering off"

if [ "$FAILS" -gt 0 ]; then echo "e2e fullnat steering: $FAILS check(s) failed"; exit 1; fi
echo "e2e fullnat steering: all checks passed"
