//! OCI hooks: each runs with the container's OCI state on stdin, its args exactly as given
//! (argv[0] included), its env exactly as given (berthd's own when the hook names none, as
//! runc does), in its own process group so a timeout kills everything it started.
//!
//! berthd runs hooks through its reaper and waits asynchronously; the container's init
//! (a single-threaded process of its own) runs the container-namespace hooks and waits
//! on a pidfd. Either way the state is written while the exit is awaited, and the pipe is
//! closed once the hook exits: a hook that never reads its stdin (or leaves a process
//! holding it) cannot hold the caller past its exit.
//!
//! Every hook runs under a time limit ([`HookTimeouts`]): its own `timeout`, capped to
//! berthd's maximum, or berthd's default when it names none.
use std::{
    io,
    os::{fd::OwnedFd, unix::process::CommandExt},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use oci_spec::runtime::Hook;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::process::{ExitStatus, Reaper};

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Refused at create: the OCI runtime spec wants a timeout greater than zero.
    #[error("hooks.{kind}[{index}].timeout must be greater than zero (it is {timeout})")]
    InvalidTimeout {
        kind: &'static str,
        index: usize,
        timeout: i64,
    },
    #[error("{kind} hook #{index} ({}): {problem}", path.display())]
    Failed {
        kind: &'static str,
        index: usize,
        path: PathBuf,
        problem: Problem,
    },
}

/// What went wrong with a hook that ran, or tried to.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("cannot start: {0}")]
    Start(#[source] io::Error),
    #[error("waiting for it: {0}")]
    Wait(#[source] io::Error),
    #[error("its exit status was lost")]
    ExitLost,
    #[error("exited with status {0}")]
    Exited(i32),
    #[error("killed by signal {0}")]
    Killed(u32),
    #[error("{}", .0.ran_past())]
    TimedOut(Limit),
}

pub type Result<T, E = HookError> = std::result::Result<T, E>;

/// berthd's bounds on how long a hook may run (`--hook-timeout-default`,
/// `--hook-timeout-max`; see the README for why these values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookTimeouts {
    /// For a hook that names no timeout of its own.
    pub default: Duration,
    /// The longest any hook may run: a hook's own longer timeout is capped to it.
    pub max: Duration,
}

impl Default for HookTimeouts {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(60),
            max: Duration::from_secs(10 * 60),
        }
    }
}

/// Where a hook's time limit comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSource {
    /// The hook's own `timeout`.
    Hook,
    /// berthd's default: the hook names none.
    Default,
    /// berthd's maximum, below what the hook asked for.
    Max,
}

/// How long one hook may run before it is killed, and why that long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub duration: Duration,
    pub source: LimitSource,
}

impl HookTimeouts {
    /// The limit for a hook whose config.json `timeout` (seconds) is `timeout`. Create
    /// refuses a timeout of 0 or less ([`check_timeouts`]); one in a state file written by an
    /// older berth gets the default. Never overflows: any `i64` is a valid `Duration`.
    pub fn limit(&self, timeout: Option<i64>) -> Limit {
        let (duration, source) = match timeout {
            Some(seconds) if seconds > 0 => (
                Duration::from_secs(seconds.unsigned_abs()),
                LimitSource::Hook,
            ),
            _ => (self.default, LimitSource::Default),
        };
        if duration > self.max {
            Limit {
                duration: self.max,
                source: LimitSource::Max,
            }
        } else {
            Limit { duration, source }
        }
    }
}

impl Limit {
    fn ran_past(&self) -> String {
        let why = match self.source {
            LimitSource::Hook => "",
            LimitSource::Default => " (berthd's --hook-timeout-default: the hook names none)",
            LimitSource::Max => " (capped to berthd's --hook-timeout-max)",
        };
        format!(
            "ran past its timeout of {}{why}; killed",
            humantime::format_duration(self.duration)
        )
    }
}

/// The hooks' kinds in config.json, each with its list.
pub fn all_kinds(hooks: &oci_spec::runtime::Hooks) -> [(&'static str, &[Hook]); 6] {
    fn list(hooks: &Option<Vec<Hook>>) -> &[Hook] {
        hooks.as_deref().unwrap_or_default()
    }
    [
        ("prestart", list(hooks.prestart())),
        ("createRuntime", list(hooks.create_runtime())),
        ("createContainer", list(hooks.create_container())),
        ("startContainer", list(hooks.start_container())),
        ("poststart", list(hooks.poststart())),
        ("poststop", list(hooks.poststop())),
    ]
}

/// The OCI runtime spec: a hook's `timeout`, when set, must be greater than zero. `Err`
/// names the first hook that breaks it.
pub fn check_timeouts(hooks: &oci_spec::runtime::Hooks) -> Result<()> {
    for (kind, list) in all_kinds(hooks) {
        for (index, hook) in list.iter().enumerate() {
            if let Some(timeout) = hook.timeout().filter(|t| *t <= 0) {
                return Err(HookError::InvalidTimeout {
                    kind,
                    index,
                    timeout,
                });
            }
        }
    }
    Ok(())
}

fn command(hook: &Hook) -> Command {
    let mut command = Command::new(hook.path());
    let args = hook.args().as_deref().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        command.arg0(argv0).args(rest);
    }
    if let Some(env) = hook.env() {
        command.env_clear();
        for entry in env {
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            command.env(key, value);
        }
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0);
    command
}

fn failed(kind: &'static str, index: usize, hook: &Hook) -> impl FnOnce(Problem) -> HookError {
    let path = hook.path().clone();
    move |problem| HookError::Failed {
        kind,
        index,
        path,
        problem,
    }
}

fn check_exit(exit: ExitStatus) -> std::result::Result<(), Problem> {
    match exit {
        ExitStatus { code: 0, .. } => Ok(()),
        ExitStatus { signal: 0, code } => Err(Problem::Exited(code)),
        ExitStatus { signal, .. } => Err(Problem::Killed(signal)),
    }
}

fn kill_group(pid: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Runs one hook from berthd.
pub async fn run(
    reaper: &Reaper,
    timeouts: &HookTimeouts,
    kind: &'static str,
    index: usize,
    hook: &Hook,
    state: &str,
) -> Result<()> {
    let limit = timeouts.limit(hook.timeout());
    let (mut child, exit) = reaper
        .spawn(&mut command(hook))
        .map_err(|e| failed(kind, index, hook)(Problem::Start(e)))?;
    let pid = child.id() as i32;
    let stdin = child.stdin.take().expect("stdin is piped");
    let run = async {
        // The write owns the pipe: it closes once all is written, or when the hook exits
        // first (this block returns and drops the write), so a hook that ignores its stdin
        // neither fails the write nor holds the caller, whatever it left holding the pipe.
        let write = async move {
            if let Ok(mut pipe) = tokio::net::unix::pipe::Sender::from_owned_fd(stdin.into()) {
                let _ = pipe.write_all(state.as_bytes()).await;
            }
        };
        tokio::pin!(write, exit);
        tokio::select! {
            exit = &mut exit => exit,
            () = &mut write => exit.await,
        }
    };
    // tokio's timeout takes any Duration: past what the clock can tell, it never fires.
    let Ok(result) = tokio::time::timeout(limit.duration, run).await else {
        kill_group(pid);
        return Err(failed(kind, index, hook)(Problem::TimedOut(limit)));
    };
    result
        .map_err(|_| Problem::ExitLost)
        .and_then(check_exit)
        .map_err(failed(kind, index, hook))
}

/// Runs hooks in order from the container's init; the first failure is fatal there.
pub fn run_in_init(
    hooks: &[Hook],
    kind: &'static str,
    state: &str,
    timeouts: &HookTimeouts,
) -> Result<()> {
    for (index, hook) in hooks.iter().enumerate() {
        run_blocking(hook, state, timeouts).map_err(failed(kind, index, hook))?;
    }
    Ok(())
}

fn run_blocking(
    hook: &Hook,
    state: &str,
    timeouts: &HookTimeouts,
) -> std::result::Result<(), Problem> {
    let limit = timeouts.limit(hook.timeout());
    let mut child = command(hook).spawn().map_err(Problem::Start)?;
    let pid = child.id() as i32;
    let stdin = child.stdin.take().map(OwnedFd::from);
    let exited = feed_and_wait(pid, stdin, state.as_bytes(), limit.duration).map_err(Problem::Wait);
    if !matches!(exited, Ok(true)) {
        kill_group(pid);
        let _ = child.wait();
        return Err(exited.err().unwrap_or(Problem::TimedOut(limit)));
    }
    let status = child.wait().map_err(Problem::Wait)?;
    use std::os::unix::process::ExitStatusExt;
    check_exit(ExitStatus {
        code: status.code().unwrap_or(128 + status.signal().unwrap_or(0)),
        signal: status.signal().unwrap_or(0) as u32,
    })
}

/// Writes `input` to the unreaped child `pid`'s stdin while waiting, at most `limit`, for
/// it to exit; true when it exited. For the init, which is single-threaded and must stay so
/// (it forks): one poll(2) on a pidfd and on the pipe, made non-blocking, and no thread.
/// The pipe is closed once all is written, when nobody reads it any more, or when the child
/// exits, whichever comes first.
fn feed_and_wait(
    pid: i32,
    stdin: Option<OwnedFd>,
    input: &[u8],
    limit: Duration,
) -> std::io::Result<bool> {
    use nix::{
        errno::Errno,
        fcntl::{fcntl, FcntlArg, OFlag},
        poll::{poll, PollFd, PollFlags, PollTimeout},
    };
    use std::os::fd::AsFd;

    let Some(pidfd) = crate::process::pidfd_open(pid)? else {
        return Ok(true);
    };
    let mut stdin = stdin;
    if let Some(pipe) = &stdin {
        fcntl(pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    }
    let mut written = 0;
    // None: a deadline past what the clock can tell (a timeout of i64::MAX seconds), so
    // none at all.
    let deadline = std::time::Instant::now().checked_add(limit);
    loop {
        if let Some(pipe) = &stdin {
            while written < input.len() {
                match nix::unistd::write(pipe, &input[written..]) {
                    Ok(count) => written += count,
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => break,
                    // EPIPE (SIGPIPE is ignored here, as in all of berthd): nobody reads it.
                    Err(_) => written = input.len(),
                }
            }
            if written == input.len() {
                stdin = None;
            }
        }
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                // Rounded up, so the last wait does not spin on a 0 ms timeout.
                let millis = left.as_nanos().div_ceil(1_000_000);
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if let Some(pipe) = &stdin {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLOUT));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if fds[0].revents().is_some_and(|events| !events.is_empty()) {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn the_default_is_one_minute_and_the_maximum_ten() {
        let timeouts = HookTimeouts::default();
        assert_eq!((timeouts.default, timeouts.max), (secs(60), secs(600)));
    }

    #[test]
    fn a_hook_without_timeout_gets_the_default() {
        let timeouts = HookTimeouts {
            default: secs(5),
            max: secs(60),
        };
        assert_eq!(
            timeouts.limit(None),
            Limit {
                duration: secs(5),
                source: LimitSource::Default
            }
        );
    }

    #[test]
    fn a_hook_keeps_its_own_timeout_up_to_the_maximum() {
        let timeouts = HookTimeouts {
            default: secs(5),
            max: secs(60),
        };
        for own in [1, 5, 30, 60] {
            assert_eq!(
                timeouts.limit(Some(own)),
                Limit {
                    duration: secs(own as u64),
                    source: LimitSource::Hook
                }
            );
        }
        for over in [61, 3600, i64::MAX] {
            assert_eq!(
                timeouts.limit(Some(over)),
                Limit {
                    duration: secs(60),
                    source: LimitSource::Max
                },
                "{over}"
            );
        }
    }

    #[test]
    fn timeouts_of_zero_or_less_from_old_state_get_the_default() {
        let timeouts = HookTimeouts {
            default: secs(5),
            max: secs(60),
        };
        for bad in [0, -1, i64::MIN] {
            assert_eq!(timeouts.limit(Some(bad)).source, LimitSource::Default);
        }
    }

    #[test]
    fn a_default_above_the_maximum_is_capped() {
        let timeouts = HookTimeouts {
            default: secs(120),
            max: secs(60),
        };
        assert_eq!(
            timeouts.limit(None),
            Limit {
                duration: secs(60),
                source: LimitSource::Max
            }
        );
    }

    #[test]
    fn a_maximum_past_what_the_clock_can_tell_does_not_overflow() {
        let timeouts = HookTimeouts {
            default: secs(60),
            max: Duration::MAX,
        };
        let limit = timeouts.limit(Some(i64::MAX));
        assert_eq!(limit.duration, secs(i64::MAX as u64));
        assert!(limit.ran_past().contains("timeout of"));
    }

    #[test]
    fn messages_say_where_the_limit_came_from() {
        let timeouts = HookTimeouts {
            default: secs(1),
            max: secs(90),
        };
        assert_eq!(
            timeouts.limit(Some(2)).ran_past(),
            "ran past its timeout of 2s; killed"
        );
        assert!(timeouts
            .limit(None)
            .ran_past()
            .contains("timeout of 1s (berthd's --hook-timeout-default"));
        assert!(timeouts
            .limit(Some(3600))
            .ran_past()
            .contains("timeout of 1m 30s (capped to berthd's --hook-timeout-max)"));
    }

    fn hooks(json: serde_json::Value) -> oci_spec::runtime::Hooks {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn timeouts_of_zero_or_less_are_refused_by_name() {
        let hook = |timeout: i64| serde_json::json!({ "path": "/bin/true", "timeout": timeout });
        let untimed = serde_json::json!({ "path": "/bin/true" });
        let refusal = |json| check_timeouts(&hooks(json)).unwrap_err().to_string();
        assert!(check_timeouts(&hooks(serde_json::json!({
            "createRuntime": [hook(1), untimed, hook(i64::MAX)],
            "poststop": [hook(5)],
        })))
        .is_ok());
        assert_eq!(
            refusal(serde_json::json!({ "poststop": [hook(0)] })),
            "hooks.poststop[0].timeout must be greater than zero (it is 0)"
        );
        assert_eq!(
            refusal(serde_json::json!({ "createContainer": [hook(3), hook(-1)] })),
            "hooks.createContainer[1].timeout must be greater than zero (it is -1)"
        );
        assert_eq!(
            refusal(serde_json::json!({ "prestart": [hook(i64::MIN)] })),
            format!(
                "hooks.prestart[0].timeout must be greater than zero (it is {})",
                i64::MIN
            )
        );
    }

    #[test]
    fn a_failed_hook_is_named_by_kind_index_and_path() {
        let hook: Hook = serde_json::from_value(serde_json::json!({
            "path": "/bin/sh", "args": ["sh", "-c", "exit 3"],
        }))
        .unwrap();
        let fine: Hook =
            serde_json::from_value(serde_json::json!({ "path": "/bin/true" })).unwrap();
        let error = run_in_init(
            &[fine, hook],
            "startContainer",
            "{}",
            &HookTimeouts::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                HookError::Failed {
                    index: 1,
                    problem: Problem::Exited(3),
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "startContainer hook #1 (/bin/sh): exited with status 3"
        );
    }

    /// A child that never reads its stdin and never exits: the write does not block the
    /// wait, and the limit still applies.
    #[test]
    fn feed_and_wait_does_not_block_on_a_full_pipe() {
        let mut child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().map(OwnedFd::from);
        let started = std::time::Instant::now();
        let exited = feed_and_wait(
            child.id() as i32,
            stdin,
            &vec![b'x'; 1 << 20],
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(!exited);
        assert!(started.elapsed() < Duration::from_secs(5));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A child that exits without reading while another process holds its stdin open: the
    /// exit ends the wait, whatever is left unwritten.
    #[test]
    fn feed_and_wait_returns_when_the_child_exits() {
        let mut child = Command::new("sh")
            .args(["-c", "exec 3<&0; sleep 1000 >/dev/null & echo $!; exit 0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().map(OwnedFd::from);
        let exited = feed_and_wait(
            child.id() as i32,
            stdin,
            &vec![b'x'; 1 << 20],
            Duration::from_secs(u64::MAX),
        )
        .unwrap();
        assert!(exited);
        let output = child.wait_with_output().unwrap();
        let leftover: i32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(leftover),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
