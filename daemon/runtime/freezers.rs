//! What ListContainers remembers of each container's own freezer, so that it need not read
//! 10,000 of them on every call (delete.md section 3: the status is the kernel's, never a
//! stored one).
//!
//! A freezer found off stays off until a file of its directory is written
//! ([`Freeze::Off`]), and inotify reports every such write, whoever makes it, before the
//! write returns to its writer. So a freezer found off is remembered while its directory is
//! watched, and forgotten at the first event that may concern it: a write to a file in it;
//! the directory removed or renamed (seen by the watch on its parent: cgroupfs tells a
//! removed directory's own watch nothing); its watch dropped; the event queue overflowing.
//! Each List first takes in the events queued so far, so a freeze written before the List
//! began is read, as if nothing were remembered. A freezer that is set (a paused container)
//! is read on every call, since a FREEZING one turns FROZEN without a write.
//!
//! Not seen: a level above the parent renamed (cgroup v1 allows it; berth never does it)
//! and a cgroup made at the old path and frozen there.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use nix::{
    errno::Errno,
    sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor},
};

use crate::cgroups::{CgroupManager, Freeze};

/// Writes to the files of a watched directory, its entries going, itself going.
const EVENTS: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

pub struct FreezerWatch {
    /// `None` without inotify: every freezer is read.
    inotify: Option<Inotify>,
    watches: Mutex<Watches>,
}

#[derive(Default)]
struct Watches {
    dirs: HashMap<Arc<Path>, Watched>,
    by_wd: HashMap<WatchDescriptor, Arc<Path>>,
    reads: u64,
}

/// A container's freezer directory, the directory above one, or both.
struct Watched {
    wd: WatchDescriptor,
    /// The freezer directories relying on this watch: itself, those right below it.
    users: usize,
    /// Set while the directory is a freezer directory that is remembered.
    freezer: Option<Remembered>,
}

#[derive(Clone, Copy)]
struct Remembered {
    /// Which read of the freezer this is: a read that started before the freezer was
    /// forgotten must not fill it in again.
    read: u64,
    off: bool,
}

impl FreezerWatch {
    pub fn new() -> Self {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .inspect_err(|e| {
                tracing::warn!(error = %e, "no inotify: every ListContainers reads every freezer");
            })
            .ok();
        Self {
            inotify,
            watches: Mutex::default(),
        }
    }

    fn watches(&self) -> MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in every event queued so far: what is remembered after this is what a read
    /// would find now.
    pub fn caught_up(self: &Arc<Self>) -> CaughtUp {
        if let Some(inotify) = &self.inotify {
            let mut watches = self.watches();
            loop {
                match inotify.read_events() {
                    Ok(events) => events
                        .into_iter()
                        .for_each(|event| watches.take(inotify, event)),
                    Err(Errno::EAGAIN) => break,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read inotify events; forgetting every freezer");
                        watches.forget_all(inotify);
                        break;
                    }
                }
            }
        }
        CaughtUp(self.clone())
    }

    /// Stops watching the freezer of `dirs` (a container that is gone).
    pub fn forget(&self, cgroups: &dyn CgroupManager, dirs: &[PathBuf]) {
        if let (Some(inotify), Some(dir)) = (&self.inotify, cgroups.freezer_dir(dirs)) {
            self.watches().forget(inotify, dir);
        }
    }
}

impl Default for FreezerWatch {
    fn default() -> Self {
        Self::new()
    }
}

/// The freezers as of the last [`FreezerWatch::caught_up`].
#[derive(Clone)]
pub struct CaughtUp(Arc<FreezerWatch>);

impl CaughtUp {
    /// `cgroups.is_frozen(dirs)`, read only when the freezer is not remembered off.
    pub fn is_frozen(&self, cgroups: &dyn CgroupManager, dirs: &[PathBuf]) -> bool {
        let (Some(inotify), Some(dir)) = (&self.0.inotify, cgroups.freezer_dir(dirs)) else {
            return cgroups.is_frozen(dirs);
        };
        // Watched before the read: a write after the read is then an event.
        let read = match self.0.watches().remembered(inotify, dir) {
            Some(Remembered { off: true, .. }) => return false,
            Some(Remembered { read, .. }) => read,
            None => return cgroups.is_frozen(dirs),
        };
        let freeze = cgroups.freeze(dirs);
        if freeze == Freeze::Off {
            self.0.watches().found_off(dir, read);
        }
        freeze == Freeze::Frozen
    }
}

impl Watches {
    /// What is remembered of freezer `dir`, watching it (and its parent) first if it is
    /// not; `None` when it cannot be watched.
    fn remembered(&mut self, inotify: &Inotify, dir: &Path) -> Option<Remembered> {
        if let Some(remembered) = self.dirs.get(dir).and_then(|watched| watched.freezer) {
            return Some(remembered);
        }
        let parent = dir.parent()?;
        self.hold(inotify, parent)?;
        if self.hold(inotify, dir).is_none() {
            self.release(inotify, parent);
            return None;
        }
        self.reads += 1;
        let remembered = Remembered {
            read: self.reads,
            off: false,
        };
        self.dirs.get_mut(dir)?.freezer = Some(remembered);
        Some(remembered)
    }

    fn found_off(&mut self, dir: &Path, read: u64) {
        if let Some(remembered) = self
            .dirs
            .get_mut(dir)
            .and_then(|watched| watched.freezer.as_mut())
            .filter(|remembered| remembered.read == read)
        {
            remembered.off = true;
        }
    }

    /// One more user of the watch on `dir`, which is made if there is none.
    fn hold(&mut self, inotify: &Inotify, dir: &Path) -> Option<()> {
        if let Some(watched) = self.dirs.get_mut(dir) {
            watched.users += 1;
            return Some(());
        }
        let wd = inotify.add_watch(dir, EVENTS).ok()?;
        if self.by_wd.contains_key(&wd) {
            // The same directory under another path (a second mount): its events name the
            // other path only, so nothing is remembered under this one.
            return None;
        }
        let dir: Arc<Path> = Arc::from(dir);
        self.by_wd.insert(wd, dir.clone());
        self.dirs.insert(
            dir,
            Watched {
                wd,
                users: 1,
                freezer: None,
            },
        );
        Some(())
    }

    fn release(&mut self, inotify: &Inotify, dir: &Path) {
        let Some(watched) = self.dirs.get_mut(dir) else {
            return;
        };
        watched.users -= 1;
        if watched.users == 0 {
            let wd = watched.wd;
            self.dirs.remove(dir);
            self.by_wd.remove(&wd);
            // Fails when the kernel dropped the watch already: nothing left to do then.
            let _ = inotify.rm_watch(wd);
        }
    }

    /// Forgets freezer `dir` and lets go of its watches.
    fn forget(&mut self, inotify: &Inotify, dir: &Path) {
        let remembered = self
            .dirs
            .get_mut(dir)
            .and_then(|watched| watched.freezer.take());
        if remembered.is_some() {
            self.release(inotify, dir);
            if let Some(parent) = dir.parent() {
                self.release(inotify, parent);
            }
        }
    }

    /// `dir` may no longer be the directory its path named: forgets it, and the freezers
    /// right below it.
    fn gone(&mut self, inotify: &Inotify, dir: &Path) {
        self.forget(inotify, dir);
        if !self.dirs.contains_key(dir) {
            return;
        }
        let below: Vec<Arc<Path>> = self
            .dirs
            .iter()
            .filter(|(path, watched)| watched.freezer.is_some() && path.parent() == Some(dir))
            .map(|(path, _)| path.clone())
            .collect();
        for path in below {
            self.forget(inotify, &path);
        }
    }

    fn forget_all(&mut self, inotify: &Inotify) {
        for wd in self.by_wd.keys() {
            let _ = inotify.rm_watch(*wd);
        }
        self.dirs.clear();
        self.by_wd.clear();
    }

    fn take(&mut self, inotify: &Inotify, event: InotifyEvent) {
        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            self.forget_all(inotify);
            return;
        }
        let Some(dir) = self.by_wd.get(&event.wd).cloned() else {
            // A watch let go of already.
            return;
        };
        match event.name {
            Some(_) if event.mask.contains(AddWatchFlags::IN_MODIFY) => self.forget(inotify, &dir),
            Some(name) => self.gone(inotify, &dir.join(name)),
            None => self.gone(inotify, &dir),
        }
    }
}

#[cfg(test)]
mod tests {
    //! On plain directories standing for cgroups: inotify reports writes and removals there
    //! as it does on cgroupfs (where a removed directory's own watch says nothing, which the
    //! parent's watch covers; the integration tests cover the real freezers).
    use std::{fs, sync::atomic::Ordering};

    use super::*;
    use crate::cgroups::fake::Fake;

    struct Setup {
        _root: tempfile::TempDir,
        parent: PathBuf,
        cgroups: Fake,
        watch: Arc<FreezerWatch>,
    }

    impl Setup {
        fn new() -> Self {
            let root = tempfile::tempdir().unwrap();
            let parent = root.path().join("parent");
            fs::create_dir(&parent).unwrap();
            Self {
                _root: root,
                parent,
                cgroups: Fake {
                    freezer_file: true,
                    ..Fake::default()
                },
                watch: Arc::new(FreezerWatch::new()),
            }
        }

        /// A container's cgroup with its freezer set as `freeze` says ("0" or "1").
        fn cgroup(&self, name: &str, freeze: &str) -> Vec<PathBuf> {
            let dir = self.parent.join(name);
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("cgroup.freeze"), freeze).unwrap();
            vec![dir]
        }

        /// (frozen, whether the freezer was read) as a List finds it.
        fn listed(&self, dirs: &[PathBuf]) -> (bool, bool) {
            let before = self.cgroups.freeze_reads.load(Ordering::SeqCst);
            let frozen = self.watch.caught_up().is_frozen(&self.cgroups, dirs);
            (
                frozen,
                self.cgroups.freeze_reads.load(Ordering::SeqCst) > before,
            )
        }

        fn watched(&self) -> usize {
            self.watch.watches().dirs.len()
        }
    }

    #[test]
    fn a_freezer_found_off_is_read_again_only_after_a_write() {
        let setup = Setup::new();
        let dirs = setup.cgroup("c1", "0");
        assert_eq!(setup.listed(&dirs), (false, true));
        assert_eq!(setup.listed(&dirs), (false, false));
        fs::write(dirs[0].join("cgroup.freeze"), "1").unwrap();
        assert_eq!(setup.listed(&dirs), (true, true));
        // Set: read on every call.
        assert_eq!(setup.listed(&dirs), (true, true));
        fs::write(dirs[0].join("cgroup.freeze"), "0").unwrap();
        assert_eq!(setup.listed(&dirs), (false, true));
        assert_eq!(setup.listed(&dirs), (false, false));
        // A write to any other file of the directory counts too.
        fs::write(dirs[0].join("cgroup.procs"), "1").unwrap();
        assert_eq!(setup.listed(&dirs), (false, true));
    }

    #[test]
    fn a_directory_removed_and_made_again_is_read_again() {
        let setup = Setup::new();
        let dirs = setup.cgroup("c1", "0");
        assert_eq!(setup.listed(&dirs), (false, true));
        fs::remove_dir_all(&dirs[0]).unwrap();
        setup.cgroup("c1", "1");
        assert_eq!(setup.listed(&dirs), (true, true));
        fs::write(dirs[0].join("cgroup.freeze"), "0").unwrap();
        assert_eq!(setup.listed(&dirs), (false, true));
        // Renamed away and another put in its place.
        fs::rename(&dirs[0], setup.parent.join("elsewhere")).unwrap();
        setup.cgroup("c1", "1");
        assert_eq!(setup.listed(&dirs), (true, true));
    }

    #[test]
    fn a_missing_directory_is_not_frozen_and_not_watched() {
        let setup = Setup::new();
        let dirs = vec![setup.parent.join("never-made")];
        assert_eq!(setup.listed(&dirs), (false, true));
        assert_eq!(setup.watched(), 0);
    }

    #[test]
    fn forgetting_lets_go_of_every_watch_and_shared_ones_last() {
        let setup = Setup::new();
        let (one, two) = (setup.cgroup("c1", "0"), setup.cgroup("c2", "0"));
        setup.listed(&one);
        setup.listed(&two);
        // Both directories and their common parent.
        assert_eq!(setup.watched(), 3);
        setup.watch.forget(&setup.cgroups, &one);
        assert_eq!(setup.watched(), 2);
        assert_eq!(setup.listed(&two), (false, false));
        // Removed by its delete: the parent's watch reports it, and the watches go.
        fs::remove_dir_all(&two[0]).unwrap();
        assert_eq!(setup.listed(&two), (false, true));
        assert_eq!(setup.watched(), 0);
    }
}
