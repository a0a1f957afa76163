//! What every layout does the same way on cgroup directories: making them, placing
//! processes, listing them, freezing and killing, and removing trees.
use std::{
    collections::BTreeSet,
    fs, io,
    path::{Path, PathBuf},
    thread::sleep,
    time::Duration,
};

use super::{v2_resources, CgroupError, Plan, Result};

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
            let is_level = ancestor.starts_with(mount_point) && ancestor != mount_point;
            if is_level && (ancestor == leaf || !ancestor.exists()) {
                plan.created.push(ancestor.to_owned());
            }
        }
        plan.dirs.push(leaf);
    }
    plan
}

pub fn add_process(dirs: &[PathBuf], pid: i32) -> Result<()> {
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).map_err(CgroupError::io("add a process to", &procs))?;
    }
    Ok(())
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
    others.iter().any(|other| dir.starts_with(other))
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
        Err(CgroupError::FreezeTimeout {
            path: done_path,
            state: if frozen { "frozen" } else { "thawed" },
        })
    }
}

/// SIGKILLs every process of `dirs`: through `cgroup.kill` in `kill_file`'s cgroup when
/// that reaches every process, else freeze, kill each pid, thaw, so nothing forks between
/// the listing and the signals.
pub fn kill_all(
    dirs: &[PathBuf],
    others: &[PathBuf],
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
            let holds_others = others.iter().any(|other| other.starts_with(dir));
            if !holds_others && processes(&[dir.to_owned()], others) == everyone {
                return fs::write(kill, "1").map_err(CgroupError::io("write", kill));
            }
        }
    }
    if let Some(freezer) = &freezer {
        freezer.set(true)?;
    }
    for pid in processes(dirs, others) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Some(freezer) = &freezer {
        freezer.set(false)?;
    }
    Ok(())
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
    for dir in dirs.iter().filter(|d| created.contains(d)) {
        for tree_dir in subtree_deepest_first(dir, others) {
            // What holds another container's cgroup stays, with it.
            if others.iter().any(|other| other.starts_with(&tree_dir)) {
                continue;
            }
            remove_dir_retrying(&tree_dir, &kill)?;
        }
    }
    for ancestor in created.iter().rev().filter(|d| !dirs.contains(d)) {
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
