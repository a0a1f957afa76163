#!/usr/bin/env python3
"""berth behind containerd against containerd's own runc shim, on one containerd.

Two measurements, each with berth's shim (io.containerd.berth.v1, serving from berthd) and
with containerd's runc shim (io.containerd.runc.v2), interleaved A B B A so that a drift
of the machine's speed reaches both alike:

  ctr run   `ctr run --rm IMAGE ID true`, the whole ctr process: shim start, create,
            start, wait, delete, shim exit.
  pod start through the CRI: RunPodSandbox, CreateContainer and StartContainer, then
            ContainerStatus until the container is RUNNING; the pod is taken down after
            the clock stops. The pod is a host-network one (no CNI), with the kubelet's
            default namespaces otherwise (ipc per pod, pid per container).

Everything runs in a mount namespace of its own with a fresh tmpfs on /run (containerd's
shims put their sockets under /run/containerd/s/, and berthd must see the rootfs mounts a
shim makes): one berthd, one containerd with its own root, state and sockets, both shims,
ctr and the CRI client. The host's containerd, if any, is never touched. The image is an
OCI layout tar built here from Debian's busybox-static, as the containerd tests build it
(tests/containerd/image.rs), and imported with `ctr images import`.

Prints a markdown section on stdout; progress goes to stderr. Needs root, a release build
(cargo build --release --bins), Debian's containerd, runc and busybox-static, and python3
with grpcio (the CRI client; its messages are encoded here, with the field numbers of
k8s.io/cri-api's runtime/v1 api.proto).

Usage:  bench/containerd.py        (BENCH_N runs each, default 30; BENCH_WARMUP, default 3)
"""

import datetime
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from common import median, p95, loadavg  # noqa: E402  (bench/common.py)

RELEASE = os.path.join(REPO, "target", "release")
BERTH_RUNTIME = "io.containerd.berth.v1"
RUNC_RUNTIME = "io.containerd.runc.v2"
SHIMS = ("containerd-shim-berth-v1", "containerd-shim-runc-v2")
IMAGE = "docker.io/library/berth-bench:busybox"
APPLETS = ("sh", "sleep", "true")
GOAL = 0.8
# Everything the benchmark makes is named after this: cgroups, namespaces, ids.
TAG = f"berth-bench-ctrd-{os.getpid()}"
CTR_NAMESPACE = TAG
CRI_NAMESPACE = "k8s.io"
RUN = "/run/berth-bench"
CONTAINERD_SOCKET = f"{RUN}/containerd.sock"
BERTHD_SOCKET = f"{RUN}/berth.sock"
STEP_TIMEOUT = 120


def log(message):
    print(f"[containerd bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ------------------------------------------------------------------ the image

def oci_archive(path):
    """The OCI image layout tar `ctr images import` reads: one uncompressed layer."""
    def entry(name, kind, mode, size=0, link=""):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.linkname, info.mtime = kind, mode, size, link, 0
        return info

    layer_bytes = io.BytesIO()
    with tarfile.open(fileobj=layer_bytes, mode="w", format=tarfile.USTAR_FORMAT) as layer:
        for directory in ("bin", "dev", "etc", "proc", "sys", "tmp", "run"):
            layer.addfile(entry(directory, tarfile.DIRTYPE, 0o755))
        with open("/usr/bin/busybox", "rb") as busybox:
            data = busybox.read()
        layer.addfile(entry("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        for applet in APPLETS:
            layer.addfile(entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox"))
    layer = layer_bytes.getvalue()

    def digest(blob):
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    def encoded(value):
        return json.dumps(value, separators=(",", ":")).encode()

    config = encoded({
        "architecture": "amd64", "os": "linux",
        # What a CRI pod's sandbox runs: it lives until it is stopped.
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sleep", "2147483647"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
    })
    manifest = encoded({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer), "size": len(layer)}],
    })
    index = encoded({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest(manifest), "size": len(manifest),
                       "annotations": {"io.containerd.image.name": IMAGE}}],
    })
    with tarfile.open(path, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
        files += [(f"blobs/sha256/{digest(blob)[7:]}", blob) for blob in (layer, config, manifest)]
        for name, data in files:
            archive.addfile(entry(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))


# ------------------------------------------------------------ the CRI client

def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_bytes(tag, value):
    """A length-delimited field: a string, bytes or an encoded message."""
    if isinstance(value, str):
        value = value.encode()
    return varint(tag << 3 | 2) + varint(len(value)) + value


def pb_int(tag, value):
    return varint(tag << 3) + varint(value) if value else b""


def pb_decode(data):
    """{tag: [values]}: varints as ints, length-delimited fields as bytes."""
    fields, i = {}, 0

    def read_varint():
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return result

    while i < len(data):
        key = read_varint()
        tag, wire = key >> 3, key & 7
        if wire == 0:
            value = read_varint()
        elif wire == 2:
            size = read_varint()
            value, i = data[i:i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = data[i:i + size], i + size
        else:
            raise BenchError(f"protobuf wire type {wire} in a CRI response")
        fields.setdefault(tag, []).append(value)
    return fields


NETWORK_NODE, PID_CONTAINER, IPC_POD = 2, 1, 0
CONTAINER_RUNNING = 1


class Cri:
    def __init__(self, address):
        import grpc
        self.grpc = grpc
        self.channel = grpc.insecure_channel(
            f"unix:{address}", options=[("grpc.default_authority", "localhost")])

    def call(self, method, request):
        rpc = self.channel.unary_unary(f"/runtime.v1.RuntimeService/{method}")
        try:
            return pb_decode(rpc(request, timeout=STEP_TIMEOUT))
        except self.grpc.RpcError as e:
            raise BenchError(f"CRI {method}: {e.code()}: {e.details()}") from None

    def start_pod(self, handler, name, logs):
        """The pod's sandbox and container ids, once the container is RUNNING."""
        namespaces = pb_int(1, NETWORK_NODE) + pb_int(2, PID_CONTAINER) + pb_int(3, IPC_POD)
        sandbox_config = (
            pb_bytes(1, pb_bytes(1, name) + pb_bytes(2, f"uid-{name}") + pb_bytes(3, "bench"))
            + pb_bytes(3, logs)
            + pb_bytes(8, pb_bytes(1, f"/{TAG}/{name}") + pb_bytes(2, pb_bytes(1, namespaces))))
        sandbox = self.call("RunPodSandbox", pb_bytes(1, sandbox_config) + pb_bytes(2, handler))
        sandbox_id = sandbox[1][0].decode()
        container_config = (
            pb_bytes(1, pb_bytes(1, "app"))
            + pb_bytes(2, pb_bytes(1, IMAGE))
            + pb_bytes(3, "sleep") + pb_bytes(3, "100000")
            + pb_bytes(11, "app.log")
            + pb_bytes(15, pb_bytes(2, pb_bytes(3, namespaces))))
        created = self.call("CreateContainer", pb_bytes(1, sandbox_id)
                            + pb_bytes(2, container_config) + pb_bytes(3, sandbox_config))
        container_id = created[1][0].decode()
        self.call("StartContainer", pb_bytes(1, container_id))
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            status = self.call("ContainerStatus", pb_bytes(1, container_id))
            state = pb_decode(status[1][0]).get(3, [0])[0]
            if state == CONTAINER_RUNNING:
                return sandbox_id, container_id
            if time.monotonic() > deadline:
                raise BenchError(f"{handler}: pod {name} not running after {STEP_TIMEOUT}s")
            time.sleep(0.001)

    def remove_pod(self, sandbox_id, container_id):
        if container_id:
            # Timeout 0: SIGKILL at once (the container's sleep is its pid namespace's init).
            self.call("StopContainer", pb_bytes(1, container_id))
            self.call("RemoveContainer", pb_bytes(1, container_id))
        self.call("StopPodSandbox", pb_bytes(1, sandbox_id))
        self.call("RemovePodSandbox", pb_bytes(1, sandbox_id))


# ------------------------------------------------------------------ the node

def containerd_config(work):
    disabled = ["io.containerd.snapshotter.v1." + s for s in ("aufs", "btrfs", "zfs", "devmapper")]
    return f"""version = 2
root = "{work}/containerd-root"
state = "{RUN}/containerd-state"
disabled_plugins = {json.dumps(disabled)}
[grpc]
  address = "{CONTAINERD_SOCKET}"
[ttrpc]
  address = "{CONTAINERD_SOCKET}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{work}/cni/bin"
    conf_dir = "{work}/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "{RUNC_RUNTIME}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth]
      runtime_type = "{BERTH_RUNTIME}"
"""


def wait_for_socket(path, process, name, log_path):
    deadline = time.monotonic() + 60
    while True:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
                return
            except OSError:
                pass
        if process.poll() is not None or time.monotonic() > deadline:
            with open(log_path, errors="replace") as logged:
                tail = "".join(logged.readlines()[-20:])
            raise BenchError(f"{name} is not serving on {path}:\n{tail}")
        time.sleep(0.02)


class Node:
    def __init__(self, work):
        self.work = work
        self.berthd = self.containerd = None
        self.pods = []

    def start(self):
        os.makedirs(RUN)
        berthd_log = os.path.join(self.work, "berthd.log")
        self.berthd = subprocess.Popen(
            [os.path.join(RELEASE, "berthd"), "--root", f"{RUN}/berth", "--socket", BERTHD_SOCKET,
             "--cgroup-parent", TAG, "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(berthd_log, "w"))
        wait_for_socket(BERTHD_SOCKET, self.berthd, "berthd", berthd_log)
        config = os.path.join(self.work, "containerd.toml")
        with open(config, "w") as f:
            f.write(containerd_config(self.work))
        for directory in ("cni/bin", "cni/conf", "pod-logs"):
            os.makedirs(os.path.join(self.work, directory))
        containerd_log = os.path.join(self.work, "containerd.log")
        environment = dict(os.environ, BERTH_SOCKET=BERTHD_SOCKET,
                           PATH=f"{RELEASE}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        self.containerd = subprocess.Popen(
            ["containerd", "--config", config, "--log-level", "warn"], env=environment,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(containerd_log, "w"))
        wait_for_socket(CONTAINERD_SOCKET, self.containerd, "containerd", containerd_log)
        archive = os.path.join(self.work, "image.tar")
        oci_archive(archive)
        for namespace in (CTR_NAMESPACE, CRI_NAMESPACE):
            self.ctr(namespace, "images", "import", archive)

    def ctr_argv(self, namespace, *args):
        return ["ctr", "--address", CONTAINERD_SOCKET, "--namespace", namespace, *args]

    def ctr(self, namespace, *args, check=True):
        done = subprocess.run(self.ctr_argv(namespace, *args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=STEP_TIMEOUT)
        if check and done.returncode != 0:
            raise BenchError(f"ctr {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def logs(self):
        tails = []
        for name in ("containerd.log", "berthd.log"):
            with open(os.path.join(self.work, name), errors="replace") as logged:
                tails.append(f"--- {name} ---\n" + "".join(logged.readlines()[-15:]))
        return "\n".join(tails)

    def shim_pids(self):
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if (os.path.basename(args[0]).decode(errors="replace") in SHIMS
                    and CONTAINERD_SOCKET.encode() in args):
                pids.append(int(entry))
        return pids

    def teardown(self):
        """Removes what the benchmark made, whatever state it stopped in."""
        if self.containerd and self.containerd.poll() is None:
            try:
                if self.pods:
                    cri = Cri(CONTAINERD_SOCKET)
                    for sandbox_id, container_id in self.pods:
                        try:
                            cri.remove_pod(sandbox_id, container_id)
                        except BenchError as e:
                            log(f"teardown: {e}")
                for task in self.ctr(CTR_NAMESPACE, "tasks", "ls", "--quiet", check=False).split():
                    self.ctr(CTR_NAMESPACE, "tasks", "delete", "--force", task, check=False)
                for container in self.ctr(CTR_NAMESPACE, "containers", "ls", "--quiet",
                                          check=False).split():
                    self.ctr(CTR_NAMESPACE, "containers", "delete", container, check=False)
            except subprocess.TimeoutExpired as e:
                log(f"teardown: {e}")
            stop(self.containerd)
        deadline = time.monotonic() + 10
        while self.shim_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.shim_pids():
            log(f"teardown: killing shim {pid}")
            os.kill(pid, signal.SIGKILL)
        if self.berthd and self.berthd.poll() is None:
            berth = os.path.join(RELEASE, "berth")
            listed = subprocess.run([berth, "--socket", BERTHD_SOCKET, "list", "--json"],
                                    capture_output=True, text=True)
            for container in json.loads(listed.stdout or "[]"):
                log(f"teardown: berthd still had {container['id']}")
                subprocess.run([berth, "--socket", BERTHD_SOCKET, "delete", "--force",
                                container["id"]], capture_output=True)
            stop(self.berthd)
        remove_cgroups([TAG])


def stop(process):
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def remove_cgroups(names):
    """Every cgroup named `names` (top level) in every hierarchy, deepest first."""
    with open("/proc/self/mountinfo") as mountinfo:
        roots = [line.split()[4] for line in mountinfo
                 if line.split(" - ")[1].split()[0] in ("cgroup", "cgroup2")]
    for root in roots:
        for name in names:
            top = os.path.join(root, name)
            for directory, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(directory)
                except OSError as e:
                    log(f"teardown: cgroup {directory}: {e.strerror}")


# ------------------------------------------------------------- measurement

def measure_ctr_run(node, runtime, run):
    """Seconds one `ctr run --rm IMAGE ID true` takes."""
    short = "berth" if runtime == BERTH_RUNTIME else "runc"
    argv = node.ctr_argv(CTR_NAMESPACE, "run", "--rm", "--runtime", runtime, IMAGE,
                         f"{short}-{run}", "true")
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=errors, timeout=STEP_TIMEOUT)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            errors.seek(0)
            raise BenchError(f"{runtime}: ctr run exited {done.returncode}: "
                             f"{errors.read().decode(errors='replace')}\n{node.logs()}")
    return elapsed


def measure_pod_start(node, cri, handler, run):
    """Seconds from RunPodSandbox to a RUNNING container; the pod is removed afterwards."""
    name = f"{handler}-{run}"
    logs = os.path.join(node.work, "pod-logs", name)
    os.makedirs(logs)
    started = time.perf_counter()
    pod = cri.start_pod(handler, name, logs)
    elapsed = time.perf_counter() - started
    node.pods.append(pod)
    cri.remove_pod(*pod)
    node.pods.remove(pod)
    return elapsed


def interleaved(measure, n, warmup):
    """{"berth": [...], "runc": [...]}, in the order A B B A, warm-up runs dropped."""
    samples = {"berth": [], "runc": []}
    for run in range(warmup + n):
        order = ("berth", "runc") if run % 2 == 0 else ("runc", "berth")
        for which in order:
            elapsed = measure(which, run)
            if run >= warmup:
                samples[which].append(elapsed)
    return samples


def report(results, n, load_before, load_after, when):
    ms = lambda seconds: f"{seconds * 1000:.1f} ms"  # noqa: E731
    lines = [
        "## containerd: berth's shim against containerd's runc shim",
        "",
        f"{when:%Y-%m-%d %H:%M} UTC, load {load_before} before and {load_after} after, "
        f"{os.cpu_count()} cores; {containerd_version()}. One private containerd (its own "
        "root, state and sockets, in a mount namespace of its own with a tmpfs on /run) "
        f"serves both runtimes the same busybox image; release builds; {n} runs each after "
        "warm-up, interleaved A B B A. `ctr run` is the whole `ctr run --rm IMAGE ID true` "
        "process; a pod start is RunPodSandbox + CreateContainer + StartContainer through the "
        "CRI until ContainerStatus says RUNNING (a host-network pod: no CNI), the pod removed "
        "after the clock stops.",
        "",
        "| measurement | runtime | n | median | p95 |",
        "|---|---|---:|---:|---:|",
    ]
    for title, samples in results:
        for which, runtime in (("berth", BERTH_RUNTIME), ("runc", RUNC_RUNTIME)):
            xs = samples[which]
            lines.append(f"| {title} | {which} (`{runtime}`) | {len(xs)} | "
                         f"{ms(median(xs))} | {ms(p95(xs))} |")
    lines += [
        "",
        f"Goal: berth's figure at most {GOAL}x the runc shim's, for the median and for the p95.",
        "",
        "| measurement | statistic | berth / runc shim | goal |",
        "|---|---|---:|---|",
    ]
    for title, samples in results:
        for statistic, f in (("median", median), ("p95", p95)):
            ratio = f(samples["berth"]) / f(samples["runc"])
            verdict = "met" if ratio <= GOAL else "missed"
            lines.append(f"| {title} | {statistic} | {ratio:.2f}x | {verdict} |")
    # Each berth run beside the runc shim's run of the same round: robust to a drift in load.
    paired = [f"{title} {median([b / r for b, r in zip(s['berth'], s['runc'])]):.2f}x"
              for title, s in results]
    lines += ["", "Median of the per-round ratios (berth's run over the runc shim's beside it): "
              + ", ".join(paired) + "."]
    print("\n".join(lines), flush=True)


def containerd_version():
    version = subprocess.run(["containerd", "--version"], capture_output=True, text=True)
    words = version.stdout.split()
    return f"containerd {words[2]}" if len(words) > 2 else "containerd"


def inside(work):
    """The benchmark proper, in the private mount namespace."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "berth-bench-run", "/run"],
                   check=True)
    os.makedirs("/run/containerd")
    n = int(os.environ.get("BENCH_N", "30"))
    warmup = int(os.environ.get("BENCH_WARMUP", "3"))
    node = Node(work)
    try:
        when = datetime.datetime.now(datetime.timezone.utc)
        load_before = loadavg()
        log("starting berthd and containerd")
        node.start()
        log(f"ctr run --rm: {n} runs each")
        runtimes = {"berth": BERTH_RUNTIME, "runc": RUNC_RUNTIME}
        ctr_run = interleaved(lambda which, run: measure_ctr_run(node, runtimes[which], run),
                              n, warmup)
        log(f"pod start: {n} runs each")
        cri = Cri(CONTAINERD_SOCKET)
        pod_start = interleaved(lambda which, run: measure_pod_start(node, cri, which, run),
                                n, warmup)
        report([("`ctr run --rm`", ctr_run), ("pod start (CRI)", pod_start)],
               n, load_before, loadavg(), when)
    finally:
        node.teardown()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--inside":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            inside(sys.argv[2])
        except BenchError as e:
            print(f"bench/containerd.py: {e}", file=sys.stderr)
            sys.exit(1)
        return
    if os.geteuid() != 0:
        sys.exit("bench/containerd.py: run as root")
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "unshare", "mount"):
        if not shutil.which(tool):
            sys.exit(f"bench/containerd.py: missing {tool}")
    for binary in ("berthd", "berth", "containerd-shim-berth-v1"):
        if not os.access(os.path.join(RELEASE, binary), os.X_OK):
            sys.exit(f"bench/containerd.py: no {RELEASE}/{binary}: "
                     "run `cargo build --release --bins` first")
    try:
        import grpc  # noqa: F401  (the CRI client's)
    except ImportError:
        sys.exit("bench/containerd.py: python3 lacks grpcio (deploy/install-deps.sh installs it)")
    if not os.path.exists("/usr/bin/busybox"):
        sys.exit("bench/containerd.py: missing /usr/bin/busybox (busybox-static)")
    work = tempfile.mkdtemp(prefix="berth-bench-ctrd-", dir="/var/tmp")
    try:
        inner = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                  sys.executable, os.path.abspath(__file__), "--inside", work])
        try:
            status = inner.wait()
        except KeyboardInterrupt:
            inner.send_signal(signal.SIGTERM)
            status = inner.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
