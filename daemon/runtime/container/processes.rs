//! WaitContainer and ListProcesses: what a caller may learn of a container's processes
//! without changing anything.
use std::path::PathBuf;

use crate::{container::Container, error::Result, state::ExitRecord};

impl Container {
    /// The init's exit once it has been seen: with its status when berthd reaped it, `None`
    /// inside when it could not (its parent was an earlier berthd, or there never was an
    /// init to wait for).
    pub fn seen_exit(&self) -> Option<Option<ExitRecord>> {
        self.exit_observed
            .then(|| self.state().and_then(|state| state.exit.clone()))
    }

    /// The pids of the container's cgroup trees, ascending; `others` as for kill.
    pub async fn processes(&self, others: Vec<PathBuf>) -> Result<Vec<i32>> {
        self.with_cgroups(move |cgroups, dirs| {
            Ok(cgroups.processes(dirs, &others).into_iter().collect())
        })
        .await
    }
}
