//! The shim binary's life as containerd drives it: `start` spawns the serving shim (one per
//! pod: a CRI sandbox's containers share their sandbox's), `delete` cleans up after a shim
//! that is gone, and serving runs the task service until Shutdown.
use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use containerd_shim::{
    api::DeleteResponse, protos::protobuf::MessageField, publisher::RemotePublisher, Config, Error,
    ExitSignal, Flags, StartOpts,
};

use crate::{berthd, container::timestamp, note::Note, rootfs, service::Service};

/// The annotation the CRI plugin puts on a pod's containers: they share one shim.
const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// What `SHIM delete` answers, as the runc shim does: the task was killed (128 + SIGKILL).
const KILLED_STATUS: u32 = 137;
/// How long `SHIM delete` keeps trying to reach berthd.
const DELETE_PATIENCE: Duration = Duration::from_secs(4);

pub struct BerthShim {
    namespace: String,
    id: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

/// The shim serving the task in `bundle`: its sandbox's when it belongs to a pod.
fn grouping(bundle: &std::path::Path, id: &str) -> String {
    let config = std::fs::read(bundle.join("config.json")).unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&config)
        .ok()
        .and_then(|config| {
            config["annotations"][SANDBOX_ANNOTATION]
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| id.to_owned())
}

#[async_trait]
impl containerd_shim::Shim for BerthShim {
    type T = Service;

    async fn new(_runtime_id: &str, flags: &Flags, _config: &mut Config) -> Self {
        // containerd runs every action in the bundle; `delete` names it too.
        let bundle = if flags.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&flags.bundle)
        };
        Self {
            namespace: flags.namespace.clone(),
            id: flags.id.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let group = grouping(&self.bundle, &opts.id);
        let address = containerd_shim::spawn(opts, &group, Vec::new()).await?;
        // containerd reconnects through this file after it restarts.
        let partial = self.bundle.join(".address");
        std::fs::write(&partial, &address)
            .and_then(|()| std::fs::rename(&partial, self.bundle.join("address")))
            .map_err(|err| Error::IoError {
                context: "write the shim address".into(),
                err,
            })?;
        Ok(address)
    }

    /// containerd runs this when the serving shim is gone (or a create failed): the berth
    /// container is force-deleted and the rootfs unmounted, whatever state they were in.
    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        let note = Note::read(&self.bundle).map_err(|e| Error::Other(e.to_string()))?;
        let mut pid = 0;
        if let Some(note) = note {
            pid = note.pid;
            force_delete(&note).await?;
            if note.mounted_rootfs {
                rootfs::unmount(&self.bundle).map_err(|e| Error::Other(e.to_string()))?;
            }
            Note::remove(&self.bundle);
        }
        log::info!("{}/{}: cleaned up after the shim", self.namespace, self.id);
        Ok(DeleteResponse {
            pid,
            exit_status: KILLED_STATUS,
            exited_at: MessageField::some(timestamp(std::time::SystemTime::now())),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        Service::new(self.namespace.clone(), publisher, self.exit.clone())
    }
}

/// Force-deletes the note's container, retrying while berthd is unreachable (it may be
/// restarting): an unknown container is already what is wanted.
async fn force_delete(note: &Note) -> Result<(), Error> {
    let client = berthd::client(&note.socket).map_err(|e| Error::Other(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + DELETE_PATIENCE;
    loop {
        let deleted = client
            .clone()
            .delete_container(berth_api::DeleteContainerRequest {
                id: note.berth_id.clone(),
                force: true,
            })
            .await;
        match deleted {
            Ok(_) => return Ok(()),
            Err(status)
                if status.code() == tonic::Code::Unavailable
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => {
                return Err(Error::Other(format!(
                    "cannot delete berth container {} through {}: {}",
                    note.berth_id,
                    note.socket.display(),
                    status.message()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_containers_share_their_sandboxs_shim() {
        let bundle = tempfile::tempdir().unwrap();
        assert_eq!(grouping(bundle.path(), "lone"), "lone");
        std::fs::write(
            bundle.path().join("config.json"),
            format!(r#"{{"annotations": {{"{SANDBOX_ANNOTATION}": "pod1"}}}}"#),
        )
        .unwrap();
        assert_eq!(grouping(bundle.path(), "app"), "pod1");
    }
}
