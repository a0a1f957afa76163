//! The daemon's containers by id, kept in step with the state root (delete.md D3).
//!
//! Every call on an id holds that id's async lock for its whole duration, so calls on one
//! id are serialised and calls on different ids never wait on each other (D15). The map
//! itself is only locked for lookups, never across an await.
use std::{
    collections::BTreeMap,
    io,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
};

use tokio::sync::{watch, OwnedMutexGuard};

use crate::{
    blocking,
    cgroups::{self, OomWatch},
    container::{
        Container, CreateRequest, DeleteOutcome, ExecRequest, ExecSnapshot, ExecState, Others,
        Record, Runtime, Snapshot, Started, Status,
    },
    error::{Error, Result},
    events::{EventKind, Events},
    freezers::{CaughtUp, FreezerWatch},
    id::{ContainerId, ExecId},
    labels::Selector,
    process::Pidfd,
    rdt::RdtGroup,
    state::{ContainerState, ExitRecord},
    state_dir::StateDir,
};

type Slot = Arc<SlotState>;

#[derive(Default)]
struct SlotState {
    /// `None` while the id is unknown: a caller holding the lock may create it; a caller
    /// that waited for a delete finds it gone.
    container: Arc<tokio::sync::Mutex<Option<Container>>>,
    /// The container as the current lease holder found it when its operation began: what
    /// Get and List answer while a long operation (a delete waiting for its init, a hook)
    /// holds the lock. Unused while the lock is free (behind a pointer: most slots never
    /// hold one; shared, since the holder decides by it too).
    last_seen: Mutex<Option<Arc<Snapshot>>>,
    /// The container's cgroup directories and the levels berth made for it, readable
    /// without its lease: no other container may be placed in, above or below its
    /// directories, nor may an operation on another touch them.
    cgroups: Mutex<cgroups::Plan>,
    /// The RDT group the container joined, readable without its lease: a group berth made
    /// stays while any container records it.
    rdt: Mutex<Option<RdtGroup>>,
    /// The init's exit once announced (with its status when known), for waiters, who hold
    /// no lease: they outlive a delete of the container, which announces the exit it saw.
    /// Made at the first announcement or wait (a channel costs some 400 bytes, and most of
    /// a large registry's containers are never waited for).
    exits: OnceLock<watch::Sender<Option<Option<ExitRecord>>>>,
    /// The exits of exec processes announced so far, by exec id, for waiters likewise.
    exec_exits: OnceLock<watch::Sender<BTreeMap<String, Option<ExitRecord>>>>,
}

impl SlotState {
    fn new(container: Container) -> Self {
        let cgroups = container
            .state()
            .map(|state| cgroups::Plan {
                dirs: state.cgroup_dirs.clone(),
                created: state.created_cgroup_dirs.clone(),
            })
            .unwrap_or_default();
        let rdt = container.state().and_then(|state| state.rdt.clone());
        Self {
            container: Arc::new(tokio::sync::Mutex::new(Some(container))),
            last_seen: Mutex::default(),
            cgroups: Mutex::new(cgroups),
            rdt: Mutex::new(rdt),
            exits: OnceLock::new(),
            exec_exits: OnceLock::new(),
        }
    }

    /// Publishes the init's exit, and ends every wait on it.
    fn announce_exit(&self, container: &Container, exit: Option<ExitRecord>, events: &Events) {
        let pid = container
            .state()
            .and_then(|state| state.init)
            .map(|init| init.pid);
        events.publish_exit(container.id.as_str(), pid, exit.clone());
        self.exits().send_replace(Some(exit));
    }

    fn exits(&self) -> &watch::Sender<Option<Option<ExitRecord>>> {
        self.exits.get_or_init(watch::Sender::default)
    }

    fn exec_exits(&self) -> &watch::Sender<BTreeMap<String, Option<ExitRecord>>> {
        self.exec_exits.get_or_init(watch::Sender::default)
    }

    fn cgroups(&self) -> std::sync::MutexGuard<'_, cgroups::Plan> {
        self.cgroups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rdt(&self) -> std::sync::MutexGuard<'_, Option<RdtGroup>> {
        self.rdt.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn last_seen(&self) -> std::sync::MutexGuard<'_, Option<Arc<Snapshot>>> {
        self.last_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The container now, or as the operation in progress on it found it; `None` when it
    /// does not exist (yet) or does not match `selector`, whose status is then not derived.
    fn current(&self, selector: &Selector, freezers: &CaughtUp) -> Option<Snapshot> {
        match self.container.try_lock() {
            Ok(guard) => guard
                .as_ref()
                .filter(|container| selector.matches(container.labels()))
                .map(|container| container.listed(freezers)),
            Err(_) => self
                .last_seen()
                .as_deref()
                .filter(|snapshot| selector.matches(&snapshot.labels))
                .cloned(),
        }
    }
}

pub struct Registry {
    runtime: Runtime,
    slots: Mutex<BTreeMap<ContainerId, Slot>>,
    freezers: Arc<FreezerWatch>,
    pub events: Arc<Events>,
}

/// The cores List spreads its work over, looked up once: std reads the cgroup's CPU quota
/// for it on every call.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// At load, before anything is served: a kill that froze the container's cgroup did not get
/// to thaw it (berthd died in between). Thawed, or the container would read as paused.
fn thaw_left_by_a_kill(
    runtime: &Runtime,
    id: &ContainerId,
    dir: &StateDir,
    mut state: ContainerState,
) -> ContainerState {
    tracing::info!(id = %id, "thawing what an interrupted kill froze");
    let thawed = runtime
        .cgroups
        .request_thaw(&state.cgroup_dirs)
        .map_err(Error::from)
        .and_then(|()| {
            state.frozen_to_kill = false;
            dir.save(&state)
        });
    if let Err(e) = thawed {
        tracing::warn!(id = %id, error = %e, "cannot thaw what an interrupted kill froze");
    }
    state
}

/// One state directory's container; `None` for a create that died before writing
/// state.json (left for D4).
fn load_slot(runtime: &Runtime, id: ContainerId, dir: StateDir) -> Option<(ContainerId, Slot)> {
    let record = match dir.load() {
        Ok(Some(state)) if state.id == id.as_str() => Record::Valid(state),
        Ok(Some(state)) => Record::Corrupt {
            path: dir.state_file(),
            reason: format!("it names container {:?}", state.id),
        },
        Ok(None) => return None,
        Err(error) => Record::Corrupt {
            path: dir.state_file(),
            reason: error.to_string(),
        },
    };
    let record = match record {
        Record::Valid(state) if state.frozen_to_kill => {
            Record::Valid(thaw_left_by_a_kill(runtime, &id, &dir, state))
        }
        record => record,
    };
    if let Record::Corrupt { path, reason } = &record {
        tracing::warn!(id = %id, path = %path.display(), reason, "state file unreadable; container is UNKNOWN");
    }
    let container = Container::load(id.clone(), dir, record, runtime.cgroups.clone());
    Some((id, Arc::new(SlotState::new(container))))
}

/// `work` on each of `items`, spread over the cores: one share on this thread, each other
/// on a thread of its own. Those enter this thread's tokio runtime, since the pidfd of a
/// live init registers with its reactor. (This thread's share goes into the main heap,
/// which grows in steps of 128 KiB; glibc grows a thread's heap page by page, an mprotect
/// each.)
fn across_cores<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> Option<R> + Sync) -> Vec<R> {
    let mut shares = shares(items);
    let own = shares.pop().unwrap_or_default();
    let (reactor, work) = (tokio::runtime::Handle::current(), &work);
    std::thread::scope(|scope| {
        let others: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let reactor = &reactor;
                scope.spawn(move || {
                    let _entered = reactor.enter();
                    share.into_iter().filter_map(work).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut done: Vec<R> = own.into_iter().filter_map(work).collect();
        for other in others {
            done.extend(
                other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        done
    })
}

/// Below this many items a share is not worth a thread of its own: starting one costs about
/// what loading a few dozen containers does. (A small registry thus loads in order on the
/// calling thread, which the fault tests of the load rely on.)
const SMALLEST_SHARE: usize = 64;

/// `items` in one share per core, in order, none smaller than [`SMALLEST_SHARE`].
fn shares<T>(mut items: Vec<T>) -> Vec<Vec<T>> {
    let size = items.len().div_ceil(cores()).max(SMALLEST_SHARE);
    let mut shares = Vec::with_capacity(cores());
    while !items.is_empty() {
        let rest = items.split_off(size.min(items.len()));
        shares.push(std::mem::replace(&mut items, rest));
    }
    shares
}

fn report_ooms(events: Arc<Events>, id: ContainerId, watch: cgroups::Result<Option<OomWatch>>) {
    let watch = match watch {
        Ok(Some(watch)) => watch,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(id = %id, error = %e, "cannot watch for OOM kills");
            return;
        }
    };
    tokio::spawn(async move {
        // SAFETY: the AsyncFd owns the watch, whose fd stays open while registered.
        let Ok(mut watch) = (unsafe { tokio::io::unix::AsyncFd::register(watch) }) else {
            return;
        };
        loop {
            let Ok(mut ready) = watch.readable_mut().await else {
                return;
            };
            let kills = ready.get_inner_mut().take();
            ready.clear_ready();
            match kills {
                None => return,
                Some(0) => continue,
                Some(_) => {
                    tracing::info!(id = %id, "container ran out of memory");
                    events.publish(EventKind::Oom, id.as_str(), None, Vec::new());
                }
            }
        }
    });
}

/// Publishes the init's exit once, whoever sees it first: the exit watcher or a caller
/// holding the lease.
async fn report_exit(slot: &SlotState, container: &mut Container, events: &Events) {
    if let Some(exit) = container.observe_exit().await {
        tracing::info!(id = %container.id, ?exit, "container init exited");
        slot.announce_exit(container, exit, events);
    }
}

impl Registry {
    /// Reads every `<root>/<id>/state.json`, spread over the cores. A directory without one
    /// is a create that died early and is left for delete (D4); a state file that does not
    /// parse is kept as an UNKNOWN container that says why (D5).
    pub fn load(runtime: Runtime, events: Events) -> Result<Self> {
        let root = runtime.root.path();
        // Before the load, so that the watch's descriptor is not one that the load's pidfds
        // have used up (a load short of descriptors falls back without them).
        let freezers = Arc::new(FreezerWatch::new());
        let slots: BTreeMap<ContainerId, Slot> = across_cores(runtime.root.dirs()?, |(id, dir)| {
            load_slot(&runtime, id, dir)
        })
        .into_iter()
        .collect();
        tracing::info!(root = %root.display(), containers = slots.len(), "registry loaded");
        let registry = Self {
            slots: Mutex::new(slots),
            freezers,
            events: Arc::new(events),
            runtime,
        };
        let mut running = Vec::new();
        for slot in registry.slots().values() {
            let mut guard = slot
                .container
                .try_lock()
                .expect("nobody else holds a lock yet");
            let Some(container) = guard.as_mut() else {
                continue;
            };
            if container.exited_while_away() {
                // Seen at start-up, with no status: berthd was not there to reap it.
                slot.announce_exit(container, None, &registry.events);
            }
            if let Some(init) = container.init.clone() {
                registry.watch_exit(slot.clone(), init);
                if let Some(state) = container.state() {
                    running.push((container.id.clone(), state.cgroup_dirs.clone()));
                }
            }
            for started in container.adopt_execs() {
                registry.watch_exec(slot.clone(), &container.id, started);
            }
        }
        registry.watch_oom_of_loaded(running);
        Ok(registry)
    }

    /// Records and announces an exec process's exit. The container may be gone by then
    /// (a delete kills its exec processes): the exit is announced all the same, so waits
    /// end with it.
    fn watch_exec(&self, slot: Slot, id: &ContainerId, started: Started) {
        let (events, id) = (self.events.clone(), id.clone());
        tokio::spawn(async move {
            let (exec_id, pid) = (started.exec_id.clone(), started.process.pid);
            let exit = started.exited().await;
            tracing::info!(id = %id, exec_id, pid, ?exit, "exec process exited");
            if let Some(container) = slot.container.lock().await.as_mut() {
                if let Err(e) = container.record_exec_exit(&exec_id, exit.clone()).await {
                    tracing::warn!(id = %id, exec_id, error = %e, "cannot record the exit of an exec process");
                }
            }
            events.publish_exec(
                EventKind::ExecExited,
                id.as_str(),
                &exec_id,
                Some(pid),
                exit.clone(),
            );
            slot.exec_exits().send_modify(|exits| {
                exits.insert(exec_id, exit);
            });
        });
    }

    /// Reports the init's exit the moment it happens, unless a lease holder saw it first.
    fn watch_exit(&self, slot: Slot, init: Arc<Pidfd>) {
        let events = self.events.clone();
        tokio::spawn(async move {
            init.exited().await;
            if let Some(container) = slot.container.lock().await.as_mut() {
                report_exit(&slot, container, &events).await;
            }
        });
    }

    /// Reports each out-of-memory event of the container's memory cgroup as it happens.
    fn watch_oom(&self, container: &Container) {
        if let Some(state) = container.state() {
            let watch = self.runtime.cgroups.oom_watch(&state.cgroup_dirs);
            report_ooms(self.events.clone(), container.id.clone(), watch);
        }
    }

    /// `watch_oom` for the containers found running at load, on the blocking pool while
    /// berthd goes on starting: a watch costs cgroup files and an eventfd. An OOM kill
    /// before its watch exists goes unreported, as one while berthd was down does.
    fn watch_oom_of_loaded(&self, loaded: Vec<(ContainerId, Vec<PathBuf>)>) {
        if loaded.is_empty() {
            return;
        }
        let (cgroups, events) = (self.runtime.cgroups.clone(), self.events.clone());
        tokio::spawn(async move {
            let watches = blocking::run(move || {
                loaded
                    .into_iter()
                    .map(|(id, dirs)| {
                        let watch = cgroups.oom_watch(&dirs);
                        (id, watch)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            for (id, watch) in watches {
                report_ooms(events.clone(), id, watch);
            }
        });
    }

    /// The cgroup directories of the other registered containers that equal, contain or
    /// lie inside one of `id`'s: the only ones a listing, a kill or a removal of `id`'s
    /// trees can meet. All of them while `id`'s are not known (an unreadable state.json,
    /// whose delete goes by its default path). Each is compared before it is cloned: this
    /// runs on every delete, and a registry may hold thousands of containers.
    fn others_cgroups(&self, id: &ContainerId) -> Vec<PathBuf> {
        let slots = self.slots();
        let ours = slots.get(id).map(|slot| slot.cgroups());
        let ours = ours.as_deref().filter(|ours| !ours.dirs.is_empty());
        let mut met = Vec::new();
        for (_, slot) in slots.iter().filter(|(other, _)| *other != id) {
            let theirs = slot.cgroups();
            met.extend(
                theirs
                    .dirs
                    .iter()
                    .filter(|dir| ours.is_none_or(|ours| ours.overlap(dir).is_some()))
                    .cloned(),
            );
        }
        met
    }

    /// `id`'s RDT group when another registered container records it too, and so keeps it
    /// (delete.md D11).
    fn others_rdt(&self, id: &ContainerId) -> Vec<PathBuf> {
        let slots = self.slots();
        let Some(ours) = slots
            .get(id)
            .and_then(|slot| slot.rdt().as_ref().map(|group| group.path.clone()))
        else {
            return Vec::new();
        };
        let shared = slots.iter().any(|(other, slot)| {
            other != id && slot.rdt().as_ref().is_some_and(|group| group.path == ours)
        });
        if shared {
            vec![ours]
        } else {
            Vec::new()
        }
    }

    /// Records `plan` and `rdt` as `id`'s, unless one of the plan's directories equals,
    /// contains or lies inside a directory another container records (deleting either would
    /// then kill in and remove the other's cgroup, and freezing one would freeze the other).
    /// Levels above it that berth made for another container become this one's too, and so
    /// does a group berth made for another container. Returns what the others hold that an
    /// undone create must leave: the RDT group when another container records it too.
    /// Checked and recorded under the map's lock, so two creates cannot both pass, and a
    /// group berth makes for one of two racing creates is berth's for the other too.
    fn claim(
        &self,
        id: &ContainerId,
        plan: &mut cgroups::Plan,
        mut rdt: Option<&mut RdtGroup>,
    ) -> Result<Others> {
        let slots = self.slots();
        let mut others = Others::default();
        for (other, slot) in slots.iter().filter(|(other, _)| *other != id) {
            if let Some(theirs) = slot.rdt().as_ref() {
                if let Some(ours) = rdt.as_deref_mut().filter(|ours| ours.path == theirs.path) {
                    ours.created_by_berth |= theirs.created_by_berth;
                    if others.rdt_groups.is_empty() {
                        others.rdt_groups.push(theirs.path.clone());
                    }
                }
            }
            let theirs = slot.cgroups();
            plan.share_levels(&theirs.created);
            for theirs in &theirs.dirs {
                if let Some(ours) = plan.overlap(theirs) {
                    return Err(Error::CgroupTaken {
                        id: id.to_string(),
                        path: ours.clone(),
                        other: other.to_string(),
                        theirs: theirs.clone(),
                    });
                }
            }
        }
        plan.sort_created();
        if let Some(slot) = slots.get(id) {
            *slot.cgroups() = plan.clone();
            *slot.rdt() = rdt.as_deref().cloned();
        }
        Ok(others)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<ContainerId, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for exclusive use of `id`, known or not.
    async fn lease(&self, id: &ContainerId) -> Lease<'_> {
        loop {
            let slot = self.slots().entry(id.clone()).or_default().clone();
            let guard = slot.container.clone().lock_owned().await;
            // A holder that found the id gone dropped the slot from the map while this call
            // waited; start over on the current one, or two callers would own the id.
            if self
                .slots()
                .get(id)
                .is_some_and(|current| Arc::ptr_eq(current, &slot))
            {
                return Lease {
                    registry: self,
                    id: id.clone(),
                    slot,
                    guard,
                };
            }
        }
    }

    /// A lease on `id`, with the init's exit reported first if it just happened, so no
    /// event about the container can precede its `exited`.
    async fn lease_current(&self, id: &ContainerId) -> Lease<'_> {
        self.lease_found(id).await.0
    }

    /// [`Self::lease_current`], and the container as it was found.
    async fn lease_found(&self, id: &ContainerId) -> (Lease<'_>, Option<Arc<Snapshot>>) {
        let mut lease = self.lease(id).await;
        let mut found = None;
        if let Some(container) = lease.guard.as_mut() {
            report_exit(&lease.slot, container, &self.events).await;
            let snapshot = Arc::new(container.snapshot());
            *lease.slot.last_seen() = Some(snapshot.clone());
            found = Some(snapshot);
        }
        (lease, found)
    }

    /// The container now, or as the operation in progress on it found it; `None` when it
    /// does not exist, or not yet (a create in progress).
    async fn view(&self, slot: &SlotState) -> Option<Snapshot> {
        match slot.container.try_lock() {
            Ok(mut guard) => {
                let container = guard.as_mut()?;
                report_exit(slot, container, &self.events).await;
                Some(container.snapshot())
            }
            Err(_) => slot.last_seen().as_deref().cloned(),
        }
    }

    pub async fn get(&self, id: &ContainerId) -> Result<Snapshot> {
        let slot = self.slots().get(id).cloned();
        let snapshot = match slot {
            Some(slot) => self.view(&slot).await,
            None => None,
        };
        snapshot.ok_or_else(|| Error::NotFound { id: id.to_string() })
    }

    /// Every known container that `selector` matches, sorted by id. Deriving a status may
    /// read a cgroup file (a freezer not remembered off), so the work is spread over the
    /// machine's cores, off the runtime threads. (Exits are not reported from here: the
    /// exit watchers do that.)
    pub async fn list(&self, selector: &Selector) -> Vec<Snapshot> {
        let slots: Vec<Slot> = self.slots().values().cloned().collect();
        let count = slots.len();
        let freezers = self.freezers.caught_up();
        let mut parts = Vec::new();
        for part in shares(slots) {
            let (selector, freezers) = (selector.clone(), freezers.clone());
            parts.push(tokio::task::spawn_blocking(move || {
                part.iter()
                    .filter_map(|slot| slot.current(&selector, &freezers))
                    .collect::<Vec<_>>()
            }));
        }
        let mut snapshots = Vec::with_capacity(count);
        for part in parts {
            match part.await {
                Ok(part) => snapshots.extend(part),
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                // Cancelled: the runtime is shutting down, nobody waits for the answer.
                Err(_) => {}
            }
        }
        snapshots
    }

    pub async fn create(&self, id: &ContainerId, request: CreateRequest) -> Result<Snapshot> {
        let mut lease = self.lease(id).await;
        if lease.guard.is_some() {
            return Err(Error::AlreadyExists { id: id.to_string() });
        }
        let claim =
            |plan: &mut cgroups::Plan, rdt: Option<&mut RdtGroup>| self.claim(id, plan, rdt);
        let container = match Container::create(&self.runtime, id.clone(), request, claim).await {
            Ok(container) => container,
            Err((error, leftover)) => {
                *lease.guard = leftover;
                return Err(error);
            }
        };
        let snapshot = container.snapshot();
        let init = container.init.clone();
        *lease.guard = Some(container);
        // Published under the lease: the exit watcher needs it to report anything.
        self.events
            .publish(EventKind::Created, id.as_str(), None, Vec::new());
        if let Some(init) = init {
            self.watch_exit(lease.slot.clone(), init);
        }
        if let Some(container) = lease.guard.as_ref() {
            self.watch_oom(container);
        }
        Ok(snapshot)
    }

    /// Runs `operation` on a known container under its lease.
    async fn with_container<T>(
        &self,
        id: &ContainerId,
        operation: impl AsyncFnOnce(&mut Container, &Runtime, &Events) -> Result<T>,
    ) -> Result<T> {
        let mut lease = self.lease_current(id).await;
        let container = lease.known_mut()?;
        operation(container, &self.runtime, &self.events).await
    }

    pub async fn start(&self, id: &ContainerId) -> Result<(Snapshot, Vec<String>)> {
        // Published under the lease, before the exit of a process that ends at once.
        self.with_container(
            id,
            async |c: &mut Container, runtime: &Runtime, events: &Events| {
                let warnings = c.start(runtime).await?;
                events.publish(EventKind::Started, id.as_str(), None, Vec::new());
                Ok((c.snapshot(), warnings))
            },
        )
        .await
    }

    /// The init's exit, once it has happened: `None` inside when its status could not be
    /// read. The lease is held only to look, never across the wait, so every other call on
    /// the container (a delete included, which ends the wait) goes on meanwhile.
    pub async fn wait(&self, id: &ContainerId) -> Result<Option<ExitRecord>> {
        let mut exits = {
            let lease = self.lease_current(id).await;
            let container = lease.known()?;
            if container.state().is_none() {
                return Err(Error::IncorrectStatus {
                    id: id.to_string(),
                    action: "wait for",
                    status: Status::Unknown,
                });
            }
            if let Some(exit) = container.seen_exit() {
                return Ok(exit);
            }
            // Subscribed under the lease: the exit can only be announced by a lease holder,
            // so it cannot slip in between the look and the subscription.
            lease.slot.exits().subscribe()
        };
        let exit = exits
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::NotFound { id: id.to_string() })?;
        Ok(exit.clone().flatten())
    }

    /// The pids in the container's cgroup trees, ascending, and its exec processes.
    pub async fn processes(&self, id: &ContainerId) -> Result<(Vec<i32>, Vec<ExecSnapshot>)> {
        let others = self.others_cgroups(id);
        self.with_container(id, async |c: &mut Container, _: &Runtime, _: &Events| {
            Ok((c.processes(others).await?, c.exec_snapshots()))
        })
        .await
    }

    /// Records an exec process and, with `start`, runs it: its pid then.
    pub async fn exec(
        &self,
        id: &ContainerId,
        request: ExecRequest,
        start: bool,
    ) -> Result<Option<i32>> {
        let exec_id = request.exec_id.clone();
        let mut lease = self.lease_current(id).await;
        let container = lease.known_mut()?;
        container.add_exec(request).await?;
        self.events.publish_exec(
            EventKind::ExecAdded,
            id.as_str(),
            exec_id.as_str(),
            None,
            None,
        );
        if !start {
            return Ok(None);
        }
        self.start_exec_leased(&mut lease, &exec_id).await.map(Some)
    }

    /// Runs an exec process recorded without starting it.
    pub async fn start_exec(&self, id: &ContainerId, exec_id: &ExecId) -> Result<i32> {
        let mut lease = self.lease_current(id).await;
        self.start_exec_leased(&mut lease, exec_id).await
    }

    async fn start_exec_leased(&self, lease: &mut Lease<'_>, exec_id: &ExecId) -> Result<i32> {
        let id = lease.id.clone();
        let container = lease.known_mut()?;
        let (started, outcome) = container.start_exec(&self.runtime, exec_id).await;
        if let Some(started) = started {
            // Announced before its exit can be, which needs this lease.
            if let Ok(pid) = outcome {
                self.events.publish_exec(
                    EventKind::ExecStarted,
                    id.as_str(),
                    exec_id.as_str(),
                    Some(pid),
                    None,
                );
            }
            self.watch_exec(lease.slot.clone(), &id, started);
        }
        outcome
    }

    pub async fn kill_exec(&self, id: &ContainerId, exec_id: &ExecId, signal: u32) -> Result<()> {
        self.with_container(id, async |c: &mut Container, _: &Runtime, _: &Events| {
            c.kill_exec(exec_id, signal)
        })
        .await
    }

    pub async fn get_exec(&self, id: &ContainerId, exec_id: &ExecId) -> Result<ExecSnapshot> {
        self.with_container(id, async |c: &mut Container, _: &Runtime, _: &Events| {
            c.exec_snapshot(exec_id)
        })
        .await
    }

    pub async fn delete_exec(&self, id: &ContainerId, exec_id: &ExecId) -> Result<ExecSnapshot> {
        let mut lease = self.lease_current(id).await;
        let container = lease.known_mut()?;
        let snapshot = container.delete_exec(exec_id).await?;
        if let Some(exec_exits) = lease.slot.exec_exits.get() {
            exec_exits.send_modify(|exits| {
                exits.remove(exec_id.as_str());
            });
        }
        Ok(snapshot)
    }

    /// An exec process's exit once it has happened: `None` inside when its status could
    /// not be read. As `wait`, it holds the lease only to look.
    pub async fn wait_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
    ) -> Result<Option<ExitRecord>> {
        let mut exits = {
            let lease = self.lease_current(id).await;
            let container = lease.known()?;
            let snapshot = container.exec_snapshot(exec_id)?;
            if snapshot.state == ExecState::Stopped {
                return Ok(snapshot.exit);
            }
            // Subscribed under the lease, which recording an exit needs: it cannot slip in
            // between the look and the subscription.
            lease.slot.exec_exits().subscribe()
        };
        let exits = exits
            .wait_for(|exits| exits.contains_key(exec_id.as_str()))
            .await
            .map_err(|_| Error::ExecNotFound {
                id: id.to_string(),
                exec_id: exec_id.to_string(),
            })?;
        Ok(exits.get(exec_id.as_str()).cloned().flatten())
    }

    /// runc update: `resources` (the JSON of a `linux.resources`) merged into the
    /// container's, applied and persisted.
    pub async fn update_resources(&self, id: &ContainerId, resources: &[u8]) -> Result<()> {
        self.with_container(id, async |c: &mut Container, _: &Runtime, _: &Events| {
            c.update_resources(resources).await
        })
        .await
    }

    /// The usage the container's cgroups count.
    pub async fn stats(&self, id: &ContainerId) -> Result<cgroups::stats::Stats> {
        self.with_container(id, async |c: &mut Container, _: &Runtime, _: &Events| {
            c.stats().await
        })
        .await
    }

    pub async fn kill(&self, id: &ContainerId, signal: u32, all: bool) -> Result<()> {
        let others = self.others_cgroups(id);
        self.with_container(id, async |c: &mut Container, _: &Runtime, _: &Events| {
            c.kill(signal, all, &others).await
        })
        .await
    }

    pub async fn pause(&self, id: &ContainerId) -> Result<()> {
        self.with_container(
            id,
            async |c: &mut Container, _: &Runtime, events: &Events| {
                c.pause().await?;
                events.publish(EventKind::Paused, id.as_str(), None, Vec::new());
                Ok(())
            },
        )
        .await
    }

    pub async fn resume(&self, id: &ContainerId) -> Result<()> {
        self.with_container(
            id,
            async |c: &mut Container, _: &Runtime, events: &Events| {
                c.resume().await?;
                events.publish(EventKind::Resumed, id.as_str(), None, Vec::new());
                Ok(())
            },
        )
        .await
    }

    pub async fn delete(&self, id: &ContainerId, force: bool) -> Result<DeleteOutcome> {
        let (mut lease, found) = self.lease_found(id).await;
        let (Some(container), Some(found)) = (lease.guard.as_mut(), found) else {
            self.remove_leftover_dir(id).await;
            return if force {
                Ok(DeleteOutcome::default())
            } else {
                Err(Error::NotFound { id: id.to_string() })
            };
        };
        let (others, others_rdt) = (self.others_cgroups(id), self.others_rdt(id));
        let outcome = match container
            .delete(&self.runtime, &found, force, &others, &others_rdt)
            .await
        {
            Ok(outcome) => outcome,
            Err(error) => {
                if let Some(exit) = container.take_unpublished_exit() {
                    lease.slot.announce_exit(container, exit, &self.events);
                }
                return Err(error);
            }
        };
        if let Some(exit) = &outcome.exited {
            lease
                .slot
                .announce_exit(container, exit.clone(), &self.events);
        }
        // A wait must end with the container, even on an exit nobody could read.
        // (Nobody waits where there is no channel yet.)
        if let Some(exits) = lease.slot.exits.get() {
            exits.send_if_modified(|exit| {
                let unannounced = exit.is_none();
                if unannounced {
                    *exit = Some(None);
                }
                unannounced
            });
        }
        if let Some(state) = container.state() {
            self.freezers
                .forget(self.runtime.cgroups.as_ref(), &state.cgroup_dirs);
        }
        *lease.guard = None;
        self.events.publish(
            EventKind::Deleted,
            id.as_str(),
            None,
            outcome.warnings.clone(),
        );
        Ok(outcome)
    }

    /// delete.md D4: a directory without a registry entry is what a create that died before
    /// writing state.json leaves. Failing to remove it is logged, not returned.
    async fn remove_leftover_dir(&self, id: &ContainerId) {
        let dir = self.runtime.root.dir(id);
        let is_dir = tokio::fs::symlink_metadata(dir.path())
            .await
            .is_ok_and(|m| m.is_dir());
        if !is_dir {
            return;
        }
        let dir = dir.path();
        match tokio::fs::remove_dir_all(dir).await {
            Ok(()) => {
                tracing::info!(id = %id, dir = %dir.display(), "removed leftover state directory")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(id = %id, dir = %dir.display(), error = %e, "cannot remove leftover state directory")
            }
        }
    }
}

/// Exclusive use of one id. Dropping it forgets the id when it ended up unknown.
struct Lease<'a> {
    registry: &'a Registry,
    id: ContainerId,
    slot: Slot,
    guard: OwnedMutexGuard<Option<Container>>,
}

impl Lease<'_> {
    /// The leased container; NOT_FOUND when the id is unknown.
    fn known(&self) -> Result<&Container> {
        self.guard.as_ref().ok_or_else(|| Error::NotFound {
            id: self.id.to_string(),
        })
    }

    fn known_mut(&mut self) -> Result<&mut Container> {
        let id = &self.id;
        self.guard
            .as_mut()
            .ok_or_else(|| Error::NotFound { id: id.to_string() })
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.guard.is_none() {
            let mut slots = self.registry.slots();
            if slots
                .get(&self.id)
                .is_some_and(|current| Arc::ptr_eq(current, &self.slot))
            {
                slots.remove(&self.id);
            }
        }
    }
}
