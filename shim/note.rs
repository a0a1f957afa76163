//! The cleanup note: `SHIM delete` gets no runtime options and may run after the shim died,
//! so what it needs to undo a task is written into the task's bundle (containerd's directory,
//! removed by containerd afterwards), never into berth's state.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "berth-shim.json";

/// What `SHIM delete` needs: whom to ask, about which container, and the pid containerd
/// reports in the exit it publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub socket: PathBuf,
    pub berth_id: String,
    /// The init's pid; 0 until CreateContainer answered.
    pub pid: u32,
    /// Whether the shim mounted `<bundle>/rootfs` (containerd gave mounts), so it unmounts.
    pub mounted_rootfs: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error("cannot write the cleanup note {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the cleanup note {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the cleanup note {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Note {
    /// Written whole under a temporary name and renamed, so a reader never sees half.
    pub fn write(&self, bundle: &Path) -> Result<(), NoteError> {
        let path = bundle.join(FILE_NAME);
        let partial = bundle.join(format!(".{FILE_NAME}"));
        let text = serde_json::to_vec(self).expect("a note serializes");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|source| NoteError::Write { path, source })
    }

    /// The note in `bundle`, or None when there is none (the task never got that far).
    pub fn read(bundle: &Path) -> Result<Option<Self>, NoteError> {
        let path = bundle.join(FILE_NAME);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(NoteError::Read { path, source }),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| NoteError::Parse { path, source })
    }

    pub fn remove(bundle: &Path) {
        let _ = std::fs::remove_file(bundle.join(FILE_NAME));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_survives_the_round_trip_and_its_absence_is_not_an_error() {
        let bundle = tempfile::tempdir().unwrap();
        assert_eq!(Note::read(bundle.path()).unwrap(), None);
        let note = Note {
            socket: "/run/berth/berth.sock".into(),
            berth_id: "default+web".into(),
            pid: 42,
            mounted_rootfs: true,
        };
        note.write(bundle.path()).unwrap();
        assert_eq!(Note::read(bundle.path()).unwrap(), Some(note));
        Note::remove(bundle.path());
        assert_eq!(Note::read(bundle.path()).unwrap(), None);
    }

    #[test]
    fn a_damaged_note_is_named() {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(bundle.path().join(FILE_NAME), "{").unwrap();
        let error = Note::read(bundle.path()).unwrap_err().to_string();
        assert!(error.contains(FILE_NAME), "{error}");
    }
}
