//! `berth run`: create and start, as `runc run` does. Attached (the default), the CLI is
//! the container's stdio until its init exits, exits with its code, and deletes the
//! container; detached (`-d`), it leaves the container running.
use std::path::PathBuf;

use anyhow::{bail, Context};
use berth_api::{self as proto, container_service_client::ContainerServiceClient};
use tonic::transport::Channel;

use crate::attach::{self, Attachment};

#[derive(clap::Args)]
pub struct Args {
    /// Directory holding config.json.
    #[arg(long, short, default_value = ".")]
    bundle: PathBuf,
    /// Insist on a terminal: fail unless config.json sets `process.terminal` (a bundle
    /// that sets it gets one anyway, as with `runc run`).
    #[arg(long, short = 't')]
    tty: bool,
    /// Start the container and exit, leaving it running (delete it later).
    #[arg(long, short)]
    detach: bool,
    /// With -d: read the container's stdin from this file or FIFO (default /dev/null).
    #[arg(long, requires = "detach")]
    stdin: Option<PathBuf>,
    /// With -d: append the container's stdout to this file (default /dev/null).
    #[arg(long, requires = "detach")]
    stdout: Option<PathBuf>,
    /// With -d: append the container's stderr to this file (default /dev/null).
    #[arg(long, requires = "detach")]
    stderr: Option<PathBuf>,
    /// With -d and a terminal: the Unix socket its master is sent to.
    #[arg(long, requires = "detach")]
    console_socket: Option<PathBuf>,
    id: String,
}

impl Args {
    /// Attaching needs berthd to open the CLI's FIFOs by path: only on its own host.
    pub fn check_target(&self, target: &crate::Target) -> anyhow::Result<()> {
        if target.address.is_some() && !self.detach {
            bail!(
                "berth run without -d needs berthd's Unix socket on this host: over TCP, \
                 run with -d (and paths on berthd's host, if any)"
            );
        }
        Ok(())
    }
}

/// The container's init, as an attached CLI follows it.
struct Init {
    client: ContainerServiceClient<Channel>,
    id: String,
}

impl attach::Process for Init {
    async fn wait(&self) -> anyhow::Result<u8> {
        crate::wait(&mut self.client.clone(), self.id.clone()).await
    }

    async fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let request = proto::KillContainerRequest {
            id: self.id.clone(),
            signal: signal as u32,
            all: false,
        };
        self.client.clone().kill_container(request).await?;
        Ok(())
    }
}

pub async fn run(client: &mut ContainerServiceClient<Channel>, args: Args) -> anyhow::Result<u8> {
    let bundle = std::path::absolute(&args.bundle)
        .with_context(|| format!("bundle {}", args.bundle.display()))?;
    let mut request = proto::CreateContainerRequest {
        id: args.id.clone(),
        bundle: bundle.to_string_lossy().into_owned(),
        ..Default::default()
    };
    if args.detach {
        request.stdin_path = crate::path_text(args.stdin)?;
        request.stdout_path = crate::path_text(args.stdout)?;
        request.stderr_path = crate::path_text(args.stderr)?;
        request.console_socket = crate::path_text(args.console_socket)?;
        client.create_container(request).await?;
        return match start(client, &args.id).await {
            Ok(()) => Ok(0),
            Err(error) => Err(delete_after(client, &args.id, error).await),
        };
    }

    let terminal = wants_terminal(&bundle)?;
    if args.tty && !terminal {
        bail!(
            "-t: {}/config.json does not set process.terminal to true",
            bundle.display()
        );
    }
    // As `runc run`: stdin is always the container's.
    let attachment = Attachment::new(terminal, true)?;
    let paths = attachment.paths();
    request.stdin_path = paths.stdin;
    request.stdout_path = paths.stdout;
    request.stderr_path = paths.stderr;
    request.console_socket = paths.console_socket;
    client.create_container(request).await?;
    let init = Init {
        client: client.clone(),
        id: args.id.clone(),
    };
    let followed = async {
        let attached = attachment.connect()?;
        start(client, &args.id).await?;
        attached.follow(&init).await
    }
    .await;
    // As `runc run`: the container goes with the end of its init, or with the CLI's failure.
    match followed {
        Ok(code) => {
            delete(client, &args.id).await?;
            Ok(code)
        }
        Err(error) => Err(delete_after(client, &args.id, error).await),
    }
}

async fn start(client: &mut ContainerServiceClient<Channel>, id: &str) -> anyhow::Result<()> {
    client
        .start_container(proto::StartContainerRequest { id: id.into() })
        .await?;
    Ok(())
}

/// Force-deletes the container after `error`, which is returned, with the delete's own
/// failure added when it has one.
async fn delete_after(
    client: &mut ContainerServiceClient<Channel>,
    id: &str,
    error: anyhow::Error,
) -> anyhow::Error {
    match delete(client, id).await {
        Ok(()) => error,
        Err(delete) => anyhow::anyhow!("{error:#}; deleting {id} failed too: {delete:#}"),
    }
}

async fn delete(client: &mut ContainerServiceClient<Channel>, id: &str) -> anyhow::Result<()> {
    let response = client
        .delete_container(proto::DeleteContainerRequest {
            id: id.into(),
            force: true,
        })
        .await?
        .into_inner();
    for warning in response.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// Whether the bundle's config.json asks for a terminal: the CLI must then receive it.
fn wants_terminal(bundle: &std::path::Path) -> anyhow::Result<bool> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let config: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("parse {}", path.display()))?;
    Ok(config["process"]["terminal"].as_bool().unwrap_or(false))
}
