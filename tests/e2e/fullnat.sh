#!/usr/bin/env bash
# FULLNAT end to end (issue 12): real servers with no route to the clients at
# all, only to the director's local addresses (LIPs).
#   tests/e2e/fullnat.sh     (hping3 and curl from apt; RVS_LAB names the lab)
#
# 1. Two arms (lab.sh fnat: client 10.1.0.0/24 | director | servers 10.2.0.0/24
#    without a default route) and one arm (lab.sh fnat1: one link, the servers
#    10.1.0.11-13/32 routing only 10.1.0.200/29, where the LIPs are):
#    - wrr 3:2:1 over 60 requests from two client addresses: 30/20/10, 0 failed;
#    - every connection a server sees comes from a LIP;
#    - a 10 MB download is intact (sha256); (two arms) a UDP service spreads
#      evenly with no loss;
#    - (two arms) a PROXY protocol v2 service: tests/e2e/pp_server.py on the
#      servers reports each client's own address and port (and the VIP), and a
#      1 MB upload and a 1 MB download across the inserted header are intact;
#    - (two arms) a LIP added with --add-laddr is announced with gratuitous
#      ARP on the servers' side;
#    - rvsadm -S | rvsadm -R round-trips the live table (-b, --add-laddr,
#      --proxy-protocol);
#    - (two arms) rvs-cp reads DPVS's keepalived.conf (lb_kind FNAT,
#      local_address_group with a range, laddr_group_name): the table, the
#      spread, TOA inserted (as DPVS, on FNAT TCP), a SIGHUP that changes
#      only the local addresses, and /metrics' rvs_laddr_connections;
#    - (one arm) rvs-dp applies an rvs.toml FULLNAT service with laddrs at start,
#      and its [fullnat] port range is the one the servers see.
# 2. Two workers: 200 requests from 8 client addresses all succeed, no reply
#    is dropped for want of its connection, and rvs-dp's exit report counts
#    the FULLNAT replies each worker owned by the path they came (straight
#    from the NIC queue, or redirected by the other worker); rvs-cp's
#    /metrics (rvs_fnat_replies_total{worker,path}) and rvsadm --workers,
#    read live once traffic stopped, show the same figures.
# 3. A one-LIP pool (64,512 local ports with one worker) exhausted by an
#    hping3 random-source SYN flood: a rate-limited 4 MB download started
#    before goes on and arrives intact; new connections are refused while the
#    ports are held, and counted: rvsadm --drops laddr_exhausted and the LIP's
#    CONFLICTS in rvsadm -G.
# Only addresses inside the lab's namespaces are used; every loop is bounded;
# the EXIT trap stops what runs and takes the lab down.
source "$(dirname "$0")/lib.sh"
command -v hping3 >/dev/null || die "hping3 not found: apt-get install -y hping3"
here="$(cd "$(dirname "$0")" && pwd)"
FLOOD_S=${FLOOD_S:-6}

flood_pid=""
bg_pid=""
stop_bg() {
  for p in "$flood_pid" "$bg_pid"; do
    [ -n "$p" ] || continue
    kill -INT "$p" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  flood_pid=""; bg_pid=""
}
use_workdir fullnat
trap 'stop_bg; lab_down; rm -rf "$work"' EXIT

# in_set WORD SET...: true if WORD is one of SET.
in_set() { local w=$1; shift; for s in "$@"; do [ "$w" = "$s" ] && return 0; done; return 1; }

# spread N: N requests alternating between the client's two addresses, one
# connection each; prints "s1=A s2=B s3=C failed=F".
spread() {
  tally "$(client bash -c "for i in \$(seq $1); do curl -s -m 3 --interface 10.1.0.\$((10 + 10 * (i % 2))) http://$VIP/ || echo FAILED; done" | sort | uniq -c)"
}

no_route_to_clients() {
  local bad=0
  for s in s1 s2 s3; do
    if "$LAB" exec "$s" ip route get 10.1.0.10 >/dev/null 2>&1; then
      echo "   $s has a route to the client: $("$LAB" exec "$s" ip route get 10.1.0.10 | head -1)"
      bad=$((bad + 1))
    fi
  done
  expect_eq "$bad" 0 "real servers with a route to the client"
}

# basic ARM: the checks both topologies share.
basic() {
  local arm=$1 port=$2; shift 2
  local lips=("$@")
  no_route_to_clients
  client ip addr add 10.1.0.20/24 dev eth0   # the second client (.11 is s1 in one arm)
  adm -A -t $VIP:80 -s wrr || die "rvsadm -A"
  adm -a -t $VIP:80 -r "$(rs_addr 1):80" -b -w 3 || die "rvsadm -a -b"
  adm -a -t $VIP:80 -r "$(rs_addr 2):80" -b -w 2 || die "rvsadm -a -b"
  adm -a -t $VIP:80 -r "$(rs_addr 3):80" -b -w 1 || die "rvsadm -a -b"
  for l in "${lips[@]}"; do adm --add-laddr -z "$l" -t $VIP:80 -F "$port" || die "rvsadm --add-laddr $l"; done
  local fwd
  fwd=$(adm -Ln -t $VIP:80 | awk '$1=="->" && $2 ~ /^10\./ {print $3}' | sort -u)
  expect_eq "$fwd" "FullNat" "$arm: -Ln shows the real servers as FullNat"
  expect_eq "$(adm -G -t $VIP:80 | awk 'NR==2 {print $2}')" "${#lips[@]}" "$arm: -G counts the LIPs"

  say "$arm: wrr 3:2:1 over 60 requests from two client addresses"
  expect_eq "$(spread 60)" "s1=30 s2=20 s3=10 failed=0" "$arm: the spread"

  say "$arm: the real servers see only LIPs"
  local peers bad=0 seen
  peers=$(client bash -c "for i in \$(seq 30); do curl -s -m 3 --interface 10.1.0.\$((10 + 10 * (i % 2))) http://$VIP/peer || echo FAILED; done")
  expect_eq "$(grep -c . <<<"$peers")" 30 "$arm: /peer answers"
  while read -r _name addr; do
    in_set "${addr%:*}" "${lips[@]}" || { bad=$((bad + 1)); echo "   from $addr"; }
  done < <(grep -v FAILED <<<"$peers")
  expect_eq "$(grep -c FAILED <<<"$peers" || true)" 0 "$arm: /peer failures"
  expect_eq "$bad" 0 "$arm: connections seen from an address that is no LIP"
  seen=$(grep -v FAILED <<<"$peers" | awk '{split($2, a, ":"); print a[1]}' | sort -u | tr '\n' ' ')
  ok "$arm: sources seen: $seen"

  say "$arm: a 10 MB download is intact"
  local got want
  want=$(blob_sha 10485760)
  got=$(client bash -c "curl -s -m 60 http://$VIP/blob?size=10485760 | sha256sum" | cut -d' ' -f1)
  expect_eq "$got" "$want" "$arm: sha256 of 10 MB"
}

# ---------------------------------------------------------------- two arms
say "two arms: lab up (fnat)"
MODE=fnat
lab_down
lab_up fnat
LIPS=(10.2.0.201 10.2.0.202)
basic "two arms" servers "${LIPS[@]}"

say "two arms: UDP"
adm -A -u $VIP:53 -s rr || die "rvsadm -A -u"
for i in 1 2 3; do adm -a -u $VIP:53 -r "$(rs_addr $i):53" -b || die "rvsadm -a -u -b"; done
adm --add-laddr -z 10.2.0.203 -u $VIP:53 -F servers || die "rvsadm --add-laddr udp"
expect_eq "$(udp_spread 30)" "s1=10 s2=10 s3=10 failed=0" "UDP spread"

say "two arms: PROXY protocol v2 to a server that reads it"
for s in s1 s2 s3; do
  "$LAB" exec "$s" bash -c "nohup python3 '$here/pp_server.py' $s 8080 >'$work/pp-$s.log' 2>&1 &"
done
for s in s1 s2 s3; do   # bounded wait for them to listen
  for _ in $(seq 50); do
    "$LAB" exec "$s" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080' 2>/dev/null && break
    sleep 0.1
  done
done
# The probes above opened connections without a header: what follows counts from here.
probes=$(cat "$work"/pp-s*.log 2>/dev/null | grep -c 'PROXY header' || true)
adm -A -t $VIP:8080 -s rr --proxy-protocol v2 || die "rvsadm -A --proxy-protocol v2"
for i in 1 2 3; do adm -a -t $VIP:8080 -r "$(rs_addr $i):8080" -b || die "rvsadm -a 8080"; done
# 10.2.0.204 is 0x0a0200cc: a request for itself from itself is gratuitous.
"$LAB" exec s1 timeout 5 tcpdump -l -n -c 1 -i eth0 'arp and arp[6:2] == 1 and arp[14:4] == 0x0a0200cc and arp[24:4] == 0x0a0200cc' \
  >"$work/lip-garp.txt" 2>/dev/null &
tcpd=$!
sleep 1
adm --add-laddr -z 10.2.0.204 -t $VIP:8080 -F servers || die "rvsadm --add-laddr 8080"
wait $tcpd || true
grep -q 'Request who-has 10.2.0.204 tell 10.2.0.204' "$work/lip-garp.txt" \
  && ok "a new LIP is announced with gratuitous ARP" || fail "no gratuitous ARP for the new LIP 10.2.0.204: $(cat "$work/lip-garp.txt")"
expect_eq "$(adm -Ln -t $VIP:8080 | awk 'NR==3 {print $NF}')" "ppv2" "-Ln shows ppv2"
wrong=0
for i in $(seq 12); do
  src=10.1.0.$((10 + 10 * (i % 2)))
  line=$(client curl -s -m 3 --interface "$src" -w ' %{local_ip}:%{local_port}' "http://$VIP:8080/" | tr '\n' ' ' || echo FAILED)
  # "sN src=CIP:CPORT dst=VIP:8080 peer=LIP:LPORT v2 LOCALIP:LOCALPORT"
  read -r name said_src said_dst said_peer ver local <<<"$line"
  if [ "$said_src" != "src=$local" ] || [ "$said_dst" != "dst=$VIP:8080" ] \
    || [ "${said_peer%:*}" != "peer=10.2.0.204" ] || [ "$ver" != v2 ]; then
    echo "   got: $line"
    wrong=$((wrong + 1))
  fi
done
expect_eq "$wrong" 0 "PROXY v2: answers not naming the client's own address and port"
head -c 1048576 /dev/urandom >"$work/up.bin"
want=$(sha256sum <"$work/up.bin" | cut -d' ' -f1)
got=$(client curl -s -m 30 --data-binary @"$work/up.bin" -H 'Content-Type: application/octet-stream' "http://$VIP:8080/sink")
expect_eq "$got" "$want" "PROXY v2: a 1 MB upload arrives intact"
got=$(client bash -c "curl -s -m 30 http://$VIP:8080/blob?size=1048576 | sha256sum" | cut -d' ' -f1)
expect_eq "$got" "$(blob_sha 1048576)" "PROXY v2: a 1 MB download arrives intact"
headerless=$(cat "$work"/pp-s*.log 2>/dev/null | grep -c 'PROXY header' || true)
expect_eq "$((headerless - probes))" 0 "PROXY v2: connections without a valid header"

say "two arms: bad input is refused with ipvsadm's messages, nothing applied"
adm -S -n >"$work/before"
refuse() {  # refuse WANT_CODE MESSAGE_PART ARGS...
  local code=$1 part=$2; shift 2
  local out rc=0
  out=$(adm "$@" 2>&1) || rc=$?
  if [ "$rc" = "$code" ] && grep -qF -- "$part" <<<"$out"; then ok "rvsadm $*: $out"
  else fail "rvsadm $*: exit $rc, '$out' (want $code, '$part')"; fi
}
refuse 255 "not on port servers's subnet" --add-laddr -z 10.3.0.9 -t $VIP:80 -F servers
refuse 255 "not on port nosuch's subnet (or there is no such port)" --add-laddr -z 10.2.0.209 -t $VIP:80 -F nosuch
refuse 255 "is already used by service TCP $VIP:80" --add-laddr -z 10.2.0.201 -t $VIP:8080 -F servers
refuse 255 "TCP only, not UDP" -E -u $VIP:53 -s rr --proxy-protocol v2
refuse 255 "need FULLNAT (-b) real servers" -a -t $VIP:8080 -r "$(rs_addr 1):8081" -m
refuse 2 "You need to supply the 'local-address' option" --add-laddr -t $VIP:80 -F servers
refuse 2 "illegal local address" --add-laddr -z 10.2.0 -t $VIP:80 -F servers
adm -S -n >"$work/after"
cmp -s "$work/before" "$work/after" && ok "the table is as it was" || fail "a refused command changed the table"

say "two arms: rvsadm -S | rvsadm -R round-trips the live table"
adm -S -n >"$work/saved"
grep -q -- '--add-laddr -z 10.2.0.201 -t 10.1.0.100:80 -F servers' "$work/saved" \
  && grep -q -- '--proxy-protocol v2' "$work/saved" && grep -q -- ' -b -w 3' "$work/saved" \
  && ok "the save has -b, --add-laddr and --proxy-protocol" || { cat "$work/saved"; fail "the save lacks FULLNAT"; }
adm -C && adm -R <"$work/saved" || fail "rvsadm -R of the save"
adm -S -n >"$work/again"
cmp -s "$work/saved" "$work/again" && ok "restored table saves the same" || fail "save after restore differs"
expect_eq "$(spread 6)" "s1=3 s2=2 s3=1 failed=0" "the restored service forwards"

say "two arms: rvs-cp reads DPVS's keepalived.conf (lb_kind FNAT, local_address_group)"
adm -C
kconf() {  # kconf LOCAL_ADDRESS_GROUP_ENTRY...
  {
    echo "local_address_group lg {"
    for e in "$@"; do echo "    $e servers"; done
    echo "}"
    echo "virtual_server $VIP 80 {"
    echo "    lb_algo wrr"
    echo "    lb_kind FNAT"
    echo "    protocol TCP"
    echo "    laddr_group_name lg"
    for i in 1 2 3; do
      echo "    real_server $(rs_addr $i) 80 {"
      echo "        weight $((4 - i))"
      echo "        TCP_CHECK {"
      echo "            connect_timeout 1"
      echo "        }"
      echo "    }"
    done
    echo "}"
  } >"$work/keepalived.conf"
}
kconf 10.2.0.205-206
ip netns exec $RVS_LAB-d "$RVSCP" --keepalived-conf "$work/keepalived.conf" --ctl "$RVS_CTL" \
  --metrics-listen 127.0.0.1:19280 >"$work/cp.log" 2>&1 &
cp_pid=$!
for _ in $(seq 100); do [ "$(adm -Ln | grep -c FullNat)" = 3 ] && break; sleep 0.1; done
expect_eq "$(adm -Ln | grep -c FullNat)" 3 "rvs-cp applied the keepalived.conf's FNAT real servers"
expect_eq "$(laddrs_of $VIP:80)" "10.2.0.205 10.2.0.206 " \
  "rvs-cp applied the local_address_group (a range)"
expect_eq "$(adm -Ln -t $VIP:80 | awk 'NR==3 {print $NF}')" "toa" "FNAT over TCP carries TOA, as DPVS"
expect_eq "$(spread 60)" "s1=30 s2=20 s3=10 failed=0" "keepalived.conf's service: the spread"
say "two arms: the group changed, SIGHUP: only the local addresses change"
kconf 10.2.0.207
kill -HUP "$cp_pid"
wait_laddrs $VIP:80 "10.2.0.207 " || true
expect_eq "$(laddrs_of $VIP:80)" "10.2.0.207 " "after the reload"
peers=$(client bash -c "for i in \$(seq 6); do curl -s -m 3 http://$VIP/peer || echo FAILED; done" | awk '{split($2, a, ":"); print a[1]}' | sort -u)
expect_eq "$peers" "10.2.0.207" "the servers see the new local address only"
sleep 1.5   # one stats interval: the snapshot /metrics renders is taken every second
ip netns exec $RVS_LAB-d curl -s -m 3 -o "$work/metrics" http://127.0.0.1:19280/metrics || true
metrics=$(cat "$work/metrics" 2>/dev/null)
echo "   /metrics: $(wc -l <"$work/metrics" 2>/dev/null || echo 0) lines"
grep -q "^rvs_laddr_connections{proto=\"TCP\",vip=\"$VIP\",port=\"80\",laddr=\"10.2.0.207\"} " <<<"$metrics" \
  && ok "/metrics has rvs_laddr_connections for 10.2.0.207" || fail "/metrics lacks rvs_laddr_connections for 10.2.0.207"
grep -q '^rvs_drops_total{reason="laddr_exhausted"} ' <<<"$metrics" \
  && ok "/metrics has rvs_drops_total{reason=\"laddr_exhausted\"}" || fail "/metrics lacks the laddr_exhausted drop reason"
stop_cp

# ---------------------------------------------------------------- one arm
say "one arm: lab up (fnat1)"
MODE=fnat1
lab_down
toa=$(sed -n 's/^worker 0: .* toa \([0-9]*\).*/\1/p' /tmp/$RVS_LAB-lab-last-dp.log | head -1)
[ "${toa:-0}" -gt 0 ] && ok "two arms: rvs-dp inserted TOA $toa times (keepalived.conf's FNAT service)" \
  || fail "two arms: no TOA inserted (exit report: $(grep '^worker 0' /tmp/$RVS_LAB-lab-last-dp.log | grep -o 'toa [0-9]*'))"
lab_up fnat1
basic "one arm" lan 10.1.0.201 10.1.0.202

say "one arm: rvs-dp applies rvs.toml's FULLNAT service (laddrs, FNAT real server) at start"
cat >>"${RVS_LAB_DIR:-/tmp/$RVS_LAB-lab}/rvs.toml" <<EOF

[[virtual_server]]
address = "$VIP"
port = 81
lb_algo = "rr"
lb_kind = "FNAT"
laddrs = [{ address = "10.1.0.203", port = "lan" }]
[[virtual_server.real_server]]
address = "$(rs_addr 1)"
port = 80

[fullnat]
lport_min = 20000
lport_max = 20999
hold_s = 30
EOF
"$LAB" restart-dp >/dev/null
for _ in $(seq 50); do adm -Ln -t $VIP:81 >/dev/null 2>&1 && break; sleep 0.2; done
expect_eq "$(adm -G -t $VIP:81 | awk '$1 ~ /^10\.1\.0\.[0-9]+$/ {print $1}')" "10.1.0.203" "rvs.toml's local address in -G"
expect_eq "$(client curl -s -m 3 http://$VIP:81/peer | awk '{split($2, a, ":"); print $1, a[1]}')" "s1 10.1.0.203" \
  "rvs.toml's FULLNAT service forwards from its local address"
lports=$(client bash -c "for i in \$(seq 5); do curl -s -m 3 http://$VIP:81/peer; echo; done" | awk '{split($2, a, ":"); print a[2]}')
echo "   local ports seen by the server: $(echo $lports)"
inrange=$(awk '$1 >= 20000 && $1 <= 20999' <<<"$lports" | wc -l)
expect_eq "$inrange" 5 "rvs.toml's [fullnat] lport_min..lport_max: every local port in 20000..20999"

# ---------------------------------------------------------------- two workers
say "two workers: lab up (fnat, 2 workers)"
MODE=fnat
lab_down
lab_up fnat --workers 2
# rvs-cp applies the service (keepalived.conf, two local addresses) and
# serves /metrics, so the reply counters are read live as well as at exit.
kconf 10.2.0.201-202
ip netns exec $RVS_LAB-d "$RVSCP" --keepalived-conf "$work/keepalived.conf" --ctl "$RVS_CTL" \
  --metrics-listen 127.0.0.1:19281 >"$work/cp2.log" 2>&1 &
cp_pid=$!
for _ in $(seq 100); do [ "$(adm -Ln | grep -c FullNat)" = 3 ] && break; sleep 0.1; done
expect_eq "$(adm -Ln | grep -c FullNat)" 3 "two workers: rvs-cp applied the FNAT real servers"
for k in $(seq 20 27); do client ip addr add 10.1.0.$k/24 dev eth0; done
out=$(client bash -c "for i in \$(seq 200); do curl -s -m 3 --interface 10.1.0.\$((20 + i % 8)) http://$VIP/ || echo failed; done" | sort | uniq -c)
echo "$out"
expect_eq "$(awk '$2=="failed"{print $1}' <<<"$out" | grep . || echo 0)" 0 "two workers: failed requests"
# The entries left (TIME_WAIT) list their local address: -Lnc's `local` column.
lnc=$(adm -Lnc)
expect_eq "$(sed -n 2p <<<"$lnc" | awk '{print $6}')" "local" "-Lnc has a local column with FULLNAT entries"
n=$(awk 'NR>2 && $6 ~ /^10\.2\.0\.20[12]:[0-9]+$/' <<<"$lnc" | wc -l)
[ "$n" -gt 0 ] && ok "-Lnc lists $n FULLNAT entries with their local address" \
  || fail "-Lnc shows no local address: $(head -4 <<<"$lnc")"
sleep 1.5   # one stats interval after the last request
ip netns exec $RVS_LAB-d curl -s -m 3 -o "$work/metrics2" http://127.0.0.1:19281/metrics || true
live_path() {  # live_path WORKER PATH: rvs_fnat_replies_total{worker,path} from /metrics
  sed -n "s/^rvs_fnat_replies_total{worker=\"$1\",path=\"$2\"} \([0-9]*\).*/\1/p" "$work/metrics2" 2>/dev/null | head -1
}
grep '^rvs_fnat_replies_total' "$work/metrics2" 2>/dev/null
adm --workers >"$work/workers2" || true
cat "$work/workers2"
adm_path() {  # adm_path WORKER: "direct/redirected" from rvsadm --workers' FNAT table
  awk -v w="$1" '$1 == "FNAT" {f = 1; next} f && $1 == w {print $4 "/" $5}' "$work/workers2"
}
stop_cp
"$LAB" down >/dev/null
log=/tmp/$RVS_LAB-lab-last-dp.log
grep '^worker' "$log" || die "no final counters in $log"
direct=0; redirected=0
for w in 0 1; do
  # "... fnat_replies direct N redirected M ..."
  d=$(sed -n "s/^worker $w: .* fnat_replies direct \([0-9]*\) redirected [0-9]*.*/\1/p" "$log" | head -1)
  r=$(sed -n "s/^worker $w: .* fnat_replies direct [0-9]* redirected \([0-9]*\).*/\1/p" "$log" | head -1)
  [ -n "$d" ] && [ -n "$r" ] || { fail "worker $w: no 'fnat_replies direct N redirected M' in the exit report"; continue; }
  ok "worker $w owned $((d + r)) FULLNAT replies: $d straight from its queue, $r redirected to it"
  # Traffic had stopped when /metrics was read: the live counters are the final ones.
  expect_eq "$(live_path $w direct)/$(live_path $w redirected)" "$d/$r" \
    "worker $w: /metrics' rvs_fnat_replies_total{path=direct/redirected} match the exit report"
  expect_eq "$(adm_path $w)" "$d/$r" "worker $w: rvsadm --workers' RepDirect/RepRedir match the exit report"
  direct=$((direct + d)); redirected=$((redirected + r))
done
[ "$((direct + redirected))" -gt 0 ] && ok "replies counted by path: direct $direct, redirected $redirected" \
  || fail "no FULLNAT reply counted"
[ "$redirected" -gt 0 ] && ok "af_packet spread replies over both queues: some took the redirect ring" \
  || fail "no reply was redirected: the two-worker path was not exercised"
if grep -q 'drop.not_for_us\|drop.out_no_conn\|drop.no_conn' "$log"; then
  fail "replies without their connection: $(grep -o 'drop.[a-z_]* [0-9]*' "$log" | sort | uniq | tr '\n' ' ')"
else
  ok "no reply was dropped for want of its connection"
fi

# ---------------------------------------------------------------- exhaustion
say "exhaustion: lab up (fnat, one LIP, 262144 entries)"
lab_down
lab_up fnat --conn-capacity 262144
adm -A -t $VIP:80 -s rr || die "rvsadm -A"
for i in 1 2 3; do adm -a -t $VIP:80 -r "$(rs_addr $i):80" -b || die "rvsadm -a -b"; done
adm --add-laddr -z 10.2.0.201 -t $VIP:80 -F servers || die "rvsadm --add-laddr"
client ip addr add 10.1.0.20/24 dev eth0
expect_eq "$(spread 3)" "s1=1 s2=1 s3=1 failed=0" "the service answers before the flood"
# 4 MB at 400 KB/s: about 10 s, across the flood and after it.
client bash -c "curl -s -m 60 --limit-rate 400k http://$VIP/blob?size=4194304 | sha256sum >'$work/long.sha'" &
bg_pid=$!
sleep 1
say "exhaustion: a ${FLOOD_S} s random-source SYN flood"
ip netns exec "$RVS_LAB-c" timeout -s INT -k 3 "$FLOOD_S" \
  hping3 -S -p 80 --flood --rand-source "$VIP" >"$work/hping.log" 2>&1 &
flood_pid=$!
for _ in $(seq $((FLOOD_S + 5))); do kill -0 "$flood_pid" 2>/dev/null || break; sleep 1; done
kill -0 "$flood_pid" 2>/dev/null && fail "hping3 outlived its timeout"
wait "$flood_pid" 2>/dev/null || true; flood_pid=""
sent=$(grep -o '^[0-9]* packets transmitted' "$work/hping.log" | cut -d' ' -f1)
echo "   hping3: ${sent:-?} SYNs in ${FLOOD_S} s"
exhausted() { adm --drops --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("laddr_exhausted", 0))'; }
before=$(exhausted)
[ "${before:-0}" -gt 0 ] && ok "laddr_exhausted counted $before refused SYNs of the flood" \
  || fail "laddr_exhausted is ${before:-0} after the flood"
# The flood's connections keep their ports (and ports stay held 60 s after),
# so the pool is still empty now that the flood is over and no frame is lost:
# a new client's SYNs are refused, and counted as such.
say "exhaustion: new connections after the flood, the ports still taken"
refused=0
for _ in $(seq 3); do
  client curl -s -m 2 "http://$VIP/" >/dev/null 2>&1 || refused=$((refused + 1))
done
after=$(exhausted)
expect_eq "$refused" 3 "new connections refused while the LIP's ports are taken"
[ "${after:-0}" -gt "${before:-0}" ] && ok "their SYNs counted: laddr_exhausted $before -> $after" \
  || fail "their SYNs were not counted as laddr_exhausted ($before -> $after)"
conflicts=$(adm -G -t $VIP:80 | awk '$1=="10.2.0.201" {print $2}')
[ "${conflicts:-0}" -gt 0 ] && ok "-G CONFLICTS of 10.2.0.201: $conflicts" || fail "-G CONFLICTS is ${conflicts:-0}"
adm -G -t $VIP:80
for _ in $(seq 60); do kill -0 "$bg_pid" 2>/dev/null || break; sleep 1; done
wait "$bg_pid" 2>/dev/null || true; bg_pid=""
expect_eq "$(cut -d' ' -f1 "$work/long.sha" 2>/dev/null)" "$(blob_sha 4194304)" \
  "the download started before the flood arrived intact"

if [ "$FAILS" -gt 0 ]; then echo "e2e fullnat: $FAILS check(s) failed"; exit 1; fi
echo "e2e fullnat: all checks passed"
