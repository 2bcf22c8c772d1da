#!/usr/bin/env bash
# env build against mmdebstrap, side by side in one run, .debs already cached for both:
#  - cold: mmdebstrap --variant=minbase --include=python3,python3-pytest bookworm, and
#    `env build` of the same environment into an empty store;
#  - no-op: `env build` again (nothing changed);
#  - one package more: `env build` after adding `jq` at the end of `packages` (a layer of its
#    own on top of the python3 and python3-pytest ones).
# Targets (build issue): cold at most half of mmdebstrap's time, no-op under 20 ms, one
# package under 3 s plus its download (the packages layer's own time is printed apart).
# Needs root and mmdebstrap (apt-get install mmdebstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/build.sh needs root" >&2; exit 2; }
command -v mmdebstrap >/dev/null || { echo "needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 2; }
if [ -z "${ENV_BIN:-}" ]; then cargo build --release --quiet; fi
env_bin=${ENV_BIN:-$PWD/target/release/env}
work=$(mktemp -d /var/tmp/envkit-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
debs=$work/mmdebstrap-debs
mkdir -p "$debs" "$work/project"
seconds() { local start=$1 end; end=$(date +%s%N); awk -v d=$((end - start)) 'BEGIN { printf "%.3f", d / 1e9 }'; }

# Warm both caches.
mmdebstrap --quiet --variant=minbase --include=python3,python3-pytest --skip=essential/unlink \
    --skip=cleanup/apt --customize-hook="sync-out /var/cache/apt/archives $debs" \
    bookworm "$work/warm-mmdebstrap" >/dev/null 2>&1
rm -rf "$work/warm-mmdebstrap"
printf 'name "bench"\nbase "debian:bookworm"\npackages "python3" "python3-pytest"\n' > "$work/project/env.kdl"
(cd "$work/project" && ENVKIT_STORE_DIR=$work/warm-store "$env_bin" build >/dev/null 2>&1)
rm -rf "$work/warm-store"

start=$(date +%s%N)
mmdebstrap --quiet --variant=minbase --include=python3,python3-pytest \
    --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\" && cp $debs/*.deb \"\$1/var/cache/apt/archives/\"" \
    bookworm "$work/mmdebstrap-root" >/dev/null 2>&1
mmdebstrap_s=$(seconds "$start")

cd "$work/project"
export ENVKIT_STORE_DIR=$work/store
start=$(date +%s%N); "$env_bin" build >/dev/null 2>&1; cold_s=$(seconds "$start")
noop=()
for _ in 1 2 3 4 5; do start=$(date +%s%N); "$env_bin" build >/dev/null 2>&1; noop+=("$(seconds "$start")"); done
noop_s=$(printf '%s\n' "${noop[@]}" | sort -n | sed -n 3p)
sed -i 's/packages "python3" "python3-pytest"/packages "python3" "python3-pytest" "jq"/' env.kdl
"$env_bin" lock >/dev/null 2>&1
ENVKIT_STORE_DIR=$work/scratch "$env_bin" build --dry-run >/dev/null 2>&1 || true
start=$(date +%s%N); "$env_bin" build >/dev/null 2>"$work/one.log"; one_s=$(seconds "$start")
# envkit times the layer itself: the rest of the total is the download of jq and its libraries.
one_layer_s=$(sed -n 's/^built packages-[0-9]* layer in \([0-9.]*\) s$/\1/p' "$work/one.log")

printf '%-44s %8s s\n' "mmdebstrap minbase + python3 python3-pytest" "$mmdebstrap_s" \
    "env build, empty store" "$cold_s" "env build, nothing changed (median of 5)" "$noop_s" \
    "env build, jq added (includes its download)" "$one_s" \
    "  of which building jq's packages layer" "$one_layer_s"
awk -v e="$cold_s" -v m="$mmdebstrap_s" 'BEGIN { printf "ratio env build / mmdebstrap                  %8.2f   (target: <= 0.50)\n", e / m }'
