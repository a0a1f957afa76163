//! What the shim knows of a containerd task: which berth container it is, and for each of
//! its processes the pid and, once berthd told, how it ended. Everything else is asked of
//! berthd when containerd asks.
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
};

use containerd_shim::{
    protos::api::Mount, protos::protobuf::well_known_types::timestamp::Timestamp,
};
use tokio::sync::watch;

use crate::{berthd::Client, stdio::Stdio};

/// How a process ended, as containerd reports it: the exit code, or 128 + the signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

impl Exit {
    /// containerd's code for an exit whose status was lost (berthd's too).
    pub const UNKNOWN_STATUS: u32 = 255;

    /// From berthd's account; `None` when berthd could not see the exit.
    pub fn from_berth(exit: Option<&berth_api::ExitStatus>) -> Self {
        let at = exit
            .and_then(|exit| exit.exited_at)
            .and_then(|at| SystemTime::try_from(at).ok())
            .unwrap_or_else(SystemTime::now);
        Self {
            status: exit.map_or(Self::UNKNOWN_STATUS, |exit| exit.code as u32),
            at,
        }
    }
}

/// A point in time as containerd's messages carry it.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// The init or an exec process.
pub struct Process {
    pid: AtomicU32,
    exit: watch::Sender<Option<Exit>>,
    pub stdio: Stdio,
    /// The shim's side of the stdio, from create (or exec) to delete.
    pub attachment: tokio::sync::Mutex<Option<crate::stdio::Attachment>>,
}

impl Process {
    pub fn new(stdio: Stdio) -> Self {
        Self {
            pid: AtomicU32::new(0),
            exit: watch::Sender::new(None),
            stdio,
            attachment: tokio::sync::Mutex::new(None),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    pub fn set_pid(&self, pid: u32) {
        if pid != 0 {
            self.pid.store(pid, Ordering::Relaxed);
        }
    }

    /// Keeps the first exit it is told; true when this was it (so it is published once).
    pub fn record_exit(&self, exit: Exit) -> bool {
        self.exit.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(exit);
            true
        })
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Returns once the process has exited.
    pub async fn exited(&self) -> Exit {
        let mut exit = self.exit.subscribe();
        let exited = exit
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives as long as self");
        exited.expect("waited for it")
    }
}

/// One containerd task: a berth container.
pub struct Container {
    /// containerd's id.
    pub id: String,
    pub namespace: String,
    pub berth_id: String,
    pub bundle: PathBuf,
    /// The mounts containerd gave at create, for the create event.
    pub rootfs: Vec<Mount>,
    pub client: Client,
    /// berthd's socket, for messages.
    pub socket: PathBuf,
    pub init: Process,
    execs: Mutex<HashMap<String, Arc<Process>>>,
}

impl Container {
    pub fn new(
        id: String,
        namespace: String,
        bundle: PathBuf,
        rootfs: Vec<Mount>,
        (client, socket): (Client, PathBuf),
        stdio: Stdio,
    ) -> Self {
        Self {
            berth_id: crate::naming::berth_id(&namespace, &id),
            id,
            namespace,
            bundle,
            rootfs,
            client,
            socket,
            init: Process::new(stdio),
            execs: Mutex::new(HashMap::new()),
        }
    }

    pub fn exec(&self, exec_id: &str) -> Option<Arc<Process>> {
        self.execs.lock().unwrap().get(exec_id).cloned()
    }

    /// Reserves `exec_id`; false when it is taken.
    pub fn add_exec(&self, exec_id: &str, process: Arc<Process>) -> bool {
        let mut execs = self.execs.lock().unwrap();
        if execs.contains_key(exec_id) {
            return false;
        }
        execs.insert(exec_id.to_owned(), process);
        true
    }

    pub fn remove_exec(&self, exec_id: &str) -> Option<Arc<Process>> {
        self.execs.lock().unwrap().remove(exec_id)
    }

    pub fn execs(&self) -> Vec<(String, Arc<Process>)> {
        let execs = self.execs.lock().unwrap();
        execs
            .iter()
            .map(|(id, process)| (id.clone(), process.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_exit_is_kept_and_wakes_the_waiters() {
        let process = Arc::new(Process::new(Stdio::default()));
        let waiter = tokio::spawn({
            let process = process.clone();
            async move { process.exited().await }
        });
        let first = Exit {
            status: 3,
            at: SystemTime::UNIX_EPOCH,
        };
        assert!(process.record_exit(first));
        assert!(!process.record_exit(Exit {
            status: 255,
            at: SystemTime::now()
        }));
        assert_eq!(waiter.await.unwrap(), first);
        assert_eq!(process.exit(), Some(first));
    }

    #[test]
    fn an_exit_berthd_did_not_see_is_255() {
        assert_eq!(Exit::from_berth(None).status, Exit::UNKNOWN_STATUS);
        let signalled = berth_api::ExitStatus {
            code: 137,
            signal: 9,
            exited_at: Some(prost_types::Timestamp {
                seconds: 5,
                nanos: 0,
            }),
        };
        let exit = Exit::from_berth(Some(&signalled));
        assert_eq!(exit.status, 137);
        assert_eq!(
            exit.at,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5)
        );
    }
}
