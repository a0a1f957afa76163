//! berthd's lifecycle events, relayed to containerd as its task events. One relay per task
//! reads berthd's WatchEvents for the task's berth container, so what berthd reports, a
//! pause through the berth CLI included, reaches containerd, and every exit status is
//! berthd's. When berthd goes away the relay reconnects, asks to resume after the last event
//! it saw, and then asks berthd for the state of each process it has no exit for: whatever
//! the resume could not replay (berthd restarted, or its buffer moved on) is caught up that
//! way.
use std::{sync::Arc, time::Duration};

use berth_api::{ContainerStatus, Event, EventType, ProcessStatus, WatchEventsRequest};
use containerd_shim::{
    protos::{
        events::task::{
            TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM,
            TaskPaused, TaskResumed, TaskStart,
        },
        protobuf::{MessageDyn, MessageField},
        topics,
    },
    publisher::RemotePublisher,
    Context,
};
use tonic::{Code, Streaming};

use crate::{
    berthd::Client,
    container::{timestamp, Container, Exit, Process},
};

/// Opens the event stream of `berth_id`, resuming after `after_sequence` of `instance`
/// when they are set. The subscription is live when this returns, so it is opened before
/// the calls whose events it must not miss.
pub async fn subscribe(
    client: &Client,
    berth_id: &str,
    after_sequence: u64,
    instance: &str,
) -> Result<Streaming<Event>, tonic::Status> {
    let request = WatchEventsRequest {
        id: berth_id.to_owned(),
        types: Vec::new(),
        after_sequence,
        instance: instance.to_owned(),
    };
    Ok(client.clone().watch_events(request).await?.into_inner())
}

pub struct Relay {
    container: Arc<Container>,
    publisher: Arc<RemotePublisher>,
    after_sequence: u64,
    instance: String,
}

/// Whether the relay goes on after an event.
enum Next {
    Continue,
    Deleted,
}

impl Relay {
    pub fn new(container: Arc<Container>, publisher: Arc<RemotePublisher>) -> Self {
        Self {
            container,
            publisher,
            after_sequence: 0,
            instance: String::new(),
        }
    }

    /// Relays until berthd reports the container deleted (or no longer knows it).
    pub async fn run(mut self, first: Streaming<Event>) {
        let mut stream = Some(first);
        let mut pause = RETRY_FIRST;
        loop {
            let mut events = match stream.take() {
                Some(events) => events,
                None => {
                    let subscribed = subscribe(
                        &self.container.client,
                        &self.container.berth_id,
                        self.after_sequence,
                        &self.instance,
                    )
                    .await;
                    match subscribed {
                        Ok(events) => {
                            log::info!("{}: events resumed from berthd", self.container.id);
                            if let Next::Deleted = self.catch_up().await {
                                return;
                            }
                            events
                        }
                        Err(status) => {
                            log::debug!("{}: berthd unreachable: {status}", self.container.id);
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(RETRY_MAX);
                            continue;
                        }
                    }
                }
            };
            pause = RETRY_FIRST;
            loop {
                match events.message().await {
                    Ok(Some(event)) => {
                        if let Next::Deleted = self.relay(event).await {
                            return;
                        }
                    }
                    Ok(None) | Err(_) => {
                        log::warn!(
                            "{}: the event stream from berthd ended; reconnecting",
                            self.container.id
                        );
                        break;
                    }
                }
            }
        }
    }

    async fn relay(&mut self, event: Event) -> Next {
        if event.r#type() != EventType::Lagged {
            self.after_sequence = event.sequence;
            self.instance.clone_from(&event.instance);
        }
        let container = &self.container;
        let id = container.id.clone();
        match event.r#type() {
            EventType::Created => {
                let stdio = &container.init.stdio;
                self.publish(
                    topics::TASK_CREATE_EVENT_TOPIC,
                    TaskCreate {
                        container_id: id,
                        bundle: container.bundle.to_string_lossy().into_owned(),
                        rootfs: container.rootfs.clone(),
                        io: MessageField::some(TaskIO {
                            stdin: stdio.stdin.clone(),
                            stdout: stdio.stdout.clone(),
                            stderr: stdio.stderr.clone(),
                            terminal: stdio.terminal,
                            ..Default::default()
                        }),
                        pid: container.init.pid(),
                        ..Default::default()
                    },
                )
                .await
            }
            EventType::Started => {
                self.publish(
                    topics::TASK_START_EVENT_TOPIC,
                    TaskStart {
                        container_id: id,
                        pid: container.init.pid(),
                        ..Default::default()
                    },
                )
                .await
            }
            EventType::Paused => {
                self.publish(
                    topics::TASK_PAUSED_EVENT_TOPIC,
                    TaskPaused {
                        container_id: id,
                        ..Default::default()
                    },
                )
                .await
            }
            EventType::Resumed => {
                self.publish(
                    topics::TASK_RESUMED_EVENT_TOPIC,
                    TaskResumed {
                        container_id: id,
                        ..Default::default()
                    },
                )
                .await
            }
            EventType::Oom => {
                self.publish(
                    topics::TASK_OOM_EVENT_TOPIC,
                    TaskOOM {
                        container_id: id,
                        ..Default::default()
                    },
                )
                .await
            }
            EventType::Exited => {
                self.init_exited(Exit::from_berth(event.exit_status.as_ref()))
                    .await
            }
            EventType::Deleted => {
                let exit = container.init.exit();
                self.publish(
                    topics::TASK_DELETE_EVENT_TOPIC,
                    TaskDelete {
                        container_id: id,
                        pid: container.init.pid(),
                        exit_status: exit.map_or(Exit::UNKNOWN_STATUS, |exit| exit.status),
                        exited_at: MessageField::from_option(exit.map(|exit| timestamp(exit.at))),
                        ..Default::default()
                    },
                )
                .await;
                return Next::Deleted;
            }
            EventType::ExecAdded => {
                self.publish(
                    topics::TASK_EXEC_ADDED_EVENT_TOPIC,
                    TaskExecAdded {
                        container_id: id,
                        exec_id: event.exec_id,
                        ..Default::default()
                    },
                )
                .await
            }
            EventType::ExecStarted => {
                if let Some(process) = container.exec(&event.exec_id) {
                    process.set_pid(event.pid);
                }
                self.publish(
                    topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                    TaskExecStarted {
                        container_id: id,
                        exec_id: event.exec_id,
                        pid: event.pid,
                        ..Default::default()
                    },
                )
                .await
            }
            EventType::ExecExited => {
                self.exec_exited(&event.exec_id, Exit::from_berth(event.exit_status.as_ref()))
                    .await
            }
            EventType::Lagged => return self.catch_up().await,
            EventType::Unspecified => {}
        }
        Next::Continue
    }

    /// Asks berthd for what the stream may have missed: the init's exit and each exec's.
    async fn catch_up(&self) -> Next {
        let container = &self.container;
        let mut client = container.client.clone();
        let berth_id = container.berth_id.clone();
        let mut next = Next::Continue;
        if container.init.exit().is_none() {
            let found = client
                .get_container(berth_api::GetContainerRequest {
                    id: berth_id.clone(),
                })
                .await;
            match found.map(|response| response.into_inner().container) {
                Ok(Some(found)) if found.status() == ContainerStatus::Stopped => {
                    let waited = client
                        .wait_container(berth_api::WaitContainerRequest {
                            id: berth_id.clone(),
                        })
                        .await;
                    if let Ok(waited) = waited {
                        let waited = waited.into_inner();
                        self.init_exited(Exit::from_berth(waited.exit_status.as_ref()))
                            .await;
                    }
                }
                Ok(_) => {}
                // Gone from berthd, with whatever it knew of the exit.
                Err(status) if status.code() == Code::NotFound => {
                    self.init_exited(Exit::from_berth(None)).await;
                    next = Next::Deleted;
                }
                Err(status) => log::debug!("{}: cannot catch up: {status}", container.id),
            }
        }
        for (exec_id, process) in container.execs() {
            if process.exit().is_some() || process.pid() == 0 {
                continue;
            }
            let found = client
                .get_process(berth_api::GetProcessRequest {
                    id: berth_id.clone(),
                    exec_id: exec_id.clone(),
                })
                .await;
            match found.map(|response| response.into_inner().process) {
                Ok(Some(found)) if found.status() == ProcessStatus::Stopped => {
                    self.exec_exited(&exec_id, Exit::from_berth(found.exit_status.as_ref()))
                        .await
                }
                Ok(_) => {}
                Err(status) if status.code() == Code::NotFound => {
                    self.exec_exited(&exec_id, Exit::from_berth(None)).await
                }
                Err(status) => {
                    log::debug!("{}: cannot catch up on {exec_id}: {status}", container.id)
                }
            }
        }
        next
    }

    async fn init_exited(&self, exit: Exit) {
        let container = &self.container;
        if container.init.exit().is_some() {
            return;
        }
        drained(&container.init).await;
        if container.init.record_exit(exit) {
            self.publish_exit(&container.id, container.init.pid(), exit)
                .await;
        }
    }

    async fn exec_exited(&self, exec_id: &str, exit: Exit) {
        let Some(process) = self.container.exec(exec_id) else {
            return;
        };
        if process.exit().is_some() {
            return;
        }
        drained(&process).await;
        if process.record_exit(exit) {
            self.publish_exit(exec_id, process.pid(), exit).await;
        }
    }

    async fn publish_exit(&self, process_id: &str, pid: u32, exit: Exit) {
        self.publish(
            topics::TASK_EXIT_EVENT_TOPIC,
            TaskExit {
                container_id: self.container.id.clone(),
                id: process_id.to_owned(),
                pid,
                exit_status: exit.status,
                exited_at: MessageField::some(timestamp(exit.at)),
                ..Default::default()
            },
        )
        .await
    }

    async fn publish(&self, topic: &str, event: impl MessageDyn) {
        let published = self
            .publisher
            .publish(
                Context::default(),
                topic,
                &self.container.namespace,
                Box::new(event),
            )
            .await;
        if let Err(e) = published {
            log::warn!("{}: cannot publish {topic}: {e}", self.container.id);
        }
    }
}

/// Lets the client read the process's last output before its exit is told (see
/// `Attachment::wait_drained`).
async fn drained(process: &Process) {
    if let Some(attachment) = process.attachment.lock().await.as_ref() {
        attachment.wait_drained(DRAIN_LIMIT).await;
    }
}

/// How long an exit waits for the client to read the output left in the FIFOs.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);

/// The first pause before reconnecting to berthd, doubled after each failure up to the
/// longest.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
