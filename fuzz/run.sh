#!/usr/bin/env bash
# Fuzz the env.kdl parser: seeds the corpus with every env file in the repository, then runs
# libFuzzer for SECONDS (default 600). Needs a nightly toolchain and `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
corpus=fuzz/corpus/parse_env
mkdir -p "$corpus"
find envs tests/fixtures -name '*.kdl' -exec cp {} "$corpus/" \; 2>/dev/null || true
exec cargo +nightly fuzz run parse_env "$corpus" -- -max_total_time="$seconds" -max_len=4096 -timeout=5
