#!/bin/sh
# rvs-cp applying N real servers (default 10,000) into rvs-dp's real
# ControlPlane through the real ring; prints the figures. Release build.
set -eu
cd "$(dirname "$0")/.."
cargo run --release -q -p rvs-cp --example apply_bench -- "${1:-10000}"
