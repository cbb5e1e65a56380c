# Shared helpers for the end-to-end scenarios. Sourced, not run.
set -euo pipefail
E2E_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LAB="$E2E_ROOT/scripts/lab.sh"
# Binaries: RVS_DP / RVSADM / RVSCP, else $CARGO_TARGET_DIR/release (default target/).
export RVS_DP=${RVS_DP:-${CARGO_TARGET_DIR:-$E2E_ROOT/target}/release/rvs-dp}
export RVSADM=${RVSADM:-${CARGO_TARGET_DIR:-$E2E_ROOT/target}/release/rvsadm}
export RVS_LAB=${RVS_LAB:-rvs}  # scripts/lab.sh: the lab's name
export RVS_CTL=/run/$RVS_LAB-lab/rvs.ctl  # scripts/lab.sh CTL
VIP=10.1.0.100
FAILS=0
STEP=""

say()  { printf '\n== %s\n' "$*"; STEP="$*"; }
ok()   { printf '   ok: %s\n' "$*"; }
fail() { printf '   FAIL: %s\n' "$*" >&2; FAILS=$((FAILS + 1)); }
die()  { printf 'FATAL (%s): %s\n' "$STEP" "$*" >&2; exit 1; }
expect_eq() { if [ "$1" = "$2" ]; then ok "$3 ($1)"; else fail "$3: got '$1', want '$2'"; fi; }

adm() { "$RVSADM" "$@"; }
client() { ip netns exec $RVS_LAB-c "$@"; }

# rs_addr N: the address of real server N in this lab mode.
rs_addr() {
  case $MODE in nat|fnat) echo "10.2.0.1$1" ;; *) echo "10.1.0.1$1" ;; esac
}
fwd_flag() { case $MODE in nat) echo -m ;; dr) echo -g ;; tun) echo -i ;; fnat|fnat1) echo -b ;; esac; }

# tally OUT: OUT is `sort | uniq -c` of the real servers' names (and FAILED);
# prints "s1=A s2=B s3=C failed=F".
tally() {
  local out=$1 s1 s2 s3 f
  s1=$(awk '$2=="s1"{print $1}' <<<"$out"); s2=$(awk '$2=="s2"{print $1}' <<<"$out")
  s3=$(awk '$2=="s3"{print $1}' <<<"$out"); f=$(awk '$2=="FAILED"{print $1}' <<<"$out")
  echo "s1=${s1:-0} s2=${s2:-0} s3=${s3:-0} failed=${f:-0}"
}

# laddrs_of VIP:PORT: the TCP service's local addresses as rvsadm -G lists
# them, each followed by a space.
laddrs_of() { adm -G -t "$1" | awk '$1 ~ /^[0-9.]+$/ {printf "%s ", $1}'; }

# wait_laddrs VIP:PORT WANT: up to 5 s for laddrs_of to print WANT (a reload).
wait_laddrs() {
  for _ in $(seq 50); do [ "$(laddrs_of "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}

# http_spread N: N requests to the VIP, one connection each; prints
# "s1=A s2=B s3=C failed=F".
http_spread() {
  local n=$1 out
  out=$(client bash -c "for i in \$(seq $n); do curl -s -m 3 http://$VIP/ || echo FAILED; done" | sort | uniq -c)
  tally "$out"
}

udp_spread() {
  local n=$1 out
  out=$(client bash -c "for i in \$(seq $n); do echo ping\$i | socat -t 1 -T 2 - UDP4:$VIP:53 || echo FAILED; done" \
    | awk '{print $1}' | sort | uniq -c)
  tally "$out"
}

blob_sha() {  # the sha256 rs_server.py's /blob?size=N serves
  python3 - "$1" <<'PY'
import hashlib, sys
n = int(sys.argv[1])
block = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(2048))
out = bytearray()
while len(out) < n:
    out += block
print(hashlib.sha256(bytes(out[:n])).hexdigest())
PY
}

lab_up() { "$LAB" up "$@" >/dev/null || die "lab up $*"; }
lab_down() { "$LAB" down >/dev/null 2>&1 || true; }

# For the scenarios that run rvs-cp beside the lab's rvs-dp.
RVSCP=${RVSCP:-${CARGO_TARGET_DIR:-$E2E_ROOT/target}/release/rvs-cp}
cp_pid=""
stop_cp() {
  if [ -n "$cp_pid" ]; then kill "$cp_pid" 2>/dev/null || true; wait "$cp_pid" 2>/dev/null || true; fi
  cp_pid=""
}
# use_workdir NAME: a scratch directory in $work, and an EXIT trap that stops
# rvs-cp, takes the lab down and removes the directory, whatever happened.
use_workdir() {
  work=$(mktemp -d "/tmp/rvs-e2e-$1.XXXXXX")
  trap 'stop_cp; lab_down; rm -rf "$work"' EXIT
}
