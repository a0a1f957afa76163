//! The state root on disk, and the one type that knows its layout:
//!
//! ```text
//! <root>/<id>/state.json   the container's ContainerState (state.rs), replaced atomically
//! <root>/<id>/exec.fifo    present while the init waits for StartContainer (runc's rule:
//!                          CREATED means the FIFO still exists)
//! <root>/~deleting/<id>/   a state directory being removed: a crash part-way through the
//!                          removal leaves it here, never a half-emptied directory that
//!                          looks like a container; finished when berthd starts
//! ```
//!
//! `~` cannot occur in an id, so the tombstone directory never passes for a container.
use std::{
    fs, io,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use crate::{
    error::{IoContext, Result},
    id::ContainerId,
    state::{ContainerState, Durability, StateError},
};

pub const TOMBSTONES: &str = "~deleting";
const STATE_FILE: &str = "state.json";
const EXEC_FIFO: &str = "exec.fifo";
/// The container's compiled linux.seccomp, for its exec processes: apart from state.json,
/// which is rewritten at every exec and exit, since a profile runs to tens of kilobytes.
const SECCOMP_FILE: &str = "seccomp.json";

#[derive(Clone, Debug)]
pub struct StateRoot {
    path: PathBuf,
    durability: Durability,
}

impl StateRoot {
    /// The root as berthd starts on it: the tombstone directory exists (made here rather
    /// than by each delete), and removals a crash interrupted are finished.
    pub fn open(path: &Path) -> Result<Self> {
        let tombstones = path.join(TOMBSTONES);
        match fs::create_dir(&tombstones) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(e).context(|| format!("create {}", tombstones.display()))
            }
            _ => {}
        }
        for tombstone in fs::read_dir(&tombstones).into_iter().flatten().flatten() {
            if let Err(e) = fs::remove_dir_all(tombstone.path()) {
                tracing::warn!(path = %tombstone.path().display(), error = %e, "cannot finish removing a deleted state directory");
            }
        }
        let durability = Durability::of(path).context(|| format!("statfs {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            durability,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dir(&self, id: &ContainerId) -> StateDir {
        StateDir {
            path: self.path.join(id.as_str()),
            durability: self.durability,
        }
    }

    /// The state directories under the root, by id. An entry whose name is no valid id, or
    /// that is not a directory, is not berth's.
    pub fn dirs(&self) -> Result<Vec<(ContainerId, StateDir)>> {
        let entries =
            fs::read_dir(&self.path).context(|| format!("read {}", self.path.display()))?;
        Ok(entries
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|entry| {
                let id = ContainerId::parse(entry.file_name().to_str()?).ok()?;
                Some((
                    id,
                    StateDir {
                        path: entry.path(),
                        durability: self.durability,
                    },
                ))
            })
            .collect())
    }
}

/// `<root>/<id>`.
#[derive(Clone, Debug)]
pub struct StateDir {
    path: PathBuf,
    durability: Durability,
}

impl StateDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_dir())
    }

    /// Makes the directory, replacing a leftover of a create that died before writing
    /// state.json (delete.md D4: it holds nothing worth keeping).
    pub fn create(&self) -> Result<()> {
        if fs::symlink_metadata(&self.path).is_ok() {
            fs::remove_dir_all(&self.path)
                .context(|| format!("remove leftover {}", self.path.display()))?;
        }
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&self.path)
            .context(|| format!("create state directory {}", self.path.display()))
    }

    pub fn state_file(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }

    /// `None` when there is no state.json (a create that died before writing it).
    pub fn load(&self) -> std::result::Result<Option<ContainerState>, StateError> {
        ContainerState::load(&self.state_file())
    }

    /// Whether writes here never wait for a disk (the root is in memory).
    pub fn in_memory(&self) -> bool {
        self.durability == Durability::Volatile
    }

    pub fn save(&self, state: &ContainerState) -> Result<()> {
        state.save(&self.state_file(), self.durability)
    }

    pub fn save_seccomp(&self, program: &crate::seccomp::Program) -> Result<()> {
        let json = serde_json::to_vec(program).expect("programs serialize");
        crate::state::write_atomically(&self.path.join(SECCOMP_FILE), &json, self.durability)
    }

    /// `None` when the container has no filter.
    pub fn load_seccomp(&self) -> Result<Option<crate::seccomp::Program>> {
        let path = self.path.join(SECCOMP_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(io::Error::other)
                .context(|| format!("parse {}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context(|| format!("read {}", path.display())),
        }
    }

    pub fn exec_fifo(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }

    pub fn has_exec_fifo(&self) -> bool {
        self.exec_fifo().exists()
    }

    /// Writable by everyone: the init may already run as its user when it opens it. Owned,
    /// as runc makes it, by the host ids of the container's root (`owner`): in a user
    /// namespace that is who the init is.
    pub fn make_exec_fifo(&self, owner: (u32, u32)) -> Result<()> {
        let fifo = self.exec_fifo();
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o622);
        nix::unistd::mkfifo(&fifo, mode).context(|| format!("mkfifo {}", fifo.display()))?;
        // mkfifo honours the umask.
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &fifo,
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .context(|| format!("chmod {}", fifo.display()))?;
        nix::unistd::chown(
            &fifo,
            Some(nix::unistd::Uid::from_raw(owner.0)),
            Some(nix::unistd::Gid::from_raw(owner.1)),
        )
        .context(|| format!("chown {}", fifo.display()))
    }

    pub fn remove_exec_fifo(&self) -> Result<()> {
        let fifo = self.exec_fifo();
        fs::remove_file(&fifo).context(|| format!("remove {}", fifo.display()))
    }

    /// Removes the directory atomically (delete.md D13): it is first renamed into the
    /// tombstone directory, then removed there. A state directory holds two small files, so
    /// this runs on the caller's thread.
    pub fn remove(&self) -> Result<()> {
        let (Some(root), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Ok(());
        };
        let tombstones = root.join(TOMBSTONES);
        let tombstone = tombstones.join(name);
        // One left by an earlier delete that could not finish would block the rename.
        match fs::remove_dir_all(&tombstone) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(e).context(|| format!("remove {}", tombstone.display()))
            }
            _ => {}
        }
        let rename = || fs::rename(&self.path, &tombstone);
        match rename() {
            Ok(()) => {}
            // ENOENT names either side: the directory is already gone, or the tombstone
            // directory is (someone removed it under a running berthd), which is made again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if fs::symlink_metadata(&self.path).is_err() {
                    return Ok(());
                }
                fs::DirBuilder::new()
                    .create(&tombstones)
                    .or_else(|e| match e.kind() {
                        io::ErrorKind::AlreadyExists => Ok(()),
                        _ => Err(e),
                    })
                    .and_then(|()| rename())
                    .context(|| format!("remove state directory {}", self.path.display()))?;
            }
            Err(e) => {
                return Err(e).context(|| format!("remove state directory {}", self.path.display()))
            }
        }
        fs::remove_dir_all(&tombstone)
            .context(|| format!("remove state directory {}", tombstone.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_goes_through_a_tombstone_even_when_the_tombstone_directory_was_removed() {
        let root = tempfile::tempdir().unwrap();
        let state_root = StateRoot::open(root.path()).unwrap();
        let dir = state_root.dir(&ContainerId::parse("c1").unwrap());
        dir.create().unwrap();
        fs::write(dir.state_file(), "{}").unwrap();
        fs::remove_dir(root.path().join(TOMBSTONES)).unwrap();
        dir.remove().unwrap();
        assert!(!dir.exists());
        assert!(root.path().join(TOMBSTONES).is_dir());
        // Gone already: nothing to do, and no error.
        dir.remove().unwrap();
    }

    #[test]
    fn open_finishes_interrupted_removals_and_dirs_lists_only_ids() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join(TOMBSTONES).join("half-gone/sub")).unwrap();
        fs::create_dir(root.path().join("c1")).unwrap();
        fs::create_dir(root.path().join("not an id")).unwrap();
        fs::write(root.path().join("c2"), "a file, not a directory").unwrap();
        let state_root = StateRoot::open(root.path()).unwrap();
        assert_eq!(
            fs::read_dir(root.path().join(TOMBSTONES)).unwrap().count(),
            0
        );
        let ids: Vec<String> = state_root
            .dirs()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id.to_string())
            .collect();
        assert_eq!(ids, ["c1"]);
    }
}
