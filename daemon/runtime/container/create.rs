//! CreateContainer: from an OCI bundle to an init waiting for StartContainer.
//!
//! state.json is written before any kernel resource exists and updated as each is made, so
//! a crash at any point leaves a container that delete can finish.
use std::{
    fs::{self, OpenOptions},
    os::{
        fd::{AsFd, AsRawFd},
        unix::{fs::OpenOptionsExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
};

use crate::{
    blocking, cgroups,
    container::{Container, Record, Runtime},
    error::{Error, IoContext, OnContainer, Result},
    fault,
    helper::{CgroupsMade, IdsMapped, InitConfig, Proceed, Report, Task, INIT_ARG},
    hooks,
    id::ContainerId,
    labels::Labels,
    process::InitProcess,
    process::Pidfd,
    rdt,
    rdt::RdtGroup,
    seccomp,
    spec_support::{self, invalid},
    state::{ContainerState, SCHEMA_VERSION},
    stdio,
};

/// What the other registered containers hold, as a create's claim found it: an undone
/// create leaves it alone. No cgroup of theirs is in it: the claim refuses a plan that
/// equals, contains or lies inside one, and once claimed no other create may overlap the
/// plan, so no kill or removal of its trees can meet theirs.
#[derive(Debug, Default)]
pub struct Others {
    pub rdt_groups: Vec<PathBuf>,
}

/// How long the helper may take between two reports before create gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct CreateRequest {
    pub bundle: PathBuf,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    pub labels: Labels,
    pub stdin: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
}

/// A bundle that passed every check that needs no kernel resource.
struct Bundle {
    dir: PathBuf,
    spec: Spec,
    rootfs: PathBuf,
    seccomp: Option<seccomp::Program>,
    /// Where the terminal goes, checked against the spec's `process.terminal`.
    console_socket: Option<PathBuf>,
}

/// The init's stdin, stdout and stderr.
type Streams = (Stdio, Stdio, Stdio);

fn load_bundle(dir: &Path) -> Result<Bundle> {
    if !dir.is_absolute() {
        return Err(invalid(dir, "the bundle path must be absolute"));
    }
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(invalid(dir, "not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::BundleNotFound {
                path: dir.to_owned(),
                reason: "no such directory".into(),
            })
        }
        Err(e) => return Err(invalid(dir, e.to_string())),
    }
    let config = dir.join("config.json");
    let bytes = read_config(&config).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::BundleNotFound {
            path: dir.to_owned(),
            reason: "config.json not found".into(),
        },
        _ => invalid(&config, e.to_string()),
    })?;
    let mut spec: Spec = serde_json::from_slice(&bytes).map_err(|e| {
        seccomp::explain_parse_failure(&bytes)
            .unwrap_or_else(|| invalid(&config, format!("invalid config.json: {e}")))
    })?;
    spec_support::check_supported(&spec, &config)?;
    let seccomp = compile_seccomp(&spec, dir)?;
    if let Some(hooks) = spec.hooks() {
        hooks::check_timeouts(hooks)?;
    }

    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid(&config, "config.json has no root"))?;
    let rootfs = dir.join(root.path());
    let rootfs = match fs::canonicalize(&rootfs) {
        Ok(path) if path.is_dir() => path,
        Ok(path) => {
            return Err(invalid(
                &config,
                format!("root.path {} is not a directory", path.display()),
            ))
        }
        Err(_) => {
            return Err(Error::BundleNotFound {
                path: dir.to_owned(),
                reason: format!("root.path {} does not exist", rootfs.display()),
            })
        }
    };
    // Relative bind sources are relative to the bundle; the init runs elsewhere.
    if let Some(mounts) = spec.mounts_mut() {
        for mount in mounts.iter_mut() {
            if let Some(source) = mount.source().clone().filter(|s| s.is_relative()) {
                if spec_support::is_bind(mount) {
                    mount.set_source(Some(dir.join(source)));
                }
            }
        }
    }
    Ok(Bundle {
        dir: dir.to_owned(),
        spec,
        rootfs,
        seccomp,
        console_socket: None,
    })
}

/// The profile is compiled here, in berthd, so that anything in it that cannot be honoured
/// fails the create before anything is made; the init only loads the program.
fn compile_seccomp(spec: &Spec, dir: &Path) -> Result<Option<seccomp::Program>> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let compiled = seccomp::compile(profile)?;
    if !compiled.unknown_syscalls.is_empty() {
        tracing::warn!(
            bundle = %dir.display(),
            syscalls = ?compiled.unknown_syscalls,
            "linux.seccomp names syscalls libseccomp does not know; their rules are skipped"
        );
    }
    Ok(Some(compiled.program))
}

/// Larger than any real config.json; past it the file is refused, not read to the end.
const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;

/// Reads config.json if it is a regular file of sane size. Opened without blocking and
/// checked before reading: a FIFO or a device in its place must not hang or flood berthd.
fn read_config(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "config.json is not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_SIZE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("config.json is larger than {MAX_CONFIG_SIZE} bytes"),
        ));
    }
    Ok(bytes)
}

/// The helper then reports the new user namespace and waits for its maps.
fn creates_user_namespace(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    namespaces
        .into_iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none())
}

fn shares_pid_namespace(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    // Joining another PID namespace by path shares it too: killing this init does not
    // take the rest down.
    !namespaces
        .into_iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
}

impl Container {
    /// Creates the container, its init waiting for StartContainer. A create that fails and
    /// cannot undo what it made hands the container back with the error, so the registry
    /// keeps it for a delete to finish.
    ///
    /// `claim` is handed the container's cgroup plan and RDT group before anything is made:
    /// it refuses the plan when it collides with another container's, adds the levels above
    /// it that berth made for other containers (so whichever container empties them last
    /// removes them), makes a group berth's when another container records it as berth's
    /// (so the last of them removes it), and returns what the other containers hold, which
    /// an undo must leave alone.
    pub async fn create(
        runtime: &Runtime,
        id: ContainerId,
        request: CreateRequest,
        claim: impl FnOnce(&mut cgroups::Plan, Option<&mut RdtGroup>) -> Result<Others>,
    ) -> std::result::Result<Self, (Error, Option<Self>)> {
        let no_leftover = |error: Error| (error, None);
        // The bundle is read from disk and its seccomp profile compiled: off the runtime.
        let (bundle, stdio) = blocking::run(move || -> Result<_> {
            let mut bundle = load_bundle(&request.bundle)?;
            let streams = [&request.stdin, &request.stdout, &request.stderr].map(Option::as_deref);
            let terminal = bundle.spec.process().as_ref().and_then(|p| p.terminal());
            stdio::check_console(
                terminal.unwrap_or(false),
                request.console_socket.as_deref(),
                streams,
            )?;
            bundle.console_socket = request.console_socket;
            Ok((
                bundle,
                stdio::open_stdio(streams[0], streams[1], streams[2])?,
            ))
        })
        .await
        .map_err(no_leftover)?;
        Self::create_from(runtime, id, bundle, request.labels, stdio, claim).await
    }

    async fn create_from(
        runtime: &Runtime,
        id: ContainerId,
        bundle: Bundle,
        labels: Labels,
        stdio: Streams,
        claim: impl FnOnce(&mut cgroups::Plan, Option<&mut RdtGroup>) -> Result<Others>,
    ) -> std::result::Result<Self, (Error, Option<Self>)> {
        let no_leftover = |error: Error| (error, None);
        let linux = bundle
            .spec
            .linux()
            .as_ref()
            .expect("checked by load_bundle");
        let cgroup_path = cgroups::relative_path(
            linux.cgroups_path().as_deref(),
            &runtime.cgroup_parent,
            id.as_str(),
        )
        .map_err(|reason| invalid(&bundle.dir, format!("linux.cgroupsPath: {reason}")))
        .map_err(no_leftover)?;
        // Every container berth places by default lives below the parent.
        if runtime.cgroup_parent.starts_with(&cgroup_path) {
            return Err(no_leftover(invalid(
                &bundle.dir,
                format!(
                    "linux.cgroupsPath: {} is, or contains, berth's cgroup parent {}",
                    cgroup_path.display(),
                    runtime.cgroup_parent.display()
                ),
            )));
        }
        let unavailable = |reason: String| {
            no_leftover(Error::Unavailable {
                id: id.to_string(),
                reason,
            })
        };
        let mut rdt = match linux.intel_rdt() {
            Some(rdt) => Some(
                rdt::plan(rdt, &runtime.resctrl_root, id.as_str())
                    .map_err(|e| no_leftover(e.into()))?,
            ),
            None => None,
        };
        let mut plan = runtime.cgroups.plan(&cgroup_path);
        let others = claim(&mut plan, rdt.as_mut()).map_err(no_leftover)?;
        let cgroups::Plan {
            dirs: cgroup_dirs,
            created: created_cgroup_dirs,
        } = plan;
        // Deleting this container will kill whatever is in its cgroup: it must not share it.
        let occupants = runtime.cgroups.processes(&cgroup_dirs, &[]);
        if !occupants.is_empty() {
            return Err(unavailable(format!(
                "cgroup {} already holds processes {occupants:?}",
                cgroup_path.display()
            )));
        }

        // The helper executes, links itself and makes the namespaces while berthd makes the
        // state directory and the cgroups; it forks once they exist (CgroupsMade).
        let dir = runtime.root.dir(&id);
        let (stdin, stdout, stderr) = stdio;
        let mut helper =
            start_helper(runtime, &id, None, stdin, stdout, stderr).map_err(no_leftover)?;
        let task = Task::Create(Box::new(InitConfig {
            spec: bundle.spec.clone(),
            rootfs: bundle.rootfs.clone(),
            exec_fifo: dir.exec_fifo(),
            cgroup_mount: runtime.cgroups.container_mount(&cgroup_dirs),
            hook_timeouts: runtime.hook_timeouts,
            seccomp: bundle.seccomp.clone(),
            console_socket: bundle.console_socket.clone(),
        }));
        let channel = &mut helper.1;
        channel
            .send(&runtime.cgroups.placement(&cgroup_dirs))
            .await
            .map_err(no_leftover)?;
        channel.send(&task).await.map_err(no_leftover)?;
        let state = ContainerState {
            schema_version: SCHEMA_VERSION,
            id: id.to_string(),
            bundle: bundle.dir.clone(),
            created: SystemTime::now(),
            annotations: bundle
                .spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            init: None,
            boot_id: crate::process::boot_id().map(str::to_owned),
            exit: None,
            shares_pid_namespace: shares_pid_namespace(&bundle.spec),
            cgroup_dirs,
            created_cgroup_dirs,
            rdt,
            hooks: bundle.spec.hooks().clone(),
            frozen_to_kill: false,
            execs: Default::default(),
            labels: labels.into_map(),
            resources: linux.resources().clone().map(Box::new),
        };
        let (made, saved) = (dir.clone(), state.clone());
        blocking::run(move || {
            made.create()?;
            made.save(&saved).inspect_err(|_| {
                let _ = fs::remove_dir_all(made.path());
            })
        })
        .await
        .map_err(no_leftover)?;
        fault::point("after-state-written");
        let mut container = Container::load(id, dir, Record::Valid(state), runtime.cgroups.clone());
        match container.build(runtime, &bundle, helper).await {
            Ok(()) => Ok(container),
            Err(error) => {
                tracing::warn!(id = %container.id, error = %error, "create failed; removing what it made");
                match container.abandon(runtime, &others).await {
                    Ok(()) => Err((error, None)),
                    Err(cleanup) => {
                        tracing::error!(id = %container.id, error = %cleanup, "cannot clean up a failed create; keeping it for delete");
                        Err((error, Some(container)))
                    }
                }
            }
        }
    }

    async fn build(
        &mut self,
        runtime: &Runtime,
        bundle: &Bundle,
        (helper_pid, mut channel): (i32, HelperChannel),
    ) -> Result<()> {
        let state = self
            .state()
            .expect("a new container's record is valid")
            .clone();
        let linux = bundle
            .spec
            .linux()
            .as_ref()
            .expect("checked by load_bundle");
        let (dir, owner) = (self.dir.clone(), crate::userns::host_root(&bundle.spec));
        let seccomp = bundle.seccomp.clone();
        let manager = runtime.cgroups.clone();
        let (resources, intel_rdt) = (linux.resources().clone(), linux.intel_rdt().clone());
        let (plan, rdt_group) = (
            cgroups::Plan {
                dirs: state.cgroup_dirs.clone(),
                created: state.created_cgroup_dirs.clone(),
            },
            state.rdt.clone(),
        );
        blocking::run(move || -> Result<()> {
            dir.make_exec_fifo(owner)?;
            if let Some(program) = seccomp {
                dir.save_seccomp(&program)?;
            }
            manager.create(&plan)?;
            fault::point("after-cgroup-created");
            manager.apply(&plan.dirs, resources.as_ref())?;
            if let (Some(group), Some(rdt)) = (rdt_group, intel_rdt) {
                rdt::create(&group, &rdt)?;
            }
            Ok(())
        })
        .await?;

        self.assign_rdt(helper_pid).await?;
        if creates_user_namespace(&bundle.spec) {
            match channel.receive("the user namespace").await? {
                Report::UserNamespace => {}
                _ => return Err(channel.unexpected("the user namespace")),
            }
            crate::userns::write_maps(helper_pid, &bundle.spec).map_err(|(field, error)| {
                Error::InvalidConfig {
                    field: field.into(),
                    reason: format!("the kernel refused the mappings: {error}"),
                }
            })?;
            channel.send(&IdsMapped).await?;
        }
        channel.send(&CgroupsMade).await?;
        let Report::InitPid { pid, start_time } = channel.receive("the init's pid").await? else {
            return Err(channel.unexpected("the init's pid"));
        };
        let init = InitProcess { pid, start_time };
        self.update(|state| state.init = Some(init)).await?;
        let hooks = state.hooks.clone().unwrap_or_default();
        let runtime_hooks = [hooks.create_runtime(), hooks.prestart()];
        let mut proceed = Some(Proceed {
            creating_state: self.oci_state("creating"),
            created_state: self.oci_state("created"),
        });
        // Without hooks to run between its mounts and its pivot, the init need not wait
        // for berthd to see it mounted.
        if runtime_hooks.into_iter().flatten().all(Vec::is_empty) {
            channel.send(&proceed.take().expect("made above")).await?;
        }
        fault::point("after-init-spawned");
        self.exit_status = Some(runtime.reaper.watch(&init));
        self.exit_observed = false;
        self.init = Pidfd::open(&init)
            .context(|| format!("pidfd of pid {pid}"))?
            .map(std::sync::Arc::new);

        match channel.receive("the mounts").await? {
            Report::Mounted => {}
            _ => return Err(channel.unexpected("the mounts")),
        }
        if let Some(proceed) = proceed {
            for (kind, list) in ["createRuntime", "prestart"].into_iter().zip(runtime_hooks) {
                for (index, hook) in list.iter().flatten().enumerate() {
                    runtime
                        .run_hook(kind, index, hook, &proceed.creating_state)
                        .await
                        .on_container("create", &self.id)?;
                }
            }
            channel.send(&proceed).await?;
        }
        // Before it is ready the init runs the createContainer hooks, each of which may take
        // its whole time limit.
        let container_hooks = hooks
            .create_container()
            .iter()
            .flatten()
            .map(|hook| runtime.hook_timeouts.limit(hook.timeout()).duration)
            .fold(Duration::ZERO, Duration::saturating_add);
        match channel
            .receive_within("ready", STEP_TIMEOUT.saturating_add(container_hooks))
            .await?
        {
            Report::Ready => Ok(()),
            _ => Err(channel.unexpected("ready")),
        }
    }

    /// Starts the helper for an exec process (`exec_id`), placed in the container's cgroups
    /// and RDT group (see `start_helper`).
    pub(super) async fn spawn_helper(
        &self,
        runtime: &Runtime,
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
        exec_id: Option<&str>,
    ) -> Result<(i32, HelperChannel)> {
        let (helper_pid, mut channel) =
            start_helper(runtime, &self.id, exec_id, stdin, stdout, stderr)?;
        let dirs = &self
            .state()
            .expect("a container with a helper has a valid record")
            .cgroup_dirs;
        channel.send(&runtime.cgroups.placement(dirs)).await?;
        self.assign_rdt(helper_pid).await?;
        Ok((helper_pid, channel))
    }

    /// Puts the helper in the container's RDT group, if it has one, before it forks.
    async fn assign_rdt(&self, helper_pid: i32) -> Result<()> {
        let group = self.state().and_then(|state| state.rdt.clone());
        if let Some(group) = group {
            blocking::run(move || rdt::assign(&group, helper_pid)).await?;
        }
        Ok(())
    }

    /// Undoes a create that failed: the same teardown a forced delete does, without the
    /// poststop hooks (the container never existed for its user).
    async fn abandon(&mut self, runtime: &Runtime, others: &Others) -> Result<()> {
        self.kill_and_wait(runtime, &[]).await?;
        self.release_resources(&[], &others.rdt_groups).await?;
        let dir = self.dir.clone();
        blocking::run(move || dir.remove()).await
    }
}

/// Starts the helper (`berthd init`) from the sealed copy of berthd, with these stdio and
/// its end of a socket as its only other fd; it waits there for its placement and its task.
/// A helper whose socket closes before then exits.
fn start_helper(
    runtime: &Runtime,
    id: &ContainerId,
    exec_id: Option<&str>,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<(i32, HelperChannel)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().context(|| "socketpair".into())?;
    let mut command = Command::new(runtime.init_binary.path());
    command
        .arg0("berthd")
        .arg(INIT_ARG)
        .env_clear()
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    // The helper's end of the socket is its only inherited fd beyond stdio; its number
    // travels as an argument, so no code has to run between fork and exec.
    command.arg(theirs.as_raw_fd().to_string());
    let (helper, _helper_exit) = runtime
        .reaper
        .spawn_inheriting(&mut command, theirs.as_fd())
        .context(|| "start the init helper".into())?;
    drop(theirs);
    ours.set_nonblocking(true).context(|| "socket".into())?;
    let stream = UnixStream::from_std(ours).context(|| "socket".into())?;
    Ok((
        helper.id() as i32,
        HelperChannel {
            id: id.to_string(),
            exec_id: exec_id.map(str::to_owned),
            reader: BufReader::new(stream),
        },
    ))
}

/// berthd's end of the helper's socket: JSON lines, each read bounded in time.
pub(super) struct HelperChannel {
    id: String,
    /// The exec process the helper makes; `None` for a container's init.
    exec_id: Option<String>,
    reader: BufReader<UnixStream>,
}

impl HelperChannel {
    fn failure(&self, message: String, caller_error: bool) -> Error {
        match &self.exec_id {
            None => Error::InitFailed {
                id: self.id.clone(),
                message,
                caller_error,
            },
            Some(exec_id) => Error::ExecFailed {
                id: self.id.clone(),
                exec_id: exec_id.clone(),
                message,
                caller_error,
            },
        }
    }

    fn failed(&self, message: String) -> Error {
        self.failure(message, false)
    }

    pub(super) fn unexpected(&self, waiting_for: &str) -> Error {
        self.failed(format!(
            "unexpected message while waiting for {waiting_for}"
        ))
    }

    pub(super) async fn send<T: serde::Serialize>(&mut self, message: &T) -> Result<()> {
        let mut line = serde_json::to_vec(message).expect("messages serialize");
        line.push(b'\n');
        let Err(gone) = self.reader.get_mut().write_all(&line).await else {
            return Ok(());
        };
        // A helper that failed said why before it went, and its socket still holds it.
        let mut report = String::new();
        let said = tokio::time::timeout(
            Duration::from_millis(100),
            self.reader.read_line(&mut report),
        )
        .await;
        match (said, serde_json::from_str(&report)) {
            (
                Ok(Ok(_)),
                Ok(Report::Failed {
                    message,
                    caller_error,
                }),
            ) => Err(self.failure(message, caller_error)),
            _ => Err(self.failed(format!("the init helper went away: {gone}"))),
        }
    }

    pub(super) async fn receive(&mut self, waiting_for: &str) -> Result<Report> {
        self.receive_within(waiting_for, STEP_TIMEOUT).await
    }

    async fn receive_within(&mut self, waiting_for: &str, limit: Duration) -> Result<Report> {
        let mut line = String::new();
        let read = tokio::time::timeout(limit, self.reader.read_line(&mut line)).await;
        let report = match read {
            Err(_) => {
                return Err(self.failed(format!(
                    "no answer within {limit:?} while waiting for {waiting_for}"
                )))
            }
            Ok(Err(e)) => return Err(self.failed(format!("reading from the init: {e}"))),
            Ok(Ok(0)) => {
                return Err(self.failed(format!("the init exited while waiting for {waiting_for}")))
            }
            Ok(Ok(_)) => serde_json::from_str(&line)
                .map_err(|e| self.failed(format!("garbled message from the init: {e}")))?,
        };
        match report {
            Report::Failed {
                message,
                caller_error,
            } => Err(self.failure(message, caller_error)),
            report => Ok(report),
        }
    }

    /// After an exec process's pid: the socket closes when the process has executed (its
    /// copy is close-on-exec), or carries why it could not.
    pub(super) async fn executed(&mut self) -> Result<()> {
        let mut line = String::new();
        match tokio::time::timeout(STEP_TIMEOUT, self.reader.read_line(&mut line)).await {
            Err(_) => Err(self.failed(format!(
                "the process did not execute within {STEP_TIMEOUT:?}"
            ))),
            Ok(Ok(0)) => Ok(()),
            Ok(Err(e)) => Err(self.failed(format!("reading from the helper: {e}"))),
            Ok(Ok(_)) => match serde_json::from_str(&line) {
                Ok(Report::Failed {
                    message,
                    caller_error,
                }) => Err(self.failure(message, caller_error)),
                _ => Err(self.unexpected("the exec")),
            },
        }
    }
}
