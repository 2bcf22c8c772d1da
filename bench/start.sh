#!/usr/bin/env bash
# How fast a session starts: `env run -- true` against bwrap, unshare + chroot and runc on the
# same image, in one run. The other tools get the image's layers merged by one read-only
# overlay mount (what they would unpack), envkit its own store. Prints each tool's median
# over many runs, envkit's ratio to each, and the peak memory of the `env` process.
# Targets (run issue): `env run -- true` at most 2x bwrap; peak memory under 20 MiB.
# Needs root, hyperfine, bubblewrap and runc (apt-get install hyperfine bubblewrap runc).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/start.sh needs root" >&2; exit 2; }
for tool in hyperfine bwrap runc; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install hyperfine bubblewrap runc)" >&2; exit 2; }
done
runs=${RUNS:-60}
if [ -z "${ENV_BIN:-}" ]; then cargo build --release --quiet; fi
env_bin=${ENV_BIN:-$PWD/target/release/env}
work=$(mktemp -d /var/tmp/envkit-start.XXXXXX)
cleanup() { umount "$work/merged" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/project" "$work/merged" "$work/bundle"
export ENVKIT_STORE_DIR=${ENVKIT_STORE_DIR:-$work/store} ENVKIT_DATA_DIR=$work/data
printf 'name "bench"\nbase "debian:bookworm"\npackages "python3"\n' > "$work/project/env.kdl"
cd "$work/project"
"$env_bin" run -- true >/dev/null 2>&1

# The same layers, merged once, for the tools that take an unpacked root.
lowers=$("$env_bin" inspect --json | python3 -c '
import json, os, sys
store = os.environ["ENVKIT_STORE_DIR"]
layers = json.load(sys.stdin)["image"]["layers"]
print(":".join(store + "/layers-v1/" + l["key"] + "/tree" for l in reversed(layers)))')
mount -t overlay overlay -o "ro,lowerdir=$lowers,userxattr" "$work/merged"

(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" "$work/merged" <<'EOF'
import json, sys
path, root = sys.argv[1], sys.argv[2]
config = json.load(open(path))
config["root"] = {"path": root, "readonly": True}
config["process"]["args"] = ["true"]
config["process"]["terminal"] = False
json.dump(config, open(path, "w"))
EOF

hyperfine --style basic -N --warmup 5 --runs "$runs" --export-json "$work/times.json" \
    -n "env run -- true" "$env_bin run -- true" \
    -n "bwrap --unshare-all" "bwrap --unshare-all --ro-bind $work/merged / --proc /proc --dev /dev --tmpfs /tmp true" \
    -n "unshare + chroot" "unshare --mount --pid --fork --uts --ipc --net chroot $work/merged true" \
    -n "runc run" "runc run --bundle $work/bundle envkit-bench-start" >/dev/null

peak_kib=0
for _ in 1 2 3 4 5; do
    kib=$( { /usr/bin/time -f '%M' "$env_bin" run -- true >/dev/null; } 2>&1 | tail -1)
    [ "$kib" -gt "$peak_kib" ] && peak_kib=$kib
done

python3 - "$work/times.json" "$peak_kib" <<'EOF'
import json, sys
results = {r["command"]: r["median"] * 1000 for r in json.load(open(sys.argv[1]))["results"]}
env = results["env run -- true"]
for name, ms in results.items():
    print(f"{name:<24} median {ms:7.2f} ms")
for name, ms in results.items():
    if name != "env run -- true":
        print(f"ratio env run / {name:<24} {env / ms:5.2f}" + ("   (target: <= 2.00)" if name.startswith("bwrap") else ""))
print(f"peak memory of env run -- true   {int(sys.argv[2]) / 1024:5.1f} MiB   (target: < 20 MiB)")
EOF
