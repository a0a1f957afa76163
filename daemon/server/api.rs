//! The gRPC face of the registry: validate, call the library, map the error. Nothing else
//! happens here.
use std::{pin::Pin, sync::Arc};

use tokio::sync::{broadcast::error::RecvError, mpsc, watch};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Code, Request, Response, Status};

use berth_runtime::{
    cgroups::{devices::DeviceError, stats::Stats, CgroupError},
    container::{self, CreateRequest, Snapshot},
    error::Error,
    events::{self, EventKind},
    hooks::HookError,
    id::ContainerId,
    rdt::RdtError,
    registry::Registry,
    state::ExitRecord,
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

/// The single place where library errors become gRPC statuses.
fn to_status(error: Error) -> Status {
    Status::new(code_of(&error), error.to_string())
}

fn code_of(error: &Error) -> Code {
    match error {
        Error::InvalidId(_)
        | Error::InvalidBundle { .. }
        | Error::Unsupported { .. }
        | Error::InvalidConfig { .. }
        | Error::InvalidSignal(_)
        | Error::InvalidUpdate { .. }
        | Error::InitFailed {
            caller_error: true, ..
        }
        | Error::Rdt(RdtError::InvalidClosId { .. })
        | Error::Hook(HookError::InvalidTimeout { .. }) => Code::InvalidArgument,
        Error::NotFound { .. } | Error::BundleNotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::IncorrectStatus { .. }
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
        | Error::InitFailed { .. } => Code::Internal,
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

fn container_of(s: Snapshot) -> proto::Container {
    proto::Container {
        id: s.id,
        status: status_of(s.status).into(),
        pid: s.pid.map_or(0, |pid| pid as u32),
        bundle: s.bundle.to_string_lossy().into_owned(),
        annotations: s.annotations.into_iter().collect(),
        created_at: s.created.map(Into::into),
        exit_status: s.exit.map(exit_of),
        status_reason: s.status_reason,
        labels: Default::default(),
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
    }
}

fn event_of(event: &events::Event) -> proto::Event {
    proto::Event {
        sequence: event.sequence,
        r#type: event_type_of(event.kind).into(),
        id: event.id.clone(),
        timestamp: Some(event.at.into()),
        exit_status: event.exit.clone().map(exit_of),
        warnings: event.warnings.clone(),
        missed: 0,
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
        ] {
            if path.len() > MAX_PATH {
                return Err(Status::invalid_argument(format!(
                    "{what} {} is longer than {MAX_PATH} bytes",
                    berth_runtime::quote::shorten(path)
                )));
            }
        }
        let path = |text: String| (!text.is_empty()).then(|| std::path::PathBuf::from(text));
        let create = CreateRequest {
            bundle: std::path::PathBuf::from(&request.bundle),
            stdout: path(request.stdout_path),
            stderr: path(request.stderr_path),
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
        _request: Request<proto::ListContainersRequest>,
    ) -> Result<Response<proto::ListContainersResponse>, Status> {
        let containers = self
            .registry
            .list()
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
        let mut shutdown = self.shutdown.clone();
        // A graceful shutdown waits for calls in flight; a wait could outlast it forever.
        let exit = tokio::select! {
            exit = self.registry.wait(&id) => exit.map_err(failed("wait"))?,
            _ = shutdown.wait_for(|stopping| *stopping) => {
                return Err(Status::unavailable(format!(
                    "berthd is shutting down; container {id} has not exited yet"
                )));
            }
        };
        let exit_unknown = exit.is_none();
        let exit_status = exit.map_or(
            // containerd's code for an exit whose status is lost.
            proto::ExitStatus {
                code: 255,
                signal: 0,
                exited_at: None,
            },
            exit_of,
        );
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
        let pids = self
            .registry
            .processes(&id)
            .await
            .map_err(failed("list processes"))?;
        Ok(Response::new(proto::ListProcessesResponse {
            pids: pids.into_iter().map(|pid| pid as u32).collect(),
            execs: Vec::new(),
        }))
    }

    type WatchEventsStream = EventStream;

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
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
        let mut events = self.registry.events.subscribe();
        let mut shutdown = self.shutdown.clone();
        // A small buffer: the broadcast receiver is the real, bounded backlog, and it is what
        // reports how many events a slow reader missed.
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            tracing::debug!("event subscriber joined");
            loop {
                let item = tokio::select! {
                    received = events.recv() => match received {
                        Ok(event) if filter.matches(&event) => event_of(event.as_ref()),
                        Ok(_) => continue,
                        Err(RecvError::Lagged(missed)) => proto::Event {
                            r#type: proto::EventType::Lagged.into(),
                            timestamp: Some(std::time::SystemTime::now().into()),
                            missed,
                            ..Default::default()
                        },
                        Err(RecvError::Closed) => break,
                    },
                    () = tx.closed() => break,
                    _ = shutdown.wait_for(|stopping| *stopping) => break,
                };
                tokio::select! {
                    sent = tx.send(Ok(item)) => if sent.is_err() { break },
                    _ = shutdown.wait_for(|stopping| *stopping) => break,
                }
            }
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
        let _ = request;
        Err(Status::unimplemented("ExecProcess"))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn start_process(
        &self,
        request: Request<proto::StartProcessRequest>,
    ) -> Result<Response<proto::StartProcessResponse>, Status> {
        let _ = request;
        Err(Status::unimplemented("StartProcess"))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn kill_process(
        &self,
        request: Request<proto::KillProcessRequest>,
    ) -> Result<Response<proto::KillProcessResponse>, Status> {
        let _ = request;
        Err(Status::unimplemented("KillProcess"))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn wait_process(
        &self,
        request: Request<proto::WaitProcessRequest>,
    ) -> Result<Response<proto::WaitProcessResponse>, Status> {
        let _ = request;
        Err(Status::unimplemented("WaitProcess"))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn get_process(
        &self,
        request: Request<proto::GetProcessRequest>,
    ) -> Result<Response<proto::GetProcessResponse>, Status> {
        let _ = request;
        Err(Status::unimplemented("GetProcess"))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id, exec_id = %request.get_ref().exec_id))]
    async fn delete_process(
        &self,
        request: Request<proto::DeleteProcessRequest>,
    ) -> Result<Response<proto::DeleteProcessResponse>, Status> {
        let _ = request;
        Err(Status::unimplemented("DeleteProcess"))
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
