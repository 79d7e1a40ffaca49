#!/usr/bin/env bash
# Builds a profile-guided (PGO) release binary of `dst` for long campaigns.
#
# Three steps: an instrumented release build, a short training run of fixed seeds (every
# protocol, the heavy profile, pingpong), then a release build that uses the profile. The
# runs it makes are the same as the plain build's (PGO only reorders and inlines code);
# `docs/performance.md` has the speed it buys. Takes about two plain release builds.
#
# Do not edit the sources while it runs: a profile of other code is partly discarded (LLVM
# warns of a "function control flow change").
#
# Usage: scripts/build-pgo.sh [OUT]   (default OUT: target/pgo/dst)
set -euo pipefail
out=$(realpath -m "${1:-$(dirname "$0")/../target/pgo/dst}")
cd "$(dirname "$0")/.."
root=$(pwd)
work="$root/target/pgo"

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    echo "build-pgo: installing llvm-tools (for llvm-profdata)" >&2
    rustup component add llvm-tools >&2
fi
if [ ! -x "$profdata" ]; then
    echo "build-pgo: llvm-profdata not found at $profdata" >&2
    exit 2
fi

# Separate target directories: the instrumented and optimised builds take different
# RUSTFLAGS, and neither may overwrite the plain build's artifacts.
rm -rf "$work/data"
mkdir -p "$work/data"
echo "build-pgo: 1/3 instrumented build" >&2
RUSTFLAGS="-Cprofile-generate=$work/data" \
    cargo build --release --quiet --target-dir "$work/generate"

echo "build-pgo: 2/3 training run" >&2
# Exit 1 (a violating seed) still trains; anything else (bad input, a crash) stops.
train() {
    local status=0
    "$work/generate/release/dst" "$@" >/dev/null || status=$?
    if [ "$status" -gt 1 ]; then
        echo "build-pgo: training run failed ($status): dst $*" >&2
        exit "$status"
    fi
}
train explore --protocol raft --profile heavy --ops 1000 --seeds 30 --jobs 1
train explore --protocol raft --profile swarm --seeds 20 --jobs 1
for protocol in multipaxos pbft hotstuff fastbft; do
    train explore --protocol "$protocol" --profile heavy --ops 1000 --seeds 5 --jobs 1
done
train bench pingpong
"$profdata" merge -o "$work/merged.profdata" "$work/data"

echo "build-pgo: 3/3 optimised build" >&2
RUSTFLAGS="-Cprofile-use=$work/merged.profdata" \
    cargo build --release --quiet --target-dir "$work/use"

mkdir -p "$(dirname "$out")"
# Copied then renamed: a reader of OUT never sees half a binary.
cp "$work/use/release/dst" "$out.tmp"
mv "$out.tmp" "$out"
echo "build-pgo: built $out" >&2
