//! DeleteContainer, after runc's delete (docs/delete.md). The decision (section 4), then
//! kill-and-wait (D7, D8), then destroy in order (D9-D14). Any failure before the state
//! directory goes leaves the container in place, so the next delete carries on (D12).
use crate::{
    blocking,
    container::{Container, Record, Runtime, Snapshot},
    error::{Error, IoContext, Result},
    fault, hooks, rdt,
    state::ExitRecord,
    status::{DeleteStep, Status},
};

/// What a successful delete hands back (delete.md D17).
#[derive(Debug, Default)]
pub struct DeleteOutcome {
    /// The container's last snapshot; `None` when the id was unknown and force was set.
    pub snapshot: Option<Snapshot>,
    pub warnings: Vec<String>,
    /// The init's exit (with its status when known), when this delete was first to see it.
    pub exited: Option<Option<ExitRecord>>,
    /// The status the delete found the container in, before any kill.
    pub found: Option<Status>,
}

impl Container {
    pub async fn delete(&mut self, runtime: &Runtime, force: bool) -> Result<DeleteOutcome> {
        let status = self.status();
        if let Record::Corrupt { path, reason } = &self.record {
            if !force {
                return Err(Error::CorruptState {
                    id: self.id.to_string(),
                    path: path.clone(),
                    reason: reason.clone(),
                });
            }
            let snapshot = self.snapshot();
            let warning = self.delete_unreadable(runtime).await?;
            return Ok(DeleteOutcome {
                snapshot: Some(snapshot),
                warnings: vec![warning],
                exited: None,
                found: Some(status),
            });
        }
        match status.delete_step(force) {
            DeleteStep::RefuseNotStopped => {
                return Err(Error::NotStopped {
                    id: self.id.to_string(),
                    status,
                })
            }
            DeleteStep::Destroy => {}
            DeleteStep::KillThenDestroy => self.kill_and_wait(runtime).await?,
        }
        // Taken once the init is gone, so it carries the exit status when berthd saw it.
        let exited = self.observe_exit().await;
        let snapshot = self.snapshot();
        let warnings = self.destroy(runtime).await?;
        Ok(DeleteOutcome {
            snapshot: Some(snapshot),
            warnings,
            exited,
            found: Some(status),
        })
    }

    /// D7, D8: SIGKILL, then wait for the init to go, a round at a time; a round ends the
    /// moment the init's pidfd reports the exit.
    pub(super) async fn kill_and_wait(&self, runtime: &Runtime) -> Result<()> {
        let Some(state) = self.state() else {
            return Ok(());
        };
        let frozen = self.cgroups.is_frozen(&state.cgroup_dirs);
        if state.shares_pid_namespace {
            self.with_cgroups(|cgroups, dirs| cgroups.kill_all(dirs))
                .await?;
        } else if let Some(init) = &self.init {
            init.signal(libc::SIGKILL)
                .context(|| format!("kill the init of container {}", self.id))?;
        }
        // On cgroup v1 a frozen task never handles the SIGKILL until it is thawed.
        if frozen {
            self.with_cgroups(|cgroups, dirs| cgroups.set_frozen(dirs, false))
                .await?;
        }
        let Some(init) = &self.init else {
            return Ok(());
        };
        for _ in 0..runtime.kill_wait_rounds {
            if init.has_exited() {
                return Ok(());
            }
            let _ = tokio::time::timeout(runtime.kill_wait_round, init.exited()).await;
        }
        if init.has_exited() {
            return Ok(());
        }
        Err(Error::InitStillRunning {
            id: self.id.to_string(),
        })
    }

    /// D9-D11: everything but the state directory.
    pub(super) async fn release_resources(&self) -> Result<()> {
        let Some(state) = self.state() else {
            return Ok(());
        };
        let shares_pid_namespace = state.shares_pid_namespace;
        let created = state.created_cgroup_dirs.clone();
        self.with_cgroups(move |cgroups, dirs| {
            if shares_pid_namespace {
                cgroups.kill_all(dirs)?;
            }
            cgroups.remove(dirs, &created)
        })
        .await?;
        if let Some(group) = &state.rdt {
            rdt::remove(group)?;
        }
        Ok(())
    }

    /// D9-D14. Returns the poststop hooks' warnings.
    async fn destroy(&mut self, runtime: &Runtime) -> Result<Vec<String>> {
        let fail = |cause: Error| Error::Destroy {
            id: self.id.to_string(),
            cause: Box::new(cause),
        };
        self.release_resources().await.map_err(fail)?;
        fault::point("after-cgroup-removed");
        let stopped_state = self.oci_state("stopped");
        remove_state_dir(&self.dir).map_err(fail)?;
        fault::point("after-state-dir-removed");
        let mut warnings = Vec::new();
        let poststop = self
            .state()
            .and_then(|s| s.hooks.as_ref())
            .and_then(|h| h.poststop().clone());
        for (index, hook) in poststop.iter().flatten().enumerate() {
            if let Err(warning) = hooks::run(runtime, "poststop", index, hook, &stopped_state).await
            {
                tracing::warn!(id = %self.id, warning, "poststop hook failed");
                warnings.push(warning);
            }
        }
        Ok(warnings)
    }

    /// D5 with force: nothing in the state file can be trusted, so the default cgroup path
    /// and the state directory go, and the caller is told what could not be checked.
    async fn delete_unreadable(&self, runtime: &Runtime) -> Result<String> {
        let relative = runtime.cgroup_parent.join(self.id.as_str());
        let plan = runtime.cgroups.plan(&relative, &runtime.cgroup_parent);
        let existing: Vec<_> = plan.dirs.into_iter().filter(|d| d.exists()).collect();
        let manager = runtime.cgroups.clone();
        blocking::run(move || {
            manager.kill_all(&existing)?;
            manager.remove(&existing, &existing)
        })
        .await
        .map_err(|cause| Error::Destroy {
            id: self.id.to_string(),
            cause: Box::new(cause.into()),
        })?;
        remove_state_dir(&self.dir)?;
        Ok(format!(
            "state of container {} was unreadable: only its default cgroup {} and its state directory were removed; \
             its processes, other cgroups, RDT group and poststop hooks could not be checked",
            self.id,
            relative.display()
        ))
    }
}

/// Where state directories go while they are removed (made when the registry loads): `~`
/// cannot occur in an id, so this never passes for a container.
pub const TOMBSTONES: &str = "~deleting";

/// D13, atomically: the directory is first renamed into `<root>/~deleting/`, so a crash
/// part-way through the removal leaves a tombstone (finished at the next start), never a
/// half-emptied directory that looks like a container. (A subdirectory, not a prefixed
/// name: an id may already be as long as a file name can be.)
///
/// A state directory holds two small files, so this runs on the caller's thread.
pub fn remove_state_dir(dir: &std::path::Path) -> Result<()> {
    let (Some(root), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Ok(());
    };
    let tombstone = root.join(TOMBSTONES).join(name);
    // One left by an earlier delete that could not finish would block the rename.
    match std::fs::remove_dir_all(&tombstone) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context(|| format!("remove {}", tombstone.display()))
        }
        _ => {}
    }
    match std::fs::rename(dir, &tombstone) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context(|| format!("remove state directory {}", dir.display())),
    }
    std::fs::remove_dir_all(&tombstone)
        .context(|| format!("remove state directory {}", tombstone.display()))
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc, time::SystemTime};

    use super::*;
    use crate::{
        cgroups::fake::{Call, Fake},
        id::ContainerId,
        state::{ContainerState, SCHEMA_VERSION},
        status::Status,
    };

    fn container(fake: &Arc<Fake>, shares_pid_namespace: bool) -> Container {
        let state = ContainerState {
            schema_version: SCHEMA_VERSION,
            id: "c1".into(),
            bundle: "/b".into(),
            created: SystemTime::UNIX_EPOCH,
            annotations: Default::default(),
            init: None,
            exit: None,
            shares_pid_namespace,
            cgroup_dirs: vec!["/fake/berth/c1".into()],
            created_cgroup_dirs: vec!["/fake/berth".into(), "/fake/berth/c1".into()],
            rdt: None,
            hooks: None,
        };
        Container::load(
            ContainerId::parse("c1").unwrap(),
            PathBuf::from("/nonexistent/c1"),
            Record::Valid(state),
            fake.clone(),
        )
    }

    fn remove_call() -> Call {
        Call::Remove {
            dirs: vec!["/fake/berth/c1".into()],
            created: vec!["/fake/berth".into(), "/fake/berth/c1".into()],
        }
    }

    #[tokio::test]
    async fn teardown_kills_what_a_shared_pid_namespace_left_before_removing() {
        let fake = Arc::new(Fake::default());
        container(&fake, true).release_resources().await.unwrap();
        assert_eq!(fake.calls(), [Call::KillAll, remove_call()]);
    }

    #[tokio::test]
    async fn teardown_of_an_own_pid_namespace_only_removes() {
        let fake = Arc::new(Fake::default());
        container(&fake, false).release_resources().await.unwrap();
        assert_eq!(fake.calls(), [remove_call()]);
    }

    #[tokio::test]
    async fn a_failed_removal_is_an_error_that_names_the_cgroup() {
        let fake = Arc::new(Fake::default());
        *fake.remove_fails.lock().unwrap() = true;
        let error = container(&fake, false)
            .release_resources()
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("remove cgroup /fake/berth/c1"),
            "{error}"
        );
    }

    #[test]
    fn a_frozen_cgroup_is_paused_whatever_the_init_does() {
        let fake = Arc::new(Fake::default());
        let container = container(&fake, false);
        // No init at all: stopped, until the cgroup reads frozen.
        assert_eq!(container.status(), Status::Stopped);
        *fake.frozen.lock().unwrap() = true;
        assert_eq!(container.status(), Status::Paused);
    }
}
