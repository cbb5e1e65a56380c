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
# again by B's sync master); they must go on through A. rvs-cp's /metrics
# on both count it: A's fetch and its entries, B's listing served.
# Printed: streams kept, entries synced to B, the resync (entries, time), the
# request loop's outages and the streams' longest stalls.
# Namespaces hs-c, hs-sw, hs-a, hs-b, hs-s1..3; /run/hs-{a,b}-lab; EAL file
# prefixes hs-a, hs-b: never in the way of ha_failover.sh (ha-*).
source "$(dirname "$0")/lib.sh"
MODE=${1:-nat}
case $MODE in nat|dr) ;; *) die "mode must be nat or dr" ;; esac
P=hs
STREAMS="$E2E_ROOT/tests/e2e/ha_streams.py"
NSTREAMS=32 NIDLE=8 SPORT=9000 RESYNC_PORT=8849 METRICS_PORT=19290
# The lab's additions (see ha_lib.sh): a stream server beside each real
# server, rvs-cp's resync with its peer, the sync daemons, the streams' service.
ha_server_extra() {
  nsx $P-s$1 nohup python3 "$STREAMS" server $SPORT "$work/st-s$1.log" 200 >"$work/st-s$1.out" 2>&1 &
}
ha_cp_args() {
  local peer=b; [ "$1" = b ] && peer=a
  echo --config-id rvs --resync-listen 10.1.0.${n[$1]}:$RESYNC_PORT --resync-from 10.1.0.${n[$peer]}:$RESYNC_PORT \
    --metrics-listen 127.0.0.1:$METRICS_PORT
}
# One value of director $1's /metrics: the line starting with "$2 ".
metric() { nsx $P-$1 curl -s -m 3 "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v k="$2" '$1 == k {print $2}'; }
HA_GLOBAL_DEFS='    ! rvs-cp (--config-id rvs) starts a master and a backup sync daemon on
    ! outside0, syncid VI_OUT'"'"'s virtual_router_id (51). Hidden from keepalived
    ! (-i a|b), which would start the kernel'"'"'s IPVS sync daemon on it (and,
    ! with no IPVS in this kernel, its VRRP process dies).
@rvs lvs_sync_daemon outside0 VI_OUT
    ! Sync messages and full resyncs only from the two directors (the backup
    ! daemon filters on it; rvs-cp --resync-listen answers only them).
@rvs sync_peer 10.1.0.2 10.1.0.3'
ha_services_extra() { virtual_server $SPORT; }
source "$(dirname "$0")/ha_lib.sh"

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
fetched=$(metric a rvs_resync_fetched_entries_total)
fetches=$(metric a 'rvs_resync_fetches_total{result="ok"}')
served=$(metric b 'rvs_resync_listings_total{result="served"}')
if [ "${fetched:-0}" -ge "${resync_n:-1}" ] && [ "${fetches:-0}" -ge 1 ] && [ "${served:-0}" -ge 1 ]; then
  ok "/metrics: A fetched $fetches time(s), $fetched entries; B served $served listing(s)"
else fail "/metrics: A fetched '${fetches:-}' time(s), '${fetched:-}' entries; B served '${served:-}'"; fi
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
