//! A container as the daemon knows it: its state file and the status derived from the
//! kernel on every call (delete.md section 3), never trusted from disk.
mod create;
mod delete;
mod kill;
mod pause;
mod processes;
mod start;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

pub use crate::status::Status;
pub use create::{CreateRequest, Others};
pub use delete::DeleteOutcome;

use crate::{
    blocking,
    cgroups::{self, CgroupManager},
    error::Result,
    helper::InitBinary,
    hooks,
    id::ContainerId,
    process::{ExitStatus, Pidfd, Reaper},
    state::{ContainerState, ExitRecord},
    state_dir::{StateDir, StateRoot},
    status::Facts,
};

/// What container operations need from the daemon.
pub struct Runtime {
    pub root: StateRoot,
    /// Relative container cgroup paths live under this, in every hierarchy.
    pub cgroup_parent: PathBuf,
    pub resctrl_root: PathBuf,
    /// delete.md D8: how many rounds of how long a kill waits for the init to go.
    pub kill_wait_rounds: u32,
    pub kill_wait_round: Duration,
    /// How long hooks may run (`--hook-timeout-default`, `--hook-timeout-max`).
    pub hook_timeouts: crate::hooks::HookTimeouts,
    pub reaper: Arc<Reaper>,
    pub init_binary: InitBinary,
    pub cgroups: Arc<dyn CgroupManager>,
}

impl Runtime {
    /// One hook run from berthd, through the reaper, within the hook timeouts.
    pub async fn run_hook(
        &self,
        kind: &'static str,
        index: usize,
        hook: &oci_spec::runtime::Hook,
        state: &str,
    ) -> hooks::Result<()> {
        hooks::run(&self.reaper, &self.hook_timeouts, kind, index, hook, state).await
    }
}

/// What the state directory holds.
#[derive(Debug)]
pub enum Record {
    Valid(ContainerState),
    /// state.json exists but does not parse (delete.md D5).
    Corrupt {
        path: PathBuf,
        reason: String,
    },
}

#[derive(Debug)]
pub struct Container {
    pub id: ContainerId,
    pub dir: StateDir,
    pub record: Record,
    /// Held from the moment the init's identity is known (delete.md D6); `None` once it is
    /// gone or when there never was one.
    pub init: Option<Arc<Pidfd>>,
    /// The init's exit status to come from the reaper, when berthd is its parent.
    exit_status: Option<tokio::sync::oneshot::Receiver<ExitStatus>>,
    /// The exit was reported (or there is none to report).
    exit_observed: bool,
    /// An exit a failed delete observed: whoever reports events publishes it next.
    unpublished_exit: Option<Option<ExitRecord>>,
    cgroups: Arc<dyn CgroupManager>,
}

/// A point-in-time view of a container, for callers and events.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub id: String,
    pub status: Status,
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    pub annotations: BTreeMap<String, String>,
    pub created: Option<SystemTime>,
    pub exit: Option<ExitRecord>,
    pub status_reason: String,
}

impl Container {
    /// A container loaded from its state directory; the init is looked up by pid and start
    /// time and held by a pidfd from then on.
    pub fn load(
        id: ContainerId,
        dir: StateDir,
        record: Record,
        cgroups: Arc<dyn CgroupManager>,
    ) -> Self {
        let init = match &record {
            Record::Valid(ContainerState {
                init: Some(init), ..
            }) => match Pidfd::open(init) {
                Ok(pidfd) => pidfd.map(Arc::new),
                Err(e) => {
                    tracing::warn!(id = %id, pid = init.pid, error = %e, "cannot open a pidfd for the init");
                    None
                }
            },
            _ => None,
        };
        let exit_observed = match &record {
            Record::Valid(state) => state.exit.is_some() || state.init.is_none(),
            Record::Corrupt { .. } => true,
        };
        Self {
            id,
            dir,
            record,
            init,
            exit_status: None,
            exit_observed,
            unpublished_exit: None,
            cgroups,
        }
    }

    /// SIGKILLs everything in the container's trees. The manager may freeze the cgroup to do
    /// it: that is recorded first, so a berthd that dies before the thaw thaws it when it
    /// starts again (the registry's load) instead of leaving the container paused.
    pub(crate) async fn kill_all(&mut self, others: &[PathBuf]) -> Result<()> {
        self.update(|state| state.frozen_to_kill = true).await?;
        let others = others.to_vec();
        self.with_cgroups(move |cgroups, dirs| cgroups.kill_all(dirs, &others))
            .await?;
        self.update(|state| state.frozen_to_kill = false).await
    }

    /// Runs cgroup work on the container's directories, off the runtime threads.
    async fn with_cgroups<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn CgroupManager, &[PathBuf]) -> cgroups::Result<T> + Send + 'static,
    ) -> Result<T> {
        let manager = self.cgroups.clone();
        let dirs = self
            .state()
            .map(|state| state.cgroup_dirs.clone())
            .unwrap_or_default();
        Ok(blocking::run(move || work(manager.as_ref(), &dirs)).await?)
    }

    /// At load: the init died while no berthd watched; reported once, with no status.
    pub fn exited_while_away(&mut self) -> bool {
        let away = !self.exit_observed && self.init.is_none();
        self.exit_observed |= away;
        away
    }

    /// `Some` once, when the init is found to have exited: with its status if berthd reaped
    /// it (recorded in state.json too), `None` inside if its parent was another berthd.
    pub async fn observe_exit(&mut self) -> Option<Option<ExitRecord>> {
        if self.exit_observed || self.init_alive() || self.init.is_none() {
            return None;
        }
        self.exit_observed = true;
        // The reaper collects a zombie as soon as SIGCHLD arrives; the wait is short.
        let status = match self.exit_status.take() {
            Some(receiver) => tokio::time::timeout(Duration::from_secs(5), receiver)
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        let record = status.map(|status| ExitRecord {
            code: status.code,
            signal: status.signal,
            exited_at: SystemTime::now(),
        });
        if let Some(record) = &record {
            if let Err(e) = self.update(|state| state.exit = Some(record.clone())).await {
                tracing::warn!(id = %self.id, error = %e, "cannot record the exit status");
            }
        }
        Some(record)
    }

    /// The exit a failed delete observed, once.
    pub fn take_unpublished_exit(&mut self) -> Option<Option<ExitRecord>> {
        self.unpublished_exit.take()
    }

    /// The state of a container whose record is valid; callers check `Record` first.
    pub fn state(&self) -> Option<&ContainerState> {
        match &self.record {
            Record::Valid(state) => Some(state),
            Record::Corrupt { .. } => None,
        }
    }

    fn init_alive(&self) -> bool {
        self.init.as_ref().is_some_and(|pidfd| !pidfd.has_exited())
    }

    /// Read from the kernel each time, never from disk. Each fact is read only when the
    /// ones before it leave the status open.
    pub fn status(&self) -> Status {
        let Record::Valid(state) = &self.record else {
            return Status::derive(Facts::default());
        };
        let frozen = self.cgroups.is_frozen(&state.cgroup_dirs);
        let init_alive = !frozen && self.init_alive();
        Status::derive(Facts {
            state_readable: true,
            frozen,
            init_alive,
            exec_fifo: init_alive && self.dir.has_exec_fifo(),
        })
    }

    /// The OCI state JSON hooks get on stdin.
    pub fn oci_state(&self, status: &str) -> String {
        let state = self.state();
        let mut json = serde_json::json!({
            "ociVersion": oci_spec::runtime::VERSION,
            "id": self.id.as_str(),
            "status": status,
            "bundle": state.map(|s| s.bundle.clone()).unwrap_or_default(),
            "annotations": state.map(|s| s.annotations.clone()).unwrap_or_default(),
        });
        if status != "stopped" {
            if let Some(init) = state.and_then(|s| s.init) {
                json["pid"] = init.pid.into();
            }
        }
        json.to_string()
    }

    /// Persists a state change, off the runtime threads (it fsyncs); the in-memory record
    /// follows only if the write succeeded.
    pub async fn update(&mut self, change: impl FnOnce(&mut ContainerState)) -> Result<()> {
        let Record::Valid(state) = &self.record else {
            return Ok(());
        };
        let mut next = state.clone();
        change(&mut next);
        let (dir, saved) = (self.dir.clone(), next.clone());
        blocking::run(move || dir.save(&saved)).await?;
        self.record = Record::Valid(next);
        Ok(())
    }

    pub fn snapshot(&self) -> Snapshot {
        let status = self.status();
        match &self.record {
            Record::Valid(state) => Snapshot {
                id: self.id.to_string(),
                status,
                pid: state.init.map(|init| init.pid),
                bundle: state.bundle.clone(),
                annotations: state.annotations.clone(),
                created: Some(state.created),
                exit: state.exit.clone(),
                status_reason: String::new(),
            },
            Record::Corrupt { path, reason } => Snapshot {
                id: self.id.to_string(),
                status,
                pid: None,
                bundle: PathBuf::new(),
                annotations: BTreeMap::new(),
                created: None,
                exit: None,
                status_reason: format!("cannot read {}: {reason}", path.display()),
            },
        }
    }
}
