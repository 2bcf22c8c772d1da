#!/usr/bin/env bash
# Peers: how long `env up` takes to a ready PostgreSQL (envs/postgres.kdl) with its image
# already built, and what a query costs through envkit's link (the peer's loopback address on
# the host, forwarded into its network namespace) against the same query made directly on the
# loopback inside the peer's namespace (nsenter), with pgbench in one run: latency per query,
# time per new connection, and the throughput of a large transfer (256 MiB out of COPY).
# Targets (peers issue): `env up` to ready under 3 s. Needs root, pgbench and psql
# (apt-get install postgresql-client postgresql-contrib).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/peers.sh needs root" >&2; exit 2; }
command -v pgbench >/dev/null || { echo "needs pgbench (apt-get install postgresql-contrib)" >&2; exit 2; }
if [ -z "${ENV_BIN:-}" ]; then cargo build --release --quiet; fi
env_bin=${ENV_BIN:-$PWD/target/release/env}
work=$(mktemp -d /var/tmp/envkit-peers.XXXXXX)
export ENVKIT_STORE_DIR=${ENVKIT_STORE_DIR:-$work/store} ENVKIT_DATA_DIR=$work/data ENVKIT_RUNTIME_DIR=$work/run
cleanup() { (cd "$work/project" && "$env_bin" down --volumes --yes >/dev/null 2>&1) || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/project"
cp envs/postgres.kdl "$work/project/"
printf 'name "bench"\nbase "debian:bookworm"\npeer "db" file="postgres.kdl"\n' > "$work/project/env.kdl"
cd "$work/project"
"$env_bin" up >/dev/null 2>&1   # builds the image and initialises the volume
"$env_bin" down >/dev/null 2>&1

ms() { local start=$1 end; end=$(date +%s%N); echo $(((end - start) / 1000000)); }
ups=()
for _ in 1 2 3 4 5; do
    start=$(date +%s%N); "$env_bin" up >/dev/null 2>&1; ups+=("$(ms "$start")")
    "$env_bin" down >/dev/null 2>&1
done
up_ms=$(printf '%s\n' "${ups[@]}" | sort -n | sed -n 3p)

"$env_bin" up >/dev/null 2>&1
state=$(find "$ENVKIT_RUNTIME_DIR/peers" -name state.json | head -1)
address=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' "$state")
supervisor=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["supervisor"])' "$state")
init=$(pgrep -P "$supervisor" | head -1)
pgbench_tps() { # HOST, pgbench's connection flag (-C: a new connection per query), then the command prefix
    local flags=$1; shift
    "$@" pgbench -h "$host" -U postgres -n -S $flags -c 1 -T 5 postgres 2>/dev/null | awk '/^tps/ { print $3 }'
}
"$env_bin" run -- true >/dev/null 2>&1
host=$address; PGCONNECT_TIMEOUT=5 pgbench -h "$host" -U postgres -i -q postgres >/dev/null 2>&1
host=$address; link_tps=$(pgbench_tps "" env); link_connect_tps=$(pgbench_tps -C env)
host=127.0.0.1
direct_tps=$(pgbench_tps "" nsenter -t "$init" -n); direct_connect_tps=$(pgbench_tps -C nsenter -t "$init" -n)
copy_mbps() { # the command prefix -> MB/s of 256 MiB copied out of PostgreSQL to here
    local start end bytes
    start=$(date +%s%N)
    bytes=$("$@" psql -h "$host" -U postgres -Atc \
        "copy (select repeat('x', 1048575) from generate_series(1, 256)) to stdout" postgres | wc -c)
    end=$(date +%s%N)
    awk -v b="$bytes" -v ns="$((end - start))" 'BEGIN { printf "%.0f", b / 1e6 / (ns / 1e9) }'
}
host=$address; link_mbps=$(copy_mbps env)
host=127.0.0.1; direct_mbps=$(copy_mbps nsenter -t "$init" -n)

printf '%-58s %8s ms   (target: < 3000)\n' "env up to a ready PostgreSQL, image built (median of 5)" "$up_ms"
printf '%-58s %8.0f tps\n' "pgbench -S, one connection, through the link ($address)" "$link_tps" \
    "pgbench -S, one connection, on the peer's own loopback" "$direct_tps" \
    "pgbench -S -C (connect per query) through the link" "$link_connect_tps" \
    "pgbench -S -C (connect per query) on the peer's own loopback" "$direct_connect_tps"
printf '%-58s %8s MB/s\n' "COPY of 256 MiB to psql through the link" "$link_mbps" \
    "COPY of 256 MiB to psql on the peer's own loopback" "$direct_mbps"
awk -v l="$link_tps" -v d="$direct_tps" -v lc="$link_connect_tps" -v dc="$direct_connect_tps" 'BEGIN {
    printf "per query: link %.3f ms, direct %.3f ms, overhead %.3f ms (%.0f%%)\n",
        1000 / l, 1000 / d, 1000 / l - 1000 / d, (d / l - 1) * 100
    printf "per connect + query + close: link %.3f ms, direct %.3f ms, overhead %.3f ms (%.0f%%)\n",
        1000 / lc, 1000 / dc, 1000 / lc - 1000 / dc, (dc / lc - 1) * 100 }'
awk -v l="$link_mbps" -v d="$direct_mbps" 'BEGIN {
    printf "large transfer: link %.0f MB/s, direct %.0f MB/s (link/direct %.2f)\n", l, d, l / d }'
