#!/usr/bin/env bash
# End-to-end: two rvs directors, A and B, moved between by stock keepalived
# (VRRPv3, advert_int 0.1) over rvs-dp's kernel interfaces, each with rvs-cp
# reading the same keepalived.conf. A client opens a new connection to the VIP
# every 10 ms and probes ARP for it every 20 ms, throughout.
#   tests/e2e/ha_failover.sh [nat|dr]
#
# nat: client 10.1.0.10 -- outside bridge -- A 10.1.0.2 / B 10.1.0.3 (outside0)
#      A 10.2.0.2 / B 10.2.0.3 (inside0) -- inside bridge -- s1..s3 10.2.0.11-13,
#      whose gateway 10.2.0.1 floats with the VIP 10.1.0.100 (vrrp_sync_group).
# dr:  one bridge: client, A 10.1.0.2, B 10.1.0.3, s1..s3 10.1.0.11-13 (VIP on lo).
# Scenarios, each with its outage (event to the first connection through the
# new owner that succeeds) printed:
#   1. kill -9 of A's rvs-dp: B serves within 0.5 s; A restarts and, with
#      preemption, takes the VIP back;
#   2. keepalived on A stopped (priority 0): B serves within 0.2 s; back;
#   3. A's outside link down: B serves; link up: back;
#   4. without preemption: B keeps the VIP when A returns.
# No split brain: no ARP request for the VIP is answered by both directors,
# and ownership changes exactly as often as the scenarios move it.
# Namespaces ha-c, ha-sw, ha-a, ha-b, ha-s1..3, created and removed here.
source "$(dirname "$0")/lib.sh"
MODE=${1:-nat}
case $MODE in nat|dr) ;; *) die "mode must be nat or dr" ;; esac
P=ha
NSS="$P-c $P-sw $P-a $P-b $P-s1 $P-s2 $P-s3"
KEEPALIVED=${KEEPALIVED:-keepalived}
RVS_CP=${RVS_CP:-$E2E_ROOT/target/release/rvs-cp}
PROBE="$E2E_ROOT/tests/e2e/ha_probe.py"
work=""
declare -A dp_pid=() cp_pid=() ka_pid=() lcore=([a]=0 [b]=1) n=([a]=2 [b]=3)
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
cleanup() {
  touch "$work/stop" 2>/dev/null || true
  for ns in $NSS; do
    for p in $(ip netns pids $ns 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del $ns 2>/dev/null || true
  done
  rm -rf /run/$P-a-lab /run/$P-b-lab
  [ -z "$work" ] || [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
cleanup
work=$(mktemp -d /tmp/rvs-e2e-ha.XXXXXX)
command -v "$KEEPALIVED" >/dev/null || die "keepalived is not installed (scripts/install-deps.sh)"
for b in "$RVS_DP" "$RVS_CP" "$RVSADM"; do [ -x "$b" ] || die "no $b: cargo build --release"; done

now() { date +%s.%N; }
# Waits up to $2 tenths of a second for the file $1 to contain $3 (grep -E)
# after its mark (mark_logs: the lines so far do not count).
declare -A MARK=()
mark_logs() { local f; for f in "$work"/dp-*.log; do MARK[$f]=$(wc -l < "$f"); done; }
since_mark() { tail -n +$(( ${MARK[$1]:-0} + 1 )) "$1" 2>/dev/null; }
wait_log() { for _ in $(seq "$2"); do since_mark "$1" | grep -Eq "$3" && return 0; sleep 0.1; done; return 1; }
adm_of() { RVS_CTL=/run/$P-$1-lab/rvs.ctl "$RVSADM" "${@:2}"; }
# owned_of D: whether director D's rvs-dp owns the VIP, from rvsadm --kernel --json.
owned_of() {
  adm_of "$1" --kernel --json 2>/dev/null \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['vips'].get('$VIP', 'none'))" 2>/dev/null || echo none
}

say "namespaces ($MODE)"
for ns in $NSS; do
  ip netns add $ns
  nsx $ns ip link set lo up
  nsx $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
nsx $P-sw ip link add bo type bridge
nsx $P-sw ip link add bi type bridge
nsx $P-sw ip link set bo up
nsx $P-sw ip link set bi up
veth() {  # veth NS DEV SWITCHPORT BRIDGE
  ip link add "$2" netns "$1" type veth peer name "$3" netns $P-sw
  nsx "$1" ip link set "$2" up
  nsx $P-sw ip link set "$3" master "$4" up
  for pair in "$1 $2" "$P-sw $3"; do
    set -- $pair
    nsx "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
  done
}
veth $P-c eth0 c0 bo
nsx $P-c ip addr add 10.1.0.10/24 dev eth0
rs_net=10.2.0 rs_bridge=bi
[ "$MODE" = dr ] && rs_net=10.1.0 rs_bridge=bo
for i in 1 2 3; do
  veth $P-s$i eth0 s$i $rs_bridge
  nsx $P-s$i ip addr add $rs_net.1$i/24 dev eth0
  if [ "$MODE" = nat ]; then
    nsx $P-s$i ip route add default via 10.2.0.1
  else
    nsx $P-s$i "$E2E_ROOT/scripts/realserver.sh" start dr "$VIP" >/dev/null
  fi
  nsx $P-s$i nohup python3 "$E2E_ROOT/scripts/rs_server.py" s$i 80 53 "$work/s$i.fail" >"$work/s$i.log" 2>&1 &
done
for d in a b; do
  veth $P-$d o0 $d-o bo
  [ "$MODE" = nat ] && veth $P-$d i0 $d-i bi
  # The af_packet ports are veths this namespace's kernel also receives on:
  # keep it from answering ARP there for the kernel interfaces' addresses.
  for dev in o0 i0; do nsx $P-$d sysctl -qw net.ipv4.conf.$dev.arp_ignore=8 2>/dev/null || true; done
done

# rvs.toml for director $1: ports with kernel interfaces, no services (rvs-cp
# brings them from keepalived.conf). Each rvs-dp on its own core, sleeping
# when idle, so that keepalived's 0.1 s adverts and the kernels keep a core.
write_toml() {
  local d=$1 k=${n[$1]}
  {
    printf '[dataplane]\nworkers = [%s]\nconn_capacity = 65536\nidle_sleep_us = 50\n\n' "${lcore[$d]}"
    printf '[[port]]\nname = "outside"\ndevice = "net_af_packet0,iface=o0"\naddress = "10.1.0.%s/24"\n' "$k"
    printf 'mac = "02:00:0a:01:00:0%s"\nkernel_iface = "outside0"\n\n' "$k"
    if [ "$MODE" = nat ]; then
      printf '[[port]]\nname = "inside"\ndevice = "net_af_packet1,iface=i0"\naddress = "10.2.0.%s/24"\n' "$k"
      printf 'mac = "02:00:0a:02:00:0%s"\nkernel_iface = "inside0"\n' "$k"
    fi
  } > "$work/$d.toml"
}
start_dp() {
  local d=$1
  RVS_CTL=/run/$P-$d-lab/rvs.ctl ip netns exec $P-$d "$RVS_DP" -l "${lcore[$d]}" --no-huge -m 512 --no-pci \
    --file-prefix $P-$d --log-level=lib.eal:error -- --config "$work/$d.toml" >>"$work/dp-$d.out" 2>>"$work/dp-$d.log" </dev/null &
  dp_pid[$d]=$!
  wait_log "$work/dp-$d.log" 100 "owns address 10.1.0.${n[$d]} " || { cat "$work/dp-$d.log"; die "rvs-dp $d: outside0 not up"; }
  if [ "$MODE" = nat ]; then
    wait_log "$work/dp-$d.log" 50 "owns address 10.2.0.${n[$d]} " || { cat "$work/dp-$d.log"; die "rvs-dp $d: inside0 not up"; }
  fi
}
start_cp() {
  local d=$1
  ip netns exec $P-$d "$RVS_CP" --keepalived-conf "$work/keepalived.conf" --ctl /run/$P-$d-lab/rvs.ctl \
    --ready-file /run/$P-$d-lab/ready --metrics-listen off >>"$work/cp-$d.log" 2>&1 </dev/null &
  cp_pid[$d]=$!
}
# keepalived --vrrp for director $1 with config $2; `-i` picks the @a / @b lines.
start_ka() {
  local d=$1 conf=${2:-$work/keepalived.conf}
  ip netns exec $P-$d "$KEEPALIVED" --vrrp -n -l -D -i "$d" -f "$conf" \
    -p "$work/ka-$d.pid" -r "$work/ka-$d-vrrp.pid" >>"$work/ka-$d.log" 2>&1 </dev/null &
  ka_pid[$d]=$!
}
stop_ka() {
  local d=$1
  kill -TERM "${ka_pid[$d]}" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "${ka_pid[$d]}" 2>/dev/null || break; sleep 0.1; done
}

# One keepalived.conf for both directors: rvs-cp reads its virtual_server
# blocks, `keepalived --vrrp -i a|b` its vrrp blocks (lines starting @a or @b
# are for that director only).
write_keepalived() {  # write_keepalived FILE preempt|nopreempt
  local rs_port_lines="" i
  for i in 1 2 3; do
    rs_port_lines+="    real_server $rs_net.1$i 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
"
  done
  local np=""
  [ "$2" = nopreempt ] && np="    nopreempt"
  {
    cat <<EOF
! rvs failover lab ($MODE): one file for both directors.
global_defs {
    router_id rvs_lab
    vrrp_version 3
    dynamic_interfaces allow_if_changes
    vrrp_garp_master_repeat 3
    ! No second round of gratuitous ARP 5 s after becoming master: rvs-dp
    ! announces an address the moment it owns it, and a late round from a
    ! master that is just being preempted would point clients back at it.
    vrrp_garp_master_delay 0
}
! rvs-cp --ready-file: 0 once rvs-dp holds the configuration. Until then
! (and while rvs-dp is down or restarting) this director is in FAULT and
! never takes the VIPs.
track_file rvs_ready {
@a  file /run/$P-a-lab/ready
@b  file /run/$P-b-lab/ready
    weight 0
    init_file 1
}
EOF
    if [ "$MODE" = nat ]; then
      cat <<EOF
vrrp_sync_group VG_LB {
    group {
        VI_OUT
        VI_IN
    }
}
EOF
    fi
    cat <<EOF
vrrp_instance VI_OUT {
    state BACKUP
    interface outside0
    virtual_router_id 51
@a  priority 150
@b  priority 100
    advert_int 0.1
$np
    track_file {
        rvs_ready
    }
    virtual_ipaddress {
        $VIP/32 dev outside0
    }
}
EOF
    if [ "$MODE" = nat ]; then
      cat <<EOF
vrrp_instance VI_IN {
    state BACKUP
    interface inside0
    virtual_router_id 52
@a  priority 150
@b  priority 100
    advert_int 0.1
$np
    track_file {
        rvs_ready
    }
    virtual_ipaddress {
        10.2.0.1/32 dev inside0
    }
}
EOF
    fi
    cat <<EOF
virtual_server $VIP 80 {
    delay_loop 1
    lb_algo rr
    lb_kind $( [ "$MODE" = nat ] && echo NAT || echo DR )
    protocol TCP
$rs_port_lines}
EOF
  } > "$1"
}

write_toml a; write_toml b
write_keepalived "$work/keepalived.conf" preempt
write_keepalived "$work/keepalived-nopreempt.conf" nopreempt
out=$("$RVS_CP" --keepalived-conf "$work/keepalived.conf" --config-test 2>&1) || { echo "$out"; die "rvs-cp --config-test refused the lab's keepalived.conf"; }
ok "rvs-cp --config-test: $(grep -c '^-a' <<<"$out") real servers"
nsx $P-a "$KEEPALIVED" -t -f "$work/keepalived.conf" -i a >/dev/null 2>&1 && ok "keepalived -t accepts it" \
  || fail "keepalived -t refuses the lab's keepalived.conf"

say "directors: rvs-dp, rvs-cp, keepalived"
start_dp a; start_dp b
ok "A: $(nsx $P-a ip -br addr | grep -E 'outside0|inside0' | tr -s ' ' | paste -sd';')"
start_cp a; start_cp b
for d in a b; do
  for _ in $(seq 100); do [ "$(adm_of $d -Ln 2>/dev/null | grep -c -- '->.*Masq\|->.*Route')" = 3 ] && break; sleep 0.1; done
  expect_eq "$(adm_of $d -Ln | grep -c -- '->.*Masq\|->.*Route')" 3 "director $d: rvs-cp applied the 3 real servers"
done
start_ka a; start_ka b
wait_log "$work/dp-a.log" 100 "rvs-dp: owns VIP $VIP" || { tail -20 "$work/ka-a.log"; die "A never took the VIP"; }
[ "$MODE" = nat ] && { wait_log "$work/dp-a.log" 50 "owns address 10.2.0.1 " || fail "A never took the inside gateway 10.2.0.1"; }
ok "A is master: $(grep "rvs-dp: owns VIP" "$work/dp-a.log" | tail -1)"
for _ in $(seq 50); do [ "$(nsx $P-c curl -s -m 1 http://$VIP/ 2>/dev/null)" != "" ] && break; sleep 0.1; done
expect_eq "$(nsx $P-c curl -s -m 2 http://$VIP/ | cut -c1)" s "a request through A"

mac_a=02:00:0a:01:00:02 mac_b=02:00:0a:01:00:03
nsx $P-sw timeout 200 tcpdump -i bo -nn -e -w "$work/bo.pcap" 'arp or ip proto 112' >/dev/null 2>&1 &
nsx $P-c python3 "$PROBE" arp eth0 10.1.0.10 $VIP "$work/arp.log" "$work/stop" 150 &
nsx $P-c python3 "$PROBE" conns $VIP 80 "$work/conns.log" "$work/stop" 150 &
sleep 1
expected_owners="$mac_a"
# owner_now: the MAC that answered the last ARP probe.
owner_now() { tail -1 "$work/arp.log" | awk '{print $2}'; }
# wait_owner MAC: up to 5 s for ARP probes to be answered by MAC alone.
wait_owner() { for _ in $(seq 50); do [ "$(owner_now)" = "$1" ] && return 0; sleep 0.1; done; return 1; }
# measure NAME EVENT LIMIT: prints the outage after EVENT (the longest gap
# between two successful connections within 3 s of it) and the connections
# that failed in it and after it. With a LIMIT (s), the outage must be within
# it and no connection may fail after it.
measure() {
  local name=$1 ev=$2 limit=$3 gap from to failed after
  sleep 3.1
  read -r gap from to failed after < <(python3 "$PROBE" outage "$work/conns.log" "$ev" 3)
  [ "$gap" = none ] && { fail "$name: no connection succeeded afterwards"; return; }
  printf '   %-40s outage %6.3f s, %3s connections failed in it, %s after it\n' "$name:" "$gap" "$failed" "$after"
  echo "$MODE | $name | $gap | $failed | $after" >> "$work/outages"
  # Failures count against the scenario from 1 s before the event (an attempt
  # in flight has a 1 s budget) to 3 s after it.
  python3 -c "print($ev - 1.05, $ev + 3)" >> "$work/windows"
  if [ "$limit" != - ]; then
    if python3 -c "import sys; sys.exit(0 if $gap <= $limit else 1)"; then ok "$name within $limit s"
    else fail "$name: outage $gap s over $limit s"; fi
    expect_eq "$after" 0 "$name: connections failing after the outage"
  fi
}
takeback() {  # takeback EVENT: A returns and takes the VIP back (preemption)
  wait_log "$work/dp-a.log" 100 "rvs-dp: owns VIP $VIP" || true
  wait_owner $mac_a && ok "A answers ARP for the VIP again" || fail "A did not take the VIP back"
  expected_owners+=" $mac_a"
  expect_eq "$(owned_of a),$(owned_of b)" True,False "rvsadm --kernel --json: A owns the VIP, B not"
  measure "$2" "$1" -
}

say "1. kill -9 A's rvs-dp"
mark_logs
ev=$(now); kill -KILL "${dp_pid[a]}"
wait_log "$work/dp-b.log" 30 "rvs-dp: owns VIP $VIP" || fail "B did not take the VIP"
wait_owner $mac_b && ok "B answers ARP for the VIP" || fail "B does not answer ARP"
expected_owners+=" $mac_b"
expect_eq "$(owned_of b)" True "rvsadm --kernel --json on B: the VIP owned"
measure "kill -9 rvs-dp A -> B" "$ev" 0.5
ev=$(now); start_dp a
takeback "$ev" "rvs-dp A restarted -> A (preempt)"

say "2. stop keepalived on A"
mark_logs
ev=$(now); stop_ka a
wait_log "$work/dp-b.log" 30 "rvs-dp: owns VIP $VIP" || fail "B did not take the VIP"
wait_owner $mac_b && ok "B answers ARP for the VIP" || fail "B does not answer ARP"
expected_owners+=" $mac_b"
expect_eq "$(owned_of a),$(owned_of b)" False,True "rvsadm --kernel --json: A does not own the VIP, B does"
measure "keepalived A stopped -> B" "$ev" 0.2
ev=$(now); start_ka a
takeback "$ev" "keepalived A restarted -> A (preempt)"

say "3. A's outside link down"
mark_logs
ev=$(now); nsx $P-sw ip link set a-o down
wait_log "$work/dp-a.log" 30 "link down: kernel interface outside0 set down" \
  && ok "A: outside0 follows the link down" || fail "A did not take outside0 down"
wait_log "$work/dp-b.log" 30 "rvs-dp: owns VIP $VIP" || fail "B did not take the VIP"
wait_owner $mac_b && ok "B answers ARP for the VIP" || fail "B does not answer ARP"
expected_owners+=" $mac_b"
measure "A's outside link down -> B" "$ev" 0.5
ev=$(now); nsx $P-sw ip link set a-o up
wait_log "$work/dp-a.log" 30 "link up: kernel interface outside0 set up" \
  && ok "A: outside0 follows the link up" || fail "A did not bring outside0 up"
takeback "$ev" "A's outside link up -> A (preempt)"

say "4. without preemption, B keeps the VIP"
mark_logs
ev=$(now); stop_ka b; stop_ka a
start_ka a "$work/keepalived-nopreempt.conf"
wait_log "$work/dp-a.log" 50 "rvs-dp: owns VIP $VIP" || true
wait_owner $mac_a || fail "A did not take the VIP at the nopreempt restart"
python3 -c "print($ev - 1.05, $(now) + 0.05)" >> "$work/windows"  # no owner while both restart
start_ka b "$work/keepalived-nopreempt.conf"
sleep 1
mark_logs
ev=$(now); stop_ka a
wait_owner $mac_b && ok "B answers ARP for the VIP" || fail "B does not answer ARP"
expected_owners+=" $mac_b"
measure "keepalived A stopped (nopreempt) -> B" "$ev" 0.2
start_ka a "$work/keepalived-nopreempt.conf"
sleep 3
expect_eq "$(owner_now)" $mac_b "3 s after A's return, B still answers for the VIP"
since_mark "$work/dp-a.log" | grep -q "rvs-dp: owns VIP $VIP" && fail "A took the VIP back despite nopreempt"
expect_eq "$(nsx $P-c curl -s -m 2 http://$VIP/ | cut -c1)" s "a request through B"

say "no split brain"
touch "$work/stop"; sleep 1.5
# VRRP's handover when a master preempts: the old master yields when the new
# one's first advert reaches it, so for that long (milliseconds, one advert
# interval at most) both may answer. Both answering any longer is split brain.
read -r _ both _ longest < <(python3 "$PROBE" owners "$work/arp.log" | head -1)
ok "$both of $(wc -l < "$work/arp.log") ARP probes answered by both directors (preemption handovers), longest ${longest} ms"
if [ "$longest" -gt 100 ]; then fail "both directors answered ARP for the VIP for $longest ms: split brain"; fi
seen=$(python3 "$PROBE" owners "$work/arp.log" | tail -n +2 | awk '{print $2}' | paste -sd' ')
expect_eq "$seen" "$expected_owners" "the VIP's owners in order, as the scenarios moved it"
total=$(wc -l < "$work/conns.log"); bad=$(grep -c ' fail ' "$work/conns.log" || true)
stray=$(python3 "$PROBE" stray "$work/conns.log" "$work/windows")
expect_eq "$stray" 0 "$total connections attempted, $bad failed; failures outside the scenarios"

say "outages ($MODE)"
echo "mode | scenario | outage (s) | failed in it | failed after it"
cat "$work/outages"
if [ "$FAILS" -gt 0 ]; then
  echo "ha_failover $MODE: $FAILS check(s) failed"
  for d in a b; do echo "--- dp-$d"; tail -30 "$work/dp-$d.log"; echo "--- ka-$d"; tail -30 "$work/ka-$d.log"; done
  exit 1
fi
echo "ha_failover $MODE: all checks passed"
