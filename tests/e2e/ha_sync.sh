#!/usr/bin/env bash
# End-to-end: connection sync between two rvs directors (IPVS sync v1 over
# kernel UDP multicast), on the two-director lab of ha_failover.sh: stock
# keepalived moves the VIP, each director runs rvs-dp + rvs-cp, and each runs
# a sync master and a sync backup on its outside kernel interface (outside0),
# as IPVS allows both at once: whoever forwards sends, the other installs.
# rvs-cp starts both from keepalived.conf's `lvs_sync_daemon outside0 VI_OUT`
# (global_defs, an @rvs line: rvs-cp --config-id rvs) when it connects to
# rvs-dp and again after an rvs-dp restart.
#   tests/e2e/ha_sync.sh [nat|dr]
#
# Why outside0: it is the one network both lab variants have (DR has no
# inside), and VRRP already rides it; a production pair would rather use a
# dedicated link. The sync traffic is 224.0.0.81:8848, ttl 1, on the lab's
# bridge only.
#
# Traffic, from the client, throughout: 32 long-lived TCP streams to VIP:9000,
# each a sequence-numbered byte stream that the real server checks (gap or
# reset = broken) and acknowledges (tests/e2e/ha_streams.py), and a new
# HTTP connection to VIP:80 every 10 ms (tests/e2e/ha_probe.py conns).
# Scenario: kill -9 of A's rvs-dp. B takes the VIP (in NAT also the real
# servers' gateway 10.2.0.1: vrrp_sync_group) and must carry all 32 streams
# on with no reset and no gap. Then A's rvs-dp restarts: A's rvs-cp fetches
# B's whole table (full resync, rvs-cp --resync-from/--resync-listen, TCP on
# outside0) before its --ready-file says 0, so A preempts only once it knows
# the streams; A takes the VIP back and still no stream breaks. 8 more
# streams, opened through B while A is down and idle across the takeback,
# are the ones only the full resync can save (an idle connection is not sent
# again by B's sync master); they must go on through A.
# Printed: streams kept, entries synced to B, the resync (entries, time), the
# request loop's outages and the streams' longest stalls.
# Namespaces hs-c, hs-sw, hs-a, hs-b, hs-s1..3; /run/hs-{a,b}-lab; EAL file
# prefixes hs-a, hs-b: never in the way of ha_failover.sh (ha-*).
source "$(dirname "$0")/lib.sh"
MODE=${1:-nat}
case $MODE in nat|dr) ;; *) die "mode must be nat or dr" ;; esac
P=hs
NSS="$P-c $P-sw $P-a $P-b $P-s1 $P-s2 $P-s3"
KEEPALIVED=${KEEPALIVED:-keepalived}
RVS_CP=${RVS_CP:-$E2E_ROOT/target/release/rvs-cp}
PROBE="$E2E_ROOT/tests/e2e/ha_probe.py"
STREAMS="$E2E_ROOT/tests/e2e/ha_streams.py"
NSTREAMS=32 NIDLE=8 SPORT=9000 RESYNC_PORT=8849
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
work=$(mktemp -d /tmp/rvs-e2e-hs.XXXXXX)
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
  nsx $P-s$i nohup python3 "$STREAMS" server $SPORT "$work/st-s$i.log" 200 >"$work/st-s$i.out" 2>&1 &
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
  local peer=b; [ "$d" = b ] && peer=a
  ip netns exec $P-$d "$RVS_CP" --keepalived-conf "$work/keepalived.conf" --ctl /run/$P-$d-lab/rvs.ctl \
    --ready-file /run/$P-$d-lab/ready --metrics-listen off --config-id rvs \
    --resync-listen 10.1.0.${n[$d]}:$RESYNC_PORT --resync-from 10.1.0.${n[$peer]}:$RESYNC_PORT \
    >>"$work/cp-$d.log" 2>&1 </dev/null &
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
  local st_lines
  st_lines=$(sed "s/ 80 {\$/ $SPORT {/" <<<"$rs_port_lines")
  local np=""
  [ "$2" = nopreempt ] && np="    nopreempt"
  {
    cat <<EOF
! rvs failover lab ($MODE): one file for both directors.
global_defs {
    router_id rvs_lab
    ! rvs-cp (--config-id rvs) starts a master and a backup sync daemon on
    ! outside0, syncid VI_OUT's virtual_router_id (51). Hidden from keepalived
    ! (-i a|b), which would start the kernel's IPVS sync daemon on it (and,
    ! with no IPVS in this kernel, its VRRP process dies).
@rvs lvs_sync_daemon outside0 VI_OUT
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
virtual_server $VIP $SPORT {
    delay_loop 1
    lb_algo rr
    lb_kind $( [ "$MODE" = nat ] && echo NAT || echo DR )
    protocol TCP
$st_lines
}
EOF
  } > "$1"
}

write_toml a; write_toml b
write_keepalived "$work/keepalived.conf" preempt
write_keepalived "$work/keepalived-nopreempt.conf" nopreempt
out=$("$RVS_CP" --keepalived-conf "$work/keepalived.conf" --config-id rvs --config-test 2>&1) || { echo "$out"; die "rvs-cp --config-test refused the lab's keepalived.conf"; }
ok "rvs-cp --config-test: $(grep -c '^-a' <<<"$out") real servers"
nsx $P-a "$KEEPALIVED" -t -f "$work/keepalived.conf" -i a >/dev/null 2>&1 && ok "keepalived -t accepts it" \
  || fail "keepalived -t refuses the lab's keepalived.conf"

say "directors: rvs-dp, rvs-cp, keepalived"
start_dp a; start_dp b
ok "A: $(nsx $P-a ip -br addr | grep -E 'outside0|inside0' | tr -s ' ' | paste -sd';')"
start_cp a; start_cp b
# daemons D: the sync daemons rvs-dp on D runs, one line.
daemons() { adm_of "$1" -L --daemon 2>/dev/null | paste -sd';'; }
for d in a b; do
  for _ in $(seq 100); do [ "$(adm_of $d -Ln 2>/dev/null | grep -c -- '->.*Masq\|->.*Route')" = 6 ] && break; sleep 0.1; done
  expect_eq "$(adm_of $d -Ln | grep -c -- '->.*Masq\|->.*Route')" 6 "director $d: rvs-cp applied the 2 x 3 real servers"
done
for d in a b; do
  for _ in $(seq 50); do [ "$(adm_of $d -L --daemon 2>/dev/null | grep -c 'syncid=51')" = 2 ] && break; sleep 0.1; done
  expect_eq "$(adm_of $d -L --daemon | grep -c 'mcast=outside0, syncid=51')" 2 "director $d: rvs-cp started master and backup from lvs_sync_daemon"
done
ok "A: $(daemons a)"
start_ka a; start_ka b
wait_log "$work/dp-a.log" 100 "rvs-dp: owns VIP $VIP" || { tail -20 "$work/ka-a.log"; die "A never took the VIP"; }
[ "$MODE" = nat ] && { wait_log "$work/dp-a.log" 50 "owns address 10.2.0.1 " || fail "A never took the inside gateway 10.2.0.1"; }
ok "A is master: $(grep "rvs-dp: owns VIP" "$work/dp-a.log" | tail -1)"
for _ in $(seq 50); do [ "$(nsx $P-c curl -s -m 1 http://$VIP/ 2>/dev/null)" != "" ] && break; sleep 0.1; done
expect_eq "$(nsx $P-c curl -s -m 2 http://$VIP/ | cut -c1)" s "a request through A"

mac_a=02:00:0a:01:00:02 mac_b=02:00:0a:01:00:03
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
  measure "$2" "$1" -
}

# synced_entries D: director D's connection entries for the stream service.
synced_entries() { adm_of "$1" -Lnc 2>/dev/null | grep -c " $VIP:$SPORT " || true; }

nsx $P-c python3 "$STREAMS" client $VIP $SPORT $NSTREAMS "$work/streams.log" "$work/stop" 150 &
st_pid=$!
# Every stream past the sync threshold (its 3rd packet) on A, and on B by sync.
for _ in $(seq 50); do [ "$(synced_entries b)" -ge $NSTREAMS ] && break; sleep 0.1; done
sleep 1
on_a=$(synced_entries a) on_b=$(synced_entries b)
expect_eq "$on_a" $NSTREAMS "A: stream connections in its table"
expect_eq "$on_b" $NSTREAMS "B: stream connections synced from A before the failure"
ok "B: $(daemons b)"

say "kill -9 A's rvs-dp"
mark_logs
ev=$(now); kill -KILL "${dp_pid[a]}"
wait_log "$work/dp-b.log" 30 "rvs-dp: owns VIP $VIP" || fail "B did not take the VIP"
[ "$MODE" = nat ] && { wait_log "$work/dp-b.log" 30 "owns address 10.2.0.1 " || fail "B did not take the gateway 10.2.0.1"; }
measure "kill -9 rvs-dp A -> B" "$ev" 0.5
wait_owner $mac_b && ok "B answers ARP for the VIP" || fail "B does not answer ARP"
sleep 1
read -r stalled longest < <(python3 "$STREAMS" stalls "$work/streams.log" "$ev" 4)
ok "$stalled of $NSTREAMS streams paused across the failover, the longest for $longest s"
echo "$MODE | streams' longest stall, kill -9 A -> B | $longest | $stalled streams paused | -" >> "$work/outages"
# NIDLE more streams, opened through B while A is down (B's master sends
# them, nobody hears), idle after 1 s: no packet, so no sync master sends them
# again. Only the full resync can give them to A before it takes the VIP back.
nsx $P-c python3 "$STREAMS" client $VIP $SPORT $NIDLE "$work/idle.log" "$work/stop" 150 100 "$work/resume" &
idle_pid=$!
for _ in $(seq 50); do [ "$(synced_entries b)" -ge $((NSTREAMS + NIDLE)) ] && break; sleep 0.1; done
sleep 1  # past their first second of sending: idle from here on
expect_eq "$(synced_entries b)" $((NSTREAMS + NIDLE)) "B: the $NSTREAMS streams and the $NIDLE idle ones"

say "A's rvs-dp restarts: full resync from B, then A preempts"
mark_logs
ev=$(now); start_dp a
wait_log "$work/dp-a.log" 150 "rvs-dp: owns VIP $VIP" || fail "A did not take the VIP back"
took=$(python3 -c "print(f'{$(now) - $ev:.3f}')")
wait_owner $mac_a && ok "A answers ARP for the VIP again, $took s after its restart" || fail "A does not answer ARP"
resync_line=$( (grep "full resync from" "$work/cp-a.log" || true) | tail -1)
[ -n "$resync_line" ] || fail "A's rvs-cp logged no full resync"
resync_n=$(sed -n 's/.*full resync from [^ ]*: \([0-9]*\) entries in \([0-9]*\) ms.*/\1/p' <<<"$resync_line")
resync_ms=$(sed -n 's/.*full resync from [^ ]*: \([0-9]*\) entries in \([0-9]*\) ms.*/\2/p' <<<"$resync_line")
ok "A's rvs-cp: ${resync_line##*INFO }"
if [ "${resync_n:-0}" -ge $((NSTREAMS + NIDLE)) ]; then ok "the resync carried at least the $((NSTREAMS + NIDLE)) streams ($resync_n entries)"
else fail "the resync carried ${resync_n:-no} entries, fewer than the $((NSTREAMS + NIDLE)) streams"; fi
measure "rvs-dp A restarted -> A (preempt)" "$ev" -
read -r stalled2 longest2 < <(python3 "$STREAMS" stalls "$work/streams.log" "$ev" 8)
ok "$stalled2 of $NSTREAMS streams paused across the takeback, the longest for $longest2 s"
echo "$MODE | streams' longest stall, takeback -> A | $longest2 | $stalled2 streams paused | -" >> "$work/outages"
touch "$work/resume"  # the idle streams go on, now through A
sleep 2
touch "$work/stop"
for _ in $(seq 150); do kill -0 $st_pid 2>/dev/null || kill -0 $idle_pid 2>/dev/null || break; sleep 0.1; done
kill -0 $st_pid 2>/dev/null && fail "the stream client did not finish within 15 s"
kill -0 $idle_pid 2>/dev/null && fail "the idle stream client did not finish within 15 s"
sleep 0.5
kept=$(grep -c '^end [0-9]* ok ' "$work/streams.log" || true)
expect_eq "$kept" $NSTREAMS "streams that ran to the end (A, B, A again), every byte acknowledged"
idle_kept=$(grep -c '^end [0-9]* ok ' "$work/idle.log" || true)
expect_eq "$idle_kept" $NIDLE "idle streams (opened through B, idle across the takeback) that ran to the end through A"
cat "$work"/st-s*.log > "$work/st-all.log"
srv_ok=$(grep -c '^[0-9]* ok ' "$work/st-all.log" || true)
expect_eq "$srv_ok" $((NSTREAMS + NIDLE)) "streams the real servers saw end cleanly, in sequence"
broken=$(grep -v '^[0-9]* ok ' "$work/st-all.log" || true)
[ -z "$broken" ] || { fail "real servers saw broken streams:"; echo "$broken" | head -10; }
{ grep -h '^end [0-9]* fail' "$work/streams.log" "$work/idle.log" || true; } | head -5
bytes=$(awk '$1=="end" && $3=="ok" {s+=$4} END {print s*8}' "$work/streams.log")

# B's sync counters as rvsadm -L --daemon --json gives them, then its exit report.
counters_b=$(adm_of b -L --daemon --json | python3 -c '
import json, sys
c = json.load(sys.stdin).get("SyncCounters") or {}
print(" ".join(f"{k}={c.get(k, 0)}" for k in ("sent", "dropped", "installed", "updated", "messages_accepted")),
      "refused=" + (",".join(f"{k}:{v}" for k, v in c.get("refused", {}).items()) or "none"))')
ok "B's sync counters (rvsadm -L --daemon --json): $counters_b"
case "$counters_b" in *installed=0\ *|"") fail "B's counters show no installed entry" ;; esac
kill -TERM "${dp_pid[b]}" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "${dp_pid[b]}" 2>/dev/null || break; sleep 0.1; done
installed=$( (grep -o 'sync_installed [0-9]*' "$work/dp-b.out" || true) | awk '{s+=$2} END {print s+0}')
refused=$( (grep -o 'sync_refused [0-9]*' "$work/dp-b.out" || true) | awk '{s+=$2} END {print s+0}')

say "summary ($MODE)"
echo "streams kept: $kept of $NSTREAMS ($bytes bytes checked in sequence), idle streams kept: $idle_kept of $NIDLE"
echo "full resync of A from B: ${resync_n:-?} entries in ${resync_ms:-?} ms; A took the VIP back $took s after its rvs-dp restarted"
echo "entries synced to B before the kill: $on_b stream connections; B installed $installed new entries in all (refused $refused; its exit report)"
echo "request loop outage, and the streams' longest stall:"
cat "$work/outages"
if [ "$FAILS" -gt 0 ]; then
  echo "ha_sync $MODE: $FAILS check(s) failed"
  for d in a b; do echo "--- dp-$d"; tail -30 "$work/dp-$d.log"; echo "--- cp-$d"; tail -10 "$work/cp-$d.log"; done
  exit 1
fi
echo "ha_sync $MODE: all checks passed"
