//! Intel RDT (resctrl) groups. A container names a group by `linux.intelRdt.closID`, or gets
//! one named after its id. A group is berth's when berth made it, for this container or for
//! another that shares it; only a group of berth's is ever removed, and only once no
//! registered container uses it (the registry tells): a closID group that already existed is
//! the operator's.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use oci_spec::runtime::LinuxIntelRdt;

use serde::{Deserialize, Serialize};

use crate::quote::shorten;

/// resctrl's file-system magic number (statfs f_type).
const RDTGROUP_SUPER_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x0765_5821);

#[derive(Debug, thiserror::Error)]
pub enum RdtError {
    /// The host cannot do what the spec asks.
    #[error("container {id}: linux.intelRdt is set but there is no resctrl file system at {}", root.display())]
    NoResctrl { id: String, root: PathBuf },
    /// The caller's fault: the name cannot be a group's directory.
    #[error(
        "container {id}: linux.intelRdt.closID {} is not a valid group name",
        shorten(name)
    )]
    InvalidClosId { id: String, name: String },
    #[error("{action} RDT group {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RdtError + 'a {
    move |source| RdtError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

pub type Result<T, E = RdtError> = std::result::Result<T, E>;

/// The group the container will join: berth's when it does not exist yet (the registry
/// also makes it berth's when another container that records it as berth's is
/// registered). Fails when the spec asks for RDT and the host has no resctrl root.
pub fn plan(rdt: &LinuxIntelRdt, resctrl_root: &Path, id: &str) -> Result<RdtGroup> {
    if !resctrl_root.is_dir() {
        return Err(RdtError::NoResctrl {
            id: id.into(),
            root: resctrl_root.to_owned(),
        });
    }
    let name = rdt.clos_id().as_deref().unwrap_or(id);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(RdtError::InvalidClosId {
            id: id.into(),
            name: name.into(),
        });
    }
    let path = resctrl_root.join(name);
    Ok(RdtGroup {
        created_by_berth: !path.exists(),
        path,
    })
}

/// Makes the group if it is berth's and missing (another container sharing it may have
/// made it first), and writes its schemata.
pub fn create(group: &RdtGroup, rdt: &LinuxIntelRdt) -> Result<()> {
    if group.created_by_berth {
        match fs::create_dir(&group.path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_error("create", &group.path)(e))
            }
            _ => {}
        }
    }
    let schemata: Vec<&str> = [
        rdt.l3_cache_schema().as_deref(),
        rdt.mem_bw_schema().as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !schemata.is_empty() {
        let file = group.path.join("schemata");
        fs::write(&file, schemata.join("\n") + "\n")
            .map_err(io_error("write the schemata of", &group.path))?;
    }
    Ok(())
}

pub fn assign(group: &RdtGroup, pid: i32) -> Result<()> {
    fs::write(group.path.join("tasks"), pid.to_string())
        .map_err(io_error("add a process to", &group.path))
}

/// delete.md D11: a group of berth's that no container in `in_use` (the groups other
/// registered containers record) still uses. rmdir first (resctrl's own files cannot be
/// unlinked, and rmdir is how the kernel frees a group); a plain directory that is not
/// resctrl is removed recursively.
pub fn remove(group: &RdtGroup, in_use: &[PathBuf]) -> Result<()> {
    if !group.created_by_berth || in_use.contains(&group.path) {
        return Ok(());
    }
    let rmdir_error = match fs::remove_dir(&group.path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => e,
    };
    let is_resctrl = nix::sys::statfs::statfs(&group.path)
        .map(|s| s.filesystem_type() == RDTGROUP_SUPER_MAGIC)
        .unwrap_or(false);
    if is_resctrl {
        return Err(io_error("remove", &group.path)(rmdir_error));
    }
    fs::remove_dir_all(&group.path).map_err(io_error("remove", &group.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdt(json: serde_json::Value) -> LinuxIntelRdt {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_clos_id_that_cannot_name_a_directory_is_the_callers_fault() {
        let root = tempfile::tempdir().unwrap();
        for bad in ["", ".", "..", "a/b"] {
            let error = plan(
                &rdt(serde_json::json!({ "closID": bad })),
                root.path(),
                "c1",
            )
            .unwrap_err();
            assert!(
                matches!(&error, RdtError::InvalidClosId { name, .. } if name == bad),
                "{bad:?}: {error}"
            );
            assert!(error.to_string().starts_with("container c1: "), "{error}");
        }
    }

    #[test]
    fn a_missing_resctrl_root_is_the_hosts_fault() {
        let error = plan(
            &rdt(serde_json::json!({ "closID": "g" })),
            Path::new("/nonexistent/resctrl"),
            "c1",
        )
        .unwrap_err();
        assert!(matches!(error, RdtError::NoResctrl { .. }), "{error}");
    }

    #[test]
    fn a_group_still_in_use_or_not_berths_stays() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("g");
        fs::create_dir(&path).unwrap();
        let ours = RdtGroup {
            path: path.clone(),
            created_by_berth: true,
        };
        remove(&ours, std::slice::from_ref(&path)).unwrap();
        assert!(path.is_dir(), "removed while another container uses it");
        let theirs = RdtGroup {
            created_by_berth: false,
            ..ours.clone()
        };
        remove(&theirs, &[]).unwrap();
        assert!(path.is_dir(), "removed a group berth did not make");
        remove(&ours, &[]).unwrap();
        assert!(!path.exists());
    }
}

/// An Intel RDT (resctrl) group the container was placed in.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RdtGroup {
    pub path: PathBuf,
    /// The group is berth's: made for this container, or for another registered container
    /// that shares it (delete.md D11). False for a group named by an explicit closID that
    /// existed before berth: the operator's, it outlives the container.
    pub created_by_berth: bool,
}
