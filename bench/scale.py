#!/usr/bin/env python3
"""Scale and concurrency phases of bench/run.sh (berth's registry at 10,000 containers,
throughput of concurrent clients, a stuck delete beside fast ones), and the markdown for
them that report.py puts into docs/benchmarks.md.

Sub-commands:

  registry   start-up time, VmRSS and the ListContainers RPC at growing registry sizes
             (0, the real running containers alone, then generated stopped ones added)
  throughput N containers created, started and force-deleted by K concurrent client
             processes (any runtime CLI: berth, runc, crun)
  stuck      100 force deletes with and without a delete stuck behind a frozen cgroup
  worker     one client process of `throughput`/`stuck`/`registry` (internal)
  teardown   remove whatever a scale phase left (used by run.sh's cleanup; idempotent)

Standard library only, except that `registry` imports grpcio (for ListContainers) and says
so in its result when the import fails. Every container's bundle comes from
common.write_bundle: linux.cgroupsPath = /PARENT/ID.

Every runtime CLI runs with stdin and stdout on /dev/null and stderr on a fresh unlinked
regular file, as in bench.py: no container can inherit a pipe the driver waits on.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import (  # noqa: E402  (bench/common.py)
    DEVNULL, cgroup_mounts, describe_load, loadavg, machine_load, machine_snapshot, median, p95, run_cli,
    write_bundle)

FREEZER = "/sys/fs/cgroup/freezer"
STUCK_PARENT = "frozen-parent"


# ---------------------------------------------------------------- small helpers

def log(msg):
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stats_ms(xs):
    """median, p95, min, max, n of a list of milliseconds."""
    if not xs:
        return {"med": None, "p95": None, "min": None, "max": None, "n": 0}
    return {"med": median(xs), "p95": p95(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def split(ids, k):
    """Round-robin shares of ids for k clients (empty shares dropped)."""
    shares = [ids[i::k] for i in range(k)]
    return [s for s in shares if s]


def rmdir_tree(top):
    """rmdir a cgroup directory and every directory under it, deepest first."""
    if not os.path.isdir(top):
        return []
    errors = []
    for sub, _dirs, _files in sorted(os.walk(top), key=lambda t: len(t[0]), reverse=True):
        try:
            os.rmdir(sub)
        except FileNotFoundError:
            pass
        except OSError as e:
            errors.append(f"{sub}: {e}")
    return errors


def thaw_all(cgroup_parent):
    """Thaw every frozen v1 freezer cgroup under /sys/fs/cgroup/freezer/<parent>."""
    top = os.path.join(FREEZER, cgroup_parent)
    thawed = []
    if not os.path.isdir(top):
        return thawed
    for sub, _d, files in os.walk(top):
        if "freezer.state" not in files:
            continue
        p = os.path.join(sub, "freezer.state")
        try:
            with open(p) as f:
                st = f.read().strip()
            if st != "THAWED":
                with open(p, "w") as f:
                    f.write("THAWED")
                thawed.append(sub)
        except OSError:
            pass
    return thawed


def read_status(pid):
    """VmRSS, RssAnon, RssFile, VmHWM of pid in KB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


# ---------------------------------------------------------------- the daemon

class Daemon:
    """One berthd on a private root and socket, started and stopped on demand; its pid
    is kept in a pidfile so run.sh's cleanup can stop it if this driver dies."""

    def __init__(self, a, extra=()):
        self.berthd = a.berthd
        self.berth = a.berth
        self.bench = a.bench
        self.root = a.root
        self.sock = os.path.join(a.run_dir, "berth.sock")
        self.cgroup_parent = a.cgroup_parent
        self.extra = list(extra)
        self.log_path = a.log
        self.pidfile = a.pidfile
        self.tmp = a.tmp
        self.proc = None
        os.makedirs(a.run_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.root, mode=0o700, exist_ok=True)

    @property
    def cli(self):
        return [self.berth, "--socket", self.sock]

    def argv(self):
        return [self.berthd, "--root", self.root, "--socket", self.sock, "--cgroup-parent",
                self.cgroup_parent, "--log-format", "json"] + self.extra

    def start(self, timeout=60.0):
        """Exec berthd while `berth-bench ready` polls its socket (every 200 µs, each poll a
        connect and a health check) until it answers SERVING. Returns (seconds from just
        before the exec to that answer, polls, wall-clock time of the exec, log offset)."""
        assert self.proc is None
        waiter = subprocess.Popen([self.bench, "ready", "--socket", self.sock,
                                   "--timeout", f"{timeout}s"],
                                  stdin=DEVNULL, stdout=subprocess.PIPE)
        try:
            if waiter.stdout.readline().strip() != b"polling":
                raise RuntimeError("berth-bench ready did not start")
            logf = open(self.log_path, "ab")
            offset = logf.tell()
            wall0 = time.time()
            t0 = time.monotonic()     # the clock berth-bench ready answers on
            self.proc = subprocess.Popen(self.argv(), stdin=DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
            logf.close()
            with open(self.pidfile, "w") as f:
                f.write(str(self.proc.pid))
            while waiter.poll() is None:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"berthd exited with {self.proc.returncode} before "
                                       f"serving; see {self.log_path}")
                time.sleep(0.05)
            answer = waiter.stdout.read()
            if waiter.returncode != 0:
                raise RuntimeError(f"berthd did not serve within {timeout}s")
        finally:
            if waiter.poll() is None:
                waiter.kill()
            waiter.wait()
        ready = json.loads(answer)
        return ready["ready_monotonic_s"] - t0, ready["attempts"], wall0, offset

    def stop(self, timeout=20.0):
        """SIGTERM and wait; seconds it took to exit."""
        if self.proc is None:
            return None
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log("berthd did not exit on SIGTERM; SIGKILL")
            self.proc.kill()
            self.proc.wait()
        dt = time.perf_counter() - t0
        rc = self.proc.returncode
        self.proc = None
        try:
            os.unlink(self.pidfile)
        except OSError:
            pass
        if rc != 0:
            log(f"berthd exited with status {rc}")
        return dt

    def log_events(self, offset):
        """(wall time, message, fields) of the JSON log lines written since offset."""
        out = []
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            for raw in f:
                try:
                    e = json.loads(raw)
                    ts = datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
                    fields = e.get("fields", {})
                    out.append((ts.timestamp(), fields.get("message", ""), fields, e.get("level")))
                except (ValueError, KeyError):
                    continue
        return out


def log_warnings(path):
    """Distinct WARN/ERROR messages of a JSON berthd log, with counts."""
    seen = {}
    try:
        with open(path, "rb") as f:
            for raw in f:
                try:
                    e = json.loads(raw)
                except ValueError:
                    continue
                if e.get("level") in ("WARN", "ERROR"):
                    fl = e.get("fields", {})
                    msg = f"{e['level']} {fl.get('message', '')}"
                    if "error" in fl:
                        msg += f": {fl['error']}"
                    seen[msg] = seen.get(msg, 0) + 1
    except OSError:
        pass
    return [f"{n} x {m}"[:300] for m, n in seen.items()]


# ---------------------------------------------------------------- concurrent clients

def cmd_worker(a):
    """One client: a loop over its ids doing `ops` with the CLI (container ID's bundle is
    BUNDLES/ID). Waits for one byte on stdin before the first operation so that all
    clients start together."""
    ids = [x for x in a.ids.split(",") if x]
    ops = a.ops.split(",")
    rec = {"samples_ms": {op: [] for op in ops}, "failures": [], "ok": [], "t_end": None}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if not sys.stdin.read(1):
        return 1
    for cid in ids:
        ok = True
        for op in ops:
            if op == "create":
                args = ["create", "--bundle", os.path.join(a.bundles, cid), cid]
            elif op == "start":
                args = ["start", cid]
            elif op == "delete":
                args = ["delete", "--force", cid]
            else:
                raise SystemExit(f"unknown op {op}")
            dt, rc, _, e = run_cli(a.cli + args, a.tmp)
            if rc != 0:
                rec["failures"].append({"what": op, "id": cid, "rc": rc, "stderr": e})
                ok = False
                if op != "delete" and "delete" in ops:
                    # not timed: leave nothing behind
                    run_cli(a.cli + ["delete", "--force", cid], a.tmp)
                break
            rec["samples_ms"][op].append(dt * 1000)
        if ok:
            rec["ok"].append(cid)
    rec["t_end"] = time.monotonic()
    with open(a.out, "w") as f:
        json.dump(rec, f)
    return 0


def run_clients(cli, ids, ops, clients, bundles, tmp):
    """Run `ops` on ids with `clients` concurrent worker processes that start together;
    bundles holds the bundle of each id that is created. Returns {wall_s, samples_ms{op:
    [...]}, failures, ok}."""
    shares = split(ids, clients)
    procs, outs = [], []
    for i, share in enumerate(shares):
        out = tempfile.mktemp(prefix=f"worker{i}-", suffix=".json", dir=tmp)
        outs.append(out)
        procs.append(subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "worker", "--ops", ",".join(ops),
             "--bundles", bundles or "-", "--ids", ",".join(share), "--tmp", tmp, "--out", out,
             "--"] + cli,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    for p in procs:
        if p.stdout.readline().strip() != b"ready":
            raise RuntimeError("a client process did not start")
    t0 = time.monotonic()
    for p in procs:
        p.stdin.write(b"g")
        p.stdin.flush()
    for p in procs:
        p.stdin.close()
        p.wait()
    res = {"samples_ms": {op: [] for op in ops}, "failures": [], "ok": [], "wall_s": None}
    ends = []
    for out in outs:
        try:
            with open(out) as f:
                r = json.load(f)
            os.unlink(out)
        except (OSError, ValueError):
            res["failures"].append({"what": "client", "id": "-", "rc": "-",
                                    "stderr": "a client process wrote no result"})
            continue
        for op, xs in r["samples_ms"].items():
            res["samples_ms"][op].extend(xs)
        res["failures"].extend(r["failures"])
        res["ok"].extend(r["ok"])
        ends.append(r["t_end"])
    if ends:
        res["wall_s"] = max(ends) - t0
    return res


def existing(cli, ids, tmp):
    """The ids the runtime still knows (by `state ID`)."""
    return [cid for cid in ids if run_cli(cli + ["state", cid], tmp)[1] == 0]


def statuses(cli, ids, tmp):
    out = {}
    for cid in ids:
        _, rc, o, _ = run_cli(cli + ["state", cid], tmp, capture=True)
        try:
            out[cid] = json.loads(o).get("status") if rc == 0 else None
        except ValueError:
            out[cid] = None
    return out


def force_delete_all(cli, ids, tmp, what):
    """Untimed cleanup; returns the ids that could not be deleted."""
    left = []
    for cid in existing(cli, ids, tmp):
        _, rc, _, e = run_cli(cli + ["delete", "--force", cid], tmp)
        if rc != 0:
            log(f"{what}: cannot delete {cid}: {e}")
            left.append(cid)
    return left


def fail_summary(failures):
    shown = {}
    for fl in failures:
        k = (fl["what"], str(fl["stderr"]).replace(str(fl["id"]), "<id>"))
        shown.setdefault(k, [0, fl])[0] += 1
    return [f"{cnt} x {what} (e.g. {fl['id']}, rc {fl['rc']}): {' '.join(msg.split())[:300]}"
            for (what, msg), (cnt, fl) in shown.items()]


# ---------------------------------------------------------------- throughput

def cmd_throughput(a):
    """a.count containers, each created, started and force-deleted, by a.clients concurrent
    client processes (each a sequential loop over its share of the ids)."""
    ids = [f"{a.prefix}{i:03d}" for i in range(a.count)]
    w = f"{a.prefix}warm"
    for cid in ids + [w]:
        write_bundle(a.template, a.bundles, a.cgroup_parent, cid)
    before = machine_snapshot()
    try:
        # one untimed warm-up cycle (binaries, page cache, the daemon's first connection)
        run_cli(a.cli + ["create", "--bundle", os.path.join(a.bundles, w), w], a.tmp)
        run_cli(a.cli + ["start", w], a.tmp)
        run_cli(a.cli + ["delete", "--force", w], a.tmp)
        r = run_clients(a.cli, ids, ["create", "start", "delete"], a.clients, a.bundles, a.tmp)
    finally:
        leftover = force_delete_all(a.cli, ids + [w], a.tmp, f"throughput {a.runtime}")
    still = existing(a.cli, ids, a.tmp)
    done = len(r["ok"])
    res = {
        "view": a.view,
        "runtime": a.runtime, "rep": a.rep, "count": a.count, "clients": a.clients,
        "completed": done, "wall_s": r["wall_s"],
        "per_s": (done / r["wall_s"]) if r["wall_s"] and done else None,
        "samples_ms": r["samples_ms"], "failures": r["failures"],
        "leftover": leftover, "still_listed": still,
        "machine": machine_load(before, machine_snapshot()),
    }
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"throughput {a.view} {a.runtime} rep {a.rep}: {done}/{a.count} in {r['wall_s']:.2f}s "
        f"= {res['per_s'] or 0:.1f}/s, {len(r['failures'])} failures")
    return 0


# ---------------------------------------------------------------- generated state

PID_MAX_LIMIT = 4194304   # the kernel's ceiling for kernel.pid_max on 64-bit


def free_pids(n):
    """n pids that no process has, nor can get: above kernel.pid_max when there is room
    (the kernel never hands those out), else pids free now (cycled if too few), whose
    start time 1 never matches a later process that reuses one."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
    except OSError:
        pid_max = 32768
    if PID_MAX_LIMIT - pid_max >= n:
        return [pid_max + 1 + i for i in range(n)], f"above kernel.pid_max ({pid_max})"
    used = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    pool = [p for p in range(pid_max - 1, 300, -1) if p not in used]
    return [pool[i % len(pool)] for i in range(n)], "free when generated (kernel.pid_max leaves no room above it)"


def generate(stage, prefix, count, cgroup_dirs):
    """Write count stopped containers' state directories (berth's schema, as berth writes
    it: pretty JSON) under stage; returns their ids."""
    os.makedirs(stage, mode=0o700, exist_ok=True)
    pids, how = free_pids(count)
    base = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    ids = []
    for i in range(count):
        cid = f"{prefix}gen-{i:05d}"
        created = base + datetime.timedelta(seconds=37 * i, microseconds=(i * 7919) % 1000000)
        exited = created + datetime.timedelta(seconds=60 + i % 3600)
        kind = i % 10
        if kind < 5:
            exit_rec = {"code": 0, "signal": 0}
        elif kind < 9:
            exit_rec = {"code": 137, "signal": 9}
        else:
            exit_rec = None          # died while no berthd watched: no status recorded
        if exit_rec is not None:
            exit_rec["exitedAt"] = exited.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        state = {
            "schemaVersion": 1,
            "id": cid,
            "bundle": f"/var/lib/bundles/{cid}",
            "created": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "annotations": {"org.example.app": f"app-{i % 50}"} if i % 4 == 0 else {},
            "init": {"pid": pids[i], "startTime": 1},
            "exit": exit_rec,
            "sharesPidNamespace": False,
            "cgroupDirs": cgroup_dirs,
            "createdCgroupDirs": [],
            "rdt": None,
            "hooks": None,
        }
        d = os.path.join(stage, cid)
        os.mkdir(d, 0o711)
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump(state, f, indent=2)
        os.chmod(os.path.join(d, "state.json"), 0o600)
        ids.append(cid)
    return ids, how


def shared_stopped_cgroups(name):
    """One real, empty cgroup per hierarchy that every generated container names as its
    own: status derivation then reads a real freezer.state, as for a stopped container
    whose cgroups are still there, without making 10,000 x 10 cgroups."""
    dirs = []
    for mp in cgroup_mounts():
        d = os.path.join(mp, name)
        os.makedirs(d, exist_ok=True)
        dirs.append(d)
    return dirs


# ---------------------------------------------------------------- ListContainers

class Lister:
    """ListContainers through grpcio and server reflection, as tests/python does."""

    def __init__(self, sock):
        import grpc
        from google.protobuf import descriptor_pool
        from google.protobuf.message_factory import GetMessageClass
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
            ProtoReflectionDescriptorDatabase)
        self.channel = grpc.insecure_channel(
            f"unix:{sock}", options=[("grpc.default_authority", "localhost"),
                                     ("grpc.max_receive_message_length", 64 << 20)])
        db = ProtoReflectionDescriptorDatabase(self.channel)
        pool = descriptor_pool.DescriptorPool(db)
        svc = pool.FindServiceByName("berth.v1.ContainerService")
        m = svc.FindMethodByName("ListContainers")
        self.req_cls = GetMessageClass(m.input_type)
        resp_cls = GetMessageClass(m.output_type)
        self.resp_cls = GetMessageClass(m.output_type)
        self.status_names = {v.number: v.name for v in
                             pool.FindEnumTypeByName("berth.v1.ContainerStatus").values}
        # the reply is left as bytes, so that the timed call is the RPC alone; decoding is
        # timed on its own
        self.stub = self.channel.unary_unary("/berth.v1.ContainerService/ListContainers",
                                             request_serializer=self.req_cls.SerializeToString,
                                             response_deserializer=None)

    def timed(self):
        """(seconds for the RPC, seconds to decode its reply in python, raw reply, reply)."""
        req = self.req_cls()
        t0 = time.perf_counter()
        raw = self.stub(req, timeout=30)
        t1 = time.perf_counter()
        resp = self.resp_cls.FromString(raw)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, raw, resp

    def close(self):
        self.channel.close()


# ---------------------------------------------------------------- registry

def cmd_registry(a):
    d = Daemon(a)
    res = {"sizes": [], "notes": [], "failures": [], "running": a.running,
           "reps": a.reps, "list_calls": a.list_calls, "clients": a.clients,
           "settle": a.settle}
    before = machine_snapshot()
    real_ids = [f"{a.prefix}run-{i:03d}" for i in range(a.running)]
    for cid in real_ids:
        write_bundle(a.template, a.bundles, a.cgroup_parent, cid)
    stage = os.path.join(a.tmp, "gen-stage")
    gen_ids = []
    try:
        sizes = sorted(set([0, a.running] + [s for s in a.sizes if s > a.running]))
        dropped = [s for s in a.sizes if 0 < s < a.running]
        if dropped:
            res["notes"].append(f"sizes {dropped} are below the {a.running} real running "
                                "containers and were skipped")
        gen_needed = max(sizes) - a.running
        if gen_needed > 0:
            t0 = time.perf_counter()
            dirs = shared_stopped_cgroups(f"{a.prefix}gen-stopped")
            gen_ids, res["gen_pids"] = generate(stage, a.prefix, gen_needed, dirs)
            res["generate_s"] = time.perf_counter() - t0
            res["gen_cgroup_dirs"] = dirs
            log(f"generated {gen_needed} stopped containers in {res['generate_s']:.1f}s")
        placed = 0
        for size in sizes:
            if size == a.running and size > 0:
                # the real running containers: create + start through berth, then stop berthd
                log(f"creating {a.running} running containers through berth")
                d.start()
                r = run_clients(d.cli, real_ids, ["create", "start"], a.clients, a.bundles,
                                a.tmp)
                res["failures"].extend(r["failures"])
                res["create_running_wall_s"] = r["wall_s"]
                st = statuses(d.cli, real_ids, a.tmp)
                bad = {k: v for k, v in st.items() if v != "running"}
                if bad:
                    raise RuntimeError(f"{len(bad)} of the {a.running} containers are not "
                                       f"running: {list(bad.items())[:5]}")
                d.stop()
            elif size > a.running:
                want = size - a.running
                for cid in gen_ids[placed:want]:
                    os.rename(os.path.join(stage, cid), os.path.join(a.root, cid))
                placed = want
            n_dirs = len([x for x in os.listdir(a.root) if x[:1] not in (".", "~")])
            entry = {"size": size, "running": min(size, a.running) if size else 0,
                     "stopped": max(0, size - a.running), "startup_ms": [], "polls": [],
                     "to_loaded_ms": [], "loaded_to_serving_ms": [], "serving_to_answer_ms": [],
                     "stop_ms": [], "rss": [], "loaded_count": [], "loadavg_before": loadavg()}
            if n_dirs != size:
                res["notes"].append(f"size {size}: the state root holds {n_dirs} entries")
            log(f"start-up at {size} containers x {a.reps}")
            for rep in range(a.reps):
                secs, polls, wall0, off = d.start()
                entry["startup_ms"].append(secs * 1000)
                entry["polls"].append(polls)
                ev = d.log_events(off)
                loaded = [e for e in ev if e[1] == "registry loaded"]
                serving = [e for e in ev if e[1] == "serving"]
                if loaded and serving:
                    entry["to_loaded_ms"].append((loaded[0][0] - wall0) * 1000)
                    entry["loaded_to_serving_ms"].append((serving[0][0] - loaded[0][0]) * 1000)
                    entry["serving_to_answer_ms"].append(
                        (wall0 + secs - serving[0][0]) * 1000)
                    entry["loaded_count"].append(loaded[0][2].get("containers"))
                time.sleep(a.settle)
                entry["rss"].append(read_status(d.proc.pid))
                if rep == a.reps - 1 and size > 0:
                    list_phase(a, d, entry, res)
                entry["stop_ms"].append(d.stop() * 1000)
            if size == max(sizes) and size > a.running:
                # Where ListContainers' time goes: the same registry once more, with the
                # generated containers naming no cgroup directories, so that deriving their
                # status reads no freezer.state
                for cid in gen_ids[:placed]:
                    path = os.path.join(a.root, cid, "state.json")
                    with open(path) as f:
                        st = json.load(f)
                    st["cgroupDirs"] = []
                    with open(path, "w") as f:
                        json.dump(st, f, indent=2)
                d.start()
                probe = {"size": size, "list": None}
                list_phase(a, d, probe, res, with_cli=False)
                entry["list_no_cgroups"] = probe.get("list")
                d.stop()
            if size == max(sizes) and a.running:
                # the real containers go while the whole registry is loaded
                d.start()
                r = run_clients(d.cli, real_ids, ["delete"], a.clients, None, a.tmp)
                res["failures"].extend(r["failures"])
                entry["delete_running"] = {"wall_s": r["wall_s"],
                                           "ms": stats_ms(r["samples_ms"]["delete"])}
                left = existing(d.cli, real_ids, a.tmp)
                if left:
                    res["notes"].append(f"{len(left)} real containers survived their delete")
                d.stop()
            entry["loadavg_after"] = loadavg()
            res["sizes"].append(entry)
            log(f"  {size}: start-up median {median(entry['startup_ms']):.1f} ms, "
                f"VmRSS median {median([x.get('VmRSS', 0) for x in entry['rss']])} KB")
    finally:
        if d.proc is not None:
            d.stop()
        teardown_root(a, gen_prefix=f"{a.prefix}gen-")
        shutil.rmtree(stage, ignore_errors=True)
    res["machine"] = machine_load(before, machine_snapshot())
    res["log_warnings"] = log_warnings(a.log)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    return 0


def list_phase(a, d, entry, res, with_cli=True):
    try:
        lister = Lister(d.sock)
    except Exception as e:  # grpcio missing or reflection failed
        res["notes"].append(f"ListContainers not measured at {entry['size']}: {e!r}")
        return
    try:
        dt, _, raw, resp = lister.timed()  # warm-up: connection, first call
        warm = dt
        counts = {}
        for c in resp.containers:
            n = lister.status_names.get(c.status, str(c.status))
            counts[n] = counts.get(n, 0) + 1
        xs, decode = [], []
        for _ in range(a.list_calls):
            dt, dd, raw, resp = lister.timed()
            xs.append(dt * 1000)
            decode.append(dd * 1000)
        entry["list"] = {"ms": xs, "decode_ms": decode, "warmup_ms": warm * 1000,
                         "containers": len(resp.containers), "statuses": counts,
                         "bytes": len(raw)}
    finally:
        lister.close()
    if not with_cli:
        return
    # the CLI, for scale: one process, rows printed to /dev/null
    cli_ms = [run_cli(d.cli + ["list"], a.tmp)[0] * 1000 for _ in range(3)]
    entry["list"]["cli_ms"] = cli_ms
    entry["rss_after_list"] = read_status(d.proc.pid)


# ---------------------------------------------------------------- stuck delete

def cmd_stuck(a):
    d = Daemon(a, extra=["--kill-wait-rounds", str(a.kill_wait_rounds),
                         "--kill-wait-round", a.kill_wait_round])
    res = {"count": a.count, "clients": a.clients, "failures": [],
           "notes": [], "kill_wait_rounds": a.kill_wait_rounds,
           "kill_wait_round": a.kill_wait_round, "head_start": a.head_start}
    before = machine_snapshot()
    stuck_id = f"{a.prefix}stuck"
    frozen = os.path.join(FREEZER, a.cgroup_parent, STUCK_PARENT)
    stuck_bundle = write_bundle(a.template, a.bundles, f"{a.cgroup_parent}/{STUCK_PARENT}",
                                stuck_id)
    all_ids = [stuck_id]
    try:
        d.start()
        for variant in ("without", "with"):
            ids = [f"{a.prefix}fd-{variant}-{i:03d}" for i in range(a.count)]
            for cid in ids:
                write_bundle(a.template, a.bundles, a.cgroup_parent, cid)
            all_ids += ids
            v = {"loadavg_before": loadavg()}
            if variant == "with":
                for args in (["create", "--bundle", stuck_bundle, stuck_id], ["start", stuck_id]):
                    _, rc, _, e = run_cli(d.cli + args, a.tmp)
                    if rc != 0:
                        raise RuntimeError(f"stuck container: {args[0]} failed: {e}")
            r = run_clients(d.cli, ids, ["create", "start"], a.clients, a.bundles, a.tmp)
            res["failures"].extend(r["failures"])
            st = statuses(d.cli, ids + ([stuck_id] if variant == "with" else []), a.tmp)
            bad = {k: s for k, s in st.items() if s != "running"}
            if bad:
                raise RuntimeError(f"not running before the deletes: {list(bad.items())[:5]}")
            stuck = None
            if variant == "with":
                with open(os.path.join(frozen, "freezer.state"), "w") as f:
                    f.write("FROZEN")
                for _ in range(500):
                    with open(os.path.join(frozen, "freezer.state")) as f:
                        if f.read().strip() == "FROZEN":
                            break
                    time.sleep(0.01)
                else:
                    raise RuntimeError(f"{frozen} did not reach FROZEN")
                err = tempfile.TemporaryFile(dir=a.tmp)
                stuck_t0 = time.perf_counter()
                stuck = subprocess.Popen(d.cli + ["delete", "--force", stuck_id],
                                         stdin=DEVNULL, stdout=DEVNULL, stderr=err)
                time.sleep(a.head_start)
                if stuck.poll() is not None:
                    res["notes"].append("the stuck delete returned before the other deletes "
                                        "began: it was not stuck")
                # Get and List while the stuck delete holds its container's lease
                v["state_stuck_ms"] = run_cli(d.cli + ["state", stuck_id], a.tmp)[0] * 1000
                v["list_cli_ms"] = run_cli(d.cli + ["list"], a.tmp)[0] * 1000
            r = run_clients(d.cli, ids, ["delete"], a.clients, None, a.tmp)
            res["failures"].extend(r["failures"])
            v.update({"wall_s": r["wall_s"], "delete_ms": r["samples_ms"]["delete"],
                      "completed": len(r["ok"])})
            if stuck is not None:
                v["stuck_in_flight_after"] = stuck.poll() is None
                v["stuck_elapsed_when_done_s"] = time.perf_counter() - stuck_t0
                try:
                    stuck.wait(a.kill_wait_rounds * 1.0 + 30)
                except subprocess.TimeoutExpired:
                    stuck.kill()
                    stuck.wait()
                v["stuck_delete_s"] = time.perf_counter() - stuck_t0
                v["stuck_rc"] = stuck.returncode
                err.seek(0)
                v["stuck_stderr"] = err.read().decode(errors="replace").strip()
                err.close()
                with open(os.path.join(frozen, "freezer.state"), "w") as f:
                    f.write("THAWED")
                time.sleep(0.05)
                t0 = time.perf_counter()
                _, rc, _, e = run_cli(d.cli + ["delete", "--force", stuck_id], a.tmp)
                v["after_thaw_delete_ms"] = (time.perf_counter() - t0) * 1000
                v["after_thaw_delete_rc"] = rc
                if rc != 0:
                    res["notes"].append(f"delete --force of the thawed container failed: {e}")
            left = existing(d.cli, ids, a.tmp)
            if left:
                res["notes"].append(f"{variant}: {len(left)} containers survived their delete")
            v["loadavg_after"] = loadavg()
            res[variant] = v
            log(f"stuck phase, {variant} the stuck delete: {a.count} deletes in "
                f"{r['wall_s']:.2f}s, median {median(r['samples_ms']['delete']) or 0:.1f} ms")
    finally:
        thaw_all(a.cgroup_parent)
        if d.proc is not None:
            force_delete_all(d.cli, all_ids, a.tmp, "stuck phase")
            d.stop()
        teardown_root(a)
    res["parent_left"] = [p for p in (os.path.join(mp, a.cgroup_parent) for mp in cgroup_mounts())
                          if os.path.isdir(p)]
    res["machine"] = machine_load(before, machine_snapshot())
    res["log_warnings"] = log_warnings(a.log)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    return 0


# ---------------------------------------------------------------- teardown

def teardown_root(a, gen_prefix=None):
    """Leave a scale root empty: thaw, drop generated (kernel-resource-free) state dirs,
    force-delete the real containers through a berthd (starting one when none runs),
    stop it, and remove the shared cgroups the generated containers named."""
    thaw_all(a.cgroup_parent)
    # a daemon left by a driver that died: its pid is in the pidfile
    pid = None
    try:
        with open(a.pidfile) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if os.path.basename(a.berthd).encode() not in f.read():
                pid = None
    except (OSError, ValueError):
        pid = None
    if gen_prefix and os.path.isdir(a.root):
        for name in os.listdir(a.root):
            if name.startswith(gen_prefix):
                shutil.rmtree(os.path.join(a.root, name), ignore_errors=True)
    real = sorted(n for n in (os.listdir(a.root) if os.path.isdir(a.root) else [])
                  if n[:1] not in (".", "~") and os.path.isdir(os.path.join(a.root, n)))
    if real:
        log(f"teardown: {len(real)} containers left in {a.root}")
        started = None
        sock = os.path.join(a.run_dir, "berth.sock")
        if pid is None:
            d = Daemon(a)
            try:
                d.start(timeout=30)
                started = d
            except RuntimeError as e:
                log(f"teardown: cannot start berthd: {e}")
        cli = [a.berth, "--socket", sock]
        for cid in real:
            _, rc, _, e = run_cli(cli + ["delete", "--force", cid], a.tmp)
            if rc != 0:
                log(f"teardown: delete --force {cid}: {e}")
        if started:
            started.stop()
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if gen_prefix:
        for mp in cgroup_mounts():
            for e in rmdir_tree(os.path.join(mp, gen_prefix + "stopped")):
                log(f"teardown: {e}")


def cmd_teardown(a):
    teardown_root(a, gen_prefix=a.gen_prefix)
    return 0


# ---------------------------------------------------------------- markdown

def f1(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def load_span(x):
    """'3.1 -> 4.0': the 1-minute load average before and after a step."""
    return " -> ".join(x[k].split()[0] for k in ("loadavg_before", "loadavg_after") if x.get(k))


def registry_split(reg):
    """Where the start-up at the largest size goes, from berthd's log: medians (ms) of exec
    to `registry loaded`, loaded to `serving`, serving to the first SERVING answer."""
    e = max(reg["sizes"], key=lambda x: x["size"]) if reg and reg.get("sizes") else None
    if not e:
        return None
    return {k: median(e[k]) for k in ("to_loaded_ms", "loaded_to_serving_ms",
                                       "serving_to_answer_ms")}


def render_registry(reg):
    """Markdown lines: berthd's start-up and memory at each registry size, ListContainers."""
    L = []
    w = L.append
    by_size = {e["size"]: e for e in reg.get("sizes", [])}
    big = max(by_size) if by_size else None
    e0 = by_size.get(0)
    eb = by_size.get(big) if big else None

    def rss_med(e, k="VmRSS"):
        return median([r.get(k, 0) for r in e["rss"]]) if e and e["rss"] else None

    w("### Registry: berthd's start-up and memory")
    w("")
    w("Start-up is the time from just before berthd is exec'd to the first SERVING answer of "
      "its health service, polled by `berth-bench ready` (a connect and a health check every "
      "200 µs, on CLOCK_MONOTONIC). The columns after it split the median run with berthd's "
      "own log timestamps: exec to its `registry loaded` line (process start, the sealed "
      "memfd copy of the binary, reading every state.json), from there to its `serving` "
      "line, and from there to the answer.")
    w("")
    w("| containers (running + stopped) | start-up med ms | min | max | n | exec to loaded | "
      "loaded to serving | serving to answer | VmRSS med | RssAnon | VmHWM | SIGTERM to exit ms | "
      "load |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for e in reg["sizes"]:
        s = stats_ms(e["startup_ms"])
        w(f"| {e['size']:,} ({e['running']} + {e['stopped']:,}) | {f1(s['med'])} | "
          f"{f1(s['min'])} | {f1(s['max'])} | {s['n']} | {f1(median(e['to_loaded_ms']))} | "
          f"{f1(median(e['loaded_to_serving_ms']))} | {f1(median(e['serving_to_answer_ms']))} | "
          f"{(rss_med(e) or 0) / 1024:.1f} MiB | {(rss_med(e, 'RssAnon') or 0) / 1024:.1f} MiB | "
          f"{(rss_med(e, 'VmHWM') or 0) / 1024:.1f} MiB | {f1(median(e['stop_ms']))} | "
          f"{load_span(e)} |")
    w("")
    if e0 and eb and big:
        per_t = (median(eb["startup_ms"]) - median(e0["startup_ms"])) * 1000 / big
        per_r = (rss_med(eb) - rss_med(e0)) / big
        w(f"Cost per container over the empty registry, at {big:,}: {per_t:.1f} µs of start-up "
          f"and {per_r:.2f} KB of VmRSS.")
        w("")
    loaded = [(e["size"], e["loaded_count"]) for e in reg["sizes"]
              if any(c != e["size"] for c in e["loaded_count"])]
    if loaded:
        w(f"**Mismatch:** berthd's `registry loaded` count differed from the state root: {loaded}.")
        w("")
    if eb and eb.get("delete_running"):
        dr = eb["delete_running"]
        w(f"- The {reg['running']} real containers were then force-deleted with "
          f"{big:,} registered, by {reg['clients']} client processes: "
          f"{f1(dr['wall_s'] * 1000, 0)} ms in all, median {f1(dr['ms']['med'], 2)} ms per delete.")
    if reg.get("create_running_wall_s"):
        w(f"- Creating and starting the {reg['running']} running containers through berth "
          f"({reg['clients']} client processes) took {reg['create_running_wall_s']:.2f} s.")
    w("")

    w("### ListContainers")
    w("")
    w("The RPC alone, timed in python (grpcio, method found through server reflection, options "
      "`grpc.default_authority=localhost` and a 64 MiB receive limit) on an open channel "
      "after one untimed call, from sending the request to holding the whole reply as bytes. "
      "Decoding that reply into protobuf messages in python is timed apart (not in the RPC "
      "column). `berth list` is the whole CLI process, rows printed to /dev/null, for comparison.")
    w("")
    w("| containers | RPC med ms | p95 | min | max | n | python decode med ms | reply bytes | statuses | `berth list` med ms |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for e in reg["sizes"]:
        lst = e.get("list")
        if not lst:
            continue
        s = stats_ms(lst["ms"])
        st = ", ".join(f"{k.replace('CONTAINER_STATUS_', '').lower()} {v}"
                       for k, v in sorted(lst["statuses"].items()))
        w(f"| {lst['containers']:,} | {f1(s['med'], 2)} | {f1(s['p95'], 2)} | {f1(s['min'], 2)} | "
          f"{f1(s['max'], 2)} | {s['n']} | {f1(median(lst.get('decode_ms', [])), 2)} | "
          f"{lst['bytes']:,} | {st} | {f1(median(lst['cli_ms']), 1)} |")
    w("")
    split = list_split(reg)
    if split:
        w(f"Where the time goes: the same {split['containers']:,} containers once more, with the "
          f"{split['stopped']:,} generated ones naming no cgroup directories (so that deriving "
          f"their status reads no `freezer.state`): the RPC took **{f1(split['bare_ms'], 2)} ms** "
          f"instead of {f1(split['full_ms'], 2)} ms, so about {split['per_freezer_us']:.1f} µs per "
          "container go to its cgroup files; the rest, "
          f"{split['per_container_us']:.1f} µs per container, is the registry walk, the "
          "snapshots and the encoding.")
        w("")
    w("How the registry was built:")
    w("")
    w(f"- A berthd of its own (`--root TMP/scale-root --socket TMP/scale-run/berth.sock "
      f"--log-format json`) in this host's view, on the tmpfs. First {reg['reps']} start-ups "
      f"on an empty root; then {reg['running']} containers of the `sleep 1000` bundle created "
      f"and started through `berth` by {reg['clients']} client processes, all checked "
      "`running`, and berthd stopped with SIGTERM (the containers live on); "
      f"{reg['reps']} start-ups with those alone; then generated stopped containers moved into "
      f"the root while berthd was down, up to each size, with {reg['reps']} start-ups at each.")
    w("- The generated containers are state directories in berth's schema (pretty JSON, as "
      f"berthd writes it): each a distinct init pid {reg.get('gen_pids', '')}, so that no "
      "process has it, and start time 1, created and exited timestamps, 50% exit "
      "code 0, 40% killed by SIGKILL (137/9), 10% with no exit record (the init died while "
      "no berthd watched), a quarter with one annotation, `createdCgroupDirs` empty, and "
      "`cgroupDirs` naming one real empty cgroup per hierarchy that all of them share "
      "(`<prefix>gen-stopped`), so that deriving their status reads a real `freezer.state` "
      "as for a stopped container whose cgroups are still there.")
    w(f"- VmRSS, RssAnon and VmHWM come from /proc/<pid>/status {reg.get('settle', 0.5)} s "
      "after the start-up answered, before any other call.")
    w(f"- Machine: {describe_load(reg.get('machine'))}.")
    for n in reg["notes"]:
        w(f"- note: {n}")
    for n in reg.get("log_warnings", []):
        w(f"- berthd logged: {n}")
    for n in fail_summary(reg["failures"]):
        w(f"- failed: {n}")
    w("")
    return L


def list_split(reg):
    """ListContainers at the largest size with and without the generated containers' cgroup
    files, per container."""
    e = max(reg["sizes"], key=lambda x: x["size"]) if reg and reg.get("sizes") else None
    nc = e.get("list_no_cgroups") if e else None
    if not (nc and e.get("list")):
        return None
    full, bare = median(e["list"]["ms"]), median(nc["ms"])
    return {"containers": nc["containers"], "stopped": e["stopped"], "full_ms": full,
            "bare_ms": bare, "per_freezer_us": (full - bare) * 1000 / max(1, e["stopped"]),
            "per_container_us": bare * 1000 / max(1, nc["containers"])}


def throughput_rates(tps):
    """{runtime: median containers/s over its repetitions}."""
    by = {}
    for t in tps:
        if t.get("per_s"):
            by.setdefault(t["runtime"], []).append(t["per_s"])
    return {rt: median(v) for rt, v in by.items()}


def throughput_op_medians(tps, runtime):
    xs = {k: [x for t in tps if t["runtime"] == runtime for x in t["samples_ms"].get(k, [])]
          for k in ("create", "start", "delete")}
    return {k: median(v) for k, v in xs.items()}


def render_throughput(tps):
    """Markdown lines: one view's throughput table."""
    L = []
    w = L.append
    t0 = tps[0]
    w(f"{t0['clients']} client processes each loop over their share of {t0['count']} ids "
      "(round-robin): `create`, `start`, `delete --force`, each a whole CLI process. The wall "
      "time runs from releasing all clients together to the end of the last; containers/s = "
      "completed / wall time; the latencies are those of the same runs, under that concurrency.")
    w("")
    w("| runtime | containers/s (median) | each repetition | create med / p95 ms "
      "| start med / p95 ms | delete --force med / p95 ms | failed | machine |")
    w("|---|---:|---|---|---|---|---:|---|")
    by = {}
    for t in sorted(tps, key=lambda t: ("berth", "runc", "crun").index(t["runtime"])):
        by.setdefault(t["runtime"], []).append(t)
    for rt, v in by.items():
        allx = {k: [x for t in v for x in t["samples_ms"].get(k, [])]
                for k in ("create", "start", "delete")}
        cells = [f"{f1(stats_ms(allx[k])['med'])} / {f1(stats_ms(allx[k])['p95'])}"
                 for k in ("create", "start", "delete")]
        w(f"| {rt} | {f1(median([t['per_s'] for t in v if t['per_s']]))} | "
          + ", ".join(f1(t["per_s"]) for t in v) + " | " + " | ".join(cells)
          + f" | {sum(len(t['failures']) for t in v)} | "
          + "; ".join(describe_load(t.get("machine")) for t in v) + " |")
    w("")
    for t in tps:
        for n in fail_summary(t["failures"]):
            w(f"- {t['runtime']} rep {t['rep']} failed: {n}")
        if t["leftover"] or t["still_listed"]:
            w(f"- {t['runtime']} rep {t['rep']}: left over {t['leftover'] + t['still_listed']}")
    return L


def render_stuck(stk):
    """Markdown lines: force deletes beside one stuck on a frozen cgroup."""
    L = []
    w = L.append
    if not ("with" in stk and "without" in stk):
        w("The stuck-delete phase did not finish: " + "; ".join(stk.get("notes", [])))
        w("")
        return L
    wi, wo = stk["with"], stk["without"]
    wait_s = stk["kill_wait_rounds"] * parse_dur(stk["kill_wait_round"])
    mw, mo = median(wi["delete_ms"]), median(wo["delete_ms"])
    ok = (wi.get("stuck_in_flight_after") is True and wi["completed"] == stk["count"]
          and mw is not None and mo is not None and mw <= 2 * mo)
    w(f"One container is made with `linux.cgroupsPath` = `/<parent>/{STUCK_PARENT}/<id>`, "
      "started, and its cgroup's parent frozen "
      f"(`FROZEN` into `/sys/fs/cgroup/freezer/<parent>/{STUCK_PARENT}/freezer.state`): its "
      "init cannot die, so `delete --force` waits for it for "
      f"`--kill-wait-rounds {stk['kill_wait_rounds']} --kill-wait-round {stk['kill_wait_round']}` "
      f"(~{wait_s:.0f} s). Started {stk.get('head_start', 0.5)} s before the others, it is in "
      f"flight while {stk['count']} other running containers are force-deleted by "
      f"{stk['clients']} client processes at full speed. The same {stk['count']} deletes ran "
      "first without a stuck delete, on the same berthd. No global lock means: all of them "
      f"finish while the stuck one waits, with a median at most twice as long: "
      f"**{'yes' if ok else 'no'}**.")
    w("")
    w(f"| {stk['count']} x delete --force | wall ms | median ms | p95 ms | max ms | completed | load |")
    w("|---|---:|---:|---:|---:|---:|---|")
    for name, v in (("without a stuck delete", wo), ("with the stuck delete in flight", wi)):
        s = stats_ms(v["delete_ms"])
        w(f"| {name} | {f1(v['wall_s'] * 1000, 0)} | {f1(s['med'], 2)} | {f1(s['p95'], 2)} | "
          f"{f1(s['max'], 2)} | {v['completed']} | {load_span(v)} |")
    w("")
    w(f"- The stuck delete was still in flight when the {stk['count']} deletes had finished: "
      f"**{'yes' if wi.get('stuck_in_flight_after') else 'no'}** (at "
      f"{f1(wi.get('stuck_elapsed_when_done_s'), 2)} s). It returned after "
      f"{f1(wi.get('stuck_delete_s'), 2)} s with exit status {wi.get('stuck_rc')}"
      + (f" (`{' '.join(wi.get('stuck_stderr', '').split())[:200]}`)" if wi.get("stuck_stderr") else "")
      + f"; after the thaw, `delete --force` removed it in {f1(wi.get('after_thaw_delete_ms'), 1)} ms "
      f"(exit {wi.get('after_thaw_delete_rc')}).")
    w(f"- While it was stuck: `berth state` of that container took "
      f"{f1(wi.get('state_stuck_ms'), 1)} ms and `berth list` {f1(wi.get('list_cli_ms'), 1)} ms.")
    w(f"- Machine: {describe_load(stk.get('machine'))}.")
    if stk.get("parent_left"):
        w(f"- **berth left its cgroup parent behind:** {stk['parent_left']}")
    for n in stk["notes"]:
        w(f"- note: {n}")
    for n in stk.get("log_warnings", []):
        w(f"- berthd logged: {n}")
    for n in fail_summary(stk["failures"]):
        w(f"- failed: {n}")
    w("")
    return L


def parse_dur(s):
    s = s.strip()
    for suf, mul in (("ms", 0.001), ("s", 1.0)):
        if s.endswith(suf):
            return float(s[:-len(suf)]) * mul
    return float(s)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    sp = ap.add_subparsers(dest="cmd", required=True)

    def daemon_args(p):
        p.add_argument("--berthd", required=True)
        p.add_argument("--berth", required=True)
        p.add_argument("--bench", required=True, help="berth-bench, for `ready`")
        p.add_argument("--root", required=True)
        p.add_argument("--run-dir", required=True)
        p.add_argument("--cgroup-parent", required=True)
        p.add_argument("--log", required=True)
        p.add_argument("--pidfile", required=True)
        p.add_argument("--tmp", required=True)

    def bundle_args(p):
        p.add_argument("--template", required=True, help="config.json of the `sleep` bundle")
        p.add_argument("--bundles", required=True, help="directory of the per-id bundles")

    p = sp.add_parser("worker")
    p.add_argument("--ops", required=True)
    p.add_argument("--bundles", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--tmp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("cli", nargs="+")

    p = sp.add_parser("throughput")
    p.add_argument("--runtime", required=True)
    p.add_argument("--view", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--cgroup-parent", required=True)
    bundle_args(p)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--rep", type=int, default=0)
    p.add_argument("--tmp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("cli", nargs="+")

    p = sp.add_parser("registry")
    daemon_args(p)
    bundle_args(p)
    p.add_argument("--prefix", required=True)
    p.add_argument("--running", type=int, default=200)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.replace(",", " ").split()],
                   default=[0, 1000, 10000])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--list-calls", type=int, default=15)
    p.add_argument("--settle", type=float, default=0.5)
    p.add_argument("--out", required=True)

    p = sp.add_parser("stuck")
    daemon_args(p)
    bundle_args(p)
    p.add_argument("--prefix", required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--kill-wait-rounds", type=int, default=100)
    p.add_argument("--kill-wait-round", default="100ms")
    p.add_argument("--head-start", type=float, default=0.5)
    p.add_argument("--out", required=True)

    p = sp.add_parser("teardown")
    daemon_args(p)
    p.add_argument("--gen-prefix")

    a = ap.parse_args()
    return {"worker": cmd_worker, "throughput": cmd_throughput, "registry": cmd_registry,
            "stuck": cmd_stuck, "teardown": cmd_teardown}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
