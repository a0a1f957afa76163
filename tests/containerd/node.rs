//! A node as containerd sees it, private to one test: a mount namespace of its own, in which
//! a containerd with its own root, state and sockets, its shims and a berthd run. containerd's
//! shims put their sockets under /run/containerd/s/ and berthd must see the rootfs mounts
//! the shim makes, so all of them share that namespace, with a fresh tmpfs on /run: the
//! host's /run/containerd (and /var/lib/containerd) are never touched. ctr runs in it too.
use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::common::{self, Daemon};

/// containerd's runtime name for the berth shim, which it finds on its PATH.
pub const BERTH: &str = "io.containerd.berth.v1";
/// containerd's own runc shim, the calibration.
pub const RUNC: &str = "io.containerd.runc.v2";
pub const SHIM_BINARY: &str = "containerd-shim-berth-v1";

/// What a test's containerd is like.
#[derive(Clone, Copy)]
pub struct Setup {
    /// Whether containerd (and so every shim) gets BERTH_SOCKET, naming the test's berthd.
    pub berth_socket_in_environment: bool,
    /// Whether the CRI plugin runs (off for the ctr tests: it wants a CNI and pulls images).
    pub cri: bool,
    /// Whether the CRI plugin gets a CNI network: a bridge of the node's own (see
    /// `Node::bridge`) from Debian's containernetworking-plugins. Without it, pods can only
    /// use the host's network.
    pub bridge: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            berth_socket_in_environment: true,
            cri: false,
            bridge: false,
        }
    }
}

/// The subnet a bridge network's pods get their addresses from. No address of it is on
/// the host (the bridge is no gateway), so it cannot clash with the host's routes, nor with
/// another node's bridge of the same subnet.
pub const BRIDGE_SUBNET: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(10, 213, 0, 0), 24);
/// Where Debian's containernetworking-plugins puts the plugins.
const CNI_PLUGINS: &str = "/usr/lib/cni";

/// Longer than any ctr command of the tests takes; a hung one is killed and fails the test.
const CTR_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `command` to its end, or kills it after `limit` (its output then says so).
pub fn output_within(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr (Debian's containerd) is installed");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if finished.recv_timeout(limit).is_err() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    });
    let output = child.wait_with_output().unwrap();
    let _ = done.send(());
    output
}

pub struct Node {
    pub dir: tempfile::TempDir,
    /// Holds the mount namespace open (`sleep`, after it mounted the tmpfs).
    holder: Child,
    pub mount_namespace: PathBuf,
    containerd: Option<Child>,
    pub berthd: Daemon,
    /// The containerd namespace the test's containers live in: their cgroups are
    /// `/<namespace>/<id>`, so tests running at once never share one.
    pub namespace: String,
    setup: Setup,
}

impl Node {
    pub async fn start(namespace: &str) -> Self {
        Self::start_with(namespace, Setup::default()).await
    }

    pub async fn start_with(namespace: &str, setup: Setup) -> Self {
        common::workspace_binary_built(SHIM_BINARY);
        let dir = tempfile::tempdir().unwrap();
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-eu", "-c"])
            .arg("mount -t tmpfs -o mode=0755 berth-test-run /run; mkdir /run/containerd; exec sleep 2147483647")
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        let comm = format!("/proc/{}/comm", holder.id());
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            if let Some(status) = holder.try_wait().unwrap() {
                panic!("the mount namespace holder exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "no private mount namespace after 10s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let mount_namespace = PathBuf::from(format!("/proc/{}/ns/mnt", holder.id()));
        let berthd = Daemon::start_in(Some(mount_namespace.clone()), |_| {}, &[]).await;
        std::fs::create_dir(dir.path().join("fifo")).unwrap();
        let mut node = Self {
            dir,
            holder,
            mount_namespace,
            containerd: None,
            berthd,
            namespace: namespace.to_owned(),
            setup,
        };
        node.write_config();
        node.start_containerd().await;
        let image = node.dir.path().join("image.tar");
        crate::image::write_oci_archive(&image);
        let imported = node.ctr(&["images", "import", image.to_str().unwrap()]);
        assert!(
            imported.status.success(),
            "import: {}",
            node.explain(&imported)
        );
        node
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        let mut disabled = vec![
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper",
        ];
        if !self.setup.cri {
            disabled.push("io.containerd.grpc.v1.cri");
        }
        let mut config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = {disabled:?}
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  level = "debug"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            socket = self.socket().display(),
        );
        if self.setup.cri {
            // The CNI directories are private ones: without a network in them (host
            // networking only) containerd logs that it found no CNI and goes on. The sandbox's
            // oom_score_adj is kept at containerd's own, which these machines do not let
            // processes go below.
            config.push_str(&format!(
                r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}/bin"
    conf_dir = "{cni}/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "{RUNC}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth]
      runtime_type = "{BERTH}"
"#,
                image = crate::image::IMAGE,
                cni = dir.join("cni").display(),
            ));
        }
        std::fs::write(dir.join("containerd.toml"), config).unwrap();
        if self.setup.bridge {
            self.write_bridge_network();
        }
    }

    /// The bridge device of the node's CNI network, in the host's network namespace (where
    /// containerd runs the plugins): unique to the node, and deleted with it.
    pub fn bridge(&self) -> String {
        let unique = self.dir.path().file_name().unwrap().to_string_lossy();
        // At most 15 bytes, as the kernel has it; the temporary name ends in 6 random letters.
        format!("berth{}", &unique[unique.len().saturating_sub(6)..])
    }

    /// The bridge plugin with host-local addresses, the plugins linked into the private
    /// bin_dir. The bridge is no gateway and masquerades nothing: the host's forwarding and
    /// iptables stay as they are, and pods reach each other and no further. containerd adds
    /// the loopback plugin for the pod's `lo` itself.
    fn write_bridge_network(&self) {
        let cni = self.dir.path().join("cni");
        std::fs::create_dir_all(cni.join("bin")).unwrap();
        std::fs::create_dir_all(cni.join("conf")).unwrap();
        for plugin in ["bridge", "host-local", "loopback"] {
            let binary = std::path::Path::new(CNI_PLUGINS).join(plugin);
            assert!(
                binary.exists(),
                "{} is missing: install Debian's containernetworking-plugins",
                binary.display()
            );
            std::os::unix::fs::symlink(&binary, cni.join("bin").join(plugin)).unwrap();
        }
        let (subnet, prefix) = BRIDGE_SUBNET;
        let network = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "berth-test",
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge(),
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("{subnet}/{prefix}")}]],
                    // Not the host's /var/lib/cni/networks.
                    "dataDir": cni.join("ipam"),
                },
            }],
        });
        std::fs::write(
            cni.join("conf").join("10-berth-test.conflist"),
            serde_json::to_vec_pretty(&network).unwrap(),
        )
        .unwrap();
    }

    /// The addresses host-local has handed out and not yet taken back.
    pub fn bridge_addresses_in_use(&self) -> Vec<String> {
        let allocated = self.dir.path().join("cni/ipam/berth-test");
        std::fs::read_dir(allocated)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.parse::<std::net::Ipv4Addr>().is_ok())
            .collect()
    }

    /// The bridge's ports (the host's ends of the pods' veth pairs).
    pub fn bridge_ports(&self) -> Vec<String> {
        std::fs::read_dir(format!("/sys/class/net/{}/brif", self.bridge()))
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect()
    }

    /// The network namespaces containerd has pinned under the node's /run/netns.
    pub fn pinned_network_namespaces(&self) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/root/run/netns", self.holder.id()))
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect()
    }

    /// A command run in the node's mount namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        common::enter_mount_namespace(&mut command, &self.mount_namespace);
        command.stdin(Stdio::null());
        command
    }

    pub async fn start_containerd(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("containerd.log"))
            .unwrap();
        let shim_dir = common::workspace_binary(SHIM_BINARY);
        let path = format!(
            "{}:{}",
            shim_dir.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = self.command("containerd");
        command
            .arg("--config")
            .arg(self.dir.path().join("containerd.toml"))
            .env("PATH", path)
            .env_remove("BERTH_SOCKET")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if self.setup.berth_socket_in_environment {
            command.env("BERTH_SOCKET", &self.berthd.socket);
        }
        self.containerd = Some(command.spawn().expect("containerd (Debian's) is installed"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            let exited = self.containerd.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "containerd exited: {}", self.logs());
            assert!(
                Instant::now() < deadline,
                "containerd not serving after 30s: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, and waits for containerd to exit; its shims go on.
    pub async fn stop_containerd(&mut self) {
        if let Some(mut containerd) = self.containerd.take() {
            let pid = nix::unistd::Pid::from_raw(containerd.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            tokio::task::spawn_blocking(move || containerd.wait())
                .await
                .unwrap()
                .unwrap();
        }
    }

    /// `ctr` against this containerd, in the test's containerd namespace.
    pub fn ctr_command(&self) -> Command {
        let mut command = self.command("ctr");
        command
            .arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(&self.namespace);
        command
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut command = self.ctr_command();
        command.args(args);
        output_within(command, CTR_TIMEOUT)
    }

    /// `ctr run` of the test image with `runtime`: `options` go before the image.
    pub fn run_command(&self, runtime: &str, options: &[&str], id: &str, args: &[&str]) -> Command {
        let mut command = self.ctr_command();
        command
            .args(["run", "--runtime", runtime, "--fifo-dir"])
            .arg(self.dir.path().join("fifo"))
            .args(options)
            .arg(crate::image::IMAGE)
            .arg(id)
            .args(args);
        command
    }

    pub fn run(&self, runtime: &str, options: &[&str], id: &str, args: &[&str]) -> Output {
        output_within(self.run_command(runtime, options, id, args), CTR_TIMEOUT)
    }

    /// What went wrong, for an assertion's message: the command's output and the logs.
    pub fn explain(&self, output: &Output) -> String {
        format!(
            "status {:?}\nstdout: {}\nstderr: {}\n{}",
            output.status.code(),
            common::stdout(output),
            common::stderr(output),
            self.logs()
        )
    }

    /// The tail of containerd's log (with the shims' logs in it) and berthd's.
    pub fn logs(&self) -> String {
        let containerd =
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let tail: Vec<&str> = containerd
            .lines()
            .filter(|line| !line.contains("level=debug"))
            .collect();
        let tail = tail[tail.len().saturating_sub(40)..].join("\n");
        let berthd = self.berthd.logs();
        let berthd_tail: Vec<&str> = berthd.lines().collect();
        format!(
            "--- containerd log (last lines) ---\n{tail}\n--- berthd log (last lines) ---\n{}",
            berthd_tail[berthd_tail.len().saturating_sub(30)..].join("\n")
        )
    }

    /// The task's status as `ctr tasks ls` prints it, or None when it has no task.
    pub fn task_status(&self, id: &str) -> Option<String> {
        let listed = self.ctr(&["tasks", "ls"]);
        common::stdout(&listed).lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.first() == Some(&id)).then(|| fields.last().unwrap().to_string())
        })
    }

    pub async fn wait_task_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.task_status(id);
            if now.as_deref() == Some(status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} is {now:?}, not {status}, after 20s\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The pids of the shims serving this containerd (found by its socket in their
    /// arguments; the runc shim's and berth's alike).
    pub fn shim_pids(&self) -> Vec<i32> {
        let address = self.socket();
        let address = address.to_str().unwrap();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                args.first().is_some_and(|program| {
                    program.ends_with(b"containerd-shim-berth-v1")
                        || program.ends_with(b"containerd-shim-runc-v2")
                }) && args
                    .windows(2)
                    .any(|pair| pair[0] == b"-address" && pair[1] == address.as_bytes())
            })
            .collect()
    }

    /// The mounts of the node's namespace under its containerd's directories.
    pub fn container_mounts(&self) -> Vec<String> {
        let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.holder.id()))
            .unwrap_or_default();
        let dir = self.dir.path().to_str().unwrap().to_owned();
        mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4).map(String::from))
            .filter(|mount_point| mount_point.starts_with(&dir))
            .collect()
    }

    /// Nothing of the test's containers is left: in containerd, in berthd, in the kernel
    /// (processes, mounts, cgroups). Waits a little for the shims, which exit on their own.
    pub async fn assert_nothing_left(&self, ids: &[&str]) {
        let containers = self.ctr(&["containers", "ls", "--quiet"]);
        assert_eq!(
            common::stdout(&containers).trim(),
            "",
            "containers left in containerd"
        );
        let tasks = self.ctr(&["tasks", "ls", "--quiet"]);
        assert_eq!(
            common::stdout(&tasks).trim(),
            "",
            "tasks left in containerd"
        );
        let left: Vec<String> = self.berthd.list().await.into_iter().map(|c| c.id).collect();
        assert!(left.is_empty(), "containers left in berthd: {left:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.shim_pids().is_empty() {
            assert!(
                Instant::now() < deadline,
                "shims left running: {:?}\n{}",
                self.shim_pids(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(self.container_mounts(), Vec::<String>::new(), "mounts left");
        for id in ids {
            for dir in common::cgroup_dirs(&format!("{}/{id}", self.namespace)) {
                assert!(!dir.exists(), "cgroup {} left", dir.display());
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A failed test may leave tasks: kill them through containerd first.
        if self.containerd.is_some() {
            let tasks = self.ctr(&["tasks", "ls", "--quiet"]);
            for id in common::stdout(&tasks).lines() {
                self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
                self.ctr(&["tasks", "delete", "--force", id]);
            }
            let containers = self.ctr(&["containers", "ls", "--quiet"]);
            for id in common::stdout(&containers).lines() {
                self.ctr(&["containers", "delete", id]);
            }
        }
        if let Some(mut containerd) = self.containerd.take() {
            let _ = containerd.kill();
            let _ = containerd.wait();
        }
        for pid in self.shim_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        // The bridge plugin makes the bridge and leaves it when its last pod goes.
        if self.setup.bridge {
            let _ = Command::new("ip")
                .args(["link", "delete", &self.bridge(), "type", "bridge"])
                .stderr(Stdio::null())
                .status();
        }
        // The runc shim leaves the namespace's cgroup level (runc removes only its own).
        for dir in common::cgroup_dirs(&self.namespace) {
            let _ = std::fs::remove_dir(dir);
        }
        // berthd (a field, dropped next) force-deletes what it still holds.
    }
}
