#!/usr/bin/env bash
# End-to-end: clients that reuse their ports quickly do not defeat draining.
#   RVS_LAB=NAME tests/e2e/port_reuse.sh nat|dr
# wrk with "Connection: close" from one client address: the real servers
# close first, so the client has no TIME_WAIT and reuses its ephemeral ports
# within seconds, while the director still holds their entries (NAT: in
# TIME_WAIT; DR: in FIN_WAIT, the last state it sees there). After quiescing
# two of three real servers (-w 0) and zeroing the counters (-Z), a second
# wrk run must reach only the third, and Conns must count every connection.
# The director runs with the kernel's default conn_reuse_mode (1) for NAT,
# and with 3 for DR (bit 2: FIN_WAIT of DR/TUN connections too). A control
# run with conn_reuse_mode = 0 (the old behaviour) shows the check detects
# the problem: there the quiesced servers keep getting connections.
source "$(dirname "$0")/lib.sh"
MODE=${1:?mode: nat or dr}
command -v wrk >/dev/null || die "wrk not installed (scripts/install-deps.sh)"
state=${RVS_LAB_DIR:-/tmp/$RVS_LAB-lab}
WRK_SECS=3
WRK_CONNS=20
trap lab_down EXIT
lab_down
say "lab up ($MODE)"
lab_up "$MODE"
F=$(fwd_flag)

configure() {
  adm -C
  adm -A -t $VIP:80 -s rr || die "rvsadm -A"
  for i in 1 2 3; do
    adm -a -t $VIP:80 -r "$(rs_addr $i):80" "$F" -w 1 || die "rvsadm -a"
  done
}

# restart_dp MODE: rvs-dp again with [dataplane] conn_reuse_mode = MODE.
restart_dp() {
  sed -i '/^conn_reuse_mode/d' "$state/rvs.toml"
  sed -i "/^\[dataplane\]/a conn_reuse_mode = $1" "$state/rvs.toml"
  "$LAB" restart-dp >/dev/null
  for _ in $(seq 50); do adm -Ln >/dev/null 2>&1 && break; sleep 0.2; done
  configure
}

# wrk_requests: one bounded wrk run; prints the requests it completed.
wrk_requests() {
  local out
  out=$(client timeout $((WRK_SECS + 10)) wrk -t2 -c$WRK_CONNS -d${WRK_SECS}s --timeout 2s \
    -H "Connection: close" "http://$VIP/" 2>&1) || true
  printf '%s\n' "$out" | sed 's/^/     wrk: /' >&2
  awk '/requests in/{print $1}' <<<"$out"
}

# stat RS COLUMN: Conns (2) or InPkts (3) of real server RS from -Ln --stats --exact.
stat() {
  adm -Ln --stats --exact | awk -v rs="$(rs_addr "$1"):80" -v col="$2" '$1=="->" && $2==rs {print $(col+1)}'
}

# drain_run: wrk, quiesce s2 and s3, -Z, wrk again; sets REQ1 REQ2 C1 C2 C3
# P2 P3, and OPEN: entries of s2 and s3 still open (not FIN_WAIT, TIME_WAIT,
# CLOSE...) when the second run starts.
drain_run() {
  REQ1=$(wrk_requests)
  OPEN=$(adm -Lnc | awk -v a="$(rs_addr 2):80" -v b="$(rs_addr 3):80" \
    '($6==a || $6==b) && ($3=="ESTABLISHED" || $3=="SYN_RECV") {n++} END {print n+0}')
  adm -e -t $VIP:80 -r "$(rs_addr 2):80" "$F" -w 0
  adm -e -t $VIP:80 -r "$(rs_addr 3):80" "$F" -w 0
  adm -Z
  REQ2=$(wrk_requests)
  sleep 1
  adm -Ln --stats --exact
  C1=$(stat 1 2); C2=$(stat 2 2); C3=$(stat 3 2); P2=$(stat 2 3); P3=$(stat 3 3)
  echo "   first run: ${REQ1:-?} requests; after quiescing s2, s3 and -Z: ${REQ2:-?} requests," \
    "Conns s1=$C1 s2=$C2 s3=$C3, InPkts s2=$P2 s3=$P3; s2+s3 entries still open before it: $OPEN"
}

# Control: conn_reuse_mode = 0 keeps sending reused ports to their old server.
say "control: conn_reuse_mode = 0 (a SYN on an old entry follows it)"
restart_dp 0
drain_run
[ "${REQ1:-0}" -ge 2000 ] && ok "wrk reused ports ($REQ1 requests, $WRK_CONNS connections at a time)" \
  || fail "first wrk run too small to reuse ports: ${REQ1:-0} requests"
# What the issue saw: reused ports keep reaching the quiesced servers,
# uncounted (their Conns stay 0, their InPkts grow; s1's Conns fall short).
if [ $((P2 + P3)) -gt 100 ] && [ "$C1" -lt "${REQ2:-0}" ]; then
  ok "control: quiesced s2, s3 got $((P2 + P3)) packets (Conns $((C2 + C3))), s1 counted $C1 of $REQ2: the checks below see the difference"
else
  fail "control: conn_reuse_mode = 0 did not reproduce the problem (InPkts s2+s3 $((P2 + P3)), Conns s1 $C1, requests $REQ2)"
fi

case $MODE in
  nat) reuse=1 ;;   # the kernel's default: TIME_WAIT and CLOSE entries
  dr) reuse=3 ;;    # DR entries end in FIN_WAIT: bit 2 needed, as in the kernel
esac
say "conn_reuse_mode = $reuse: reused ports are scheduled anew"
restart_dp $reuse
drain_run
[ "${REQ1:-0}" -ge 2000 ] && ok "wrk reused ports ($REQ1 requests)" \
  || fail "first wrk run too small to reuse ports: ${REQ1:-0} requests"
expect_eq "$((C2 + C3))" 0 "no new connection to quiesced s2, s3"
# NAT sees every end, so nothing may reach s2, s3 but a late packet or two of
# their last connections. DR sees only the client's side: wrk pipelines a
# second request, the real server answers it with a RST straight to the
# client, and the director never learns that connection ended. Its entry
# stays ESTABLISHED and, as in the kernel (is_new_conn_expected), a SYN from
# that port follows it to its server. So DR allows those, and no more.
if [ "$MODE" = nat ]; then open=0; else open=$OPEN; fi
[ $((P2 + P3)) -le $((20 + 8 * open)) ] && ok "InPkts of s2 + s3: $((P2 + P3)) (entries still open: $open)" \
  || fail "InPkts of quiesced s2 + s3 grew by $((P2 + P3)) (entries still open: $open)"
# wrk counts completed requests; connections still open when it stops are
# counted by the director but not by wrk.
# In DR a stale ESTABLISHED entry can be followed by several connections in a
# row (wrk reuses the port again and again); each of those sent s2 or s3 at
# least one packet, so their InPkts bound how many requests s1 did not count.
# The same holds for stale entries of s1 in states IPVS also follows (SYN_RECV,
# CLOSE_WAIT, LAST_ACK): counted once, used again. Nothing the director sees
# counts those; in 10 runs (with the builds of 8792062 and of this commit)
# they were 5-40 over the s2+s3 packets, with 20 wrk connections; 3 x
# WRK_CONNS bounds them. A reuse that is not rescheduled at all would leave
# thousands uncounted.
if [ "$MODE" = nat ]; then stale=0; else stale=$((P2 + P3 + 3 * WRK_CONNS)); fi
if [ "${REQ2:-0}" -gt 0 ] && [ "$C1" -ge $((REQ2 - stale)) ] && [ "$C1" -le $((REQ2 + 2 * WRK_CONNS)) ]; then
  ok "Conns of s1 counts every connection it got ($C1 for $REQ2 requests)"
else
  fail "Conns of s1 = $C1 for $REQ2 requests (entries still open: $open, packets to s2+s3: $((P2 + P3)))"
fi

lab_down
if [ "$FAILS" -gt 0 ]; then echo "e2e port_reuse $MODE: $FAILS check(s) failed"; exit 1; fi
echo "e2e port_reuse $MODE: all checks passed"
