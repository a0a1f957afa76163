//! process.apparmorProfile, process.selinuxLabel and linux.mountLabel. spec_support lets
//! them through only when berthd found the host enforcing AppArmor or SELinux, so on hosts
//! without them (these test machines among them) none of this is ever reached.
use std::{fs::OpenOptions, io::Write, path::Path};

use oci_spec::runtime::{Process, Spec};

use crate::error::{IoContext, Result};

fn asked(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Asks the kernel to confine the process from its next execve on, as aa_change_onexec and
/// setexeccon do. The init writes its own attributes, through berthd's /proc (before
/// pivot_root), so a container without /proc is confined too.
pub fn set_exec_labels(process: &Process) -> Result<()> {
    if let Some(profile) = asked(process.apparmor_profile()) {
        // AppArmor's own directory where the kernel stacks modules, the shared file before.
        let own = Path::new("/proc/self/attr/apparmor/exec");
        let file = if own.exists() {
            own
        } else {
            Path::new("/proc/self/attr/exec")
        };
        write_attr(file, &format!("exec {profile}"))
            .context(|| format!("apply process.apparmorProfile {profile:?}"))?;
    }
    if let Some(label) = asked(process.selinux_label()) {
        write_attr(Path::new("/proc/self/attr/exec"), label)
            .context(|| format!("apply process.selinuxLabel {label:?}"))?;
    }
    Ok(())
}

fn write_attr(file: &Path, value: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(file)?
        .write_all(value.as_bytes())
}

/// The data string of a `kind` mount, with linux.mountLabel as its SELinux context on the
/// file systems runc labels: all but bind mounts (handled elsewhere), proc, sysfs and
/// cgroups, which do not take a context.
pub fn mount_data(data: &str, kind: &str, spec: &Spec) -> Option<String> {
    let label = spec
        .linux()
        .as_ref()
        .and_then(|l| asked(l.mount_label()))
        .filter(|_| !matches!(kind, "proc" | "sysfs" | "cgroup" | "cgroup2"));
    let context = label.map(|label| format!("context=\"{label}\""));
    let parts: Vec<&str> = [Some(data).filter(|d| !d.is_empty()), context.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mount_label: Option<&str>) -> Spec {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_mount_label(mount_label.map(String::from));
        spec.set_linux(Some(linux));
        spec
    }

    #[test]
    fn mount_label_joins_the_data_of_labelled_file_systems_only() {
        let labelled = spec(Some("system_u:object_r:container_file_t:s0"));
        assert_eq!(
            mount_data("mode=755", "tmpfs", &labelled).as_deref(),
            Some("mode=755,context=\"system_u:object_r:container_file_t:s0\"")
        );
        assert_eq!(
            mount_data("", "mqueue", &labelled).as_deref(),
            Some("context=\"system_u:object_r:container_file_t:s0\"")
        );
        for kind in ["proc", "sysfs", "cgroup", "cgroup2"] {
            assert_eq!(mount_data("", kind, &labelled), None, "{kind}");
        }
    }

    #[test]
    fn without_a_mount_label_the_data_is_unchanged() {
        for unlabelled in [spec(None), spec(Some(""))] {
            assert_eq!(
                mount_data("mode=755", "tmpfs", &unlabelled).as_deref(),
                Some("mode=755")
            );
            assert_eq!(mount_data("", "tmpfs", &unlabelled), None);
        }
    }
}
