#!/usr/bin/env python3
"""Helper for bench/run.sh: times OCI runtime CLIs as whole processes.

Sub-commands (python3 standard library only):

  template  --out FILE --rootfs ROOTFS -- ARG...
      write a config.json from `runc spec`, with terminal=false, the given process args
      and root.path set to the absolute ROOTFS. Each container's bundle is this file with
      linux.cgroupsPath = /PARENT/ID (common.write_bundle).
  measure   --runtime NAME --view VIEW --prefix P --cgroup-parent C --bundles DIR
            --sleep-template F --true-template F --n N --par K --reps R --tmp DIR
            --out FILE -- CLI...
      run every CLI measurement against CLI (e.g. `runc --root X`) and write the samples
      as JSON. Every container it made is force-deleted before it returns, also when it
      fails.
  probe     --runtime NAME --prefix P --cgroup-parent C --bundles DIR --sleep-template F
            --tmp DIR -- CLI...
      whether the runtime can create a container in this view at all (exit 0), else print
      why (exit 1).
  leftovers --prefix P --rootfs ROOTFS [--kill]
      list (and kill / remove) processes and cgroups the benchmark left behind.

Every timed invocation is one `subprocess.run` (or, for the parallel case, K
`subprocess.Popen`s) bracketed by `time.perf_counter()`; see common.run_cli for stdio.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from common import DEVNULL, cgroup_mounts, machine_load, machine_snapshot, run_cli, write_bundle


class Runner:
    """Runs one runtime CLI and keeps track of the containers it created."""

    def __init__(self, a):
        self.name = a.runtime
        self.cli = a.cli
        self.tmp = a.tmp
        self.bundles = a.bundles
        self.cgroup_parent = a.cgroup_parent
        self.live = set()          # ids that may still exist
        self.failures = []         # {what, id, rc, stderr}

    def run(self, args, capture=False):
        return run_cli(self.cli + args, self.tmp, capture)

    def fail(self, what, cid, rc, etext):
        self.failures.append({"what": what, "id": cid, "rc": rc, "stderr": etext})
        print(f"[{self.name}] FAILED {what} {cid}: rc={rc} {etext}", file=sys.stderr)

    # -- operations; each returns seconds or None on failure
    def create(self, cid, template, what="create"):
        bundle = write_bundle(template, self.bundles, self.cgroup_parent, cid)
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
        _, rc, out, _ = self.run(["state", cid], capture=True)
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
            _, rc, _, _ = self.run(["delete", "--force", cid])
            if rc == 0 or self.status(cid) is None:
                self.live.discard(cid)
        if left:
            print(f"[{self.name}] cleanup force-deleted {len(left) - len(self.live)} of {len(left)} leftover containers",
                  file=sys.stderr)
        return sorted(self.live)


def floor_single(tmp, n):
    """Harness floor: one `busybox true` process timed exactly like a CLI call."""
    return [run_cli(["/usr/bin/busybox", "true"], tmp)[0] for _ in range(n)]


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

SAMPLE_KEYS = ("create", "start", "delete_force_running", "delete_stopped",
               "parallel_force_delete", "version", "list_empty", "floor_single", "floor_parallel")


def cmd_measure(a):
    r = Runner(a)
    pre = a.prefix
    S = {k: [] for k in SAMPLE_KEYS}
    notes = []
    before = machine_snapshot()
    try:
        # warm-up, untimed: page cache, binaries, the daemon's first connections
        for i in range(3):
            cid = f"{pre}warm-{i}"
            if r.create(cid, a.sleep_template, "warm-up create") is not None:
                r.start(cid, "warm-up start")
                r.delete(cid, True, "warm-up delete --force")

        # create (timed), start (timed), delete --force of the running container (timed)
        for i in range(a.n):
            cid = f"{pre}csd-{i}"
            dt = r.create(cid, a.sleep_template)
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

        # delete of a stopped container (its process `true` exited)
        for i in range(a.n):
            cid = f"{pre}ds-{i}"
            if r.create(cid, a.true_template, "create (true)") is None:
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

        # K running containers, K `delete --force` processes launched at once
        for rep in range(a.reps):
            ids = [f"{pre}par{rep}-{j}" for j in range(a.par)]
            ok = True
            for cid in ids:
                if r.create(cid, a.sleep_template, "create (parallel set)") is None or \
                        r.start(cid, "start (parallel set)") is None:
                    ok = False
            ok = ok and all(r.expect(cid, "running", "state before parallel delete") for cid in ids)
            if not ok:
                notes.append(f"parallel rep {rep}: the set of {a.par} running containers could not be built; skipped")
                for cid in ids:
                    r.delete(cid, True, "cleanup")
                continue
            wall, res = parallel([r.cli + ["delete", "--force", cid] for cid in ids], a.tmp)
            bad = [cid for cid, (rc, _) in zip(ids, res) if rc != 0]
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

        # `--version`: the CLI's own start-up (no container, for berth no daemon call)
        for _ in range(a.n):
            dt, rc, _, e = r.run(["--version"])
            if rc == 0:
                S["version"].append(dt)
            else:
                r.fail("--version", "-", rc, e)

        # `list` of an empty root (for berth: an empty registry)
        _, rc, out, e = r.run(["list", "-q"], capture=True)
        if rc != 0 or out.strip():
            r.fail("list -q before the timed lists", "-", rc, e or f"not empty: {out[:200]!r}")
        else:
            for _ in range(a.n):
                dt, rc, _, e = r.run(["list"])
                if rc == 0:
                    S["list_empty"].append(dt)
                else:
                    r.fail("list", "-", rc, e)

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
        "view": a.view,
        "round": a.round,
        "cli": a.cli,
        "binary": binary,
        "binary_bytes": os.path.getsize(binary) if binary else None,
        "n": a.n, "par": a.par, "reps": a.reps,
        "samples_ms": {k: [x * 1000 for x in v] for k, v in S.items()},
        "failures": r.failures,
        "notes": notes,
        "leftover": leftover,
        "machine": machine_load(before, machine_snapshot()),
    }
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"[{a.view} {a.runtime} round {a.round}] done in {res['machine']['seconds']:.1f}s, "
          f"{len(r.failures)} failures", file=sys.stderr)
    return 0


def cmd_probe(a):
    """One create and force delete. A runtime that cannot create here is left out of the
    view; the cgroup directory a failed create leaves is removed, and said."""
    r = Runner(a)
    cid = f"{a.prefix}probe"
    created = r.create(cid, a.sleep_template, "probe create") is not None
    r.cleanup()
    if created and not r.failures:
        return 0
    removed = []
    for mp in cgroup_mounts():
        d = os.path.join(mp, a.cgroup_parent, cid)
        if os.path.isdir(d):
            os.rmdir(d)
            removed.append(d)
    why = " ".join(r.failures[0]["stderr"].split())[:300] if r.failures else "?"
    print(why + (f" (its failed create left {', '.join(removed)}: removed)" if removed else ""))
    return 1


# ---------------------------------------------------------------- template

def cmd_template(a):
    d = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(a.out)))
    try:
        subprocess.run(["runc", "spec"], cwd=d, check=True)
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
    finally:
        shutil.rmtree(d)
    c["process"]["terminal"] = False
    c["process"]["args"] = a.args
    c["root"]["path"] = os.path.abspath(a.rootfs)
    with open(a.out, "w") as f:
        json.dump(c, f, indent=1)
    return 0


# ---------------------------------------------------------------- leftovers

def cmd_leftovers(a):
    """List (and with --kill, SIGKILL / rmdir) what the benchmark may have left:
    processes in a cgroup named PREFIX*, or whose root is the bench rootfs, and
    cgroup directories named PREFIX* anywhere under /sys/fs/cgroup."""
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
    t = sp.add_parser("template")
    t.add_argument("--out", required=True)
    t.add_argument("--rootfs", required=True)
    t.add_argument("args", nargs="+")

    def runner_args(p):
        p.add_argument("--runtime", required=True)
        p.add_argument("--prefix", required=True)
        p.add_argument("--cgroup-parent", required=True)
        p.add_argument("--bundles", required=True)
        p.add_argument("--sleep-template", required=True)
        p.add_argument("--tmp", required=True)
        p.add_argument("cli", nargs="+")

    pr = sp.add_parser("probe")
    runner_args(pr)
    m = sp.add_parser("measure")
    runner_args(m)
    m.add_argument("--view", required=True)
    m.add_argument("--true-template", required=True)
    m.add_argument("--n", type=int, default=30)
    m.add_argument("--par", type=int, default=40)
    m.add_argument("--reps", type=int, default=7)
    m.add_argument("--round", type=int, default=0)
    m.add_argument("--out", required=True)
    lo = sp.add_parser("leftovers")
    lo.add_argument("--prefix", required=True)
    lo.add_argument("--rootfs", required=True)
    lo.add_argument("--kill", action="store_true")
    a = ap.parse_args()
    return {"template": cmd_template, "probe": cmd_probe, "measure": cmd_measure,
            "leftovers": cmd_leftovers}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
