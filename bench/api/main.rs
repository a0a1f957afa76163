//! berth-bench: the Rust client bench/run.sh times berthd's API with, and its start-up.
//!
//! `api` drives containers through their life cycle on one open connection, so that each
//! figure is berthd's work plus one round trip, with no process start-up or connection
//! set-up in it; `ready` polls a socket until berthd answers SERVING, finer-grained than
//! starting a `berth health` process per poll. Both print JSON on stdout.
use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use berth_api::{self as proto, container_service_client::ContainerServiceClient};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tonic::{
    transport::{Channel, Endpoint},
    Code,
};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

#[derive(Parser)]
#[command(name = "berth-bench", about = "Time berthd's API from a Rust client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per container, one after another on one connection: CreateContainer, GetContainer,
    /// StartContainer, DeleteContainer(force); then ListContainers on the emptied registry.
    Api(ApiArgs),
    /// Print "polling", then poll the socket until the health service answers SERVING and
    /// print the CLOCK_MONOTONIC time of that answer (the caller notes when it exec'd
    /// berthd on the same clock).
    Ready {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        timeout: Duration,
    },
}

#[derive(clap::Args)]
struct ApiArgs {
    #[arg(long)]
    socket: PathBuf,
    /// berthd's state root: a container's directory in it must be gone when its delete
    /// answers.
    #[arg(long)]
    root: PathBuf,
    /// The config.json every container's bundle is made from, with linux.cgroupsPath set
    /// to /CGROUP_PARENT/ID.
    #[arg(long)]
    template: PathBuf,
    /// Where the bundles are written, one directory per container.
    #[arg(long)]
    bundles: PathBuf,
    #[arg(long)]
    cgroup_parent: String,
    /// Container ids are this followed by a number.
    #[arg(long)]
    prefix: String,
    /// Timed containers (and ListContainers calls).
    #[arg(long, default_value_t = 30)]
    n: usize,
    /// Untimed life cycles first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Api(args) => {
            let report = api(&args).await?;
            println!("{report}");
        }
        Command::Ready { socket, timeout } => {
            println!("polling");
            std::io::stdout().flush()?;
            let attempts = wait_serving(&socket, timeout).await?;
            println!(
                "{}",
                json!({ "ready_monotonic_s": monotonic_seconds()?, "attempts": attempts })
            );
        }
    }
    Ok(())
}

/// CLOCK_MONOTONIC, the clock of python's time.monotonic(): std's Instant reads it but
/// does not show its value.
fn monotonic_seconds() -> anyhow::Result<f64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime");
    }
    Ok(now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9)
}

fn endpoint(socket: &Path) -> anyhow::Result<Endpoint> {
    Endpoint::from_shared(format!("unix:{}", socket.display())).context("socket path")
}

/// Attempts until SERVING. Between failed ones it sleeps 200 µs: short beside any start-up
/// worth timing, long enough to leave the CPU to the berthd being timed.
async fn wait_serving(socket: &Path, timeout: Duration) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        if let Ok(channel) = endpoint(socket)?.connect().await {
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if answer.is_ok_and(|reply| reply.get_ref().status() == ServingStatus::Serving) {
                return Ok(attempts);
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "berthd at {} did not serve within {timeout:?}",
                socket.display()
            );
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// The samples (ms) and whatever went wrong; a failed step is recorded and its container
/// force-deleted, and the run goes on.
#[derive(Default)]
struct Record {
    /// Off during the warm-up.
    timing: bool,
    samples: BTreeMap<&'static str, Vec<f64>>,
    failures: Vec<Value>,
}

impl Record {
    fn sample(&mut self, what: &'static str, started: Instant) {
        if !self.timing {
            return;
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.samples.entry(what).or_default().push(ms);
    }

    fn fail(&mut self, what: &str, id: &str, error: impl std::fmt::Display) {
        eprintln!("berth-bench: {what} {id}: {error}");
        self.failures
            .push(json!({ "what": what, "id": id, "error": error.to_string() }));
    }
}

async fn api(args: &ApiArgs) -> anyhow::Result<Value> {
    let template: Value = serde_json::from_slice(
        &std::fs::read(&args.template)
            .with_context(|| format!("read {}", args.template.display()))?,
    )
    .with_context(|| format!("parse {}", args.template.display()))?;
    let channel = endpoint(&args.socket)?
        .connect()
        .await
        .with_context(|| format!("connect to {}", args.socket.display()))?;
    let mut client = ContainerServiceClient::new(channel);
    let hierarchies = cgroup_hierarchies()?;
    let mut record = Record::default();
    for i in 0..args.warmup + args.n {
        record.timing = i >= args.warmup;
        let id = format!("{}{i}", args.prefix);
        let bundle = write_bundle(&template, &args.bundles, &args.cgroup_parent, &id)?;
        let checks = Checks {
            root: &args.root,
            hierarchies: &hierarchies,
            cgroup: format!("{}/{id}", args.cgroup_parent.trim_matches('/')),
        };
        if let Err(step) = life_cycle(&mut client, &id, &bundle, &checks, &mut record).await {
            record.fail(step.what, &id, step.error);
            if let Err(e) = client
                .delete_container(proto::DeleteContainerRequest {
                    id: id.clone(),
                    force: true,
                })
                .await
            {
                if e.code() != Code::NotFound {
                    record.fail("cleanup delete --force", &id, e.message());
                }
            }
        }
    }
    for _ in 0..args.n {
        let started = Instant::now();
        match client
            .list_containers(proto::ListContainersRequest::default())
            .await
        {
            Ok(reply) => {
                record.sample("list_empty", started);
                let left = reply.get_ref().containers.len();
                if left != 0 {
                    record.fail("ListContainers", "-", format!("{left} containers, not 0"));
                }
            }
            Err(e) => record.fail("ListContainers", "-", e.message()),
        }
    }
    Ok(json!({ "n": args.n, "samples_ms": record.samples, "failures": record.failures }))
}

/// What must hold once a delete has answered: no state directory, no cgroup directory.
struct Checks<'a> {
    root: &'a Path,
    hierarchies: &'a [PathBuf],
    cgroup: String,
}

struct StepError {
    what: &'static str,
    error: String,
}

fn step<T>(what: &'static str, result: Result<T, tonic::Status>) -> Result<T, StepError> {
    result.map_err(|status| StepError {
        what,
        error: format!("{:?}: {}", status.code(), status.message()),
    })
}

fn expect(what: &'static str, ok: bool, error: impl FnOnce() -> String) -> Result<(), StepError> {
    if ok {
        Ok(())
    } else {
        Err(StepError {
            what,
            error: error(),
        })
    }
}

fn status_of(container: Option<&proto::Container>) -> proto::ContainerStatus {
    container.map_or(proto::ContainerStatus::Unspecified, |c| c.status())
}

async fn life_cycle(
    client: &mut ContainerServiceClient<Channel>,
    id: &str,
    bundle: &Path,
    checks: &Checks<'_>,
    record: &mut Record,
) -> Result<(), StepError> {
    use proto::ContainerStatus::{Created, Running};
    let started = Instant::now();
    let reply = step(
        "CreateContainer",
        client
            .create_container(proto::CreateContainerRequest {
                id: id.to_owned(),
                bundle: bundle.to_string_lossy().into_owned(),
                ..Default::default()
            })
            .await,
    )?;
    record.sample("create", started);
    let status = status_of(reply.get_ref().container.as_ref());
    expect("CreateContainer", status == Created, || {
        format!("status {status:?}")
    })?;

    let started = Instant::now();
    let reply = step(
        "GetContainer",
        client
            .get_container(proto::GetContainerRequest { id: id.to_owned() })
            .await,
    )?;
    record.sample("get", started);
    let status = status_of(reply.get_ref().container.as_ref());
    expect("GetContainer", status == Created, || {
        format!("status {status:?}")
    })?;

    let started = Instant::now();
    let reply = step(
        "StartContainer",
        client
            .start_container(proto::StartContainerRequest { id: id.to_owned() })
            .await,
    )?;
    record.sample("start", started);
    let status = status_of(reply.get_ref().container.as_ref());
    expect("StartContainer", status == Running, || {
        format!("status {status:?}")
    })?;

    let started = Instant::now();
    step(
        "DeleteContainer(force)",
        client
            .delete_container(proto::DeleteContainerRequest {
                id: id.to_owned(),
                force: true,
            })
            .await,
    )?;
    record.sample("delete_force", started);
    let gone = client
        .get_container(proto::GetContainerRequest { id: id.to_owned() })
        .await;
    expect(
        "gone after DeleteContainer",
        matches!(&gone, Err(e) if e.code() == Code::NotFound),
        || format!("GetContainer answered {gone:?}"),
    )?;
    let state_dir = checks.root.join(id);
    expect("gone after DeleteContainer", !state_dir.exists(), || {
        format!("{} still exists", state_dir.display())
    })?;
    let left: Vec<_> = checks
        .hierarchies
        .iter()
        .map(|hierarchy| hierarchy.join(&checks.cgroup))
        .filter(|dir| dir.exists())
        .collect();
    expect("gone after DeleteContainer", left.is_empty(), || {
        format!("cgroup directories still exist: {left:?}")
    })
}

fn write_bundle(
    template: &Value,
    bundles: &Path,
    cgroup_parent: &str,
    id: &str,
) -> anyhow::Result<PathBuf> {
    let mut config = template.clone();
    config["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", cgroup_parent.trim_matches('/')));
    let dir = bundles.join(id);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config)?)
        .with_context(|| format!("write {}/config.json", dir.display()))?;
    Ok(dir)
}

/// Mount points of every cgroup hierarchy this process sees (v1 controllers and cgroup2).
fn cgroup_hierarchies() -> anyhow::Result<Vec<PathBuf>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount_point = left.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect())
}
