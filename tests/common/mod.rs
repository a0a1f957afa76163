//! What every integration test needs: a real berthd on a temporary state root and socket,
//! clients for it, and guards that clean up even when a test fails.
#![allow(dead_code)] // each test binary uses its own share of the helpers

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use berth::proto::container_service_client::ContainerServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

pub const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");

/// The CLI, `berth`, beside berthd in the same target directory: it is the binary of
/// another package (berth-cli, client/), and cargo gives integration tests only their own
/// package's (`CARGO_BIN_EXE_*`). This is `Path::new(BERTHD).with_file_name("berth")`,
/// computed at compile time so that it stays a `&str` constant. `cargo test` at the
/// workspace root builds it (berth-cli is a default member with integration tests of its
/// own); see `berth_cli_built` for a narrower `cargo test --test NAME`.
pub const BERTH: &str = {
    // (`cargo check` and clippy set CARGO_BIN_EXE_berthd to "placeholder:berthd".)
    const SUFFIX: &[u8] = b"berthd";
    let path = BERTHD.as_bytes();
    assert!(path.len() > SUFFIX.len());
    let mut i = 0;
    while i < SUFFIX.len() {
        assert!(path[path.len() - SUFFIX.len() + i] == SUFFIX[i]);
        i += 1;
    }
    // "…/berthd" without its last byte is "…/berth".
    match std::str::from_utf8(path.split_at(path.len() - 1).0) {
        Ok(berth) => berth,
        Err(_) => panic!("not UTF-8"),
    }
};

/// The CLI the tests run: `$BERTH_CLI` when set, else `BERTH`. tests/all.sh runs the
/// suites that drive the CLI once more with the build that is installed (`cargo cli`, on
/// musl), so that what users run is what was tested.
pub fn berth_cli() -> &'static str {
    static CHOSEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(|| std::env::var("BERTH_CLI").unwrap_or_else(|_| BERTH.to_owned()))
}

/// Builds `BERTH` if it is missing or out of date, once per test binary, and panics with
/// what to do when that fails. `cargo test` at the workspace root has already built it
/// (this is then a no-op build of a fraction of a second), but a narrower run such as
/// `cargo test --test foundation` builds this package's binaries only. `Daemon::start` and
/// `Daemon::cli` call it; a test that runs the CLI without a daemon calls it first. A
/// `$BERTH_CLI` is the caller's to build.
pub fn berth_cli_built() {
    if std::env::var_os("BERTH_CLI").is_none() {
        workspace_binary_built("berth");
    }
}

/// The path of `name`, a binary of another workspace package, beside berthd (cargo gives
/// integration tests only their own package's binaries, `CARGO_BIN_EXE_*`).
pub fn workspace_binary(name: &str) -> PathBuf {
    Path::new(BERTHD).with_file_name(name)
}

/// Builds the workspace binary `name` if it is missing or out of date, once per test
/// binary. The build goes to the target directory and profile berthd came from, with the
/// workspace's default members (so with the same features as `cargo test`).
pub fn workspace_binary_built(name: &str) {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    if built.iter().any(|done| done == name) {
        return;
    }
    let profile_dir = Path::new(BERTHD).parent().expect("berthd has a directory");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .args(["build", "--quiet", "--bin", name, "--profile", profile])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .env(
            "CARGO_TARGET_DIR",
            profile_dir.parent().expect("a target dir"),
        )
        .stdin(Stdio::null());
    // What cargo set for this test process only (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...):
    // some build scripts track such variables, and seeing them would make this build
    // redo what `cargo test` built.
    for (variable, _) in std::env::vars_os() {
        let variable = variable.to_string_lossy();
        if variable.starts_with("CARGO_PKG_")
            || variable.starts_with("CARGO_BIN_")
            || variable.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*variable,
                "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            build.env_remove(&*variable);
        }
    }
    let status = build.status();
    match status {
        Ok(status) if status.success() && workspace_binary(name).exists() => {}
        outcome => panic!(
            "cannot build {} with `{} build --bin {name}` ({outcome:?}); \
             run `cargo test` (or `cargo build --bin {name}`) at the workspace root",
            workspace_binary(name).display(),
            cargo.to_string_lossy()
        ),
    }
    built.push(name.to_owned());
}

/// A berthd process on its own state root, socket and cgroup parent. Dropping it
/// force-deletes every container it still knows, kills it, and removes its cgroup parent,
/// so a failing test leaves nothing behind either.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// Unique per daemon, so tests running in parallel never share cgroups.
    pub cgroup_parent: String,
    /// The mount namespace (`/proc/PID/ns/mnt`) berthd runs in; the test's own when None.
    pub mount_namespace: Option<PathBuf>,
    child: Option<Child>,
}

impl Daemon {
    /// Starts berthd on a fresh root and waits until it reports SERVING.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, &[]).await
    }

    /// Lets the test fill the state root before the daemon loads it.
    pub async fn start_with(prepare: impl FnOnce(&Path), extra_args: &[&str]) -> Self {
        Self::start_in(None, prepare, extra_args).await
    }

    /// As `start_with`, with berthd in the mount namespace `mount_namespace`
    /// (`/proc/PID/ns/mnt`), as the containerd tests need: there it sees the rootfs mounts
    /// containerd's shim makes.
    pub async fn start_in(
        mount_namespace: Option<PathBuf>,
        prepare: impl FnOnce(&Path),
        extra_args: &[&str],
    ) -> Self {
        berth_cli_built();
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        prepare(&root);
        let cgroup_parent = format!(
            "berth-test-{}",
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches('.')
        );
        let mut daemon = Self {
            socket: dir.path().join("run").join("berth.sock"),
            log: dir.path().join("berthd.log"),
            root,
            dir,
            cgroup_parent,
            mount_namespace,
            child: None,
        };
        daemon.spawn(extra_args);
        daemon.wait_serving().await;
        daemon
    }

    pub fn spawn(&mut self, extra_args: &[&str]) {
        self.spawn_with_env(extra_args, &[]);
    }

    pub fn spawn_with_env(&mut self, extra_args: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(BERTHD);
        if let Some(namespace) = &self.mount_namespace {
            enter_mount_namespace(&mut command, namespace);
        }
        let child = command
            .arg("--root")
            .arg(&self.root)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .args(["--log-level", "info,berth=debug"])
            .args(extra_args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Polls the health service (the daemon's own readiness signal) until SERVING.
    pub async fn wait_serving(&mut self) {
        // Generous: under software emulation (tests/vm) on a busy host a start can take
        // seconds, and a daemon that never serves fails just the same.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(ServingStatus::Serving) = self.health("").await {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "berthd exited with {status} before serving:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "berthd not serving after 60s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("unix:{}", self.socket.display()))
            .unwrap()
            .connect()
            .await
            .expect("connect to berthd")
    }

    pub async fn client(&self) -> ContainerServiceClient<Channel> {
        ContainerServiceClient::new(self.channel().await)
    }

    /// A client, or UNAVAILABLE when the daemon cannot be reached (crash tests).
    pub async fn try_client(&self) -> Result<ContainerServiceClient<Channel>, tonic::Status> {
        let channel = Endpoint::from_shared(format!("unix:{}", self.socket.display()))
            .unwrap()
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(ContainerServiceClient::new(channel))
    }

    pub async fn create(
        &self,
        id: &str,
        bundle: &Bundle,
        stdout: Option<&str>,
    ) -> Result<berth::proto::Container, tonic::Status> {
        let response = self
            .try_client()
            .await?
            .create_container(berth::proto::CreateContainerRequest {
                id: id.into(),
                bundle: bundle.path().to_str().unwrap().into(),
                stdout_path: stdout.unwrap_or_default().into(),
                stderr_path: stdout.unwrap_or_default().into(),
                ..Default::default()
            })
            .await?;
        Ok(response.into_inner().container.unwrap())
    }

    pub async fn start_container(
        &self,
        id: &str,
    ) -> Result<berth::proto::Container, tonic::Status> {
        let response = self
            .try_client()
            .await?
            .start_container(berth::proto::StartContainerRequest { id: id.into() })
            .await?;
        Ok(response.into_inner().container.unwrap())
    }

    /// Creates and starts; returns the init's pid.
    pub async fn run(&self, id: &str, bundle: &Bundle, stdout: Option<&str>) -> i32 {
        let created = self
            .create(id, bundle, stdout)
            .await
            .unwrap_or_else(|e| panic!("create {id}: {e:?}\n{}", self.logs()));
        self.start_container(id)
            .await
            .unwrap_or_else(|e| panic!("start {id}: {e:?}"));
        created.pid as i32
    }

    pub async fn get(&self, id: &str) -> Result<berth::proto::Container, tonic::Status> {
        let response = self
            .try_client()
            .await?
            .get_container(berth::proto::GetContainerRequest { id: id.into() })
            .await?;
        Ok(response.into_inner().container.unwrap())
    }

    pub async fn list(&self) -> Vec<berth::proto::Container> {
        self.client()
            .await
            .list_containers(berth::proto::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers
    }

    pub async fn delete(
        &self,
        id: &str,
        force: bool,
    ) -> Result<berth::proto::DeleteContainerResponse, tonic::Status> {
        let response = self
            .try_client()
            .await?
            .delete_container(berth::proto::DeleteContainerRequest {
                id: id.into(),
                force,
            })
            .await?;
        Ok(response.into_inner())
    }

    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), tonic::Status> {
        self.try_client()
            .await?
            .kill_container(berth::proto::KillContainerRequest {
                id: id.into(),
                signal,
                all,
            })
            .await?;
        Ok(())
    }

    /// The container's cgroup directory in every hierarchy, under this daemon's parent.
    pub fn container_cgroups(&self, id: &str) -> Vec<PathBuf> {
        cgroup_dirs(&format!("{}/{id}", self.cgroup_parent))
    }

    pub async fn health(&self, service: &str) -> Result<ServingStatus, tonic::Status> {
        let channel = Endpoint::from_shared(format!("unix:{}", self.socket.display()))
            .unwrap()
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?;
        Ok(response.into_inner().status())
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        berth_cli_built();
        Command::new(berth_cli())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    }

    /// SIGTERM, then waits for the exit and returns its status. The wait runs off this
    /// thread so the test's own client connections keep answering the daemon's shutdown.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap()
    }

    /// SIGKILL, as a crash would.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let listed = self.cli(&["list", "--json"]);
            let containers: serde_json::Value =
                serde_json::from_slice(&listed.stdout).unwrap_or_default();
            for container in containers.as_array().into_iter().flatten() {
                if let Some(id) = container["id"].as_str() {
                    self.cli(&["delete", "--force", id]);
                }
            }
        }
        self.crash();
        for dir in cgroup_dirs(&self.cgroup_parent) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Makes `command` run in the mount namespace `namespace` (`/proc/PID/ns/mnt`).
pub fn enter_mount_namespace(command: &mut Command, namespace: &Path) {
    use std::os::{fd::AsRawFd, unix::process::CommandExt};
    let namespace = std::fs::File::open(namespace)
        .unwrap_or_else(|e| panic!("open {}: {e}", namespace.display()));
    // SAFETY: setns is async-signal-safe; the child is single-threaded between fork and
    // exec, as entering a mount namespace requires. The file stays open in the closure.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `relative` in every cgroup hierarchy of the host (v1 controllers and cgroup2).
pub fn cgroup_dirs(relative: &str) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut dirs: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().position(|f| *f == "-")?;
            matches!(fields[separator + 1], "cgroup" | "cgroup2")
                .then(|| Path::new(fields[4]).join(relative))
        })
        .collect();
    dirs.dedup();
    dirs
}

/// A bundle as `runc spec` writes it, with only what the acceptance rules allow changed:
/// process.args, process.terminal (false), root.path (an absolute busybox rootfs).
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: serde_json::Value,
}

impl Bundle {
    /// Puts the container in a user namespace of its own whose root is `host_root` on the
    /// host (65536 ids), and makes the mount points its root could not make in a rootfs
    /// owned by the host's root.
    pub fn in_user_namespace(&mut self, host_root: u32) {
        for dir in ["proc", "dev", "sys"] {
            std::fs::create_dir_all(self.path().join("rootfs").join(dir)).unwrap();
        }
        self.edit(|c| {
            let map = serde_json::json!([{"containerID": 0, "hostID": host_root, "size": 65536}]);
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"type": "user"}));
            c["linux"]["uidMappings"] = map.clone();
            c["linux"]["gidMappings"] = map;
        });
    }

    pub fn busybox(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static is installed");
        for applet in [
            "sh", "sleep", "cat", "echo", "hostname", "touch", "id", "true", "ls", "mkdir", "kill",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let spec = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .expect("runc is installed");
        assert!(spec.status.success(), "runc spec: {}", stderr(&spec));
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
        config["root"]["path"] = rootfs.to_str().unwrap().into();
        let bundle = Self { dir, config };
        bundle.write();
        bundle
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Changes config.json in place.
    pub fn edit(&mut self, change: impl FnOnce(&mut serde_json::Value)) -> &mut Self {
        change(&mut self.config);
        self.write();
        self
    }

    /// Drops one namespace (for example "pid", so the container shares the host's).
    pub fn without_namespace(&mut self, kind: &str) -> &mut Self {
        self.edit(|c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != kind);
        })
    }
}

/// Leaves nothing: no state directory, no cgroup.
pub fn assert_nothing_left(daemon: &Daemon, id: &str) {
    assert!(
        !daemon.root.join(id).exists(),
        "state directory of {id} left behind"
    );
    for dir in daemon.container_cgroups(id) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

/// A file in a fresh temp dir, for a container's stdout or stderr.
pub fn output_file(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_owned()
}

/// Polls the daemon's own view until `id` has `status`; panics after 10 s.
pub async fn wait_status(
    client: &mut ContainerServiceClient<Channel>,
    id: &str,
    status: berth::proto::ContainerStatus,
) -> berth::proto::Container {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let container = client
            .get_container(berth::proto::GetContainerRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
            .container
            .unwrap();
        if container.status() == status {
            return container;
        }
        assert!(
            Instant::now() < deadline,
            "{id} is {:?}, not {status:?}, after 10s",
            container.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until berthd has recorded how `id`'s init ended (the status turns STOPPED the
/// moment the init dies; the reaper records the exit status an instant later).
pub async fn wait_exit_status(
    client: &mut ContainerServiceClient<Channel>,
    id: &str,
) -> berth::proto::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let container = wait_status(client, id, berth::proto::ContainerStatus::Stopped).await;
        if let Some(exit) = container.exit_status {
            return exit;
        }
        assert!(Instant::now() < deadline, "{id}: no exit status after 10s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the file at `path` contains `text` (a container's output); returns it all.
pub async fn wait_output(path: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        if content.contains(text) {
            return content;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got {text:?}: {content:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// True while a process with this pid exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match berth::runtime::process::ProcStat::read(pid) {
        Ok(Some(stat)) => !matches!(stat.state, 'Z' | 'X'),
        _ => false,
    }
}

/// Waits until none of `pids` is alive; panics after 10 s.
pub async fn wait_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&pid| process_alive(pid)) {
        assert!(
            Instant::now() < deadline,
            "processes {pids:?} still alive after 10s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes a minimal valid state file for `id` under `root`.
pub fn write_state(root: &Path, id: &str, extra: &str) {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let sep = if extra.is_empty() { "" } else { "," };
    std::fs::write(
        dir.join("state.json"),
        format!(
            r#"{{"schemaVersion":1,"id":"{id}","bundle":"/bundles/{id}","created":"2026-01-02T03:04:05Z"{sep}{extra}}}"#
        ),
    )
    .unwrap();
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The cgroup mounts of this process's namespace: (mount point, "cgroup" or "cgroup2").
fn cgroup_mounts() -> Vec<(PathBuf, String)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().position(|f| *f == "-")?;
            let kind = fields[separator + 1];
            matches!(kind, "cgroup" | "cgroup2").then(|| (PathBuf::from(fields[4]), kind.into()))
        })
        .collect()
}

/// A pure cgroup v2 host (as tests/v2-view.sh makes one): every cgroup mount is cgroup2.
pub fn unified_host() -> bool {
    let mounts = cgroup_mounts();
    !mounts.is_empty() && mounts.iter().all(|(_, kind)| kind == "cgroup2")
}

/// On a pure cgroup v2 host, whether its root cgroup lacks controller `name` (it is not in
/// `cgroup.controllers`). Always false elsewhere: v1 and hybrid hosts keep their own checks.
pub fn v2_controller_missing(name: &str) -> bool {
    if !unified_host() {
        return false;
    }
    let root = &cgroup_mounts()[0].0;
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
        .unwrap_or_else(|e| panic!("read {}/cgroup.controllers: {e}", root.display()));
    !controllers.split_whitespace().any(|c| c == name)
}

/// True, after printing why, when this pure cgroup v2 host lacks one of `controllers`: the
/// caller returns at once. Only for tests that cannot run without the controller.
pub fn skip_unless_controllers(controllers: &[&str]) -> bool {
    match controllers.iter().find(|c| v2_controller_missing(c)) {
        Some(missing) => {
            eprintln!(
                "skipped: needs the {missing} controller, which this cgroup v2 host does not offer"
            );
            true
        }
        None => false,
    }
}

/// Whether a cgroup v2 directory's `cgroup.events` says `frozen 1`: every process in it and
/// below it is frozen (`cgroup.freeze` only says what was asked).
pub fn v2_frozen(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .unwrap_or_else(|e| panic!("read {}/cgroup.events: {e}", dir.display()))
        .lines()
        .any(|line| line.trim() == "frozen 1")
}

/// A FUSE file system the test serves itself, which reads every lookup in it and answers none
/// until [`StalledLookups::release`]. A task whose request the server has read waits for the
/// answer uninterruptibly once a fatal signal is pending (fuse's `request_wait_answer`): it
/// stays alive with its SIGKILL pending, as a task in a frozen v1 cgroup does. cgroup v2's
/// freezer lets fatal signals through ("processes in the frozen cgroup can be killed by a
/// fatal signal", cgroup-v2.rst), so this is how tests hold a SIGKILLed process there.
pub struct StalledLookups {
    mount_point: PathBuf,
    device: std::sync::Arc<std::fs::File>,
    state: std::sync::Arc<std::sync::Mutex<HeldLookups>>,
}

#[derive(Default)]
struct HeldLookups {
    /// (request id, pid of the task that waits for it)
    held: Vec<(u64, u32)>,
    released: bool,
}

impl StalledLookups {
    /// Mounts it on the directory `at` (which must exist) and serves it from a thread.
    pub fn mount(at: &Path) -> Self {
        use std::os::fd::AsRawFd;
        let device = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .expect("open /dev/fuse");
        let options = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            device.as_raw_fd()
        );
        nix::mount::mount(
            Some("berth-test-stall"),
            at,
            Some("fuse"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount fuse on {}: {e}", at.display()));
        let stall = Self {
            mount_point: at.to_owned(),
            device: std::sync::Arc::new(device),
            state: Default::default(),
        };
        let (device, state) = (stall.device.clone(), stall.state.clone());
        std::thread::spawn(move || serve_stalled_lookups(&device, &state));
        stall
    }

    /// Waits until the task `pid` (as this process sees it) waits for a lookup here; panics
    /// after 10 s.
    pub async fn wait_held(&self, pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .state
            .lock()
            .unwrap()
            .held
            .iter()
            .any(|&(_, held)| held as i32 == pid)
        {
            assert!(
                Instant::now() < deadline,
                "process {pid} never looked a name up in {}",
                self.mount_point.display()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Answers every held lookup (EIO) and every later one at once (ENOENT): the tasks go
    /// on, and die if a SIGKILL is pending. Idempotent.
    pub fn release(&self) {
        let mut state = self.state.lock().unwrap();
        state.released = true;
        for (unique, _) in state.held.drain(..) {
            fuse_reply(&self.device, unique, -libc::EIO, &[]);
        }
    }
}

impl Drop for StalledLookups {
    fn drop(&mut self) {
        self.release();
        let _ = nix::mount::umount2(&self.mount_point, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn fuse_reply(device: &std::fs::File, unique: u64, error: i32, body: &[u8]) {
    use std::io::Write;
    let mut reply = Vec::with_capacity(16 + body.len());
    reply.extend(((16 + body.len()) as u32).to_ne_bytes());
    reply.extend(error.to_ne_bytes());
    reply.extend(unique.to_ne_bytes());
    reply.extend(body);
    // A request whose task went away meanwhile is gone (ENOENT): nothing to answer.
    let _ = (&*device).write(&reply);
}

/// The server: INIT and the root's GETATTR are answered, LOOKUPs held, FORGETs and
/// INTERRUPTs (which need no answer) ignored, anything else refused with ENOSYS. Ends with
/// the connection (ENODEV once the file system is gone).
fn serve_stalled_lookups(device: &std::fs::File, state: &std::sync::Mutex<HeldLookups>) {
    use std::io::Read;
    const LOOKUP: u32 = 1;
    const FORGET: u32 = 2;
    const GETATTR: u32 = 3;
    const INIT: u32 = 26;
    const INTERRUPT: u32 = 36;
    const BATCH_FORGET: u32 = 42;
    let mut request = vec![0u8; 1 << 20];
    loop {
        let length = match (&*device).read(&mut request) {
            Ok(length) => length,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINTR)) => continue,
            Err(_) => return,
        };
        if length < 40 {
            continue;
        }
        // struct fuse_in_header: len, opcode, unique, nodeid, uid, gid, pid, ...
        let opcode = u32::from_ne_bytes(request[4..8].try_into().unwrap());
        let unique = u64::from_ne_bytes(request[8..16].try_into().unwrap());
        let pid = u32::from_ne_bytes(request[32..36].try_into().unwrap());
        match opcode {
            INIT => {
                // struct fuse_init_out: protocol 7.31, max_write 4096, no features.
                let mut init = [0u8; 64];
                init[0..4].copy_from_slice(&7u32.to_ne_bytes());
                init[4..8].copy_from_slice(&31u32.to_ne_bytes());
                init[20..24].copy_from_slice(&4096u32.to_ne_bytes());
                fuse_reply(device, unique, 0, &init);
            }
            GETATTR => {
                // struct fuse_attr_out for the root: a directory, inode 1, mode 0755.
                let mut attr = [0u8; 104];
                attr[16..24].copy_from_slice(&1u64.to_ne_bytes());
                attr[76..80].copy_from_slice(&0o40755u32.to_ne_bytes());
                attr[80..84].copy_from_slice(&2u32.to_ne_bytes());
                fuse_reply(device, unique, 0, &attr);
            }
            LOOKUP => {
                let mut state = state.lock().unwrap();
                if state.released {
                    fuse_reply(device, unique, -libc::ENOENT, &[]);
                } else {
                    state.held.push((unique, pid));
                }
            }
            FORGET | BATCH_FORGET | INTERRUPT => {}
            _ => fuse_reply(device, unique, -libc::ENOSYS, &[]),
        }
    }
}

/// The fds open in `pid`, read from the host.
pub fn open_fds(pid: i32) -> std::collections::BTreeSet<u32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// Detaches a mount the test made on the host, and whatever is stacked on it, when dropped.
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        // Stops with EINVAL once the path is no longer a mount point.
        while nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    }
}

/// Makes the bundle's rootfs a shared mount point, as on a systemd host whose `/` is shared;
/// undone when the guard drops.
pub fn share_rootfs(bundle: &Bundle) -> Unmount {
    use nix::mount::{mount, MsFlags};
    let rootfs = bundle.path().join("rootfs");
    mount(
        Some(&rootfs),
        &rootfs,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let guard = Unmount(rootfs.clone());
    mount(
        None::<&str>,
        &rootfs,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    guard
}
