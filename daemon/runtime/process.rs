//! Process identity and liveness (delete.md D6): a pid is trusted only together with the
//! start time recorded when the process was created, so a reused pid is never mistaken for
//! the container's init.
use std::{fs, io};

use serde::{Deserialize, Serialize};

/// The two fields of `/proc/<pid>/stat` that identity and liveness need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: R, S, D, Z, X, ...
    pub state: char,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcStat {
    /// `None` when no process has this pid.
    pub fn read(pid: i32) -> io::Result<Option<Self>> {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(text) => Self::parse(&text)
                .map(Some)
                .ok_or_else(|| io::Error::other(format!("unexpected /proc/{pid}/stat format"))),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The command name (field 2) may hold spaces and parentheses, so fields are counted
    /// from the last ')'.
    fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next()?.chars().next()?;
        // `rest` starts at field 3, so field 22 is the 20th from here.
        let start_time = fields.nth(18)?.parse().ok()?;
        Some(Self { state, start_time })
    }
}

/// What /proc alone tells of a recorded init, when no pidfd can be held for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// berthd cannot tell; why.
    Unknown(String),
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`); `None` when the kernel does not
/// tell. Pids and start times (counted from boot) identify a process within one boot only.
/// Kept once read; a failed read (out of descriptors, say) is tried again next time, so it
/// never disables the check for the daemon's life.
pub fn boot_id() -> Option<&'static str> {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(id) = BOOT_ID.get() {
        return Some(id);
    }
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    if id.is_empty() {
        return None;
    }
    Some(BOOT_ID.get_or_init(|| id.to_owned()))
}

/// The identity of a container's init: a pid alone can be reused, pid + start time cannot.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InitProcess {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat, in clock ticks since boot.
    pub start_time: u64,
}

impl InitProcess {
    /// The start-time check alone (delete.md D6), for an init no pidfd could be opened for:
    /// dead when no process has the pid, when the process there started at another time,
    /// or when it is a zombie whose thread group is gone; unknown when /proc cannot be read.
    pub fn liveness_by_start_time(&self) -> Liveness {
        let pid = self.pid;
        let stat = match crate::fault::errno("proc-stat") {
            Some(error) => Err(error),
            None => ProcStat::read(pid),
        };
        let stat = match stat {
            Ok(None) => return Liveness::Dead,
            Ok(Some(stat)) if stat.start_time != self.start_time => return Liveness::Dead,
            Ok(Some(stat)) => stat,
            Err(e) => return Liveness::Unknown(format!("cannot read /proc/{pid}/stat: {e}")),
        };
        match stat.state {
            'X' | 'x' => Liveness::Dead,
            // A main thread that called pthread_exit shows as a zombie while the other
            // threads run on; the process is gone only once it is the last thread left.
            'Z' => match fs::read_to_string(format!("/proc/{pid}/status")) {
                Ok(status) => {
                    let threads = status
                        .lines()
                        .find_map(|line| line.strip_prefix("Threads:"))
                        .and_then(|n| n.trim().parse::<u32>().ok());
                    match threads {
                        Some(n) if n > 1 => Liveness::Alive,
                        _ => Liveness::Dead,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Liveness::Dead,
                Err(e) => Liveness::Unknown(format!(
                    "pid {pid} is a zombie and /proc/{pid}/status cannot be read: {e}"
                )),
            },
            _ => Liveness::Alive,
        }
    }

    /// Alive, or cannot be told: calling an init dead that is not would let a delete skip
    /// the kill.
    pub fn is_alive(&self) -> bool {
        self.liveness_by_start_time() != Liveness::Dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "123 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 19 20\n";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                state: 'S',
                start_time: 987654
            })
        );
    }

    #[test]
    fn d6_own_process_is_alive_only_with_its_start_time() {
        let pid = std::process::id() as i32;
        let stat = ProcStat::read(pid).unwrap().unwrap();
        let me = InitProcess {
            pid,
            start_time: stat.start_time,
        };
        assert!(me.is_alive());
        let impostor = InitProcess {
            start_time: stat.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
    }

    #[test]
    fn d6_start_time_fallback_tells_the_init_from_a_stranger_and_the_dead() {
        let pid = std::process::id() as i32;
        let stat = ProcStat::read(pid).unwrap().unwrap();
        let me = InitProcess {
            pid,
            start_time: stat.start_time,
        };
        assert_eq!(me.liveness_by_start_time(), Liveness::Alive);
        let impostor = InitProcess {
            start_time: stat.start_time + 1,
            ..me
        };
        assert_eq!(impostor.liveness_by_start_time(), Liveness::Dead);
        // pid_max is at most 2^22: no process has this pid.
        let gone = InitProcess {
            pid: i32::MAX,
            start_time: 1,
        };
        assert_eq!(gone.liveness_by_start_time(), Liveness::Dead);
    }

    #[test]
    fn boot_id_is_this_boots() {
        let id = boot_id().expect("the kernel tells the boot id");
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(boot_id(), Some(id));
    }

    #[test]
    fn d6_zombie_is_not_alive() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // WNOWAIT waits for the exit without reaping, so the child stays a zombie.
        use nix::sys::wait::{waitid, Id, WaitPidFlag};
        waitid(
            Id::Pid(nix::unistd::Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )
        .unwrap();
        let stat = ProcStat::read(pid).unwrap().unwrap();
        assert_eq!(stat.state, 'Z');
        let init = InitProcess {
            pid,
            start_time: stat.start_time,
        };
        assert!(!init.is_alive());
        // Its only thread is gone: the fallback calls it dead too.
        assert_eq!(init.liveness_by_start_time(), Liveness::Dead);
        drop(child.wait_with_output());
    }
}

/// A pidfd: a handle on one process that a reused pid cannot redirect.
#[derive(Debug)]
pub struct Pidfd {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    pub pid: i32,
}

/// `None` when no process has this pid.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<Option<std::os::fd::OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ESRCH) => Ok(None),
            _ => Err(error),
        };
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(Some(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32)
    }))
}

fn send_signal(pidfd: &std::os::fd::OwnedFd, signal: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal with a valid pidfd, a signal number, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            return Err(error);
        }
    }
    Ok(())
}

/// Sends `signal` to the process that has `pid` now, but only if `still_meant` confirms,
/// once a pidfd holds that process, that it is the one meant: a pid read earlier (from
/// cgroup.procs, say) may have exited and been reused since. Gone processes are skipped.
pub fn signal_checked(pid: i32, signal: i32, still_meant: impl FnOnce() -> bool) -> io::Result<()> {
    match pidfd_open(pid)? {
        Some(pidfd) if still_meant() => send_signal(&pidfd, signal),
        _ => Ok(()),
    }
}

impl Pidfd {
    /// Opens a pidfd for `init` and checks, after opening, that the pid still belongs to the
    /// process started at `init.start_time`; `None` when it does not (the init is gone).
    /// Any other failure (EMFILE, EINVAL, a /proc that cannot be read) is an error: it
    /// says nothing about whether the init lives.
    pub fn open(init: &InitProcess) -> io::Result<Option<Self>> {
        if let Some(error) = crate::fault::errno("pidfd-open") {
            return Err(error);
        }
        let Some(fd) = pidfd_open(init.pid)? else {
            return Ok(None);
        };
        let pidfd = Self {
            // SAFETY: the AsyncFd owns the fd, which is neither replaced nor closed while
            // registered.
            fd: unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)?
            },
            pid: init.pid,
        };
        // Identity only: whether it has exited is the pidfd's to tell (a main thread that
        // called pthread_exit shows as a zombie while the process lives on). A stat that
        // cannot be read (out of descriptors: the pidfd may have taken the last one) is
        // an error, never "another process".
        match ProcStat::read(init.pid)? {
            Some(stat) if stat.start_time == init.start_time => Ok(Some(pidfd)),
            _ => Ok(None),
        }
    }

    /// Sends `signal` to exactly this process; ESRCH (already gone) is not an error.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        send_signal(self.fd.get_ref(), signal)
    }

    /// The process has exited (a zombie counts): the kernel makes a pidfd readable then.
    pub fn has_exited(&self) -> bool {
        use std::os::fd::AsFd;
        let mut fds = [nix::poll::PollFd::new(
            self.fd.get_ref().as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Resolves when the process exits, without blocking a thread.
    pub async fn exited(&self) {
        // readable() fails only once the runtime is shutting down; nobody waits then.
        while let Ok(mut guard) = self.fd.readable().await {
            if self.has_exited() {
                return;
            }
            guard.clear_ready();
        }
    }
}

/// How a child of berthd ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code, or 128 + signal.
    pub code: i32,
    /// The signal that ended it, 0 if it exited.
    pub signal: u32,
}

impl ExitStatus {
    fn from_wait(status: WaitStatus) -> Option<(i32, Self)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid.as_raw(), Self { code, signal: 0 })),
            WaitStatus::Signaled(pid, signal, _) => Some((
                pid.as_raw(),
                Self {
                    code: 128 + signal as i32,
                    signal: signal as u32,
                },
            )),
            _ => None,
        }
    }
}

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};
use tokio::sync::oneshot;

/// Exit statuses nobody asked for yet, kept for a late `watch` (an init adopted when its
/// helper exited may die before berthd learns its pid). Older ones are dropped.
const UNCLAIMED_KEPT: usize = 256;

/// berthd's only waiter: it is a child subreaper, so container inits (and orphans they
/// leave) become its children, and one `waitpid(-1)` loop reaps them all and hands each
/// status to whoever registered for that pid. Nothing else in berthd may wait for children
/// (so no `tokio::process`, no `std::process::Child::wait`), or statuses would be stolen.
#[derive(Default)]
pub struct Reaper {
    state: Mutex<ReaperState>,
}

#[derive(Default)]
struct ReaperState {
    waiters: HashMap<i32, oneshot::Sender<ExitStatus>>,
    unclaimed: VecDeque<(i32, ExitStatus)>,
}

impl Reaper {
    /// Makes berthd a child subreaper and starts reaping on SIGCHLD.
    pub fn start() -> io::Result<Arc<Self>> {
        nix::sys::prctl::set_child_subreaper(true)?;
        let reaper = Arc::new(Self::default());
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let task_reaper = reaper.clone();
        tokio::spawn(async move {
            loop {
                task_reaper.reap_all();
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(reaper)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ReaperState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reap_all(&self) {
        // The lock is held across waitpid so a `spawn` in progress (which holds it too)
        // registers its child before that child's status can be collected.
        let mut state = self.state();
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    let Some((pid, exit)) = ExitStatus::from_wait(status) else {
                        continue;
                    };
                    match state.waiters.remove(&pid) {
                        Some(waiter) => {
                            let _ = waiter.send(exit);
                        }
                        None => {
                            tracing::debug!(pid, ?exit, "reaped a process nobody waits for");
                            if state.unclaimed.len() == UNCLAIMED_KEPT {
                                state.unclaimed.pop_front();
                            }
                            state.unclaimed.push_back((pid, exit));
                        }
                    }
                }
            }
        }
    }

    /// Spawns `command` and returns the child (for its pipes; never wait on it) and its
    /// exit status to come.
    pub fn spawn(
        &self,
        command: &mut std::process::Command,
    ) -> io::Result<(std::process::Child, oneshot::Receiver<ExitStatus>)> {
        self.spawn_locked(&mut self.state(), command)
    }

    fn spawn_locked(
        &self,
        state: &mut ReaperState,
        command: &mut std::process::Command,
    ) -> io::Result<(std::process::Child, oneshot::Receiver<ExitStatus>)> {
        let child = command.spawn()?;
        let pid = child.id() as i32;
        // A status kept for an earlier process with this pid is stale now.
        state.unclaimed.retain(|(kept, _)| *kept != pid);
        let (tx, rx) = oneshot::channel();
        state.waiters.insert(pid, tx);
        Ok((child, rx))
    }

    /// Spawns `command` with `fd` inherited (it is close-on-exec everywhere else). The
    /// flag is lifted only while the reaper's lock is held, and every spawn in berthd takes
    /// that lock, so no other child can inherit the fd by accident.
    pub fn spawn_inheriting(
        &self,
        command: &mut std::process::Command,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> io::Result<(std::process::Child, oneshot::Receiver<ExitStatus>)> {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        let mut state = self.state();
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
        let spawned = self.spawn_locked(&mut state, command);
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        spawned
    }

    /// The exit status of `init`, which must be a child of berthd (an init adopted when its
    /// helper exited).
    pub fn watch(&self, init: &InitProcess) -> oneshot::Receiver<ExitStatus> {
        let mut state = self.state();
        let (tx, rx) = oneshot::channel();
        let kept = state.unclaimed.iter().position(|(pid, _)| *pid == init.pid);
        if let Some(index) = kept {
            let (_, exit) = state.unclaimed.remove(index).expect("index is in range");
            // A kept status belongs to this init only if the init is gone; if it lives, the
            // status is an older process's that had the same pid.
            if !init.is_alive() {
                let _ = tx.send(exit);
                return rx;
            }
        }
        state.waiters.insert(init.pid, tx);
        rx
    }
}
