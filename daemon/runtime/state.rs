//! `<root>/<id>/state.json`: everything a later delete needs without the bundle, written
//! atomically so a crash at any moment leaves either the old or the new file.
//!
//! The schema only grows: new fields get `#[serde(default)]` so older files still load.
use std::{
    collections::BTreeMap,
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

use crate::{
    error::{IoContext, Result},
    process::InitProcess,
    rdt::RdtGroup,
};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    /// Bumped only by a change older daemons must refuse to read.
    pub schema_version: u32,
    pub id: String,
    /// Absolute path of the bundle (kept for hooks and the OCI state; delete never reads it).
    pub bundle: PathBuf,
    #[serde(with = "rfc3339")]
    pub created: SystemTime,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Set once the init exists; before that a crash left nothing but this file and cgroups.
    #[serde(default)]
    pub init: Option<InitProcess>,
    /// The boot the container was created in (`/proc/sys/kernel/random/boot_id`; its init
    /// is started by the same berthd, so in the same boot). Start times count from boot, so
    /// after a reboot a new process can have the recorded pid and start time: an init of
    /// another boot is dead. Absent in files of older berths, whose init is checked by pid
    /// and start time alone. Additive, so the schema version stays 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// How the init ended, when the daemon reaped it.
    #[serde(default)]
    pub exit: Option<ExitRecord>,
    /// The container has no PID namespace of its own: killing the init does not kill the
    /// rest, so kill and destroy must reach every process of the cgroup tree.
    #[serde(default)]
    pub shares_pid_namespace: bool,
    /// The container's own cgroup directory in every hierarchy it was placed in (each v1
    /// controller mount and the unified tree).
    #[serde(default)]
    pub cgroup_dirs: Vec<PathBuf>,
    /// The cgroup directories that are berth's, parents before children: those this create
    /// made, and the `--cgroup-parent` levels. Delete removes the container's own (and
    /// whatever grew beneath them) and the others once empty; never a cgroup it did not make.
    #[serde(default)]
    pub created_cgroup_dirs: Vec<PathBuf>,
    #[serde(default)]
    pub rdt: Option<RdtGroup>,
    /// The config's hooks; delete runs `poststop` from here, the bundle may be gone.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// A kill of the whole tree is under way and may have frozen the cgroup: set before,
    /// cleared after; found set at load, the cgroup is thawed.
    #[serde(default)]
    pub frozen_to_kill: bool,
    /// The container's `linux.resources` as last applied: config.json's at create, then each
    /// UpdateResources merged in, so an update after a restart of berthd starts from what the
    /// kernel holds. Absent in files of older berths (an update then starts from nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Box<oci_spec::runtime::LinuxResources>>,
    /// The labels given at create (checked by `labels`); absent in files of older berths.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The exec processes berthd keeps a record of, by exec id: at most
    /// `exec::MAX_RECORDS`, the oldest exited ones making room for new ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub execs: BTreeMap<String, ExecRecord>,
}

/// One exec process: what StartProcess needs to run it, and what became of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecRecord {
    pub process: oci_spec::runtime::Process,
    #[serde(default)]
    pub stdio: Stdio,
    #[serde(with = "rfc3339")]
    pub added: SystemTime,
    /// Set once it runs.
    #[serde(default)]
    pub started: Option<InitProcess>,
    /// How it ended, when berthd reaped it.
    #[serde(default)]
    pub exit: Option<ExitRecord>,
    /// It ended where berthd could not read its status (berthd was down).
    #[serde(default)]
    pub exit_unknown: bool,
}

impl ExecRecord {
    pub fn has_exited(&self) -> bool {
        self.exit.is_some() || self.exit_unknown
    }
}

/// Where a process's standard streams come from and go to, and its terminal; berthd opens
/// them when the process starts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stdio {
    #[serde(default)]
    pub stdin: Option<PathBuf>,
    #[serde(default)]
    pub stdout: Option<PathBuf>,
    #[serde(default)]
    pub stderr: Option<PathBuf>,
    #[serde(default)]
    pub console_socket: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// Exit code, or 128 + signal when a signal ended the init.
    pub code: i32,
    /// The signal that ended the init, 0 if it exited.
    pub signal: u32,
    #[serde(with = "rfc3339")]
    pub exited_at: SystemTime,
}

/// Why a state file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: schema version {found} is newer than this berthd understands ({SCHEMA_VERSION})", path.display())]
    TooNew { path: PathBuf, found: u32 },
}

impl ContainerState {
    /// `None` when the file does not exist.
    pub fn load(path: &Path) -> std::result::Result<Option<Self>, StateError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let state: Self = serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
            path: path.to_owned(),
            source,
        })?;
        if state.schema_version > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                path: path.to_owned(),
                found: state.schema_version,
            });
        }
        Ok(Some(state))
    }

    pub fn save(&self, path: &Path, durability: Durability) -> Result<()> {
        write_atomically(
            path,
            &serde_json::to_vec_pretty(self).expect("state serializes"),
            durability,
        )
    }
}

/// What a state write waits for, decided once for the state root (docs/reliability.md,
/// Durability). Either way a write replaces the file atomically (temp file, rename), so a
/// berthd killed at any point finds the old file or the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The root is in memory (tmpfs, ramfs): it does not outlive the machine, and nothing
    /// needs to reach a disk.
    Volatile,
    /// The root is on disk, which outlives the containers (they die with the machine): the
    /// file's contents are synced before the rename, so a power cut never leaves a torn
    /// or empty state file, only, at worst, the previous one, since the rename is not
    /// waited for.
    Disk,
}

impl Durability {
    /// Of the file system holding `dir`.
    pub fn of(dir: &Path) -> std::io::Result<Self> {
        use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
        /// linux/magic.h; neither libc nor nix names it.
        const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
        let kind = statfs(dir)?.filesystem_type();
        let in_memory = kind == TMPFS_MAGIC || kind == RAMFS_MAGIC;
        Ok(if in_memory {
            Durability::Volatile
        } else {
            Durability::Disk
        })
    }
}

/// Replaces the file at `path` atomically: a temp file beside it, synced when `durability`
/// asks, renamed over it.
pub fn write_atomically(path: &Path, contents: &[u8], durability: Durability) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        if durability == Durability::Disk {
            file.sync_data()?;
        }
        fs::rename(&tmp, path)
    };
    write().context(|| format!("write {}", path.display()))
}

/// RFC 3339 timestamps, as runc writes them, so state files read well by hand.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContainerState {
        ContainerState {
            schema_version: SCHEMA_VERSION,
            id: "c1".into(),
            bundle: "/b".into(),
            created: SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(1_500_000_123),
            annotations: BTreeMap::from([("k".into(), "v".into())]),
            init: Some(InitProcess {
                pid: 42,
                start_time: 7,
            }),
            boot_id: Some("785c5fcf-ad17-4fc0-887d-101a306b07ab".into()),
            exit: None,
            shares_pid_namespace: false,
            cgroup_dirs: vec!["/sys/fs/cgroup/pids/berth/c1".into()],
            created_cgroup_dirs: vec!["/sys/fs/cgroup/pids/berth/c1".into()],
            rdt: None,
            hooks: None,
            frozen_to_kill: false,
            execs: BTreeMap::new(),
            labels: BTreeMap::from([("owner".into(), "ns/pod".into())]),
            resources: Some(Box::new(
                serde_json::from_str(r#"{"memory": {"limit": 67108864}, "pids": {"limit": 32}}"#)
                    .unwrap(),
            )),
        }
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        sample().save(&path, Durability::Disk).unwrap();
        assert_eq!(ContainerState::load(&path).unwrap(), Some(sample()));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_root_in_memory_is_volatile_and_one_on_a_disk_is_not() {
        // /dev/shm is a tmpfs on every Linux these tests run on; the source tree is on disk.
        assert_eq!(
            Durability::of(Path::new("/dev/shm")).unwrap(),
            Durability::Volatile
        );
        assert_eq!(
            Durability::of(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap(),
            Durability::Disk
        );
    }

    #[test]
    fn minimal_file_loads_with_defaults_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(ContainerState::load(&path).unwrap().is_none());
        fs::write(
            &path,
            r#"{"schemaVersion":1,"id":"x","bundle":"/b","created":"2026-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        let state = ContainerState::load(&path).unwrap().unwrap();
        assert!(state.init.is_none() && state.cgroup_dirs.is_empty() && state.labels.is_empty());
        assert!(
            state.resources.is_none(),
            "a file of an older berth has no resources"
        );
        assert!(
            state.boot_id.is_none(),
            "a file of an older berth has no boot id"
        );
    }

    #[test]
    fn broken_files_report_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for (content, expected) in [
            ("{", "EOF"),
            (r#"{"schemaVersion":"one"}"#, "invalid type"),
            (
                r#"{"schemaVersion":99,"id":"x","bundle":"/b","created":"2026-01-02T03:04:05Z"}"#,
                "newer",
            ),
        ] {
            fs::write(&path, content).unwrap();
            let reason = ContainerState::load(&path).unwrap_err().to_string();
            assert!(reason.contains(expected), "{content}: {reason}");
        }
    }
}
