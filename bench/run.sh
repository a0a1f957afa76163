#!/usr/bin/env bash
# Times berth against runc and crun and writes docs/benchmarks.md (overwritten).
#
# Usage (as root, from anywhere):  bench/run.sh
#
# Every runtime gets the same bundle with linux.cgroupsPath = /<prefix>/<id>, in each of
# these views (BENCH_VIEWS, default all four):
#   host       this host's hybrid view, berth and runc; crun (which refuses it) in `v1`;
#              state roots on a tmpfs, as /run is on most hosts
#   host-disk  the same with the state roots on this machine's ext4 (where its /run is)
#   v1         all three in a mount namespace without /sys/fs/cgroup/unified (bench/view.sh)
#   v2         all three in a mount namespace with cgroup2 alone on /sys/fs/cgroup
# Per view: the CLI phases (bench.py measure) of each runtime, interleaved in rounds, berth's
# API on one open connection after each of its rounds (berth-bench api, bench/api), and the
# throughput of concurrent clients (scale.py throughput). Then, berth alone in the host view:
# berthd with 10,000 containers (scale.py registry), a stuck delete beside fast ones
# (scale.py stuck), the perf profiles (perf_profile.py), exec (exec.sh) and, when
# bench/containerd.py exists, its section. report.py writes the markdown.
#
# Knobs (environment):
#   BENCH_N=30            samples per single-invocation measurement (>= 20), per view
#   BENCH_REPS=6          repetitions of the 40-parallel force delete (>= 3), per view
#   BENCH_PAR=40          containers deleted at once in that measurement
#   BENCH_ROUNDS=3        rounds per view (order of the runtimes rotated per round)
#   BENCH_VIEWS="host host-disk v1 v2"
#   BENCH_CLIENTS=16 BENCH_TPUT_N=200 BENCH_TPUT_REPS=2   throughput, per view and runtime
#   BENCH_SCALE=1         registry and stuck-delete phases (0 skips them)
#   BENCH_RUNNING=200 BENCH_SIZES="0 1000 10000" BENCH_STARTUP_REPS=5 BENCH_LIST_CALLS=15
#   BENCH_STUCK_N=100
#   BENCH_PROFILE=1       perf profiles (builds target/bench-profile, unstripped; 0 skips)
#   BENCH_PROFILE_N=60 BENCH_PROFILE_CLI_RUNS=300
#   BENCH_EXEC=1          bench/exec.sh's section
#   BENCH_CONTAINERD=1    bench/containerd.py's section, when that script exists
#   BENCH_QUIET_WAIT=0    wait up to this many seconds, after the build, for the 1-minute
#                         load average to drop below BENCH_QUIET_LOAD (0.6)
#   BENCH_OUT=...         report path (default docs/benchmarks.md)
# Everything the run creates is removed on exit, also on failure or Ctrl-C; what the
# runtimes' own deletes left behind is reported (exit status 3).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$REPO/bench"
PY=python3
N=${BENCH_N:-30}
REPS=${BENCH_REPS:-6}
ROUNDS=${BENCH_ROUNDS:-3}
PAR=${BENCH_PAR:-40}
VIEWS=${BENCH_VIEWS:-"host host-disk v1 v2"}
CLIENTS=${BENCH_CLIENTS:-16}
TPUT_N=${BENCH_TPUT_N:-200}
TPUT_REPS=${BENCH_TPUT_REPS:-2}
SCALE=${BENCH_SCALE:-1}
RUNNING=${BENCH_RUNNING:-200}
SIZES=${BENCH_SIZES:-"0 1000 10000"}
STARTUP_REPS=${BENCH_STARTUP_REPS:-5}
LIST_CALLS=${BENCH_LIST_CALLS:-15}
STUCK_N=${BENCH_STUCK_N:-100}
PROFILE=${BENCH_PROFILE:-1}
PROFILE_N=${BENCH_PROFILE_N:-60}
PROFILE_CLI_RUNS=${BENCH_PROFILE_CLI_RUNS:-300}
EXEC=${BENCH_EXEC:-1}
CONTAINERD=${BENCH_CONTAINERD:-1}
QUIET_WAIT=${BENCH_QUIET_WAIT:-0}
QUIET_LOAD=${BENCH_QUIET_LOAD:-0.6}
OUT=${BENCH_OUT:-$REPO/docs/benchmarks.md}
PREFIX="bnch$$x"    # every container id and cgroup starts with this; /$PREFIX is the parent

if (( N < 20 )); then echo "BENCH_N must be >= 20" >&2; exit 2; fi
if (( REPS < 3 )); then echo "BENCH_REPS must be >= 3" >&2; exit 2; fi
if (( ROUNDS < 1 || ROUNDS > REPS )); then echo "BENCH_ROUNDS must be 1..BENCH_REPS" >&2; exit 2; fi
if (( LIST_CALLS < 10 )); then echo "BENCH_LIST_CALLS must be >= 10" >&2; exit 2; fi
if (( CLIENTS < 1 || TPUT_REPS < 1 || STARTUP_REPS < 1 )); then
    echo "BENCH_CLIENTS, BENCH_TPUT_REPS, BENCH_STARTUP_REPS must be >= 1" >&2; exit 2
fi
for v in $VIEWS; do
    case $v in host|host-disk|v1|v2) ;; *) echo "unknown view $v in BENCH_VIEWS" >&2; exit 2 ;; esac
done
if [[ $(id -u) != 0 ]]; then echo "run as root" >&2; exit 2; fi
for t in runc crun unshare farm-bench "$PY"; do
    command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 2; }
done
if [[ $PROFILE == 1 ]] && ! command -v perf >/dev/null; then echo "missing: perf (or BENCH_PROFILE=0)" >&2; exit 2; fi
[[ -x /usr/bin/busybox ]] || { echo "missing: /usr/bin/busybox" >&2; exit 2; }

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- build (before any temp state exists) -----------------------------------
log "cargo build --release --bins; cargo cli; cargo build --release -p berth-bench"
(cd "$REPO" && cargo build --release --bins && cargo cli && cargo build --release -p berth-bench)
BERTHD="$REPO/target/release/berthd"
# the CLI as it is installed (README): static, on musl
BERTH="$REPO/target/x86_64-unknown-linux-musl/release/berth"
BENCH_BIN="$REPO/target/release/berth-bench"
PROFILE_TARGET="$REPO/target/bench-profile"
if [[ $PROFILE == 1 ]]; then
    # the release profile strips symbols, which perf needs: the same build, unstripped, apart
    log "cargo build --release (unstripped, for perf) into $PROFILE_TARGET"
    (cd "$REPO" && CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --bins -p berth \
        --target-dir "$PROFILE_TARGET" && CARGO_PROFILE_RELEASE_STRIP=false cargo cli --target-dir "$PROFILE_TARGET")
fi

load1() { cut -d' ' -f1 /proc/loadavg; }
if (( QUIET_WAIT > 0 )); then
    waited=0
    while awk -v l="$(load1)" -v m="$QUIET_LOAD" 'BEGIN { exit !(l >= m) }' && (( waited < QUIET_WAIT )); do
        (( waited % 60 == 0 )) && log "waiting for the 1-minute load average ($(load1)) to drop below $QUIET_LOAD"
        sleep 10; waited=$((waited + 10))
    done
fi
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$SECONDS
log "load average at the start: $LOAD_AT_START"

# Bundles, logs, results and the tmpfs views' state roots on a tmpfs; the disk view's roots
# on ext4.
TMP=$(mktemp -d /tmp/berth-bench.XXXXXX)
mount -t tmpfs -o mode=0700 berth-bench "$TMP"
DISK=$(mktemp -d /tmp/berth-bench-disk.XXXXXX)
RES="$TMP/results"
ROOTFS="$TMP/rootfs"
mkdir -p "$RES" "$TMP/bundles" "$TMP/pids"
NOTES="$RES/notes.txt"
: >"$NOTES"
note() { log "NOTE: $*"; echo "$*" >>"$NOTES"; }

view_of() {  # VIEW RUNTIME: the cgroup view that runtime runs in
    local cg=${1%-disk}
    [[ $2 == crun && $cg == host ]] && cg=v1
    echo "$cg"
}
base_of() { [[ $1 == *-disk ]] && echo "$DISK" || echo "$TMP"; }
cli_of() {  # VIEW RUNTIME: the runtime's CLI, one word a line
    local base; base=$(base_of "$1")
    case $2 in
    berth) printf '%s\n' "$BERTH" --socket "$base/$1-berth-run/berth.sock" ;;
    *) printf '%s\n' "$2" --root "$base/$1-$2-root" ;;
    esac
}

stop_daemon() {  # NAME: SIGTERM the berthd of $TMP/pids/NAME.pid, SIGKILL after 15 s
    local f="$TMP/pids/$1.pid" pid
    [[ -s $f ]] || return 0
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "berthd $1 did not exit on SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    rm -f "$f"
}

daemon_args() {  # NAME: the scale phases' berthd (bench/scale.py starts and stops it)
    echo --berthd "$BERTHD" --berth "$BERTH" --bench "$BENCH_BIN" --root "$TMP/$1-root" \
        --run-dir "$TMP/$1-run" --cgroup-parent "${PREFIX}$1" --log "$TMP/$1-berthd.log" \
        --pidfile "$TMP/$1.pid" --tmp "$TMP"
}
read -ra SCALE_REG_ARGS <<<"$(daemon_args scale)"
read -ra SCALE_STUCK_ARGS <<<"$(daemon_args stuck)"

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    log "cleanup"
    local v rt id root cli
    # 1. containers still in a runtime's state root (normally none: every driver
    #    force-deletes what it made before it returns)
    for v in $VIEWS; do
        for rt in berth runc crun; do
            root="$(base_of "$v")/$v-$rt-root"
            [[ -d $root ]] || continue
            mapfile -t cli < <(cli_of "$v" "$rt")
            for id in $(ls "$root" | grep "^$PREFIX"); do
                log "leftover $rt container $id ($v): delete --force"
                "$BENCH/view.sh" "$(view_of "$v" "$rt")" "${cli[@]}" delete --force "$id" </dev/null >/dev/null
            done
        done
        stop_daemon "$v"
    done
    # 2. the scale phases' own berthds and containers (thaws the frozen cgroup, drops the
    #    generated state, force-deletes the real containers, stops the daemons)
    [[ -d $TMP/scale-root ]] && "$PY" "$BENCH/scale.py" teardown "${SCALE_REG_ARGS[@]}" --gen-prefix "${PREFIX}gen-" >&2
    [[ -d $TMP/stuck-root ]] && "$PY" "$BENCH/scale.py" teardown "${SCALE_STUCK_ARGS[@]}" >&2
    if [[ -s $TMP/prof.pid ]]; then kill -TERM "$(cat "$TMP/prof.pid")" 2>/dev/null; sleep 1; fi
    # 3. the parent made for the containers' cgroups, then anything still in a cgroup
    #    named $PREFIX*, or rooted in our rootfs: ours, left behind; kill it, remove them
    rmdir /sys/fs/cgroup/*/"$PREFIX" 2>/dev/null
    if ! "$PY" "$BENCH/bench.py" leftovers --prefix "$PREFIX" --rootfs "$ROOTFS" >&2; then
        log "LEFTOVERS FOUND after the runtimes' own deletes; killing/removing them"
        "$PY" "$BENCH/bench.py" leftovers --prefix "$PREFIX" --rootfs "$ROOTFS" --kill >&2
        [[ $rc == 0 ]] && rc=3
    fi
    # 4. temp dirs
    umount "$TMP" && rmdir "$TMP"
    rm -rf "$DISK"
    local left
    left=$(find /sys/fs/cgroup -name "${PREFIX}*" 2>/dev/null | head -5)
    [[ -n $left ]] && log "cgroup directories still present: $left"
    [[ -e $TMP || -e $DISK ]] && log "could not remove $TMP or $DISK"
    log "done in $((SECONDS - STARTED)) s (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- bundles and the cgroup parent ------------------------------------------------
mkdir -p "$ROOTFS/bin"
cp /usr/bin/busybox "$ROOTFS/bin/busybox"
for l in sh sleep true; do ln -s busybox "$ROOTFS/bin/$l"; done
"$PY" "$BENCH/bench.py" template --out "$TMP/template-sleep.json" --rootfs "$ROOTFS" -- sleep 1000
"$PY" "$BENCH/bench.py" template --out "$TMP/template-true.json" --rootfs "$ROOTFS" -- true
# Made beforehand in every hierarchy (the v2 view's cgroup2 is this host's unified one), so
# that no runtime makes it, or removes it when its last container goes. A v1 cpuset
# cgroup starts with no CPUs and memory nodes: it gets its parent's.
for h in /sys/fs/cgroup/*/; do
    mkdir "$h$PREFIX"
    if [[ -e $h/cpuset.cpus ]]; then
        cat "$h/cpuset.cpus" >"$h$PREFIX/cpuset.cpus"
        cat "$h/cpuset.mems" >"$h$PREFIX/cpuset.mems"
    fi
done

# --- the views -------------------------------------------------------------------
RUNTIMES=(berth runc crun)
start_view_daemon() {  # VIEW: its berthd, started in the view, polled until it serves
    local v=$1 base; base=$(base_of "$1")
    mkdir -m 0700 -p "$base/$v-berth-run"
    # setsid: a Ctrl-C must not stop the daemon before cleanup has deleted its containers
    setsid "$BENCH/view.sh" "$(view_of "$v" berth)" "$BERTHD" --root "$base/$v-berth-root" \
        --socket "$base/$v-berth-run/berth.sock" --cgroup-parent "$PREFIX" \
        </dev/null >"$TMP/$v-berthd.log" 2>&1 &
    echo $! >"$TMP/pids/$v.pid"
    for _ in $(seq 200); do
        "$BERTH" --socket "$base/$v-berth-run/berth.sock" health </dev/null >/dev/null 2>&1 && return 0
        kill -0 "$(cat "$TMP/pids/$v.pid")" 2>/dev/null || break
        sleep 0.05
    done
    log "berthd of view $v did not become ready; its log:"
    cat "$TMP/$v-berthd.log" >&2
    return 1
}

measure() {  # VIEW RUNTIME ROUND N REPS
    local v=$1 rt=$2 r=$3 n=$4 reps=$5 cli
    mapfile -t cli < <(cli_of "$v" "$rt")
    log "$v, round $r: $rt (n=$n, parallel reps=$reps)"
    "$BENCH/view.sh" "$(view_of "$v" "$rt")" "$PY" "$BENCH/bench.py" measure --runtime "$rt" \
        --view "$v" --round "$r" --n "$n" --reps "$reps" --par "$PAR" \
        --prefix "${PREFIX}$v-$rt-r$r-" --cgroup-parent "$PREFIX" --bundles "$TMP/bundles" \
        --sleep-template "$TMP/template-sleep.json" --true-template "$TMP/template-true.json" \
        --tmp "$TMP" --out "$RES/cli-$v-$rt-r$r.json" -- "${cli[@]}" \
        || note "$v round $r: the $rt driver exited with status $?"
    if [[ $rt == berth ]]; then
        "$BENCH_BIN" api --socket "${cli[2]}" --root "$(base_of "$v")/$v-berth-root" \
            --template "$TMP/template-sleep.json" --bundles "$TMP/bundles" \
            --cgroup-parent "$PREFIX" --prefix "${PREFIX}$v-api-r$r-" --n "$n" \
            >"$RES/api-$v-r$r.json" || note "$v round $r: berth-bench api exited with status $?"
    fi
}

throughput() {  # VIEW RUNTIME REP
    local v=$1 rt=$2 r=$3 cli
    mapfile -t cli < <(cli_of "$v" "$rt")
    log "$v, throughput rep $r: $rt ($TPUT_N containers, $CLIENTS clients)"
    "$BENCH/view.sh" "$(view_of "$v" "$rt")" "$PY" "$BENCH/scale.py" throughput --runtime "$rt" \
        --view "$v" --rep "$r" --prefix "${PREFIX}$v-tp-$rt-r$r-" --cgroup-parent "$PREFIX" \
        --template "$TMP/template-sleep.json" --bundles "$TMP/bundles" --count "$TPUT_N" \
        --clients "$CLIENTS" --tmp "$TMP" --out "$RES/tput-$v-$rt-r$r.json" -- "${cli[@]}" \
        || note "$v throughput rep $r: the $rt driver exited with status $?"
}

probe() {  # VIEW RUNTIME: can it create a container in this view at all? (else: why)
    local cli
    mapfile -t cli < <(cli_of "$1" "$2")
    "$BENCH/view.sh" "$(view_of "$1" "$2")" "$PY" "$BENCH/bench.py" probe --runtime "$2" \
        --prefix "${PREFIX}$1-$2-" --cgroup-parent "$PREFIX" --bundles "$TMP/bundles" \
        --sleep-template "$TMP/template-sleep.json" --tmp "$TMP" -- "${cli[@]}" 2>/dev/null
}

for v in $VIEWS; do
    start_view_daemon "$v"
    present=()
    for rt in "${RUNTIMES[@]}"; do
        if why=$(probe "$v" "$rt"); then present+=("$rt"); else note "$v: $rt left out of this view: its create fails: $why"; fi
    done
    for ((r = 0; r < ROUNDS; r++)); do
        n_r=$(( N / ROUNDS + (r < N % ROUNDS ? 1 : 0) ))
        reps_r=$(( REPS / ROUNDS + (r < REPS % ROUNDS ? 1 : 0) ))
        for ((k = 0; k < ${#present[@]}; k++)); do
            measure "$v" "${present[(r + k) % ${#present[@]}]}" "$r" "$n_r" "$reps_r"
        done
    done
    for ((r = 0; r < TPUT_REPS; r++)); do
        for ((k = 0; k < ${#present[@]}; k++)); do
            throughput "$v" "${present[(r + k) % ${#present[@]}]}" "$r"
        done
    done
    stop_daemon "$v"
done

# --- berth alone: scale, profiles, exec, containerd ---------------------------------
if [[ $SCALE == 1 ]]; then
    log "registry: start-up, memory and ListContainers at sizes $SIZES ($RUNNING running)"
    "$PY" "$BENCH/scale.py" registry "${SCALE_REG_ARGS[@]}" --prefix "$PREFIX" \
        --template "$TMP/template-sleep.json" --bundles "$TMP/bundles" --running "$RUNNING" \
        --sizes "$SIZES" --reps "$STARTUP_REPS" --clients "$CLIENTS" --list-calls "$LIST_CALLS" \
        --out "$RES/registry.json" || note "the registry phase failed (status $?); see the run's output"
    log "stuck delete: $STUCK_N force deletes without and with a delete stuck on a frozen cgroup"
    "$PY" "$BENCH/scale.py" stuck "${SCALE_STUCK_ARGS[@]}" --prefix "$PREFIX" \
        --template "$TMP/template-sleep.json" --bundles "$TMP/bundles" --count "$STUCK_N" \
        --clients "$CLIENTS" --kill-wait-rounds 100 --kill-wait-round 100ms \
        --out "$RES/stuck.json" || note "the stuck-delete phase failed (status $?); see the run's output"
fi
if [[ $PROFILE == 1 ]]; then
    log "profiles: berthd during $PROFILE_N creates, starts, force deletes; the CLI x $PROFILE_CLI_RUNS"
    "$PY" "$BENCH/perf_profile.py" run --berthd "$PROFILE_TARGET/release/berthd" \
        --berth "$PROFILE_TARGET/x86_64-unknown-linux-musl/release/berth" --root "$TMP/prof-root" --run-dir "$TMP/prof-run" \
        --log "$TMP/prof-berthd.log" --pidfile "$TMP/prof.pid" --tmp "$TMP" \
        --template "$TMP/template-sleep.json" --bundles "$TMP/bundles" --cgroup-parent "$PREFIX" \
        --prefix "${PREFIX}prof-" --n "$PROFILE_N" --cli-runs "$PROFILE_CLI_RUNS" \
        --out "$RES/profile.json" || note "the profile step failed (status $?); see the run's output"
fi
if [[ $EXEC == 1 ]]; then
    log "exec: bench/exec.sh"
    BENCH_N=$N bash "$BENCH/exec.sh" >"$RES/section-1-exec.md" \
        || { note "bench/exec.sh failed (status $?)"; rm -f "$RES/section-1-exec.md"; }
fi
if [[ $CONTAINERD == 1 && -f $BENCH/containerd.py ]]; then
    log "containerd: bench/containerd.py"
    python3 "$BENCH/containerd.py" >"$RES/section-2-containerd.md" \
        || { note "bench/containerd.py failed (status $?)"; rm -f "$RES/section-2-containerd.md"; }
else
    printf '## containerd\n\nNot measured in this run: %s.\n' \
        "$([[ -f $BENCH/containerd.py ]] && echo "BENCH_CONTAINERD=0" || echo "there is no bench/containerd.py")" \
        >"$RES/section-2-containerd.md"
fi

# --- report -----------------------------------------------------------------------
commit=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    commit="$commit + uncommitted changes"
fi
"$PY" - "$RES/meta.json" <<EOF
import json, sys
json.dump({"date": "$(date -u '+%Y-%m-%d %H:%M:%S UTC')", "seconds": $((SECONDS - STARTED)),
           "load_at_start": "$LOAD_AT_START", "load_at_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
           "commit": "$commit", "views": "$VIEWS", "n": $N, "reps": $REPS, "par": $PAR,
           "rounds": $ROUNDS, "cgroup_parent": "$PREFIX", "disk_dir": "$DISK",
           "disk_fs": "$(stat -fc %T "$DISK")"}, open(sys.argv[1], "w"), indent=1)
EOF
mkdir -p "$(dirname "$OUT")"
"$PY" "$BENCH/report.py" --results "$RES" --out "$OUT"
log "wrote $OUT"
