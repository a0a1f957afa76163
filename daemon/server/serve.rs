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
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::{
    pb::{
        health_server::{Health, HealthServer},
        HealthCheckRequest, HealthCheckResponse,
    },
    server::HealthService,
    ServingStatus,
};

use berth_runtime::{
    container::Runtime,
    error::{IoContext, Result},
    events::Events,
    helper::InitBinary,
    hooks::HookTimeouts,
    process::Reaper,
    registry::Registry,
    state_dir::StateRoot,
};

use crate::{
    api::Api,
    authz::{AuthzLayer, Policy},
    config::Config,
    deadline::DeadlineLayer,
    metrics::MetricsLayer,
    proto::{container_service_server::ContainerServiceServer, FILE_DESCRIPTOR_SET},
    unix_authority::{AuthorityFix, MAX_FRAME_SIZE},
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
    Setup(#[from] berth_runtime::error::Error),
    #[error("{0}")]
    Insecure(&'static str),
    #[error("--cgroup-parent {}: {reason}", path.display())]
    CgroupParent { path: PathBuf, reason: String },
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
    // A setup berthd would refuse is refused before anything is created.
    let tls = config.listen.map(|_| tls_config(config)).transpose()?;
    let cgroup_parent =
        berth_runtime::cgroups::normalise(&config.cgroup_parent).map_err(|reason| {
            StartError::CgroupParent {
                path: config.cgroup_parent.clone(),
                reason,
            }
        })?;
    prepare_socket_path(&config.socket)?;
    let _root_lock = lock_root(&config.root)?;

    let (stopping_tx, stopping) = watch::channel(false);
    let (health, _) = tonic_health::server::health_reporter();
    let health_service = HealthServer::new(HealthUntilShutdown {
        inner: HealthService::from_health_reporter(health.clone()),
        stopping: stopping.clone(),
    });
    report(&health, ServingStatus::NotServing).await;

    let cgroups = berth_runtime::cgroups::detect().map_err(berth_runtime::error::Error::from)?;
    tracing::info!(layout = %cgroups.layout(), "cgroup layout");
    let runtime = Runtime {
        root: StateRoot::open(&config.root)?,
        cgroup_parent,
        resctrl_root: config.resctrl_root.clone(),
        kill_wait_rounds: config.kill_wait_rounds,
        kill_wait_round: config.kill_wait_round,
        hook_timeouts: HookTimeouts {
            default: config.hook_timeout_default,
            max: config.hook_timeout_max,
        },
        reaper: Reaper::start().context(|| "become a child subreaper".into())?,
        init_binary: InitBinary::seal_current_exe()
            .context(|| "copy berthd into a sealed memfd".into())?,
        cgroups,
    };
    let events = Events::new(config.event_backlog, config.event_replay)
        .context(|| "name this run of berthd from /dev/urandom".into())?;
    let registry = Arc::new(Registry::load(runtime, events)?);

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
    set_socket_access(config)?;
    let tcp = match (config.listen, tls) {
        (Some(address), Some(tls)) => Some((
            tokio::net::TcpListener::bind(address)
                .await
                .context(|| format!("listen on {address}"))?,
            tls,
        )),
        _ => None,
    };

    if let Some(address) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .context(|| format!("listen for metrics on {address}"))?;
        tokio::spawn(crate::metrics::serve(listener, registry.clone()));
    }
    let api = Api::new(registry, stopping.clone());
    let on_shutdown = {
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new calls, finishing in-flight ones");
            report(&health, ServingStatus::NotServing).await;
            notify_systemd("STOPPING=1");
            let _ = stopping_tx.send(true);
        }
    };
    let policy = Arc::new(Policy {
        allow_uids: config.allow_uid.clone(),
        allow_gids: config.allow_gid.clone(),
        health_open: config.health_open,
    });
    let containers = ContainerServiceServer::new(api)
        .max_decoding_message_size(config.max_message_size)
        .max_encoding_message_size(config.max_message_size);
    // The same services on every listener, behind the same limits and the same checks.
    let server = |builder: Server| {
        builder
            .max_concurrent_streams(config.max_concurrent_streams)
            // h2's default, said explicitly: the Unix wrapper refuses longer frames.
            .max_frame_size(MAX_FRAME_SIZE)
            .layer(AuthzLayer(policy.clone()))
            .layer(DeadlineLayer(config.rpc_timeout))
            .layer(MetricsLayer)
            .add_service(health_service.clone())
            .add_service(reflection_v1.clone())
            .add_service(reflection_v1alpha.clone())
            .add_service(containers.clone())
    };
    let unix = server(Server::builder())
        .serve_with_incoming_shutdown(accept_forever(listener), on_shutdown);
    let health_only = match config.health_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .context(|| format!("listen for health checks on {address}"))?,
        ),
        None => None,
    };
    let mut health_stopping = stopping.clone();
    let health_only = async {
        let Some(listener) = health_only else {
            return Ok(());
        };
        Server::builder()
            .add_service(health_service.clone())
            .serve_with_incoming_shutdown(accept_forever(listener), async move {
                let _ = health_stopping.wait_for(|stopping| *stopping).await;
            })
            .await
    };
    let mut tcp_stopping = stopping.clone();
    let tcp = async {
        let Some((listener, tls)) = tcp else {
            return Ok(());
        };
        server(Server::builder().tls_config(tls)?)
            .serve_with_incoming_shutdown(accept_forever(listener), async move {
                let _ = tcp_stopping.wait_for(|stopping| *stopping).await;
            })
            .await
    };

    report(&health, ServingStatus::Serving).await;
    notify_systemd("READY=1");
    tracing::info!(socket = %config.socket.display(), listen = ?config.listen, root = %config.root.display(), "serving");

    let grace = config.shutdown_grace;
    let mut stopping = stopping;
    let result = tokio::select! {
        served = async { tokio::try_join!(unix, tcp, health_only) } => served.map(|_| ()).map_err(StartError::from),
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

/// The socket is 0660. Callers other than root get in only when listed (and are then
/// checked per call): a listed group owns the socket; listed users, or health checks open
/// to all, need it 0666.
fn set_socket_access(config: &Config) -> Result<(), StartError> {
    let socket = &config.socket;
    if let Some(&gid) = config.allow_gid.first() {
        nix::unistd::chown(socket, None, Some(nix::unistd::Gid::from_raw(gid)))
            .context(|| format!("chown {} to group {gid}", socket.display()))?;
    }
    let mode = if config.allow_uid.is_empty() && !config.health_open {
        0o660
    } else {
        0o666
    };
    fs::set_permissions(socket, fs::Permissions::from_mode(mode))
        .context(|| format!("chmod {}", socket.display()))?;
    Ok(())
}

/// TCP is served only with TLS, and with client certificates unless the operator said
/// otherwise in so many words.
fn tls_config(config: &Config) -> Result<ServerTlsConfig, StartError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Err(StartError::Insecure(
            "--listen needs --tls-cert and --tls-key: berthd does not serve TCP without TLS",
        ));
    };
    let read = |path: &PathBuf| fs::read(path).context(|| format!("read {}", path.display()));
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    match (&config.tls_client_ca, config.tls_no_client_auth) {
        (Some(ca), _) => tls = tls.client_ca_root(Certificate::from_pem(read(ca)?)),
        (None, true) => tracing::warn!("TCP clients are not authenticated (--tls-no-client-auth)"),
        (None, false) => {
            return Err(StartError::Insecure(
                "--listen needs --tls-client-ca to verify clients, or --tls-no-client-auth to accept anyone",
            ))
        }
    }
    Ok(tls)
}

/// A listener's connections as a stream that never ends on an accept error: tonic stops
/// serving at the first one it does not expect, and running out of file descriptors
/// (a client opening thousands of connections) must not take the daemon down. Such errors
/// are logged and accepting resumes shortly after.
fn accept_forever<L: Accept>(listener: L) -> ReceiverStream<io::Result<L::Stream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept_one() => accepted,
                () = tx.closed() => return,
            };
            match accepted {
                Ok(stream) => {
                    if tx.send(Ok(stream)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// The two kinds of listener berthd serves on.
trait Accept: Send + 'static {
    type Stream: Send + 'static;
    fn accept_one(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Accept for UnixListener {
    type Stream = AuthorityFix<tokio::net::UnixStream>;
    async fn accept_one(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(stream, _)| {
            let uid = stream.peer_cred().ok().map(|cred| cred.uid());
            AuthorityFix::new(stream).peer_uid(uid)
        })
    }
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_one(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

/// The daemon as a whole ("") and its container service are always in the same state.
async fn report(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(SERVICE_NAME, status).await;
}

/// Tells systemd (a `Type=notify` unit) how the daemon is doing, through the datagram
/// socket it names in NOTIFY_SOCKET (`@` for the abstract namespace); a no-op elsewhere.
fn notify_systemd(state: &str) {
    use std::os::{linux::net::SocketAddrExt, unix::net::SocketAddr};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let address = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&target),
    };
    let sent = address.and_then(|address| {
        std::os::unix::net::UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address)
    });
    if let Err(e) = sent {
        tracing::warn!(socket = target, state, error = %e, "cannot notify systemd");
    }
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
