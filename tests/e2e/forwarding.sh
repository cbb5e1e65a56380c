#!/usr/bin/env bash
# End-to-end: rvs-dp forwarding real kernel TCP/UDP between netns hosts.
#   tests/e2e/forwarding.sh nat|dr|tun
# Every check the data-plane issue lists for one forwarding method.
source "$(dirname "$0")/lib.sh"
MODE=${1:?mode: nat, dr or tun}
trap lab_down EXIT
lab_down
say "lab up ($MODE)"
lab_up "$MODE"
F=$(fwd_flag)

say "configure rr services with rvsadm"
adm -A -t $VIP:80 -s rr || die "rvsadm -A"
adm -A -u $VIP:53 -s rr || die "rvsadm -A udp"
for i in 1 2 3; do
  adm -a -t $VIP:80 -r "$(rs_addr $i):80" "$F" -w 1 || die "rvsadm -a"
  adm -a -u $VIP:53 -r "$(rs_addr $i):53" "$F" -w 1 || die "rvsadm -a udp"
done
adm -Ln

say "300 HTTP requests with rr: 100 each, none failed"
expect_eq "$(http_spread 300)" "s1=100 s2=100 s3=100 failed=0" "rr spread"

say "wrr 3:2:1: 150/100/50"
adm -E -t $VIP:80 -s wrr
adm -e -t $VIP:80 -r "$(rs_addr 1):80" "$F" -w 3
adm -e -t $VIP:80 -r "$(rs_addr 2):80" "$F" -w 2
adm -e -t $VIP:80 -r "$(rs_addr 3):80" "$F" -w 1
expect_eq "$(http_spread 300)" "s1=150 s2=100 s3=50 failed=0" "wrr spread"

say "a 10 MB transfer on one connection arrives intact"
want=$(blob_sha 10485760)
got=$(client curl -s -m 60 -D /tmp/rvs-e2e-h.txt "http://$VIP/blob?size=10485760" | sha256sum | cut -d' ' -f1)
expect_eq "$got" "$want" "10 MB sha256"
servers=$(grep -ci '^x-server:' /tmp/rvs-e2e-h.txt || true)
expect_eq "$servers" 1 "served by one real server"

say "UDP to $VIP:53 is balanced and answered"
expect_eq "$(udp_spread 30)" "s1=10 s2=10 s3=10 failed=0" "udp rr spread"

say "weight 0: no new connections, the open one keeps working"
adm -e -t $VIP:80 -r "$(rs_addr 1):80" "$F" -w 1
adm -e -t $VIP:80 -r "$(rs_addr 2):80" "$F" -w 0
adm -e -t $VIP:80 -r "$(rs_addr 3):80" "$F" -w 0
client curl -s -m 20 "http://$VIP/slow?secs=3" > /tmp/rvs-e2e-slow.txt &
slow=$!
sleep 0.7
adm -e -t $VIP:80 -r "$(rs_addr 1):80" "$F" -w 0
adm -e -t $VIP:80 -r "$(rs_addr 2):80" "$F" -w 1
adm -e -t $VIP:80 -r "$(rs_addr 3):80" "$F" -w 1
expect_eq "$(http_spread 30)" "s1=0 s2=15 s3=15 failed=0" "quiesced s1 gets nothing new"
wait $slow || fail "slow request failed"
expect_eq "$(sort -u /tmp/rvs-e2e-slow.txt)" "s1" "open connection finished on s1"
expect_eq "$(wc -l < /tmp/rvs-e2e-slow.txt)" 15 "all of its 15 lines arrived"

say "removing a server takes it out; adding one brings it in"
adm -e -t $VIP:80 -r "$(rs_addr 1):80" "$F" -w 1
adm -d -t $VIP:80 -r "$(rs_addr 2):80"
expect_eq "$(http_spread 30)" "s1=15 s2=0 s3=15 failed=0" "s2 removed"
adm -a -t $VIP:80 -r "$(rs_addr 2):80" "$F" -w 1
expect_eq "$(http_spread 30)" "s1=10 s2=10 s3=10 failed=0" "s2 back"

say "ICMP echo to the director"
client ping -c 2 -W 2 10.1.0.1 >/dev/null && ok "ping 10.1.0.1" || fail "ping 10.1.0.1"
if [ "$MODE" = nat ]; then
  ip netns exec $RVS_LAB-s1 ping -c 2 -W 2 10.2.0.1 >/dev/null && ok "ping 10.2.0.1" || fail "ping 10.2.0.1"
fi

say "listings"
adm -Ln --stats
adm -Lnc > /tmp/rvs-e2e-conns.txt
head -5 /tmp/rvs-e2e-conns.txt
# Over 600 connections are still listed (TIME_WAIT lasts 120 s): more than one
# reply page, so this also proves the paged listing.
n=$(grep -cE '^(TCP|UDP) ' /tmp/rvs-e2e-conns.txt || true)
[ "$n" -ge 600 ] && ok "-Lnc lists $n connections" || fail "-Lnc listed only $n connections"

lab_down
if [ "$FAILS" -gt 0 ]; then echo "e2e $MODE: $FAILS check(s) failed"; exit 1; fi
echo "e2e $MODE: all checks passed"
