#!/usr/bin/env python3
"""Writes docs/benchmarks.md from the results bench/run.sh collected in one directory:

  meta.json                  the run's settings (run.sh)
  cli-VIEW-RUNTIME-rN.json   bench.py measure
  api-VIEW-rN.json           berth-bench api
  tput-VIEW-RUNTIME-rN.json  scale.py throughput
  registry.json, stuck.json  scale.py registry / stuck
  profile.json               profile.py run
  section-N-NAME.md          a section printed by another script (exec.sh, containerd.sh),
                             put in as it is, in the order of N
  notes.txt                  run.sh's notes, one a line

  report.py --results DIR --out FILE
"""

import argparse
import json
import os
import platform
import subprocess
import sys

from common import describe_load, median, p95
import perf_profile  # bench/perf_profile.py, beside this file
import scale

VIEWS = {
    "host": ("this host's view, roots on tmpfs",
             "berth and runc in this host's hybrid view (cgroup v1 controllers, and a "
             "controller-less cgroup2 at /sys/fs/cgroup/unified, where they make a directory "
             "too); crun, which refuses it, in the v1-only view. State roots on a tmpfs, as "
             "/run is on most hosts."),
    "host-disk": ("this host's view, roots on ext4",
                  "as above, with every runtime's state root (and berthd's socket) on this "
                  "machine's ext4 disk, where its /run is: berth's fsyncs reach the disk."),
    "v1": ("v1 only, all three",
           "all three runtimes, berthd and the drivers in a private mount namespace with "
           "/sys/fs/cgroup/unified unmounted (`bench/view.sh v1`): the same v1-only layout "
           "for all. Roots on tmpfs."),
    "v2": ("pure v2, all three",
           "all three in a private mount namespace with every v1 hierarchy and the unified "
           "mount unmounted and cgroup2 alone on /sys/fs/cgroup (`bench/view.sh v2`, "
           "tests/v2-view.sh). Here cgroup2 has no controllers but hugetlb: the v1 "
           "hierarchies own them. Roots on tmpfs."),
}
RUNTIMES = ("berth", "runc", "crun")
PRIMARY = "host"

CLI_ROWS = [
    ("create", "create (`sleep 1000`)"),
    ("start", "start of a created container"),
    ("delete_force_running", "delete --force, running"),
    ("delete_stopped", "delete, stopped (`true` exited)"),
    ("parallel_force_delete", "40 x delete --force at once (wall)"),
    ("version", "`--version` (the CLI's start-up alone)"),
    ("list_empty", "`list`, nothing to list"),
    ("floor_single", "harness floor: one `busybox true`"),
    ("floor_parallel", "harness floor: 40 x `busybox true` at once (wall)"),
]
API_ROWS = [
    ("create", "CreateContainer"),
    ("get", "GetContainer (created)"),
    ("start", "StartContainer"),
    ("delete_force", "DeleteContainer(force), running"),
    ("list_empty", "ListContainers, empty registry"),
]


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def read_json(path, problems):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"cannot read {os.path.basename(path)}: {e}")
        return None


class Results:
    def __init__(self, d):
        self.problems = []
        self.meta = read_json(os.path.join(d, "meta.json"), self.problems) or {}
        self.cli = {}        # (view, runtime) -> [measure result]
        self.api = {}        # view -> [berth-bench api result]
        self.tput = {}       # view -> [throughput result]
        self.registry = self.stuck = self.profile = None
        self.sections = []
        self.notes = []
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            stem = name.rsplit(".", 1)[0]
            if name.startswith("section-") and name.endswith(".md"):
                with open(path) as f:
                    self.sections.append((stem, f.read()))
            elif name == "notes.txt":
                with open(path) as f:
                    self.notes = [x for x in f.read().splitlines() if x]
            elif name.startswith("cli-"):
                r = read_json(path, self.problems)
                if r:
                    self.cli.setdefault((r["view"], r["runtime"]), []).append(r)
            elif name.startswith("api-"):
                r = read_json(path, self.problems)
                if r:
                    self.api.setdefault(stem[4:].rsplit("-r", 1)[0], []).append(r)
            elif name.startswith("tput-"):
                r = read_json(path, self.problems)
                if r:
                    self.tput.setdefault(r["view"], []).append(r)
            elif stem in ("registry", "stuck", "profile"):
                setattr(self, stem, read_json(path, self.problems))
        self.views = [v for v in self.meta.get("views", "").split() if v in VIEWS]

    def cli_samples(self, view, rt, key):
        return [x for r in self.cli.get((view, rt), []) for x in r["samples_ms"].get(key, [])]

    def cli_med(self, view, rt, key):
        return median(self.cli_samples(view, rt, key))

    def api_samples(self, view, key):
        return [x for r in self.api.get(view, []) for x in r["samples_ms"].get(key, [])]

    def api_med(self, view, key):
        return median(self.api_samples(view, key))

    def machine(self, view):
        """The machine over a view's runs: load range and the time-weighted busy share."""
        ms = [r["machine"] for rs in self.cli.items() if rs[0][0] == view for r in rs[1]]
        ms += [t["machine"] for t in self.tput.get(view, []) if t.get("machine")]
        if not ms:
            return None
        secs = sum(m["seconds"] for m in ms)
        busy = [m for m in ms if m.get("cpu_busy") is not None]
        loads = [float(m[k].split()[0]) for m in ms for k in ("load_before", "load_after")]
        return {"load_min": min(loads), "load_max": max(loads), "seconds": secs,
                "cpu_busy": (sum(m["cpu_busy"] * m["seconds"] for m in busy) /
                             max(1e-9, sum(m["seconds"] for m in busy))) if busy else None}


def describe_view_load(m):
    if not m:
        return "-"
    busy = "-" if m["cpu_busy"] is None else f"{m['cpu_busy'] * 100:.0f}%"
    return f"load {m['load_min']:.1f}-{m['load_max']:.1f}, CPUs {busy} busy"


# ---------------------------------------------------------------- goals

def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def absolute(value, limit, unit="ms"):
    if value is None:
        return "-", None
    ok = value <= limit
    return f"{value:.2f} {unit} {verdict(ok)}", ok


def versus_crun(b, c, max_ratio):
    if b is None or c is None:
        return "-", None
    ok = b <= max_ratio * c
    return f"{b:.2f} ms = {b / c:.2f}x crun ({c:.2f}) {verdict(ok)}", ok


def goals(R):
    """(label, target, {view: (cell, ok)}, where-the-time-goes) per goal."""
    reg = R.registry
    by_size = {e["size"]: e for e in (reg or {}).get("sizes", [])}
    big = max(by_size) if by_size else None
    eb = by_size.get(big)
    prof = R.profile
    v0 = PRIMARY if PRIMARY in R.views else (R.views[0] if R.views else None)

    def per_view(fn):
        return {v: fn(v) for v in R.views}

    def host_only(cell):
        return {v: (cell if v == "host" else ("-", None)) for v in R.views}

    ver = R.cli_med(v0, "berth", "version") if v0 else None

    def cli_split(key, api_key, scenario):
        """'--version V + RPC A + the rest R' for a CLI command in the primary view."""
        total = R.cli_med(v0, "berth", key) if v0 else None
        if total is None or ver is None:
            return "-"
        parts = f"`--version` {ver:.2f} ms"
        if api_key:
            api = R.api_med(v0, api_key)
            if api is not None:
                parts += (f" + the RPC on an open connection {api:.2f} ms + connecting and the "
                          f"rest {total - ver - api:.2f} ms")
        else:
            parts += f" + connecting and berthd {total - ver:.2f} ms"
        prof_text = perf_profile.top_phases(prof, scenario) if scenario else None
        return parts + (f"; berthd: {prof_text}" if prof_text else "")

    def delete_force(v):
        b = R.cli_med(v, "berth", "delete_force_running")
        c = R.cli_med(v, "crun", "delete_force_running")
        if b is None or c is None:
            return (f"{fmt(b)} ms, no crun" if b is not None else "-"), None
        ok = b <= 2.5 and b * 5 <= c
        return f"{b:.2f} ms, crun {c:.2f} ({c / b:.1f}x) {verdict(ok)}", ok

    def throughput(v):
        rates = scale.throughput_rates(R.tput.get(v, []))
        b, c = rates.get("berth"), rates.get("crun")
        if b is None or c is None:
            return "-", None
        ok = b >= 2 * c
        return f"{b:.0f}/s = {b / c:.2f}x crun ({c:.0f}/s) {verdict(ok)}", ok

    floor = R.cli_med(v0, "berth", "floor_single") if v0 else None
    floor_par = R.cli_med(v0, "berth", "floor_parallel") if v0 else None
    one_delete = R.cli_med(v0, "berth", "delete_force_running") if v0 else None
    rows = []
    rows.append(("`berth --version`", "<= 1.0 ms",
                 per_view(lambda v: absolute(R.cli_med(v, "berth", "version"), 1.0)),
                 f"harness floor (one `busybox true` timed alike) {fmt(floor)} ms; "
                 + (perf_profile.top_phases(prof, "berth --version", 4) or "no profile")))
    rows.append(("`berth list`, empty", "<= 1.3 ms",
                 per_view(lambda v: absolute(R.cli_med(v, "berth", "list_empty"), 1.3)),
                 cli_split("list_empty", "list_empty", None) + "; the CLI: "
                 + (perf_profile.top_phases(prof, "berth list (empty)", 4) or "no profile")))
    rows.append(("`berth delete --force`, running", "<= 2.5 ms and >= 5x faster than crun",
                 per_view(delete_force),
                 cli_split("delete_force_running", "delete_force", "berthd: delete --force")))
    rows.append(("DeleteContainer(force), Rust client, open connection", "<= 0.8 ms",
                 per_view(lambda v: absolute(R.api_med(v, "delete_force"), 0.8)),
                 "berthd: " + (perf_profile.top_phases(prof, "berthd: delete --force", 4)
                               or "no profile")))
    rows.append(("`berth create`", "<= 0.6x crun",
                 per_view(lambda v: versus_crun(R.cli_med(v, "berth", "create"),
                                                R.cli_med(v, "crun", "create"), 0.6)),
                 cli_split("create", "create", "berthd: create")))
    rows.append(("CreateContainer, Rust client, open connection", "<= 5 ms",
                 per_view(lambda v: absolute(R.api_med(v, "create"), 5.0)),
                 "berthd: " + (perf_profile.top_phases(prof, "berthd: create", 4) or "no profile")))
    rows.append(("`berth start`", "<= 0.6x crun",
                 per_view(lambda v: versus_crun(R.cli_med(v, "berth", "start"),
                                                R.cli_med(v, "crun", "start"), 0.6)),
                 cli_split("start", "start", "berthd: start")))
    rows.append(("`berth delete`, stopped", "<= 0.6x crun",
                 per_view(lambda v: versus_crun(R.cli_med(v, "berth", "delete_stopped"),
                                                R.cli_med(v, "crun", "delete_stopped"), 0.6)),
                 cli_split("delete_stopped", None, None)))
    rows.append(("40 running containers force-deleted at once (wall)", "<= 60 ms",
                 per_view(lambda v: absolute(R.cli_med(v, "berth", "parallel_force_delete"), 60)),
                 f"one delete --force alone {fmt(one_delete)} ms; harness floor, 40 "
                 f"`busybox true` at once {fmt(floor_par, 1)} ms"))
    list_cell = ("-", None)
    list_where = "-"
    if eb and eb.get("list"):
        list_cell = absolute(median(eb["list"]["ms"]), 20)
        sp = scale.list_split(reg)
        if sp:
            list_where = (f"without the generated containers' cgroup files {sp['bare_ms']:.2f} ms: "
                          f"{sp['per_freezer_us']:.1f} µs per container reading its cgroup "
                          f"files, {sp['per_container_us']:.1f} µs the registry walk, "
                          "snapshots and encoding")
    rows.append((f"ListContainers, {big or 10000:,} containers (python grpcio)", "<= 20 ms",
                 host_only(list_cell), list_where))
    ready_cell = ("-", None)
    ready_where = "-"
    if eb:
        ready_cell = absolute(median(eb["startup_ms"]), 100)
        sp = scale.registry_split(reg)
        if sp and sp["to_loaded_ms"] is not None:
            ready_where = (f"exec to `registry loaded` {sp['to_loaded_ms']:.1f} ms, to `serving` "
                           f"{sp['loaded_to_serving_ms']:.1f} ms more, to the answer "
                           f"{sp['serving_to_answer_ms']:.1f} ms more (berthd's log)")
    rows.append((f"berthd ready with {big or 10000:,} containers", "<= 100 ms",
                 host_only(ready_cell), ready_where))
    tp = R.tput.get(v0, []) if v0 else []
    tp_where = "-"
    if tp:
        b = scale.throughput_op_medians(tp, "berth")
        c = scale.throughput_op_medians(tp, "crun")
        tp_where = ("per-operation medians under that concurrency, berth / crun: "
                    + ", ".join(f"{k} {fmt(b[k], 1)} / {fmt(c[k], 1)} ms"
                                for k in ("create", "start", "delete")))
    clients = tp[0]["clients"] if tp else 16
    rows.append((f"{clients} concurrent CLI clients, create+start+delete --force", ">= 2x crun's rate",
                 per_view(throughput), tp_where))
    return rows


# ---------------------------------------------------------------- sections

def system_info(R):
    m = R.meta

    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "unknown"

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1048576
    return [
        f"- kernel: {platform.system()} {platform.release()} {platform.machine()}; "
        f"CPUs: {os.cpu_count()} ({cpu}); memory: {mem:.1f} GiB",
        "- cgroups: " + ("hybrid: v1 controllers under /sys/fs/cgroup/<controller>, cgroup2 "
                         "at /sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified")
                         else "see `stat -fc %T /sys/fs/cgroup`"),
        f"- berth: commit {m.get('commit', 'unknown')} (`cargo build --release --bins`, and "
        "`-p berth-bench`)",
        f"- {cmd(['runc', '--version'])}; {cmd(['crun', '--version'])}; "
        f"Python {platform.python_version()}",
        f"- disk roots: {m.get('disk_dir', '-')} ({m.get('disk_fs', '-')})",
    ]


def cli_table(R, view):
    L = []
    w = L.append
    hdr = "| measurement |" + "".join(f" {rt} med | p95 |" for rt in RUNTIMES) + " berth / crun | n |"
    w(hdr)
    w("|---|" + "---:|---:|" * len(RUNTIMES) + "---:|---|")
    for key, label in CLI_ROWS:
        line = f"| {label} |"
        ns = []
        for rt in RUNTIMES:
            xs = R.cli_samples(view, rt, key)
            line += f" {fmt(median(xs))} | {fmt(p95(xs))} |"
            ns.append(str(len(xs)))
        b, c = R.cli_med(view, "berth", key), R.cli_med(view, "crun", key)
        ratio = fmt(b / c) if b is not None and c else "-"
        w(line + f" {ratio if not key.startswith('floor') else ''} | {'/'.join(ns)} |")
    w("")
    return L


def api_table(R, view):
    L = []
    w = L.append
    w("| RPC (berth-bench, one open connection) | med ms | p95 | min | n |")
    w("|---|---:|---:|---:|---:|")
    for key, label in API_ROWS:
        xs = R.api_samples(view, key)
        w(f"| {label} | {fmt(median(xs), 3)} | {fmt(p95(xs), 3)} | "
          f"{fmt(min(xs) if xs else None, 3)} | {len(xs)} |")
    w("")
    return L


def problems(R):
    L = []
    w = L.append
    for (view, rt), rs in sorted(R.cli.items()):
        fails = [f for r in rs for f in r["failures"]]
        notes = [f"round {r['round']}: {n}" for r in rs for n in r["notes"]]
        left = [x for r in rs for x in r["leftover"]]
        if not (fails or notes or left):
            continue
        w(f"- {view}, {rt}: {len(fails)} failed invocations")
        for n in notes:
            w(f"  - {n}")
        for line in scale.fail_summary(fails):
            w(f"  - {line}")
        if left:
            w(f"  - containers the driver could not delete: {', '.join(left)}")
    for view, rs in sorted(R.api.items()):
        fails = [f for r in rs for f in r["failures"]]
        if fails:
            w(f"- {view}, berth-bench api: {len(fails)} failures")
            seen = {}
            for f in fails:
                k = (f["what"], f["error"].replace(f["id"], "<id>"))
                seen[k] = seen.get(k, 0) + 1
            for (what, err), n in seen.items():
                w(f"  - {n} x {what}: `{' '.join(err.split())[:300]}`")
    for n in R.notes + R.problems:
        w(f"- {n}")
    if not L:
        w("- none: every invocation succeeded, every state check passed, nothing was left over.")
    w("")
    return L


def render(R):
    m = R.meta
    L = []
    w = L.append
    w("# Benchmarks: berth vs runc vs crun")
    w("")
    w(f"Generated by `bench/run.sh` on {m.get('date', '?')}, in {m.get('seconds', '?')} s "
      "(the build not counted). Re-run it to refresh this file; it overwrites it.")
    w("")
    w(f"**Load:** the 1/5/15-minute load average was {m.get('load_at_start', '?')} when the "
      f"measurements began and {m.get('load_at_end', '?')} when they ended, on "
      f"{os.cpu_count()} CPUs. Each table below gives the load and the share of the CPUs "
      "that was busy (this benchmark's own processes included) while it was measured; on a "
      "busy machine the figures are high and noisy, and the runtimes are best compared "
      "with each other (their rounds are interleaved).")
    w("")
    w("## Machine")
    w("")
    L.extend(system_info(R))
    w("")

    w("## Goals")
    w("")
    w("Medians of this run. Each view is a column (see [Views](#views)); the last column "
      f"says where the time goes in the `{PRIMARY}` view, from the other figures of this run "
      "and from the profiles (CPU per call and its top phases). \"x crun\": berth's median "
      "over crun's in the same view.")
    w("")
    names = [VIEWS[v][0] for v in R.views]
    w("| goal | target | " + " | ".join(names) + " | where the time goes |")
    w("|---|---|" + "---|" * len(names) + "---|")
    rows = goals(R)
    for label, target, cells, where in rows:
        w(f"| {label} | {target} | " + " | ".join(cells[v][0] for v in R.views)
          + f" | {where.replace('|', '/')} |")
    w("| *machine while measured* | | " + " | ".join(describe_view_load(R.machine(v))
                                                   for v in R.views) + " | |")
    w("")
    for v in R.views:
        met = sum(1 for r in rows if r[2][v][1] is True)
        judged = sum(1 for r in rows if r[2][v][1] is not None)
        w(f"- {VIEWS[v][0]}: {met} of {judged} goals met.")
    w("")

    w("## Views")
    w("")
    for v in R.views:
        w(f"- **{VIEWS[v][0]}** (`{v}`): {VIEWS[v][1]}")
    w("")
    w("In every view every runtime gets the same bundle: a rootfs holding a static busybox "
      "(`sh`, `sleep`, `true`) and a `config.json` from `runc spec` with "
      "`process.terminal=false`, `root.path` absolute, `process.args` `sleep 1000` or `true`, "
      f"and `linux.cgroupsPath` = `/{m.get('cgroup_parent', '<parent>')}/<id>` (absolute; the "
      "parent made beforehand in every hierarchy, so that no runtime pays for making it or "
      "removing it). Runtimes: `target/x86_64-unknown-linux-musl/release/berth --socket S` (the CLI as installed: `cargo cli`) against a berthd of the "
      "view (`--root R --socket S`, started in the view), `runc --root R`, `crun --root R`.")
    w("")

    w("## CLI: whole processes")
    w("")
    w(f"Milliseconds; med = median, p95 = nearest-rank 95th percentile, n = successful samples "
      "(berth/runc/crun). Each runtime ran the phases below in "
      f"{m.get('rounds', '?')} interleaved rounds per view (the first runtime rotating), the "
      "samples pooled; only one runtime was measured at a time.")
    w("")
    w(f"- create, start, delete --force (n = {m.get('n', '?')}): a fresh id each, `create` "
      "(timed), `state` must say `created`, `start` (timed), `state` must say `running`, "
      "`delete --force` (timed), `state` must fail. 3 untimed cycles first.")
    w("- delete, stopped: `create` and `start` of the `true` bundle, `state` polled every 10 ms "
      "until `stopped`, `delete` (timed), `state` must fail.")
    w(f"- 40 at once ({m.get('reps', '?')} repetitions): {m.get('par', 40)} containers "
      "created, started and checked `running`, then as many `delete --force` processes "
      "launched back to back; the wall time from the first launch to the last exit.")
    w("- `--version`, then `list` once `list -q` printed nothing (for berth: no call to "
      "berthd, then one ListContainers).")
    w("- Harness floors: the same timing code around `/usr/bin/busybox true`: what starting any "
      "process from the driver costs, and how busy the machine was.")
    w("- Timing: `time.perf_counter()` around `subprocess.run` in a python driver "
      "(`bench/bench.py`); stdin and stdout /dev/null, stderr an unlinked regular file.")
    w("")
    sizes = {rt: rs[-1].get("binary_bytes") for (_v, rt), rs in R.cli.items()}
    w("- The CLI binaries run, in bytes: " + ", ".join(
        f"{rt} {sizes[rt]:,}" for rt in RUNTIMES if sizes.get(rt)) + " (berth's: "
      "`target/x86_64-unknown-linux-musl/release/berth`, stripped).")
    w("")
    for v in R.views:
        w(f"### {VIEWS[v][0]}")
        w("")
        L.extend(cli_table(R, v))
        w(f"Machine: {describe_view_load(R.machine(v))} (each run's: with the raw samples).")
        w("")

    w("## API: berthd's own latency")
    w("")
    w("`berth-bench api` (bench/api, a Rust client: tonic on berthd's Unix socket, one "
      "connection held open) runs, per container, CreateContainer, GetContainer, "
      "StartContainer and DeleteContainer(force), each timed from the call to its reply; "
      "then ListContainers on the emptied registry. After each delete it checks that "
      "GetContainer says NOT_FOUND and that the state directory and every cgroup directory of "
      "the container are gone, so a delete answered early would show as a failure. 3 untimed "
      "cycles first; run once per round right after berth's CLI phases.")
    w("")
    for v in R.views:
        if not R.api.get(v):
            continue
        w(f"### {VIEWS[v][0]}")
        w("")
        L.extend(api_table(R, v))

    if R.tput:
        w("## Throughput: concurrent CLI clients")
        w("")
        for v in R.views:
            if not R.tput.get(v):
                continue
            w(f"### {VIEWS[v][0]}")
            w("")
            L.extend(scale.render_throughput(R.tput[v]))
            w("")

    if R.registry or R.stuck:
        w("## Scale: berthd with 10,000 containers, and a stuck delete")
        w("")
        if R.registry:
            L.extend(scale.render_registry(R.registry))
        if R.stuck:
            w("### A delete stuck in a kernel wait beside fast deletes")
            w("")
            L.extend(scale.render_stuck(R.stuck))

    if R.profile:
        L.extend(perf_profile.render(R.profile))
        w("")

    for _name, text in R.sections:
        L.append(text.rstrip("\n"))
        w("")

    w("## Run conditions and problems")
    w("")
    L.extend(problems(R))

    w("<details><summary>Raw samples (ms)</summary>")
    w("")
    for v in R.views:
        for rt in RUNTIMES:
            rs = R.cli.get((v, rt), [])
            if not rs:
                continue
            w(f"**{v}, {rt}** (" + "; ".join(f"round {r['round']}: {describe_load(r['machine'])}"
                                            for r in rs) + ")")
            w("")
            keys = list(dict.fromkeys(k for r in rs for k in r["samples_ms"]))
            for k in keys:
                w(f"- {k}: " + " ".join(f"{x:.2f}" for x in R.cli_samples(v, rt, k)))
            w("")
        if R.api.get(v):
            w(f"**{v}, berth-bench api**")
            w("")
            for k, _ in API_ROWS:
                w(f"- {k}: " + " ".join(f"{x:.3f}" for x in R.api_samples(v, k)))
            w("")
    w("</details>")
    w("")
    return L, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    R = Results(a.results)
    lines, rows = render(R)
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    # the goals, for the terminal
    for label, target, cells, _where in rows:
        print(f"{label.replace('`', '')[:52]:52} {target:24} "
              + " | ".join(cells[v][0].replace("*", "") for v in R.views))
    return 0


if __name__ == "__main__":
    sys.exit(main())
