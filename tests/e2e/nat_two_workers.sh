#!/usr/bin/env bash
# NAT with 2 workers: af_packet qpairs=2 spreads flows over both queues, so
# replies often land on the worker that does not own their connection. Every
# reply must be handed to the owner and translated there.
source "$(dirname "$0")/lib.sh"
MODE=nat
trap lab_down EXIT
lab_down
say "lab up (nat, 2 workers)"
lab_up nat --workers 2
adm -A -t $VIP:80 -s rr
for i in 1 2 3; do adm -a -t $VIP:80 -r "$(rs_addr $i):80" -m; done

say "200 requests from 8 client addresses all succeed"
# A connection's owner is chosen from its client address, so one address
# would put every connection on one worker: use eight.
for k in $(seq 20 27); do client ip addr add 10.1.0.$k/24 dev eth0; done
out=$(client bash -c "for i in \$(seq 200); do curl -s -m 3 --interface 10.1.0.\$((20 + i % 8)) http://$VIP/ || echo failed; done" | sort | uniq -c)
echo "$out"
nfail=$(awk '$2=="failed"{print $1}' <<<"$out")
expect_eq "${nfail:-0}" 0 "failed requests"

say "counters: both workers own connections, replies were redirected to their owner"
"$LAB" down >/dev/null
log=/tmp/$RVS_LAB-lab-last-dp.log
grep '^worker' "$log" || die "no final counters in $log"
field() { sed -n "s/^worker $1: .* $2 \([0-9]*\).*/\1/p" "$log" | head -1; }
tot_conns=0; tot_out=0; redirected=0
for w in 0 1; do
  conns=$(field $w conns); nat_out=$(field $w nat_out); rin=$(sed -n "s/^worker $w: .*redirected out [0-9]* in \([0-9]*\).*/\1/p" "$log")
  [ "${conns:-0}" -gt 0 ] && ok "worker $w owns $conns connections" || fail "worker $w owns no connections"
  [ "${nat_out:-0}" -gt 0 ] && ok "worker $w translated $nat_out replies" || fail "worker $w translated no replies"
  tot_conns=$((tot_conns + ${conns:-0})); tot_out=$((tot_out + ${nat_out:-0})); redirected=$((redirected + ${rin:-0}))
done
expect_eq "$tot_conns" 200 "connections created"
[ "$redirected" -gt 0 ] && ok "$redirected packets handed to their owner" || fail "no redirects: flows were not spread"
if grep -q 'drop.not_for_us\|drop.out_no_conn' "$log"; then
  fail "replies found no connection on the worker that handled them: $(grep -o 'drop.[a-z_]* [0-9]*' "$log" | tr '\n' ' ')"
else
  ok "no reply was handled by a worker without its connection"
fi
if [ "$FAILS" -gt 0 ]; then echo "e2e nat 2 workers: $FAILS check(s) failed"; exit 1; fi
echo "e2e nat 2 workers: all checks passed"
