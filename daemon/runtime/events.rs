//! Lifecycle events, fanned out to every WatchEvents subscriber. Publishing never waits for
//! a subscriber: each has a bounded buffer, and one that falls behind is told how many
//! events it missed instead of slowing anyone down.
use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::sync::broadcast;

use crate::state::ExitRecord;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Paused,
    Resumed,
    Exited,
    Deleted,
    Oom,
    ExecAdded,
    ExecStarted,
    ExecExited,
}

#[derive(Clone, Debug)]
pub struct Event {
    pub sequence: u64,
    pub kind: EventKind,
    pub id: String,
    pub at: SystemTime,
    /// For `Exited`: how the init ended, when the daemon saw it.
    pub exit: Option<ExitRecord>,
    /// For `Deleted`: what the delete warned about.
    pub warnings: Vec<String>,
    /// For the exec kinds: the exec process.
    pub exec_id: Option<String>,
    /// For `ExecStarted` and `ExecExited`: the exec process's pid.
    pub pid: Option<i32>,
}

pub struct Events {
    sender: broadcast::Sender<Arc<Event>>,
    /// Held while numbering and sending, so sequence numbers reach subscribers in order.
    next_sequence: Mutex<u64>,
}

impl Events {
    /// `backlog`: how many events a subscriber may fall behind by before it misses some.
    pub fn new(backlog: usize) -> Self {
        Self {
            sender: broadcast::channel(backlog.max(1)).0,
            next_sequence: Mutex::new(1),
        }
    }

    pub fn publish(
        &self,
        kind: EventKind,
        id: &str,
        exit: Option<ExitRecord>,
        warnings: Vec<String>,
    ) {
        self.send(Event {
            sequence: 0,
            kind,
            id: id.to_owned(),
            at: SystemTime::now(),
            exit,
            warnings,
            exec_id: None,
            pid: None,
        });
    }

    pub fn publish_exec(
        &self,
        kind: EventKind,
        id: &str,
        exec_id: &str,
        pid: Option<i32>,
        exit: Option<ExitRecord>,
    ) {
        self.send(Event {
            sequence: 0,
            kind,
            id: id.to_owned(),
            at: SystemTime::now(),
            exit,
            warnings: Vec::new(),
            exec_id: Some(exec_id.to_owned()),
            pid,
        });
    }

    /// Numbers the event and sends it.
    fn send(&self, mut event: Event) {
        let mut next = self.next_sequence.lock().unwrap_or_else(|e| e.into_inner());
        event.sequence = *next;
        *next += 1;
        tracing::debug!(sequence = event.sequence, kind = ?event.kind, id = event.id, "event");
        // No subscriber is not an error: events are not stored.
        let _ = self.sender.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}
