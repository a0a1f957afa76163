//! Intel RDT (resctrl) groups. A container names a group by `linux.intelRdt.closID`, or gets
//! one named after its id. Only a group berth created is ever removed: a closID group that
//! already existed is shared with others.
use std::{fs, io, path::Path};

use oci_spec::runtime::LinuxIntelRdt;

use crate::{
    error::{IoContext, Result},
    state::RdtGroup,
};

/// resctrl's file-system magic number (statfs f_type).
const RDTGROUP_SUPER_MAGIC: i64 = 0x7655_821;

/// The group the container will join; fails when the spec asks for RDT and the host has no
/// resctrl root.
pub fn plan(
    rdt: &LinuxIntelRdt,
    resctrl_root: &Path,
    id: &str,
) -> std::result::Result<RdtGroup, String> {
    if !resctrl_root.is_dir() {
        return Err(format!(
            "linux.intelRdt is set but there is no resctrl file system at {}",
            resctrl_root.display()
        ));
    }
    let name = rdt.clos_id().as_deref().unwrap_or(id);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!(
            "linux.intelRdt.closID {name:?} is not a valid group name"
        ));
    }
    let path = resctrl_root.join(name);
    Ok(RdtGroup {
        created_by_berth: !path.exists(),
        path,
    })
}

/// Makes the group if berth planned to, and writes its schemata; returns whether this call
/// made the directory (a parallel create may have been first).
pub fn create(group: &RdtGroup, rdt: &LinuxIntelRdt) -> Result<bool> {
    let mut made = false;
    if group.created_by_berth {
        match fs::create_dir(&group.path) {
            Ok(()) => made = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).context(|| format!("create RDT group {}", group.path.display()))
            }
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
            .context(|| format!("write {}", file.display()))?;
    }
    Ok(made)
}

pub fn assign(group: &RdtGroup, pid: i32) -> Result<()> {
    let tasks = group.path.join("tasks");
    fs::write(&tasks, pid.to_string()).context(|| format!("write pid {pid} to {}", tasks.display()))
}

/// delete.md D11: rmdir first (resctrl's own files cannot be unlinked, and rmdir is how the
/// kernel frees a group); a plain directory that is not resctrl is removed recursively.
pub fn remove(group: &RdtGroup) -> Result<()> {
    if !group.created_by_berth {
        return Ok(());
    }
    let rmdir_error = match fs::remove_dir(&group.path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => e,
    };
    let is_resctrl = nix::sys::statfs::statfs(&group.path)
        .map(|s| s.filesystem_type().0 as i64 == RDTGROUP_SUPER_MAGIC)
        .unwrap_or(false);
    if is_resctrl {
        return Err(rmdir_error).context(|| format!("remove RDT group {}", group.path.display()));
    }
    fs::remove_dir_all(&group.path).context(|| format!("remove RDT group {}", group.path.display()))
}
