//! The library's one error type. Each variant carries the container id or path it is about;
//! `api` alone turns it into a gRPC status.
use std::path::PathBuf;

use crate::{quote::shorten, status::Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container ID format: {}", shorten(.0))]
    InvalidId(String),

    #[error("container does not exist: {id}")]
    NotFound { id: String },

    #[error("container already exists: {id}")]
    AlreadyExists { id: String },

    /// An operation the container's status forbids; `action` reads as "cannot <action>".
    #[error("cannot {action} container {id} that is {status}")]
    IncorrectStatus {
        id: String,
        action: &'static str,
        status: Status,
    },

    #[error("bundle {}: {reason}", path.display())]
    InvalidBundle { path: PathBuf, reason: String },

    #[error("bundle {}: {reason}", path.display())]
    BundleNotFound { path: PathBuf, reason: String },

    /// A config.json field berth does not implement; refused rather than ignored.
    #[error("{field} is not supported by berth")]
    Unsupported { field: String },

    /// A config.json field whose value cannot be honoured, found while setting the container
    /// up (so the caller's fault, decided where it is found).
    #[error("{field}: {reason}")]
    InvalidConfig { field: String, reason: String },

    #[error("invalid signal {0}: must be 1 to 64")]
    InvalidSignal(u32),

    /// An UpdateResources request that cannot be taken: a value that does not parse, or a
    /// field an update does not change.
    #[error("cannot update container {id}: {field}: {reason}")]
    InvalidUpdate {
        id: String,
        field: String,
        reason: String,
    },

    #[error("container {id}: {reason}")]
    Unavailable { id: String, reason: String },

    /// The helper or the container's init reported a failure while creating.
    #[error("container {id}: creating the init failed: {message}")]
    InitFailed {
        id: String,
        message: String,
        /// The cause is in the request (a missing executable, a bad mount source).
        caller_error: bool,
    },

    #[error("cgroup {} of container {id} overlaps cgroup {} of container {other}: a container's cgroup may not equal, contain or lie inside another's", path.display(), theirs.display())]
    CgroupTaken {
        id: String,
        path: PathBuf,
        other: String,
        theirs: PathBuf,
    },

    #[error("container init still running: {id}")]
    InitStillRunning { id: String },

    #[error("unable to destroy container: {id}: {cause}")]
    Destroy { id: String, cause: Box<Error> },

    /// A step of an operation on a container failed (a freeze, a kill of its tree); the
    /// cause decides the status code. `action` reads as "cannot <action>".
    #[error("cannot {action} container {id}: {cause}")]
    Operation {
        id: String,
        action: &'static str,
        cause: Box<Error>,
    },

    #[error("cannot delete container {id} that is not stopped: {status}")]
    NotStopped { id: String, status: Status },

    /// berthd cannot tell whether the init lives (delete.md D6): its fault, not the
    /// caller's, and only force (which kills the whole cgroup) gets past it.
    #[error("cannot delete container {id} whose status is unknown without force (which kills every process of its cgroup): {reason}")]
    StatusUnknown { id: String, reason: String },

    #[error("container {id} cannot be managed: state file {} is unreadable: {reason}", path.display())]
    CorruptState {
        id: String,
        path: PathBuf,
        reason: String,
    },

    #[error("invalid exec ID format: {}", shorten(.0))]
    InvalidExecId(String),

    #[error("container {id} has no exec process {exec_id}")]
    ExecNotFound { id: String, exec_id: String },

    #[error("container {id} already has an exec process {exec_id}")]
    ExecExists { id: String, exec_id: String },

    /// An operation the exec process's state forbids; `action` reads as "cannot <action>".
    #[error("cannot {action} exec process {exec_id} of container {id}: it {state}")]
    ExecIncorrectState {
        id: String,
        exec_id: String,
        action: &'static str,
        state: &'static str,
    },

    #[error("container {id} keeps {limit} exec processes that have not exited; delete some before adding more")]
    TooManyExecs { id: String, limit: usize },

    /// The exec helper or the process it was becoming reported a failure.
    #[error("container {id}: starting exec process {exec_id} failed: {message}")]
    ExecFailed {
        id: String,
        exec_id: String,
        message: String,
        /// The cause is in the request (a missing executable, a bad cwd).
        caller_error: bool,
    },
    /// A WatchEvents resume from a sequence number this run of berthd has not reached.
    #[error("cannot resume events after sequence {after} of instance {instance}: its last event so far is {last}")]
    SequenceAhead {
        after: u64,
        last: u64,
        instance: String,
    },

    #[error(transparent)]
    Label(#[from] crate::labels::LabelError),

    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),

    #[error(transparent)]
    Rdt(#[from] crate::rdt::RdtError),

    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),

    #[error(transparent)]
    Stdio(#[from] crate::stdio::StdioError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches what was being done, and to which path, to an `io::Error`.
pub trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for nix::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(std::io::Error::from).context(context)
    }
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

/// Names the container an operation failed on, for errors whose cause names only a path.
pub trait OnContainer<T> {
    fn on_container(self, action: &'static str, id: &impl std::fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> OnContainer<T> for std::result::Result<T, E> {
    fn on_container(self, action: &'static str, id: &impl std::fmt::Display) -> Result<T> {
        self.map_err(|cause| Error::Operation {
            id: id.to_string(),
            action,
            cause: Box::new(cause.into()),
        })
    }
}
