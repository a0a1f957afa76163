//! Exec processes: ExecProcess records one in state.json, StartProcess runs it through the
//! helper in its exec mode (the same sealed copy of berthd create uses), KillProcess
//! signals it through its pidfd, DeleteProcess forgets it once it has exited.
use std::{sync::Arc, time::SystemTime};

use oci_spec::runtime::Process;
use tokio::sync::oneshot;

use super::{exit_record, kill::check_signal, Container, Runtime, Status};
use crate::{
    blocking,
    error::{Error, IoContext, Result},
    helper::{ExecConfig, Report, Task},
    id::ExecId,
    process::{ExitStatus, InitProcess, Pidfd},
    spec_support,
    state::{self, ExecRecord, ExitRecord},
    stdio::{check_console, open_stdio, StdioError},
};

/// How many exec records a container keeps. Kubernetes runs exec probes every few seconds
/// and containerd deletes each record once it has read the exit, so records stay few; for a
/// client that never deletes them, the oldest exited record makes room for each new one,
/// and only records of processes that have not exited can fill the table.
pub const MAX_RECORDS: usize = 128;

pub struct ExecRequest {
    pub exec_id: ExecId,
    pub process: Process,
    pub stdio: state::Stdio,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecState {
    Created,
    Running,
    Stopped,
}

/// An exec process as callers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecSnapshot {
    pub exec_id: String,
    pub state: ExecState,
    pub pid: Option<i32>,
    pub exit: Option<ExitRecord>,
    /// It exited while berthd could not read its status.
    pub exit_unknown: bool,
}

impl ExecSnapshot {
    fn of(exec_id: &str, record: &ExecRecord) -> Self {
        let state = match (record.started, record.has_exited()) {
            (_, true) => ExecState::Stopped,
            (None, false) => ExecState::Created,
            (Some(_), false) => ExecState::Running,
        };
        Self {
            exec_id: exec_id.to_owned(),
            state,
            pid: record.started.map(|started| started.pid),
            exit: record.exit.clone(),
            exit_unknown: record.exit_unknown,
        }
    }
}

/// A running exec process, for the registry to watch until it exits.
pub struct Started {
    pub exec_id: String,
    pub process: InitProcess,
    pub pidfd: Option<Arc<Pidfd>>,
    /// Its status to come when berthd is its parent; `None` for one adopted at load, whose
    /// parent was an earlier berthd.
    pub status: Option<oneshot::Receiver<ExitStatus>>,
}

impl Started {
    /// Returns once the process has exited: with its status when berthd reaps it.
    pub async fn exited(self) -> Option<ExitRecord> {
        match (self.status, self.pidfd) {
            (Some(status), _) => status.await.ok().map(exit_record),
            (None, Some(pidfd)) => {
                pidfd.exited().await;
                None
            }
            (None, None) => None,
        }
    }
}

/// A terminal comes with a console socket, and with no other stream. The socket itself is
/// checked when the process starts: containerd makes it only then.
fn check_stdio(stdio: &state::Stdio, process: &Process) -> Result<()> {
    let terminal = process.terminal().unwrap_or(false);
    match (terminal, &stdio.console_socket) {
        (true, None) => Err(StdioError::TerminalWithoutSocket.into()),
        (false, Some(_)) => Err(StdioError::SocketWithoutTerminal.into()),
        _ => Ok(()),
    }
}

impl Container {
    fn check_can_exec(&self) -> Result<()> {
        match self.status() {
            Status::Created | Status::Running => Ok(()),
            status => Err(Error::IncorrectStatus {
                id: self.id.to_string(),
                action: "exec in",
                status,
            }),
        }
    }

    fn exec_record(&self, exec_id: &ExecId) -> Result<&ExecRecord> {
        self.state()
            .and_then(|state| state.execs.get(exec_id.as_str()))
            .ok_or_else(|| Error::ExecNotFound {
                id: self.id.to_string(),
                exec_id: exec_id.to_string(),
            })
    }

    fn incorrect_exec_state(
        &self,
        exec_id: &ExecId,
        action: &'static str,
        state: &'static str,
    ) -> Error {
        Error::ExecIncorrectState {
            id: self.id.to_string(),
            exec_id: exec_id.to_string(),
            action,
            state,
        }
    }

    /// Records an exec process, to be run by `start_exec`.
    pub async fn add_exec(&mut self, request: ExecRequest) -> Result<()> {
        self.check_can_exec()?;
        spec_support::check_exec_process(&request.process)?;
        check_stdio(&request.stdio, &request.process)?;
        let execs = &self.state().expect("checked by check_can_exec").execs;
        if execs.contains_key(request.exec_id.as_str()) {
            return Err(Error::ExecExists {
                id: self.id.to_string(),
                exec_id: request.exec_id.to_string(),
            });
        }
        let evicted = if execs.len() >= MAX_RECORDS {
            let oldest_exited = execs
                .iter()
                .filter(|(_, record)| record.has_exited())
                .min_by_key(|(_, record)| record.exit.as_ref().map(|exit| exit.exited_at))
                .map(|(exec_id, _)| exec_id.clone());
            Some(oldest_exited.ok_or_else(|| Error::TooManyExecs {
                id: self.id.to_string(),
                limit: MAX_RECORDS,
            })?)
        } else {
            None
        };
        let record = ExecRecord {
            process: request.process,
            stdio: request.stdio,
            added: SystemTime::now(),
            started: None,
            exit: None,
            exit_unknown: false,
        };
        self.update(|state| {
            if let Some(evicted) = &evicted {
                state.execs.remove(evicted);
            }
            state.execs.insert(request.exec_id.to_string(), record);
        })
        .await
    }

    /// Runs a recorded exec process. Once its pid is known it is returned to be watched,
    /// even when the process then failed before its exec (it exits at once, with 127).
    pub async fn start_exec(
        &mut self,
        runtime: &Runtime,
        exec_id: &ExecId,
    ) -> (Option<Started>, Result<i32>) {
        let mut channel = match self.prepare_exec_helper(runtime, exec_id).await {
            Ok(channel) => channel,
            Err(error) => return (None, Err(error)),
        };
        let process = match channel.receive("the exec process's pid").await {
            Ok(Report::InitPid { pid, start_time }) => InitProcess { pid, start_time },
            Ok(_) => return (None, Err(channel.unexpected("the exec process's pid"))),
            Err(error) => return (None, Err(error)),
        };
        let status = runtime.reaper.watch(&process);
        let pidfd = Pidfd::open(&process).ok().flatten().map(Arc::new);
        if let Some(pidfd) = &pidfd {
            self.exec_pidfds.insert(exec_id.to_string(), pidfd.clone());
        }
        let recorded = self
            .update(|state| {
                if let Some(record) = state.execs.get_mut(exec_id.as_str()) {
                    record.started = Some(process);
                }
            })
            .await;
        let started = Started {
            exec_id: exec_id.to_string(),
            process,
            pidfd,
            status: Some(status),
        };
        let outcome = match recorded {
            Ok(()) => channel.executed().await.map(|()| process.pid),
            Err(error) => Err(error),
        };
        (Some(started), outcome)
    }

    /// Checks, opens the process's stdio, spawns the helper and sends it its task.
    async fn prepare_exec_helper(
        &mut self,
        runtime: &Runtime,
        exec_id: &ExecId,
    ) -> Result<super::create::HelperChannel> {
        self.check_can_exec()?;
        let record = self.exec_record(exec_id)?.clone();
        if record.started.is_some() {
            return Err(self.incorrect_exec_state(exec_id, "start", "was started already"));
        }
        let init = self
            .state()
            .and_then(|state| state.init)
            .expect("a created or running container has an init");
        let (stdio, dir) = (record.stdio.clone(), self.dir.clone());
        let terminal = record.process.terminal().unwrap_or(false);
        let (stdin, stdout, stderr, seccomp) = blocking::run(move || -> Result<_> {
            let (stdin, stdout, stderr) = (
                stdio.stdin.as_deref(),
                stdio.stdout.as_deref(),
                stdio.stderr.as_deref(),
            );
            check_console(
                terminal,
                stdio.console_socket.as_deref(),
                [stdin, stdout, stderr],
            )?;
            let (stdin, stdout, stderr) = open_stdio(stdin, stdout, stderr)?;
            Ok((stdin, stdout, stderr, dir.load_seccomp()?))
        })
        .await?;
        let (_, mut channel) = self
            .spawn_helper(runtime, stdin, stdout, stderr, Some(exec_id.as_str()))
            .await?;
        channel
            .send(&Task::Exec(Box::new(ExecConfig {
                init,
                process: record.process,
                seccomp,
                console_socket: record.stdio.console_socket,
            })))
            .await?;
        Ok(channel)
    }

    pub fn exec_snapshot(&self, exec_id: &ExecId) -> Result<ExecSnapshot> {
        Ok(ExecSnapshot::of(
            exec_id.as_str(),
            self.exec_record(exec_id)?,
        ))
    }

    /// Every exec process berthd keeps a record of, by exec id.
    pub fn exec_snapshots(&self) -> Vec<ExecSnapshot> {
        self.state()
            .map(|state| {
                state
                    .execs
                    .iter()
                    .map(|(exec_id, record)| ExecSnapshot::of(exec_id, record))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Through the pidfd; a process berthd could not open one for is signalled by pid
    /// only while its start time says it is still the same process.
    pub fn kill_exec(&self, exec_id: &ExecId, signal: u32) -> Result<()> {
        check_signal(signal)?;
        let record = self.exec_record(exec_id)?;
        let Some(process) = record.started.filter(|_| !record.has_exited()) else {
            return Err(self.incorrect_exec_state(exec_id, "signal", "is not running"));
        };
        let context = || {
            format!(
                "signal {signal} to exec process {exec_id} of container {}",
                self.id
            )
        };
        match self.exec_pidfds.get(exec_id.as_str()) {
            Some(pidfd) => pidfd.signal(signal as i32).context(context),
            None => {
                crate::process::signal_checked(process.pid, signal as i32, || process.is_alive())
                    .context(context)
            }
        }
    }

    /// Forgets an exec process that exited or never started.
    pub async fn delete_exec(&mut self, exec_id: &ExecId) -> Result<ExecSnapshot> {
        let snapshot = self.exec_snapshot(exec_id)?;
        if snapshot.state == ExecState::Running {
            return Err(self.incorrect_exec_state(exec_id, "delete", "is running"));
        }
        self.update(|state| {
            state.execs.remove(exec_id.as_str());
        })
        .await?;
        self.exec_pidfds.remove(exec_id.as_str());
        Ok(snapshot)
    }

    /// An exec process exited: with its status when berthd reaped it.
    pub async fn record_exec_exit(
        &mut self,
        exec_id: &str,
        exit: Option<ExitRecord>,
    ) -> Result<()> {
        self.exec_pidfds.remove(exec_id);
        self.update(|state| {
            if let Some(record) = state.execs.get_mut(exec_id) {
                record.exit_unknown = exit.is_none();
                record.exit = exit;
            }
        })
        .await
    }

    /// At load: the exec processes that were running under an earlier berthd. Those still
    /// alive are returned to be watched (their statuses will be lost with their parent);
    /// those gone are recorded as exited with an unknown status.
    pub fn adopt_execs(&mut self) -> Vec<Started> {
        let running: Vec<(String, InitProcess)> = self
            .state()
            .map(|state| {
                state
                    .execs
                    .iter()
                    .filter(|(_, record)| !record.has_exited())
                    .filter_map(|(exec_id, record)| Some((exec_id.clone(), record.started?)))
                    .collect()
            })
            .unwrap_or_default();
        let mut adopted = Vec::new();
        let mut gone = Vec::new();
        for (exec_id, process) in running {
            match Pidfd::open(&process) {
                Ok(Some(pidfd)) if !pidfd.has_exited() => {
                    let pidfd = Arc::new(pidfd);
                    self.exec_pidfds.insert(exec_id.clone(), pidfd.clone());
                    adopted.push(Started {
                        exec_id,
                        process,
                        pidfd: Some(pidfd),
                        status: None,
                    });
                }
                _ => gone.push(exec_id),
            }
        }
        if !gone.is_empty() {
            if let super::Record::Valid(state) = &mut self.record {
                for exec_id in &gone {
                    if let Some(record) = state.execs.get_mut(exec_id) {
                        record.exit_unknown = true;
                    }
                }
                if let Err(e) = self.dir.save(state) {
                    tracing::warn!(id = %self.id, error = %e, "cannot record exec processes that exited while berthd was away");
                }
            }
        }
        adopted
    }
}
