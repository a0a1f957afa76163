//! KillContainer: a signal to the init, or to every process of the tree.
use std::path::PathBuf;

use crate::{
    container::Container,
    error::{Error, IoContext, OnContainer, Result},
};

/// The highest real-time signal on Linux.
const MAX_SIGNAL: u32 = 64;

pub(super) fn check_signal(signal: u32) -> Result<()> {
    if signal == 0 || signal > MAX_SIGNAL {
        return Err(Error::InvalidSignal(signal));
    }
    Ok(())
}

impl Container {
    /// Signals the init through its pidfd, or every process of the cgroup tree with `all`.
    /// A SIGKILL for a container that shares its PID namespace reaches the whole tree too:
    /// killing only its init would leave the rest running.
    /// `others`: the cgroup directories of every other registered container, never signalled.
    pub async fn kill(&mut self, signal: u32, all: bool, others: &[PathBuf]) -> Result<()> {
        check_signal(signal)?;
        let status = self.status();
        let state = self.state().ok_or(Error::IncorrectStatus {
            id: self.id.to_string(),
            action: "kill",
            status,
        })?;
        let whole_tree = all || (state.shares_pid_namespace && signal == libc::SIGKILL as u32);
        if whole_tree {
            if signal == libc::SIGKILL as u32 {
                return self.kill_all(others).await.on_container("kill", &self.id);
            }
            let others = others.to_vec();
            return self
                .with_cgroups(move |cgroups, dirs| {
                    cgroups.signal_all(dirs, &others, signal as i32);
                    Ok(())
                })
                .await;
        }
        match (&self.init, status) {
            (Some(init), status) if status.can_kill() => init
                .signal(signal as i32)
                .context(|| format!("signal {signal} to the init of container {}", self.id)),
            _ => Err(Error::IncorrectStatus {
                id: self.id.to_string(),
                action: "kill",
                status,
            }),
        }
    }
}
