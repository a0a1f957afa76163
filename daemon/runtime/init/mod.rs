//! The helper side of container creation: `berthd init`, a freshly executed, single-threaded
//! process (so forking it is safe). It enters the container's namespaces, forks the
//! container's init, and the init builds the root file system, waits for StartContainer on
//! the exec FIFO, and executes the user process.
//!
//! Every failure is reported to berthd as text, so CreateContainer fails with the cause.
pub mod console;
mod exec;
mod lsm;
mod process;
mod resolve;
mod rootfs;
mod sysctl;
mod tuning;

use std::{
    fs::File,
    io::{Read, Write},
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
};

use nix::{
    fcntl::OFlag,
    sched::CloneFlags,
    unistd::{fork, ForkResult},
};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::{
    cgroups::Placement,
    error::{IoContext, Result},
    helper::{CgroupsMade, Channel, IdsMapped, InitConfig, Proceed, Report, Task},
    hooks, spec_support, userns,
};

/// What the helper opens for the init while it is still the host's root: in a user
/// namespace the container's root cannot cross the 0700 directories (a state root, a
/// tempfile-made bundle directory) on the way to them.
struct Held {
    /// The bundle's root file system, opened in the container's mount namespace.
    rootfs: OwnedFd,
    /// In a user namespace, each bind mount's source, which the config now names by
    /// /proc/self/fd: kept open until the user process is executed.
    bind_sources: Vec<OwnedFd>,
    /// Connected to the console socket, for a process with a terminal.
    console: Option<OwnedFd>,
    /// The cgroup namespace, entered by the init: a new one is rooted at its creator's
    /// cgroups, and only the init is in the container's cgroup2 directory.
    cgroup_namespace: Option<CgroupNamespace>,
    /// The helper made or joined a user namespace: the init becomes its root (the helper
    /// stays the host's root, whom the cgroup2 tree lets clone the init into it).
    user_namespace: bool,
}

enum CgroupNamespace {
    Join(OwnedFd),
    New,
}

impl CgroupNamespace {
    fn enter(self) -> Result<()> {
        match self {
            CgroupNamespace::Join(fd) => nix::sched::setns(fd, CloneFlags::CLONE_NEWCGROUP)
                .context(|| "join the cgroup namespace".into()),
            CgroupNamespace::New => nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
                .context(|| "create the cgroup namespace".into()),
        }
    }
}

/// Entry point of `berthd init <socket fd>`; never returns.
pub fn main() -> ! {
    let Some(fd) = std::env::args()
        .nth(2)
        .and_then(|arg| arg.parse::<i32>().ok())
    else {
        eprintln!("berthd init is started by berthd, with the fd of its socket");
        std::process::exit(2)
    };
    // SAFETY: berthd passes the socket as this fd and nothing else in this process owns it.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // Neither hooks nor the user process may inherit it, nor anything else berthd left open.
    mark_fds_close_on_exec();
    let mut channel = Channel::new(stream);
    let outcome = receive(&mut channel, "the container's cgroups").and_then(|placement| {
        match receive(&mut channel, "the helper's task")? {
            Task::Create(config) => helper(&mut channel, *config, &placement),
            Task::Exec(config) => {
                let cgroup = enter_cgroups(&placement)?;
                exec::helper(&mut channel, *config, cgroup)
            }
        }
    });
    let error = match outcome {
        Ok(never) => match never {},
        Err(error) => error,
    };
    let _ = channel.send(&failure(&error));
    std::process::exit(1)
}

fn receive<T: for<'de> serde::Deserialize<'de>>(channel: &mut Channel, what: &str) -> Result<T> {
    channel
        .receive()
        .and_then(|message| message.ok_or_else(|| std::io::Error::other("berthd hung up")))
        .context(|| format!("read {what}"))
}

/// Moves this process (its only thread) into the container's v1 cgroups, and opens its
/// cgroup2 directory for the fork (see `cgroups::Placement`), by paths of the host's mount
/// tree (the container's is only a copy of it until the init pivots).
fn enter_cgroups(placement: &Placement) -> Result<Option<OwnedFd>> {
    for tasks in &placement.tasks {
        std::fs::write(tasks, "0").context(|| format!("enter cgroup {}", tasks.display()))?;
    }
    placement
        .clone_into
        .as_deref()
        .map(|dir| open_path(dir, OFlag::O_DIRECTORY))
        .transpose()
}

/// Every fd from 3 up is closed by the next exec, whoever opened it and however: only
/// stdio crosses into hooks and the user process.
fn mark_fds_close_on_exec() {
    // SAFETY: close_range only changes fd flags; nothing here relies on an fd surviving exec.
    unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    };
}

pub(super) fn failure(error: &crate::error::Error) -> Report {
    // What the config can cause: a missing path or executable, a file system type or
    // mount option the kernel does not know, a path through a non-directory.
    let caller_error = match error {
        crate::error::Error::InvalidConfig { .. } => true,
        crate::error::Error::Io { source, .. } => {
            matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
            ) || matches!(
                source.raw_os_error(),
                Some(libc::ENODEV | libc::EINVAL | libc::ENOTDIR)
            )
        }
        _ => false,
    };
    Report::Failed {
        message: error.to_string(),
        caller_error,
    }
}

pub(super) enum Never {}

/// Joins or creates the namespaces, then forks the init: a new PID namespace applies to
/// children only, so the init must be a child of the process that unshared it.
fn helper(channel: &mut Channel, mut config: InitConfig, placement: &Placement) -> Result<Never> {
    // Set with the host's privileges, before a user namespace takes them away; the init
    // inherits them.
    let user_process = config_process(&config.spec)?;
    process::set_oom_score_adj(user_process)?;
    process::set_rlimits(user_process)?;
    let held = enter_namespaces(channel, &mut config)?;
    let _: CgroupsMade = receive(channel, "word that the cgroups exist")?;
    let cgroup = enter_cgroups(placement)?;
    // The state directory exists by now, as the cgroups do. Opened by this process, still
    // the host's root, for the exec FIFO in it (see `Held`).
    let state_dir = config
        .exec_fifo
        .parent()
        .unwrap_or(std::path::Path::new("/"));
    let state_dir = open_path(state_dir, OFlag::O_DIRECTORY)?;
    set_time_offsets(&config.spec)?;

    fork_reporting(channel, cgroup.as_ref(), |channel| {
        container_init(channel, &config, held, state_dir)
    })
}

/// Forks the process berthd asked for, into the cgroup2 directory `cgroup` when there is
/// one, and reports its pid, then exits: the child is adopted by berthd, a child
/// subreaper. The child waits until the pid is reported, so reports arrive in order; a
/// failure of `child` is reported too, and ends it.
fn fork_reporting(
    channel: &mut Channel,
    cgroup: Option<&OwnedFd>,
    child: impl FnOnce(&mut Channel) -> Result<Never>,
) -> Result<Never> {
    let (release_read, release_write) = nix::unistd::pipe().context(|| "pipe".into())?;
    match fork_into(cgroup).context(|| "fork the process".into())? {
        ForkResult::Child => {
            drop(release_write);
            if !matches!(File::from(release_read).read(&mut [0u8]), Ok(1)) {
                std::process::exit(1);
            }
            let error = match child(channel) {
                Ok(never) => match never {},
                Err(error) => error,
            };
            // berthd may no longer listen (an init that reported ready); the process's
            // stderr is then the only place the cause can go.
            eprintln!("berth init: {error}");
            let _ = channel.send(&failure(&error));
            std::process::exit(127)
        }
        ForkResult::Parent { child } => {
            drop(release_read);
            let pid = child.as_raw();
            let start_time = crate::process::ProcStat::read(pid)
                .ok()
                .flatten()
                .map(|stat| stat.start_time)
                .ok_or_else(|| std::io::Error::other(format!("pid {pid} vanished")))
                .context(|| "read the start time of the forked process".into())?;
            channel
                .send(&Report::InitPid { pid, start_time })
                .context(|| "report the pid".into())?;
            let _ = File::from(release_write).write_all(&[0]);
            std::process::exit(0)
        }
    }
}

/// fork(2), with the child born in `cgroup` when given (`CLONE_INTO_CGROUP`, which glibc
/// has no wrapper for: a raw clone3). The child of the raw call finds its parent's thread
/// id in glibc's thread descriptor: glibc asks the kernel instead where that would misfire
/// (raise and abort, since 2.34), and a lock that records its owner records the same id
/// at every call, so it still works within the child.
fn fork_into(cgroup: Option<&OwnedFd>) -> nix::Result<ForkResult> {
    use std::os::fd::AsRawFd;
    let Some(cgroup) = cgroup else {
        // SAFETY: this process is single-threaded (freshly executed, no threads started).
        return unsafe { fork() };
    };
    /// `CLONE_INTO_CGROUP`; libc's constant has the wrong width.
    const INTO_CGROUP: u64 = 0x2_0000_0000;
    // SAFETY: clone_args is plain integers, for which all zeroes is valid (no stack: the
    // child returns on a copy of this one, as from fork).
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = INTO_CGROUP;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup.as_raw_fd() as u64;
    // SAFETY: clone3 with a valid, sized argument block and fork semantics, in a
    // single-threaded process.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match pid {
        0 => Ok(ForkResult::Child),
        pid if pid > 0 => Ok(ForkResult::Parent {
            child: nix::unistd::Pid::from_raw(pid as i32),
        }),
        _ => Err(nix::errno::Errno::last()),
    }
}

/// spec_support refused a config without one.
fn config_process(spec: &Spec) -> Result<&oci_spec::runtime::Process> {
    spec.process()
        .as_ref()
        .ok_or_else(|| std::io::Error::other("config.json has no process"))
        .context(|| "prepare the process".into())
}

fn namespace_flag(kind: LinuxNamespaceType) -> CloneFlags {
    match kind {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// Namespaces with a path are joined, the others created, in runc's order: the joins
/// first (a user namespace among them before the rest), then a new user namespace, which
/// berthd maps from outside, then every other new namespace, owned by it, but the cgroup
/// namespace, which the init enters (see `Held`). All paths are opened first: they resolve
/// in the host's mount namespace, which joining a mount namespace would leave.
fn enter_namespaces(channel: &mut Channel, config: &mut InitConfig) -> Result<Held> {
    let namespaces = config
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let mut joins: Vec<(OwnedFd, CloneFlags)> = Vec::new();
    let mut new = CloneFlags::empty();
    let mut cgroup_namespace = None;
    for namespace in &namespaces {
        let flag = namespace_flag(namespace.typ());
        match (namespace.path(), flag) {
            (Some(path), flag) => {
                let file =
                    File::open(path).context(|| format!("open namespace {}", path.display()))?;
                if flag == CloneFlags::CLONE_NEWCGROUP {
                    cgroup_namespace = Some(CgroupNamespace::Join(file.into()));
                } else {
                    joins.push((file.into(), flag));
                }
            }
            (None, CloneFlags::CLONE_NEWCGROUP) => cgroup_namespace = Some(CgroupNamespace::New),
            (None, flag) => new |= flag,
        }
    }
    let console = config
        .console_socket
        .as_deref()
        .map(console::connect)
        .transpose()?;
    joins.sort_by_key(|(_, flag)| *flag != CloneFlags::CLONE_NEWUSER);
    for (fd, flag) in &joins {
        nix::sched::setns(fd, *flag).context(|| format!("join namespace {flag:?}"))?;
        if *flag == CloneFlags::CLONE_NEWUSER {
            check_joined_maps(&config.spec)?;
        }
    }
    let in_userns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User);
    if new.contains(CloneFlags::CLONE_NEWUSER) {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
            .context(|| "create the user namespace".into())?;
        channel
            .send(&Report::UserNamespace)
            .context(|| "report the user namespace".into())?;
        let _: IdsMapped = channel
            .receive()
            .context(|| "wait for the id mappings".into())?
            .ok_or_else(|| std::io::Error::other("berthd hung up"))
            .context(|| "wait for the id mappings".into())?;
    }
    let rest = new - CloneFlags::CLONE_NEWUSER;
    nix::sched::unshare(rest).context(|| format!("create namespaces {rest:?}"))?;
    rootfs::detach_from_host(&config.rootfs, &config.spec)?;
    // Still the host's uid, so the owner's bits of root-owned 0700 directories let this
    // process through, where the container's root would have no access.
    let rootfs = open_path(&config.rootfs, OFlag::O_DIRECTORY)?;
    let bind_sources = if in_userns {
        hold_bind_sources(config)?
    } else {
        Vec::new()
    };
    Ok(Held {
        rootfs,
        bind_sources,
        console,
        cgroup_namespace,
        user_namespace: in_userns,
    })
}

fn open_path(path: &std::path::Path, flags: OFlag) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_CLOEXEC | flags,
        nix::sys::stat::Mode::empty(),
    )
    .context(|| format!("open {}", path.display()))
}

/// Bind sources the container's root may not reach by path (runc hands the init an fd of
/// each for the same reason) are opened now, following symlinks as the mount would, and
/// mounted from /proc/self/fd.
fn hold_bind_sources(config: &mut InitConfig) -> Result<Vec<OwnedFd>> {
    let mut held = Vec::new();
    for mount in config.spec.mounts_mut().iter_mut().flatten() {
        let Some(source) = mount
            .source()
            .clone()
            .filter(|_| spec_support::is_bind(mount))
        else {
            continue;
        };
        let fd = nix::fcntl::open(
            &source,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .context(|| format!("bind mount source {}", source.display()))?;
        mount.set_source(Some(resolve::fd_path(&fd)));
        held.push(fd);
    }
    Ok(held)
}

/// A namespace joined by path with mappings in the config must have those mappings, as
/// runc requires (containerd and CRI-O repeat them).
fn check_joined_maps(spec: &Spec) -> Result<()> {
    for (file, field, map) in userns::maps(spec) {
        let Some(map) = map else { continue };
        let path = format!("/proc/self/{file}");
        let actual = std::fs::read_to_string(&path).context(|| format!("read {path}"))?;
        if !userns::same_map(map, &userns::parse_map(&actual)) {
            return Err(crate::error::Error::InvalidConfig {
                field: field.into(),
                reason: "differs from the mappings of the user namespace to join".into(),
            });
        }
    }
    Ok(())
}

/// Becomes uid and gid 0 of the user namespace, without the host's supplementary groups,
/// as runc's init does once its maps are written.
fn become_namespace_root() -> Result<()> {
    let root_gid = nix::unistd::Gid::from_raw(0);
    let root_uid = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)
        .context(|| "become gid 0 of the user namespace".into())?;
    nix::unistd::setgroups(&[]).context(|| "drop supplementary groups".into())?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid)
        .context(|| "become uid 0 of the user namespace".into())
}

/// The clocks of the time namespace just created, written before its first process (the
/// init, forked next) enters it: the kernel takes offsets only until then. spec_support
/// refused offsets for a time namespace joined by path.
fn set_time_offsets(spec: &Spec) -> Result<()> {
    let Some(offsets) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
        .filter(|o| !o.is_empty())
    else {
        return Ok(());
    };
    let lines: String = offsets
        .iter()
        .map(|(clock, offset)| {
            format!(
                "{clock} {} {}\n",
                offset.secs().unwrap_or(0),
                offset.nanosecs().unwrap_or(0)
            )
        })
        .collect();
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/timens_offsets")
        .and_then(|mut file| file.write_all(lines.as_bytes()))
        .context(|| format!("write linux.timeOffsets {lines:?}"))
}

/// The container's init, up to the exec of the user process.
fn container_init(
    channel: &mut Channel,
    config: &InitConfig,
    held: Held,
    state_dir: OwnedFd,
) -> Result<Never> {
    let spec = &config.spec;
    if held.user_namespace {
        become_namespace_root()?;
    }
    if let Some(namespace) = held.cgroup_namespace {
        namespace.enter()?;
    }
    // A session of its own, as runc gives every container: a terminal can then be its
    // controlling terminal, and signals from berthd's terminal never reach it.
    nix::unistd::setsid().context(|| "setsid".into())?;
    let root = rootfs::prepare(config, &held.rootfs)?;
    drop(held.rootfs);
    process::set_hostname(spec)?;
    // The FIFO in the state directory is opened for writing once the container is started.
    // (Through a directory fd, not /proc: the container may have no /proc.)
    let _bind_sources = held.bind_sources;
    let fifo_name = config.exec_fifo.file_name().unwrap_or_default().to_owned();

    channel
        .send(&Report::Mounted)
        .context(|| "report mounts".into())?;
    let proceed: Proceed = channel
        .receive()
        .context(|| "wait for berthd".into())?
        .ok_or_else(|| std::io::Error::other("berthd hung up"))
        .context(|| "wait for berthd".into())?;
    let container_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().clone());
    hooks::run_in_init(
        container_hooks.as_deref().unwrap_or_default(),
        "createContainer",
        &proceed.creating_state,
        &config.hook_timeouts,
    )?;

    sysctl::write(spec)?;
    let user_process = config_process(spec)?;
    lsm::set_exec_labels(user_process)?;
    rootfs::pivot(root, &config.rootfs)?;
    // Before finish, which may make / and with it /dev/console's mount point read-only.
    if let (Some(socket), Some(process)) = (held.console, spec.process()) {
        console::attach(socket, process, true)?;
    }
    rootfs::finish(spec)?;
    rootfs::set_root_propagation(spec)?;
    // The state directory is open here, but cwd is resolved without magic links, so
    // nothing the init holds can be reached through it.
    process::enter_cwd(user_process)?;
    let program = process::prepare_exec(user_process)?;
    tuning::apply(spec)?;

    channel
        .send(&Report::Ready)
        .context(|| "report ready".into())?;
    // berthd has what it needs; later failures go to the container's stderr.
    channel.close();

    // The last host directory the init holds is closed by this.
    wait_for_start(state_dir, std::path::Path::new(&fifo_name))?;
    process::verify_cwd()?;
    mark_fds_close_on_exec();
    let start_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone());
    hooks::run_in_init(
        start_hooks.as_deref().unwrap_or_default(),
        "startContainer",
        &proceed.created_state,
        &config.hook_timeouts,
    )?;
    process::become_user_process(user_process, config.seccomp.as_ref())?;
    Err(program.exec())
}

/// Blocks until StartContainer opens the FIFO for reading, then tells it the init is going.
fn wait_for_start(state_dir: OwnedFd, fifo: &std::path::Path) -> Result<()> {
    let fd = nix::fcntl::openat(
        &state_dir,
        fifo,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .context(|| "open the exec FIFO".into())?;
    File::from(fd)
        .write_all(b"0")
        .context(|| "write the exec FIFO".into())
}
