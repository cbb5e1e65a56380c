#!/usr/bin/env bash
# rvs-cp reloads under traffic against the real rvs-dp: 20 SIGHUPs (one of
# them with an invalid file) while a client loops requests and a long-lived
# connection streams; meanwhile two rvsadm writers change a service rvs-cp
# does not own. Zero failed requests, the long connection intact, the final
# table exactly as the last good file and the writers left it.
source "$(dirname "$0")/lib.sh"
MODE=nat
use_workdir reload
lab_down
say "lab up (nat), rvs-cp running"
lab_up nat
write_cfg() {  # write_cfg FILE WEIGHT3 EXTRA_SERVICE(0|1) ALGO
  {
    printf '[control]\nmetrics_listen = "off"\n\n'
    printf '[[virtual_server]]\naddress = "%s"\nport = 80\nlb_algo = "%s"\nlb_kind = "NAT"\n' "$VIP" "$4"
    for i in 1 2 3; do
      w=1; [ $i = 3 ] && w=$2
      printf '[[virtual_server.real_server]]\naddress = "10.2.0.1%s"\nport = 80\nweight = %s\n' $i $w
    done
    if [ "$3" = 1 ]; then
      printf '\n[[virtual_server]]\naddress = "%s"\nport = 8080\nlb_algo = "wlc"\n' "$VIP"
      printf '[[virtual_server.real_server]]\naddress = "10.2.0.11"\nport = 80\n'
    fi
  } > "$1"
}
write_cfg "$work/a.toml" 1 0 rr
write_cfg "$work/b.toml" 2 1 wrr
cp "$work/a.toml" "$work/cp.toml"
ip netns exec $RVS_LAB-d "$RVSCP" --config "$work/cp.toml" --ctl "$RVS_CTL" > "$work/cp.log" 2>&1 &
cp_pid=$!
for _ in $(seq 100); do [ "$(adm -Ln | grep -c Masq)" = 3 ] && break; sleep 0.1; done
expect_eq "$(adm -Ln | grep -c Masq)" 3 "rvs-cp applied the file"

say "traffic, a long-lived connection, 20 reloads, 2 concurrent rvsadm writers"
client bash -c "end=\$((SECONDS + 40)); while [ \$SECONDS -lt \$end ] && [ ! -e $work/stop ]; do
  curl -s -m 3 http://$VIP/ || echo failed; done" > "$work/client.log" &
loop=$!
client curl -s -m 30 -o "$work/long.txt" "http://$VIP/slow?secs=8" &
long=$!
adm -A -u $VIP:5353 -s rr
writer() {
  local n=$1
  for k in $(seq 30); do
    adm -a -u $VIP:5353 -r "10.2.0.1$n:53" -m -w "$k" 2>>"$work/w$n.err" || echo "add $k" >>"$work/w$n.fail"
    adm -e -u $VIP:5353 -r "10.2.0.1$n:53" -m -w $((k + 1)) 2>>"$work/w$n.err" || echo "edit $k" >>"$work/w$n.fail"
    [ "$k" = 30 ] || adm -d -u $VIP:5353 -r "10.2.0.1$n:53" 2>>"$work/w$n.err" || echo "del $k" >>"$work/w$n.fail"
  done
}
writer 1 & w1=$!
writer 2 & w2=$!
for r in $(seq 20); do
  case $r in
    10) printf 'not = [valid toml\n' > "$work/cp.toml" ;;
    *) if [ $((r % 2)) = 1 ]; then cp "$work/a.toml" "$work/cp.toml"; else cp "$work/b.toml" "$work/cp.toml"; fi ;;
  esac
  kill -HUP "$cp_pid"
  sleep 0.3
done
wait $w1 $w2
wait $long && ok "long-lived connection finished" || fail "long-lived connection failed"
expect_eq "$(wc -l < "$work/long.txt")" 40 "all 40 lines of the long connection arrived"
touch "$work/stop"; wait $loop || true
total=$(wc -l < "$work/client.log")
expect_eq "$(grep -c failed "$work/client.log" || true)" 0 "failed requests out of $total"
[ "$total" -gt 50 ] && ok "$total requests during the reloads" || fail "only $total requests ran"
[ ! -e "$work/w1.fail" ] && [ ! -e "$work/w2.fail" ] && ok "every rvsadm command succeeded" \
  || fail "rvsadm failures: $(cat "$work"/w*.fail "$work"/w*.err 2>/dev/null | head -5)"
grep -q 'rvs.toml\|cp.toml' "$work/cp.log" && grep -qi 'keeping\|rejected\|invalid\|error' "$work/cp.log" \
  && ok "the invalid file was rejected: $(grep -i 'error\|invalid\|reject' "$work/cp.log" | head -1 | cut -c1-150)" \
  || fail "no rejection logged for the invalid file"

say "final table: the last good file (b: wrr, s3 weight 2, :8080) and the writers' service"
sleep 0.5
adm -Ln | tee "$work/final.txt"
grep -q "TCP  $VIP:80 wrr" "$work/final.txt" && ok "scheduler wrr" || fail "scheduler not wrr"
grep -q '10.2.0.13:80 *Masq *2 ' "$work/final.txt" && ok "s3 weight 2" || fail "s3 weight not 2"
grep -q "TCP  $VIP:8080 wlc" "$work/final.txt" && ok ":8080 service present" || fail ":8080 service missing"
grep -q '10.2.0.11:53 *Masq *31 ' "$work/final.txt" && grep -q '10.2.0.12:53 *Masq *31 ' "$work/final.txt" \
  && ok "writers' UDP service intact (weights 31)" || fail "writers' UDP service wrong"
stop_cp
if [ "$FAILS" -gt 0 ]; then echo "e2e control reload: $FAILS check(s) failed"; tail -20 "$work/cp.log"; exit 1; fi
echo "e2e control reload: all checks passed"
