//! Resolving paths that the container controls without ever leaving its root: a path-level
//! join for creating what is missing, and the kernel's own in-root resolution (openat2) for
//! pinning what is then mounted on or entered.
use std::{
    ffi::CString,
    fs,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path, PathBuf},
};

use crate::error::{IoContext, Result};

/// `root` joined with `unsafe_path`, with every symlink resolved as if `root` were `/`: no
/// `..` or symlink in a container-controlled path can lead outside the container's root.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<PathBuf> = unsafe_path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.components().next() {
            None | Some(Component::RootDir) | Some(Component::CurDir) => continue,
            Some(Component::ParentDir) => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&part);
        match fs::read_link(root.join(&candidate)) {
            Ok(target) => {
                links += 1;
                if links > 255 {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP)).context(|| {
                        format!("resolve {} in {}", unsafe_path.display(), root.display())
                    });
                }
                if target.is_absolute() {
                    resolved.clear();
                }
                pending.extend(
                    target
                        .components()
                        .rev()
                        .map(|c| PathBuf::from(c.as_os_str())),
                );
            }
            Err(_) => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// Opens `path` beneath the directory `root` as if `root` were `/`, with the kernel doing
/// the resolution (so nothing can be swapped between a check and the use), and refusing
/// magic links: `/proc/self/fd/N`, `/proc/self/cwd` and their kind could otherwise reach
/// any file the resolving process holds, on the host included.
pub fn open_in_root(root: &OwnedFd, path: &Path, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: open_how is plain integers, for which all zeroes is valid (and means "none").
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 with a live fd, a NUL-terminated path and an open_how of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// The path through which the kernel reaches what `fd` holds, for calls that take only
/// paths (mount). The resolving process must see its own /proc, which the init does until
/// pivot_root.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn secure_join_keeps_dot_dot_and_symlinks_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../..", r.join("a/b/up")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        assert_eq!(secure_join(r, Path::new("/a/b")).unwrap(), r.join("a/b"));
        assert_eq!(
            secure_join(r, Path::new("../../etc/passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            secure_join(r, Path::new("/abs/passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(secure_join(r, Path::new("a/b/up/x")).unwrap(), r.join("x"));
        assert!(secure_join(r, Path::new("/loop/x")).is_err());
    }

    #[test]
    fn open_in_root_stays_inside_and_refuses_magic_links() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/a", r.join("abs")).unwrap();
        symlink("/proc/self/cwd", r.join("magic")).unwrap();
        let dir: OwnedFd = fs::File::open(r).unwrap().into();
        let inside = |path: &str| {
            let fd = open_in_root(&dir, Path::new(path), libc::O_PATH | libc::O_DIRECTORY)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            fs::read_link(fd_path(&fd)).unwrap()
        };
        assert_eq!(inside("/abs/b"), r.join("a/b"));
        assert_eq!(inside("../../../a"), r.join("a"));
        // Magic links are refused outright, whether named or reached through a symlink.
        for path in ["/proc/self/cwd", "/magic"] {
            let error = open_in_root(&dir, Path::new(path), libc::O_PATH).unwrap_err();
            // "/proc" does not exist in this root; the symlink to it is absolute, so it
            // resolves inside the root and fails there, never on the host's /proc.
            assert_eq!(error.raw_os_error(), Some(libc::ENOENT), "{path}");
        }
        let host_proc: OwnedFd = fs::File::open("/").unwrap().into();
        let error =
            open_in_root(&host_proc, Path::new("/proc/self/cwd"), libc::O_PATH).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ELOOP));
    }
}
