#!/usr/bin/env bash
# The solve stage against apt, on this machine, in one run:
#  - cargo bench --bench solve: decompress and parse bookworm's index, load the cached index,
#    solve `python3 python3-pytest`;
#  - `env lock --refresh` with a warm cache (asks the mirror whether its indexes changed,
#    loads the cached index, solves, compares with env.lock), median of 11 runs;
#  - `apt-get install -s --no-install-recommends python3 python3-pytest`, median of 11 runs.
# Targets (solve issue): warm `env lock` under 100 ms, at least 5x faster than apt.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'base "debian:bookworm"\npackages "python3" "python3-pytest"\n' > "$work/env.kdl"
(cd "$work" && "$root/target/release/env" lock >/dev/null 2>&1)   # warms the cache

median_ms() { # median_ms CMD... : median wall time of 11 runs, in ms
    local times=()
    for _ in $(seq 11); do
        local start end
        start=$(date +%s%N); "$@" >/dev/null 2>&1; end=$(date +%s%N)
        times+=($(( (end - start) / 1000000 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n 6p
}

cargo bench --quiet --bench solve 2>/dev/null
envkit_ms=$(cd "$work" && median_ms "$root/target/release/env" lock --refresh)
apt_ms=$(median_ms apt-get install -s --no-install-recommends python3 python3-pytest)
printf '%-34s %6s ms\n' "env lock --refresh (warm cache)" "$envkit_ms" "apt-get install -s (same request)" "$apt_ms"
awk -v e="$envkit_ms" -v a="$apt_ms" 'BEGIN { if (e < 1) e = 1; printf "ratio apt / envkit                  %6.1fx   (target: >= 5x, envkit < 100 ms)\n", a / e }'
