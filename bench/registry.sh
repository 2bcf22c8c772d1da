#!/usr/bin/env bash
# A new hire's first `env run` with a warm team cache, against building the same image and
# against mmdebstrap, side by side in one run (.debs already cached for the builders):
#  - mmdebstrap --variant=minbase --include=python3,python3-pytest bookworm;
#  - `env build` of the same environment into an empty store;
#  - `env run -- true` into an empty store, every layer pulled from the team cache, which a CI
#    job filled with `env build --push-cache` (the registry is a local docker-registry);
#  - `env push` of an image the registry already has (nothing to send).
# Targets (registries issue): the new hire's first run at most a fifth of mmdebstrap's time; an
# unchanged push under a second. Needs root, mmdebstrap and docker-registry.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/registry.sh needs root" >&2; exit 2; }
for tool in mmdebstrap docker-registry; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install $tool)" >&2; exit 2; }
done
if [ -z "${ENV_BIN:-}" ]; then cargo build --release --quiet; fi
env_bin=${ENV_BIN:-$PWD/target/release/env}
work=$(mktemp -d /var/tmp/envkit-bench.XXXXXX)
registry_pid=
cleanup() {
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
seconds() { local start=$1 end; end=$(date +%s%N); awk -v d=$((end - start)) 'BEGIN { printf "%.3f", d / 1e9 }'; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
address=127.0.0.1:$port
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$work/registry" "$address" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

debs=$work/mmdebstrap-debs
mkdir -p "$debs" "$work/project"
export ENVKIT_CACHE_DIR=$work/cache DOCKER_CONFIG=$work/no-docker-config
mmdebstrap --quiet --variant=minbase --include=python3,python3-pytest --skip=essential/unlink \
    --skip=cleanup/apt --customize-hook="sync-out /var/cache/apt/archives $debs" \
    bookworm "$work/warm-mmdebstrap" >/dev/null 2>&1
rm -rf "$work/warm-mmdebstrap"
printf 'name "bench"\nbase "debian:bookworm"\npackages "python3" "python3-pytest"\n' > "$work/project/env.kdl"
cd "$work/project"
ENVKIT_STORE_DIR=$work/warm-store "$env_bin" build >/dev/null 2>&1
rm -rf "$work/warm-store"

start=$(date +%s%N)
mmdebstrap --quiet --variant=minbase --include=python3,python3-pytest \
    --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\" && cp $debs/*.deb \"\$1/var/cache/apt/archives/\"" \
    bookworm "$work/mmdebstrap-root" >/dev/null 2>&1
mmdebstrap_s=$(seconds "$start")

# CI: builds into its store and fills the team cache.
start=$(date +%s%N)
ENVKIT_STORE_DIR=$work/ci-store "$env_bin" build --locked >/dev/null 2>&1
build_s=$(seconds "$start")
ENVKIT_STORE_DIR=$work/ci-store ENVKIT_TEAM_CACHE=$address/team/cache ENVKIT_TEAM_CACHE_INSECURE=1 \
    "$env_bin" build --locked --push-cache >/dev/null 2>&1

# The new hire: an empty store and an empty download cache, the team cache warm.
start=$(date +%s%N)
ENVKIT_STORE_DIR=$work/new-store ENVKIT_CACHE_DIR=$work/new-cache \
    ENVKIT_TEAM_CACHE=$address/team/cache ENVKIT_TEAM_CACHE_INSECURE=1 \
    "$env_bin" run --locked -- true >/dev/null 2>"$work/new-hire.log"
new_hire_s=$(seconds "$start")
grep -q "from the team cache" "$work/new-hire.log" || { echo "the new hire did not use the team cache:" >&2; cat "$work/new-hire.log" >&2; exit 1; }
! grep -q "^building " "$work/new-hire.log" || { echo "the new hire built layers:" >&2; cat "$work/new-hire.log" >&2; exit 1; }

# A push of an image the registry has: it asks, sends nothing.
ENVKIT_STORE_DIR=$work/ci-store "$env_bin" push --insecure "$address/team/bench" >/dev/null 2>&1
pushes=()
for _ in 1 2 3; do
    start=$(date +%s%N)
    ENVKIT_STORE_DIR=$work/ci-store "$env_bin" push --insecure "$address/team/bench" >/dev/null 2>"$work/push.log"
    pushes+=("$(seconds "$start")")
done
grep -q "0 layers sent" "$work/push.log" || { echo "an unchanged push sent layers:" >&2; cat "$work/push.log" >&2; exit 1; }
push_s=$(printf '%s\n' "${pushes[@]}" | sort -n | sed -n 2p)

printf '%-52s %8s s\n' "mmdebstrap minbase + python3 python3-pytest" "$mmdebstrap_s" \
    "env build, empty store (.debs cached)" "$build_s" \
    "new hire: env run, empty store, warm team cache" "$new_hire_s" \
    "env push, unchanged image (median of 3)" "$push_s"
awk -v n="$new_hire_s" -v m="$mmdebstrap_s" -v b="$build_s" 'BEGIN {
    printf "ratio new hire / mmdebstrap                           %8.2f   (target: <= 0.20)\n", n / m
    printf "ratio new hire / env build                            %8.2f\n", n / b
}'
awk -v p="$push_s" 'BEGIN { printf "unchanged push                                        %8.3f s (target: < 1 s)\n", p }'
