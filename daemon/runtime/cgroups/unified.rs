//! Pure cgroup v2: one tree, controllers delegated level by level through
//! `cgroup.subtree_control`, resources as interface-file writes, devices as an eBPF
//! program, `cgroup.freeze` and `cgroup.kill`.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use super::{
    devices, oom, stats, tree, v2_resources, CgroupError, CgroupManager, ContainerMount, Freeze,
    Layout, OomWatch, Placement, Plan, Result,
};

#[derive(Debug)]
pub struct Unified {
    mount_point: PathBuf,
}

impl Unified {
    pub fn new(mount_point: PathBuf) -> Self {
        Self { mount_point }
    }

    /// The container's directories below the root.
    fn relatives(&self, dirs: &[PathBuf]) -> Vec<PathBuf> {
        dirs.iter()
            .filter_map(|dir| dir.strip_prefix(&self.mount_point).ok().map(Path::to_owned))
            .collect()
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Delegates to `dir`'s children every controller `dir` has and has not delegated yet, as
/// runc does from the root down. A controller the kernel refuses here (a level that holds
/// processes cannot delegate: v2's no-internal-process rule) is left out, and a resource
/// that needs it fails later, naming it.
fn delegate_controllers(dir: &Path) {
    let available = read(&dir.join("cgroup.controllers"));
    let delegated = read(&dir.join("cgroup.subtree_control"));
    let delegated: BTreeSet<&str> = v2_resources::parse_controllers(&delegated)
        .into_iter()
        .collect();
    let missing: Vec<String> = v2_resources::parse_controllers(&available)
        .into_iter()
        .filter(|c| !delegated.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return;
    }
    let control = dir.join("cgroup.subtree_control");
    if fs::write(&control, missing.join(" ")).is_err() {
        for one in &missing {
            let _ = fs::write(&control, one);
        }
    }
}

/// Why `dir` lacks a controller, for the error.
fn missing_controller_hint(dir: &Path) -> String {
    match dir.parent() {
        Some(parent) if !read(&parent.join("cgroup.procs")).trim().is_empty() => format!(
            " (its parent {} holds processes, so cgroup v2 cannot delegate controllers below it)",
            parent.display()
        ),
        _ => " (the host does not delegate it)".into(),
    }
}

/// `linux.resources` as runc 1.1's v2 driver writes it, after checking that `dir` has
/// every controller the writes need.
fn write_resources(dir: &Path, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let host = v2_resources::HostInfo {
        io_weight: if v2_resources::needs_io_weight_probe(resources) {
            v2_resources::io_weight_backend(
                fs::read_to_string(dir.join("io.bfq.weight"))
                    .ok()
                    .as_deref(),
            )
        } else {
            Default::default()
        },
    };
    let writes = v2_resources::writes_for_host(resources, &host)?;
    for field in v2_resources::ignored_fields(resources, &host) {
        tracing::warn!(field, cgroup = %dir.display(), "not applied on cgroup v2, as with runc");
    }
    let available = read(&dir.join("cgroup.controllers"));
    let available = v2_resources::parse_controllers(&available);
    if let Some(write) = writes.iter().find(|w| {
        w.controller
            .as_deref()
            .is_some_and(|c| !available.contains(&c))
    }) {
        return Err(CgroupError::MissingController {
            field: write.origin.clone(),
            controller: write.controller.clone().unwrap_or_default(),
            path: dir.to_owned(),
            hint: missing_controller_hint(dir),
        });
    }
    for write in &writes {
        let path = dir.join(&write.file);
        match fs::write(&path, &write.value) {
            Ok(()) => {}
            Err(e) if write.optional && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                let reason = format!("{} = {:?}: {source}", write.origin, write.value);
                return Err(if super::refused_value(&source) {
                    CgroupError::Refused { path, reason }
                } else {
                    CgroupError::Resources { path, reason }
                });
            }
        }
    }
    Ok(())
}

impl CgroupManager for Unified {
    fn layout(&self) -> Layout {
        Layout::Unified
    }

    fn plan(&self, relative: &Path) -> Plan {
        tree::plan(std::iter::once(self.mount_point.as_path()), relative)
    }

    fn create(&self, plan: &Plan) -> Result<()> {
        let leaves = &plan.dirs;
        for leaf in leaves {
            // The levels that exist already, from the root down.
            for level in leaf.ancestors().collect::<Vec<_>>().into_iter().rev() {
                if level.starts_with(&self.mount_point) && level != leaf && level.exists() {
                    delegate_controllers(level);
                }
            }
        }
        tree::create(plan, |dir| {
            if !leaves.iter().any(|leaf| leaf == dir) {
                delegate_controllers(dir);
            }
            Ok(())
        })
    }

    fn apply(
        &self,
        dirs: &[PathBuf],
        resources: Option<&oci_spec::runtime::LinuxResources>,
    ) -> Result<()> {
        let Some(dir) = dirs.first() else {
            return Ok(());
        };
        if let Some(resources) = resources {
            write_resources(dir, resources)?;
        }
        let config_rules = resources
            .and_then(|r| r.devices().as_deref())
            .unwrap_or_default();
        let rules = devices::with_defaults(&devices::rules_from_oci(config_rules)?, &[]);
        devices::apply(dir, &rules)?;
        Ok(())
    }

    fn update(
        &self,
        dirs: &[PathBuf],
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        match dirs.first() {
            Some(dir) => write_resources(dir, resources),
            None => Ok(()),
        }
    }

    fn stats(&self, dirs: &[PathBuf]) -> Result<stats::Stats> {
        match dirs.first() {
            Some(dir) => stats::v2(dir),
            None => Ok(stats::Stats::default()),
        }
    }

    fn placement(&self, dirs: &[PathBuf]) -> Placement {
        Placement {
            tasks: Vec::new(),
            clone_into: dirs.first().cloned(),
        }
    }

    fn processes(&self, dirs: &[PathBuf], others: &[PathBuf]) -> BTreeSet<i32> {
        tree::processes(dirs, others)
    }

    fn freeze(&self, dirs: &[PathBuf]) -> Freeze {
        dirs.first().map_or(Freeze::Absent, |dir| {
            tree::Freezer { dir, v1: false }.state()
        })
    }

    fn freezer_dir<'a>(&self, dirs: &'a [PathBuf]) -> Option<&'a Path> {
        dirs.first().map(PathBuf::as_path)
    }

    fn set_frozen(&self, dirs: &[PathBuf], frozen: bool) -> Result<()> {
        let dir = dirs.first().ok_or_else(|| CgroupError::NoFreezer {
            path: self.mount_point.clone(),
        })?;
        tree::Freezer { dir, v1: false }.set(frozen)
    }

    fn kill_all(&self, dirs: &[PathBuf], others: &[PathBuf]) -> Result<()> {
        let Some(dir) = dirs.first() else {
            return Ok(());
        };
        let kill_file = Some(dir.join("cgroup.kill")).filter(|file| file.exists());
        tree::kill_all(
            dirs,
            others,
            &self.relatives(dirs),
            kill_file.as_deref(),
            Some(tree::Freezer { dir, v1: false }),
        )
    }

    fn request_thaw(&self, dirs: &[PathBuf]) -> Result<()> {
        match dirs.first() {
            Some(dir) => tree::Freezer { dir, v1: false }.request_thaw(),
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
        match dirs
            .first()
            .filter(|dir| dir.join("memory.events").exists())
        {
            Some(dir) => oom::v2(dir).map(Some),
            None => Ok(None),
        }
    }

    fn container_mount(&self, _dirs: &[PathBuf]) -> ContainerMount {
        ContainerMount::Cgroup2
    }
}
