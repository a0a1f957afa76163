//! cgroup v1, and hybrid hosts: v1 controllers, plus a cgroup2 tree without controllers in
//! which the container is placed too (so `cgroup.kill` can reach it when every process is
//! there). Resources go through cgroups-rs, which knows v1.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use cgroups_rs::manager::Manager;

use super::{
    devices, hierarchy::Hierarchy, oom, stats, tree, CgroupError, CgroupManager, ContainerMount,
    Freeze, Layout, OomWatch, Placement, Plan, Result,
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
        self.hierarchies
            .iter()
            .find(|h| tree::lies_below(dir, &h.mount_point))
    }

    /// The directory that freezes the container: the v1 freezer's when there is one (a
    /// process frozen in cgroup2 on a hybrid host would still look thawed to v1), else the
    /// cgroup2 tree's.
    fn freezer<'a>(&self, dirs: &'a [PathBuf]) -> Option<tree::Freezer<'a>> {
        // Hierarchy first, then the directory in it: this runs for every container on every
        // ListContainers, and looking up each directory's hierarchy costs a dozen times more.
        let find = |wanted: fn(&Hierarchy) -> bool| {
            let hierarchy = self.hierarchies.iter().find(|h| wanted(h))?;
            dirs.iter()
                .find(|dir| tree::lies_below(dir, &hierarchy.mount_point))
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

    /// The container's directory in the v1 hierarchy that has `controller`.
    fn dir_with<'a>(&self, dirs: &'a [PathBuf], controller: &str) -> Option<&'a PathBuf> {
        dirs.iter().find(|dir| {
            self.hierarchy_of(dir)
                .is_some_and(|h| !h.unified && h.controllers.iter().any(|c| c == controller))
        })
    }

    /// `resources` through cgroups-rs, once every file it is to write is known to exist: a
    /// missing one is the host's lack, named with the field that needs it.
    fn set_resources(
        &self,
        dirs: &[PathBuf],
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let Some(relative) = dirs.first().and_then(|dir| {
            let hierarchy = self.hierarchy_of(dir)?;
            dir.strip_prefix(&hierarchy.mount_point).ok()
        }) else {
            return Ok(());
        };
        for need in needs(resources) {
            let missing = |path: &Path, hint: String| CgroupError::MissingController {
                field: need.field.to_owned(),
                controller: need.controller.to_owned(),
                path: path.to_owned(),
                hint,
            };
            match self.dir_with(dirs, need.controller) {
                None => return Err(missing(relative, " (no cgroup v1 hierarchy has it)".into())),
                Some(dir) if need.file.is_some_and(|file| !dir.join(file).exists()) => {
                    return Err(missing(
                        dir,
                        format!(" (it has no {})", need.file.unwrap_or_default()),
                    ))
                }
                Some(_) => {}
            }
        }
        let path = relative.to_string_lossy();
        cgroups_rs::manager::FsManager::new(&path)
            .and_then(|mut manager| manager.set(resources))
            .map_err(|e| {
                let path = relative.to_owned();
                match kernel_refusal(&e) {
                    Some(reason) => CgroupError::Refused { path, reason },
                    None => CgroupError::Resources {
                        path,
                        reason: e.to_string(),
                    },
                }
            })
    }

    fn unified_dir<'a>(&self, dirs: &'a [PathBuf]) -> Option<&'a PathBuf> {
        dirs.iter()
            .find(|dir| self.hierarchy_of(dir).is_some_and(|h| h.unified))
    }
}

/// A field of `linux.resources` that cgroups-rs writes to `file` of `controller`'s hierarchy.
struct Need {
    field: &'static str,
    controller: &'static str,
    /// `None` where the file depends on the value (hugetlb's page sizes).
    file: Option<&'static str>,
}

/// What `resources` makes cgroups-rs write: the fields it acts on (a 0 it skips is no need).
fn needs(resources: &oci_spec::runtime::LinuxResources) -> Vec<Need> {
    let mut found = Vec::new();
    let mut need = |set: bool, field, controller, file| {
        if set {
            found.push(Need {
                field,
                controller,
                file,
            });
        }
    };
    if let Some(m) = resources.memory() {
        let (limit, swap) = (m.limit().unwrap_or(0), m.swap().unwrap_or(0));
        need(
            limit != 0,
            "linux.resources.memory.limit",
            "memory",
            Some("memory.limit_in_bytes"),
        );
        // Unlimited memory with swap left out sets swap unlimited too.
        need(
            swap != 0 || limit == -1,
            "linux.resources.memory.swap",
            "memory",
            Some("memory.memsw.limit_in_bytes"),
        );
        need(
            m.reservation().is_some(),
            "linux.resources.memory.reservation",
            "memory",
            Some("memory.soft_limit_in_bytes"),
        );
        need(
            m.swappiness().is_some(),
            "linux.resources.memory.swappiness",
            "memory",
            Some("memory.swappiness"),
        );
        need(
            m.disable_oom_killer() == Some(true),
            "linux.resources.memory.disableOOMKiller",
            "memory",
            Some("memory.oom_control"),
        );
    }
    if let Some(c) = resources.cpu() {
        need(
            c.shares().unwrap_or(0) != 0,
            "linux.resources.cpu.shares",
            "cpu",
            Some("cpu.shares"),
        );
        need(
            c.quota().is_some(),
            "linux.resources.cpu.quota",
            "cpu",
            Some("cpu.cfs_quota_us"),
        );
        need(
            c.period().is_some(),
            "linux.resources.cpu.period",
            "cpu",
            Some("cpu.cfs_period_us"),
        );
        need(
            c.realtime_runtime().is_some(),
            "linux.resources.cpu.realtimeRuntime",
            "cpu",
            Some("cpu.rt_runtime_us"),
        );
        need(
            c.realtime_period().is_some(),
            "linux.resources.cpu.realtimePeriod",
            "cpu",
            Some("cpu.rt_period_us"),
        );
        need(
            c.cpus().is_some(),
            "linux.resources.cpu.cpus",
            "cpuset",
            Some("cpuset.cpus"),
        );
        need(
            c.mems().is_some(),
            "linux.resources.cpu.mems",
            "cpuset",
            Some("cpuset.mems"),
        );
    }
    need(
        resources.pids().is_some(),
        "linux.resources.pids.limit",
        "pids",
        Some("pids.max"),
    );
    if let Some(b) = resources.block_io() {
        need(
            b.weight().is_some(),
            "linux.resources.blockIO.weight",
            "blkio",
            Some("blkio.weight"),
        );
        need(
            b.leaf_weight().is_some(),
            "linux.resources.blockIO.leafWeight",
            "blkio",
            Some("blkio.leaf_weight"),
        );
        need(
            b.weight_device().as_ref().is_some_and(|l| !l.is_empty()),
            "linux.resources.blockIO.weightDevice",
            "blkio",
            Some("blkio.weight_device"),
        );
        for (list, field, file) in [
            (
                b.throttle_read_bps_device(),
                "linux.resources.blockIO.throttleReadBpsDevice",
                "blkio.throttle.read_bps_device",
            ),
            (
                b.throttle_write_bps_device(),
                "linux.resources.blockIO.throttleWriteBpsDevice",
                "blkio.throttle.write_bps_device",
            ),
            (
                b.throttle_read_iops_device(),
                "linux.resources.blockIO.throttleReadIOPSDevice",
                "blkio.throttle.read_iops_device",
            ),
            (
                b.throttle_write_iops_device(),
                "linux.resources.blockIO.throttleWriteIOPSDevice",
                "blkio.throttle.write_iops_device",
            ),
        ] {
            need(
                list.as_ref().is_some_and(|l| !l.is_empty()),
                field,
                "blkio",
                Some(file),
            );
        }
    }
    need(
        resources
            .hugepage_limits()
            .as_ref()
            .is_some_and(|l| !l.is_empty()),
        "linux.resources.hugepageLimits",
        "hugetlb",
        None,
    );
    if let Some(n) = resources.network() {
        need(
            n.class_id().is_some(),
            "linux.resources.network.classID",
            "net_cls",
            Some("net_cls.classid"),
        );
        need(
            n.priorities().as_ref().is_some_and(|p| !p.is_empty()),
            "linux.resources.network.priorities",
            "net_prio",
            Some("net_prio.ifpriomap"),
        );
    }
    found
}

/// When cgroups-rs failed because the kernel refused a value it wrote: which, where, and
/// the kernel's answer.
fn kernel_refusal(error: &cgroups_rs::manager::Error) -> Option<String> {
    use cgroups_rs::fs::error::ErrorKind;
    let cgroups_rs::manager::Error::Cgroupfs(error) = error else {
        return None;
    };
    let ErrorKind::WriteFailed(file, value) = error.kind() else {
        return None;
    };
    let answer = std::error::Error::source(error)?.downcast_ref::<std::io::Error>()?;
    super::refused_value(answer).then(|| format!("{value:?} in {file}: {answer}"))
}

/// A v1 devices cgroup's `devices.allow` and `devices.deny`, each opened once: the kernel
/// takes one rule per write.
struct DeviceFiles<'a> {
    dir: &'a Path,
    allow: Option<fs::File>,
    deny: Option<fs::File>,
}

impl<'a> DeviceFiles<'a> {
    fn new(dir: &'a Path) -> Self {
        Self {
            dir,
            allow: None,
            deny: None,
        }
    }

    fn write(&mut self, rule: &devices::DeviceRule) -> Result<()> {
        use std::io::Write;
        let (file, name) = match rule.allow {
            true => (&mut self.allow, "devices.allow"),
            false => (&mut self.deny, "devices.deny"),
        };
        let path = self.dir.join(name);
        let file = match file {
            Some(file) => file,
            None => file.insert(
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(CgroupError::io("open", &path))?,
            ),
        };
        file.write_all(rule.v1_line().as_bytes())
            .map_err(CgroupError::io("write a device rule to", &path))
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
        let config_rules = resources
            .and_then(|r| r.devices().as_deref())
            .unwrap_or_default();
        let config_rules = devices::rules_from_oci(config_rules)?;
        if let Some(resources) = resources {
            let mut without_devices = resources.clone();
            without_devices.set_devices(None);
            // Most configs limit nothing but devices: cgroups-rs, which reads the host's
            // mounts anew for every container, is not needed for them.
            if without_devices != Default::default() {
                self.set_resources(dirs, &without_devices)?;
            }
        }
        let Some(dir) = self.dir_with(dirs, "devices") else {
            return Ok(());
        };
        // The config's rules in order, then runc's defaults, which cannot be taken away.
        let mut rules = DeviceFiles::new(dir);
        for rule in config_rules.iter().chain(&devices::DEFAULT_RULES) {
            rules.write(rule)?;
        }
        Ok(())
    }

    fn update(
        &self,
        dirs: &[PathBuf],
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let mut without_devices = resources.clone();
        without_devices.set_devices(None);
        self.set_resources(dirs, &without_devices)
    }

    fn stats(&self, dirs: &[PathBuf]) -> Result<stats::Stats> {
        let dir = |controller| self.dir_with(dirs, controller).cloned();
        stats::v1(&stats::V1Dirs {
            cpu: dir("cpu"),
            cpuacct: dir("cpuacct"),
            memory: dir("memory"),
            pids: dir("pids"),
            blkio: dir("blkio"),
        })
    }

    fn placement(&self, dirs: &[PathBuf]) -> Placement {
        let unified = self.unified_dir(dirs);
        Placement {
            tasks: dirs
                .iter()
                .filter(|dir| Some(*dir) != unified)
                .map(|dir| dir.join("tasks"))
                .collect(),
            clone_into: unified.cloned(),
        }
    }

    fn processes(&self, dirs: &[PathBuf], others: &[PathBuf]) -> BTreeSet<i32> {
        tree::processes(dirs, others)
    }

    fn freeze(&self, dirs: &[PathBuf]) -> Freeze {
        self.freezer(dirs)
            .map_or(Freeze::Absent, |freezer| freezer.state())
    }

    fn freezer_dir<'a>(&self, dirs: &'a [PathBuf]) -> Option<&'a Path> {
        self.freezer(dirs).map(|freezer| freezer.dir)
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
        match self.dir_with(dirs, "memory") {
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
