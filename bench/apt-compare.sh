#!/usr/bin/env bash
# Does `env lock` choose what apt chooses? For each request below, on bookworm:
#  1. `env lock` resolves it (base layer + packages layer);
#  2. apt is given a dpkg status holding exactly the locked base layer as installed, and
#     `apt-get install -s --no-install-recommends REQUEST` prints what it would add;
#  3. the packages layer must equal apt's list: same names, same versions.
# With --base, also builds mmdebstrap's minbase (merged-usr, as debootstrap) and compares its
# package set with the locked base layer.
# Needs: a built envkit (target/release/env or target/debug/env), apt with bookworm lists on
# the host (`apt-get update`), and mmdebstrap for --base. Exit 1 on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
env_bin=${ENVKIT_BIN:-$( [ -x target/release/env ] && echo target/release/env || echo target/debug/env )}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
requests=("python3 python3-pytest" "postgresql-15" "build-essential" "git curl ca-certificates" "nodejs npm")
failed=0

lock_for() { # lock_for DIR PACKAGES... -> writes DIR/env.lock
    local dir=$1; shift
    mkdir -p "$dir"
    printf 'base "debian:bookworm"\npackages %s\n' "$(printf '"%s" ' "$@")" > "$dir/env.kdl"
    (cd "$dir" && "$OLDPWD/$env_bin" lock >/dev/null)
}
layer() { # layer LOCK base|packages -> "name version" lines, sorted
    sed -n "s/^package \"\([^\"]*\)\" version=\"\([^\"]*\)\".* layer=\"$2\".*/\1 \2/p" "$1" | sort
}

for request in "${requests[@]}"; do
    dir="$work/$(echo "$request" | tr ' ' '_')"
    # shellcheck disable=SC2086
    lock_for "$dir" $request
    status="$dir/status"
    # One apt-cache call for the whole base layer: each call loads apt's whole cache.
    # shellcheck disable=SC2046
    apt-cache show $(layer "$dir/env.lock" base | tr ' ' '=') 2>/dev/null \
        | sed '/^Package:/a Status: install ok installed' > "$status"
    # shellcheck disable=SC2086
    apt-get install -s --no-install-recommends -o Dir::State::status="$status" \
        -o Debug::NoLocking=1 -o APT::Get::Show-Versions=1 $request 2>/dev/null \
        | sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1 \2/p' | sort > "$dir/apt.txt"
    layer "$dir/env.lock" packages > "$dir/envkit.txt"
    count=$(wc -l < "$dir/envkit.txt")
    if diff -u "$dir/apt.txt" "$dir/envkit.txt" > "$dir/diff.txt"; then
        printf 'same as apt   %-28s %4d packages\n' "$request" "$count"
    else
        printf 'DIFFERENT     %-28s (apt: - , envkit: +)\n' "$request"
        sed -n '3,$p' "$dir/diff.txt" | grep '^[-+]' | sed 's/^/    /'
        failed=1
    fi
done

if [ "${1:-}" = "--base" ]; then
    command -v mmdebstrap >/dev/null || { echo "--base needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 2; }
    root="$work/minbase"
    mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        bookworm "$root" >/dev/null 2>&1
    dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package} ${Version}\n' | sort > "$work/mmdebstrap.txt"
    layer "$work/$(echo "${requests[0]}" | tr ' ' '_')/env.lock" base > "$work/base.txt"
    if diff -u "$work/mmdebstrap.txt" "$work/base.txt" > "$work/base.diff"; then
        echo "same as mmdebstrap minbase: $(wc -l < "$work/base.txt") base packages"
    else
        echo "base layer DIFFERS from mmdebstrap minbase (mmdebstrap: - , envkit: +)"
        sed -n '3,$p' "$work/base.diff" | grep '^[-+]' | sed 's/^/    /'
        failed=1
    fi
fi
exit $failed
