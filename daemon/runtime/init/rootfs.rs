//! The container's root file system: mounts, devices, pivot_root, masked and read-only
//! paths. Runs in the init, inside the container's new mount namespace.
use std::{
    fs,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::{symlink, DirBuilderExt, OpenOptionsExt},
    },
    path::Path,
};

use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sys::stat::{makedev, mknod, Mode, SFlag},
    unistd::{chown, Gid, Uid},
};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxNamespaceType, Mount, Spec};

use super::{
    lsm,
    resolve::{fd_path, open_in_root, secure_join},
};
use crate::{
    cgroups::ContainerMount,
    error::{Error, IoContext, Result},
    helper::InitConfig,
    spec_support,
};

/// The devices every container gets, as runc gives them: (path, major, minor).
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

const NONE: Option<&str> = None;

/// Where a cgroup v2 host mounts cgroup2 (runc's fs2.UnifiedMountpoint).
const HOST_CGROUP2: &str = "/sys/fs/cgroup";

/// Builds the root file system from `rootfs`, the bundle's opened by the helper, and
/// returns the new root: `rootfs` bound onto itself.
pub fn prepare(config: &InitConfig, rootfs: &OwnedFd) -> Result<OwnedFd> {
    let spec = &config.spec;
    let linux = spec.linux().as_ref();
    let in_userns = linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User);
    // pivot_root needs the new root to be a mount point.
    let root = bind_onto_itself(rootfs)
        .context(|| format!("bind {} onto itself", config.rootfs.display()))?;
    // Everything below goes through the root's fd, never the bundle's path: in a user
    // namespace the container's root may not cross the directories above it.
    let rootfs = &fd_path(&root);
    for entry in spec.mounts().as_deref().unwrap_or_default() {
        mount_entry(rootfs, &root, entry, config)?;
    }
    let spec_devices = linux
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    for (path, major, minor) in DEFAULT_DEVICES {
        if !spec_devices.iter().any(|d| d.path() == Path::new(path)) {
            create_device(
                rootfs,
                Path::new(path),
                SFlag::S_IFCHR,
                major,
                minor,
                0o666,
                0,
                0,
                in_userns,
            )?;
        }
    }
    for device in spec_devices {
        create_spec_device(rootfs, device, in_userns)?;
    }
    create_dev_symlinks(rootfs)?;
    Ok(root)
}

/// `dir`'s tree bound onto `dir` (a recursive bind), returned as the fd of the new mount:
/// an fd of `dir` opened earlier names what the mount covers.
fn bind_onto_itself(dir: &OwnedFd) -> std::io::Result<OwnedFd> {
    bind_fd(dir, dir)
}

/// Binds what `source` holds (its tree, recursively) onto what `target` holds, both named
/// by fd so that no path is resolved again; returns the fd of the new mount.
pub(super) fn bind_fd(source: &impl AsRawFd, target: &impl AsRawFd) -> std::io::Result<OwnedFd> {
    let empty = c"";
    // SAFETY: open_tree on a live fd with an empty NUL-terminated path and flags only.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            source.as_raw_fd(),
            empty.as_ptr(),
            libc::OPEN_TREE_CLONE
                | libc::OPEN_TREE_CLOEXEC
                | libc::AT_RECURSIVE as libc::c_uint
                | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, and nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as libc::c_int) };
    // SAFETY: move_mount between two live fds, with empty NUL-terminated paths.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if moved < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tree)
}

/// Sets the propagation of the host's mounts as this mount namespace copied them, and makes
/// sure nothing mounted in the rootfs can reach the host, as runc does: the copies take the
/// propagation asked for the rootfs (rslave by default), and the mount holding the rootfs
/// becomes a slave (for a slave rootfs) or private, whatever that made it, so that the
/// rootfs's bind onto itself, and all that is mounted on it, has no peer outside. (A shared
/// parent would also make pivot_root fail.) Unbindable is applied as private here and to
/// the root only once every bind is made (`set_root_propagation`): on the copies it would
/// refuse the bind of the rootfs itself, and of every mount source, with EINVAL.
/// The helper does this right after creating the mount namespace, while it still has the
/// host's uid: in a user namespace the container's root could not walk the bundle's path.
pub fn detach_from_host(rootfs: &Path, spec: &Spec) -> Result<()> {
    let requested = spec
        .linux()
        .as_ref()
        .and_then(spec_support::requested_propagation);
    let copies = match requested {
        None => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(flags) if flags.contains(MsFlags::MS_UNBINDABLE) => {
            MsFlags::MS_PRIVATE | (flags & MsFlags::MS_REC)
        }
        Some(flags) => flags,
    };
    mount(NONE, "/", NONE, copies, NONE)
        .context(|| format!("set the propagation of / to {copies:?}"))?;
    let parent = if requested.is_some_and(|f| f.contains(MsFlags::MS_SLAVE)) {
        MsFlags::MS_SLAVE
    } else {
        MsFlags::MS_PRIVATE
    };
    // EINVAL: not a mount point; the mount holding the rootfs is further up.
    let mut path = rootfs;
    loop {
        match mount(NONE, path, NONE, parent, NONE) {
            Err(nix::errno::Errno::EINVAL) if path.parent().is_some() => {
                path = path.parent().expect("checked");
            }
            result => {
                return result
                    .context(|| format!("make {} (holding the rootfs) {parent:?}", path.display()))
            }
        }
    }
}

/// The propagation asked for the container's root, now that it is the root: shared and
/// unbindable (private and slave were settled by `detach_from_host`). Last, so that the
/// binds of readonlyPaths are made while the mounts can still be bound.
pub fn set_root_propagation(spec: &Spec) -> Result<()> {
    let Some(flags) = spec
        .linux()
        .as_ref()
        .and_then(spec_support::requested_propagation)
        .filter(|f| f.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE))
    else {
        return Ok(());
    };
    mount(NONE, "/", NONE, flags, NONE).context(|| format!("set the propagation of / to {flags:?}"))
}

/// Mount options split into flags, propagation flags, and the data string for the file
/// system; unknown options are file-system data.
struct MountOptions {
    flags: MsFlags,
    propagation: MsFlags,
    data: String,
}

fn parse_options(options: &[String]) -> MountOptions {
    let mut parsed = MountOptions {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: String::new(),
    };
    for option in options {
        // The same names as linux.rootfsPropagation, with the same meaning.
        if let Some(propagation) = spec_support::rootfs_propagation(option) {
            parsed.propagation |= propagation;
            continue;
        }
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            // Handled by other runtimes' tooling, meaningless to the kernel.
            "defaults" | "tmpcopyup" => continue,
            data => {
                if !parsed.data.is_empty() {
                    parsed.data.push(',');
                }
                parsed.data.push_str(data);
                continue;
            }
        };
        parsed.flags = (parsed.flags | set) & !clear;
    }
    parsed
}

fn mount_entry(rootfs: &Path, root: &OwnedFd, entry: &Mount, config: &InitConfig) -> Result<()> {
    let options = parse_options(entry.options().as_deref().unwrap_or_default());
    let kind = entry.typ().as_deref().unwrap_or("");
    let is_bind = kind == "bind" || options.flags.contains(MsFlags::MS_BIND);
    let source = entry.source().clone().unwrap_or_default();
    let source_is_dir = !is_bind
        || fs::metadata(&source)
            .context(|| format!("bind mount source {}", source.display()))?
            .is_dir();
    let target = if !is_bind && matches!(kind, "proc" | "sysfs") {
        ordinary_directory(rootfs, root, entry.destination(), kind)?
    } else {
        make_mount_point(&secure_join(rootfs, entry.destination())?, source_is_dir)?;
        pin(root, entry.destination())?
    };
    // From here the mount goes onto what was resolved inside the root, through its fd:
    // a symlink swapped in since cannot redirect it.
    let on = fd_path(&target);
    if kind == "cgroup" && !is_bind {
        return mount_cgroups(
            root,
            entry.destination(),
            &on,
            &options,
            &config.cgroup_mount,
        );
    }
    if is_bind {
        bind(&source, &on, root, entry.destination(), options.flags)?;
    } else {
        let data = lsm::mount_data(&options.data, kind, &config.spec);
        match mount(
            Some(&source),
            &on,
            Some(kind),
            options.flags,
            data.as_deref(),
        ) {
            // In a user namespace sysfs can be mounted only with a network namespace of
            // the container's own; without one the host's /sys is bound instead, as runc's
            // rootless configs do.
            Err(nix::errno::Errno::EPERM) if kind == "sysfs" => bind(
                Path::new("/sys"),
                &on,
                root,
                entry.destination(),
                options.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
            )?,
            mounted => {
                mounted.context(|| format!("mount {kind} on {}", entry.destination().display()))?
            }
        }
    }
    if !options.propagation.is_empty() {
        mount(
            NONE,
            &fd_path(&pin(root, entry.destination())?),
            NONE,
            options.propagation,
            NONE,
        )
        .context(|| format!("set propagation of {}", entry.destination().display()))?;
    }
    Ok(())
}

/// Binds `source` on `on` (the pinned `destination`) with `flags`, which hold MS_BIND and
/// perhaps MS_REC.
fn bind(
    source: &Path,
    on: &Path,
    root: &OwnedFd,
    destination: &Path,
    flags: MsFlags,
) -> Result<()> {
    mount(
        Some(source),
        on,
        NONE,
        flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
        NONE,
    )
    .context(|| format!("bind {} to {}", source.display(), destination.display()))?;
    // A bind mount ignores every other flag until it is remounted with them.
    let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if !extra.is_empty() {
        mount(
            NONE,
            &fd_path(&pin(root, destination)?),
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
            NONE,
        )
        .context(|| format!("remount {} with {extra:?}", destination.display()))?;
    }
    Ok(())
}

/// The mount point for `destination`, opened inside the root. Opened again after each
/// mount on it, since an fd taken before a mount still names what the mount covers.
fn pin(root: &OwnedFd, destination: &Path) -> Result<OwnedFd> {
    open_in_root(root, destination, libc::O_PATH)
        .context(|| format!("open mount point {}", destination.display()))
}

/// proc and sysfs go only on a real directory, never through a symlink, whatever it points
/// at: procfs or sysfs mounted over a path the config did not name escapes maskedPaths
/// and readonlyPaths (CVE-2023-27561, CVE-2023-28642). Checked on the opened directory.
fn ordinary_directory(
    rootfs: &Path,
    root: &OwnedFd,
    destination: &Path,
    kind: &str,
) -> Result<OwnedFd> {
    let open = || {
        open_in_root(
            root,
            destination,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        )
    };
    let opened = match open() {
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
            make_mount_point(&secure_join(rootfs, destination)?, true)?;
            open()
        }
        other => other,
    };
    opened.map_err(|error| match error.raw_os_error() {
        Some(libc::ENOTDIR | libc::ELOOP) => Error::InvalidConfig {
            field: format!("mounts[{}]", destination.display()),
            reason: format!("filesystem {kind} must be mounted on ordinary directory"),
        },
        _ => Error::Io {
            context: format!("open mount point {}", destination.display()),
            source: error,
        },
    })
}

/// On v1 and hybrid hosts a `cgroup` mount is a tmpfs holding a bind of each of the
/// container's own cgroup directories, named after its hierarchy (so `memory`, `pids`,
/// `cpu,cpuacct`, `unified`); on a v2 host it is cgroup2 itself.
fn mount_cgroups(
    root: &OwnedFd,
    destination: &Path,
    on: &Path,
    options: &MountOptions,
    cgroup_mount: &ContainerMount,
) -> Result<()> {
    let read_only = options.flags & MsFlags::MS_RDONLY;
    let flags = options.flags & !MsFlags::MS_RDONLY;
    let binds = match cgroup_mount {
        ContainerMount::Cgroup2 => {
            return match mount(Some("cgroup2"), on, Some("cgroup2"), options.flags, NONE) {
                // In a user namespace without a cgroup namespace of its own cgroup2 cannot
                // be mounted: runc binds the host's hierarchy instead.
                Err(nix::errno::Errno::EPERM | nix::errno::Errno::EBUSY) => bind(
                    Path::new(HOST_CGROUP2),
                    on,
                    root,
                    destination,
                    options.flags | MsFlags::MS_BIND,
                ),
                mounted => {
                    mounted.context(|| format!("mount cgroup2 on {}", destination.display()))
                }
            };
        }
        ContainerMount::Binds(binds) => binds,
    };
    mount(Some("tmpfs"), on, Some("tmpfs"), flags, Some("mode=755"))
        .context(|| format!("mount tmpfs on {}", destination.display()))?;
    // The tmpfs is berth's own: nothing of the container's lies beneath it.
    let tmpfs = pin(root, destination)?;
    for (hierarchy, dir) in binds {
        let target = fd_path(&tmpfs).join(hierarchy);
        let shown = destination.join(hierarchy);
        make_mount_point(&target, true)?;
        mount(
            Some(dir),
            &target,
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            NONE,
        )
        .context(|| format!("bind cgroup {} to {}", dir.display(), shown.display()))?;
        mount(
            NONE,
            &target,
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | read_only,
            NONE,
        )
        .context(|| format!("remount {}", shown.display()))?;
    }
    if !read_only.is_empty() {
        mount(
            NONE,
            &fd_path(&tmpfs),
            NONE,
            MsFlags::MS_REMOUNT | flags | read_only,
            Some("mode=755"),
        )
        .context(|| format!("remount {} read-only", destination.display()))?;
    }
    Ok(())
}

fn make_mount_point(path: &Path, directory: bool) -> Result<()> {
    if directory {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .context(|| format!("create mount point {}", path.display()))
    } else {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).context(|| format!("create {}", parent.display()))?;
        }
        if !path.exists() {
            fs::File::create(path).context(|| format!("create mount point {}", path.display()))?;
        }
        Ok(())
    }
}

/// Makes the node as runc does: mknod with the config's mode and owner, or, where mknod is
/// not allowed (always in a user namespace, `bind`), a bind of the host's node at the same
/// path, which keeps the host's mode and owner.
#[allow(clippy::too_many_arguments)]
fn create_device(
    rootfs: &Path,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    bind: bool,
) -> Result<()> {
    let target = secure_join(rootfs, path)?;
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).context(|| format!("create {}", parent.display()))?;
    }
    let _ = fs::remove_file(&target);
    let made = if bind {
        Err(nix::errno::Errno::EPERM)
    } else {
        mknod(
            &target,
            kind,
            Mode::from_bits_truncate(mode),
            makedev(major, minor),
        )
    };
    match made {
        Err(nix::errno::Errno::EPERM) => return bind_host_node(&target, path),
        made => made.context(|| format!("mknod {}", path.display()))?,
    }
    // mknod honours the umask; the spec's mode is meant exactly.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &target,
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .context(|| format!("chmod {}", path.display()))?;
    chown(&target, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .context(|| format!("chown {}", path.display()))
}

fn bind_host_node(target: &Path, path: &Path) -> Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(target)
        .context(|| format!("create {}", path.display()))?;
    mount(Some(path), target, NONE, MsFlags::MS_BIND, NONE)
        .context(|| format!("bind the host's {}", path.display()))
}

fn create_spec_device(rootfs: &Path, device: &LinuxDevice, bind: bool) -> Result<()> {
    let kind = match device.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => return Ok(()),
    };
    create_device(
        rootfs,
        device.path(),
        kind,
        device.major() as u64,
        device.minor() as u64,
        device.file_mode().unwrap_or(0o666),
        device.uid().unwrap_or(0),
        device.gid().unwrap_or(0),
        bind,
    )
}

fn create_dev_symlinks(rootfs: &Path) -> Result<()> {
    // The image's /dev may itself be a symlink pointing anywhere on the host.
    let dev = secure_join(rootfs, Path::new("/dev"))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if dev.join("pts/ptmx").exists() {
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        let link = dev.join(name);
        if fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        symlink(target, &link).context(|| format!("symlink /dev/{name}"))?;
    }
    Ok(())
}

/// Makes `rootfs` the root and detaches the old one, without a directory for it: pivot to
/// "." stacks the old root on top, and unmounting "." then removes it.
pub fn pivot(new_root: OwnedFd, rootfs: &Path) -> Result<()> {
    let old_root = fs::File::open("/").context(|| "open /".into())?;
    nix::unistd::fchdir(&new_root).context(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::pivot_root(".", ".").context(|| format!("pivot_root to {}", rootfs.display()))?;
    nix::unistd::fchdir(&old_root).context(|| "chdir to the old root".into())?;
    // The old root's mounts must not propagate their unmount to the host.
    mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
        .context(|| "make the old root a slave".into())?;
    umount2(".", MntFlags::MNT_DETACH).context(|| "detach the old root".into())?;
    nix::unistd::chdir("/").context(|| "chdir /".into())
}

/// What is done inside the new root: masked and read-only paths, then a read-only root.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for path in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default()
    {
        mask(Path::new(path), spec)?;
    }
    for path in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        make_read_only(Path::new(path))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        mount(
            NONE,
            "/",
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            NONE,
        )
        .context(|| "remount / read-only".into())?;
    }
    Ok(())
}

/// Hides a path: an empty read-only tmpfs over a directory, /dev/null over anything else.
fn mask(path: &Path, spec: &Spec) -> Result<()> {
    let Ok(meta) = fs::metadata(path) else {
        return Ok(());
    };
    if meta.is_dir() {
        let data = lsm::mount_data("", "tmpfs", spec);
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            data.as_deref(),
        )
    } else {
        mount(Some("/dev/null"), path, NONE, MsFlags::MS_BIND, NONE)
    }
    .context(|| format!("mask {}", path.display()))
}

fn make_read_only(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    mount(
        Some(path),
        path,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .context(|| format!("bind {} onto itself", path.display()))?;
    // Keep the flags the mount already has: remounting without them is refused.
    let existing = nix::sys::statvfs::statvfs(path)
        .context(|| format!("statvfs {}", path.display()))?
        .flags();
    let mut keep = MsFlags::empty();
    for (vfs, ms) in [
        (nix::sys::statvfs::FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (nix::sys::statvfs::FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (nix::sys::statvfs::FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if existing.contains(vfs) {
            keep |= ms;
        }
    }
    mount(
        NONE,
        path,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | keep,
        NONE,
    )
    .context(|| format!("remount {} read-only", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let options: Vec<String> = [
            "nosuid",
            "ro",
            "rw",
            "rbind",
            "rslave",
            "mode=755",
            "size=65536k",
        ]
        .map(String::from)
        .to_vec();
        let parsed = parse_options(&options);
        assert_eq!(
            parsed.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_BIND | MsFlags::MS_REC
        );
        assert_eq!(parsed.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(parsed.data, "mode=755,size=65536k");
    }
}
