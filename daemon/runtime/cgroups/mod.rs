//! Cgroups of containers behind one interface, [`CgroupManager`], with an implementation
//! per host layout, chosen from the host's mounts when berthd starts:
//! - [`legacy::Legacy`] for cgroup v1 and for hybrid hosts (v1 controllers beside a cgroup2
//!   tree that holds processes but no controllers, as on these machines);
//! - [`unified::Unified`] for pure cgroup v2 hosts.
//!
//! A container has one directory per hierarchy, all at the same relative path. Container
//! code sees only the trait, so its decisions are tested against a recording fake
//! ([`fake`]) as well as on real kernels. Every method may block (freezes wait for the
//! kernel, removal retries EBUSY): async callers go through [`crate::blocking`].
//!
//! A systemd driver (`slice:prefix:name` cgroupsPath) would be a third implementation;
//! these hosts have no systemd.
pub mod devices;
#[cfg(test)]
pub mod fake;
mod hierarchy;
mod legacy;
mod oom;
pub mod stats;
mod tree;
mod unified;
mod v2_resources;

use std::{
    collections::BTreeSet,
    fmt, io,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

pub use oom::OomWatch;

/// What a container's own freezer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freeze {
    Frozen,
    /// Set, but the kernel has not frozen every process yet (v1's FREEZING): it may turn
    /// frozen without another write.
    Freezing,
    /// Not set. It stays so until a file of the freezer directory is written: the kernel
    /// freezing an ancestor does not set it (v1 `freezer.self_freezing`, v2
    /// `cgroup.freeze`).
    Off,
    /// Nothing to read: no freezer, or its directory is gone.
    Absent,
}

/// How the host's cgroup hierarchies are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    V1,
    /// v1 controllers, plus a cgroup2 tree without them.
    Hybrid,
    /// cgroup2 alone.
    Unified,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::V1 => "cgroup v1",
            Layout::Hybrid => "hybrid (cgroup v1 controllers, cgroup2 tree)",
            Layout::Unified => "cgroup v2",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cgroup hierarchy is mounted (read /proc/self/mountinfo)")]
    NoHierarchy,
    #[error("read /proc/self/mountinfo: {0}")]
    Mountinfo(String),
    /// The request's own values are wrong (a swap below the memory limit, a bad key).
    #[error(transparent)]
    InvalidResources(#[from] v2_resources::Error),
    /// The host cannot do what the request asks.
    #[error("{field} needs the {controller} controller, which cgroup {} does not offer{hint}", path.display())]
    MissingController {
        field: String,
        controller: String,
        path: PathBuf,
        hint: String,
    },
    #[error("apply linux.resources to cgroup {}: {reason}", path.display())]
    Resources { path: PathBuf, reason: String },
    /// The kernel refused a value of the request (EINVAL, ERANGE): a CPU list naming CPUs
    /// the parent lacks, a quota beyond its limits.
    #[error("apply linux.resources to cgroup {}: the kernel refused {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
    /// A usage file whose content is not what the kernel documents.
    #[error("cgroup file {}: {source}", path.display())]
    Unparsable {
        path: PathBuf,
        #[source]
        source: v2_resources::ParseError,
    },
    #[error("cgroup {}: no freezer", path.display())]
    NoFreezer { path: PathBuf },
    #[error("cgroup {}: the kernel did not report {state} in time", path.display())]
    FreezeTimeout { path: PathBuf, state: &'static str },
    #[error(transparent)]
    Devices(#[from] devices::DeviceError),
}

impl CgroupError {
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| CgroupError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// The container's directory in every hierarchy, and the directories on the way to it that
/// are berth's, parents first: the container's own, and the levels above it that do not
/// exist yet (creating the container makes them). A level that existed before (an
/// operator's slice, a `--cgroup-parent` made by hand) is never berth's to remove.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub dirs: Vec<PathBuf>,
    pub created: Vec<PathBuf>,
}

/// What a `cgroup` mount in config.json becomes inside the container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ContainerMount {
    /// cgroup2 itself (in the container's cgroup namespace, its root is the container's).
    Cgroup2,
    /// A tmpfs holding a bind of each of the container's directories, named after its
    /// hierarchy (`memory`, `cpu,cpuacct`, `unified`).
    Binds(Vec<(String, PathBuf)>),
}

/// How a process made for the container (its init, an exec process) comes to be in the
/// container's cgroups without migrating it from outside. A write of another process's pid
/// to `cgroup.procs` takes the kernel's global cgroup-migration lock for writing, which
/// waits for an RCU grace period: milliseconds per create, more under load. A thread that
/// moves itself through a v1 `tasks` file (pid 0) skips that lock, and a child cloned with
/// `CLONE_INTO_CGROUP` is born in its cgroup2 directory under the lock's read side only. The
/// helper does both, before it grows a second thread (it never does) and before it forks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The `tasks` file of the container's directory in every v1 hierarchy: the helper
    /// writes 0 to each (itself; its only thread), and what it forks inherits them.
    pub tasks: Vec<PathBuf>,
    /// The container's cgroup2 directory, which the helper clones its child into.
    pub clone_into: Option<PathBuf>,
}

/// Everything berth does to cgroups. Implementations decide nothing about containers:
/// they do what they are asked on the directories they are given.
pub trait CgroupManager: Send + Sync + fmt::Debug {
    fn layout(&self) -> Layout;

    /// Where a container at `relative` lives, and which levels on the way are berth's.
    fn plan(&self, relative: &Path) -> Plan;

    /// Makes the planned directories that do not exist, parents first, enabling on the
    /// way the controllers the layout delegates.
    fn create(&self, plan: &Plan) -> Result<()>;

    /// Applies `linux.resources` and the device rules (runc's defaults plus the config's).
    fn apply(
        &self,
        dirs: &[PathBuf],
        resources: Option<&oci_spec::runtime::LinuxResources>,
    ) -> Result<()>;

    /// Changes the limits of a container that exists, as `runc update` does: what `apply`
    /// writes, without the device rules (an update never takes them, and rewriting them on
    /// v1 would deny every device for a moment, since the rules begin by denying all).
    fn update(&self, dirs: &[PathBuf], resources: &oci_spec::runtime::LinuxResources)
        -> Result<()>;

    /// The usage the kernel counts for the container; figures the host has no controller
    /// for are absent.
    fn stats(&self, dirs: &[PathBuf]) -> Result<stats::Stats>;

    /// How the helper places what it forks in `dirs`.
    fn placement(&self, dirs: &[PathBuf]) -> Placement;

    /// Every process in the container's trees, in every hierarchy. `others` (here and
    /// below) are the cgroup directories other containers record: never listed, killed or
    /// removed, even where an older berth let them lie inside this container's.
    fn processes(&self, dirs: &[PathBuf], others: &[PathBuf]) -> BTreeSet<i32>;

    /// The container's own freezer (a frozen ancestor is not a pause of this container).
    fn freeze(&self, dirs: &[PathBuf]) -> Freeze;

    /// Frozen as delete.md section 3 defines it: the container's own freezer is set.
    fn is_frozen(&self, dirs: &[PathBuf]) -> bool {
        self.freeze(dirs) == Freeze::Frozen
    }

    /// The directory whose files `freeze` reads; `None` when there is none.
    fn freezer_dir<'a>(&self, dirs: &'a [PathBuf]) -> Option<&'a Path>;

    /// Freezes or thaws, and returns once the kernel reports it done.
    fn set_frozen(&self, dirs: &[PathBuf], frozen: bool) -> Result<()>;

    /// Asks for a thaw without waiting for it (after a kill, the SIGKILL lands once the
    /// kernel thaws; an ancestor's freeze, which is no pause of this container, stays).
    fn request_thaw(&self, dirs: &[PathBuf]) -> Result<()>;

    /// Sends `signal` to every process of the container's trees, through pidfds checked to
    /// be in the container's cgroups, so a reused pid is never signalled. Nothing is frozen:
    /// a paused container stays paused, its processes get the signal once thawed.
    fn signal_all(&self, dirs: &[PathBuf], others: &[PathBuf], signal: i32);

    /// SIGKILLs every process of the container's trees, so that none forks meanwhile.
    fn kill_all(&self, dirs: &[PathBuf], others: &[PathBuf]) -> Result<()>;

    /// Removes the container's trees, deepest first, then the ancestors in `created` that
    /// are now empty; processes still exiting are waited for and killed again, never moved.
    fn remove(&self, dirs: &[PathBuf], created: &[PathBuf], others: &[PathBuf]) -> Result<()>;

    /// A watch that wakes at each out-of-memory kill; `None` without a memory controller.
    fn oom_watch(&self, dirs: &[PathBuf]) -> Result<Option<OomWatch>>;

    fn container_mount(&self, dirs: &[PathBuf]) -> ContainerMount;
}

/// The checks of `linux.resources` that need no host: bad values named by field (the same
/// on every layout, as they are the kernel's rules on both).
pub fn validate(resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
    v2_resources::writes_for_host(resources, &v2_resources::HostInfo::default())?;
    Ok(())
}

/// Whether an error from a write is the kernel refusing the value written.
fn refused_value(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ERANGE))
}

/// The manager for this host's layout, read from /proc/self/mountinfo.
pub fn detect() -> Result<Arc<dyn CgroupManager>> {
    let hierarchies = hierarchy::host()?;
    Ok(match hierarchy::layout(&hierarchies)? {
        Layout::Unified => Arc::new(unified::Unified::new(
            hierarchies
                .into_iter()
                .next()
                .map(|h| h.mount_point)
                .unwrap_or_default(),
        )),
        layout => Arc::new(legacy::Legacy::new(layout, hierarchies)),
    })
}

/// The container's cgroup path relative to each hierarchy root (runc's rules): an absolute
/// `linux.cgroupsPath` is taken from the root, a relative one under `parent`, none is
/// `<parent>/<id>`. A path that climbs with `..` is refused.
pub fn relative_path(
    cgroups_path: Option<&Path>,
    parent: &Path,
    id: &str,
) -> std::result::Result<PathBuf, String> {
    let joined = match cgroups_path {
        Some(path) if path.is_absolute() => path.to_owned(),
        Some(path) => parent.join(path),
        None => parent.join(id),
    };
    normalise(&joined)
}

/// A cgroup path as relative to the hierarchy roots, whether written with a leading `/` or
/// not; berthd takes `--cgroup-parent` through this too. `..` and the root itself are
/// refused.
pub fn normalise(joined: &Path) -> std::result::Result<PathBuf, String> {
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
        assert_eq!(normalise(Path::new("/x/./y/")).unwrap(), Path::new("x/y"));
        assert!(normalise(Path::new("/")).is_err() && normalise(Path::new("a/../b")).is_err());
    }
}
