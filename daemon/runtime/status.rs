//! A container's status (delete.md section 3), derived from the kernel on every call, and
//! what each status allows. A leaf: it knows nothing of how the facts are read.
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
    /// berthd cannot tell: the state file could not be read (delete.md D5), or whether the
    /// init lives cannot be checked (no pidfd, and /proc does not tell; D6).
    Unknown,
}

/// What the status is derived from.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub state_readable: bool,
    /// The container's own freezer is set.
    pub frozen: bool,
    pub init_alive: bool,
    /// Why berthd cannot tell whether the init lives; `init_alive` means nothing then.
    pub init_unknown: Option<String>,
    /// The init still waits on the FIFO StartContainer removes.
    pub exec_fifo: bool,
}

/// What DeleteContainer does for a status (delete.md section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteStep {
    /// Destroy what is there.
    Destroy,
    /// Kill the init (or the whole tree), wait for it, then destroy.
    KillThenDestroy,
    /// Refused: the container is not stopped and force was not given.
    RefuseNotStopped,
    /// Refused: berthd cannot tell whether the init lives and force was not given.
    RefuseUnknown,
    /// There is no init to signal or wait for: kill every process of the cgroup tree,
    /// then destroy.
    KillTreeThenDestroy,
}

impl Status {
    /// First match wins: unreadable, frozen, init liveness unknown, init gone, not yet
    /// started, else running.
    pub fn derive(facts: &Facts) -> Self {
        match facts {
            Facts {
                state_readable: false,
                ..
            } => Status::Unknown,
            Facts { frozen: true, .. } => Status::Paused,
            Facts {
                init_unknown: Some(_),
                ..
            } => Status::Unknown,
            Facts {
                init_alive: false, ..
            } => Status::Stopped,
            Facts {
                exec_fifo: true, ..
            } => Status::Created,
            _ => Status::Running,
        }
    }

    pub fn can_start(self) -> bool {
        self == Status::Created
    }

    /// Signals go to a live init; a stopped one has nothing to receive them.
    pub fn can_kill(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }

    pub fn can_pause(self) -> bool {
        matches!(self, Status::Created | Status::Running)
    }

    pub fn can_resume(self) -> bool {
        self == Status::Paused
    }

    /// runc update's rule: limits change while there is an init in the cgroups.
    pub fn can_update(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }

    /// runc's guard: a running or paused container goes only with force; a created one is
    /// killed first; force also sweeps what a dead init of a shared PID namespace left.
    /// One whose init berthd cannot check goes only with force, which kills what its
    /// cgroup holds.
    pub fn delete_step(self, force: bool) -> DeleteStep {
        match (self, force) {
            (Status::Running | Status::Paused, false) => DeleteStep::RefuseNotStopped,
            (Status::Unknown, false) => DeleteStep::RefuseUnknown,
            (Status::Unknown, true) => DeleteStep::KillTreeThenDestroy,
            (Status::Stopped, false) => DeleteStep::Destroy,
            _ => DeleteStep::KillThenDestroy,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_follows_delete_md_section_3() {
        let facts = |state_readable, frozen, init_alive, exec_fifo| Facts {
            state_readable,
            frozen,
            init_alive,
            init_unknown: None,
            exec_fifo,
        };
        let unknown = |facts: Facts| Facts {
            init_unknown: Some("cannot open a pidfd".into()),
            ..facts
        };
        for (input, expected) in [
            (facts(false, true, true, true), Status::Unknown),
            (facts(true, true, true, true), Status::Paused),
            // A frozen cgroup whose init died still reads paused: delete --force thaws it.
            (facts(true, true, false, false), Status::Paused),
            (facts(true, false, false, true), Status::Stopped),
            (facts(true, false, true, true), Status::Created),
            (facts(true, false, true, false), Status::Running),
            // An init berthd cannot check is never taken for dead (nor for alive).
            (unknown(facts(true, false, false, false)), Status::Unknown),
            (unknown(facts(true, false, true, true)), Status::Unknown),
            (unknown(facts(false, false, false, false)), Status::Unknown),
            // The freezer still comes first: a paused container is refused either way.
            (unknown(facts(true, true, false, false)), Status::Paused),
        ] {
            assert_eq!(Status::derive(&input), expected, "{input:?}");
        }
    }

    #[test]
    fn predicates() {
        use Status::*;
        let all = [Created, Running, Paused, Stopped, Unknown];
        let which = |p: fn(Status) -> bool| all.into_iter().filter(|s| p(*s)).collect::<Vec<_>>();
        assert_eq!(which(Status::can_start), [Created]);
        assert_eq!(which(Status::can_kill), [Created, Running, Paused]);
        assert_eq!(which(Status::can_pause), [Created, Running]);
        assert_eq!(which(Status::can_resume), [Paused]);
        assert_eq!(which(Status::can_update), [Created, Running, Paused]);
    }

    #[test]
    fn the_delete_guard_table() {
        use DeleteStep::*;
        use Status::*;
        for (status, force, step) in [
            (Created, false, KillThenDestroy),
            (Created, true, KillThenDestroy),
            (Running, false, RefuseNotStopped),
            (Running, true, KillThenDestroy),
            (Paused, false, RefuseNotStopped),
            (Paused, true, KillThenDestroy),
            (Stopped, false, Destroy),
            (Stopped, true, KillThenDestroy),
            (Unknown, false, RefuseUnknown),
            (Unknown, true, KillTreeThenDestroy),
        ] {
            assert_eq!(status.delete_step(force), step, "{status} force={force}");
        }
    }
}
