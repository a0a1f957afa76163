//! What berth supports of the OCI runtime spec: the one place that decides which fields of
//! config.json are honoured, which are refused by name, and which are ignored as runc
//! ignores them (docs/runtime-spec.md lists them all). Everything here runs in berthd at
//! create, before any kernel resource exists; the init only applies what passed.
use std::{os::unix::fs::MetadataExt, path::Path, sync::OnceLock};

use nix::mount::MsFlags;
use oci_spec::runtime::{
    Linux, LinuxNamespaceType, LinuxSchedulerFlag, LinuxSchedulerPolicy, Process, Scheduler, Spec,
};

use crate::error::{Error, Result};

pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidBundle {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// A bind mount, by its type or by its options, as runc tells one.
pub fn is_bind(mount: &oci_spec::runtime::Mount) -> bool {
    mount.typ().as_deref() == Some("bind")
        || mount
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

fn unsupported(field: &str) -> Error {
    Error::Unsupported {
        field: field.into(),
    }
}

/// A field whose value berth cannot honour, named in full (`linux.sysctl.kernel.pid_max`).
fn refused(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Anything berth cannot honour yet is refused by name, never silently ignored.
pub(crate) fn check_supported(spec: &Spec, config: &Path) -> Result<()> {
    if !spec.version().starts_with("1.") {
        return Err(invalid(
            config,
            format!("ociVersion {} is not 1.x", spec.version()),
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid(config, "config.json has no process"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid(config, "process.args is empty"));
    }
    check_process_tuning(process)?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid(config, "config.json has no linux section"))?;
    crate::userns::check(spec).map_err(|(field, reason)| Error::InvalidConfig { field, reason })?;
    // Idmapped mounts (mount_setattr with a user namespace per mount) are not done yet.
    for (index, mount) in spec.mounts().iter().flatten().enumerate() {
        let idmap_option = mount
            .options()
            .iter()
            .flatten()
            .find(|o| *o == "idmap" || *o == "ridmap");
        if mount.uid_mappings().is_some() {
            return Err(unsupported(&format!("mounts[{index}].uidMappings")));
        }
        if mount.gid_mappings().is_some() {
            return Err(unsupported(&format!("mounts[{index}].gidMappings")));
        }
        if let Some(option) = idmap_option {
            return Err(unsupported(&format!("mounts[{index}].options: {option}")));
        }
    }
    if linux.net_devices().is_some() {
        return Err(unsupported("linux.netDevices"));
    }
    if linux.memory_policy().is_some() {
        return Err(unsupported("linux.memoryPolicy"));
    }
    if linux
        .personality()
        .as_ref()
        .is_some_and(|p| p.flags().as_ref().is_some_and(|f| !f.is_empty()))
    {
        // The spec defines no flag values; runc drops them with a warning.
        return Err(unsupported("linux.personality.flags"));
    }
    check_security_labels(process, linux, HostLsm::get())?;
    let has_new = |kind: LinuxNamespaceType| {
        linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == kind && n.path().is_none())
    };
    // Without a mount namespace of its own the init would set up (and pivot_root) the
    // host's, or another container's.
    if !has_new(LinuxNamespaceType::Mount) {
        return Err(invalid(
            config,
            "linux.namespaces must include a new mount namespace (one without a path)",
        ));
    }
    if (spec.hostname().is_some() || spec.domainname().is_some())
        && !has_new(LinuxNamespaceType::Uts)
    {
        return Err(invalid(
            config,
            "hostname and domainname need a new uts namespace (they would rename a shared one)",
        ));
    }
    if let Some(value) = linux
        .rootfs_propagation()
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        if rootfs_propagation(value).is_none() {
            return Err(refused(
                "linux.rootfsPropagation",
                format!(
                    "{value:?} is none of shared, slave, private, unbindable (or their r-prefixed forms)"
                ),
            ));
        }
    }
    check_time_offsets(linux)?;
    for key in linux.sysctl().iter().flatten().map(|(key, _)| key) {
        check_sysctl(key, linux)
            .map_err(|reason| refused(format!("linux.sysctl.{key}"), reason))?;
    }
    Ok(())
}

/// linux.rootfsPropagation as mount(2) flags, as runc maps it; `None` for a value the spec
/// does not define.
pub(crate) fn rootfs_propagation(value: &str) -> Option<MsFlags> {
    let (recursive, kind) = match value.strip_prefix('r') {
        Some(kind) => (MsFlags::MS_REC, kind),
        None => (MsFlags::empty(), value),
    };
    let kind = match kind {
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "private" => MsFlags::MS_PRIVATE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(kind | recursive)
}

/// The propagation the config asks for the container's root; `None` leaves it to berth
/// (an empty string too, as with runc).
pub(crate) fn requested_propagation(linux: &Linux) -> Option<MsFlags> {
    linux
        .rootfs_propagation()
        .as_deref()
        .filter(|value| !value.is_empty())
        .and_then(rootfs_propagation)
}

/// Which Linux security modules the host enforces, detected as runc (AppArmor) and
/// go-selinux (SELinux) detect them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostLsm {
    pub apparmor: bool,
    pub selinux: bool,
}

impl HostLsm {
    fn get() -> Self {
        static HOST: OnceLock<HostLsm> = OnceLock::new();
        *HOST.get_or_init(Self::probe)
    }

    fn probe() -> Self {
        let apparmor = Path::new("/sys/kernel/security/apparmor").exists()
            && std::fs::read("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|enabled| enabled.first() == Some(&b'Y'));
        let selinuxfs = std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|mounts| {
            mounts.lines().any(|line| {
                line.split(" - ")
                    .nth(1)
                    .is_some_and(|fs| fs.starts_with("selinuxfs "))
            })
        });
        // A kernel with SELinux built in but not initialised labels everything "kernel".
        let selinux = selinuxfs
            && std::fs::read_to_string("/proc/self/attr/current")
                .is_ok_and(|label| label.trim_end_matches(['\0', '\n']) != "kernel");
        Self { apparmor, selinux }
    }
}

/// An AppArmor profile or SELinux label is applied when the host enforces that module and
/// refused by name when it does not, which is what runc 1.1 amounts to on such a host: its
/// init fails writing the AppArmor profile, it refuses an SELinux process label outright,
/// and its mounts fail on the label's `context=` option. A confinement asked for is never
/// dropped in silence. An empty string asks for nothing, as with runc.
fn check_security_labels(process: &Process, linux: &Linux, host: HostLsm) -> Result<()> {
    let asks = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    if asks(process.apparmor_profile()) && !host.apparmor {
        return Err(refused(
            "process.apparmorProfile",
            "AppArmor is not enabled on this host",
        ));
    }
    for (field, asked) in [
        ("process.selinuxLabel", asks(process.selinux_label())),
        ("linux.mountLabel", asks(linux.mount_label())),
    ] {
        if asked && !host.selinux {
            return Err(refused(field, "SELinux is not enabled on this host"));
        }
    }
    Ok(())
}

/// An exec process's own checks: those of config.json's process that do not depend on the
/// rest of the config.
pub(crate) fn check_exec_process(process: &Process) -> Result<()> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(refused("process.args", "is empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(refused(
            "process.cwd",
            format!("{} is not an absolute path", process.cwd().display()),
        ));
    }
    check_process_tuning(process)?;
    check_security_labels(process, &Linux::default(), HostLsm::get())
}

/// ioPriority and scheduler values the kernel would refuse, caught before anything exists
/// (the checks runc makes, plus the kernel's own ranges).
fn check_process_tuning(process: &Process) -> Result<()> {
    if let Some(io) = process.io_priority() {
        if !(0..=7).contains(&io.priority()) {
            return Err(refused(
                "process.ioPriority.priority",
                format!("{} is outside 0 to 7", io.priority()),
            ));
        }
    }
    if let Some(scheduler) = process.scheduler() {
        check_scheduler(scheduler)
            .map_err(|(field, reason)| refused(format!("process.scheduler.{field}"), reason))?;
    }
    Ok(())
}

/// The kernel's number for a scheduling policy; `None` for SCHED_ISO, which the spec names
/// but Linux never had.
pub(crate) fn scheduler_policy(policy: LinuxSchedulerPolicy) -> Option<libc::c_int> {
    use LinuxSchedulerPolicy::*;
    Some(match policy {
        SchedOther => libc::SCHED_OTHER,
        SchedFifo => libc::SCHED_FIFO,
        SchedRr => libc::SCHED_RR,
        SchedBatch => libc::SCHED_BATCH,
        SchedIdle => libc::SCHED_IDLE,
        SchedDeadline => libc::SCHED_DEADLINE,
        SchedIso => return None,
    })
}

fn check_scheduler(scheduler: &Scheduler) -> std::result::Result<(), (&'static str, String)> {
    use LinuxSchedulerPolicy::*;
    let policy = scheduler.policy();
    let realtime = matches!(policy, SchedFifo | SchedRr);
    if scheduler_policy(*policy).is_none() {
        return Err(("policy", format!("{policy} does not exist in Linux")));
    }
    let nice = scheduler.nice().unwrap_or(0);
    if matches!(policy, SchedOther | SchedBatch) && !(-20..=19).contains(&nice) {
        return Err(("nice", format!("{nice} is outside -20 to 19")));
    }
    let priority = scheduler.priority().unwrap_or(0);
    if realtime && !(1..=99).contains(&priority) {
        return Err((
            "priority",
            format!("{priority} is outside 1 to 99, the range of SCHED_FIFO and SCHED_RR"),
        ));
    }
    if !realtime && priority != 0 {
        return Err(("priority", "only SCHED_FIFO and SCHED_RR take one".into()));
    }
    if let Some(flag) = scheduler.flags().iter().flatten().find(|f| {
        matches!(
            f,
            LinuxSchedulerFlag::SchedFlagUtilClampMin | LinuxSchedulerFlag::SchedFlagUtilClampMax
        )
    }) {
        return Err((
            "flags",
            format!("{flag:?} needs a utilization value, which the spec has no field for"),
        ));
    }
    let deadline_fields = [
        ("runtime", scheduler.runtime()),
        ("deadline", scheduler.deadline()),
        ("period", scheduler.period()),
    ];
    if *policy != SchedDeadline {
        if let Some((field, _)) = deadline_fields
            .iter()
            .find(|(_, value)| value.is_some_and(|v| v != 0))
        {
            return Err((field, "only SCHED_DEADLINE takes one".into()));
        }
    }
    Ok(())
}

/// Offsets go into a time namespace the helper creates, before the init enters it: one
/// joined by path has the offsets it was given. The kernel offsets two clocks only.
fn check_time_offsets(linux: &Linux) -> Result<()> {
    let Some(offsets) = linux.time_offsets().as_ref().filter(|o| !o.is_empty()) else {
        return Ok(());
    };
    match linux
        .namespaces()
        .iter()
        .flatten()
        .find(|n| n.typ() == LinuxNamespaceType::Time)
    {
        None => {
            return Err(refused(
                "linux.timeOffsets",
                "needs a time namespace (linux.namespaces of type time)",
            ))
        }
        Some(namespace) if namespace.path().is_some() => {
            return Err(refused(
                "linux.timeOffsets",
                "a time namespace joined by path keeps the offsets it has",
            ))
        }
        Some(_) => {}
    }
    for (clock, offset) in offsets {
        if !matches!(clock.as_str(), "monotonic" | "boottime") {
            return Err(refused(
                format!("linux.timeOffsets.{clock}"),
                "the kernel offsets only the monotonic and boottime clocks",
            ));
        }
        if offset.nanosecs().unwrap_or(0) >= 1_000_000_000 {
            return Err(refused(
                format!("linux.timeOffsets.{clock}.nanosecs"),
                "must be below 1000000000",
            ));
        }
    }
    Ok(())
}

/// The file under /proc/sys that a linux.sysctl key names. As in sysctl.d(5), the first
/// separator decides: `net.ipv4.conf.eth0/1.rp_filter` and `net/ipv4/conf/eth0.1/rp_filter`
/// are the same file.
pub(crate) fn sysctl_path(key: &str) -> std::result::Result<std::path::PathBuf, String> {
    let slash_separated = key
        .find(['.', '/'])
        .is_some_and(|at| key.as_bytes()[at] == b'/');
    let components: Vec<String> = if slash_separated {
        key.split('/').map(String::from).collect()
    } else {
        key.split('.').map(|c| c.replace('/', ".")).collect()
    };
    if components
        .iter()
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("is not a sysctl name".into());
    }
    Ok(components.iter().collect())
}

/// Kept per ipc namespace by the kernel (ipc/ipc_sysctl.c and ipc/mq_sysctl.c).
const IPC_SYSCTLS: [&str; 4] = ["kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue."];

/// A container may set the sysctls the kernel keeps per namespace, when the namespace is
/// the container's own: runc's rules. Anything else would change the host's value.
fn check_sysctl(key: &str, linux: &Linux) -> std::result::Result<(), String> {
    let path = sysctl_path(key)?;
    let name = path
        .iter()
        .map(|c| c.to_string_lossy())
        .collect::<Vec<_>>()
        .join(".");
    let needs = |kind: LinuxNamespaceType, what: &str| {
        if own_namespace(linux, kind) {
            Ok(())
        } else {
            Err(format!(
                "is kept per {what} namespace, and the container has none of its own: writing it would change the host's"
            ))
        }
    };
    if IPC_SYSCTLS.iter().any(|prefix| name.starts_with(prefix)) {
        return needs(LinuxNamespaceType::Ipc, "ipc");
    }
    if name.starts_with("net.") {
        return needs(LinuxNamespaceType::Network, "network");
    }
    if name.starts_with("user.") {
        return needs(LinuxNamespaceType::User, "user");
    }
    match name.as_str() {
        "kernel.domainname" => needs(LinuxNamespaceType::Uts, "uts"),
        "kernel.hostname" => Err("is set by the hostname field".into()),
        _ => Err(
            "is not kept per namespace: writing it would change the host's, so it is refused"
                .into(),
        ),
    }
}

/// Whether the container has a namespace of this kind that is not berthd's (the host's): a
/// new one, or one joined by a path that names another.
fn own_namespace(linux: &Linux, kind: LinuxNamespaceType) -> bool {
    let Some(namespace) = linux
        .namespaces()
        .iter()
        .flatten()
        .find(|n| n.typ() == kind)
    else {
        return false;
    };
    let Some(path) = namespace.path() else {
        return true;
    };
    let name = match kind {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    };
    match (
        std::fs::metadata(path),
        std::fs::metadata(format!("/proc/self/ns/{name}")),
    ) {
        (Ok(theirs), Ok(ours)) => (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()),
        // Joining it fails later, with a message of its own.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(value: serde_json::Value) -> Linux {
        serde_json::from_value(value).unwrap()
    }

    fn process(value: serde_json::Value) -> Process {
        let mut value = value;
        value["cwd"] = "/".into();
        value["user"] = serde_json::json!({"uid": 0, "gid": 0});
        serde_json::from_value(value).unwrap()
    }

    const NO_LSM: HostLsm = HostLsm {
        apparmor: false,
        selinux: false,
    };

    #[test]
    fn security_labels_pass_only_where_the_host_enforces_their_module() {
        let apparmor = process(serde_json::json!({"apparmorProfile": "docker-default"}));
        let selinux =
            process(serde_json::json!({"selinuxLabel": "system_u:system_r:container_t:s0"}));
        let none = process(serde_json::json!({}));
        let mount_label =
            linux(serde_json::json!({"mountLabel": "system_u:object_r:container_file_t:s0"}));
        let plain = linux(serde_json::json!({}));
        let both = HostLsm {
            apparmor: true,
            selinux: true,
        };
        let only_apparmor = HostLsm {
            apparmor: true,
            selinux: false,
        };
        let field_of = |result: Result<()>| match result {
            Err(Error::InvalidConfig { field, .. }) => Some(field),
            Ok(()) => None,
            Err(other) => panic!("{other}"),
        };
        assert_eq!(
            field_of(check_security_labels(&apparmor, &plain, both)),
            None
        );
        assert_eq!(
            field_of(check_security_labels(&selinux, &mount_label, both)),
            None
        );
        assert_eq!(
            field_of(check_security_labels(&apparmor, &plain, only_apparmor)),
            None
        );
        assert_eq!(
            field_of(check_security_labels(&apparmor, &plain, NO_LSM)).as_deref(),
            Some("process.apparmorProfile")
        );
        assert_eq!(
            field_of(check_security_labels(&selinux, &plain, only_apparmor)).as_deref(),
            Some("process.selinuxLabel")
        );
        assert_eq!(
            field_of(check_security_labels(&none, &mount_label, only_apparmor)).as_deref(),
            Some("linux.mountLabel")
        );
        assert_eq!(field_of(check_security_labels(&none, &plain, NO_LSM)), None);
        // An empty string asks for nothing, as with runc.
        let empty = process(serde_json::json!({"apparmorProfile": "", "selinuxLabel": ""}));
        let empty_label = linux(serde_json::json!({"mountLabel": ""}));
        assert_eq!(
            field_of(check_security_labels(&empty, &empty_label, NO_LSM)),
            None
        );
    }

    #[test]
    fn sysctl_keys_name_files_in_either_spelling() {
        for (key, path) in [
            ("net.ipv4.ip_forward", "net/ipv4/ip_forward"),
            ("net/ipv4/ip_forward", "net/ipv4/ip_forward"),
            (
                "net.ipv4.conf.eth0/100.rp_filter",
                "net/ipv4/conf/eth0.100/rp_filter",
            ),
            (
                "net/ipv4/conf/eth0.100/rp_filter",
                "net/ipv4/conf/eth0.100/rp_filter",
            ),
        ] {
            assert_eq!(sysctl_path(key).unwrap(), Path::new(path), "{key}");
        }
        for key in [
            "",
            "net..ipv4",
            "net/../kernel/pid_max",
            "/net/ipv4",
            "net.ipv4.",
        ] {
            assert!(sysctl_path(key).is_err(), "{key:?}");
        }
    }

    #[test]
    fn sysctls_pass_only_with_a_namespace_of_their_own() {
        let all = linux(serde_json::json!({"namespaces": [
            {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
        ]}));
        let none = linux(serde_json::json!({"namespaces": [{"type": "mount"}]}));
        for key in [
            "net.ipv4.ip_forward",
            "net/core/somaxconn",
            "kernel.shmmax",
            "kernel.shm_rmid_forced",
            "kernel.msgmnb",
            "kernel.sem",
            "fs.mqueue.msg_max",
            "kernel.domainname",
        ] {
            assert_eq!(check_sysctl(key, &all), Ok(()), "{key}");
            assert!(
                check_sysctl(key, &none).is_err(),
                "{key} without namespaces"
            );
        }
        for key in [
            "kernel.pid_max",
            "vm.swappiness",
            "fs.file-max",
            "kernel.hostname",
        ] {
            assert!(check_sysctl(key, &all).is_err(), "{key}");
        }
        let user = linux(serde_json::json!({"namespaces": [{"type": "user"}, {"type": "mount"}]}));
        assert_eq!(check_sysctl("user.max_user_namespaces", &user), Ok(()));
        assert!(check_sysctl("user.max_user_namespaces", &all).is_err());
    }

    #[test]
    fn scheduler_values_are_checked_as_runc_and_the_kernel_check_them() {
        let check = |value: serde_json::Value| {
            check_scheduler(&serde_json::from_value(value).unwrap()).map_err(|(field, _)| field)
        };
        use serde_json::json;
        assert_eq!(check(json!({"policy": "SCHED_BATCH", "nice": 7})), Ok(()));
        assert_eq!(
            check(json!({"policy": "SCHED_FIFO", "priority": 10})),
            Ok(())
        );
        assert_eq!(
            check(json!({"policy": "SCHED_DEADLINE", "runtime": 1, "deadline": 2, "period": 3})),
            Ok(())
        );
        assert_eq!(
            check(json!({"policy": "SCHED_OTHER", "nice": 20})),
            Err("nice")
        );
        assert_eq!(
            check(json!({"policy": "SCHED_OTHER", "priority": 1})),
            Err("priority")
        );
        assert_eq!(check(json!({"policy": "SCHED_RR"})), Err("priority"));
        assert_eq!(
            check(json!({"policy": "SCHED_FIFO", "priority": 100})),
            Err("priority")
        );
        assert_eq!(
            check(json!({"policy": "SCHED_IDLE", "runtime": 5})),
            Err("runtime")
        );
        assert_eq!(check(json!({"policy": "SCHED_ISO"})), Err("policy"));
        assert_eq!(
            check(json!({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_UTIL_CLAMP_MIN"]})),
            Err("flags")
        );
    }

    #[test]
    fn rootfs_propagation_maps_the_eight_names_of_the_spec() {
        for (value, flags) in [
            ("shared", MsFlags::MS_SHARED),
            ("slave", MsFlags::MS_SLAVE),
            ("private", MsFlags::MS_PRIVATE),
            ("unbindable", MsFlags::MS_UNBINDABLE),
        ] {
            assert_eq!(rootfs_propagation(value), Some(flags));
            assert_eq!(
                rootfs_propagation(&format!("r{value}")),
                Some(flags | MsFlags::MS_REC)
            );
        }
        for value in ["", "rr", "rrshared", "Shared", "bind", "rbind", "ro"] {
            assert_eq!(rootfs_propagation(value), None, "{value:?}");
        }
        assert_eq!(
            requested_propagation(&linux(serde_json::json!({"rootfsPropagation": ""}))),
            None
        );
    }

    #[test]
    fn time_offsets_need_a_new_time_namespace_and_a_clock_the_kernel_offsets() {
        let field_of = |value: serde_json::Value| match check_time_offsets(&linux(value)) {
            Ok(()) => None,
            Err(Error::InvalidConfig { field, .. }) => Some(field),
            Err(other) => panic!("{other}"),
        };
        use serde_json::json;
        let offsets = json!({"monotonic": {"secs": 5}, "boottime": {"secs": -5, "nanosecs": 1}});
        assert_eq!(
            field_of(json!({"namespaces": [{"type": "time"}], "timeOffsets": offsets})),
            None
        );
        assert_eq!(
            field_of(json!({"timeOffsets": offsets})).as_deref(),
            Some("linux.timeOffsets")
        );
        assert_eq!(
            field_of(json!({"namespaces": [{"type": "time", "path": "/proc/1/ns/time"}], "timeOffsets": offsets}))
                .as_deref(),
            Some("linux.timeOffsets")
        );
        assert_eq!(
            field_of(
                json!({"namespaces": [{"type": "time"}], "timeOffsets": {"realtime": {"secs": 1}}})
            )
            .as_deref(),
            Some("linux.timeOffsets.realtime")
        );
        assert_eq!(
            field_of(json!({"namespaces": [{"type": "time"}], "timeOffsets": {"boottime": {"nanosecs": 1_000_000_000u32}}}))
                .as_deref(),
            Some("linux.timeOffsets.boottime.nanosecs")
        );
    }
}
