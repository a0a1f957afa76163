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
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// A berthd process; killed (and its socket dir removed with the temp dir) when dropped.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts berthd on a fresh root and waits until it reports SERVING.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, &[]).await
    }

    /// Lets the test fill the state root before the daemon loads it.
    pub async fn start_with(prepare: impl FnOnce(&Path), extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        prepare(&root);
        let mut daemon = Self {
            socket: dir.path().join("run").join("berth.sock"),
            log: dir.path().join("berthd.log"),
            root,
            dir,
            child: None,
        };
        daemon.spawn(extra_args);
        daemon.wait_serving().await;
        daemon
    }

    pub fn spawn(&mut self, extra_args: &[&str]) {
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
            .args(["--log-level", "info,berth=debug"])
            .args(extra_args)
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
        self.crash();
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
