//! StartContainer: the init blocks writing the exec FIFO; opening it for reading lets it
//! exec the user process.
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::{
    blocking,
    container::{Container, Runtime},
    error::{Error, IoContext, Result},
};

/// How long the init may take to answer once the FIFO is opened.
const START_TIMEOUT: Duration = Duration::from_secs(10);

impl Container {
    /// Returns the poststart hooks' warnings (a failed poststart hook does not fail the start).
    pub async fn start(&mut self, runtime: &Runtime) -> Result<Vec<String>> {
        let status = self.status();
        if !status.can_start() {
            return Err(Error::IncorrectStatus {
                id: self.id.to_string(),
                action: "start",
                status,
            });
        }
        let fifo = self.dir.exec_fifo();
        let mut reader = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(&fifo)
            .context(|| format!("open {}", fifo.display()))?;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(START_TIMEOUT, reader.read(&mut byte)).await;
        match read {
            Ok(Ok(1)) => {}
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                return Err(Error::Unavailable {
                    id: self.id.to_string(),
                    reason: "the init did not take the start signal".into(),
                })
            }
        }
        // From here the container counts as started (runc's rule: created means the FIFO
        // still exists), whatever happens to berthd next.
        let dir = self.dir.clone();
        blocking::run(move || dir.remove_exec_fifo()).await?;

        Ok(self
            .run_warning_hooks(runtime, "poststart", "running", |h| h.poststart())
            .await)
    }
}
