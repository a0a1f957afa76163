//! Cgroups of containers, on cgroup v1, v2 and hybrid hosts (v1 controllers plus a
//! controller-less cgroup2 tree, as on these machines).
//!
//! A container has one directory per hierarchy, all at the same relative path. Resources
//! are applied through cgroups-rs; placing, freezing, killing and removal are done here,
//! because they must cover every hierarchy (cgroups-rs treats a hybrid host as v1 only) and
//! must never block a runtime thread or move processes out to make removal succeed.
use std::{
    collections::BTreeSet,
    fs, io,
    path::{Component, Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use cgroups_rs::manager::Manager;

use crate::error::{Error, IoContext, Result};

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug)]
struct Hierarchy {
    mount_point: PathBuf,
    unified: bool,
    /// A v1 hierarchy with the freezer controller.
    freezer: bool,
}

/// The host's hierarchies, read once from mountinfo (they do not change under a daemon).
fn hierarchies() -> &'static [Hierarchy] {
    static HIERARCHIES: OnceLock<Vec<Hierarchy>> = OnceLock::new();
    HIERARCHIES.get_or_init(|| {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut found: Vec<Hierarchy> = Vec::new();
        for line in mountinfo.lines() {
            // "<id> <parent> <dev> <root> <mount point> <options> [optional...] - <fstype> ..."
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(separator) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(mount_point), Some(fstype)) = (fields.get(4), fields.get(separator + 1))
            else {
                continue;
            };
            let unified = match *fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => continue,
            };
            let mount_point = PathBuf::from(mount_point.replace("\\040", " "));
            let super_options = fields.get(separator + 3).copied().unwrap_or_default();
            let freezer = !unified && super_options.split(',').any(|o| o == "freezer");
            if !found.iter().any(|h| h.mount_point == mount_point) {
                found.push(Hierarchy {
                    mount_point,
                    unified,
                    freezer,
                });
            }
        }
        found
    })
}

/// A pure cgroup v2 host: the only hierarchy is cgroup2.
pub fn is_unified_host() -> bool {
    let all = hierarchies();
    !all.is_empty() && all.iter().all(|h| h.unified)
}

/// The name of the hierarchy holding `dir`, as its mount point's last component
/// (`memory`, `cpu,cpuacct`, `unified`).
pub fn hierarchy_name(dir: &Path) -> Option<String> {
    hierarchies()
        .iter()
        .filter(|h| dir.starts_with(&h.mount_point))
        .max_by_key(|h| h.mount_point.as_os_str().len())
        .and_then(|h| h.mount_point.file_name())
        .map(|name| name.to_string_lossy().into_owned())
}

/// The container's cgroup path relative to each hierarchy root (runc's rules): an absolute
/// `linux.cgroupsPath` is taken from the root, a relative one under `parent`, none is
/// `<parent>/<id>`. A path that climbs with `..` is refused.
pub fn relative_path(
    cgroups_path: Option<&Path>,
    parent: &Path,
    id: &str,
) -> Result<PathBuf, String> {
    let joined = match cgroups_path {
        Some(path) if path.is_absolute() => path.to_owned(),
        Some(path) => parent.join(path),
        None => parent.join(id),
    };
    let mut relative = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!(
                    "cgroup path {} must not contain \"..\"",
                    joined.display()
                ))
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err("the cgroup path is the hierarchy root".into());
    }
    Ok(relative)
}

/// The container's directory in every hierarchy, and the directories on the way to it that
/// are berth's, parents first: those that do not exist yet (creating the container makes
/// them) and those at or below `owned_parent` (berth's `--cgroup-parent`, which berth
/// creates and may remove once it is empty, whichever container made it).
pub fn plan(relative: &Path, owned_parent: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut dirs = Vec::new();
    let mut owned = Vec::new();
    for hierarchy in hierarchies() {
        let mut prefix = PathBuf::new();
        for part in relative.components() {
            prefix.push(part);
            let ancestor = hierarchy.mount_point.join(&prefix);
            if !ancestor.exists() || prefix.starts_with(owned_parent) {
                owned.push(ancestor);
            }
        }
        dirs.push(hierarchy.mount_point.join(relative));
    }
    (dirs, owned)
}

/// Makes those of `dirs` (parents first) that do not exist.
///
/// The delete of another container may remove a shared parent (an empty `--cgroup-parent`
/// level) in the meantime; the parents are in `dirs` too, so starting over makes them again.
pub fn create(dirs: &[PathBuf]) -> Result<()> {
    let mut attempts = 0;
    'again: loop {
        for dir in dirs {
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                    continue 'again;
                }
                Err(e) => return Err(e).context(|| format!("create cgroup {}", dir.display())),
            }
            inherit_cpuset(dir)?;
        }
        return Ok(());
    }
}

/// A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and refuses processes
/// until it has some: it gets its parent's.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let Ok(current) = fs::read_to_string(&own) else {
            return Ok(());
        };
        if current.trim().is_empty() {
            let inherited = fs::read_to_string(parent.join(file))
                .context(|| format!("read {}", parent.join(file).display()))?;
            fs::write(&own, inherited.trim()).context(|| format!("write {}", own.display()))?;
        }
    }
    Ok(())
}

/// Applies `linux.resources` (memory, pids, cpu, cpuset, blkio, devices, ...).
pub fn apply_resources(
    relative: &Path,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    let path = relative.to_string_lossy();
    let mut manager =
        cgroups_rs::manager::FsManager::new(&path).map_err(|e| resources_error(&path, e))?;
    manager
        .set(resources)
        .map_err(|e| resources_error(&path, e))
}

fn resources_error(path: &str, error: cgroups_rs::manager::Error) -> Error {
    Error::Io {
        context: format!("apply linux.resources to cgroup {path}"),
        source: io::Error::other(error.to_string()),
    }
}

/// The devices every container may use whatever its rules say (runc allows the same):
/// null, zero, full, random, urandom, tty, ptmx and the pseudo-terminals.
const DEFAULT_DEVICE_RULES: [&str; 8] = [
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Adds the default device rules on a v1 devices controller (v2 has no devices files).
pub fn allow_default_devices(dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        let allow = dir.join("devices.allow");
        if allow.exists() {
            for rule in DEFAULT_DEVICE_RULES {
                fs::write(&allow, rule)
                    .context(|| format!("write {rule:?} to {}", allow.display()))?;
            }
        }
    }
    Ok(())
}

pub fn add_process(dirs: &[PathBuf], pid: i32) -> Result<()> {
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string())
            .context(|| format!("write pid {pid} to {}", procs.display()))?;
    }
    Ok(())
}

/// An eventfd the kernel signals each time the container's v1 memory cgroup runs out of
/// memory (registered through `cgroup.event_control`); `None` without a v1 memory
/// controller. The kernel also signals it once when the cgroup is removed.
pub fn oom_eventfd(dirs: &[PathBuf]) -> Result<Option<std::os::fd::OwnedFd>> {
    use std::os::fd::AsRawFd;
    let Some(dir) = dirs.iter().find(|d| d.join("memory.oom_control").exists()) else {
        return Ok(None);
    };
    let eventfd = nix::sys::eventfd::EventFd::from_flags(
        nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
    )
    .context(|| "eventfd".into())?;
    let oom_control = dir.join("memory.oom_control");
    let control =
        fs::File::open(&oom_control).context(|| format!("open {}", oom_control.display()))?;
    let registration = format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd());
    let event_control = dir.join("cgroup.event_control");
    fs::write(&event_control, registration)
        .context(|| format!("write {}", event_control.display()))?;
    Ok(Some(eventfd.into()))
}

/// Frozen as delete.md section 3 defines it, on the container's freezer: v1
/// `freezer.state` FROZEN on the cgroup itself (`freezer.self_freezing`, so a frozen
/// ancestor does not count as a pause of this container), or v2 `cgroup.freeze` set.
pub fn is_frozen(dirs: &[PathBuf]) -> bool {
    let Some((dir, v1)) = freezer(dirs) else {
        return false;
    };
    if v1 {
        read_small(&dir.join("freezer.state")) == b"FROZEN"
            && read_small(&dir.join("freezer.self_freezing")) == b"1"
    } else {
        read_small(&dir.join("cgroup.freeze")) == b"1"
    }
}

/// A short cgroup file's content, trimmed; empty when it cannot be read. One open, one
/// read, one close: this runs for every container on every ListContainers.
fn read_small(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buffer = [0u8; 16];
    let read = fs::File::open(path).and_then(|mut file| file.read(&mut buffer));
    match read {
        Ok(n) => buffer[..n].trim_ascii().to_vec(),
        Err(_) => Vec::new(),
    }
}

/// The directory that freezes the container, and whether it is v1's: the v1 freezer's when
/// there is one (a process frozen in cgroup2 on a hybrid host would still look thawed to
/// v1), else v2's. Decided from the host's hierarchies alone: status is derived often, and
/// this costs no system call.
fn freezer(dirs: &[PathBuf]) -> Option<(&PathBuf, bool)> {
    use std::os::unix::ffi::OsStrExt;
    // Byte prefixes rather than Path::starts_with: this runs for every container on every
    // ListContainers, and comparing paths component by component costs more than the
    // rest of deriving the status.
    let under = |dir: &Path, mount_point: &Path| {
        let (dir, mount_point) = (
            dir.as_os_str().as_bytes(),
            mount_point.as_os_str().as_bytes(),
        );
        dir.len() > mount_point.len() + 1
            && dir.starts_with(mount_point)
            && dir[mount_point.len()] == b'/'
    };
    let in_hierarchy = |wanted: fn(&Hierarchy) -> bool| {
        dirs.iter().find(|dir| {
            hierarchies()
                .iter()
                .any(|h| wanted(h) && under(dir, &h.mount_point))
        })
    };
    match in_hierarchy(|h| h.freezer) {
        Some(dir) => Some((dir, true)),
        None => in_hierarchy(|h| h.unified).map(|dir| (dir, false)),
    }
}

/// Freezes (or thaws) the container and returns once the kernel reports it done.
pub async fn set_frozen(dirs: &[PathBuf], frozen: bool) -> Result<()> {
    let (dir, v1) = freezer(dirs)
        .ok_or_else(|| io::Error::other("no freezer"))
        .context(|| "freeze: the container has no freezer cgroup".into())?;
    let (file, value, done_file, done) = match (v1, frozen) {
        (true, true) => ("freezer.state", "FROZEN", "freezer.state", "FROZEN"),
        (true, false) => ("freezer.state", "THAWED", "freezer.state", "THAWED"),
        (false, true) => ("cgroup.freeze", "1", "cgroup.events", "frozen 1"),
        (false, false) => ("cgroup.freeze", "0", "cgroup.events", "frozen 0"),
    };
    let path = dir.join(file);
    let done_path = dir.join(done_file);
    // A freeze stays FREEZING while a task is in the middle of something uninterruptible;
    // writing the state again nudges the kernel, as runc does.
    for round in 0..1000u32 {
        if round % 10 == 0 {
            fs::write(&path, value).context(|| format!("write {value} to {}", path.display()))?;
        }
        let state =
            fs::read_to_string(&done_path).context(|| format!("read {}", done_path.display()))?;
        if state.lines().any(|line| line.trim() == done) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(io::Error::from(io::ErrorKind::TimedOut))
        .context(|| format!("wait for {} to report {done}", done_path.display()))
}

/// Every process in the container's cgroup trees, in every hierarchy.
pub fn processes(dirs: &[PathBuf]) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for dir in dirs {
        for tree_dir in subtree_deepest_first(dir) {
            let procs = fs::read_to_string(tree_dir.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids
}

/// `dir` and every cgroup below it, children before their parents.
fn subtree_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut order = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
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

/// SIGKILLs every process of the container's trees: `cgroup.kill` where the kernel has it
/// and it reaches every process (a hybrid host's cgroup2 tree holds only what was placed
/// there), else freeze, kill each pid, thaw, so nothing forks in between.
pub async fn kill_all(dirs: &[PathBuf]) -> Result<()> {
    let everyone = processes(dirs);
    if everyone.is_empty() {
        return Ok(());
    }
    let unified = dirs.iter().find(|d| d.join("cgroup.kill").exists());
    if let Some(unified) = unified {
        if processes(std::slice::from_ref(unified)) == everyone {
            let kill = unified.join("cgroup.kill");
            return fs::write(&kill, "1").context(|| format!("write {}", kill.display()));
        }
    }
    let can_freeze = freezer(dirs).is_some();
    if can_freeze {
        set_frozen(dirs, true).await?;
    }
    for pid in processes(dirs) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if can_freeze {
        set_frozen(dirs, false).await?;
    }
    Ok(())
}

/// Removes the container's cgroup trees, deepest first, then the ancestors berth created
/// that are now empty. `rmdir` meets EBUSY while a killed process is still exiting: that is
/// retried with growing sleeps (about a second per directory in all), killing whatever is
/// still in the tree between tries. Nothing is ever moved out of a cgroup to make it go.
pub async fn remove(dirs: &[PathBuf], created: &[PathBuf]) -> Result<()> {
    for dir in dirs.iter().filter(|d| created.contains(d)) {
        for tree_dir in subtree_deepest_first(dir) {
            remove_dir_retrying(dirs, &tree_dir).await?;
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
            Err(e) => return Err(e).context(|| format!("remove cgroup {}", ancestor.display())),
        }
    }
    Ok(())
}

async fn remove_dir_retrying(dirs: &[PathBuf], dir: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && waited < Duration::from_secs(1) => {
                kill_all(dirs).await?;
                tokio::time::sleep(delay).await;
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(e).context(|| format!("remove cgroup {}", dir.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_runc() {
        let parent = Path::new("berth");
        assert_eq!(
            relative_path(None, parent, "c1").unwrap(),
            Path::new("berth/c1")
        );
        assert_eq!(
            relative_path(Some(Path::new("/a/b")), parent, "c1").unwrap(),
            Path::new("a/b")
        );
        assert_eq!(
            relative_path(Some(Path::new("x/y")), parent, "c1").unwrap(),
            Path::new("berth/x/y")
        );
        assert!(relative_path(Some(Path::new("/a/../../etc")), parent, "c1").is_err());
        assert!(relative_path(Some(Path::new("/")), parent, "c1").is_err());
    }
}
