# The two-director lab of ha_failover.sh and ha_sync.sh. Sourced after
# lib.sh with MODE (nat|dr) and P (the namespace prefix) set; a script may
# define, before sourcing:
#   ha_server_extra I   more servers to start in real server I's namespace
#   ha_cp_args D        more rvs-cp arguments for director D
#   HA_GLOBAL_DEFS      more keepalived.conf global_defs lines
#   ha_services_extra   more keepalived.conf blocks (see virtual_server PORT)
# It builds the namespaces and links, and defines the directors' start and
# stop, the keepalived.conf writer and the outage measure.
NSS="$P-c $P-sw $P-a $P-b $P-s1 $P-s2 $P-s3"
KEEPALIVED=${KEEPALIVED:-keepalived}
RVS_CP=${RVS_CP:-${CARGO_TARGET_DIR:-$E2E_ROOT/target}/release/rvs-cp}
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
work=$(mktemp -d /tmp/rvs-e2e-$P.XXXXXX)
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

declare -F ha_cp_args >/dev/null || ha_cp_args() { :; }

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
  if declare -F ha_server_extra >/dev/null; then ha_server_extra $i; fi
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
    --ready-file /run/$P-$d-lab/ready --metrics-listen off $(ha_cp_args "$d") >>"$work/cp-$d.log" 2>&1 </dev/null &
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
# virtual_server PORT: the VIP on PORT over the three real servers (rr, a
# TCP_CHECK each), as keepalived.conf writes it.
virtual_server() {
  local i
  cat <<EOF
virtual_server $VIP $1 {
    delay_loop 1
    lb_algo rr
    lb_kind $( [ "$MODE" = nat ] && echo NAT || echo DR )
    protocol TCP
EOF
  for i in 1 2 3; do
    cat <<EOF
    real_server $rs_net.1$i $1 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
EOF
  done
  echo "}"
}
write_keepalived() {  # write_keepalived FILE preempt|nopreempt
  local np=""
  [ "$2" = nopreempt ] && np="    nopreempt"
  {
    cat <<EOF
! rvs failover lab ($MODE): one file for both directors.
global_defs {
    router_id rvs_lab
${HA_GLOBAL_DEFS:-}
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
    virtual_server 80
    if declare -F ha_services_extra >/dev/null; then ha_services_extra; fi
  } > "$1"
}

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
