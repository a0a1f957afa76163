//! The host's cgroup hierarchies, read from mountinfo (they do not change under a daemon).
use std::path::PathBuf;

use procfs::process::MountInfo;

use super::{CgroupError, Layout, Result};

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    pub unified: bool,
    /// A v1 hierarchy with the freezer controller.
    pub freezer: bool,
    /// v1: the controllers bound to it (`cpu`, `cpuacct`, `name=systemd`, ...).
    pub controllers: Vec<String>,
}

pub fn host() -> Result<Vec<Hierarchy>> {
    let mounts = procfs::process::Process::myself()
        .and_then(|me| me.mountinfo())
        .map_err(|e| CgroupError::Mountinfo(e.to_string()))?;
    Ok(from_mounts(mounts.into_iter()))
}

/// cgroup and cgroup2 mounts of a hierarchy's root. A bind mount of a subtree (mount root
/// other than `/`) is not a hierarchy of its own, and a second mount of a hierarchy
/// already found adds nothing.
pub fn from_mounts(mounts: impl Iterator<Item = MountInfo>) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for mount in mounts {
        let unified = match mount.fs_type.as_str() {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        if mount.root != "/" {
            continue;
        }
        let mut controllers: Vec<String> = if unified {
            Vec::new()
        } else {
            mount
                .super_options
                .iter()
                .filter_map(|(key, value)| match value {
                    None if !matches!(key.as_str(), "rw" | "ro") => Some(key.clone()),
                    Some(value) if key == "name" => Some(format!("name={value}")),
                    _ => None,
                })
                .collect()
        };
        controllers.sort();
        let mount_point = unescape(&mount.mount_point);
        let duplicate = found.iter().any(|h| {
            h.mount_point == mount_point || (h.unified == unified && h.controllers == controllers)
        });
        if duplicate {
            continue;
        }
        found.push(Hierarchy {
            mount_point,
            unified,
            freezer: controllers.iter().any(|c| c == "freezer"),
            controllers,
        });
    }
    found
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes,
/// which procfs hands over as they are.
fn unescape(escaped: &std::path::Path) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let bytes = escaped.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

pub fn layout(hierarchies: &[Hierarchy]) -> Result<Layout> {
    match (
        hierarchies.iter().any(|h| h.unified),
        hierarchies.iter().any(|h| !h.unified),
    ) {
        (true, false) => Ok(Layout::Unified),
        (true, true) => Ok(Layout::Hybrid),
        (false, true) => Ok(Layout::V1),
        (false, false) => Err(CgroupError::NoHierarchy),
    }
}

#[cfg(test)]
mod tests {
    use procfs::{process::MountInfos, FromBufRead};

    use super::*;

    fn parse(text: &str) -> Vec<Hierarchy> {
        from_mounts(
            MountInfos::from_buf_read(text.as_bytes())
                .unwrap()
                .into_iter(),
        )
    }

    #[test]
    fn hybrid_hosts_bind_mounts_and_escapes() {
        let hierarchies = parse(concat!(
            "24 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n",
            "25 24 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            "26 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
            "27 24 0:25 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n",
            // A subtree bound elsewhere, and the same hierarchy mounted twice.
            "28 30 0:25 /berth /mnt/freezer-sub rw - cgroup cgroup rw,freezer\n",
            "29 30 0:24 / /mnt/cpu\\040again rw - cgroup cgroup rw,cpu,cpuacct\n",
            "31 30 0:26 / /srv/with\\040space\\134 rw - cgroup cgroup rw,name=systemd\n",
        ));
        let points: Vec<_> = hierarchies.iter().map(|h| h.mount_point.clone()).collect();
        assert_eq!(
            points,
            [
                "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/freezer",
                "/srv/with space\\",
            ]
            .map(PathBuf::from)
        );
        assert!(hierarchies[2].freezer && !hierarchies[1].freezer);
        assert_eq!(hierarchies[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(hierarchies[3].controllers, ["name=systemd"]);
        assert_eq!(layout(&hierarchies).unwrap(), Layout::Hybrid);
    }

    #[test]
    fn layouts() {
        let v2 = parse("25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(layout(&v2).unwrap(), Layout::Unified);
        let v1 = parse("26 1 0:24 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n");
        assert_eq!(layout(&v1).unwrap(), Layout::V1);
        assert!(matches!(layout(&[]), Err(CgroupError::NoHierarchy)));
    }
}
