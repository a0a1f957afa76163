//! A container as the daemon knows it: its state file and the status derived from the
//! kernel on every call (delete.md section 3), never trusted from disk.
mod delete;

use std::{collections::BTreeMap, fmt, path::PathBuf, time::SystemTime};

use crate::{
    cgroups,
    id::ContainerId,
    state::{ContainerState, ExitRecord},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
    /// The state file could not be read, so nothing about the container can be checked.
    Unknown,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
            Status::Unknown => "unknown",
        })
    }
}

/// What the state directory holds.
#[derive(Debug)]
pub enum Record {
    Valid(ContainerState),
    /// state.json exists but does not parse (delete.md D5).
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug)]
pub struct Container {
    pub id: ContainerId,
    pub dir: PathBuf,
    pub record: Record,
}

/// A point-in-time view of a container, for callers and events.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub id: String,
    pub status: Status,
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    pub annotations: BTreeMap<String, String>,
    pub created: Option<SystemTime>,
    pub exit: Option<ExitRecord>,
    pub status_reason: String,
}

impl Container {
    /// First match wins: frozen, then init gone, then not yet started, else running.
    pub fn status(&self) -> Status {
        let Record::Valid(state) = &self.record else {
            return Status::Unknown;
        };
        if state.cgroup_dirs.iter().any(|dir| cgroups::is_frozen(dir)) {
            return Status::Paused;
        }
        match state.init {
            Some(init) if init.is_alive() => {
                if state.started {
                    Status::Running
                } else {
                    Status::Created
                }
            }
            _ => Status::Stopped,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let status = self.status();
        match &self.record {
            Record::Valid(state) => Snapshot {
                id: self.id.to_string(),
                status,
                pid: state.init.map(|init| init.pid),
                bundle: state.bundle.clone(),
                annotations: state.annotations.clone(),
                created: Some(state.created),
                exit: state.exit.clone(),
                status_reason: String::new(),
            },
            Record::Corrupt { path, reason } => Snapshot {
                id: self.id.to_string(),
                status,
                pid: None,
                bundle: PathBuf::new(),
                annotations: BTreeMap::new(),
                created: None,
                exit: None,
                status_reason: format!("cannot read {}: {reason}", path.display()),
            },
        }
    }
}
