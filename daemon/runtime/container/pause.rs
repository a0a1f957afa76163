//! PauseContainer and ResumeContainer: the container's freezer.
use crate::{
    container::{Container, Status},
    error::{Error, OnContainer, Result},
};

impl Container {
    pub async fn pause(&self) -> Result<()> {
        self.set_frozen(true, Status::can_pause, "pause").await
    }

    pub async fn resume(&self) -> Result<()> {
        self.set_frozen(false, Status::can_resume, "resume").await
    }

    async fn set_frozen(
        &self,
        frozen: bool,
        allowed: fn(Status) -> bool,
        action: &'static str,
    ) -> Result<()> {
        let status = self.status();
        match self.state() {
            Some(_) if allowed(status) => self
                .with_cgroups(move |cgroups, dirs| cgroups.set_frozen(dirs, frozen))
                .await
                .on_container(action, &self.id),
            _ => Err(Error::IncorrectStatus {
                id: self.id.to_string(),
                action,
                status,
            }),
        }
    }
}
