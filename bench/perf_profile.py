#!/usr/bin/env python3
"""Where berth's time goes, from `perf record`: berthd during N creates, N starts and N
force deletes (each recorded apart), and the CLI's `--version` and `list` (empty).

  perf_profile.py run --berthd B --berth C --tmp DIR --template F --bundles DIR
                 --cgroup-parent P --prefix X --n N --cli-runs M --out FILE
      record and summarise; the JSON holds, per scenario, the CPU time per operation, the
      share of the samples per task, per phase and per symbol.

The binaries must keep their symbols (run.sh builds them into target/bench-profile with
CARGO_PROFILE_RELEASE_STRIP=false; the release profile strips). Call graphs are unwound
from DWARF CFI (`--call-graph dwarf`): release builds keep no frame pointers. berthd is
recorded by pid, so the CLI processes that drive it are not in its profile; the samples
are on-CPU time only (cpu-clock): waiting, for a child or a lock, is not in them.

A sample's phase is what its call chain says it was doing: the system call it is in (the
outermost one), marked "(cgroupfs)" when a cgroup function of the kernel is on the chain; a
page fault; other kernel work; or, in user space, the crate of the innermost function
(berthd's and berth's own code) or the library (libc, ld.so). Standard library only.
"""

import argparse
import collections
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

from common import DEVNULL, describe_load, machine_load, machine_snapshot, run_cli, write_bundle

FREQ_DAEMON = 4999
FREQ_CLI = 9999
KERNEL = "[kernel.kallsyms]"
# runs "$@" (the CLI) $1 times
CLI_LOOP = 'n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do "$@" >/dev/null; i=$((i+1)); done'
SYSCALL = re.compile(r"^__(?:x64|ia32)_sys_(\w+)$|^__do_sys_(\w+)$|^__se_sys_(\w+)$")


def log(msg):
    print(f"[profile {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class PerfControl:
    """perf's control FIFOs: its events start disabled (-D -1) and are enabled, and
    acknowledged, only just before the work, so that none of the work goes unrecorded
    while perf still sets itself up, and none of perf's set-up is in the profile."""

    def __init__(self, tmp):
        self.ctl, self.ack = os.path.join(tmp, "perf-ctl"), os.path.join(tmp, "perf-ack")
        for f in (self.ctl, self.ack):
            if os.path.exists(f):
                os.unlink(f)
            os.mkfifo(f, 0o600)
        self.ack_fd = os.open(self.ack, os.O_RDONLY | os.O_NONBLOCK)
        self.ctl_fd = None

    def args(self):
        return ["-D", "-1", "--control", f"fifo:{self.ctl},{self.ack}"]

    def command(self, perf, word):
        while self.ctl_fd is None:
            try:
                self.ctl_fd = os.open(self.ctl, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: perf has not opened it yet
                if perf.poll() is not None:
                    raise RuntimeError(f"perf record exited with {perf.returncode}")
                time.sleep(0.01)
        os.write(self.ctl_fd, word.encode() + b"\n")
        if not select.select([self.ack_fd], [], [], 30)[0]:
            raise RuntimeError(f"perf did not acknowledge {word!r}")
        os.read(self.ack_fd, 64)

    def close(self):
        for fd in (self.ctl_fd, self.ack_fd):
            if fd is not None:
                os.close(fd)
        for f in (self.ctl, self.ack):
            os.unlink(f)


def record_pid(pid, out, work, tmp):
    """perf record of pid (and the tasks it starts) while work() runs."""
    control = PerfControl(tmp)
    perf = subprocess.Popen(["perf", "record", "-N", "-q", "-F", str(FREQ_DAEMON),
                             "--call-graph", "dwarf", "-p", str(pid), "-o", out]
                            + control.args(), stdin=DEVNULL, stdout=DEVNULL)
    try:
        control.command(perf, "enable")
        work()
        control.command(perf, "disable")
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
        control.close()
    if perf.returncode not in (0, -signal.SIGINT):
        raise RuntimeError(f"perf record -p {pid} exited with {perf.returncode}")


def record_command(argv, out):
    subprocess.run(["perf", "record", "-N", "-q", "-F", str(FREQ_CLI), "--call-graph", "dwarf",
                    "-o", out, "--"] + argv, stdin=DEVNULL, stdout=DEVNULL, check=True)


def samples(data):
    """(comm, period ns, [(symbol, dso)] innermost first) of every sample in a perf.data."""
    # --no-inline: resolving inlined frames runs addr2line per address, minutes per file
    p = subprocess.run(["perf", "script", "--no-inline", "-i", data, "-F", "comm,period,ip,sym,dso"],
                       stdin=DEVNULL, stdout=subprocess.PIPE, stderr=DEVNULL, check=True)
    out = []
    cur = None
    for line in p.stdout.decode(errors="replace").splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur = None
        elif not line[0].isspace():
            if cur:
                out.append(cur)
            # comm may hold spaces; the period is the last field
            head = line.rsplit(None, 1)
            period = int(head[1]) if len(head) == 2 and head[1].isdigit() else 0
            cur = (head[0].strip() if len(head) == 2 else line.strip(), period, [])
        elif cur is not None:
            # "\t ffffffff8100 do_syscall_64+0x3c ([kernel.kallsyms])"
            m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
            if m:
                sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
                cur[2].append((sym, m.group(2)))
    if cur:
        out.append(cur)
    return out


def crate_of(sym):
    """The crate a demangled Rust symbol belongs to (`tokio`, `berth_runtime`, ...)."""
    s = sym.lstrip("<&*").removeprefix("dyn ").removeprefix("mut ")
    if s.startswith("_ZN"):
        m = re.match(r"_ZN(\d+)", s)
        if m:
            n = int(m.group(1))
            return s[len(m.group(0)):len(m.group(0)) + n]
    return s.split("::", 1)[0] if "::" in s else None


def syscall_of(kernel):
    """The outermost system call on a kernel chain (innermost frame first), if any."""
    for s in reversed(kernel):
        m = SYSCALL.match(s)
        if m:
            return next(g for g in m.groups() if g)
    # Newer kernels inline the __x64_sys_* wrappers into x64_sys_call: name the call by the
    # first function below the dispatch instead (ksys_write, do_sys_openat2, ...)
    if "do_syscall_64" in kernel:
        below = kernel[:len(kernel) - 1 - kernel[::-1].index("do_syscall_64")]
        for s in reversed(below):
            if s != "x64_sys_call":
                return s
    return None


def phase_of(frames, own):
    kernel = [s for s, d in frames if d == KERNEL]
    if kernel:
        name = syscall_of(kernel)
        if name in ("exit_to_user_mode_loop", "syscall_exit_to_user_mode"):
            return "kernel: leaving a system call (scheduling, signals)"
        if name:
            cg = any(k.startswith(("cgroup", "__cgroup")) for k in kernel)
            return f"syscall {name}" + (" (cgroupfs)" if cg else "")
        if any("page_fault" in s for s in kernel):
            return "kernel: page faults"
        return f"kernel: {kernel[-1]}"
    if not frames:
        return "unknown"
    sym, dso = frames[0]
    base = os.path.basename(dso)
    if base in own:
        crate = crate_of(sym)
        return f"{base}: {crate}" if crate else f"{base}: {sym}"
    return base


def summarise(data, ops, own, comm=None):
    """The summary of one recording; `comm` keeps only that task name's samples."""
    all_samples = samples(data)
    kept = [s for s in all_samples if comm is None or s[0] == comm]
    total = sum(p for _, p, _ in kept) or 1
    by_comm = collections.Counter()
    phases = collections.Counter()
    leaf = collections.Counter()
    inclusive = collections.Counter()
    for c, period, frames in kept:
        by_comm[c] += period
        phases[phase_of(frames, own)] += period
        if frames:
            leaf[f"{frames[0][0]} ({os.path.basename(frames[0][1])})"] += period
        for sym in {s for s, d in frames
                    if os.path.basename(d) in own and (crate_of(s) or "").startswith("berth")}:
            inclusive[sym] += period

    def top(counter, k, below=1.01):
        return [[name, v / total] for name, v in counter.most_common()
                if v / total < below][:k]

    return {
        "ops": ops,
        "samples": len(kept),
        "samples_other_tasks": len(all_samples) - len(kept),
        "cpu_ms": total / 1e6,
        "cpu_ms_per_op": total / 1e6 / ops if ops else None,
        "by_task": top(by_comm, 8),
        "phases": top(phases, 14),
        "self": top(leaf, 14),
        # berth's own functions; those nearly every sample passes through (main) say nothing
        "inclusive": top(inclusive, 14, below=0.95),
    }


def cmd_run(a):
    os.makedirs(a.run_dir, mode=0o700, exist_ok=True)
    sock = os.path.join(a.run_dir, "berth.sock")
    own = {os.path.basename(a.berthd), os.path.basename(a.berth)}
    cli = [a.berth, "--socket", sock]
    res = {"berthd": a.berthd, "berth": a.berth, "n": a.n,
           "cli_runs": a.cli_runs, "freq_daemon": FREQ_DAEMON, "freq_cli": FREQ_CLI,
           "scenarios": {}, "notes": []}
    ids = [f"{a.prefix}{i:03d}" for i in range(a.n)]
    bundles = {cid: write_bundle(a.template, a.bundles, a.cgroup_parent, cid) for cid in ids}
    logf = open(a.log, "ab")
    daemon = subprocess.Popen([a.berthd, "--root", a.root, "--socket", sock,
                               "--log-level", "warn"], stdin=DEVNULL, stdout=logf,
                              stderr=logf, start_new_session=True)
    logf.close()
    with open(a.pidfile, "w") as f:
        f.write(str(daemon.pid))
    live = set()
    before = machine_snapshot()
    try:
        for _ in range(500):
            if run_cli(cli + ["health"], a.tmp)[1] == 0:
                break
            if daemon.poll() is not None:
                raise RuntimeError(f"berthd exited with {daemon.returncode}; see {a.log}")
            time.sleep(0.02)
        # one untimed cycle: the daemon's first connection, page cache
        w = f"{a.prefix}warm"
        write_bundle(a.template, a.bundles, a.cgroup_parent, w)
        for args in (["create", "--bundle", os.path.join(a.bundles, w), w], ["start", w],
                     ["delete", "--force", w]):
            run_cli(cli + args, a.tmp)

        def each(args_of, what):
            def work():
                for cid in ids:
                    _, rc, _, e = run_cli(cli + args_of(cid), a.tmp)
                    if rc != 0:
                        res["notes"].append(f"{what} {cid} failed: {e}")
                    elif what == "create":
                        live.add(cid)
                    elif what == "delete --force":
                        live.discard(cid)
            return work

        steps = [("create", lambda cid: ["create", "--bundle", bundles[cid], cid]),
                 ("start", lambda cid: ["start", cid]),
                 ("delete --force", lambda cid: ["delete", "--force", cid])]
        for name, args_of in steps:
            data = os.path.join(a.tmp, f"perf-{name.split()[0]}.data")
            log(f"berthd during {a.n} x {name}")
            record_pid(daemon.pid, data, each(args_of, name), a.tmp)
            res["scenarios"][f"berthd: {name}"] = summarise(data, a.n, own)
            os.unlink(data)
        for name, args in (("berth --version", ["--version"]), ("berth list (empty)", ["list"])):
            data = os.path.join(a.tmp, "perf-cli.data")
            log(f"{a.cli_runs} x {name}")
            record_command(["sh", "-c", CLI_LOOP, "loop", str(a.cli_runs)] + cli + args, data)
            res["scenarios"][name] = summarise(data, a.cli_runs, own,
                                               comm=os.path.basename(a.berth))
            os.unlink(data)
    finally:
        for cid in sorted(live):
            run_cli(cli + ["delete", "--force", cid], a.tmp)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        try:
            os.unlink(a.pidfile)
        except OSError:
            pass
    res["machine"] = machine_load(before, machine_snapshot())
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    return 0


# ---------------------------------------------------------------- markdown

def short_name(sym):
    """`Registry::claim` for `berth_runtime::registry::Registry::claim`, `Legacy::remove` for
    `<berth_runtime::cgroups::legacy::Legacy as berth_runtime::cgroups::CgroupManager>::remove`."""
    s = sym
    while True:
        t = re.sub(r"(?<=\w)<[^<>]*>", "", s)            # generic arguments: Core<T,S>
        t = re.sub(r"<impl ([^<>]*)>", r"\1", t)        # <impl Container>::build
        t = re.sub(r"<([^<>]*?) as [^<>]*>", r"\1", t)  # <Legacy as CgroupManager>::remove
        if t == s:
            break
        s = t
    parts = [x for x in s.replace("{{closure}}", "").split("::") if x]
    return "::".join(parts[-2:])


def top_phases(prof, scenario, k=3):
    """'2.1 ms CPU per call; phases: ...; berth's functions: ...' for the goals table."""
    sc = (prof or {}).get("scenarios", {}).get(scenario)
    if not sc:
        return None
    phases = ", ".join(f"{name} {share * 100:.0f}%" for name, share in sc["phases"][:k])
    own = ", ".join(f"{short_name(name)} {share * 100:.0f}%"
                    for name, share in sc["inclusive"][:k])
    return (f"{sc['cpu_ms_per_op']:.2f} ms CPU per call under perf; phases: {phases}"
            + (f"; in berth's functions: {own}" if own else ""))


def pct(x):
    return f"{x * 100:.1f}%"


def render(prof):
    L = []
    w = L.append
    w("## Profiles (`perf record`)")
    w("")
    w(f"berthd (built with its symbols, `target/bench-profile`) on a tmpfs root in this host's "
      f"view, recorded by pid (`perf record -F {prof['freq_daemon']} --call-graph dwarf -p`) "
      f"while {prof['n']} containers were created, then started, then force-deleted, one "
      "`berth` process after another (those processes are not in berthd's profile); then "
      f"{prof['cli_runs']} runs each of `berth --version` and `berth list` on the empty "
      f"registry (`perf record -F {prof['freq_cli']} --call-graph dwarf`, the samples of the "
      "`berth` task kept: the part of exec before the task takes its new name is the shell's). "
      "On-CPU time only: time spent waiting is in the latencies above but not here; and the "
      "CPU time includes perf's own work on each sample (copying the stack for the unwinding), "
      "so read the shares, and compare the CPU per call between scenarios rather than with "
      "the latencies. "
      "A phase is the outermost system call a sample is in (\"(cgroupfs)\" when a kernel cgroup "
      "function is on its chain), a page fault, other kernel work, or in user space the crate "
      "of the innermost function (own code) or the library; the last column counts the samples "
      "with a function of berth's own crates (`berth*`) on their call chain. The machine: "
      f"{describe_load(prof.get('machine'))}.")
    w("")
    for name, sc in prof["scenarios"].items():
        w(f"### {name}")
        w("")
        w(f"{sc['samples']} samples, {sc['cpu_ms']:.1f} ms on CPU for {sc['ops']} calls: "
          f"**{sc['cpu_ms_per_op']:.3f} ms CPU per call**. Tasks: "
          + ", ".join(f"{c} {pct(s)}" for c, s in sc["by_task"]) + ".")
        w("")
        w("| phase | share | | innermost function (self) | share | | berth's function on the chain (inclusive) | share |")
        w("|---|---:|---|---|---:|---|---|---:|")
        rows = max(len(sc["phases"]), len(sc["self"]), len(sc["inclusive"]))
        for i in range(rows):
            cells = []
            for col in ("phases", "self", "inclusive"):
                if i < len(sc[col]):
                    n, s = sc[col][i]
                    n = short_name(n) if col == "inclusive" else n
                    cells.append(f"{n.replace('|', '/')[:90]} | {pct(s)}")
                else:
                    cells.append(" | ")
            w("| " + " | | ".join(cells) + " |")
        w("")
    for n in prof.get("notes", []):
        w(f"- note: {n}")
    return L


def main():
    ap = argparse.ArgumentParser()
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("run")
    p.add_argument("--berthd", required=True)
    p.add_argument("--berth", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--pidfile", required=True)
    p.add_argument("--tmp", required=True)
    p.add_argument("--template", required=True)
    p.add_argument("--bundles", required=True)
    p.add_argument("--cgroup-parent", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--cli-runs", type=int, default=300)
    p.add_argument("--out", required=True)
    a = ap.parse_args()
    return {"run": cmd_run}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
