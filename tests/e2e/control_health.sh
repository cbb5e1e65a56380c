#!/usr/bin/env bash
# rvs-cp against the real rvs-dp in the NAT lab: an HTTP_GET check that starts
# failing takes its real server out within delay_loop x fall, no new
# connection reaches it afterwards, and it comes back when healthy. Also
# scrapes /metrics and checks the latency histogram log.
source "$(dirname "$0")/lib.sh"
MODE=nat
use_workdir cp
lab_down
say "lab up (nat) and rvs-cp with HTTP_GET checks (delay_loop 0.5 s, fall 2, rise 1)"
lab_up nat
DELAY=0.5 FALL=2
cat > "$work/cp.toml" <<TOML
[control]
metrics_listen = "127.0.0.1:9280"
histogram_log = "$work/latency.hlog"
stats_interval = 0.5

[[virtual_server]]
address = "$VIP"
port = 80
lb_algo = "rr"
lb_kind = "NAT"
delay_loop = $DELAY
TOML
for i in 1 2 3; do
  cat >> "$work/cp.toml" <<TOML
[[virtual_server.real_server]]
address = "10.2.0.1$i"
port = 80
[virtual_server.real_server.http_get]
path = "/health"
status_code = [200]
retry = $FALL
connect_timeout = 1.0
TOML
done
ip netns exec $RVS_LAB-d env RVS_LOG=info "$RVSCP" --config "$work/cp.toml" --ctl "$RVS_CTL" > "$work/cp.log" 2>&1 &
cp_pid=$!
for _ in $(seq 100); do
  [ "$(adm -Ln | grep -c 'Masq')" = 3 ] && break
  sleep 0.1
done
expect_eq "$(adm -Ln | grep -c Masq)" 3 "rvs-cp brought up 3 healthy real servers"

say "s2 starts failing its check"
client bash -c "end=\$((SECONDS + 12)); while [ \$SECONDS -lt \$end ]; do
  r=\$(curl -s -m 2 http://$VIP/ || echo failed); echo \"\$(date +%s.%N) \$r\"; sleep 0.05; done" > "$work/client.log" &
loop=$!
sleep 1
t_fail=$(date +%s.%N)
touch /tmp/$RVS_LAB-lab-s2.fail
t_gone=""
for _ in $(seq 100); do
  if ! adm -Ln | grep -q '10.2.0.12:80'; then t_gone=$(date +%s.%N); break; fi
  sleep 0.05
done
[ -n "$t_gone" ] || die "s2 never left the table"
took=$(python3 -c "print(round($t_gone - $t_fail, 2))")
limit=$(python3 -c "print($DELAY * $FALL + 1.0)")
python3 -c "import sys; sys.exit(0 if $took <= $limit else 1)" \
  && ok "s2 removed ${took}s after it began failing (delay_loop x fall = $(python3 -c "print($DELAY*$FALL)")s, +1s slack)" \
  || fail "s2 removed after ${took}s, limit ${limit}s"
sleep 2
rm -f /tmp/$RVS_LAB-lab-s2.fail
for _ in $(seq 100); do adm -Ln | grep -q '10.2.0.12:80' && break; sleep 0.05; done
adm -Ln | grep -q '10.2.0.12:80' && ok "s2 restored after it recovered" || fail "s2 not restored"
wait $loop || true
late=$(awk -v t="$t_gone" '$1 > t + 0.2 && $1 < t + 2.0 && $2 == "s2"' "$work/client.log" | wc -l)
expect_eq "$late" 0 "no new connection reached s2 after its removal"
failed=$(awk '$2 == "failed"' "$work/client.log" | wc -l)
expect_eq "$failed" 0 "client requests failed"
grep -q 'DOWN: .*HTTP_GET' "$work/cp.log" && ok "transition logged: $(grep -o 'real server.*DOWN.*' "$work/cp.log" | head -1)" \
  || fail "no DOWN line in rvs-cp's log"
grep -q ' UP: ' "$work/cp.log" && ok "recovery logged" || fail "no UP line"

say "/metrics and the latency histogram log"
m=$(ip netns exec $RVS_LAB-d curl -s -m 2 http://127.0.0.1:9280/metrics)
grep -q '^rvs_real_server_up{.*rip="10.2.0.12".*} 1' <<<"$m" && ok "rvs_real_server_up for s2 is 1" || fail "real_server_up series missing"
grep -q '^rvs_worker_rx_packets' <<<"$m" && ok "per-worker rx packets exported" || fail "worker_rx_packets missing"
grep -q '^rvs_packet_latency_seconds_bucket' <<<"$m" && ok "latency histogram exported" || fail "latency series missing"
[ -s "$work/latency.hlog" ] && ok "histogram log written ($(grep -vc '^#' "$work/latency.hlog") intervals)" || fail "no histogram log"

stop_cp
if [ "$FAILS" -gt 0 ]; then echo "e2e control health: $FAILS check(s) failed"; cat "$work/cp.log"; exit 1; fi
echo "e2e control health: all checks passed"
