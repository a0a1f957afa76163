//! The gRPC face of the registry: validate, call the library, map the error. Nothing else
//! happens here.
use std::{pin::Pin, sync::Arc};

use tokio::sync::{broadcast::error::RecvError, mpsc, watch};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Code, Request, Response, Status};

use berth_runtime::{
    cgroups::{devices::DeviceError, stats::Stats, CgroupError},
    container::{self, CreateRequest, ExecRequest, ExecSnapshot, ExecState, Snapshot},
    error::Error,
    events::{self, EventKind, Subscription},
    hooks::HookError,
    id::{ContainerId, ExecId},
    labels::{Labels, Selector},
    rdt::RdtError,
    registry::Registry,
    state::{ExitRecord, Stdio},
};

use crate::{
    metrics,
    proto::{self, container_service_server::ContainerService},
};

pub struct Api {
    registry: Arc<Registry>,
    /// Turns true when the daemon shuts down; event streams end then, so a graceful
    /// shutdown does not wait for subscribers that never hang up.
    shutdown: watch::Receiver<bool>,
}

impl Api {
    pub fn new(registry: Arc<Registry>, shutdown: watch::Receiver<bool>) -> Self {
        Self { registry, shutdown }
    }

    /// Runs a change on container `id` on its own task, to its end: a caller that goes away
    /// (or a call past --rpc-timeout) must not abandon a create or a delete half-way,
    /// leaving behind what only a crash should. The call's span goes with it. A panic ends
    /// that task only (the container's lease is let go as it unwinds): the caller gets
    /// INTERNAL naming the container, and berthd serves on.
    async fn complete<T, Work>(
        &self,
        what: &'static str,
        id: ContainerId,
        work: impl FnOnce(Arc<Registry>, ContainerId) -> Work,
    ) -> Result<T, Status>
    where
        Work: std::future::Future<Output = berth_runtime::error::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        use tracing::Instrument;
        let task = tokio::spawn(work(self.registry.clone(), id.clone()).in_current_span());
        match task.await {
            Ok(result) => result.map_err(failed(what)),
            Err(e) if e.is_panic() => {
                let cause = panic_message(e.into_panic());
                tracing::error!(cause, "{what} panicked");
                Err(Status::internal(format!(
                    "{what} of container {id} panicked: {cause}"
                )))
            }
            Err(e) => Err(Status::internal(format!(
                "{what} of container {id} did not finish: {e}"
            ))),
        }
    }
}

impl Api {
    /// A wait, given up when berthd shuts down: a graceful shutdown waits for calls in
    /// flight, and a wait could outlast it forever.
    async fn until_shutdown<T>(
        &self,
        id: &ContainerId,
        wait: impl std::future::Future<Output = T>,
    ) -> Result<T, Status> {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            outcome = wait => Ok(outcome),
            _ = shutdown.wait_for(|stopping| *stopping) => Err(Status::unavailable(format!(
                "berthd is shutting down; the process waited for in container {id} has not exited yet"
            ))),
        }
    }
}

/// The single place where library errors become gRPC statuses.
fn to_status(error: Error) -> Status {
    Status::new(code_of(&error), error.to_string())
}

fn code_of(error: &Error) -> Code {
    match error {
        Error::InvalidId(_)
        | Error::InvalidExecId(_)
        | Error::ExecFailed {
            caller_error: true, ..
        }
        | Error::InvalidBundle { .. }
        | Error::Unsupported { .. }
        | Error::InvalidConfig { .. }
        | Error::InvalidSignal(_)
        | Error::InvalidUpdate { .. }
        | Error::InitFailed {
            caller_error: true, ..
        }
        | Error::Label(_)
        | Error::Rdt(RdtError::InvalidClosId { .. })
        | Error::Hook(HookError::InvalidTimeout { .. })
        | Error::Stdio(_) => Code::InvalidArgument,
        Error::NotFound { .. } | Error::BundleNotFound { .. } | Error::ExecNotFound { .. } => {
            Code::NotFound
        }
        Error::SequenceAhead { .. } => Code::OutOfRange,
        Error::AlreadyExists { .. } | Error::ExecExists { .. } => Code::AlreadyExists,
        Error::TooManyExecs { .. } => Code::ResourceExhausted,
        Error::IncorrectStatus { .. }
        | Error::ExecIncorrectState { .. }
        | Error::NotStopped { .. }
        | Error::Unavailable { .. }
        | Error::CgroupTaken { .. }
        | Error::Rdt(RdtError::NoResctrl { .. }) => Code::FailedPrecondition,
        Error::InitStillRunning { .. } => Code::DeadlineExceeded,
        Error::Cgroup(CgroupError::MissingController { .. }) => Code::FailedPrecondition,
        Error::Cgroup(
            CgroupError::InvalidResources(_)
            | CgroupError::Refused { .. }
            | CgroupError::Devices(
                DeviceError::InvalidRule { .. } | DeviceError::WildcardHole { .. },
            ),
        ) => Code::InvalidArgument,
        // The step that failed says whose fault it is; the message names the container.
        Error::Operation { cause, .. } => code_of(cause),
        Error::CorruptState { .. }
        | Error::StatusUnknown { .. }
        | Error::Io { .. }
        | Error::Cgroup(_)
        | Error::Rdt(RdtError::Io { .. })
        | Error::Hook(HookError::Failed { .. })
        | Error::Destroy { .. }
        | Error::InitFailed { .. }
        | Error::ExecFailed { .. } => Code::Internal,
    }
}

/// What a panic said, when it said it with a string (as `panic!` and `expect` do).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".into(), |message| (*message).into()),
    }
}

/// Linux's PATH_MAX: no longer path can name a file.
const MAX_PATH: usize = 4096;

fn parse_id(raw: &str) -> Result<ContainerId, Status> {
    ContainerId::parse(raw).map_err(to_status)
}

/// Logs a failed call where the error is decided, then maps it.
fn failed(what: &'static str) -> impl Fn(Error) -> Status {
    move |error| {
        tracing::warn!(error = %error, "{what} failed");
        to_status(error)
    }
}

// The runtime's types as the API spells them (free functions: neither side is this crate's).

fn status_of(status: container::Status) -> proto::ContainerStatus {
    match status {
        container::Status::Created => proto::ContainerStatus::Created,
        container::Status::Running => proto::ContainerStatus::Running,
        container::Status::Paused => proto::ContainerStatus::Paused,
        container::Status::Stopped => proto::ContainerStatus::Stopped,
        container::Status::Unknown => proto::ContainerStatus::Unknown,
    }
}

fn exit_of(exit: ExitRecord) -> proto::ExitStatus {
    proto::ExitStatus {
        code: exit.code,
        signal: exit.signal,
        exited_at: Some(exit.exited_at.into()),
    }
}

/// An exit as waits answer it: containerd's 255 when its status was lost.
fn exit_or_unknown(exit: Option<ExitRecord>) -> (proto::ExitStatus, bool) {
    match exit {
        Some(exit) => (exit_of(exit), false),
        None => (
            proto::ExitStatus {
                code: 255,
                signal: 0,
                exited_at: None,
            },
            true,
        ),
    }
}

fn process_of(snapshot: ExecSnapshot) -> proto::Process {
    let status = match snapshot.state {
        ExecState::Created => proto::ProcessStatus::Created,
        ExecState::Running => proto::ProcessStatus::Running,
        ExecState::Stopped => proto::ProcessStatus::Stopped,
    };
    let stopped = snapshot.state == ExecState::Stopped;
    let (exit_status, exit_unknown) = match stopped {
        true => {
            let (exit, unknown) = exit_or_unknown(snapshot.exit);
            (Some(exit), unknown)
        }
        false => (None, false),
    };
    proto::Process {
        exec_id: snapshot.exec_id,
        status: status.into(),
        pid: snapshot.pid.map_or(0, |pid| pid as u32),
        exit_status,
        exit_unknown,
    }
}

fn parse_exec_id(raw: &str) -> Result<ExecId, Status> {
    ExecId::parse(raw).map_err(to_status)
}

/// A path as the API gives it: empty for none, bounded.
fn optional_path(what: &str, path: String) -> Result<Option<std::path::PathBuf>, Status> {
    if path.len() > MAX_PATH {
        return Err(Status::invalid_argument(format!(
            "{what} {} is longer than {MAX_PATH} bytes",
            berth_runtime::quote::shorten(&path)
        )));
    }
    Ok((!path.is_empty()).then(|| std::path::PathBuf::from(path)))
}

fn container_of(s: Snapshot) -> proto::Container {
    proto::Container {
        id: s.id,
        status: status_of(s.status).into(),
        pid: s.pid.map_or(0, |pid| pid as u32),
        bundle: s
            .bundle
            .into_os_string()
            .into_string()
            .unwrap_or_else(|bundle| bundle.to_string_lossy().into_owned()),
        annotations: s.annotations.into_iter().collect(),
        created_at: s.created.map(Into::into),
        exit_status: s.exit.map(exit_of),
        status_reason: s.status_reason,
        labels: s.labels.into_iter().collect(),
    }
}

fn stats_of(stats: Stats) -> proto::ContainerStatsResponse {
    proto::ContainerStatsResponse {
        timestamp: Some(std::time::SystemTime::now().into()),
        cpu: stats.cpu.map(|c| proto::CpuStats {
            usage_total_ns: c.usage_total_ns,
            usage_user_ns: c.usage_user_ns,
            usage_system_ns: c.usage_system_ns,
            periods: c.periods,
            throttled_periods: c.throttled_periods,
            throttled_time_ns: c.throttled_time_ns,
        }),
        memory: stats.memory.map(|m| proto::MemoryStats {
            usage_bytes: m.usage_bytes,
            limit_bytes: m.limit_bytes,
            cache_bytes: m.cache_bytes,
            inactive_file_bytes: m.inactive_file_bytes,
            rss_bytes: m.rss_bytes,
            max_usage_bytes: m.max_usage_bytes,
            swap_usage_bytes: m.swap_usage_bytes,
            oom_kills: m.oom_kills,
        }),
        pids: stats.pids.map(|p| proto::PidsStats {
            current: p.current,
            limit: p.limit,
        }),
        io: stats.io.map(|io| proto::IoStats {
            read_bytes: io.read_bytes,
            write_bytes: io.write_bytes,
            read_ops: io.read_ops,
            write_ops: io.write_ops,
        }),
    }
}

fn event_type_of(kind: EventKind) -> proto::EventType {
    match kind {
        EventKind::Created => proto::EventType::Created,
        EventKind::Started => proto::EventType::Started,
        EventKind::Paused => proto::EventType::Paused,
        EventKind::Resumed => proto::EventType::Resumed,
        EventKind::Exited => proto::EventType::Exited,
        EventKind::Deleted => proto::EventType::Deleted,
        EventKind::Oom => proto::EventType::Oom,
        EventKind::ExecAdded => proto::EventType::ExecAdded,
        EventKind::ExecStarted => proto::EventType::ExecStarted,
        EventKind::ExecExited => proto::EventType::ExecExited,
    }
}

fn event_of(event: &events::Event, instance: &str) -> proto::Event {
    proto::Event {
        sequence: event.sequence,
        r#type: event_type_of(event.kind).into(),
        id: event.id.clone(),
        timestamp: Some(event.at.into()),
        exit_status: event.exit.clone().map(exit_of),
        warnings: event.warnings.clone(),
        missed: 0,
        exec_id: event.exec_id.clone().unwrap_or_default(),
        pid: event.pid.map_or(0, |pid| pid as u32),
        instance: instance.to_owned(),
    }
}

/// A subscriber missed `missed` events (0: it cannot be known how many). Numbered 0: it is
/// this subscriber's news, not an event of the daemon's sequence.
fn lagged_event(missed: u64, instance: &str) -> proto::Event {
    proto::Event {
        r#type: proto::EventType::Lagged.into(),
        timestamp: Some(std::time::SystemTime::now().into()),
        missed,
        instance: instance.to_owned(),
        ..Default::default()
    }
}

/// Which events a WatchEvents caller asked for.
struct EventFilter {
    id: String,
    types: Vec<i32>,
}

impl EventFilter {
    fn matches(&self, event: &events::Event) -> bool {
        (self.id.is_empty() || self.id == event.id)
            && (self.types.is_empty() || self.types.contains(&event_type_of(event.kind).into()))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::Event, Status>> + Send>>;

type EventSender = mpsc::Sender<Result<proto::Event, Status>>;

/// Feeds one subscriber: the LAGGED notice and the replay its resume calls for, then live
/// events, until it or berthd goes away.
async fn feed(
    subscription: Subscription,
    filter: EventFilter,
    instance: String,
    tx: EventSender,
    mut shutdown: watch::Receiver<bool>,
) {
    let Subscription {
        lagged,
        replay,
        mut live,
    } = subscription;
    let notice = lagged.map(|missed| lagged_event(missed, &instance));
    // Consumed, so a subscriber that stays does not keep old events alive.
    let replayed = replay
        .into_iter()
        .filter(|event| filter.matches(event))
        .map(|event| event_of(&event, &instance));
    for item in notice.into_iter().chain(replayed) {
        if !deliver(&tx, &mut shutdown, item).await {
            return;
        }
    }
    loop {
        let item = tokio::select! {
            received = live.recv() => match received {
                Ok(event) if filter.matches(&event) => event_of(&event, &instance),
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => lagged_event(missed, &instance),
                Err(RecvError::Closed) => return,
            },
            () = tx.closed() => return,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        if !deliver(&tx, &mut shutdown, item).await {
            return;
        }
    }
}

/// Hands one event to the stream; false when the subscriber or berthd went away first.
async fn deliver(
    tx: &EventSender,
    shutdown: &mut watch::Receiver<bool>,
    item: proto::Event,
) -> bool {
    tokio::select! {
        sent = tx.send(Ok(item)) => sent.is_ok(),
        _ = shutdown.wait_for(|stopping| *stopping) => false,
    }
}

#[tonic::async_trait]
impl ContainerService for Api {
    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn create_container(
        &self,
        request: Request<proto::CreateContainerRequest>,
    ) -> Result<Response<proto::CreateContainerResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        for (what, path) in [
            ("bundle", &request.bundle),
            ("stdout_path", &request.stdout_path),
            ("stderr_path", &request.stderr_path),
            ("stdin_path", &request.stdin_path),
            ("console_socket", &request.console_socket),
        ] {
            if path.len() > MAX_PATH {
                return Err(Status::invalid_argument(format!(
                    "{what} {} is longer than {MAX_PATH} bytes",
                    berth_runtime::quote::shorten(path)
                )));
            }
        }
        let labels = Labels::parse(request.labels).map_err(|e| to_status(e.into()))?;
        let path = |text: String| (!text.is_empty()).then(|| std::path::PathBuf::from(text));
        let create = CreateRequest {
            bundle: std::path::PathBuf::from(&request.bundle),
            stdout: path(request.stdout_path),
            stderr: path(request.stderr_path),
            labels,
            stdin: path(request.stdin_path),
            console_socket: path(request.console_socket),
        };
        let snapshot = self
            .complete("create", id, |registry, id| async move {
                registry.create(&id, create).await
            })
            .await?;
        Ok(Response::new(proto::CreateContainerResponse {
            container: Some(container_of(snapshot)),
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn start_container(
        &self,
        request: Request<proto::StartContainerRequest>,
    ) -> Result<Response<proto::StartContainerResponse>, Status> {
        let id = parse_id(&request.get_ref().id)?;
        let (snapshot, warnings) = self
            .complete("start", id, |registry, id| async move {
                registry.start(&id).await
            })
            .await?;
        for warning in warnings {
            tracing::warn!(warning, "start warning");
        }
        Ok(Response::new(proto::StartContainerResponse {
            container: Some(container_of(snapshot)),
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn kill_container(
        &self,
        request: Request<proto::KillContainerRequest>,
    ) -> Result<Response<proto::KillContainerResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let (signal, all) = (request.signal, request.all);
        self.complete("kill", id, |registry, id| async move {
            registry.kill(&id, signal, all).await
        })
        .await?;
        Ok(Response::new(proto::KillContainerResponse {}))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn pause_container(
        &self,
        request: Request<proto::PauseContainerRequest>,
    ) -> Result<Response<proto::PauseContainerResponse>, Status> {
        let id = parse_id(&request.get_ref().id)?;
        self.complete("pause", id, |registry, id| async move {
            registry.pause(&id).await
        })
        .await?;
        Ok(Response::new(proto::PauseContainerResponse {}))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn resume_container(
        &self,
        request: Request<proto::ResumeContainerRequest>,
    ) -> Result<Response<proto::ResumeContainerResponse>, Status> {
        let id = parse_id(&request.get_ref().id)?;
        self.complete("resume", id, |registry, id| async move {
            registry.resume(&id).await
        })
        .await?;
        Ok(Response::new(proto::ResumeContainerResponse {}))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, force = request.get_ref().force))]
    async fn delete_container(
        &self,
        request: Request<proto::DeleteContainerRequest>,
    ) -> Result<Response<proto::DeleteContainerResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let force = request.force;
        let outcome = self
            .complete("delete", id, |registry, id| async move {
                registry.delete(&id, force).await
            })
            .await?;
        for warning in &outcome.warnings {
            tracing::warn!(warning, "delete warning");
        }
        let deleted = metrics::Deleted {
            path: match (force, outcome.found) {
                (true, _) => "forced",
                (false, Some(container::Status::Created)) => "created",
                (false, _) => "stopped",
            },
            warnings: outcome.warnings.len(),
        };
        let mut response = Response::new(proto::DeleteContainerResponse {
            container: outcome.snapshot.map(container_of),
            warnings: outcome.warnings,
        });
        response.extensions_mut().insert(deleted);
        Ok(response)
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn get_container(
        &self,
        request: Request<proto::GetContainerRequest>,
    ) -> Result<Response<proto::GetContainerResponse>, Status> {
        let id = parse_id(&request.get_ref().id)?;
        let snapshot = self.registry.get(&id).await.map_err(to_status)?;
        Ok(Response::new(proto::GetContainerResponse {
            container: Some(container_of(snapshot)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_containers(
        &self,
        request: Request<proto::ListContainersRequest>,
    ) -> Result<Response<proto::ListContainersResponse>, Status> {
        let selector = Selector::parse(request.into_inner().label_selector)
            .map_err(|e| to_status(e.into()))?;
        let containers = self
            .registry
            .list(&selector)
            .await
            .into_iter()
            .map(container_of)
            .collect();
        Ok(Response::new(proto::ListContainersResponse { containers }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn wait_container(
        &self,
        request: Request<proto::WaitContainerRequest>,
    ) -> Result<Response<proto::WaitContainerResponse>, Status> {
        let id = parse_id(&request.get_ref().id)?;
        let exit = self
            .until_shutdown(&id, self.registry.wait(&id))
            .await?
            .map_err(failed("wait"))?;
        let (exit_status, exit_unknown) = exit_or_unknown(exit);
        Ok(Response::new(proto::WaitContainerResponse {
            exit_status: Some(exit_status),
            exit_unknown,
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn list_processes(
        &self,
        request: Request<proto::ListProcessesRequest>,
    ) -> Result<Response<proto::ListProcessesResponse>, Status> {
        let id = parse_id(&request.get_ref().id)?;
        let (pids, execs) = self
            .registry
            .processes(&id)
            .await
            .map_err(failed("list processes"))?;
        Ok(Response::new(proto::ListProcessesResponse {
            pids: pids.into_iter().map(|pid| pid as u32).collect(),
            execs: execs.into_iter().map(process_of).collect(),
        }))
    }

    type WatchEventsStream = EventStream;

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, after = request.get_ref().after_sequence))]
    async fn watch_events(
        &self,
        request: Request<proto::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let request = request.into_inner();
        if !request.id.is_empty() {
            parse_id(&request.id)?;
        }
        let filter = EventFilter {
            id: request.id,
            types: request.types,
        };
        let events = &self.registry.events;
        let subscription = events
            .subscribe(request.after_sequence, &request.instance)
            .map_err(failed("watch events"))?;
        let instance = events.instance().to_owned();
        let shutdown = self.shutdown.clone();
        // A small buffer: the broadcast receiver is the real, bounded backlog, and it is what
        // reports how many events a slow reader missed.
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            tracing::debug!(
                lagged = ?subscription.lagged,
                replayed = subscription.replay.len(),
                "event subscriber joined"
            );
            feed(subscription, filter, instance, tx, shutdown).await;
            tracing::debug!("event subscriber left");
        });
        let stream: Self::WatchEventsStream = Box::pin(ReceiverStream::new(rx));
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn exec_process(
        &self,
        request: Request<proto::ExecProcessRequest>,
    ) -> Result<Response<proto::ExecProcessResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let exec_id = parse_exec_id(&request.exec_id)?;
        let process = serde_json::from_slice(&request.process).map_err(|e| {
            Status::invalid_argument(format!("process is not an OCI process object: {e}"))
        })?;
        let stdio = Stdio {
            stdin: optional_path("stdin_path", request.stdin_path)?,
            stdout: optional_path("stdout_path", request.stdout_path)?,
            stderr: optional_path("stderr_path", request.stderr_path)?,
            console_socket: optional_path("console_socket", request.console_socket)?,
        };
        let exec = ExecRequest {
            exec_id,
            process,
            stdio,
        };
        let start = request.start;
        let pid = self
            .complete("exec", id, async move |registry, id| {
                registry.exec(&id, exec, start).await
            })
            .await?;
        Ok(Response::new(proto::ExecProcessResponse {
            pid: pid.map_or(0, |pid| pid as u32),
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn start_process(
        &self,
        request: Request<proto::StartProcessRequest>,
    ) -> Result<Response<proto::StartProcessResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let exec_id = parse_exec_id(&request.exec_id)?;
        let pid = self
            .complete("start of an exec process", id, async move |registry, id| {
                registry.start_exec(&id, &exec_id).await
            })
            .await?;
        Ok(Response::new(proto::StartProcessResponse {
            pid: pid as u32,
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn kill_process(
        &self,
        request: Request<proto::KillProcessRequest>,
    ) -> Result<Response<proto::KillProcessResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let exec_id = parse_exec_id(&request.exec_id)?;
        self.registry
            .kill_exec(&id, &exec_id, request.signal)
            .await
            .map_err(failed("kill of an exec process"))?;
        Ok(Response::new(proto::KillProcessResponse {}))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn wait_process(
        &self,
        request: Request<proto::WaitProcessRequest>,
    ) -> Result<Response<proto::WaitProcessResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let exec_id = parse_exec_id(&request.exec_id)?;
        let exit = self
            .until_shutdown(&id, self.registry.wait_exec(&id, &exec_id))
            .await?
            .map_err(failed("wait for an exec process"))?;
        let (exit_status, exit_unknown) = exit_or_unknown(exit);
        Ok(Response::new(proto::WaitProcessResponse {
            exit_status: Some(exit_status),
            exit_unknown,
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn get_process(
        &self,
        request: Request<proto::GetProcessRequest>,
    ) -> Result<Response<proto::GetProcessResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let exec_id = parse_exec_id(&request.exec_id)?;
        let snapshot = self
            .registry
            .get_exec(&id, &exec_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::GetProcessResponse {
            process: Some(process_of(snapshot)),
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn delete_process(
        &self,
        request: Request<proto::DeleteProcessRequest>,
    ) -> Result<Response<proto::DeleteProcessResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let exec_id = parse_exec_id(&request.exec_id)?;
        let snapshot = self
            .complete(
                "delete of an exec process",
                id,
                async move |registry, id| registry.delete_exec(&id, &exec_id).await,
            )
            .await?;
        Ok(Response::new(proto::DeleteProcessResponse {
            process: Some(process_of(snapshot)),
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn update_resources(
        &self,
        request: Request<proto::UpdateResourcesRequest>,
    ) -> Result<Response<proto::UpdateResourcesResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let resources = request.resources;
        self.complete("update", id, |registry, id| async move {
            registry.update_resources(&id, &resources).await
        })
        .await?;
        Ok(Response::new(proto::UpdateResourcesResponse {}))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn container_stats(
        &self,
        request: Request<proto::ContainerStatsRequest>,
    ) -> Result<Response<proto::ContainerStatsResponse>, Status> {
        let id = parse_id(&request.get_ref().id)?;
        let stats = self
            .registry
            .stats(&id)
            .await
            .map_err(failed("read the usage"))?;
        Ok(Response::new(stats_of(stats)))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use berth_runtime::labels::LabelError;

    use super::*;

    #[test]
    fn errors_map_to_the_codes_their_cause_calls_for() {
        let missing = CgroupError::MissingController {
            field: "linux.resources.memory.limit".into(),
            controller: "memory".into(),
            path: PathBuf::from("/sys/fs/cgroup/c1"),
            hint: String::new(),
        };
        let busy = CgroupError::Io {
            action: "remove cgroup",
            path: PathBuf::from("/sys/fs/cgroup/c1"),
            source: std::io::Error::from_raw_os_error(libc::EBUSY),
        };
        let frozen_late = CgroupError::FreezeTimeout {
            path: PathBuf::from("/sys/fs/cgroup/x/cgroup.events"),
            state: "thawed",
        };
        let cases: Vec<(Error, Code)> = vec![
            (Error::InvalidSignal(99), Code::InvalidArgument),
            (
                Error::Rdt(RdtError::InvalidClosId {
                    id: "c1".into(),
                    name: "a/b".into(),
                }),
                Code::InvalidArgument,
            ),
            (
                Error::Rdt(RdtError::NoResctrl {
                    id: "c1".into(),
                    root: PathBuf::from("/sys/fs/resctrl"),
                }),
                Code::FailedPrecondition,
            ),
            (
                Error::Hook(HookError::InvalidTimeout {
                    kind: "poststop",
                    index: 0,
                    timeout: 0,
                }),
                Code::InvalidArgument,
            ),
            (
                Error::Operation {
                    id: "c1".into(),
                    action: "resume",
                    cause: Box::new(Error::Cgroup(frozen_late)),
                },
                Code::Internal,
            ),
            (
                Error::Operation {
                    id: "c1".into(),
                    action: "create",
                    cause: Box::new(Error::InvalidSignal(0)),
                },
                Code::InvalidArgument,
            ),
            (
                Error::InvalidConfig {
                    field: "process.cwd".into(),
                    reason: "x".into(),
                },
                Code::InvalidArgument,
            ),
            (Error::NotFound { id: "c1".into() }, Code::NotFound),
            (
                Error::SequenceAhead {
                    after: 9,
                    last: 3,
                    instance: "i".into(),
                },
                Code::OutOfRange,
            ),
            (
                Error::Label(LabelError::Count {
                    what: "labels",
                    count: 65,
                }),
                Code::InvalidArgument,
            ),
            (
                Error::NotStopped {
                    id: "c1".into(),
                    status: container::Status::Running,
                },
                Code::FailedPrecondition,
            ),
            (
                Error::StatusUnknown {
                    id: "c1".into(),
                    reason: "r".into(),
                },
                Code::Internal,
            ),
            (Error::Cgroup(missing), Code::FailedPrecondition),
            (
                Error::InvalidUpdate {
                    id: "c1".into(),
                    field: "linux.resources.devices".into(),
                    reason: "r".into(),
                },
                Code::InvalidArgument,
            ),
            (
                Error::Operation {
                    id: "c1".into(),
                    action: "update",
                    cause: Box::new(Error::Cgroup(CgroupError::Refused {
                        path: PathBuf::from("/sys/fs/cgroup/c1"),
                        reason: "linux.resources.cpu.cpus = \"0-63\": Invalid argument".into(),
                    })),
                },
                Code::InvalidArgument,
            ),
            (Error::Cgroup(busy), Code::Internal),
            (
                Error::InitStillRunning { id: "c1".into() },
                Code::DeadlineExceeded,
            ),
            (
                Error::InitFailed {
                    id: "c1".into(),
                    message: "m".into(),
                    caller_error: true,
                },
                Code::InvalidArgument,
            ),
            (
                Error::InitFailed {
                    id: "c1".into(),
                    message: "m".into(),
                    caller_error: false,
                },
                Code::Internal,
            ),
        ];
        for (error, code) in cases {
            let shown = error.to_string();
            let status = to_status(error);
            assert_eq!(status.code(), code, "{shown}");
            assert_eq!(status.message(), shown);
        }
    }

    #[test]
    fn an_operation_that_failed_on_a_path_names_the_container() {
        let error = Error::Operation {
            id: "c1".into(),
            action: "kill",
            cause: Box::new(Error::Cgroup(CgroupError::NoFreezer {
                path: PathBuf::from("/sys/fs/cgroup/custom/path"),
            })),
        };
        assert_eq!(
            to_status(error).message(),
            "cannot kill container c1: cgroup /sys/fs/cgroup/custom/path: no freezer"
        );
    }

    #[test]
    fn a_panic_says_what_it_said() {
        let caught = |f: fn()| std::panic::catch_unwind(f).unwrap_err();
        assert_eq!(panic_message(caught(|| panic!("plain"))), "plain");
        assert_eq!(
            panic_message(caught(|| panic!("formatted {}", 1))),
            "formatted 1"
        );
        assert_eq!(
            panic_message(caught(|| std::panic::panic_any(7))),
            "(no message)"
        );
    }
}
