//! OCI hooks: each runs with the container's OCI state on stdin, its args exactly as given
//! (argv[0] included), its env exactly as given (berthd's own when the hook names none, as
//! runc does), in its own process group so a timeout kills everything it started.
//!
//! berthd runs hooks through its reaper and waits asynchronously; the container's init
//! (a single-threaded process of its own) runs the container-namespace hooks and waits
//! on a pidfd.
use std::{
    io::Write,
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    time::Duration,
};

use oci_spec::runtime::Hook;
use tokio::io::AsyncWriteExt;

use crate::{
    error::{IoContext, Result},
    process::{ExitStatus, Reaper},
};

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

fn timeout(hook: &Hook) -> Option<Duration> {
    hook.timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64))
}

fn describe(kind: &str, index: usize, hook: &Hook, problem: impl std::fmt::Display) -> String {
    format!(
        "{kind} hook #{index} ({}): {problem}",
        hook.path().display()
    )
}

fn check_exit(exit: ExitStatus) -> std::result::Result<(), String> {
    match exit {
        ExitStatus { code: 0, .. } => Ok(()),
        ExitStatus { signal: 0, code } => Err(format!("exited with status {code}")),
        ExitStatus { signal, .. } => Err(format!("killed by signal {signal}")),
    }
}

fn kill_group(pid: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Runs one hook from berthd; `Err` says what went wrong, in one line.
pub async fn run(
    reaper: &Reaper,
    kind: &str,
    index: usize,
    hook: &Hook,
    state: &str,
) -> std::result::Result<(), String> {
    let (mut child, exit) = reaper
        .spawn(&mut command(hook))
        .map_err(|e| describe(kind, index, hook, format!("cannot start: {e}")))?;
    let pid = child.id() as i32;
    let stdin = child.stdin.take().expect("stdin is piped");
    let run = async {
        // A hook that ignores its stdin must not make the write fail or hang the delete.
        if let Ok(mut pipe) = tokio::net::unix::pipe::Sender::from_owned_fd(stdin.into()) {
            let _ = pipe.write_all(state.as_bytes()).await;
        }
        exit.await
    };
    let result = match timeout(hook) {
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(exit) => exit,
            Err(_) => {
                kill_group(pid);
                return Err(describe(
                    kind,
                    index,
                    hook,
                    format!("ran past its timeout of {}s; killed", limit.as_secs()),
                ));
            }
        },
        None => run.await,
    };
    let exit = result.map_err(|_| describe(kind, index, hook, "its exit status was lost"))?;
    check_exit(exit).map_err(|problem| describe(kind, index, hook, problem))
}

/// Runs hooks in order from the container's init; the first failure is fatal there.
pub fn run_in_init(hooks: &[Hook], kind: &str, state: &str) -> Result<()> {
    for (index, hook) in hooks.iter().enumerate() {
        run_blocking(hook, state)
            .map_err(|problem| std::io::Error::other(describe(kind, index, hook, problem)))
            .context(|| "run hooks".into())?;
    }
    Ok(())
}

fn run_blocking(hook: &Hook, state: &str) -> std::result::Result<(), String> {
    let mut child = command(hook)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state.as_bytes());
    }
    let pid = child.id() as i32;
    if let Some(limit) = timeout(hook) {
        let exited = crate::process::wait_child_exit(pid, limit).map_err(|e| e.to_string())?;
        if !exited {
            kill_group(pid);
            let _ = child.wait();
            return Err(format!(
                "ran past its timeout of {}s; killed",
                limit.as_secs()
            ));
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    use std::os::unix::process::ExitStatusExt;
    check_exit(ExitStatus {
        code: status.code().unwrap_or(128 + status.signal().unwrap_or(0)),
        signal: status.signal().unwrap_or(0) as u32,
    })
}
