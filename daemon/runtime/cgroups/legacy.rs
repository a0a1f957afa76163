//! cgroup v1, and hybrid hosts: v1 controllers, plus a cgroup2 tree without controllers in
//! which the container is placed too (so `cgroup.kill` can reach it when every process is
//! there). Resources go through cgroups-rs, which knows v1.
use std::{
    collections::BTreeSet,
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use cgroups_rs::manager::Manager;

use super::{
    devices, hierarchy::Hierarchy, oom, tree, CgroupError, CgroupManager, ContainerMount, Layout,
    OomWatch, Plan, Result,
};

#[derive(Debug)]
pub struct Legacy {
    layout: Layout,
    hierarchies: Vec<Hierarchy>,
}

impl Legacy {
    pub fn new(layout: Layout, hierarchies: Vec<Hierarchy>) -> Self {
        Self {
            layout,
            hierarchies,
        }
    }

    /// The hierarchy holding `dir`. Byte prefixes rather than Path::starts_with: this runs
    /// for every container on every ListContainers, and comparing paths component by
    /// component costs more than the rest of deriving the status.
    fn hierarchy_of(&self, dir: &Path) -> Option<&Hierarchy> {
        let dir = dir.as_os_str().as_bytes();
        self.hierarchies.iter().find(|h| {
            let mount_point = h.mount_point.as_os_str().as_bytes();
            dir.len() > mount_point.len() + 1
                && dir.starts_with(mount_point)
                && dir[mount_point.len()] == b'/'
        })
    }

    /// The directory that freezes the container: the v1 freezer's when there is one (a
    /// process frozen in cgroup2 on a hybrid host would still look thawed to v1), else the
    /// cgroup2 tree's.
    fn freezer<'a>(&self, dirs: &'a [PathBuf]) -> Option<tree::Freezer<'a>> {
        let find = |wanted: fn(&Hierarchy) -> bool| {
            dirs.iter()
                .find(|dir| self.hierarchy_of(dir).is_some_and(wanted))
        };
        match find(|h| h.freezer) {
            Some(dir) => Some(tree::Freezer { dir, v1: true }),
            None => find(|h| h.unified).map(|dir| tree::Freezer { dir, v1: false }),
        }
    }

    /// The container's directories below their hierarchies' roots.
    fn relatives(&self, dirs: &[PathBuf]) -> Vec<PathBuf> {
        dirs.iter()
            .filter_map(|dir| {
                let hierarchy = self.hierarchy_of(dir)?;
                dir.strip_prefix(&hierarchy.mount_point)
                    .ok()
                    .map(Path::to_owned)
            })
            .collect()
    }

    fn unified_dir<'a>(&self, dirs: &'a [PathBuf]) -> Option<&'a PathBuf> {
        dirs.iter()
            .find(|dir| self.hierarchy_of(dir).is_some_and(|h| h.unified))
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
            let from = parent.join(file);
            let inherited = fs::read_to_string(&from).map_err(CgroupError::io("read", &from))?;
            fs::write(&own, inherited.trim()).map_err(CgroupError::io("write", &own))?;
        }
    }
    Ok(())
}

impl CgroupManager for Legacy {
    fn layout(&self) -> Layout {
        self.layout
    }

    fn plan(&self, relative: &Path) -> Plan {
        tree::plan(
            self.hierarchies.iter().map(|h| h.mount_point.as_path()),
            relative,
        )
    }

    fn create(&self, plan: &Plan) -> Result<()> {
        tree::create(plan, inherit_cpuset)
    }

    fn apply(
        &self,
        dirs: &[PathBuf],
        resources: Option<&oci_spec::runtime::LinuxResources>,
    ) -> Result<()> {
        let Some(relative) = dirs.first().and_then(|dir| {
            let hierarchy = self.hierarchy_of(dir)?;
            dir.strip_prefix(&hierarchy.mount_point).ok()
        }) else {
            return Ok(());
        };
        if let Some(resources) = resources {
            let path = relative.to_string_lossy();
            let resources_error = |e: cgroups_rs::manager::Error| CgroupError::Resources {
                path: relative.to_owned(),
                reason: e.to_string(),
            };
            cgroups_rs::manager::FsManager::new(&path)
                .and_then(|mut manager| manager.set(resources))
                .map_err(resources_error)?;
        }
        // After the config's rules, as runc does: the defaults cannot be taken away.
        for dir in dirs {
            let allow = dir.join("devices.allow");
            if allow.exists() {
                for rule in devices::DEFAULT_RULES {
                    fs::write(&allow, rule.v1_line())
                        .map_err(CgroupError::io("write a device rule to", &allow))?;
                }
            }
        }
        Ok(())
    }

    fn add_process(&self, dirs: &[PathBuf], pid: i32) -> Result<()> {
        tree::add_process(dirs, pid)
    }

    fn processes(&self, dirs: &[PathBuf], others: &[PathBuf]) -> BTreeSet<i32> {
        tree::processes(dirs, others)
    }

    fn is_frozen(&self, dirs: &[PathBuf]) -> bool {
        match self.freezer(dirs) {
            Some(tree::Freezer { dir, v1: true }) => {
                tree::read_small(&dir.join("freezer.state")) == b"FROZEN"
                    && tree::read_small(&dir.join("freezer.self_freezing")) == b"1"
            }
            Some(tree::Freezer { dir, v1: false }) => {
                tree::read_small(&dir.join("cgroup.freeze")) == b"1"
            }
            None => false,
        }
    }

    fn set_frozen(&self, dirs: &[PathBuf], frozen: bool) -> Result<()> {
        self.freezer(dirs)
            .ok_or_else(|| CgroupError::NoFreezer {
                path: dirs.first().cloned().unwrap_or_default(),
            })?
            .set(frozen)
    }

    fn kill_all(&self, dirs: &[PathBuf], others: &[PathBuf]) -> Result<()> {
        let kill_file = self
            .unified_dir(dirs)
            .map(|dir| dir.join("cgroup.kill"))
            .filter(|file| file.exists());
        tree::kill_all(
            dirs,
            others,
            &self.relatives(dirs),
            kill_file.as_deref(),
            self.freezer(dirs),
        )
    }

    fn request_thaw(&self, dirs: &[PathBuf]) -> Result<()> {
        match self.freezer(dirs) {
            Some(freezer) => freezer.request_thaw(),
            None => Ok(()),
        }
    }

    fn signal_all(&self, dirs: &[PathBuf], others: &[PathBuf], signal: i32) {
        tree::signal_each(dirs, others, &self.relatives(dirs), signal)
    }

    fn remove(&self, dirs: &[PathBuf], created: &[PathBuf], others: &[PathBuf]) -> Result<()> {
        tree::remove(dirs, created, others, || self.kill_all(dirs, others))
    }

    fn oom_watch(&self, dirs: &[PathBuf]) -> Result<Option<OomWatch>> {
        match dirs.iter().find(|d| d.join("memory.oom_control").exists()) {
            Some(dir) => oom::v1(dir).map(Some),
            None => Ok(None),
        }
    }

    fn container_mount(&self, dirs: &[PathBuf]) -> ContainerMount {
        ContainerMount::Binds(
            dirs.iter()
                .filter_map(|dir| {
                    let name = self.hierarchy_of(dir)?.mount_point.file_name()?;
                    Some((name.to_string_lossy().into_owned(), dir.clone()))
                })
                .collect(),
        )
    }
}
