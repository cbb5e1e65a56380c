#!/usr/bin/env bash
# Reserve and mount 2 MB hugepages for DPDK, and undo exactly that afterwards.
#
#   hugepages.sh setup [N]   make sure N (default 512) 2 MB pages are free and a
#                            hugetlbfs is mounted; record what was changed
#   hugepages.sh teardown    undo what setup recorded (nothing else)
#   hugepages.sh status      print the current reservation and mounts
#
# Both actions are idempotent. The record lives in $HUGEPAGES_STATE (default
# /tmp/rvs-hugepages.state): a caller that wants its own undo scope (a test run
# sharing the machine with others) points it at a private file. A setup that
# found everything in place records nothing, so its teardown leaves the
# pages and mounts that someone else made alone.
# HUGEPAGES_DIR=DIR asks for a mount at DIR itself (a private one keeps a run's
# map files apart from other DPDK users; pass EAL --huge-dir DIR); without it,
# any mounted hugetlbfs will do, else one is mounted at /dev/hugepages.
# Uses dpdk-hugepages.py when present, plain sysfs and mount(8) otherwise.
# Exits non-zero with a message when the pages cannot be had.
set -euo pipefail

STATE=${HUGEPAGES_STATE:-/tmp/rvs-hugepages.state}
MNT=${HUGEPAGES_DIR:-/dev/hugepages}
OWN_DIR=${HUGEPAGES_DIR:+1}
PAGE_KB=2048
SYSFS=/sys/kernel/mm/hugepages/hugepages-${PAGE_KB}kB
HELPER=$(command -v dpdk-hugepages.py || true)

say() { echo "hugepages: $*"; }
die() { echo "hugepages: error: $*" >&2; exit 1; }

nr() { cat "$SYSFS/nr_hugepages"; }
free_pages() { cat "$SYSFS/free_hugepages"; }

# A hugetlbfs mount of our page size (the default size when no pagesize= is
# given), as EAL would pick it.
hugetlbfs_mount() {
  local default_kb
  default_kb=$(awk '/^Hugepagesize:/ {print $2}' /proc/meminfo)
  awk -v want="$PAGE_KB" -v def="$default_kb" '
    $3 == "hugetlbfs" {
      size = def
      n = split($4, opts, ",")
      for (i = 1; i <= n; i++) {
        if (opts[i] ~ /^pagesize=/) {
          v = substr(opts[i], 10)
          if (v ~ /[Mm]$/) size = substr(v, 1, length(v) - 1) * 1024
          else if (v ~ /[Gg]$/) size = substr(v, 1, length(v) - 1) * 1048576
          else if (v ~ /[Kk]$/) size = substr(v, 1, length(v) - 1)
        }
      }
      if (size == want) { print $2; exit }
    }' /proc/mounts
}

record() {  # record KEY VALUE, first value wins (the state before our first change)
  touch "$STATE"
  grep -q "^$1=" "$STATE" || echo "$1=$2" >> "$STATE"
}
recorded() { [ -f "$STATE" ] && sed -n "s/^$1=//p" "$STATE" | head -n1; }

set_nr() {
  local want=$1
  if [ -n "$HELPER" ]; then
    "$HELPER" -p 2M -r "$((want * PAGE_KB / 1024))M" >/dev/null 2>&1 || true
  fi
  if [ "$(nr)" -ne "$want" ]; then
    echo "$want" > "$SYSFS/nr_hugepages" 2>/dev/null || true
  fi
}

setup() {
  local need=${1:-512}
  [[ $need =~ ^[0-9]+$ ]] && [ "$need" -gt 0 ] || die "N must be a positive number of pages, not '$need'"
  [ -d "$SYSFS" ] || die "this kernel has no ${PAGE_KB} kB hugepages ($SYSFS missing)"
  [ -w "$SYSFS/nr_hugepages" ] || die "cannot write $SYSFS/nr_hugepages (need root, and a writable /sys)"

  local avail_kb
  avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
  # Growing the pool takes memory from everyone else on the machine at once.
  [ $((need * PAGE_KB)) -le $((avail_kb / 2)) ] ||
    die "$need pages of ${PAGE_KB} kB are over half of the $((avail_kb / 1024)) MB available; refusing"

  local before free
  before=$(nr)
  free=$(free_pages)
  if [ "$free" -ge "$need" ]; then
    say "$free of $before pages free, $need needed: reservation left as is"
  else
    # Grow by the shortfall only: pages in use by someone else stay theirs.
    local want=$((before + need - free))
    record nr_hugepages "$before"
    set_nr "$want"
    free=$(free_pages)
    if [ "$free" -lt "$need" ]; then
      die "asked for $want pages (had $before), the kernel gave $(nr) with $free free; $need free are needed (memory too fragmented or too small?)"
    fi
    say "reserved $(nr) pages (was $before), $free free${HELPER:+ (via dpdk-hugepages.py)}"
  fi

  local at
  if [ -n "$OWN_DIR" ]; then
    at=$(awk -v d="$MNT" '$2 == d && $3 == "hugetlbfs" {print $2}' /proc/mounts)
  else
    at=$(hugetlbfs_mount)
  fi
  if [ -n "$at" ]; then
    say "hugetlbfs already mounted at $at"
  else
    mkdir -p "$MNT"
    if [ -n "$HELPER" ]; then
      "$HELPER" -p 2M -m -d "$MNT" >/dev/null 2>&1 || true
    fi
    if ! grep -q " $MNT hugetlbfs " /proc/mounts; then
      mount -t hugetlbfs -o pagesize=2M nodev "$MNT" || die "cannot mount hugetlbfs on $MNT"
    fi
    record mounted "$MNT"
    say "mounted hugetlbfs at $MNT"
  fi
}

teardown() {
  if [ ! -s "$STATE" ]; then
    say "nothing recorded in $STATE: nothing to undo"
    rm -f "$STATE"
    return 0
  fi
  local rc=0 at prev
  at=$(recorded mounted)
  if [ -n "$at" ]; then
    if grep -q " $at hugetlbfs " /proc/mounts; then
      # Map files that an EAL without --huge-unlink left behind hold pages;
      # this mount is ours, so they are ours too.
      find "$at" -maxdepth 1 -type f -delete 2>/dev/null || true
      if umount "$at"; then
        say "unmounted $at"
      else
        echo "hugepages: error: cannot unmount $at (still in use?)" >&2
        rc=1
      fi
    else
      say "$at is no longer mounted"
    fi
  fi
  prev=$(recorded nr_hugepages)
  if [ -n "$prev" ]; then
    set_nr "$prev"
    # Pages still mapped by a live process stay allocated (as surplus) until
    # it exits; the kernel returns them then.
    say "reservation back to $prev pages (now $(nr), $(free_pages) free)"
  fi
  rm -f "$STATE"
  return $rc
}

status() {
  if [ -d "$SYSFS" ]; then
    say "$(nr) pages of ${PAGE_KB} kB reserved, $(free_pages) free"
  else
    say "no ${PAGE_KB} kB hugepages in this kernel"
  fi
  local at; at=$(hugetlbfs_mount)
  say "mounted at: ${at:-nowhere}"
  if [ -s "$STATE" ]; then say "recorded changes ($STATE): $(tr '\n' ' ' < "$STATE")"; fi
}

case "${1:-}" in
  setup) shift; setup "$@" ;;
  teardown) teardown ;;
  status) status ;;
  *) echo "usage: $0 setup [N] | teardown | status" >&2; exit 2 ;;
esac
