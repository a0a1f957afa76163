//! berthd's serving loop: the state root, the Unix socket, health, reflection and a
//! graceful shutdown.
use std::{
    fs::{self, File},
    future::Future,
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use nix::fcntl::{Flock, FlockArg};
use tokio::{net::UnixListener, sync::watch};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic_health::{
    pb::{
        health_server::{Health, HealthServer},
        HealthCheckRequest, HealthCheckResponse,
    },
    server::HealthService,
    ServingStatus,
};

use crate::{
    api::Api,
    config::Config,
    container::Runtime,
    error::{IoContext, Result},
    events::Events,
    process::Reaper,
    proto::{container_service_server::ContainerServiceServer, FILE_DESCRIPTOR_SET},
    registry::Registry,
    spawn::InitBinary,
};

/// Why berthd refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("another berthd is serving on {0}")]
    SocketInUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("socket directory {0} is world-writable; anyone could replace the socket")]
    UnsafeSocketDir(PathBuf),
    #[error("another berthd uses the state root {0}")]
    RootInUse(PathBuf),
    #[error(transparent)]
    Setup(#[from] crate::error::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

const SERVICE_NAME: &str = "berth.v1.ContainerService";

/// Serves until `shutdown` resolves, then stops accepting, reports NOT_SERVING, waits up to
/// the configured grace for in-flight calls, and removes the socket.
pub async fn serve(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    prepare_socket_path(&config.socket)?;
    let _root_lock = lock_root(&config.root)?;

    let (stopping_tx, stopping) = watch::channel(false);
    let (health, _) = tonic_health::server::health_reporter();
    let health_service = HealthServer::new(HealthUntilShutdown {
        inner: HealthService::from_health_reporter(health.clone()),
        stopping: stopping.clone(),
    });
    report(&health, ServingStatus::NotServing).await;

    let runtime = Runtime {
        root: config.root.clone(),
        cgroup_parent: config.cgroup_parent.clone(),
        resctrl_root: config.resctrl_root.clone(),
        kill_wait_rounds: config.kill_wait_rounds,
        kill_wait_round: config.kill_wait_round,
        reaper: Reaper::start().context(|| "become a child subreaper".into())?,
        init_binary: InitBinary::seal_current_exe()
            .context(|| "copy berthd into a sealed memfd".into())?,
    };
    let registry = Arc::new(Registry::load(runtime, Events::new(config.event_backlog))?);

    // Each reflection version lists every service, the other version included, so clients
    // of either see the whole API.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let listener = UnixListener::bind(&config.socket)
        .context(|| format!("bind {}", config.socket.display()))?;
    fs::set_permissions(&config.socket, fs::Permissions::from_mode(0o660))
        .context(|| format!("chmod {}", config.socket.display()))?;

    let api = Api::new(registry, stopping.clone());
    let on_shutdown = {
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new calls, finishing in-flight ones");
            report(&health, ServingStatus::NotServing).await;
            let _ = stopping_tx.send(true);
        }
    };
    let serving = Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ContainerServiceServer::new(api))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), on_shutdown);

    report(&health, ServingStatus::Serving).await;
    tracing::info!(socket = %config.socket.display(), root = %config.root.display(), "serving");

    let grace = config.shutdown_grace;
    let mut stopping = stopping;
    let result = tokio::select! {
        served = serving => served.map_err(StartError::from),
        _ = async {
            let _ = stopping.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "in-flight calls did not finish in time; exiting anyway");
            Ok(())
        }
    };
    if let Err(e) = fs::remove_file(&config.socket) {
        tracing::warn!(socket = %config.socket.display(), error = %e, "cannot remove socket");
    }
    result
}

/// The daemon as a whole ("") and its container service are always in the same state.
async fn report(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(SERVICE_NAME, status).await;
}

/// One daemon per state root: two would each believe they own the containers.
fn lock_root(root: &Path) -> Result<Flock<File>, StartError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .context(|| format!("create state root {}", root.display()))?;
    let dir = File::open(root).context(|| format!("open state root {}", root.display()))?;
    Flock::lock(dir, FlockArg::LockExclusiveNonblock)
        .map_err(|_| StartError::RootInUse(root.to_owned()))
}

/// Makes the socket's directory if needed and clears a stale socket left by a dead daemon,
/// but never one a live daemon answers on.
fn prepare_socket_path(socket: &Path) -> Result<(), StartError> {
    let dir = socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .context(|| format!("create socket directory {}", dir.display()))?;
    let mode = fs::metadata(dir)
        .context(|| format!("stat socket directory {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o002 != 0 {
        return Err(StartError::UnsafeSocketDir(dir.to_owned()));
    }
    match fs::symlink_metadata(socket) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context(|| format!("stat {}", socket.display()))?,
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(StartError::NotASocket(socket.to_owned()))
        }
        Ok(_) => {}
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(StartError::SocketInUse(socket.to_owned()));
    }
    tracing::info!(socket = %socket.display(), "replacing stale socket");
    fs::remove_file(socket).context(|| format!("remove stale socket {}", socket.display()))?;
    Ok(())
}

/// The standard health service, except that Watch streams end once the daemon shuts down
/// (after passing on NOT_SERVING): an open stream would otherwise hold the graceful shutdown
/// for its whole grace period.
struct HealthUntilShutdown {
    inner: HealthService,
    stopping: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Health for HealthUntilShutdown {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        self.inner.check(request).await
    }

    type WatchStream =
        tokio_stream::wrappers::ReceiverStream<Result<HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        use tokio_stream::StreamExt;
        let mut updates = self.inner.watch(request).await?.into_inner();
        let mut stopping = self.stopping.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let update = tokio::select! {
                    // Updates first: NOT_SERVING is set just before `stopping` turns true.
                    biased;
                    update = updates.next() => update,
                    _ = stopping.wait_for(|stopping| *stopping) => None,
                    () = tx.closed() => None,
                };
                let Some(update) = update else { return };
                if tx.send(update).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
    }
}
