#!/usr/bin/env bash
# Fuzzes the whole per-packet path (fuzz/fuzz_targets/packet_path.rs) for
# SECONDS (default 600). Exits non-zero if the fuzzer finds a crash; the
# crashing input is then in fuzz/artifacts/packet_path/.
#
# cargo-fuzz needs nightly-only flags (-Zsanitizer); on a stable toolchain
# RUSTC_BOOTSTRAP=1 unlocks them.
set -euo pipefail

SECONDS_TO_RUN="${1:-600}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/fuzz/target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd "$ROOT"
# A private copy of the seeds: the fuzzer adds what it finds to its corpus
# directory, and the committed seeds stay as they are.
CORPUS="$CARGO_TARGET_DIR/fuzz-corpus/packet_path"
mkdir -p "$CORPUS"
cp -n fuzz/seeds/packet_path/* "$CORPUS"/ 2>/dev/null || true

# -fork would hide per-input state; one process keeps the director's tables
# across inputs, which is what reaches "table full" and stale entries.
exec cargo fuzz run packet_path --fuzz-dir fuzz "$CORPUS" -- \
    -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -print_final_stats=1
