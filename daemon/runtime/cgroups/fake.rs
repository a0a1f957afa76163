//! A recording stand-in for the kernel's cgroups: unit tests of the decisions container
//! code makes (which calls, in which order, on which outcome) run on it without root.
//! The integration tests on real cgroups stay; this only makes the decision logic fast to
//! pin.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
};

use super::{CgroupError, CgroupManager, ContainerMount, Freeze, Layout, OomWatch, Plan, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Create(Vec<PathBuf>),
    Apply,
    Update,
    SetFrozen(bool),
    RequestThaw,
    SignalAll(i32),
    KillAll,
    Remove {
        dirs: Vec<PathBuf>,
        created: Vec<PathBuf>,
    },
}

/// What the fake reports and how it fails; the calls it got, in order.
#[derive(Debug, Default)]
pub struct Fake {
    pub calls: Mutex<Vec<Call>>,
    pub frozen: Mutex<bool>,
    pub processes: Mutex<BTreeSet<i32>>,
    pub remove_fails: Mutex<bool>,
    /// Set: the freezer is the file `<first dir>/cgroup.freeze` on disk, as on cgroup2, and
    /// `freeze` counts its reads in `freeze_reads`.
    pub freezer_file: bool,
    pub freeze_reads: AtomicUsize,
}

impl Fake {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

impl CgroupManager for Fake {
    fn layout(&self) -> Layout {
        Layout::Unified
    }

    fn plan(&self, relative: &Path) -> Plan {
        let dir = Path::new("/fake").join(relative);
        Plan {
            dirs: vec![dir.clone()],
            created: vec![dir],
        }
    }

    fn create(&self, plan: &Plan) -> Result<()> {
        self.record(Call::Create(plan.created.clone()));
        Ok(())
    }

    fn apply(&self, _: &[PathBuf], _: Option<&oci_spec::runtime::LinuxResources>) -> Result<()> {
        self.record(Call::Apply);
        Ok(())
    }

    fn update(&self, _: &[PathBuf], _: &oci_spec::runtime::LinuxResources) -> Result<()> {
        self.record(Call::Update);
        Ok(())
    }

    fn stats(&self, _: &[PathBuf]) -> Result<super::stats::Stats> {
        Ok(Default::default())
    }

    fn placement(&self, dirs: &[PathBuf]) -> super::Placement {
        super::Placement {
            tasks: Vec::new(),
            clone_into: dirs.first().cloned(),
        }
    }

    fn processes(&self, _: &[PathBuf], _: &[PathBuf]) -> BTreeSet<i32> {
        self.processes.lock().unwrap().clone()
    }

    fn freeze(&self, dirs: &[PathBuf]) -> Freeze {
        if !self.freezer_file {
            return match *self.frozen.lock().unwrap() {
                true => Freeze::Frozen,
                false => Freeze::Off,
            };
        }
        self.freeze_reads.fetch_add(1, Ordering::SeqCst);
        match std::fs::read_to_string(dirs[0].join("cgroup.freeze")).as_deref() {
            Ok("1") => Freeze::Frozen,
            Ok("0") => Freeze::Off,
            _ => Freeze::Absent,
        }
    }

    fn freezer_dir<'a>(&self, dirs: &'a [PathBuf]) -> Option<&'a Path> {
        dirs.first()
            .filter(|_| self.freezer_file)
            .map(PathBuf::as_path)
    }

    fn set_frozen(&self, _: &[PathBuf], frozen: bool) -> Result<()> {
        self.record(Call::SetFrozen(frozen));
        *self.frozen.lock().unwrap() = frozen;
        Ok(())
    }

    fn request_thaw(&self, _: &[PathBuf]) -> Result<()> {
        self.record(Call::RequestThaw);
        *self.frozen.lock().unwrap() = false;
        Ok(())
    }

    fn signal_all(&self, _: &[PathBuf], _: &[PathBuf], signal: i32) {
        self.record(Call::SignalAll(signal));
    }

    fn kill_all(&self, _: &[PathBuf], _: &[PathBuf]) -> Result<()> {
        self.record(Call::KillAll);
        self.processes.lock().unwrap().clear();
        Ok(())
    }

    fn remove(&self, dirs: &[PathBuf], created: &[PathBuf], _: &[PathBuf]) -> Result<()> {
        self.record(Call::Remove {
            dirs: dirs.to_vec(),
            created: created.to_vec(),
        });
        if *self.remove_fails.lock().unwrap() {
            return Err(CgroupError::Io {
                action: "remove cgroup",
                path: dirs.first().cloned().unwrap_or_default(),
                source: std::io::Error::from_raw_os_error(libc::EBUSY),
            });
        }
        Ok(())
    }

    fn oom_watch(&self, _: &[PathBuf]) -> Result<Option<OomWatch>> {
        Ok(None)
    }

    fn container_mount(&self, _: &[PathBuf]) -> ContainerMount {
        ContainerMount::Cgroup2
    }
}
