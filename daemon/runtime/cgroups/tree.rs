//! What every layout does the same way on cgroup directories: making them, placing
//! processes, listing them, freezing and killing, and removing trees.
use std::{
    collections::BTreeSet,
    fs, io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    thread::sleep,
    time::Duration,
};

use super::{v2_resources, CgroupError, Freeze, Plan, Result};

/// Makes those of `plan.created` (parents first) that do not exist; `after_each` runs on
/// each level once it exists, before its child is made (v2 enables controllers there).
///
/// The delete of another container may remove a shared parent (an empty `--cgroup-parent`
/// level) in the meantime; the parents are in the list too, so starting over makes them
/// again.
pub fn create(plan: &Plan, mut after_each: impl FnMut(&Path) -> Result<()>) -> Result<()> {
    let mut attempts = 0;
    'again: loop {
        for dir in &plan.created {
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                    continue 'again;
                }
                Err(e) => return Err(CgroupError::io("create cgroup", dir)(e)),
            }
            after_each(dir)?;
        }
        return Ok(());
    }
}

/// The planned directories under each mount point: the container's own, and every level
/// above it that does not exist yet.
pub fn plan<'a>(mount_points: impl Iterator<Item = &'a Path>, relative: &Path) -> Plan {
    let mut plan = Plan::default();
    for mount_point in mount_points {
        let leaf = mount_point.join(relative);
        for ancestor in leaf.ancestors().collect::<Vec<_>>().into_iter().rev() {
            if lies_below(ancestor, mount_point)
                && (ancestor.as_os_str() == leaf.as_os_str() || !ancestor.exists())
            {
                plan.created.push(ancestor.to_owned());
            }
        }
        plan.dirs.push(leaf);
    }
    plan
}

pub fn processes(dirs: &[PathBuf], others: &[PathBuf]) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for dir in dirs {
        for tree_dir in subtree_deepest_first(dir, others) {
            let procs = fs::read_to_string(tree_dir.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids
}

/// Whether `dir` is, or lies inside, a directory of `others`.
fn belongs_to_others(dir: &Path, others: &[PathBuf]) -> bool {
    others.iter().any(|other| lies_within(dir, other))
}

/// `path.starts_with(dir)` for the normalised paths of cgroup directories, by bytes: a
/// delete compares each of its directories with those of every other container, and
/// comparing component by component costs more than the rmdir.
fn lies_within(path: &Path, dir: &Path) -> bool {
    let (path, dir) = (path.as_os_str().as_bytes(), dir.as_os_str().as_bytes());
    path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/')
}

/// [`lies_within`], and not `dir` itself.
pub(super) fn lies_below(path: &Path, dir: &Path) -> bool {
    path.as_os_str().len() > dir.as_os_str().len() && lies_within(path, dir)
}

/// `dirs.contains(dir)`, by bytes as [`lies_within`]: `Path`'s `==` compares unequal paths
/// component by component, and a delete asks this of every directory it removes.
fn listed(dirs: &[PathBuf], dir: &Path) -> bool {
    dirs.iter()
        .any(|listed| listed.as_os_str() == dir.as_os_str())
}

/// The questions the registry asks of every other container's directories on each create
/// and delete, answered by bytes as [`lies_within`] does.
impl Plan {
    /// The first of the container's directories that equals, contains or lies inside
    /// `dir`.
    pub fn overlap(&self, dir: &Path) -> Option<&PathBuf> {
        self.dirs
            .iter()
            .find(|ours| lies_within(ours, dir) || lies_within(dir, ours))
    }

    /// Takes on, as levels berth made for this container too, those of `levels` (another
    /// container's) that lie above one of its directories: whichever of the two empties a
    /// shared level removes it.
    pub fn share_levels(&mut self, levels: &[PathBuf]) {
        for level in levels {
            let above_ours = self.dirs.iter().any(|ours| lies_below(ours, level));
            if above_ours && !listed(&self.created, level) {
                self.created.push(level.clone());
            }
        }
    }

    /// Parents before children, as creating and removing them needs. A normalised path
    /// is as deep as it has slashes.
    pub fn sort_created(&mut self) {
        self.created.sort_by_cached_key(|dir| {
            dir.as_os_str()
                .as_bytes()
                .iter()
                .filter(|&&b| b == b'/')
                .count()
        });
    }
}

/// `dir` and every cgroup below it, children before their parents, without the subtrees
/// that belong to other containers (and without `dir` itself if it is one of theirs).
pub fn subtree_deepest_first(dir: &Path, others: &[PathBuf]) -> Vec<PathBuf> {
    let mut order = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        if belongs_to_others(&next, others) {
            continue;
        }
        if let Ok(entries) = fs::read_dir(&next) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        order.push(next);
    }
    order.retain(|d| d.exists());
    order.reverse();
    order
}

/// A short cgroup file's content, trimmed; empty when it cannot be read. One open, one
/// read, one close: this runs for every container on every ListContainers.
pub fn read_small(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buffer = [0u8; 16];
    let read = fs::File::open(path).and_then(|mut file| file.read(&mut buffer));
    match read {
        Ok(n) => buffer[..n].trim_ascii().to_vec(),
        Err(_) => Vec::new(),
    }
}

/// A freezer: the file to write, the value, and the file and line that report it done.
pub struct Freezer<'a> {
    pub dir: &'a Path,
    pub v1: bool,
}

impl Freezer<'_> {
    /// The own freezer only: on v1, `freezer.state` is FROZEN also where an ancestor froze
    /// the cgroup, so `freezer.self_freezing` tells whose freeze it is.
    pub fn state(&self) -> Freeze {
        if !self.v1 {
            return match read_small(&self.dir.join("cgroup.freeze")).as_slice() {
                b"1" => Freeze::Frozen,
                b"0" => Freeze::Off,
                _ => Freeze::Absent,
            };
        }
        let state = read_small(&self.dir.join("freezer.state"));
        match state.as_slice() {
            b"THAWED" => return Freeze::Off,
            b"" => return Freeze::Absent,
            _ => {}
        }
        match (
            state.as_slice(),
            read_small(&self.dir.join("freezer.self_freezing")).as_slice(),
        ) {
            (_, b"0") => Freeze::Off,
            (b"FROZEN", b"1") => Freeze::Frozen,
            (_, b"1") => Freeze::Freezing,
            _ => Freeze::Absent,
        }
    }

    /// Writes the state and waits until the kernel reports it. A freeze stays FREEZING
    /// while a task is in the middle of something uninterruptible; writing the state again
    /// nudges the kernel, as runc does.
    pub fn set(&self, frozen: bool) -> Result<()> {
        let (file, value, done_file) = match (self.v1, frozen) {
            (true, true) => ("freezer.state", "FROZEN", "freezer.state"),
            (true, false) => ("freezer.state", "THAWED", "freezer.state"),
            (false, true) => ("cgroup.freeze", "1", "cgroup.events"),
            (false, false) => ("cgroup.freeze", "0", "cgroup.events"),
        };
        let done = |report: &str| {
            if self.v1 {
                report.trim() == value
            } else {
                v2_resources::parse_events(report).is_ok_and(|events| events.frozen == frozen)
            }
        };
        let path = self.dir.join(file);
        let done_path = self.dir.join(done_file);
        for round in 0..1000u32 {
            if round % 10 == 0 {
                fs::write(&path, value)
                    .map_err(CgroupError::io("write the freezer state to", &path))?;
            }
            let report = fs::read_to_string(&done_path)
                .map_err(CgroupError::io("read the freezer state from", &done_path))?;
            if done(&report) {
                return Ok(());
            }
            sleep(Duration::from_millis(1));
        }
        if frozen {
            // Left FREEZING, the cgroup would read as paused and hold its tasks half-frozen.
            let thaw = if self.v1 { "THAWED" } else { "0" };
            if let Err(e) = fs::write(&path, thaw) {
                tracing::warn!(path = %path.display(), error = %e, "cannot revert a freeze that timed out");
            }
        }
        Err(CgroupError::FreezeTimeout {
            path: done_path,
            state: if frozen { "frozen" } else { "thawed" },
        })
    }

    /// Asks for a thaw without waiting for it: where an ancestor holds the cgroup frozen, no
    /// thaw of its own would ever complete.
    pub fn request_thaw(&self) -> Result<()> {
        let (file, value) = if self.v1 {
            ("freezer.state", "THAWED")
        } else {
            ("cgroup.freeze", "0")
        };
        let path = self.dir.join(file);
        match fs::write(&path, value) {
            // No cgroup (a create that died before making it): nothing is frozen.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            written => written.map_err(CgroupError::io("thaw", &path)),
        }
    }
}

/// Whether `pid` sits in one of the cgroups at `relatives` (paths below a hierarchy's root)
/// or below them, by its /proc/<pid>/cgroup.
pub fn in_cgroups(pid: i32, relatives: &[PathBuf]) -> bool {
    let Ok(membership) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    membership.lines().any(|line| {
        let path = Path::new(line.splitn(3, ':').nth(2).unwrap_or_default());
        let path = path.strip_prefix("/").unwrap_or(path);
        relatives.iter().any(|relative| path.starts_with(relative))
    })
}

/// Sends `signal` to every process of `dirs`, each through a pidfd and checked to be in the
/// container's cgroups once the pidfd holds it, so a pid that exited and was reused since
/// cgroup.procs was read is never signalled.
pub fn signal_each(dirs: &[PathBuf], others: &[PathBuf], relatives: &[PathBuf], signal: i32) {
    for pid in processes(dirs, others) {
        if let Err(e) = crate::process::signal_checked(pid, signal, || in_cgroups(pid, relatives)) {
            tracing::warn!(pid, signal, error = %e, "cannot signal a container process");
        }
    }
}

/// SIGKILLs every process of `dirs`: through `cgroup.kill` in `kill_file`'s cgroup when
/// that reaches every process and nothing of another container's, else freeze, kill each
/// pid, thaw, so nothing forks between the listing and the signals. A freeze that fails
/// does not stop the kill: each process is then killed through its pidfd all the same.
pub fn kill_all(
    dirs: &[PathBuf],
    others: &[PathBuf],
    relatives: &[PathBuf],
    kill_file: Option<&Path>,
    freezer: Option<Freezer>,
) -> Result<()> {
    let everyone = processes(dirs, others);
    if everyone.is_empty() {
        return Ok(());
    }
    if let Some(kill) = kill_file {
        if let Some(dir) = kill.parent() {
            // cgroup.kill reaches the whole subtree, another container's included.
            let holds_others = others.iter().any(|other| lies_within(other, dir));
            if !holds_others && processes(&[dir.to_owned()], others) == everyone {
                return fs::write(kill, "1")
                    .map_err(CgroupError::io("kill every process through", kill));
            }
        }
    }
    if let Some(freezer) = &freezer {
        if let Err(e) = freezer.set(true) {
            tracing::warn!(cgroup = %freezer.dir.display(), error = %e, "cannot freeze to kill; killing each process anyway");
        }
    }
    signal_each(dirs, others, relatives, libc::SIGKILL);
    match &freezer {
        Some(freezer) => freezer.set(false),
        None => Ok(()),
    }
}

/// Removes the trees of `dirs` that berth created, deepest first, then the ancestors in
/// `created` that are now empty; what belongs to `others`, or holds it, stays. `rmdir`
/// meets EBUSY while a killed process is still
/// exiting: that is retried with growing sleeps (about a second per directory in all),
/// calling `kill` between tries.
pub fn remove(
    dirs: &[PathBuf],
    created: &[PathBuf],
    others: &[PathBuf],
    kill: impl Fn() -> Result<()>,
) -> Result<()> {
    for dir in dirs.iter().filter(|d| listed(created, d)) {
        // Mostly it holds nothing: one rmdir, no walk.
        if !belongs_to_others(dir, others) {
            match fs::remove_dir(dir) {
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(_) => {}
            }
        }
        for tree_dir in subtree_deepest_first(dir, others) {
            // What holds another container's cgroup stays, with it.
            if others.iter().any(|other| lies_within(other, &tree_dir)) {
                continue;
            }
            remove_dir_retrying(&tree_dir, &kill)?;
        }
    }
    for ancestor in created.iter().rev().filter(|d| !listed(dirs, d)) {
        // Another container may still live below a shared parent: that is not an error.
        match fs::remove_dir(ancestor) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::EBUSY | libc::ENOTEMPTY)
                ) => {}
            Err(e) => return Err(CgroupError::io("remove cgroup", ancestor)(e)),
        }
    }
    Ok(())
}

fn remove_dir_retrying(dir: &Path, kill: &impl Fn() -> Result<()>) -> Result<()> {
    let mut delay = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && waited < Duration::from_secs(1) => {
                kill()?;
                sleep(delay);
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(CgroupError::io("remove cgroup", dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn own_cgroups() -> Vec<PathBuf> {
        fs::read_to_string("/proc/self/cgroup")
            .unwrap()
            .lines()
            .map(|line| {
                let path = line.splitn(3, ':').nth(2).unwrap();
                PathBuf::from(path.trim_start_matches('/'))
            })
            .collect()
    }

    #[test]
    fn a_directory_lies_within_itself_and_its_ancestors_only() {
        let dir = Path::new("/sys/fs/cgroup/pids/berth/c1");
        assert!(lies_within(dir, dir));
        assert!(lies_within(dir, Path::new("/sys/fs/cgroup/pids/berth")));
        assert!(!lies_within(dir, Path::new("/sys/fs/cgroup/pids/berth/c")));
        assert!(!lies_within(Path::new("/sys/fs/cgroup/pids/berth"), dir));
    }

    #[test]
    fn membership_is_read_from_the_process_itself() {
        let me = std::process::id() as i32;
        assert!(in_cgroups(me, &own_cgroups()));
        assert!(!in_cgroups(me, &[PathBuf::from("no/such/cgroup")]));
    }

    #[test]
    fn a_process_that_is_no_longer_meant_is_not_signalled() {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        let pid = child.id() as i32;
        crate::process::signal_checked(pid, libc::SIGKILL, || false).unwrap();
        assert!(child.try_wait().unwrap().is_none(), "signalled anyway");
        crate::process::signal_checked(pid, libc::SIGKILL, || true).unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&child.wait().unwrap()),
            Some(libc::SIGKILL)
        );
    }

    #[test]
    fn a_freeze_that_times_out_is_reverted() {
        // The files of a cgroup v2 freezer whose cgroup.events never reports frozen.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.freeze"), "0").unwrap();
        fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        let freezer = Freezer {
            dir: dir.path(),
            v1: false,
        };
        assert!(matches!(
            freezer.set(true),
            Err(CgroupError::FreezeTimeout { .. })
        ));
        assert_eq!(
            fs::read_to_string(dir.path().join("cgroup.freeze")).unwrap(),
            "0"
        );
    }
}
