"""What bench.py, scale.py and profile.py share (standard library only).

Imports point one way: the others import this module, bench.py imports scale.py and
profile.py (for the report's sections), and nothing here imports any of them.
"""

import json
import math
import os
import subprocess
import tempfile
import time

DEVNULL = subprocess.DEVNULL


def median(xs):
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return None
    if n % 2:
        return s[n // 2]
    return (s[n // 2 - 1] + s[n // 2]) / 2


def p95(xs):
    """Nearest-rank 95th percentile: the smallest sample >= 95% of samples."""
    s = sorted(xs)
    if not s:
        return None
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine_snapshot():
    """The load average and the machine's CPU counters now: two of them make `machine_load`."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]          # idle + iowait
    return {"loadavg": loadavg(), "busy": sum(ticks) - idle, "total": sum(ticks),
            "t": time.monotonic()}


def machine_load(before, after):
    """How busy the machine was between two snapshots: the 1-minute load average at each
    end, and the share of all CPUs' time spent busy (this benchmark's own work included)."""
    total = after["total"] - before["total"]
    busy = (after["busy"] - before["busy"]) / total if total > 0 else None
    return {"load_before": before["loadavg"], "load_after": after["loadavg"],
            "cpu_busy": busy, "seconds": after["t"] - before["t"]}


def describe_load(m):
    """'load 1.20 -> 1.85, CPUs 64% busy over 31 s' from `machine_load`'s result."""
    if not m:
        return "load not recorded"
    busy = "-" if m.get("cpu_busy") is None else f"{m['cpu_busy'] * 100:.0f}%"
    return (f"load {m['load_before'].split()[0]} -> {m['load_after'].split()[0]}, "
            f"CPUs {busy} busy over {m['seconds']:.0f} s")


def run_cli(argv, tmp, capture=False):
    """One runtime CLI invocation, timed: (seconds, rc, stdout, stderr).

    stdin and stdout are /dev/null (or stdout a pipe when captured, for `state`/`list`,
    whose processes exit before they answer); stderr is a fresh unlinked regular file, never
    a pipe, so that no container can inherit a pipe the driver waits on."""
    with tempfile.TemporaryFile(dir=tmp) as err:
        t0 = time.perf_counter()
        p = subprocess.run(argv, stdin=DEVNULL, stdout=subprocess.PIPE if capture else DEVNULL,
                           stderr=err)
        dt = time.perf_counter() - t0
        err.seek(0)
        etext = err.read().decode(errors="replace").strip()
    return dt, p.returncode, (p.stdout or b"").decode(errors="replace"), etext


def cgroup_mounts():
    """Mount points of every cgroup hierarchy this process sees (v1 controllers and cgroup2)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            if right.split()[0] in ("cgroup", "cgroup2"):
                mp = left.split()[4]
                if mp.startswith("/sys/fs/cgroup"):
                    out.append(mp)
    return sorted(set(out))


_templates = {}


def write_bundle(template, bundles, cgroup_parent, cid):
    """The bundle of container cid: template's config.json with linux.cgroupsPath set to
    /cgroup_parent/cid, in bundles/cid. Every runtime gets its containers' bundles from
    here, so all of them run the same config in the same cgroup layout."""
    if template not in _templates:
        with open(template) as f:
            _templates[template] = json.load(f)
    config = _templates[template]
    config["linux"]["cgroupsPath"] = f"/{cgroup_parent.strip('/')}/{cid}"
    d = os.path.join(bundles, cid)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)
    return d
