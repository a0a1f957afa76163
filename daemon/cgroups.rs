//! Cgroups of containers, on cgroup v1, v2 and hybrid hosts.
use std::{fs, path::Path};

/// Frozen as delete.md section 3 defines it: v1 `freezer.state` FROZEN on the cgroup itself
/// (`freezer.self_freezing`, so a frozen ancestor does not count as a pause of this
/// container), or v2 `cgroup.freeze` set.
pub fn is_frozen(dir: &Path) -> bool {
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    if read("freezer.state").trim() == "FROZEN" {
        return read("freezer.self_freezing").trim() == "1";
    }
    read("cgroup.freeze").trim() == "1"
}
