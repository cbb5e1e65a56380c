#!/usr/bin/env bash
# The virtio path: rvs-dp on two net_virtio_user ports, dpdk-testpmd on the
# two net_vhost backends as client and real-server side. No kernel interfaces.
#
#   tests/virtio/run.sh          (root; needs dpdk-testpmd, python3, 2+ cores)
#
# Env: RVS_DP (default $CARGO_TARGET_DIR/release/rvs-dp, else target/release),
#      TESTPMD (dpdk-testpmd), VT_SECONDS (traffic time of the count phase, 3),
#      VT_PAGES (2 MB hugepages to have free, 256), VT_KEEP=1 (keep the work dir).
#
#   testpmd                                   rvs-dp
#   vhost0 (server) ==== vhost0.sock ==== virtio_user0  "client"  10.254.0.1/24
#   vhost1 (server) ==== vhost1.sock ==== virtio_user1  "servers" 10.2.0.1/24
#
# testpmd's flowgen engine (DPDK 22.11) sends UDP 10.254.0.0:1000 ->
# 10.253.0.<flow>:1001 to the fixed MAC 00:01:02:03:04:01 on both of its ports;
# it ignores --eth-peer and --tx-ip (the script still passes that MAC as
# --eth-peer, for a flowgen that honours it), so rvs-dp's client port takes it and
# the VIPs are 10.253.0.0-3. VIP i (UDP 1001, NAT) has one real server,
# 10.2.0.(11+i):(5300+i), so every output packet's rewrite is known exactly.
# flowgen also receives (and counts) on both ports: what rvs-dp forwards shows
# up as testpmd's port-1 RX. flowgen's own packets on port 1 are addressed to
# a MAC that is not rvs-dp's port-1 MAC, so rvs-dp drops them as not_our_mac.
#
# Phase 1 (headers): the same config, but rvs-dp's port 1 is a net_pcap TX
#   capture; python checks every captured frame, field by field.
# Phase 2 (counts): both ports virtio for VT_SECONDS. testpmd is driven
#   through a FIFO (-i): flowgen, then rxonly to drain what rvs-dp still
#   sends, then rvs-dp is stopped, so the two sides' counters must agree
#   exactly (a virtio ring still holding packets when its peer disconnects
#   would lose them otherwise).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
RVS_DP=${RVS_DP:-${CARGO_TARGET_DIR:-$root/target}/release/rvs-dp}
TESTPMD=${TESTPMD:-dpdk-testpmd}
SECONDS_TRAFFIC=${VT_SECONDS:-3}
PAGES=${VT_PAGES:-256}
DEADLINE=55 # the whole run, seconds

T0=$(date +%s%N)
elapsed() { echo "$(( ($(date +%s%N) - T0) / 1000000 )) ms"; }
log() { echo "virtio: [$(elapsed)] $*"; }

W=$(mktemp -d /tmp/rvs-virtio.XXXXXX)
TAG=rvsvt$$
TP_PID= DP_PID= WATCHDOG= FIFO_OPEN= FAILED=1
export HUGEPAGES_STATE=$W/huge.state HUGEPAGES_DIR=$W/huge

show_logs() {
  for f in "$W"/tp.log "$W"/dp*.err "$W"/dp*.out; do
    [ -f "$f" ] || continue
    echo "----- $f (last 40 lines)" >&2
    tail -n 40 "$f" >&2
  done
}

stop_pid() { # stop_pid PID SIGNAL: signal, wait up to 5 s, then KILL
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -"$2" "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e # every step below must run, whatever the one before it did
  [ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null
  stop_pid "$DP_PID" INT
  if [ -n "$FIFO_OPEN" ]; then exec 3>&-; fi # EOF on its stdin makes testpmd quit
  stop_pid "$TP_PID" INT
  if [ "$FAILED" = 1 ] || [ "$rc" -ne 0 ]; then
    show_logs
    rc=1
  fi
  rm -rf "/var/run/dpdk/$TAG-tp" "/var/run/dpdk/$TAG-dp1" "/var/run/dpdk/$TAG-dp2"
  "$root/scripts/hugepages.sh" teardown | sed 's/^/virtio: /' || rc=1
  if [ "${VT_KEEP:-0}" = 1 ]; then
    echo "virtio: kept $W"
  else
    rm -rf "$W"
  fi
  if [ "$rc" -eq 0 ]; then
    log "PASS"
  else
    echo "virtio: FAIL (after $(elapsed))" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "virtio: interrupted" >&2; exit 1' INT TERM

fail() {
  echo "virtio: FAIL: $*" >&2
  exit 1
}

# --- prerequisites -------------------------------------------------------
[ "$(id -u)" -eq 0 ] || fail "must run as root (hugepages, vhost sockets)"
command -v "$TESTPMD" >/dev/null || fail "$TESTPMD not found (apt-get install dpdk)"
command -v python3 >/dev/null || fail "python3 not found"
[ -x "$RVS_DP" ] || fail "no rvs-dp at $RVS_DP (cargo build --release --features dpdk -p rvs-dp)"
[ "$(nproc)" -ge 2 ] || fail "needs 2 CPUs: testpmd forwards on lcore 1, rvs-dp polls on lcore 0"

(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$DEADLINE" &
  sp=$!
  wait "$sp"
  echo "virtio: deadline of ${DEADLINE}s reached" >&2
  kill -TERM $$ 2>/dev/null
) &
WATCHDOG=$!

"$root/scripts/hugepages.sh" setup "$PAGES" | sed 's/^/virtio: /' ||
  fail "hugepages could not be set up; virtio-user needs them (see scripts/hugepages.sh)"
[ -n "$(awk -v d="$W/huge" '$2 == d && $3 == "hugetlbfs"' /proc/mounts)" ] ||
  fail "hugetlbfs is not mounted at $W/huge"

# --- config --------------------------------------------------------------
CLIENT_MAC=00:01:02:03:04:01 # flowgen's fixed destination MAC
SERVERS_MAC=02:00:0a:02:00:01
NVIP=4
write_config() { # write_config FILE PORT1_DEVICE
  {
    printf '[dataplane]\nworkers = [0]\nconn_capacity = 4096\n\n'
    printf '[[port]]\nname = "client"\ndevice = "net_virtio_user0,path=%s/vhost0.sock,queue_size=256"\n' "$W"
    printf 'address = "10.254.0.1/24"\nmac = "%s"\n\n' "$CLIENT_MAC"
    printf '[[port]]\nname = "servers"\ndevice = "%s"\naddress = "10.2.0.1/24"\nmac = "%s"\n\n' "$2" "$SERVERS_MAC"
    for i in $(seq 0 $((NVIP - 1))); do
      printf '[[neighbor]]\nip = "10.2.0.%d"\nmac = "02:00:0a:02:00:%02x"\n\n' $((11 + i)) $((11 + i))
    done
    for i in $(seq 0 $((NVIP - 1))); do
      printf '[[virtual_server]]\naddress = "10.253.0.%d"\nport = 1001\nprotocol = "UDP"\n' "$i"
      printf 'lb_algo = "rr"\nlb_kind = "NAT"\n'
      printf '[[virtual_server.real_server]]\naddress = "10.2.0.%d"\nport = %d\n\n' $((11 + i)) $((5300 + i))
    done
  } > "$1"
}
write_config "$W/rvs-pcap.toml" "net_pcap0,tx_pcap=$W/out.pcap"
write_config "$W/rvs-virtio.toml" "net_virtio_user1,path=$W/vhost1.sock,queue_size=256"

# --- testpmd: the vhost side, driven through a FIFO ------------------------
mkfifo "$W/tp.fifo"
# -o0: its command output must reach the log as it happens (prompts are the
# handshake below). --disable-link-check: vhost links stay down until rvs-dp
# attaches, and testpmd would otherwise wait 9 s for them before any command.
stdbuf -o0 -e0 "$TESTPMD" -l 0-1 --file-prefix "$TAG-tp" --huge-dir "$W/huge" --huge-unlink --no-pci \
  --log-level=lib.eal:error \
  --vdev "net_vhost0,iface=$W/vhost0.sock,client=0,queues=1" \
  --vdev "net_vhost1,iface=$W/vhost1.sock,client=0,queues=1" \
  -- -i --nb-cores=1 --total-num-mbufs=8192 --forward-mode=flowgen \
  --flowgen-flows=$NVIP --eth-peer=0,$CLIENT_MAC --eth-peer=1,$CLIENT_MAC \
  --disable-link-check <"$W/tp.fifo" >"$W/tp.log" 2>&1 &
TP_PID=$!
exec 3>"$W/tp.fifo"
FIFO_OPEN=1
TP_CMDS=0
prompts() { grep -o "testpmd> " "$W/tp.log" 2>/dev/null | wc -l; }
tp() { # tp COMMAND...: send one command and wait for the prompt after it
  echo "$*" >&3
  TP_CMDS=$((TP_CMDS + 1))
  for _ in $(seq 100); do
    [ "$(prompts)" -gt "$TP_CMDS" ] && return 0
    kill -0 "$TP_PID" 2>/dev/null || fail "testpmd exited (at '$*')"
    sleep 0.05
  done
  fail "testpmd did not finish '$*' within 5 s"
}

for _ in $(seq 100); do
  [ -S "$W/vhost0.sock" ] && [ -S "$W/vhost1.sock" ] && break
  kill -0 "$TP_PID" 2>/dev/null || fail "testpmd exited during start-up"
  sleep 0.1
done
[ -S "$W/vhost1.sock" ] || fail "testpmd did not create the vhost sockets"
for _ in $(seq 100); do [ "$(prompts)" -ge 1 ] && break; sleep 0.1; done
[ "$(prompts)" -ge 1 ] || fail "testpmd shows no prompt"
log "testpmd up (vhost0/vhost1 listening)"

start_dp() { # start_dp PHASE CONFIG
  "$RVS_DP" -l 0 --file-prefix "$TAG-dp$1" --huge-dir "$W/huge" --single-file-segments \
    --no-pci --log-level=lib.eal:error -- --config "$2" --ctl "$W/dp$1.ctl" \
    >"$W/dp$1.out" 2>"$W/dp$1.err" </dev/null &
  DP_PID=$!
  for _ in $(seq 100); do
    grep -q "worker(s) on lcores" "$W/dp$1.err" 2>/dev/null && break
    kill -0 "$DP_PID" 2>/dev/null || fail "rvs-dp (phase $1) exited during start-up"
    sleep 0.1
  done
  grep -q "worker(s) on lcores" "$W/dp$1.err" || fail "rvs-dp (phase $1) did not come up in 10 s"
  sleep 0.3 # let the vhost side see the devices ready
}

stop_dp() { # stop_dp PHASE: SIGINT, then rvs-dp prints its counters and exits
  kill -INT "$DP_PID" 2>/dev/null || fail "rvs-dp (phase $1) died while running"
  for _ in $(seq 100); do kill -0 "$DP_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$DP_PID" 2>/dev/null && fail "rvs-dp (phase $1) did not exit within 10 s of SIGINT"
  local rc=0
  wait "$DP_PID" || rc=$?
  DP_PID=
  [ "$rc" -eq 0 ] || fail "rvs-dp (phase $1) exited with status $rc"
  # Its map files outlive it (virtio-user cannot use --huge-unlink).
  rm -f "$W/huge/$TAG-dp$1"map_*
}

# --- phase 1: capture what rvs-dp sends toward the real servers -------------
start_dp 1 "$W/rvs-pcap.toml"
tp start
sleep 0.3
tp stop
stop_dp 1
log "phase 1: $(stat -c %s "$W/out.pcap") bytes captured"
python3 "$here/check_pcap.py" "$W/out.pcap" "$W/rvs-pcap.toml" "$SERVERS_MAC" ||
  fail "the rewritten headers are wrong (see above)"
log "phase 1: headers ok"

# --- phase 2: count through both virtio ports -----------------------------
tp clear port stats all
start_dp 2 "$W/rvs-virtio.toml"
tp set fwd flowgen
tp start
sleep "$SECONDS_TRAFFIC"
tp stop
# Drain: keep receiving without generating while rvs-dp empties its queues.
tp set fwd rxonly
tp start
sleep 0.5
stop_dp 2
tp stop
tp show port stats all
echo quit >&3
exec 3>&-
FIFO_OPEN=
for _ in $(seq 100); do kill -0 "$TP_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$TP_PID" 2>/dev/null && fail "testpmd did not quit"
wait "$TP_PID" || true
TP_PID=
log "phase 2: done, checking counters"
python3 "$here/check_counts.py" "$W/dp2.out" "$W/tp.log" "$NVIP" || fail "counters do not add up (see above)"
FAILED=0
