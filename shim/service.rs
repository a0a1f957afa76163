//! containerd's task API (v2) served from berthd: each call becomes berthd calls on the
//! task's berth container. Errors become ttrpc statuses here and nowhere else; berthd's gRPC
//! codes carry over as they are (containerd reads both with the same table).
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use berth_api::{ContainerStatus, ProcessStatus};
use containerd_shim::{
    api::{
        CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
        DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
        PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
        StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, Status,
        UpdateTaskRequest, WaitRequest, WaitResponse,
    },
    protos::{
        protobuf::{Enum, MessageField},
        shim::oci::ProcessDetails,
        ttrpc,
        types::task::ProcessInfo,
    },
    publisher::RemotePublisher,
    ExitSignal, Task, TtrpcContext, TtrpcResult,
};
use tokio::task::JoinHandle;

use crate::{
    berthd::{self, Client},
    config,
    container::{timestamp, Container, Exit, Process},
    metrics, naming,
    note::Note,
    relay::{self, Relay},
    rootfs,
    stdio::{Attachment, Stdio},
};

/// How long a delete waits for berthd's events of it (the exit a delete of a created
/// container causes, then the deletion) to be relayed before it answers.
const DELETE_EVENTS_WAIT: Duration = Duration::from_secs(2);

pub struct Service {
    namespace: String,
    publisher: Arc<RemotePublisher>,
    exit: Arc<ExitSignal>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    relays: Mutex<HashMap<String, JoinHandle<()>>>,
    clients: Mutex<HashMap<PathBuf, Client>>,
    unified: bool,
}

impl Service {
    pub fn new(namespace: String, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Self {
        Self {
            namespace,
            publisher: Arc::new(publisher),
            exit,
            containers: Mutex::new(HashMap::new()),
            relays: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            unified: metrics::host_is_unified(),
        }
    }

    fn container(&self, id: &str) -> TtrpcResult<Arc<Container>> {
        self.containers
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| {
                failed(
                    ttrpc::Code::NOT_FOUND,
                    format!("container {id} not created"),
                )
            })
    }

    /// The init (`exec_id` empty) or an exec process of `container`.
    fn process(container: &Container, exec_id: &str) -> TtrpcResult<ProcessRef> {
        if exec_id.is_empty() {
            return Ok(ProcessRef::Init);
        }
        container
            .exec(exec_id)
            .map(ProcessRef::Exec)
            .ok_or_else(|| {
                failed(
                    ttrpc::Code::NOT_FOUND,
                    format!(
                        "process {exec_id} of container {} does not exist",
                        container.id
                    ),
                )
            })
    }

    /// One channel per berthd socket, shared by the tasks this shim serves.
    fn client_for(&self, socket: &Path) -> TtrpcResult<Client> {
        let mut clients = self.clients.lock().unwrap();
        if let Some(client) = clients.get(socket) {
            return Ok(client.clone());
        }
        let client = berthd::client(socket).map_err(|e| {
            failed(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("berthd socket {}: {e}", socket.display()),
            )
        })?;
        clients.insert(socket.to_owned(), client.clone());
        Ok(client)
    }

    /// Opens the stdio, subscribes to the events and creates the berth container (its pid
    /// goes to `container.init`); returns the stdio the shim holds and the event stream.
    /// Undoes its own steps when one fails.
    async fn create_berth_container(
        &self,
        container: &Container,
        stdio: &Stdio,
    ) -> TtrpcResult<(Attachment, tonic::Streaming<berth_api::Event>)> {
        let mut attachment = Attachment::open(
            stdio,
            &container.bundle,
            "init",
            &container.namespace,
            &container.id,
        )
        .await
        .map_err(|e| failed(ttrpc::Code::INVALID_ARGUMENT, e))?;
        let events = match relay::subscribe(&container.client, &container.berth_id, 0, "").await {
            Ok(events) => events,
            Err(status) => {
                attachment.close().await;
                return Err(from_berthd("subscribe to the events of", container, status));
            }
        };
        let paths = attachment.paths().clone();
        let request = berth_api::CreateContainerRequest {
            id: container.berth_id.clone(),
            bundle: container.bundle.to_string_lossy().into_owned(),
            stdout_path: paths.stdout,
            stderr_path: paths.stderr,
            stdin_path: paths.stdin,
            console_socket: paths.console_socket,
            labels: naming::labels(&container.namespace, &container.id),
        };
        let created = container.client.clone().create_container(request).await;
        let pid = match created {
            Ok(response) => response.into_inner().container.map_or(0, |c| c.pid),
            Err(status) => {
                attachment.close().await;
                return Err(from_berthd("create", container, status));
            }
        };
        container.init.set_pid(pid);
        if let Err(e) = attachment.process_spawned().await {
            attachment.close().await;
            let _ = force_delete(&container.client, &container.berth_id).await;
            return Err(failed(ttrpc::Code::INTERNAL, e));
        }
        Ok((attachment, events))
    }
}

enum ProcessRef {
    Init,
    Exec(Arc<Process>),
}

impl ProcessRef {
    fn get<'a>(&'a self, container: &'a Container) -> &'a Process {
        match self {
            ProcessRef::Init => &container.init,
            ProcessRef::Exec(process) => process,
        }
    }
}

fn failed(code: ttrpc::Code, message: impl std::fmt::Display) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

/// berthd's status, with its code, naming the containerd task (and berthd's socket when
/// berthd could not be reached).
fn from_berthd(what: &str, container: &Container, status: tonic::Status) -> ttrpc::Error {
    let code = ttrpc::Code::from_i32(status.code() as i32).unwrap_or(ttrpc::Code::UNKNOWN);
    let mut message = format!("{what} {}: {}", container.id, status.message());
    if status.code() == tonic::Code::Unavailable {
        message.push_str(&format!(" (berthd at {})", container.socket.display()));
    }
    failed(code, message)
}

async fn force_delete(client: &Client, berth_id: &str) -> Result<(), tonic::Status> {
    client
        .clone()
        .delete_container(berth_api::DeleteContainerRequest {
            id: berth_id.to_owned(),
            force: true,
        })
        .await
        .map(|_| ())
}

fn task_status(status: ContainerStatus) -> Status {
    match status {
        ContainerStatus::Created => Status::CREATED,
        ContainerStatus::Running => Status::RUNNING,
        ContainerStatus::Paused => Status::PAUSED,
        ContainerStatus::Stopped => Status::STOPPED,
        ContainerStatus::Unknown | ContainerStatus::Unspecified => Status::UNKNOWN,
    }
}

fn process_status(status: ProcessStatus) -> Status {
    match status {
        ProcessStatus::Created => Status::CREATED,
        ProcessStatus::Running => Status::RUNNING,
        ProcessStatus::Stopped => Status::STOPPED,
        ProcessStatus::Unspecified => Status::UNKNOWN,
    }
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        request: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        if !request.checkpoint.is_empty() || !request.parent_checkpoint.is_empty() {
            return Err(failed(
                ttrpc::Code::UNIMPLEMENTED,
                format!(
                    "container {}: berth cannot restore a checkpoint",
                    request.id
                ),
            ));
        }
        if self.containers.lock().unwrap().contains_key(&request.id) {
            return Err(failed(
                ttrpc::Code::ALREADY_EXISTS,
                format!("container {} already exists", request.id),
            ));
        }
        let socket = config::berthd_socket(request.options.as_ref()).map_err(|e| {
            failed(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("container {}: {e}", request.id),
            )
        })?;
        let client = self.client_for(&socket)?;
        let stdio = Stdio {
            stdin: request.stdin.clone(),
            stdout: request.stdout.clone(),
            stderr: request.stderr.clone(),
            terminal: request.terminal,
        };
        let bundle = PathBuf::from(&request.bundle);
        let container = Arc::new(Container::new(
            request.id.clone(),
            self.namespace.clone(),
            bundle.clone(),
            request.rootfs.clone(),
            (client, socket.clone()),
            stdio.clone(),
        ));
        let mut note = Note {
            socket,
            berth_id: container.berth_id.clone(),
            pid: 0,
            mounted_rootfs: !request.rootfs.is_empty(),
        };
        // The note first: from here on there may be something for `SHIM delete` to undo.
        note.write(&bundle)
            .map_err(|e| failed(ttrpc::Code::INTERNAL, e))?;
        if let Err(e) = rootfs::mount(&bundle, &request.rootfs).await {
            Note::remove(&bundle);
            return Err(failed(
                ttrpc::Code::INTERNAL,
                format!("container {}: {e}", request.id),
            ));
        }
        let (attachment, events) = match self.create_berth_container(&container, &stdio).await {
            Ok(created) => created,
            Err(e) => {
                if note.mounted_rootfs {
                    if let Err(unmount) = rootfs::unmount(&bundle) {
                        log::warn!("{unmount}");
                    }
                }
                Note::remove(&bundle);
                return Err(e);
            }
        };
        *container.init.attachment.lock().await = Some(attachment);
        note.pid = container.init.pid();
        if let Err(e) = note.write(&bundle) {
            log::warn!("{e}");
        }
        self.containers
            .lock()
            .unwrap()
            .insert(request.id.clone(), container.clone());
        let relay = Relay::new(container.clone(), self.publisher.clone());
        self.relays
            .lock()
            .unwrap()
            .insert(request.id.clone(), tokio::spawn(relay.run(events)));
        Ok(CreateTaskResponse {
            pid: container.init.pid(),
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        request: StartRequest,
    ) -> TtrpcResult<StartResponse> {
        let container = self.container(&request.id)?;
        let mut client = container.client.clone();
        let pid = match Self::process(&container, &request.exec_id)? {
            ProcessRef::Init => client
                .start_container(berth_api::StartContainerRequest {
                    id: container.berth_id.clone(),
                })
                .await
                .map_err(|status| from_berthd("start", &container, status))?
                .into_inner()
                .container
                .map_or(container.init.pid(), |c| c.pid),
            ProcessRef::Exec(process) => {
                let pid = client
                    .start_process(berth_api::StartProcessRequest {
                        id: container.berth_id.clone(),
                        exec_id: request.exec_id.clone(),
                    })
                    .await
                    .map_err(|status| {
                        from_berthd(
                            &format!("start process {} of", request.exec_id),
                            &container,
                            status,
                        )
                    })?
                    .into_inner()
                    .pid;
                process.set_pid(pid);
                if let Some(attachment) = process.attachment.lock().await.as_mut() {
                    attachment
                        .process_spawned()
                        .await
                        .map_err(|e| failed(ttrpc::Code::INTERNAL, e))?;
                }
                pid
            }
        };
        // Once the process runs, its client holds the stdin FIFO's write end (ctr opened it
        // when berthd opened the read end): the shim lets go of its own, so the client's
        // close is the process's end of file, as with the runc shim, whether or not a
        // CloseIO follows (`ctr run` sends none).
        let process = match Self::process(&container, &request.exec_id)? {
            ProcessRef::Init => None,
            ProcessRef::Exec(process) => Some(process),
        };
        let stdio_owner = process.as_deref().unwrap_or(&container.init);
        if let Some(attachment) = stdio_owner.attachment.lock().await.as_mut() {
            attachment.release_stdin();
        }
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        request: DeleteRequest,
    ) -> TtrpcResult<DeleteResponse> {
        let container = self.container(&request.id)?;
        let mut client = container.client.clone();
        let (process, exit) = match Self::process(&container, &request.exec_id)? {
            ProcessRef::Init => {
                let deleted = client
                    .delete_container(berth_api::DeleteContainerRequest {
                        id: container.berth_id.clone(),
                        force: false,
                    })
                    .await;
                let last = match deleted {
                    Ok(response) => response.into_inner().container,
                    Err(status) if status.code() == tonic::Code::NotFound => None,
                    Err(status) => return Err(from_berthd("delete", &container, status)),
                };
                // The relay publishes the exit this delete may have caused and then the
                // deletion; once it is done, the exit is berthd's.
                let relay = self.relays.lock().unwrap().remove(&request.id);
                if let Some(mut relay) = relay {
                    if tokio::time::timeout(DELETE_EVENTS_WAIT, &mut relay)
                        .await
                        .is_err()
                    {
                        relay.abort();
                    }
                }
                container.init.record_exit(Exit::from_berth(
                    last.as_ref().and_then(|c| c.exit_status.as_ref()),
                ));
                for (exec_id, exec) in container.execs() {
                    if let Some(attachment) = exec.attachment.lock().await.take() {
                        attachment.close().await;
                    }
                    container.remove_exec(&exec_id);
                }
                if let Some(attachment) = container.init.attachment.lock().await.take() {
                    attachment.close().await;
                }
                if !container.rootfs.is_empty() {
                    rootfs::unmount(&container.bundle).map_err(|e| {
                        failed(
                            ttrpc::Code::INTERNAL,
                            format!("container {}: {e}", request.id),
                        )
                    })?;
                }
                Note::remove(&container.bundle);
                self.containers.lock().unwrap().remove(&request.id);
                (ProcessRef::Init, container.init.exit())
            }
            ProcessRef::Exec(process) => {
                let deleted = client
                    .delete_process(berth_api::DeleteProcessRequest {
                        id: container.berth_id.clone(),
                        exec_id: request.exec_id.clone(),
                    })
                    .await;
                let last = match deleted {
                    Ok(response) => response.into_inner().process,
                    Err(status) if status.code() == tonic::Code::NotFound => None,
                    Err(status) => {
                        return Err(from_berthd(
                            &format!("delete process {} of", request.exec_id),
                            &container,
                            status,
                        ))
                    }
                };
                process.record_exit(Exit::from_berth(
                    last.as_ref().and_then(|p| p.exit_status.as_ref()),
                ));
                if let Some(attachment) = process.attachment.lock().await.take() {
                    attachment.close().await;
                }
                container.remove_exec(&request.exec_id);
                let exit = process.exit();
                (ProcessRef::Exec(process), exit)
            }
        };
        let exit = exit.unwrap_or_else(|| Exit::from_berth(None));
        Ok(DeleteResponse {
            pid: process.get(&container).pid(),
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn pids(&self, _ctx: &TtrpcContext, request: PidsRequest) -> TtrpcResult<PidsResponse> {
        let container = self.container(&request.id)?;
        let listed = container
            .client
            .clone()
            .list_processes(berth_api::ListProcessesRequest {
                id: container.berth_id.clone(),
            })
            .await
            .map_err(|status| from_berthd("list the processes of", &container, status))?
            .into_inner();
        let exec_of: HashMap<u32, String> = listed
            .execs
            .iter()
            .map(|exec| (exec.pid, exec.exec_id.clone()))
            .chain(
                container
                    .execs()
                    .into_iter()
                    .map(|(exec_id, process)| (process.pid(), exec_id)),
            )
            .filter(|(pid, _)| *pid != 0)
            .collect();
        let processes = listed
            .pids
            .iter()
            .map(|&pid| ProcessInfo {
                pid,
                info: MessageField::from_option(exec_of.get(&pid).map(|exec_id| {
                    containerd_shim::util::convert_to_any(Box::new(ProcessDetails {
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    }))
                    .expect("process details encode")
                })),
                ..Default::default()
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, request: PauseRequest) -> TtrpcResult<Empty> {
        let container = self.container(&request.id)?;
        container
            .client
            .clone()
            .pause_container(berth_api::PauseContainerRequest {
                id: container.berth_id.clone(),
            })
            .await
            .map_err(|status| from_berthd("pause", &container, status))?;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, request: ResumeRequest) -> TtrpcResult<Empty> {
        let container = self.container(&request.id)?;
        container
            .client
            .clone()
            .resume_container(berth_api::ResumeContainerRequest {
                id: container.berth_id.clone(),
            })
            .await
            .map_err(|status| from_berthd("resume", &container, status))?;
        Ok(Empty::new())
    }

    async fn kill(&self, _ctx: &TtrpcContext, request: KillRequest) -> TtrpcResult<Empty> {
        let container = self.container(&request.id)?;
        let mut client = container.client.clone();
        let killed = match Self::process(&container, &request.exec_id)? {
            ProcessRef::Init => client
                .kill_container(berth_api::KillContainerRequest {
                    id: container.berth_id.clone(),
                    signal: request.signal,
                    all: request.all,
                })
                .await
                .map(|_| ()),
            ProcessRef::Exec(_) => client
                .kill_process(berth_api::KillProcessRequest {
                    id: container.berth_id.clone(),
                    exec_id: request.exec_id.clone(),
                    signal: request.signal,
                })
                .await
                .map(|_| ()),
        };
        match killed {
            Ok(()) => Ok(Empty::new()),
            // containerd (and the CRI's StopContainer) read NOT_FOUND as "already finished",
            // which is what berthd's FAILED_PRECONDITION means for a stopped process.
            Err(status) if status.code() == tonic::Code::FailedPrecondition => Err(failed(
                ttrpc::Code::NOT_FOUND,
                format!("process already finished: {}", status.message()),
            )),
            Err(status) => Err(from_berthd("kill", &container, status)),
        }
    }

    async fn exec(&self, _ctx: &TtrpcContext, request: ExecProcessRequest) -> TtrpcResult<Empty> {
        let container = self.container(&request.id)?;
        let stdio = Stdio {
            stdin: request.stdin.clone(),
            stdout: request.stdout.clone(),
            stderr: request.stderr.clone(),
            terminal: request.terminal,
        };
        let process = Arc::new(Process::new(stdio.clone()));
        if !container.add_exec(&request.exec_id, process.clone()) {
            return Err(failed(
                ttrpc::Code::ALREADY_EXISTS,
                format!(
                    "process {} of container {} already exists",
                    request.exec_id, request.id
                ),
            ));
        }
        let attachment = match Attachment::open(
            &stdio,
            &container.bundle,
            &format!("exec-{}", request.exec_id),
            &container.namespace,
            &container.id,
        )
        .await
        {
            Ok(attachment) => attachment,
            Err(e) => {
                container.remove_exec(&request.exec_id);
                return Err(failed(ttrpc::Code::INVALID_ARGUMENT, e));
            }
        };
        let paths = attachment.paths().clone();
        let added = container
            .client
            .clone()
            .exec_process(berth_api::ExecProcessRequest {
                id: container.berth_id.clone(),
                exec_id: request.exec_id.clone(),
                process: request.spec.value.clone(),
                stdin_path: paths.stdin,
                stdout_path: paths.stdout,
                stderr_path: paths.stderr,
                console_socket: paths.console_socket,
                start: false,
            })
            .await;
        if let Err(status) = added {
            attachment.close().await;
            container.remove_exec(&request.exec_id);
            return Err(from_berthd(
                &format!("exec process {} in", request.exec_id),
                &container,
                status,
            ));
        }
        *process.attachment.lock().await = Some(attachment);
        Ok(Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        request: ResizePtyRequest,
    ) -> TtrpcResult<Empty> {
        let container = self.container(&request.id)?;
        let process = Self::process(&container, &request.exec_id)?;
        let attachment = process.get(&container).attachment.lock().await;
        attachment
            .as_ref()
            .ok_or_else(|| failed(ttrpc::Code::FAILED_PRECONDITION, "the process has no stdio"))?
            .resize(request.width, request.height)
            .map_err(|e| {
                failed(
                    ttrpc::Code::FAILED_PRECONDITION,
                    format!("container {}: {e}", request.id),
                )
            })?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, request: CloseIORequest) -> TtrpcResult<Empty> {
        let container = self.container(&request.id)?;
        let process = Self::process(&container, &request.exec_id)?;
        if request.stdin {
            if let Some(attachment) = process.get(&container).attachment.lock().await.as_mut() {
                attachment.close_stdin();
            }
        }
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, request: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let container = self.container(&request.id)?;
        container
            .client
            .clone()
            .update_resources(berth_api::UpdateResourcesRequest {
                id: container.berth_id.clone(),
                resources: request.resources.value.clone(),
            })
            .await
            .map_err(|status| from_berthd("update", &container, status))?;
        Ok(Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, request: WaitRequest) -> TtrpcResult<WaitResponse> {
        let container = self.container(&request.id)?;
        let process = Self::process(&container, &request.exec_id)?;
        let exit = process.get(&container).exited().await;
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        request: StateRequest,
    ) -> TtrpcResult<StateResponse> {
        let container = self.container(&request.id)?;
        let mut client = container.client.clone();
        let process_ref = Self::process(&container, &request.exec_id)?;
        let process = process_ref.get(&container);
        // Once the shim has told containerd of the exit (Wait answered, TaskExit published),
        // the process is STOPPED, whatever berthd says: berthd answers with the view it had
        // when the operation then in progress on the container began (the recording of
        // that very exit, a kill), which can still be RUNNING. containerd's client refuses
        // to delete a task that is not STOPPED, and `ctr run --rm` deletes the moment its
        // Wait returns.
        let exit = process.exit();
        let (status, pid) = match &process_ref {
            _ if exit.is_some() => (Status::STOPPED, 0),
            ProcessRef::Init => {
                let found = client
                    .get_container(berth_api::GetContainerRequest {
                        id: container.berth_id.clone(),
                    })
                    .await
                    .map_err(|status| from_berthd("state of", &container, status))?
                    .into_inner()
                    .container
                    .unwrap_or_default();
                (task_status(found.status()), found.pid)
            }
            ProcessRef::Exec(_) => {
                let found = client
                    .get_process(berth_api::GetProcessRequest {
                        id: container.berth_id.clone(),
                        exec_id: request.exec_id.clone(),
                    })
                    .await
                    .map_err(|status| {
                        from_berthd(
                            &format!("state of process {} of", request.exec_id),
                            &container,
                            status,
                        )
                    })?
                    .into_inner()
                    .process
                    .unwrap_or_default();
                (process_status(found.status()), found.pid)
            }
        };
        Ok(StateResponse {
            id: if request.exec_id.is_empty() {
                request.id.clone()
            } else {
                request.exec_id.clone()
            },
            bundle: container.bundle.to_string_lossy().into_owned(),
            pid: if pid == 0 { process.pid() } else { pid },
            status: status.into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: exit.map_or(0, |exit| exit.status),
            exited_at: MessageField::from_option(exit.map(|exit| timestamp(exit.at))),
            exec_id: request.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        request: StatsRequest,
    ) -> TtrpcResult<StatsResponse> {
        let container = self.container(&request.id)?;
        let stats = container
            .client
            .clone()
            .container_stats(berth_api::ContainerStatsRequest {
                id: container.berth_id.clone(),
            })
            .await
            .map_err(|status| from_berthd("stats of", &container, status))?
            .into_inner();
        Ok(StatsResponse {
            stats: MessageField::some(metrics::to_any(&stats, self.unified)),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        request: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        let task_pid = self
            .containers
            .lock()
            .unwrap()
            .get(&request.id)
            .map_or(0, |container| container.init.pid());
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _request: ShutdownRequest) -> TtrpcResult<Empty> {
        // A shim serving a pod's other containers stays, as the runc shim does.
        if self.containers.lock().unwrap().is_empty() {
            self.exit.signal();
        }
        Ok(Empty::new())
    }
}
