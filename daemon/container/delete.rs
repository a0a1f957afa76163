//! DeleteContainer, after runc's delete (shared/spec/delete.md).
use crate::{
    container::{Container, Record, Status},
    error::{Error, IoContext, Result},
    registry::DeleteOutcome,
};

impl Container {
    pub async fn delete(&mut self, force: bool) -> Result<DeleteOutcome> {
        let status = self.status();
        let snapshot = self.snapshot();
        if let Record::Corrupt { path, reason } = &self.record {
            if !force {
                return Err(Error::CorruptState {
                    id: self.id.to_string(),
                    path: path.clone(),
                    reason: reason.clone(),
                });
            }
        }
        match (status, force) {
            (Status::Running | Status::Paused, false) => {
                return Err(Error::NotStopped {
                    id: self.id.to_string(),
                    status,
                })
            }
            _ => {}
        }
        tokio::fs::remove_dir_all(&self.dir)
            .await
            .context(|| format!("remove state directory {}", self.dir.display()))?;
        Ok(DeleteOutcome {
            snapshot: Some(snapshot),
            warnings: Vec::new(),
        })
    }
}
