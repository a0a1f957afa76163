//! A container as the daemon knows it: its state file and the status derived from the
//! kernel on every call (delete.md section 3), never trusted from disk.
mod create;
mod delete;
mod exec;
mod kill;
mod pause;
mod processes;
mod start;
mod update;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

pub use crate::status::Status;
pub use create::{CreateRequest, Others};
pub use delete::DeleteOutcome;
pub use exec::{ExecRequest, ExecSnapshot, ExecState, Started, MAX_RECORDS};

use crate::{
    blocking,
    cgroups::{self, CgroupManager},
    error::Result,
    freezers::CaughtUp,
    helper::InitBinary,
    hooks,
    id::ContainerId,
    process::{self, ExitStatus, Liveness, Pidfd, Reaper},
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

impl Container {
    /// Runs the hooks of one kind whose failure is only a warning (poststart, poststop),
    /// in order, each given the container's state with `status`; returns the failures.
    /// The state is made only when there are hooks: most containers have none.
    async fn run_warning_hooks(
        &self,
        runtime: &Runtime,
        kind: &'static str,
        status: &str,
        of_kind: impl FnOnce(&oci_spec::runtime::Hooks) -> &Option<Vec<oci_spec::runtime::Hook>>,
    ) -> Vec<String> {
        let hooks = self
            .state()
            .and_then(|s| s.hooks.as_ref())
            .and_then(|h| of_kind(h).clone())
            .unwrap_or_default();
        if hooks.is_empty() {
            return Vec::new();
        }
        let state = self.oci_state(status);
        let mut warnings = Vec::new();
        for (index, hook) in hooks.iter().enumerate() {
            if let Err(warning) = runtime.run_hook(kind, index, hook, &state).await {
                tracing::warn!(id = %self.id, %warning, kind, "hook failed");
                warnings.push(warning.to_string());
            }
        }
        warnings
    }
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
// Valid is what nearly every container holds: boxing it would cost each one an allocation
// and an indirection to save the bytes of the rare Corrupt.
#[allow(clippy::large_enum_variant)]
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
    /// Why no pidfd could be opened for a recorded init at load (not ESRCH: EMFILE,
    /// EINVAL, ...). Its liveness is then read from its pid and start time on every call,
    /// UNKNOWN when /proc does not tell, and it is never signalled by pid: kill and delete
    /// go through the cgroup.
    init_without_pidfd: Option<String>,
    /// The init's exit status to come from the reaper, when berthd is its parent.
    exit_status: Option<tokio::sync::oneshot::Receiver<ExitStatus>>,
    /// The exit was reported (or there is none to report).
    exit_observed: bool,
    /// An exit a failed delete observed: whoever reports events publishes it next.
    unpublished_exit: Option<Option<ExitRecord>>,
    /// A pidfd for each running exec process, by exec id.
    exec_pidfds: BTreeMap<String, Arc<Pidfd>>,
    cgroups: Arc<dyn CgroupManager>,
}

/// An exit the reaper collected, as recorded.
fn exit_record(status: ExitStatus) -> ExitRecord {
    ExitRecord {
        code: status.code,
        signal: status.signal,
        exited_at: SystemTime::now(),
    }
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
    pub labels: BTreeMap<String, String>,
}

impl Container {
    /// A container loaded from its state directory; the init is looked up by pid and start
    /// time and held by a pidfd from then on (delete.md D6). An init recorded in another
    /// boot is dead, whatever holds its pid now. When the pidfd cannot be opened (for any
    /// reason but the process being gone), the start time alone decides, call after call.
    pub fn load(
        id: ContainerId,
        dir: StateDir,
        record: Record,
        cgroups: Arc<dyn CgroupManager>,
    ) -> Self {
        let mut init_without_pidfd = None;
        let init = match &record {
            // Reaped by a berthd, which recorded how it ended: dead, whatever has its pid now.
            Record::Valid(ContainerState { exit: Some(_), .. }) => None,
            Record::Valid(ContainerState {
                init: Some(init),
                boot_id: Some(recorded),
                ..
            }) if process::boot_id().is_some_and(|current| current != recorded) => {
                tracing::info!(id = %id, pid = init.pid, boot_id = %recorded, "the init was recorded in an earlier boot: it is dead");
                None
            }
            Record::Valid(ContainerState {
                init: Some(init), ..
            }) => match Pidfd::open(init) {
                Ok(pidfd) => pidfd.map(Arc::new),
                Err(e) => {
                    let why = format!("cannot open a pidfd for it: {e}");
                    let liveness = init.liveness_by_start_time();
                    tracing::warn!(id = %id, pid = init.pid, error = %e, ?liveness, "cannot open a pidfd for the init; falling back to its start time");
                    if liveness != Liveness::Dead {
                        init_without_pidfd = Some(why);
                    }
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
            init_without_pidfd,
            exit_status: None,
            exit_observed,
            unpublished_exit: None,
            exec_pidfds: BTreeMap::new(),
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
        let away = !self.exit_observed && self.init.is_none() && self.init_without_pidfd.is_none();
        self.exit_observed |= away;
        away
    }

    /// `Some` once, when the init is found to have exited: with its status if berthd reaped
    /// it (recorded in state.json too), `None` inside if its parent was another berthd.
    pub async fn observe_exit(&mut self) -> Option<Option<ExitRecord>> {
        if self.exit_observed || self.init_liveness() != Liveness::Dead {
            return None;
        }
        if self.init.is_none() {
            self.init_without_pidfd.as_ref()?;
            // Judged by its start time: berthd was not its parent when it died (it was
            // loaded without a pidfd), so there is no status to wait for.
            self.exit_observed = true;
            return Some(None);
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
        let record = status.map(exit_record);
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

    /// The labels given at create; none when state.json is unreadable.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.state().map_or(&NONE, |state| &state.labels)
    }

    /// The state of a container whose record is valid; callers check `Record` first.
    pub fn state(&self) -> Option<&ContainerState> {
        match &self.record {
            Record::Valid(state) => Some(state),
            Record::Corrupt { .. } => None,
        }
    }

    /// Through the pidfd when berthd holds one; else, for an init no pidfd could be opened
    /// for, by its pid and start time (delete.md D6).
    fn init_liveness(&self) -> Liveness {
        if let Some(pidfd) = &self.init {
            return if pidfd.has_exited() {
                Liveness::Dead
            } else {
                Liveness::Alive
            };
        }
        let recorded = self.state().and_then(|state| state.init);
        match (&self.init_without_pidfd, recorded) {
            (Some(why), Some(init)) => match init.liveness_by_start_time() {
                Liveness::Unknown(reason) => Liveness::Unknown(format!(
                    "cannot tell whether its init (pid {}) lives: {why}; {reason}",
                    init.pid
                )),
                liveness => liveness,
            },
            _ => Liveness::Dead,
        }
    }

    /// There is a recorded init, but no pidfd for it: it may be signalled through its
    /// cgroup only.
    fn init_by_start_time_only(&self) -> bool {
        self.init.is_none() && self.init_without_pidfd.is_some()
    }

    /// Read from the kernel each time, never from disk (the freezer as `freezers` remembers
    /// it, when given). Each fact is read only when the ones before it leave the status
    /// open.
    fn facts(&self, freezers: Option<&CaughtUp>) -> Facts {
        let Record::Valid(state) = &self.record else {
            return Facts::default();
        };
        let frozen = match freezers {
            Some(freezers) => freezers.is_frozen(self.cgroups.as_ref(), &state.cgroup_dirs),
            None => self.cgroups.is_frozen(&state.cgroup_dirs),
        };
        let (init_alive, init_unknown) = match frozen {
            true => (false, None),
            false => match self.init_liveness() {
                Liveness::Alive => (true, None),
                Liveness::Dead => (false, None),
                Liveness::Unknown(reason) => (false, Some(reason)),
            },
        };
        Facts {
            state_readable: true,
            frozen,
            init_alive,
            init_unknown,
            exec_fifo: init_alive && self.dir.has_exec_fifo(),
        }
    }

    pub fn status(&self) -> Status {
        Status::derive(&self.facts(None))
    }

    /// The status and, when it is UNKNOWN because the init cannot be checked, why.
    fn status_and_reason_with(&self, freezers: Option<&CaughtUp>) -> (Status, Option<String>) {
        let facts = self.facts(freezers);
        let status = Status::derive(&facts);
        (
            status,
            facts.init_unknown.filter(|_| status == Status::Unknown),
        )
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
        if self.dir.in_memory() {
            // A write to memory never waits for a disk, and handing it to the blocking
            // pool (waking an idle thread, and its CPU) took longer than the write.
            self.dir.save(&next)?;
        } else {
            let (dir, saved) = (self.dir.clone(), next.clone());
            blocking::run(move || dir.save(&saved)).await?;
        }
        self.record = Record::Valid(next);
        Ok(())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_with(None)
    }

    /// As ListContainers sees it: the freezer as `freezers` remembers it.
    pub fn listed(&self, freezers: &CaughtUp) -> Snapshot {
        self.snapshot_with(Some(freezers))
    }

    fn snapshot_with(&self, freezers: Option<&CaughtUp>) -> Snapshot {
        let (status, reason) = self.status_and_reason_with(freezers);
        match &self.record {
            Record::Valid(state) => Snapshot {
                id: self.id.as_str().to_owned(),
                status,
                pid: state.init.map(|init| init.pid),
                bundle: state.bundle.clone(),
                annotations: state.annotations.clone(),
                created: Some(state.created),
                exit: state.exit.clone(),
                status_reason: reason.unwrap_or_default(),
                labels: state.labels.clone(),
            },
            Record::Corrupt { path, reason } => Snapshot {
                id: self.id.as_str().to_owned(),
                status,
                pid: None,
                bundle: PathBuf::new(),
                annotations: BTreeMap::new(),
                created: None,
                exit: None,
                status_reason: format!("cannot read {}: {reason}", path.display()),
                labels: BTreeMap::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cgroups::fake::Fake, process::InitProcess, process::ProcStat, state::SCHEMA_VERSION,
    };

    /// A container whose recorded init is this test process, with `boot_id` recorded.
    fn loaded(boot_id: Option<&str>) -> (tempfile::TempDir, Container) {
        let root = tempfile::tempdir().unwrap();
        let id = ContainerId::parse("c1").unwrap();
        let dir = StateRoot::open(root.path()).unwrap().dir(&id);
        let pid = std::process::id() as i32;
        let start_time = ProcStat::read(pid).unwrap().unwrap().start_time;
        let state = ContainerState {
            schema_version: SCHEMA_VERSION,
            id: "c1".into(),
            bundle: "/b".into(),
            created: SystemTime::UNIX_EPOCH,
            annotations: Default::default(),
            init: Some(InitProcess { pid, start_time }),
            boot_id: boot_id.map(str::to_owned),
            exit: None,
            shares_pid_namespace: false,
            cgroup_dirs: vec![],
            created_cgroup_dirs: vec![],
            rdt: None,
            hooks: None,
            frozen_to_kill: false,
            execs: Default::default(),
            labels: Default::default(),
            resources: None,
        };
        let fake: Arc<dyn CgroupManager> = Arc::new(Fake::default());
        let container = Container::load(id, dir, Record::Valid(state), fake);
        (root, container)
    }

    #[tokio::test]
    async fn an_init_recorded_in_another_boot_is_dead_whatever_holds_its_pid() {
        let (_root, mut other_boot) = loaded(Some("00000000-0000-0000-0000-000000000000"));
        assert!(other_boot.init.is_none());
        assert_eq!(other_boot.status(), Status::Stopped);
        assert!(other_boot.exited_while_away());

        let (_root, this_boot) = loaded(process::boot_id());
        assert!(this_boot.init.is_some());
        assert_eq!(this_boot.status(), Status::Running);

        // Written by an older berth: pid and start time alone decide, as before.
        let (_root, no_boot_id) = loaded(None);
        assert_eq!(no_boot_id.status(), Status::Running);
    }

    #[tokio::test]
    async fn an_init_without_a_pidfd_is_judged_by_its_start_time() {
        let (_root, mut container) = loaded(None);
        container.init = None;
        container.init_without_pidfd = Some("cannot open a pidfd for it: EMFILE".into());
        assert_eq!(container.status(), Status::Running);
        assert!(!container.exited_while_away());
        assert_eq!(container.observe_exit().await, None);
        // A recorded start time no process has: dead, and the exit is reported once.
        if let Record::Valid(state) = &mut container.record {
            state.init.as_mut().unwrap().start_time += 1;
        }
        assert_eq!(container.status(), Status::Stopped);
        assert_eq!(container.observe_exit().await, Some(None));
        assert_eq!(container.observe_exit().await, None);
    }
}
