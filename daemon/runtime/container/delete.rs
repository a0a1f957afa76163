//! DeleteContainer, after runc's delete (docs/delete.md). The decision (section 4), then
//! kill-and-wait (D7, D8), then destroy in order (D9-D14). Any failure before the state
//! directory goes leaves the container in place, so the next delete carries on (D12).
use std::path::PathBuf;

use crate::{
    blocking, cgroups,
    container::{Container, Record, Runtime, Snapshot},
    error::{Error, IoContext, OnContainer, Result},
    fault,
    process::Liveness,
    rdt,
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
    /// `found`: the container as the caller found it under this delete's lease, whose
    /// status decides (derived once: each derivation reads the freezer). `others`: the
    /// cgroup directories of the other registered containers, which this delete must leave
    /// alone whatever they lie in; `others_rdt`: the RDT groups they record, which stay.
    pub async fn delete(
        &mut self,
        runtime: &Runtime,
        found: &Snapshot,
        force: bool,
        others: &[PathBuf],
        others_rdt: &[PathBuf],
    ) -> Result<DeleteOutcome> {
        let status = found.status;
        if let Record::Corrupt { path, reason } = &self.record {
            if !force {
                return Err(Error::CorruptState {
                    id: self.id.to_string(),
                    path: path.clone(),
                    reason: reason.clone(),
                });
            }
            let warning = self.delete_unreadable(runtime, others).await?;
            return Ok(DeleteOutcome {
                snapshot: Some(found.clone()),
                warnings: vec![warning],
                exited: None,
                found: Some(status),
            });
        }
        let step = status.delete_step(force);
        match step {
            DeleteStep::RefuseNotStopped => {
                return Err(Error::NotStopped {
                    id: self.id.to_string(),
                    status,
                })
            }
            // With a readable state, UNKNOWN is always the init that cannot be checked, and
            // the status says why.
            DeleteStep::RefuseUnknown => {
                return Err(Error::StatusUnknown {
                    id: self.id.to_string(),
                    reason: found.status_reason.clone(),
                })
            }
            DeleteStep::Destroy => {}
            DeleteStep::KillThenDestroy => self.kill_and_wait(runtime, others).await?,
            DeleteStep::KillTreeThenDestroy => self.kill_all(others).await?,
        }
        // Taken once the init is gone, so it carries the exit status when berthd saw it;
        // with nothing killed, the status is the one found.
        let mut exited = self.observe_exit().await;
        let mut snapshot = match step {
            DeleteStep::Destroy => found.clone(),
            _ => self.snapshot(),
        };
        if let Some(Some(record)) = &exited {
            snapshot.exit = Some(record.clone());
        }
        let warnings = match self.destroy(runtime, others, others_rdt).await {
            Ok(warnings) => warnings,
            Err(error) => {
                // Seen here, so no one else will see it: it must still be published.
                self.unpublished_exit = exited;
                return Err(error);
            }
        };
        if step == DeleteStep::KillTreeThenDestroy && !self.exit_observed {
            // Its cgroups are gone, so nothing that ran in them runs on.
            self.exit_observed = true;
            exited = Some(None);
        }
        Ok(DeleteOutcome {
            snapshot: Some(snapshot),
            warnings,
            exited,
            found: Some(status),
        })
    }

    /// D7, D8: SIGKILL, then wait for the init to go, a round at a time; a round ends the
    /// moment the init's pidfd reports the exit.
    pub(super) async fn kill_and_wait(
        &mut self,
        runtime: &Runtime,
        others: &[PathBuf],
    ) -> Result<()> {
        let Some(state) = self.state() else {
            return Ok(());
        };
        // An init without a pidfd is never signalled by pid (D6): its cgroup is.
        if state.shares_pid_namespace || self.init_by_start_time_only() {
            self.kill_all(others).await.on_container("kill", &self.id)?;
        } else if let Some(init) = &self.init {
            init.signal(libc::SIGKILL)
                .context(|| format!("kill the init of container {}", self.id))?;
        }
        // A frozen task never handles the SIGKILL until it is thawed: thawed whatever froze
        // it (a pause, a freeze left FREEZING), without waiting, since an ancestor's freeze
        // never lifts from here. One write that does not wait for the kernel, so on this
        // thread: a trip to the blocking pool costs a delete more than the write.
        let dirs = self.state().map(|state| state.cgroup_dirs.as_slice());
        self.cgroups
            .request_thaw(dirs.unwrap_or_default())
            .map_err(Error::from)
            .on_container("thaw", &self.id)?;
        if self.init_by_start_time_only() {
            // No pidfd to end a round early: by start time, a round at a time. One that can
            // no longer be checked is left to destroy, which kills what the cgroup holds.
            for _ in 0..runtime.kill_wait_rounds {
                if self.init_liveness() != Liveness::Alive {
                    return Ok(());
                }
                tokio::time::sleep(runtime.kill_wait_round).await;
            }
            if self.init_liveness() != Liveness::Alive {
                return Ok(());
            }
            return Err(Error::InitStillRunning {
                id: self.id.to_string(),
            });
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
    pub(super) async fn release_resources(
        &self,
        others: &[PathBuf],
        others_rdt: &[PathBuf],
    ) -> Result<()> {
        let Some(state) = self.state() else {
            return Ok(());
        };
        let shares_pid_namespace = state.shares_pid_namespace;
        let created = state.created_cgroup_dirs.clone();
        let others = others.to_vec();
        self.with_cgroups(move |cgroups, dirs| {
            if shares_pid_namespace {
                cgroups.kill_all(dirs, &others)?;
            }
            cgroups.remove(dirs, &created, &others)
        })
        .await?;
        if let Some(group) = &state.rdt {
            let (group, others_rdt) = (group.clone(), others_rdt.to_vec());
            blocking::run(move || rdt::remove(&group, &others_rdt)).await?;
        }
        Ok(())
    }

    /// D9-D14. Returns the poststop hooks' warnings.
    async fn destroy(
        &mut self,
        runtime: &Runtime,
        others: &[PathBuf],
        others_rdt: &[PathBuf],
    ) -> Result<Vec<String>> {
        let fail = |cause: Error| Error::Destroy {
            id: self.id.to_string(),
            cause: Box::new(cause),
        };
        self.release_resources(others, others_rdt)
            .await
            .map_err(fail)?;
        fault::point("after-cgroup-removed");
        self.dir.remove().map_err(fail)?;
        fault::point("after-state-dir-removed");
        let warnings = self
            .run_warning_hooks(runtime, "poststop", "stopped", |h| h.poststop())
            .await;
        Ok(warnings)
    }

    /// D5 with force: nothing in the state file can be trusted, so the default cgroup path
    /// and the state directory go, and the caller is told what could not be checked.
    async fn delete_unreadable(&self, runtime: &Runtime, others: &[PathBuf]) -> Result<String> {
        // Found as create made it: the same rules, the same (start-up normalised) parent.
        let relative = cgroups::relative_path(None, &runtime.cgroup_parent, self.id.as_str())
            .map_err(|reason| Error::Destroy {
                id: self.id.to_string(),
                cause: Box::new(Error::Unavailable {
                    id: self.id.to_string(),
                    reason,
                }),
            })?;
        let plan = runtime.cgroups.plan(&relative);
        let existing: Vec<_> = plan.dirs.into_iter().filter(|d| d.exists()).collect();
        let found = !existing.is_empty();
        let manager = runtime.cgroups.clone();
        let others = others.to_vec();
        blocking::run(move || {
            manager.kill_all(&existing, &others)?;
            manager.remove(&existing, &existing, &others)
        })
        .await
        .map_err(|cause| Error::Destroy {
            id: self.id.to_string(),
            cause: Box::new(cause.into()),
        })?;
        self.dir.remove()?;
        let cgroup = if found {
            format!(
                "its default cgroup {} (with its processes)",
                relative.display()
            )
        } else {
            format!(
                "no cgroup (none at its default path {})",
                relative.display()
            )
        };
        Ok(format!(
            "state of container {} was unreadable: {cgroup} and its state directory were removed; \
             its other cgroups, RDT group and poststop hooks could not be checked",
            self.id
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::SystemTime};

    use super::*;
    use crate::{
        cgroups::fake::{Call, Fake},
        id::ContainerId,
        state::{ContainerState, SCHEMA_VERSION},
        state_dir::StateRoot,
        status::Status,
    };

    fn container(fake: &Arc<Fake>, shares_pid_namespace: bool) -> Container {
        let root = tempfile::tempdir().unwrap();
        let dir = StateRoot::open(root.path())
            .unwrap()
            .dir(&ContainerId::parse("c1").unwrap());
        let state = ContainerState {
            schema_version: SCHEMA_VERSION,
            id: "c1".into(),
            bundle: "/b".into(),
            created: SystemTime::UNIX_EPOCH,
            annotations: Default::default(),
            init: None,
            boot_id: None,
            exit: None,
            shares_pid_namespace,
            cgroup_dirs: vec!["/fake/berth/c1".into()],
            created_cgroup_dirs: vec!["/fake/berth".into(), "/fake/berth/c1".into()],
            rdt: None,
            hooks: None,
            frozen_to_kill: false,
            execs: Default::default(),
            labels: Default::default(),
            resources: None,
        };
        Container::load(
            ContainerId::parse("c1").unwrap(),
            dir,
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
        container(&fake, true)
            .release_resources(&[], &[])
            .await
            .unwrap();
        assert_eq!(fake.calls(), [Call::KillAll, remove_call()]);
    }

    #[tokio::test]
    async fn teardown_of_an_own_pid_namespace_only_removes() {
        let fake = Arc::new(Fake::default());
        container(&fake, false)
            .release_resources(&[], &[])
            .await
            .unwrap();
        assert_eq!(fake.calls(), [remove_call()]);
    }

    #[tokio::test]
    async fn a_failed_removal_is_an_error_that_names_the_cgroup() {
        let fake = Arc::new(Fake::default());
        *fake.remove_fails.lock().unwrap() = true;
        let error = container(&fake, false)
            .release_resources(&[], &[])
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
