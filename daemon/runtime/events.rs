//! Lifecycle events, fanned out to every WatchEvents subscriber and kept in a bounded replay
//! buffer for subscribers that reconnect. Publishing never waits for a subscriber: each has
//! a bounded backlog, and one that falls behind is told how many events it missed instead of
//! slowing anyone down.
use std::{
    collections::VecDeque,
    io::Read,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::sync::broadcast;

use crate::{
    error::{Error, Result},
    state::ExitRecord,
};

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
    /// For the exec kinds: which exec process.
    pub exec_id: Option<String>,
    /// For `ExecStarted` and `ExecExited`: the exec process's pid; for `Exited`: the init's.
    pub pid: Option<i32>,
    /// For `Exited` and `ExecExited`: how the process ended, when the daemon saw it.
    pub exit: Option<ExitRecord>,
    /// For `Deleted`: what the delete warned about.
    pub warnings: Vec<String>,
}

/// A subscriber's start: what it missed, then everything published after that.
#[derive(Debug)]
pub struct Subscription {
    /// It missed events the replay buffer no longer holds: how many, or 0 when that cannot
    /// be known (it resumes from another run of berthd). Comes before `replay`.
    pub lagged: Option<u64>,
    /// The buffered events it has not seen, oldest first.
    pub replay: Vec<Arc<Event>>,
    /// Every event published after the last of `replay` (or after the subscription).
    pub live: broadcast::Receiver<Arc<Event>>,
}

pub struct Events {
    /// This run of berthd: sequence numbers start again at 1 under a new one.
    instance: String,
    sender: broadcast::Sender<Arc<Event>>,
    /// Held while numbering, buffering and sending, and while a subscriber takes its replay
    /// and its receiver: so sequence numbers reach subscribers in order, and a replay ends
    /// exactly where the live events begin, without a gap or an event seen twice.
    published: Mutex<Published>,
}

struct Published {
    next_sequence: u64,
    /// The newest events, oldest first, at most `replay_capacity` of them.
    buffer: VecDeque<Arc<Event>>,
    replay_capacity: usize,
}

impl Events {
    /// `backlog`: how many events a subscriber may fall behind by before it misses some.
    /// `replay`: how many of the newest events are kept for subscribers that resume.
    pub fn new(backlog: usize, replay: usize) -> std::io::Result<Self> {
        Ok(Self {
            instance: new_instance()?,
            sender: broadcast::channel(backlog.max(1)).0,
            published: Mutex::new(Published {
                next_sequence: 1,
                buffer: VecDeque::new(),
                replay_capacity: replay,
            }),
        })
    }

    /// The name of this run of berthd, which every event it numbers carries.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn publish(
        &self,
        kind: EventKind,
        id: &str,
        exit: Option<ExitRecord>,
        warnings: Vec<String>,
    ) {
        self.emit(kind, id, None, None, exit, warnings);
    }

    /// The init of container `id` exited (with its pid, when one was recorded).
    pub fn publish_exit(&self, id: &str, pid: Option<i32>, exit: Option<ExitRecord>) {
        self.emit(EventKind::Exited, id, None, pid, exit, Vec::new());
    }

    /// An event of exec process `exec_id` of container `id`.
    pub fn publish_exec(
        &self,
        kind: EventKind,
        id: &str,
        exec_id: &str,
        pid: Option<i32>,
        exit: Option<ExitRecord>,
    ) {
        debug_assert!(matches!(
            kind,
            EventKind::ExecAdded | EventKind::ExecStarted | EventKind::ExecExited
        ));
        self.emit(kind, id, Some(exec_id.to_owned()), pid, exit, Vec::new());
    }

    fn emit(
        &self,
        kind: EventKind,
        id: &str,
        exec_id: Option<String>,
        pid: Option<i32>,
        exit: Option<ExitRecord>,
        warnings: Vec<String>,
    ) {
        let mut published = self.published();
        let event = Arc::new(Event {
            sequence: published.next_sequence,
            kind,
            id: id.to_owned(),
            at: SystemTime::now(),
            exec_id,
            pid,
            exit,
            warnings,
        });
        published.next_sequence += 1;
        tracing::debug!(sequence = event.sequence, ?kind, id, "event");
        published.buffer.push_back(event.clone());
        while published.buffer.len() > published.replay_capacity {
            published.buffer.pop_front();
        }
        // No subscriber is not an error: the buffer is all that is kept.
        let _ = self.sender.send(event);
    }

    /// A subscription resuming after event `after` of `instance`; with `after` 0, live
    /// events only. From another instance (or none), the subscriber cannot know what it
    /// missed: it gets `lagged` 0 and the whole buffer. From a sequence number the buffer no
    /// longer holds: `lagged` with how many are gone, and the whole buffer. A sequence number
    /// this instance has not reached yet is the caller's mistake.
    pub fn subscribe(&self, after: u64, instance: &str) -> Result<Subscription> {
        let published = self.published();
        let live = self.sender.subscribe();
        let oldest = published
            .buffer
            .front()
            .map_or(published.next_sequence, |event| event.sequence);
        let last = published.next_sequence - 1;
        let (lagged, first) = if after == 0 {
            (None, published.next_sequence)
        } else if instance != self.instance {
            (Some(0), oldest)
        } else if after > last {
            return Err(Error::SequenceAhead {
                after,
                last,
                instance: self.instance.clone(),
            });
        } else if after >= oldest - 1 {
            (None, after + 1)
        } else {
            (Some(oldest - 1 - after), oldest)
        };
        // The buffer numbers its events without a gap, `oldest` first.
        let skip = usize::try_from(first - oldest).unwrap_or(usize::MAX);
        let replay = published.buffer.iter().skip(skip).cloned().collect();
        Ok(Subscription {
            lagged,
            replay,
            live,
        })
    }

    fn published(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// 128 random bits from the kernel, in hex. Random rather than derived from the start time
/// or the pid, which two runs can share (a restart within the clock's resolution, or after a
/// clock step back; a pid reused after a reboot); and independent of the boot, since berthd
/// restarts within one.
fn new_instance() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events of `replay` capacity holding `count` published events.
    fn published(replay: usize, count: usize) -> Events {
        let events = Events::new(4, replay).unwrap();
        for _ in 0..count {
            events.publish(EventKind::Paused, "c1", None, Vec::new());
        }
        events
    }

    fn sequences(subscription: &Subscription) -> Vec<u64> {
        subscription.replay.iter().map(|e| e.sequence).collect()
    }

    #[test]
    fn each_run_has_its_own_instance() {
        let (one, two) = (published(1, 0), published(1, 0));
        assert_eq!(one.instance().len(), 32);
        assert_ne!(one.instance(), two.instance());
    }

    #[test]
    fn a_resume_replays_what_was_missed_and_goes_on_live_without_gap_or_repeat() {
        let events = published(8, 5);
        let mut subscription = events.subscribe(2, events.instance()).unwrap();
        assert_eq!(subscription.lagged, None);
        assert_eq!(sequences(&subscription), [3, 4, 5]);
        events.publish(EventKind::Resumed, "c1", None, Vec::new());
        assert_eq!(subscription.live.try_recv().unwrap().sequence, 6);
        assert!(subscription.live.try_recv().is_err());

        let caught_up = events.subscribe(6, events.instance()).unwrap();
        assert_eq!((caught_up.lagged, caught_up.replay.len()), (None, 0));
    }

    #[test]
    fn zero_is_live_only_whatever_the_instance() {
        let events = published(8, 3);
        for instance in ["", "other", events.instance()] {
            let subscription = events.subscribe(0, instance).unwrap();
            assert_eq!((subscription.lagged, subscription.replay.len()), (None, 0));
        }
    }

    #[test]
    fn a_resume_from_before_the_buffer_says_how_many_are_gone() {
        // 10 published, 4 kept: 7..=10. After 2, events 3..=6 are gone.
        let events = published(4, 10);
        let subscription = events.subscribe(2, events.instance()).unwrap();
        assert_eq!(subscription.lagged, Some(4));
        assert_eq!(sequences(&subscription), [7, 8, 9, 10]);
        // After 6 nothing is gone.
        let subscription = events.subscribe(6, events.instance()).unwrap();
        assert_eq!(subscription.lagged, None);
        assert_eq!(sequences(&subscription), [7, 8, 9, 10]);
    }

    #[test]
    fn another_instance_gets_an_unknown_loss_and_the_whole_buffer() {
        let events = published(4, 6);
        for instance in ["", "an-earlier-run"] {
            let subscription = events.subscribe(100, instance).unwrap();
            assert_eq!(subscription.lagged, Some(0));
            assert_eq!(sequences(&subscription), [3, 4, 5, 6]);
        }
    }

    #[test]
    fn without_a_buffer_every_resume_lags() {
        let events = published(0, 3);
        let subscription = events.subscribe(1, events.instance()).unwrap();
        assert_eq!(
            (subscription.lagged, subscription.replay.len()),
            (Some(2), 0)
        );
        let subscription = events.subscribe(3, events.instance()).unwrap();
        assert_eq!((subscription.lagged, subscription.replay.len()), (None, 0));
    }

    #[test]
    fn a_sequence_not_yet_numbered_is_refused() {
        let events = published(4, 3);
        let error = events.subscribe(4, events.instance()).unwrap_err();
        assert!(
            matches!(
                error,
                Error::SequenceAhead {
                    after: 4,
                    last: 3,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn exec_and_exit_events_carry_their_process() {
        let events = published(4, 0);
        events.publish_exec(EventKind::ExecStarted, "c1", "e1", Some(42), None);
        events.publish_exit("c1", Some(7), None);
        let replay = events.subscribe(1, "").unwrap().replay;
        assert_eq!(
            (replay[0].kind, replay[0].exec_id.as_deref(), replay[0].pid),
            (EventKind::ExecStarted, Some("e1"), Some(42))
        );
        assert_eq!(
            (replay[1].kind, replay[1].exec_id.as_deref(), replay[1].pid),
            (EventKind::Exited, None, Some(7))
        );
    }
}
