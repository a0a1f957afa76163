//! The container's root file system: containerd passes it as mounts (an overlay from its
//! snapshotter, or a bind), and the shim mounts them on `<bundle>/rootfs`, where the
//! bundle's config.json points, as the runc shim does. berthd, in the same mount namespace,
//! then finds a ready rootfs; the shim unmounts it when the task is deleted.
use std::{
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use containerd_shim::protos::api::Mount;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot make the rootfs directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot mount rootfs component {kind} {source_path} on {target}: {cause}")]
    Mount {
        kind: String,
        source_path: String,
        target: PathBuf,
        cause: String,
    },
    #[error("cannot unmount the rootfs {target}: {cause}")]
    Unmount { target: PathBuf, cause: String },
}

/// `<bundle>/rootfs`.
pub fn path(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts every component on `<bundle>/rootfs`, in order; on a failure, unmounts what was
/// mounted. Without mounts the bundle's own rootfs is used and nothing is mounted.
pub async fn mount(bundle: &Path, mounts: &[Mount]) -> Result<(), RootfsError> {
    if mounts.is_empty() {
        return Ok(());
    }
    let target = path(bundle);
    match std::fs::DirBuilder::new().mode(0o711).create(&target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(RootfsError::Directory {
                path: target,
                source,
            })
        }
    }
    for component in mounts {
        if let Err(cause) =
            containerd_shim::asynchronous::util::mount_rootfs(component, &target).await
        {
            let _ = unmount(bundle);
            return Err(RootfsError::Mount {
                kind: component.type_.clone(),
                source_path: component.source.clone(),
                target,
                cause: cause.to_string(),
            });
        }
    }
    Ok(())
}

/// Unmounts everything on and under `<bundle>/rootfs`; nothing mounted is not an error.
/// Detached (lazily), as the container is gone by then: a straggler still holding a file in
/// it must not keep containerd from removing the bundle and the snapshot.
pub fn unmount(bundle: &Path) -> Result<(), RootfsError> {
    let target = path(bundle);
    containerd_shim::mount::umount_recursive(target.to_str(), libc::MNT_DETACH).map_err(|cause| {
        RootfsError::Unmount {
            target: target.clone(),
            cause: cause.to_string(),
        }
    })
}
