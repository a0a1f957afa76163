//! The helper side of an exec process: join every namespace of the container's init, fork
//! (a PID namespace is entered by children only), and in the child do what the init does
//! before its own exec: the working directory resolved inside the root, the process's
//! user, capabilities and seccomp filter.
use std::{
    fs::File,
    os::{fd::OwnedFd, unix::fs::MetadataExt},
};

use nix::sched::CloneFlags;

use super::{console, fork_reporting, lsm, process, tuning, Never};
use crate::{
    error::{IoContext, Result},
    helper::{Channel, ExecConfig},
    process::InitProcess,
};

/// The namespaces of `/proc/<pid>/ns`, in the order they are joined. The user namespace
/// comes first: joined, it grants the rights the others need when the container has one.
/// The mount namespace comes last, since it changes what `/proc` is.
const NAMESPACES: [(&str, CloneFlags); 8] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

pub fn helper(channel: &mut Channel, config: ExecConfig, cgroup: Option<OwnedFd>) -> Result<Never> {
    // Until the exec, this process holds the socket to berthd: processes of the container,
    // whose namespaces it joins, must not reach it through /proc.
    nix::sys::prctl::set_dumpable(false).context(|| "make the helper undumpable".into())?;
    // With the host's privileges, before a user namespace takes them away.
    process::set_oom_score_adj(&config.process)?;
    process::set_rlimits(&config.process)?;
    // By path, in the host's mount namespace: the container cannot see it.
    let console = config
        .console_socket
        .as_deref()
        .map(console::connect)
        .transpose()?;
    let mut by_child = Vec::new();
    for (namespace, flag) in open_namespaces(&config.init)? {
        // Joined by the child: this process reads the child's start time in the host's
        // /proc, which the container's mount namespace would hide, and clones the child
        // into the container's cgroup2 directory, which a cgroup namespace that does not
        // show its own may refuse.
        if matches!(flag, CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP) {
            by_child.push((namespace, flag));
            continue;
        }
        join(&namespace, flag)?;
    }
    fork_reporting(channel, cgroup.as_ref(), |_| {
        for (namespace, flag) in by_child {
            join(&namespace, flag)?;
        }
        if let Some(socket) = console {
            // The terminal becomes the controlling one of a session of its own.
            nix::unistd::setsid().context(|| "start a session".into())?;
            console::attach(socket, &config.process, false)?;
        }
        become_exec_process(&config)
    })
}

fn join(namespace: &OwnedFd, flag: CloneFlags) -> Result<()> {
    nix::sched::setns(namespace, flag).context(|| format!("join namespace {flag:?}"))
}

/// The init's namespaces that this process is not in already (joining one's own user
/// namespace is refused, and the container may share any of the host's).
fn open_namespaces(init: &InitProcess) -> Result<Vec<(OwnedFd, CloneFlags)>> {
    let mut joins = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{}/ns/{name}", init.pid);
        let theirs = match File::open(&path) {
            Ok(file) => file,
            // A kernel without this kind of namespace.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && init.is_alive() => continue,
            Err(e) => return Err(e).context(|| format!("open {path}")),
        };
        let identity = |meta: std::fs::Metadata| (meta.dev(), meta.ino());
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .context(|| format!("stat /proc/self/ns/{name}"))?;
        let theirs_meta = theirs.metadata().context(|| format!("stat {path}"))?;
        if identity(theirs_meta) != identity(ours) {
            joins.push((theirs.into(), flag));
        }
    }
    // Opened by pid: only a start time still the init's says they are its namespaces.
    if !init.is_alive() {
        return Err(std::io::Error::other(format!(
            "the container's init (pid {}) is gone",
            init.pid
        )))
        .context(|| "join the container's namespaces".into());
    }
    Ok(joins)
}

fn become_exec_process(config: &ExecConfig) -> Result<Never> {
    let user_process = &config.process;
    // "/" is the container's root now: joining its mount namespace moved this process
    // there, and cwd is resolved without magic links, so `/proc/self/fd/N` reaches
    // nothing of the host (CVE-2024-21626).
    process::enter_cwd(user_process)?;
    let program = process::prepare_exec(user_process)?;
    lsm::set_exec_labels(user_process)?;
    tuning::apply_to_process(user_process)?;
    process::become_user_process(user_process, config.seccomp.as_ref())?;
    Err(program.exec())
}
