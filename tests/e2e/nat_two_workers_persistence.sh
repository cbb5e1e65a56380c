#!/usr/bin/env bash
# Persistence with a coarse netmask across 2 workers (a scenario of its own,
# beside nat_two_workers.sh, in the same 2-worker NAT lab).
#
# `rvsadm -A -t VIP:80 -s rr -p 300 -M 255.255.255.0` makes the whole client
# /24 one persistence key: every connection from 10.1.0.20-27 must reach ONE
# real server, whichever worker handles it. The persistence template lives in
# a worker's connection table, and a connection's owning worker is chosen
# from the full client address, so under that rule these eight addresses are
# split over both workers (worker 0: .21 .24 .26 .27, worker 1: .20 .22 .23
# .25), each worker builds its own template, and the clients spread over real
# servers. This scenario fails until the ownership rule honours the netmask.
#
# The scheduler is wlc (ipvsadm's default). Its real-server connection counts
# are shared by the workers, so the second worker to schedule sees the first
# one's connection and picks another server. (With rr, each worker's own
# round-robin position starts at the first server, so two fresh workers both
# pick it and the split would go unseen.)
source "$(dirname "$0")/lib.sh"
MODE=nat
trap lab_down EXIT
lab_down
say "lab up (nat, 2 workers)"
lab_up nat --workers 2
adm -A -t $VIP:80 -s wlc -p 300 -M 255.255.255.0 || die "rvsadm -A -p 300 -M 255.255.255.0"
for i in 1 2 3; do adm -a -t $VIP:80 -r "$(rs_addr $i):80" -m || die "rvsadm -a"; done
adm -Ln

persistence_coarse_netmask() {
  say "persistent wlc, netmask /24: 8 clients of 10.1.0.0/24, 5 requests each, all on one real server"
  for k in $(seq 20 27); do client ip addr add 10.1.0.$k/24 dev eth0; done
  # One line per request: "CLIENT SERVER" (SERVER is "failed" if no answer).
  local out
  out=$(client bash -c 'for r in 1 2 3 4 5; do for k in $(seq 20 27); do
          s=$(curl -s -m 3 --interface 10.1.0.$k http://'"$VIP"'/) || s=failed
          echo "10.1.0.$k ${s:-failed}"
        done; done')
  sort <<<"$out" | uniq -c
  local nfail servers k per
  nfail=$(awk '$2=="failed"' <<<"$out" | wc -l)
  expect_eq "$nfail" 0 "failed requests"
  for k in $(seq 20 27); do
    per=$(awk -v c="10.1.0.$k" '$1==c{print $2}' <<<"$out" | sort -u | tr '\n' ' ')
    [ "$(wc -w <<<"$per")" -eq 1 ] && ok "10.1.0.$k -> $per" || fail "10.1.0.$k spread over: $per"
  done
  servers=$(awk '$2!="failed"{print $2}' <<<"$out" | sort -u | tr '\n' ' ')
  [ "$(wc -w <<<"$servers")" -eq 1 ] && ok "the /24 persists on one real server: $servers" \
    || fail "the /24 spread over real servers: $servers(one persistence key, so one server)"
  echo "   connection table (rvsadm -Lnc), first lines:"
  adm -Lnc | head -12 || true
}
persistence_coarse_netmask

say "which workers handled the clients (final counters)"
"$LAB" down >/dev/null
log=/tmp/$RVS_LAB-lab-last-dp.log
grep '^worker' "$log" || die "no final counters in $log"
for w in 0 1; do
  conns=$(sed -n "s/^worker $w: .* conns \([0-9]*\).*/\1/p" "$log" | head -1)
  echo "   worker $w created ${conns:-0} connections "
done
if [ "$FAILS" -gt 0 ]; then echo "e2e nat 2 workers persistence: $FAILS check(s) failed"; exit 1; fi
echo "e2e nat 2 workers persistence: all checks passed"
