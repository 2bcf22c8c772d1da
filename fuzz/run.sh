#!/usr/bin/env bash
# Fuzz one target for SECONDS (default 600), its corpus seeded first:
#   fuzz/run.sh parse_env|deb822|version|deb|layer_tar [SECONDS]
#   fuzz/run.sh all [SECONDS]      every target in turn
# Needs a nightly toolchain and `cargo install cargo-fuzz`. A crash leaves its input in
# fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?name a target: parse_env, deb822, version, deb, layer_tar or all}
seconds=${2:-600}
if [ "$target" = all ]; then
    for each in parse_env deb822 version deb layer_tar; do "$0" "$each" "$seconds"; done
    exit 0
fi
corpus=fuzz/corpus/$target
mkdir -p "$corpus"
# What earlier runs found worth keeping, minimised (fuzz/seeds/ is kept in the repository).
if [ -d "fuzz/seeds/$target" ]; then cp -n "fuzz/seeds/$target"/* "$corpus/" 2>/dev/null || true; fi
debs_dir=${ENVKIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/envkit}/debs-v1
# The smallest .debs envkit or apt downloaded: real members, compressions and control files.
small_debs() {
    find "$debs_dir" /var/cache/apt/archives -name '*.deb' -size -200k 2>/dev/null | head -n 40
}
case $target in
    parse_env)
        find envs tests/fixtures book/src/examples -name '*.kdl' -exec cp {} "$corpus/" \; ;;
    deb822)
        printf 'Package: a\nVersion: 1.0-1\nDepends: b (>= 2) | c:any, d [amd64] <!nocheck>\nDescription: x\n multi\n .\n line\n\nPackage: b\nVersion: 2\n' > "$corpus/packages"
        printf 'Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 10 Jun 2023 08:53:33 UTC\nValid-Until: Sat, 17 Jun 2023 08:53:33 UTC\nSHA256:\n 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 1234 main/binary-amd64/Packages.xz\n' > "$corpus/release" ;;
    version)
        printf '1:2.3~rc1-4\n2.3-4+deb12u1\n' > "$corpus/epochs"
        printf '1.0~~a\n1.0~\n' > "$corpus/tildes"
        printf '0.9.8zh\n0.9.8-1\n' > "$corpus/letters" ;;
    deb)
        small_debs | while read -r deb; do cp "$deb" "$corpus/"; done ;;
    layer_tar)
        # Each small .deb's data.tar, uncompressed, and a layer with whiteouts and links.
        work=$(mktemp -d)
        small_debs | head -n 10 | while read -r deb; do
            name=$(basename "$deb" .deb)
            (cd "$work" && ar x "$deb" && for data in data.tar*; do
                case $data in
                    *.xz) xz -dc "$data" ;; *.zst) zstd -dc "$data" ;; *.gz) gzip -dc "$data" ;; *) cat "$data" ;;
                esac > "$OLDPWD/$corpus/$name.tar"; done; rm -f ./*)
        done
        mkdir -p "$work/layer/etc/gone" "$work/layer/usr/bin"
        touch "$work/layer/.wh.removed" "$work/layer/etc/gone/.wh..wh..opq" "$work/layer/usr/bin/tool"
        ln -s ../usr/bin/tool "$work/layer/etc/link"
        ln "$work/layer/usr/bin/tool" "$work/layer/usr/bin/hard"
        tar -C "$work/layer" -cf "$corpus/whiteouts.tar" .
        rm -rf "$work" ;;
    *) echo "no fuzz target called $target" >&2; exit 2 ;;
esac
case $target in
    parse_env) max_len=4096 ;; version) max_len=256 ;; deb822) max_len=65536 ;; *) max_len=1048576 ;;
esac
exec cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048
