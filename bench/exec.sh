#!/usr/bin/env bash
# `berth exec ID -- true` against `runc exec ID true`, as whole CLI processes, on one
# running busybox container each, made from the same bundle with the same cgroup layout
# (linux.cgroupsPath /<prefix>/<id> for both), roots on a tmpfs as /run is elsewhere.
# Prints a markdown section (docs/benchmarks.md quotes it). Needs a release build
# (cargo build --release, cargo cli) and farm-bench; run as root. BENCH_N (default 30) runs each.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_N:-30}
BERTH="$REPO/target/x86_64-unknown-linux-musl/release/berth"
BERTHD="$REPO/target/release/berthd"
WORK=$(mktemp -d)
PREFIX="bexec$$"
mount -t tmpfs -o mode=0700 tmpfs "$WORK"
cleanup() {
    "$BERTH" --socket "$WORK/berth.sock" delete --force "$PREFIX-b" >/dev/null 2>&1 || true
    runc --root "$WORK/runc" delete --force "$PREFIX-r" >/dev/null 2>&1 || true
    [ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    find /sys/fs/cgroup -depth -type d -name "$PREFIX*" -exec rmdir {} \; 2>/dev/null || true
    umount "$WORK" && rmdir "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/bundle/rootfs/bin"
cp /usr/bin/busybox "$WORK/bundle/rootfs/bin/"
for applet in sh sleep true; do ln -s busybox "$WORK/bundle/rootfs/bin/$applet"; done
runc spec --bundle "$WORK/bundle"
python3 - "$WORK/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"]["terminal"] = False
config["process"]["args"] = ["sleep", "100000"]
json.dump(config, open(path, "w"))
PY
# The same layout for both: only the id differs in the cgroup path.
with_cgroup() {
    python3 - "$WORK/bundle/config.json" "$1" <<'PY'
import json, sys
path, cgroup = sys.argv[1], sys.argv[2]
config = json.load(open(path))
config["linux"]["cgroupsPath"] = cgroup
json.dump(config, open(path, "w"))
PY
}

"$BERTHD" --root "$WORK/root" --socket "$WORK/berth.sock" --log-level warn 2>"$WORK/berthd.log" &
DAEMON=$!
for _ in $(seq 200); do [ -S "$WORK/berth.sock" ] && break; sleep 0.05; done
[ -S "$WORK/berth.sock" ] || { cat "$WORK/berthd.log" >&2; exit 1; }
with_cgroup "/$PREFIX/$PREFIX-b"
"$BERTH" --socket "$WORK/berth.sock" create --bundle "$WORK/bundle" "$PREFIX-b"
"$BERTH" --socket "$WORK/berth.sock" start "$PREFIX-b"
with_cgroup "/$PREFIX/$PREFIX-r"
runc --root "$WORK/runc" run -d --bundle "$WORK/bundle" "$PREFIX-r" </dev/null >/dev/null 2>&1

echo "## exec: \`berth exec ID -- true\` vs \`runc exec ID true\`"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg), $N runs each, A/B paired (farm-bench):"
echo
echo '```'
farm-bench -n "$N" --timeout 600 --vs "runc --root $WORK/runc exec $PREFIX-r true" -- \
    "$BERTH" --socket "$WORK/berth.sock" exec "$PREFIX-b" -- true
echo '```'
