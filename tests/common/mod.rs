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

/// Builds `BERTH` if it is missing or out of date, once per test binary, and panics with
/// what to do when that fails. `cargo test` at the workspace root has already built it
/// (this is then a no-op build of a fraction of a second), but a narrower run such as
/// `cargo test --test foundation` builds this package's binaries only. The build goes to
/// the target directory and profile berthd came from, with the workspace's default members
/// (so with the same features as `cargo test`). `Daemon::start` and `Daemon::cli` call it;
/// a test that runs `BERTH` without a daemon calls it first.
pub fn berth_cli_built() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let profile_dir = Path::new(BERTHD).parent().expect("berthd has a directory");
        let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(&cargo);
        build
            .args(["build", "--quiet", "--bin", "berth", "--profile", profile])
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
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_")
                || name.starts_with("CARGO_MANIFEST_")
                || matches!(
                    &*name,
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                )
            {
                build.env_remove(&*name);
            }
        }
        let built = build.status();
        match built {
            Ok(status) if status.success() && Path::new(BERTH).exists() => {}
            outcome => panic!(
                "cannot build the CLI {BERTH} with `{} build --bin berth` ({outcome:?}); \
                 run `cargo test` (or `cargo build --bin berth`) at the workspace root",
                cargo.to_string_lossy()
            ),
        }
    });
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
    child: Option<Child>,
}

impl Daemon {
    /// Starts berthd on a fresh root and waits until it reports SERVING.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, &[]).await
    }

    /// Lets the test fill the state root before the daemon loads it.
    pub async fn start_with(prepare: impl FnOnce(&Path), extra_args: &[&str]) -> Self {
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
        let child = Command::new(BERTHD)
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
        let deadline = Instant::now() + Duration::from_secs(20);
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
                "berthd not serving after 20s:\n{}",
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
            .list_containers(berth::proto::ListContainersRequest {})
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
        Command::new(BERTH)
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
