#!/usr/bin/env bash
# Every rvsadm command and listing flag against the real rvs-dp (NAT lab),
# then an rvs-dp restart: rvsadm reconnects, rvs-cp notices the new
# generation and re-applies its configuration.
source "$(dirname "$0")/lib.sh"
MODE=nat
use_workdir adm
lab_down
lab_up nat
has() { if grep -qE -- "$2" <<<"$1"; then ok "$3"; else fail "$3: no /$2/ in:"; echo "$1" | head -20; fi; }
refused() {  # refused "message" args...: the command fails with ipvsadm's message
  local want=$1; shift
  local out rc=0
  out=$(adm "$@" 2>&1) || rc=$?
  if [ $rc -ne 0 ] && grep -qF -- "$want" <<<"$out"; then ok "refused: $want (exit $rc)"; else fail "'$*' gave rc=$rc: $out"; fi
}

say "add, edit, delete services and real servers"
adm -A -t $VIP:80 -s wlc -p 120 -M 255.255.255.0
adm -E -t $VIP:80 -s sh -b sh-port,sh-fallback -p 120 -M 255.255.255.0   # -E replaces every option, as ipvsadm
adm -A -u $VIP:53 -s rr
for i in 1 2 3; do adm -a -t $VIP:80 -r 10.2.0.1$i:80 -m -w $i -x 100 -y 50; done
adm -a -u $VIP:53 -r 10.2.0.11:53 -m
adm -e -t $VIP:80 -r 10.2.0.13:80 -m -w 7
out=$(adm -Ln)
has "$out" "^IP Virtual Server version 1.2.1 \(size=65536\)" "-Ln header"
has "$out" "^TCP  $VIP:80 sh \(sh-fallback,sh-port\) persistent 120 mask 255.255.255.0" "service line with flags, persistence, mask"
has "$out" "  -> 10.2.0.13:80 +Masq +7 +0 +0" "edited weight"
out=$(adm -Ln --thresholds)
has "$out" "10.2.0.11:80 +100 +50" "--thresholds"
adm -d -t $VIP:80 -r 10.2.0.13:80
[ "$(adm -Ln | grep -c '10.2.0.13:80')" = 0 ] && ok "-d removed the real server" || fail "-d"

say "a new VIP is announced with gratuitous ARP"
client timeout 5 tcpdump -l -n -c 1 -i eth0 'arp and arp[6:2] == 1 and arp[24:4] == 0x0a010065' \
  > "$work/garp.txt" 2>/dev/null &
tcpd=$!
sleep 1
adm -A -t 10.1.0.101:80 -s rr
wait $tcpd || true
grep -q 'Request who-has 10.1.0.101 tell 10.1.0.101' "$work/garp.txt" \
  && ok "gratuitous ARP seen by the client: $(cut -c1-90 "$work/garp.txt")" || fail "no gratuitous ARP for 10.1.0.101: $(cat "$work/garp.txt")"
adm -D -t 10.1.0.101:80

say "errors read like ipvsadm's"
refused "Service not defined" -a -t 10.1.0.99:80 -r 10.2.0.11:80 -m
refused "Destination already exists" -a -t $VIP:80 -r 10.2.0.11:80 -m
refused "No such destination" -e -t $VIP:80 -r 10.2.0.99:80 -m
refused "llegal weight specified" -a -t $VIP:80 -r 10.2.0.14:80 -m -w 70000
refused "No such service" -D -t 10.1.0.99:80
refused "Scheduler" -A -t 10.1.0.99:80 -s nosuch

say "traffic, then listings with counters, rates, connections"
adm -E -t $VIP:80 -s rr
adm -D -t $VIP:80 && adm -A -t $VIP:80 -s rr
for i in 1 2 3; do adm -a -t $VIP:80 -r 10.2.0.1$i:80 -m; done
http_spread 30 >/dev/null
sleep 2.5   # the rate estimator samples every 2 s
out=$(adm -Ln --stats); has "$out" "^TCP  $VIP:80 +30 " "--stats counts 30 connections"
out=$(adm -Ln --stats --exact); has "$out" "Conns +InPkts" "--exact header"
out=$(adm -Ln --rate); has "$out" "CPS +InPPS +OutPPS +InBPS +OutBPS" "--rate header"
out=$(adm -Lnc); has "$out" "TIME_WAIT +10.1.0.10:[0-9]+ +$VIP:80 +10.2.0.1[123]:80" "-Lnc lists connections"
out=$(adm -Ln --sort); has "$out" "TCP  $VIP:80 rr" "--sort"
out=$(adm -Ln --json); has "$out" '"Services"' "--json"
out=$(adm --latency); has "$out" "p99" "--latency prints percentiles"

say "timeouts, zero, save and restore, clear"
adm --set 600 60 200
expect_eq "$(adm -L --timeout)" "Timeout (tcp tcpfin udp): 600 60 200" "--set / --timeout"
adm -Z
out=$(adm -Ln --stats); has "$out" "^TCP  $VIP:80 +0 +0 +0 +0 +0" "-Z zeroed the counters"
adm -S -n > "$work/save.txt"
cat "$work/save.txt"
adm -C
expect_eq "$(adm -Ln | grep -c '^[TU][CD]P')" 0 "-C cleared every service"
adm -R < "$work/save.txt"
adm -S -n > "$work/save2.txt"
cmp -s "$work/save.txt" "$work/save2.txt" && ok "-S | -R | -S round trip unchanged" || { fail "save differs after restore"; diff "$work/save.txt" "$work/save2.txt"; }
expect_eq "$(http_spread 9)" "s1=3 s2=3 s3=3 failed=0" "restored service forwards"

say "a big configuration: 2000 real servers in one restore and one listing"
{
  echo "-A -t $VIP:9000 -s wlc"
  for k in $(seq 0 1999); do echo "-a -t $VIP:9000 -r 10.3.$((k / 250)).$((k % 250 + 1)):9000 -m -w 1"; done
} > "$work/big.rules"
adm -R < "$work/big.rules" && ok "restore of $(wc -c < "$work/big.rules") bytes" || fail "big restore"
expect_eq "$(adm -Ln | grep -c '  -> 10\.3\.')" 2000 "real servers listed"
adm -D -t $VIP:9000

say "rvs-dp restarts: tools reconnect, rvs-cp re-applies"
printf '[control]\nmetrics_listen = "off"\n[[virtual_server]]\naddress = "%s"\nport = 8080\nlb_algo = "rr"\n[[virtual_server.real_server]]\naddress = "10.2.0.11"\nport = 80\n' "$VIP" > "$work/cp.toml"
ip netns exec $RVS_LAB-d "$RVSCP" --config "$work/cp.toml" --ctl "$RVS_CTL" > "$work/cp.log" 2>&1 &
cp_pid=$!
for _ in $(seq 50); do adm -Ln | grep -q ":8080" && break; sleep 0.1; done
"$LAB" restart-dp
for _ in $(seq 100); do adm -Ln 2>/dev/null | grep -q ":8080" && break; sleep 0.1; done
adm -Ln | grep -q "TCP  $VIP:8080 rr" && ok "rvs-cp re-applied its service to the new rvs-dp" || { fail "service not re-applied"; cat "$work/cp.log"; }
expect_eq "$(adm -Ln | grep -c "TCP  $VIP:80 ")" 0 "the new rvs-dp started empty (rvsadm's services are gone)"
out=$(client curl -s -m 3 http://$VIP:8080/); expect_eq "$out" "s1" "traffic through the re-applied service"
stop_cp
if [ "$FAILS" -gt 0 ]; then echo "e2e rvsadm: $FAILS check(s) failed"; exit 1; fi
echo "e2e rvsadm: all checks passed"
