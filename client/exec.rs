//! `berth exec`: a process in a running container, as `runc exec` and `docker exec` run
//! one. The process starts from the container's own (its config.json's `process`: env,
//! user, capabilities, cwd, noNewPrivileges, ...) with the given command and overrides.
//! Attached (the default), the CLI is its stdio until it exits and exits with its code;
//! detached (`-d`), the CLI prints its pid and returns.
use anyhow::{bail, Context};
use berth_api::{self as proto, container_service_client::ContainerServiceClient};
use tonic::transport::Channel;

use crate::attach::{self, Attachment};

#[derive(clap::Args)]
pub struct Args {
    /// Give the process a terminal (the CLI proxies yours in raw mode).
    #[arg(long, short = 't')]
    tty: bool,
    /// Forward the CLI's stdin to the process.
    #[arg(long, short)]
    interactive: bool,
    /// Start the process and print its pid; its stdio is /dev/null.
    #[arg(long, short, conflicts_with_all = ["tty", "interactive"])]
    detach: bool,
    /// UID[:GID] inside the container, instead of the container's user.
    #[arg(long, short)]
    user: Option<String>,
    /// K=V added to (or replacing in) the container's environment; repeatable.
    #[arg(long = "env", short, value_name = "K=V")]
    env: Vec<String>,
    /// The working directory inside the container, instead of the container's.
    #[arg(long)]
    cwd: Option<String>,
    /// The exec id (unique in the container); one is made up when not given.
    #[arg(long)]
    exec_id: Option<String>,
    id: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

impl Args {
    /// Attaching needs berthd to open the CLI's FIFOs by path: only on its own host.
    pub fn check_target(&self, target: &crate::Target) -> anyhow::Result<()> {
        if target.address.is_some() && !self.detach {
            bail!("berth exec without -d needs berthd's Unix socket on this host: over TCP, run with -d");
        }
        Ok(())
    }
}

/// An exec process, as an attached CLI follows it.
struct Exec {
    client: ContainerServiceClient<Channel>,
    id: String,
    exec_id: String,
}

impl attach::Process for Exec {
    async fn wait(&self) -> anyhow::Result<u8> {
        loop {
            let request = proto::WaitProcessRequest {
                id: self.id.clone(),
                exec_id: self.exec_id.clone(),
            };
            match self.client.clone().wait_process(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    if response.exit_unknown {
                        eprintln!("berth: exec process {} exited while berthd could not see it; its exit code is unknown", self.exec_id);
                    }
                    let code = response.exit_status.map_or(255, |exit| exit.code);
                    return Ok(u8::try_from(code).unwrap_or(255));
                }
                Err(status) if status.code() == tonic::Code::Cancelled => continue,
                Err(status) => return Err(status.into()),
            }
        }
    }

    async fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let request = proto::KillProcessRequest {
            id: self.id.clone(),
            exec_id: self.exec_id.clone(),
            signal: signal as u32,
        };
        self.client.clone().kill_process(request).await?;
        Ok(())
    }
}

pub async fn exec(client: &mut ContainerServiceClient<Channel>, args: Args) -> anyhow::Result<u8> {
    let process = process_of(client, &args).await?;
    let exec_id = args.exec_id.clone().unwrap_or_else(made_up_exec_id);
    let mut request = proto::ExecProcessRequest {
        id: args.id.clone(),
        exec_id: exec_id.clone(),
        process: serde_json::to_vec(&process)?,
        ..Default::default()
    };
    if args.detach {
        request.start = true;
        let pid = client.exec_process(request).await?.into_inner().pid;
        println!("{pid}");
        return Ok(0);
    }
    let attachment = Attachment::new(args.tty, args.interactive)?;
    let paths = attachment.paths();
    request.stdin_path = paths.stdin;
    request.stdout_path = paths.stdout;
    request.stderr_path = paths.stderr;
    request.console_socket = paths.console_socket;
    // Started at once: an exec process's terminal is sent while it starts, sized from the
    // user's by process.consoleSize.
    request.start = true;
    let exec = Exec {
        client: client.clone(),
        id: args.id.clone(),
        exec_id: exec_id.clone(),
    };
    let followed = async {
        client.exec_process(request).await?;
        attachment.connect()?.follow(&exec).await
    }
    .await;
    // The record has served its purpose once the CLI has the exit (containerd deletes it
    // too); one that fails to go is evicted later, so its failure is not the user's.
    let _ = client
        .delete_process(proto::DeleteProcessRequest {
            id: args.id,
            exec_id,
        })
        .await;
    followed
}

/// The rows and columns of the terminal the CLI runs on, if it runs on one.
fn user_terminal_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize through a live pointer.
    let rc = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_row > 0).then_some((size.ws_row, size.ws_col))
}

/// Unique enough within one container: the CLI's pid and the time.
fn made_up_exec_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("berth-exec-{}-{nanos}", std::process::id())
}

/// The container's process from its config.json, with the command and overrides.
async fn process_of(
    client: &mut ContainerServiceClient<Channel>,
    args: &Args,
) -> anyhow::Result<serde_json::Value> {
    let container = client
        .get_container(proto::GetContainerRequest {
            id: args.id.clone(),
        })
        .await?
        .into_inner()
        .container
        .context("berthd sent no container")?;
    let config_path = std::path::Path::new(&container.bundle).join("config.json");
    let text = std::fs::read(&config_path)
        .with_context(|| format!("read the container's {}", config_path.display()))?;
    let config: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("parse {}", config_path.display()))?;
    let mut process = config["process"].clone();
    process["args"] = args
        .command
        .iter()
        .cloned()
        .map(serde_json::Value::from)
        .collect();
    process["terminal"] = args.tty.into();
    if let Some((height, width)) = args.tty.then(user_terminal_size).flatten() {
        process["consoleSize"] = serde_json::json!({"height": height, "width": width});
    }
    if let Some(cwd) = &args.cwd {
        process["cwd"] = cwd.clone().into();
    }
    if let Some(user) = &args.user {
        let (uid, gid) = match user.split_once(':') {
            Some((uid, gid)) => (uid, Some(gid)),
            None => (user.as_str(), None),
        };
        let number = |text: &str| {
            text.parse::<u32>()
                .with_context(|| format!("--user {user}: {text} is not a number"))
        };
        process["user"]["uid"] = number(uid)?.into();
        if let Some(gid) = gid {
            process["user"]["gid"] = number(gid)?.into();
        }
        // The container's user's groups are not this user's.
        process["user"]
            .as_object_mut()
            .context("process.user is not an object")?
            .remove("additionalGids");
    }
    let mut env: Vec<String> = process["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for entry in &args.env {
        let Some((key, _)) = entry.split_once('=') else {
            bail!("--env {entry}: expected K=V");
        };
        env.retain(|existing| !existing.starts_with(&format!("{key}=")));
        env.push(entry.clone());
    }
    process["env"] = env.into_iter().map(serde_json::Value::from).collect();
    Ok(process)
}
