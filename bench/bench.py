#!/usr/bin/env python3
"""Helper for bench/run.sh: times OCI runtime CLIs as whole processes.

Sub-commands (python3 standard library only):

  bundle  --dir DIR --rootfs ROOTFS [--cgroups-path P] -- ARG...
      write DIR/config.json from `runc spec`, with terminal=false, the given
      process args, root.path set to the absolute ROOTFS, and linux.cgroupsPath
      when given.
  measure --runtime NAME --prefix P --sleep-bundle D --true-bundle D
          --n N --par K --reps R --tmp DIR --out FILE -- CLI...
      run every measurement against the CLI (e.g. `runc --root X`) and write
      the samples as JSON.  Every container it made is force-deleted before it
      returns, also when it fails.
  report  --out MD --meta META.json [--scale SCALE.json] RESULT.json...
      write the markdown report (with the sections of bench/scale.py when
      --scale is given).

Every timed invocation is one `subprocess.run` (or, for the parallel case, K
`subprocess.Popen`s) bracketed by `time.perf_counter()`.  stdin and stdout of
the runtime are /dev/null; stderr goes to a fresh unlinked regular file so
error messages can be reported.  No runtime ever gets a pipe for stdio that a
container could inherit, so a detached container can never hold the
benchmark up.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import median, p95, loadavg  # bench/common.py, beside this file

DEVNULL = subprocess.DEVNULL


# ---------------------------------------------------------------- utilities

class Runner:
    """Runs one runtime CLI and keeps track of the containers it created."""

    def __init__(self, name, cli, tmp):
        self.name = name
        self.cli = cli
        self.tmp = tmp
        self.live = set()          # ids that may still exist
        self.failures = []         # (what, id, rc, stderr)

    def _errfile(self):
        return tempfile.TemporaryFile(dir=self.tmp)

    def run(self, args, capture=False):
        """Run CLI+args once; return (seconds, rc, stdout, stderr)."""
        argv = self.cli + args
        with self._errfile() as err:
            out = subprocess.PIPE if capture else DEVNULL
            t0 = time.perf_counter()
            p = subprocess.run(argv, stdin=DEVNULL, stdout=out, stderr=err)
            t1 = time.perf_counter()
            err.seek(0)
            etext = err.read().decode(errors="replace").strip()
        return t1 - t0, p.returncode, (p.stdout or b"").decode(errors="replace"), etext

    def fail(self, what, cid, rc, etext):
        self.failures.append({"what": what, "id": cid, "rc": rc, "stderr": etext})
        print(f"[{self.name}] FAILED {what} {cid}: rc={rc} {etext}", file=sys.stderr)

    # -- operations; each returns seconds or None on failure
    def create(self, cid, bundle, what="create"):
        self.live.add(cid)
        dt, rc, _, e = self.run(["create", "--bundle", bundle, cid])
        if rc != 0:
            self.fail(what, cid, rc, e)
            return None
        return dt

    def start(self, cid, what="start"):
        dt, rc, _, e = self.run(["start", cid])
        if rc != 0:
            self.fail(what, cid, rc, e)
            return None
        return dt

    def delete(self, cid, force, what):
        dt, rc, _, e = self.run(["delete"] + (["--force"] if force else []) + [cid])
        if rc != 0:
            self.fail(what, cid, rc, e)
            return None
        self.live.discard(cid)
        return dt

    def status(self, cid):
        _, rc, out, e = self.run(["state", cid], capture=True)
        if rc != 0:
            return None
        try:
            return json.loads(out).get("status")
        except ValueError:
            return "unparsable: " + out[:80]

    def expect(self, cid, want, what):
        st = self.status(cid)
        if st != want:
            self.fail(what, cid, "-", f"state is {st!r}, expected {want!r}")
            return False
        return True

    def expect_gone(self, cid, what):
        _, rc, out, _ = self.run(["state", cid], capture=True)
        if rc == 0:
            self.fail(what, cid, "-", "container still exists after a successful delete: " + out[:120])
            return False
        return True

    def wait_status(self, cid, want, timeout=10.0):
        end = time.monotonic() + timeout
        st = None
        while time.monotonic() < end:
            st = self.status(cid)
            if st == want:
                return True
            time.sleep(0.01)
        self.fail("wait-" + want, cid, "-", f"still {st!r} after {timeout}s")
        return False

    def cleanup(self):
        left = sorted(self.live)
        for cid in left:
            _, rc, _, e = self.run(["delete", "--force", cid])
            if rc == 0 or self.status(cid) is None:
                self.live.discard(cid)
        if left:
            print(f"[{self.name}] cleanup force-deleted {len(left) - len(self.live)} of {len(left)} leftover containers",
                  file=sys.stderr)
        return sorted(self.live)


def floor_single(tmp, n):
    """Harness floor: one `busybox true` process timed exactly like a CLI call."""
    out = []
    for _ in range(n):
        with tempfile.TemporaryFile(dir=tmp) as err:
            t0 = time.perf_counter()
            subprocess.run(["/usr/bin/busybox", "true"], stdin=DEVNULL, stdout=DEVNULL, stderr=err)
            out.append(time.perf_counter() - t0)
    return out


def parallel(argvs, tmp):
    """Launch every argv at once; return (wall seconds, [(rc, stderr)])."""
    errs = [tempfile.TemporaryFile(dir=tmp) for _ in argvs]
    try:
        t0 = time.perf_counter()
        procs = [subprocess.Popen(a, stdin=DEVNULL, stdout=DEVNULL, stderr=e) for a, e in zip(argvs, errs)]
        rcs = [p.wait() for p in procs]
        t1 = time.perf_counter()
        res = []
        for rc, e in zip(rcs, errs):
            e.seek(0)
            res.append((rc, e.read().decode(errors="replace").strip()))
        return t1 - t0, res
    finally:
        for e in errs:
            e.close()


# ---------------------------------------------------------------- measure

def cmd_measure(a):
    r = Runner(a.runtime, a.cli, a.tmp)
    pre = f"{a.prefix}{a.runtime}-r{a.round}-"
    S = {k: [] for k in ("create", "start", "delete_force_running", "delete_created",
                         "delete_stopped", "parallel_force_delete", "version",
                         "floor_single", "floor_parallel")}
    notes = []
    t_begin = time.monotonic()
    load_before = loadavg()
    try:
        # warm-up, untimed: page cache, binaries, the daemon's first connections
        for i in range(3):
            cid = f"{pre}warm-{i}"
            if r.create(cid, a.sleep_bundle, "warm-up create") is not None:
                r.start(cid, "warm-up start")
                r.delete(cid, True, "warm-up delete --force")

        # 1-3: create (timed), start (timed), delete --force of the running container (timed)
        for i in range(a.n):
            cid = f"{pre}csd-{i}"
            dt = r.create(cid, a.sleep_bundle)
            if dt is None:
                r.delete(cid, True, "cleanup after failed create")
                continue
            S["create"].append(dt)
            if not r.expect(cid, "created", "state after create"):
                r.delete(cid, True, "cleanup")
                continue
            dt = r.start(cid)
            if dt is None:
                r.delete(cid, True, "cleanup after failed start")
                continue
            S["start"].append(dt)
            if not r.expect(cid, "running", "state after start"):
                r.delete(cid, True, "cleanup")
                continue
            dt = r.delete(cid, True, "delete --force running")
            if dt is not None:
                S["delete_force_running"].append(dt)
                r.expect_gone(cid, "gone after delete --force")

        # 4: delete (no force) of a created container
        for i in range(a.n):
            cid = f"{pre}dc-{i}"
            if r.create(cid, a.sleep_bundle, "create (for delete created)") is None:
                r.delete(cid, True, "cleanup after failed create")
                continue
            if not r.expect(cid, "created", "state before delete created"):
                r.delete(cid, True, "cleanup")
                continue
            dt = r.delete(cid, False, "delete created")
            if dt is not None:
                S["delete_created"].append(dt)
                r.expect_gone(cid, "gone after delete created")
            else:
                r.delete(cid, True, "cleanup after failed delete")

        # 5: delete of a stopped container (process `true`)
        for i in range(a.n):
            cid = f"{pre}ds-{i}"
            if r.create(cid, a.true_bundle, "create (true)") is None:
                r.delete(cid, True, "cleanup after failed create")
                continue
            if r.start(cid, "start (true)") is None or not r.wait_status(cid, "stopped"):
                r.delete(cid, True, "cleanup")
                continue
            dt = r.delete(cid, False, "delete stopped")
            if dt is not None:
                S["delete_stopped"].append(dt)
                r.expect_gone(cid, "gone after delete stopped")
            else:
                r.delete(cid, True, "cleanup after failed delete")

        # 6: K running containers, K `delete --force` processes launched at once
        for rep in range(a.reps):
            ids = [f"{pre}par{rep}-{j}" for j in range(a.par)]
            ok = True
            for cid in ids:
                if r.create(cid, a.sleep_bundle, "create (parallel set)") is None or \
                        r.start(cid, "start (parallel set)") is None:
                    ok = False
            ok = ok and all(r.expect(cid, "running", "state before parallel delete") for cid in ids)
            if not ok:
                notes.append(f"parallel rep {rep}: the set of {a.par} running containers could not be built; skipped")
                for cid in ids:
                    r.delete(cid, True, "cleanup")
                continue
            wall, res = parallel([r.cli + ["delete", "--force", cid] for cid in ids], a.tmp)
            bad = [(cid, rc, e) for cid, (rc, e) in zip(ids, res) if rc != 0]
            for cid, (rc, e) in zip(ids, res):
                if rc == 0:
                    r.live.discard(cid)
                else:
                    r.fail(f"parallel delete --force (rep {rep})", cid, rc, e)
            if bad:
                notes.append(f"parallel rep {rep}: {len(bad)} of {a.par} deletes failed; wall time not counted")
            else:
                S["parallel_force_delete"].append(wall)
                for cid in ids:
                    r.expect_gone(cid, "gone after parallel delete")

        # 7: `--version`, the CLI's own start-up (no container, for berth no daemon call)
        for i in range(a.n):
            dt, rc, _, e = r.run(["--version"])
            if rc == 0:
                S["version"].append(dt)
            else:
                r.fail("--version", "-", rc, e)

        # harness floors, measured in the same conditions
        S["floor_single"] = floor_single(a.tmp, a.n)
        for _ in range(a.reps):
            wall, _ = parallel([["/usr/bin/busybox", "true"]] * a.par, a.tmp)
            S["floor_parallel"].append(wall)
    finally:
        leftover = r.cleanup()
    binary = shutil.which(a.cli[0])
    res = {
        "runtime": a.runtime,
        "round": a.round,
        "cli": a.cli,
        "binary": binary,
        "binary_bytes": os.path.getsize(binary) if binary else None,
        "n": a.n, "par": a.par, "reps": a.reps,
        "samples_ms": {k: [x * 1000 for x in v] for k, v in S.items()},
        "failures": r.failures,
        "notes": notes,
        "leftover": leftover,
        "seconds": time.monotonic() - t_begin,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"[{a.runtime} round {a.round}] done in {res['seconds']:.1f}s, {len(r.failures)} failures",
          file=sys.stderr)
    return 0


# ---------------------------------------------------------------- bundle

def cmd_bundle(a):
    os.makedirs(a.dir, exist_ok=True)
    cfg = os.path.join(a.dir, "config.json")
    if os.path.exists(cfg):
        os.unlink(cfg)
    subprocess.run(["runc", "spec"], cwd=a.dir, check=True)
    with open(cfg) as f:
        c = json.load(f)
    c["process"]["terminal"] = False
    c["process"]["args"] = a.args
    c["root"]["path"] = os.path.abspath(a.rootfs)
    if a.cgroups_path:
        c["linux"]["cgroupsPath"] = a.cgroups_path
    with open(cfg, "w") as f:
        json.dump(c, f, indent=1)
    return 0


# ---------------------------------------------------------------- report

ROWS = [
    # key, label, how, target kind, target value
    ("create", "1. create (`sleep 1000`)",
     "one `create --bundle B ID` process", "crun", None),
    ("start", "2. start of a created container",
     "one `start ID` process", "abs", 3.0),
    ("delete_force_running", "3. delete --force, running",
     "one `delete --force ID` process", "abs", 5.0),
    ("delete_created", "4. delete, created (no force)",
     "one `delete ID` process", "abs", 5.0),
    ("delete_stopped", "5. delete, stopped (`true` exited)",
     "one `delete ID` process", "abs", 3.0),
    ("parallel_force_delete", "6. 40 x delete --force at once (wall)",
     "first launch to last exit", "abs", 150.0),
    ("version", "7. `--version` (the CLI's start-up alone)",
     "one `--version` process", None, None),
]
FLOORS = [
    ("floor_single", "harness floor: one `busybox true`"),
    ("floor_parallel", "harness floor: 40 x `busybox true` at once (wall)"),
]


def fmt(x):
    return "-" if x is None else f"{x:.2f}"


def cmd_report(a):
    with open(a.meta) as f:
        meta = json.load(f)
    res = {}
    order = []
    for p in a.results:
        try:
            with open(p) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            print(f"report: cannot read {p}: {e}", file=sys.stderr)
            continue
        rt = d["runtime"]
        if rt not in res:
            res[rt] = {"runtime": rt, "samples_ms": {}, "failures": [], "notes": [], "leftover": [],
                       "seconds": 0.0, "rounds": []}
            order.append(rt)
        m = res[rt]
        for k, xs in d["samples_ms"].items():
            m["samples_ms"].setdefault(k, []).extend(xs)
        m["failures"].extend(d["failures"])
        m["notes"].extend(f"round {d['round']}: {x}" for x in d["notes"])
        m["leftover"].extend(d["leftover"])
        m["seconds"] += d["seconds"]
        m["rounds"].append(d)
    for name in meta.get("runtimes", []):
        if name not in res:
            order.append(name)
    order = list(dict.fromkeys(order))

    def stat(rt, key):
        d = res.get(rt)
        if not d:
            return None, None, 0
        xs = d["samples_ms"].get(key, [])
        return median(xs), p95(xs), len(xs)

    L = []
    w = L.append
    w("# Benchmarks: berth vs runc vs crun")
    w("")
    w(f"Generated by `bench/run.sh` on {meta['date']}. Re-run it to refresh this file; it overwrites it.")
    w("")
    w("## Machine")
    w("")
    w(f"- kernel: {meta['kernel']}")
    w(f"- CPUs: {meta['cpus']} ({meta['cpu_model']})")
    w(f"- memory: {meta['mem']}")
    w(f"- cgroups: {meta['cgroups']}")
    w(f"- berth: commit {meta['berth_commit']} (`cargo build --release --bins`)")
    w(f"- runc: {meta['runc_version']}")
    w(f"- crun: {meta['crun_version']}")
    w(f"- python: {meta['python']}")
    w("")
    w("## Results")
    w("")
    w("Milliseconds. med = median, p95 = nearest-rank 95th percentile, n = successful samples. "
      "\"target\" is berth's target and whether berth's median meets it.")
    w("")
    hdr = "| measurement |"
    sep = "|---|"
    for rt in order:
        hdr += f" {rt} med | {rt} p95 |"
        sep += "---:|---:|"
    hdr += " n (per runtime) | berth target | met? |"
    sep += "---|---|---|"
    w(hdr)
    w(sep)
    crun_create = stat("crun", "create")[0]
    verdicts = []
    for key, label, _how, kind, val in ROWS:
        line = f"| {label} |"
        ns = []
        for rt in order:
            m, p, n = stat(rt, key)
            line += f" {fmt(m)} | {fmt(p)} |"
            ns.append(str(n))
        if kind is None:
            tv = None
            tgt = "none"
        elif kind == "crun":
            tv = crun_create
            tgt = f"<= crun median ({fmt(tv)})" if tv is not None else "<= crun median (crun n/a)"
        else:
            tv = val
            tgt = f"<= {val:g}"
        bm = stat("berth", key)[0]
        if kind is None:
            met = "-"
        elif bm is None or tv is None:
            met = "n/a"
        else:
            met = "yes" if bm <= tv else "**no**"
        verdicts.append((label, bm, tgt, met))
        line += f" {'/'.join(ns)} | {tgt} | {met} |"
        w(line)
    for key, label in FLOORS:
        line = f"| {label} |"
        ns = []
        for rt in order:
            m, p, n = stat(rt, key)
            line += f" {fmt(m)} | {fmt(p)} |"
            ns.append(str(n))
        line += f" {'/'.join(ns)} | | |"
        w(line)
    w("")
    w("n is listed in the column order " + "/".join(order) + ".")
    w("")

    def binary_bytes(rt):
        sizes = [x.get("binary_bytes") for x in res[rt]["rounds"]] if rt in res else []
        return sizes[-1] if sizes and sizes[-1] is not None else None

    w("| CLI binary | " + " | ".join(order) + " |")
    w("|---|" + "---:|" * len(order))
    w("| size in bytes (the file run: `target/release/berth`, `runc`, `crun`) | "
      + " | ".join("-" if binary_bytes(rt) is None else str(binary_bytes(rt)) for rt in order) + " |")
    w("")
    scale = None
    if a.scale:
        try:
            with open(a.scale) as f:
                scale = json.load(f)
        except (OSError, ValueError) as e:
            print(f"report: cannot read {a.scale}: {e}", file=sys.stderr)

    loads = [float(x[k].split()[0]) for d in res.values() for x in d["rounds"]
             for k in ("loadavg_before", "loadavg_after")]
    cpus = int(meta["cpus"])
    start_load = meta.get("load_at_start")
    if loads and max(loads) > 0.5 * cpus and start_load is not None and start_load < 0.6:
        w(f"**Load:** the 1-minute load average was {start_load:.2f} on {cpus} CPUs when the "
          f"measurements began, and ranged {min(loads):.2f}-{max(loads):.2f} during them. The "
          "rise is mostly the benchmark's own processes (each CLI process and container counts, "
          f"up to {meta['par']} at once in row 6); the harness floors in the last two rows show how "
          "busy the machine was.")
        w("")
    elif loads and max(loads) > 0.5 * cpus:
        w(f"**Caution:** the machine was not idle. The 1-minute load average ranged "
          f"{min(loads):.2f}-{max(loads):.2f} on {cpus} CPUs during the measurements (other work "
          "was running; see the load per round below). Medians and especially p95s are inflated "
          "and move by several ms, or tens of ms for the parallel case, between runs; the "
          "harness floors in the last two rows show the same noise. Compare the runtimes with "
          "each other (their rounds were interleaved) rather than with an idle machine.")
        w("")
    missed = [v for v in verdicts if v[3] == "**no**"]
    if missed:
        w("berth misses " + ", ".join(f"{v[0]} (median {fmt(v[1])} ms, target {v[2]})" for v in missed) + ".")
    else:
        w("berth meets every target it could be compared against.")
    w("")

    if scale is not None:
        w("Scale and concurrency (berthd's start-up and memory with a large registry, "
          "ListContainers, the throughput of concurrent clients against runc and crun, deletes "
          "beside one stuck in a kernel wait) and the plots: see "
          "[Scale and concurrency](#scale-and-concurrency-berth) below.")
        w("")
    w("## How each number was measured")
    w("")
    w(f"- Runtimes ran **one after another, interleaved in {meta['rounds']} rounds**: in each round every "
      "runtime ran all the phases below with its share of the samples (the round's first runtime "
      f"rotates: {meta['round_orders']}), and the samples of all rounds are pooled. Only one runtime "
      "was ever being measured at a time; each phase started only after the previous one finished. "
      "Rounds spread any background load on the machine over all three runtimes.")
    w("- Every number is the wall time of whole CLI processes, measured in a python3 driver "
      "(`bench/bench.py`) with `time.perf_counter()` around `subprocess.run` (one process) or around "
      "launching all `subprocess.Popen`s and waiting for all of them (the parallel case). It includes "
      "fork/exec of the CLI, its start-up, and (for berth) the gRPC round trip to berthd. It does not "
      "include berthd's start-up: the daemon was started once per run and polled with `berth health` "
      "until it served.")
    w("- The runtimes' stdin and stdout are /dev/null; stderr is a fresh, unlinked regular file "
      "(never a pipe) so that error messages can be reported without a detached container holding "
      "anything open that the driver waits on.")
    w("- The bundle: a rootfs holding a static busybox (`/usr/bin/busybox`) with `sh`, `sleep` and "
      "`true` symlinks, shared by two bundle directories whose `config.json` come from `runc spec` "
      "with `process.terminal=false`, `root.path` set to the absolute rootfs path, and "
      "`process.args` = `sleep 1000` or `true`. Everything else is runc's default spec (read-only root, "
      "pid/ipc/uts/mount/network namespaces, default mounts and masked paths). No `linux.cgroupsPath`: "
      "runc and crun put each container in a cgroup named after its id; berthd ran with "
      "`--cgroup-parent berth-bench`.")
    w("- 3 untimed warm-up cycles (create, start, delete --force) ran before the timed phases of each "
      "runtime in each round.")
    w(f"- **1-3** (n = {meta['n']} each): per iteration, a fresh id: `create` of the `sleep 1000` bundle "
      "(timed), `state` must say `created`, `start` (timed), `state` must say `running`, "
      "`delete --force` (timed), then `state` must fail (container gone).")
    w(f"- **4** (n = {meta['n']}): `create` (untimed), `state` must say `created`, `delete` without "
      "`--force` (timed), `state` must fail.")
    w(f"- **5** (n = {meta['n']}): `create` of the `true` bundle and `start` (untimed), then `state` "
      "polled every 10 ms until it says `stopped`, then `delete` without `--force` (timed), `state` must fail.")
    w(f"- **6** ({meta['reps']} repetitions): {meta['par']} containers created and started one by one "
      f"(untimed) and all checked `running`; then {meta['par']} `delete --force ID` processes launched "
      "back to back without waiting, and the wall time from just before the first launch to the exit of "
      "the last. A repetition in which any delete failed is not counted."
      + (" With fewer than 20 repetitions the nearest-rank p95 is the maximum." if meta["reps"] < 20 else ""))
    w(f"- **7** (n = {meta['n']}): `CLI --version` (timed), after the other phases: the CLI's own "
      "start-up and exit, with no container and (for berth) no call to berthd. CLI binary size: the "
      "size in bytes of the file each runtime's CLI runs from (berth's is the release build's "
      "`target/release/berth`, stripped).")
    w("- Harness floors: the same timing code around `/usr/bin/busybox true` (n as in 1-5, and "
      f"{meta['reps']} x {meta['par']} in parallel), measured right after each runtime's phases. "
      "They show how much of each number is the cost of starting any process from the driver, and "
      "how busy the machine was.")
    w("- berth's CLI: `target/release/berth --socket SOCK ...` against a private "
      "`target/release/berthd --root TMP/berth-root --socket TMP/berth-run/berth.sock "
      "--cgroup-parent berth-bench`. runc: `runc --root TMP/runc-root ...`. crun: "
      "`crun --root TMP/crun-root ...`, run (driver included) inside `unshare -m` with "
      "`/sys/fs/cgroup/unified` unmounted, because crun 1.8 refuses this host's hybrid layout "
      "(cgroup v1 controllers plus a controller-less cgroup2 at /sys/fs/cgroup/unified); crun "
      "therefore used cgroup v1 only, while runc and berth also made a directory in the unified hierarchy.")
    w("")

    w("## Run conditions and problems")
    w("")
    for rt in order:
        d = res.get(rt)
        if not d:
            w(f"- {rt}: **no results** (its driver did not finish; see the run's output).")
            continue
        loads = "; ".join(f"round {x['round']}: {x['loadavg_before']} -> {x['loadavg_after']}"
                          for x in d["rounds"])
        w(f"- {rt}: phases took {d['seconds']:.1f} s in all; {len(d['failures'])} failed invocations; "
          f"1/5/15-min load average before -> after each round: {loads}.")
        for note in d["notes"]:
            w(f"  - {note}")
        shown = {}
        for fl in d["failures"]:
            k = (fl["what"], fl["stderr"].replace(fl["id"], "<id>"))
            shown.setdefault(k, [0, fl])[0] += 1
        for (what, msg), (cnt, fl) in shown.items():
            msg1 = " ".join(msg.split())[:400]
            w(f"  - {cnt} x `{what}` (e.g. {fl['id']}, rc {fl['rc']}): `{msg1}`")
        if d["leftover"]:
            w(f"  - containers the driver could not delete at the end: {', '.join(d['leftover'])}")
    for line in meta.get("notes", []):
        w(f"- {line}")
    w("")
    if scale is not None:
        import scale as scale_md  # bench/scale.py, beside this file
        L.extend(scale_md.render(scale, meta))
    w("<details><summary>Raw samples (ms)</summary>")
    w("")
    for rt in order:
        d = res.get(rt)
        if not d:
            continue
        w(f"**{rt}**")
        w("")
        for key, xs in d["samples_ms"].items():
            w(f"- {key}: " + " ".join(f"{x:.2f}" for x in xs))
        w("")
    w("</details>")
    w("")
    with open(a.out, "w") as f:
        f.write("\n".join(L))

    # short summary for the terminal
    print("measurement".ljust(42) + "".join(f"{rt + ' med/p95':>20}" for rt in order) + "  target")
    for (key, label, _h, _k, _v), (_l, _bm, tgt, met) in zip(ROWS, verdicts):
        cells = ""
        for rt in order:
            m, p, _n = stat(rt, key)
            cells += f"{fmt(m) + '/' + fmt(p):>20}"
        print(label.replace("`", "")[:41].ljust(42) + cells + f"  {tgt} {met.replace('*', '')}")
    print("CLI binary size (bytes)".ljust(42)
          + "".join(f"{'-' if binary_bytes(rt) is None else binary_bytes(rt):>20}" for rt in order))
    return 0


# ---------------------------------------------------------------- leftovers

def cmd_leftovers(a):
    """List (and with --kill, SIGKILL / rmdir) what the benchmark may have left:
    processes in a cgroup named PREFIX*, or whose root is the bench rootfs, and
    cgroup directories named PREFIX* anywhere under /sys/fs/cgroup."""
    import signal
    try:
        st = os.stat(a.rootfs)
        root_key = (st.st_dev, st.st_ino)
    except OSError:
        root_key = None
    procs = []
    zombies = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        hit = False
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{pid}/cgroup") as f:
                for line in f:
                    path = line.rstrip("\n").split(":", 2)[-1]
                    if any(part.startswith(a.prefix) for part in path.split("/")):
                        hit = True
            if not hit and root_key is not None:
                st = os.stat(f"/proc/{pid}/root")
                hit = (st.st_dev, st.st_ino) == root_key
            if hit and state in ("Z", "X"):
                # dead: a deleted container's init that its parent (often PID 1,
                # when the runtime CLI that spawned it has exited) has not reaped yet
                zombies += 1
                continue
            if hit:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                procs.append((int(pid), cmd))
        except OSError:
            continue
    dirs = []
    for top, subdirs, _files in os.walk("/sys/fs/cgroup"):
        for d in subdirs:
            if d.startswith(a.prefix):
                dirs.append(os.path.join(top, d))
    if zombies:
        print(f"ignored {zombies} zombie process(es) of deleted containers, not yet reaped by their parent")
    if a.kill:
        # a frozen process cannot die, nor its cgroup go: thaw every frozen cgroup of ours
        # (and below ours) first
        for d in dirs:
            for sub, _s, files in os.walk(d):
                if "freezer.state" not in files:
                    continue
                state = os.path.join(sub, "freezer.state")
                try:
                    with open(state) as f:
                        frozen = f.read().strip() != "THAWED"
                    if frozen:
                        with open(state, "w") as f:
                            f.write("THAWED")
                        print(f"thawed {sub}")
                except OSError:
                    pass
    for pid, cmd in procs:
        print(f"leftover process {pid}: {cmd}")
        if a.kill:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if a.kill and procs:
        time.sleep(0.5)
    for d in sorted(dirs, key=len, reverse=True):
        print(f"leftover cgroup {d}")
        if a.kill:
            for sub, _s, _f in sorted(os.walk(d), key=lambda t: len(t[0]), reverse=True):
                try:
                    os.rmdir(sub)
                except OSError as e:
                    print(f"  cannot remove {sub}: {e}")
    return 1 if (procs or dirs) else 0


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    sp = ap.add_subparsers(dest="cmd", required=True)
    b = sp.add_parser("bundle")
    b.add_argument("--dir", required=True)
    b.add_argument("--rootfs", required=True)
    b.add_argument("--cgroups-path", help="linux.cgroupsPath (default: none)")
    b.add_argument("args", nargs="+")
    m = sp.add_parser("measure")
    m.add_argument("--runtime", required=True)
    m.add_argument("--prefix", required=True)
    m.add_argument("--sleep-bundle", required=True)
    m.add_argument("--true-bundle", required=True)
    m.add_argument("--n", type=int, default=30)
    m.add_argument("--par", type=int, default=40)
    m.add_argument("--reps", type=int, default=7)
    m.add_argument("--round", type=int, default=0)
    m.add_argument("--tmp", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("cli", nargs="+")
    r = sp.add_parser("report")
    r.add_argument("--out", required=True)
    r.add_argument("--meta", required=True)
    r.add_argument("--scale", help="scale.json from `scale.py collect`: adds its sections")
    r.add_argument("results", nargs="*")
    lo = sp.add_parser("leftovers")
    lo.add_argument("--prefix", required=True)
    lo.add_argument("--rootfs", required=True)
    lo.add_argument("--kill", action="store_true")
    a = ap.parse_args()
    return {"bundle": cmd_bundle, "measure": cmd_measure, "report": cmd_report,
            "leftovers": cmd_leftovers}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
