#!/usr/bin/env bash
# Times berth against runc and crun as whole CLI processes on one busybox
# bundle, and writes the results to docs/benchmarks.md (overwritten).
#
# Usage (as root, from anywhere):  bench/run.sh
# Knobs (environment):
#   BENCH_N=30     samples per single-invocation measurement (>= 20)
#   BENCH_REPS=7   repetitions of the 40-parallel force delete (>= 5)
#   BENCH_PAR=40   containers deleted at once in that measurement
#   BENCH_ROUNDS=3 rounds; each round runs every runtime once with its share
#                  of the samples (order rotated per round); samples are pooled
#   BENCH_OUT=...  report path (default docs/benchmarks.md); the PNGs go beside it
#   Scale and concurrency phases (bench/scale.py), after the comparison above:
#   BENCH_SCALE=1          0 skips them
#   BENCH_CLIENTS=16       concurrent client processes in the phases below
#   BENCH_TPUT_N=200       containers created+started+force-deleted per throughput run
#   BENCH_TPUT_REPS=3      throughput runs per runtime (interleaved)
#   BENCH_RUNNING=200      real running containers in the registry phase
#   BENCH_SIZES="0 1000 10000"  registry sizes (running + generated stopped ones)
#   BENCH_STARTUP_REPS=5   berthd start-ups per size
#   BENCH_LIST_CALLS=15    timed ListContainers RPCs per size (>= 10)
#   BENCH_STUCK_N=100      force deletes beside (and without) the stuck delete
#   BENCH_QUIET_WAIT=0     wait up to this many seconds, after the build, for the
#                          1-minute load average to drop below BENCH_QUIET_LOAD (0.6)
#
# The scale phases: berthd's start-up time and VmRSS with 0, 200 (running), 1,000 and
# 10,000 containers in its state root, the ListContainers RPC (python grpcio), the
# throughput of 16 concurrent clients for berth, runc and crun, and 100 force deletes
# beside a delete stuck on a frozen cgroup.  Then the plots (matplotlib, installed with
# pip for the benchmark if missing).
#
# Runtimes run one after another, interleaved in rounds.  crun (1.8) refuses this
# host's hybrid cgroup layout, so its part runs in a private mount namespace
# in which /sys/fs/cgroup/unified is unmounted.  Everything it creates is
# removed on exit, also on failure or Ctrl-C.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$REPO/bench"
PY=python3
N=${BENCH_N:-30}
REPS=${BENCH_REPS:-7}
ROUNDS=${BENCH_ROUNDS:-3}
PAR=${BENCH_PAR:-40}
OUT=${BENCH_OUT:-$REPO/docs/benchmarks.md}
PREFIX="bnch$$x"            # every container id and cgroup starts with this
BERTH_CGROUP_PARENT=berth-bench
SCALE=${BENCH_SCALE:-1}
CLIENTS=${BENCH_CLIENTS:-16}
TPUT_N=${BENCH_TPUT_N:-200}
TPUT_REPS=${BENCH_TPUT_REPS:-3}
RUNNING=${BENCH_RUNNING:-200}
SIZES=${BENCH_SIZES:-"0 1000 10000"}
STARTUP_REPS=${BENCH_STARTUP_REPS:-5}
LIST_CALLS=${BENCH_LIST_CALLS:-15}
STUCK_N=${BENCH_STUCK_N:-100}
QUIET_WAIT=${BENCH_QUIET_WAIT:-0}
QUIET_LOAD=${BENCH_QUIET_LOAD:-0.6}
DOCS=$(dirname "$OUT")

if (( N < 20 )); then echo "BENCH_N must be >= 20" >&2; exit 2; fi
if (( REPS < 5 )); then echo "BENCH_REPS must be >= 5" >&2; exit 2; fi
if (( ROUNDS < 1 || ROUNDS > REPS )); then echo "BENCH_ROUNDS must be 1..BENCH_REPS" >&2; exit 2; fi
if (( LIST_CALLS < 10 )); then echo "BENCH_LIST_CALLS must be >= 10" >&2; exit 2; fi
if (( CLIENTS < 1 || TPUT_REPS < 1 || STARTUP_REPS < 1 )); then echo "BENCH_CLIENTS, BENCH_TPUT_REPS, BENCH_STARTUP_REPS must be >= 1" >&2; exit 2; fi
if [[ $(id -u) != 0 ]]; then echo "run as root" >&2; exit 2; fi
for t in runc crun unshare "$PY"; do
    command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 2; }
done
[[ -x /usr/bin/busybox ]] || { echo "missing: /usr/bin/busybox" >&2; exit 2; }

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- build (before any temp state exists) -----------------------------------
log "cargo build --release --bins"
(cd "$REPO" && cargo build --release --bins)
BERTHD="$REPO/target/release/berthd"
BERTH="$REPO/target/release/berth"

# matplotlib, for the plots only: installed for the benchmark if missing; without it the
# report says so and everything else goes on
PLOT_NOTE=
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib for the plots"
    "$PY" -m pip install --quiet matplotlib || "$PY" -m pip install --quiet --break-system-packages matplotlib \
        || PLOT_NOTE="matplotlib is missing and \`pip install matplotlib\` failed: no plots"
fi

# a quiet machine, when asked for (other builds and tests share it)
load1() { cut -d' ' -f1 /proc/loadavg; }
if (( QUIET_WAIT > 0 )); then
    waited=0
    while awk -v l="$(load1)" -v m="$QUIET_LOAD" 'BEGIN { exit !(l >= m) }' && (( waited < QUIET_WAIT )); do
        (( waited % 60 == 0 )) && log "waiting for the 1-minute load average ($(load1)) to drop below $QUIET_LOAD"
        sleep 10; waited=$((waited + 10))
    done
fi
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at the start: $LOAD_AT_START"

TMP=$(mktemp -d /tmp/berth-bench.XXXXXX)
# State roots, bundles and logs live on a tmpfs, as /run does on a normal host (here /run
# is on disk): no runtime pays for disk writes, berth's fsyncs included.
mount -t tmpfs -o mode=0700 berth-bench "$TMP"
DAEMON_PID=
SOCK="$TMP/berth-run/berth.sock"
ROOTFS="$TMP/rootfs"

crun_ns() {  # run "$@" (a bash script string) in crun's private mount namespace
    unshare -m bash -c 'umount /sys/fs/cgroup/unified 2>/dev/null || true; '"$1"
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    log "cleanup"
    local id
    # 1. containers still in a runtime's state root (normally none: the driver
    #    force-deletes what it created before it returns)
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null && [[ -d $TMP/berth-root ]]; then
        for id in $(ls "$TMP/berth-root" | grep "^$PREFIX"); do
            log "leftover berth container $id: delete --force"
            "$BERTH" --socket "$SOCK" delete --force "$id" </dev/null >/dev/null
        done
    fi
    if [[ -d $TMP/runc-root ]]; then
        for id in $(ls "$TMP/runc-root" | grep "^$PREFIX"); do
            log "leftover runc container $id: delete --force"
            runc --root "$TMP/runc-root" delete --force "$id" </dev/null >/dev/null
        done
    fi
    if [[ -d $TMP/crun-root ]]; then
        for id in $(ls "$TMP/crun-root" | grep "^$PREFIX"); do
            log "leftover crun container $id: delete --force"
            crun_ns "crun --root '$TMP/crun-root' delete --force '$id' </dev/null >/dev/null"
        done
    fi
    # 1b. the scale phases' own berthds and containers (thaws the frozen cgroup parent,
    #     drops the generated state, force-deletes the real containers, stops the daemons)
    if [[ -d $TMP/scale-root ]]; then
        "$PY" "$BENCH/scale.py" teardown "${SCALE_REG_ARGS[@]}" --gen-prefix "${PREFIX}gen-" >&2
    fi
    if [[ -d $TMP/stuck-root ]]; then
        "$PY" "$BENCH/scale.py" teardown "${SCALE_STUCK_ARGS[@]}" >&2
    fi
    # 2. the daemon
    if [[ -n $DAEMON_PID ]]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for _ in $(seq 150); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$DAEMON_PID" 2>/dev/null; then
            log "berthd did not exit on SIGTERM; SIGKILL"
            kill -KILL "$DAEMON_PID" 2>/dev/null
        fi
        wait "$DAEMON_PID" 2>/dev/null
        if [[ -s $TMP/berthd.log ]] && grep -qE ' (WARN|ERROR) ' <(sed 's/\x1b\[[0-9;]*m//g' "$TMP/berthd.log"); then
            log "berthd logged warnings/errors (last 20):"
            sed 's/\x1b\[[0-9;]*m//g' "$TMP/berthd.log" | grep -E ' (WARN|ERROR) ' | tail -20 >&2
        fi
    fi
    # 3. last resort: anything still in a cgroup named $PREFIX*, or rooted in
    #    our rootfs, is ours: kill it and remove the cgroups
    if ! "$PY" "$BENCH/bench.py" leftovers --prefix "$PREFIX" --rootfs "$ROOTFS" >&2; then
        log "LEFTOVERS FOUND after the runtimes' own deletes; killing/removing them"
        "$PY" "$BENCH/bench.py" leftovers --prefix "$PREFIX" --rootfs "$ROOTFS" --kill >&2
        [[ $rc == 0 ]] && rc=3
    fi
    # 4. temp dirs
    umount "$TMP" 2>/dev/null
    rm -rf "$TMP"
    local left
    left=$(find /sys/fs/cgroup -name "${PREFIX}*" 2>/dev/null | head -5)
    [[ -n $left ]] && log "cgroup directories still present: $left"
    [[ -e $TMP ]] && log "could not remove $TMP"
    log "done (exit $rc)"
    exit "$rc"
}
# the scale phases' private berthds (bench/scale.py starts and stops them)
daemon_args() {  # NAME: root, socket dir, cgroup parent, log and pidfile of that daemon
    echo --berthd "$BERTHD" --berth "$BERTH" --root "$TMP/$1-root" --run-dir "$TMP/$1-run" \
        --cgroup-parent "${PREFIX}$1" --log "$TMP/$1-berthd.log" --pidfile "$TMP/$1.pid" --tmp "$TMP"
}
read -ra SCALE_REG_ARGS <<<"$(daemon_args scale)"
read -ra SCALE_STUCK_ARGS <<<"$(daemon_args stuck)"
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- bundles ------------------------------------------------------------------
mkdir -p "$ROOTFS/bin"
cp /usr/bin/busybox "$ROOTFS/bin/busybox"
for l in sh sleep true; do ln -s busybox "$ROOTFS/bin/$l"; done
"$PY" "$BENCH/bench.py" bundle --dir "$TMP/bundle-sleep" --rootfs "$ROOTFS" -- sleep 1000
"$PY" "$BENCH/bench.py" bundle --dir "$TMP/bundle-true" --rootfs "$ROOTFS" -- true
# the container whose delete gets stuck: its cgroup's parent is frozen
"$PY" "$BENCH/bench.py" bundle --dir "$TMP/bundle-stuck" --rootfs "$ROOTFS" \
    --cgroups-path "frozen-parent/${PREFIX}stuck" -- sleep 1000

# --- berthd -------------------------------------------------------------------
mkdir -m 0700 "$TMP/berth-run"
log "starting berthd (cgroup parent $BERTH_CGROUP_PARENT)"
# setsid: a Ctrl-C must not stop the daemon before cleanup has deleted its containers
setsid "$BERTHD" --root "$TMP/berth-root" --socket "$SOCK" --cgroup-parent "$BERTH_CGROUP_PARENT" \
    </dev/null >"$TMP/berthd.log" 2>&1 &
DAEMON_PID=$!
ready=
for _ in $(seq 200); do
    if "$BERTH" --socket "$SOCK" health </dev/null >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.05
done
if [[ -z $ready ]]; then
    log "berthd did not become ready; its log:"
    cat "$TMP/berthd.log" >&2
    exit 1
fi

# --- measurements ---------------------------------------------------------------
COMMON=(--prefix "$PREFIX" --sleep-bundle "$TMP/bundle-sleep" --true-bundle "$TMP/bundle-true"
        --par "$PAR" --tmp "$TMP")
NOTES=()

q() { printf '%q ' "$@"; }
measure() {  # measure RUNTIME ROUND N REPS
    local rt=$1 r=$2 n=$3 reps=$4
    local args=(measure --runtime "$rt" --round "$r" --n "$n" --reps "$reps" "${COMMON[@]}"
                --out "$TMP/$rt-$r.json")
    log "round $r: $rt (n=$n, parallel reps=$reps)"
    case $rt in
    berth) "$PY" "$BENCH/bench.py" "${args[@]}" -- "$BERTH" --socket "$SOCK" ;;
    runc)  "$PY" "$BENCH/bench.py" "${args[@]}" -- runc --root "$TMP/runc-root" ;;
    crun)  # private mount namespace without /sys/fs/cgroup/unified
           crun_ns "exec $(q "$PY" "$BENCH/bench.py" "${args[@]}" -- crun --root "$TMP/crun-root")" ;;
    esac || NOTES+=("round $r: the $rt driver exited with status $?")
}
RUNTIMES=(berth runc crun)
ORDERS=()
for ((r = 0; r < ROUNDS; r++)); do
    n_r=$(( N / ROUNDS + (r < N % ROUNDS ? 1 : 0) ))
    reps_r=$(( REPS / ROUNDS + (r < REPS % ROUNDS ? 1 : 0) ))
    order=()
    for ((k = 0; k < ${#RUNTIMES[@]}; k++)); do
        order+=("${RUNTIMES[(r + k) % ${#RUNTIMES[@]}]}")
    done
    ORDERS+=("$(IFS=,; echo "${order[*]}")")
    for rt in "${order[@]}"; do
        measure "$rt" "$r" "$n_r" "$reps_r"
    done
done

# --- scale and concurrency ---------------------------------------------------------
SCALE_FILES=()
SCALE_NOTES=()
[[ -n $PLOT_NOTE ]] && SCALE_NOTES+=("$PLOT_NOTE")
throughput_run() {  # throughput_run RUNTIME REP
    local rt=$1 r=$2
    local args=(throughput --runtime "$rt" --rep "$r" --prefix "$PREFIX" --bundle "$TMP/bundle-sleep"
                --count "$TPUT_N" --clients "$CLIENTS" --tmp "$TMP" --out "$TMP/tput-$rt-$r.json")
    log "throughput rep $r: $rt ($TPUT_N containers, $CLIENTS clients)"
    case $rt in
    berth) "$PY" "$BENCH/scale.py" "${args[@]}" -- "$BERTH" --socket "$SOCK" ;;
    runc)  "$PY" "$BENCH/scale.py" "${args[@]}" -- runc --root "$TMP/runc-root" ;;
    crun)  crun_ns "exec $(q "$PY" "$BENCH/scale.py" "${args[@]}" -- crun --root "$TMP/crun-root")" ;;
    esac || SCALE_NOTES+=("throughput rep $r: the $rt driver exited with status $?")
    [[ -s $TMP/tput-$rt-$r.json ]] && SCALE_FILES+=("$TMP/tput-$rt-$r.json")
}
if [[ $SCALE == 1 ]]; then
    for ((r = 0; r < TPUT_REPS; r++)); do
        for ((k = 0; k < ${#RUNTIMES[@]}; k++)); do
            throughput_run "${RUNTIMES[(r + k) % ${#RUNTIMES[@]}]}" "$r"
        done
    done

    log "registry: start-up, memory and ListContainers at sizes $SIZES ($RUNNING running)"
    if "$PY" "$BENCH/scale.py" registry "${SCALE_REG_ARGS[@]}" --prefix "$PREFIX" \
            --bundle "$TMP/bundle-sleep" --running "$RUNNING" --sizes "$SIZES" \
            --reps "$STARTUP_REPS" --clients "$CLIENTS" --list-calls "$LIST_CALLS" \
            --out "$TMP/registry.json"; then
        SCALE_FILES+=("$TMP/registry.json")
    else
        SCALE_NOTES+=("the registry phase failed (status $?); see the run's output")
    fi

    log "stuck delete: $STUCK_N force deletes without and with a delete stuck on a frozen cgroup"
    if "$PY" "$BENCH/scale.py" stuck "${SCALE_STUCK_ARGS[@]}" --prefix "$PREFIX" \
            --bundle "$TMP/bundle-sleep" --stuck-bundle "$TMP/bundle-stuck" --count "$STUCK_N" \
            --clients "$CLIENTS" --kill-wait-rounds 100 --kill-wait-round 100ms \
            --out "$TMP/stuck.json"; then
        SCALE_FILES+=("$TMP/stuck.json")
    else
        SCALE_NOTES+=("the stuck-delete phase failed (status $?); see the run's output")
    fi
fi

# berth removes the cgroup ancestors a container's create made once they are empty;
# note whether its parent is still there now that every container is deleted
left_parent=0
for d in /sys/fs/cgroup/*/"$BERTH_CGROUP_PARENT"; do [[ -d $d ]] && left_parent=$((left_parent + 1)); done
if (( left_parent > 0 )); then
    NOTES+=("after all berth containers were deleted, berthd's cgroup parent \`$BERTH_CGROUP_PARENT\` was still present in $left_parent hierarchies: berth left its cgroup parent behind")
fi

# --- report -----------------------------------------------------------------------
git_rev=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    git_rev="$git_rev + uncommitted changes"
fi
export B_DATE="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
export B_KERNEL="$(uname -srm)"
export B_CPUS="$(nproc)"
export B_CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
export B_MEM="$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
export B_CGROUPS="$(if [[ -d /sys/fs/cgroup/unified ]]; then echo "hybrid: v1 controllers under /sys/fs/cgroup/<controller>, cgroup2 at /sys/fs/cgroup/unified"; else stat -fc %T /sys/fs/cgroup; fi)"
export B_COMMIT="$git_rev"
export B_RUNC="$(runc --version | head -1)"
export B_CRUN="$(crun --version | head -1)"
export B_PY="$("$PY" --version 2>&1)"
export B_N="$N" B_REPS="$REPS" B_PAR="$PAR" B_ROUNDS="$ROUNDS" B_ORDERS="${ORDERS[*]}"
export B_LOAD_AT_START="$LOAD_AT_START"
export B_NOTES="$(printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}")"
"$PY" - "$TMP/meta.json" <<'EOF'
import json, os, sys
e = os.environ
meta = {
    "date": e["B_DATE"], "kernel": e["B_KERNEL"], "cpus": e["B_CPUS"], "cpu_model": e["B_CPU_MODEL"],
    "mem": e["B_MEM"], "cgroups": e["B_CGROUPS"], "berth_commit": e["B_COMMIT"],
    "runc_version": e["B_RUNC"], "crun_version": e["B_CRUN"], "python": e["B_PY"],
    "n": int(e["B_N"]), "reps": int(e["B_REPS"]), "par": int(e["B_PAR"]),
    "rounds": int(e["B_ROUNDS"]),
    "round_orders": "; ".join(f"round {i}: {o.replace(',', ', ')}" for i, o in enumerate(e["B_ORDERS"].split())),
    "runtimes": ["berth", "runc", "crun"],
    "notes": [l for l in e["B_NOTES"].splitlines() if l],
    "load_at_start": float(e["B_LOAD_AT_START"].split()[0]),
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF
results=()
for f in "$TMP"/{berth,runc,crun}-*.json; do [[ -s $f ]] && results+=("$f"); done
mkdir -p "$DOCS"
rm -f "$DOCS/bench-latency.png" "$DOCS/bench-startup.png"
if [[ -z $PLOT_NOTE ]]; then
    log "plots"
    "$PY" "$BENCH/scale.py" plot --registry "$TMP/registry.json" \
        --latency-png "$DOCS/bench-latency.png" --startup-png "$DOCS/bench-startup.png" \
        --out "$TMP/plots.json" "${results[@]}" && SCALE_FILES+=("$TMP/plots.json")
fi
SCALE_NOTES+=("load average (1/5/15 min) when the measurements began: $LOAD_AT_START")
scale_args=()
for n in "${SCALE_NOTES[@]}"; do scale_args+=(--note "$n"); done
"$PY" "$BENCH/scale.py" collect --out "$TMP/scale.json" "${scale_args[@]}" "${SCALE_FILES[@]+"${SCALE_FILES[@]}"}"
"$PY" "$BENCH/bench.py" report --out "$OUT" --meta "$TMP/meta.json" --scale "$TMP/scale.json" "${results[@]}"
log "wrote $OUT"
