//! berth: the command-line client of berthd, one subcommand per RPC.
//!
//! Like runc, commands that change something print nothing on success; every error prints
//! the daemon's message on stderr and exits 1. `health` instead follows grpc_health_probe's
//! exit codes so scripts work with either tool.
// The process starts at `main` below, not in std's start-up.
#![cfg_attr(not(test), no_main)]
mod arena;
mod attach;
mod exec;
mod run;
mod usage;

use std::{path::PathBuf, str::FromStr, time::Duration};

use anyhow::{bail, Context};
use berth_api::{self as proto, container_service_client::ContainerServiceClient};
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

#[global_allocator]
static ALLOCATOR: arena::Arena = arena::Arena::new();

#[derive(Parser)]
#[command(name = "berth", version, about = "Manage containers through berthd")]
struct Cli {
    #[command(flatten)]
    target: Target,

    #[command(subcommand)]
    command: Command,
}

/// Where berthd is and how to reach it.
#[derive(clap::Args)]
struct Target {
    /// berthd's Unix socket.
    #[arg(
        long,
        env = "BERTH_SOCKET",
        default_value = "/run/berth/berth.sock",
        global = true
    )]
    socket: PathBuf,

    /// Reach berthd over TCP with TLS instead, e.g. https://10.0.0.5:7300.
    #[arg(long, env = "BERTH_ADDRESS", global = true)]
    address: Option<String>,

    /// CA certificate (PEM) that berthd's certificate must chain to.
    #[arg(long, value_name = "FILE", global = true)]
    tls_ca: Option<PathBuf>,

    /// Client certificate (PEM), when berthd verifies clients.
    #[arg(long, value_name = "FILE", global = true, requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// The name berthd's certificate must carry, when not the address's host.
    #[arg(long, global = true)]
    tls_server_name: Option<String>,
}

impl Target {
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let Some(address) = &self.address else {
            return Endpoint::from_shared(format!("unix:{}", self.socket.display()))
                .context("socket path");
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("read {}", path.display()))
        };
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &self.tls_ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &self.tls_server_name {
            tls = tls.domain_name(name);
        }
        Endpoint::from_shared(address.clone())
            .with_context(|| format!("address {address}"))?
            .tls_config(tls)
            .context("TLS settings")
    }

    fn describe(&self) -> String {
        match &self.address {
            Some(address) => address.clone(),
            None => self.socket.display().to_string(),
        }
    }
}

// Deferred: a command line builds the arguments of its own subcommand only, not of all.
#[derive(Subcommand)]
#[command(defer = true)]
enum Command {
    /// Create a container from an OCI bundle; its init waits for `start`.
    Create {
        /// Directory holding config.json.
        #[arg(long, short)]
        bundle: PathBuf,
        /// Append the container's stdout to this file (default /dev/null).
        #[arg(long)]
        stdout: Option<PathBuf>,
        /// Append the container's stderr to this file (default /dev/null).
        #[arg(long)]
        stderr: Option<PathBuf>,
        /// Keep this label with the container; repeatable.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Read the container's stdin from this file or FIFO (default /dev/null).
        #[arg(long)]
        stdin: Option<PathBuf>,
        /// The Unix socket a terminal's master is sent to, when config.json sets
        /// process.terminal (runc's --console-socket).
        #[arg(long)]
        console_socket: Option<PathBuf>,
        id: String,
    },
    /// Create and start a container, as `runc run` does: attached to it until its init
    /// exits (then exit with its code and delete it), or detached with -d.
    Run(run::Args),
    /// Run a process in a running container, attached (as `runc exec`) or with -d detached.
    Exec(exec::Args),
    /// Start the user process of a created container.
    Start { id: String },
    /// Send a signal (name or number, default TERM) to the container's init.
    Kill {
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
        /// Signal every process of the container.
        #[arg(long, short)]
        all: bool,
    },
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Delete a container; --force kills it first if it runs.
    Delete {
        #[arg(long, short)]
        force: bool,
        id: String,
    },
    /// Print a container's state as JSON.
    State { id: String },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Print only the ids, one per line.
        #[arg(long, short)]
        quiet: bool,
        /// Only containers carrying this label; repeatable (every one must match).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Wait for the container's init to exit, and exit with its code: 128+N when signal N
    /// ended it, 255 when berthd could not see how it ended (its parent was an earlier
    /// berthd).
    Wait { id: String },
    /// List the pids of the container's processes (its whole cgroup tree).
    Ps {
        id: String,
        /// Print a JSON array of pids, as `runc ps --format json` does.
        #[arg(long)]
        json: bool,
    },
    /// Change the cgroup limits of a created, running or paused container, as `runc update`
    /// does; the values given replace the container's, the rest stay.
    Update(usage::UpdateArgs),
    /// Print the usage the containers' cgroups count, one line per container (like
    /// `docker stats --no-stream`; the memory shown is the working set).
    Stats(usage::StatsArgs),
    /// Write a default config.json into the bundle directory, as `runc spec` does.
    ///
    /// The content is runc 1.1.5's: `sh` on a terminal, so that `berth run` in the bundle
    /// (once it has a rootfs) gives a shell. An existing config.json is never overwritten.
    Spec {
        /// The bundle directory (default: the current directory).
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print lifecycle events as they happen, until interrupted.
    Events {
        /// Only this container's events.
        #[arg(long)]
        id: Option<String>,
        /// Only events of these types (created, started, paused, resumed, exited, deleted, oom,
        /// exec_added, exec_started, exec_exited).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Resume: first the events berthd still holds after this sequence number of
        /// --instance, with a `lagged` event before them when some are gone. Without
        /// --instance, or from an earlier run of berthd: `lagged`, then all it holds.
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// The instance the --after sequence number came from (printed with every event).
        #[arg(long, value_name = "ID", requires = "after")]
        instance: Option<String>,
    },
    /// Check the daemon's health; exit 0 serving, 2 cannot connect, 3 RPC failed, 4 not serving.
    Health {
        /// The service to check; "" is the whole daemon.
        #[arg(long, default_value = "")]
        service: String,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        connect_timeout: Duration,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        rpc_timeout: Duration,
    },
    /// Print a shell completion script for berth.
    Completions { shell: clap_complete::Shell },
    /// Write man pages for berth and its subcommands into a directory (berthd's: `berthd man`).
    Man { dir: PathBuf },
}

/// The process's entry point, instead of the one std generates around a Rust `main`. std's
/// start-up also sets up its stack-overflow report, and finding the main thread's stack for
/// it reads and parses /proc/self/maps: a dozen system calls and page faults, a measurable
/// part of a short command (issue 17). What of it the CLI relies on is done here: the
/// standard fds are open, and SIGPIPE is ignored, so that a closed pipe or daemon
/// connection is an error to report, not a silent death.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    open_standard_fds();
    // SAFETY: no other thread exists yet to race the change, and SIG_IGN is valid for SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // SAFETY: the C runtime passes argc strings in argv, each NUL-terminated, alive for the
    // whole process.
    berth(unsafe { arguments(argc, argv) })
}

/// The command line, from `main`'s own arguments: std::env::args is empty on musl when
/// std's entry point does not run (glibc hands them to std behind main's back; musl does
/// not), and the CLI is built for musl (see README).
#[cfg(not(test))]
unsafe fn arguments(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    (0..usize::try_from(argc).unwrap_or(0))
        .map(|index| {
            // SAFETY: index < argc, and each argv entry is a C string (the caller's promise).
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(index)) };
            std::ffi::OsStr::from_bytes(arg.to_bytes()).to_owned()
        })
        .collect()
}

/// Opens /dev/null on any of fds 0-2 the CLI was started without, so that neither the
/// daemon's socket nor anything else becomes its stdout or stderr.
#[cfg(not(test))]
fn open_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: the array holds 3 pollfds.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for _ in fds.iter().filter(|fd| fd.revents & libc::POLLNVAL != 0) {
        // Opened on the lowest free fd, the closed one, and kept for the life of the process.
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            std::mem::forget(null);
        }
    }
}

// Under test the harness has the entry point, and this is what it would run.
#[cfg_attr(test, allow(dead_code))]
fn berth(args: Vec<std::ffi::OsString>) -> ! {
    if asks_for_the_version_alone(&args) {
        print!("{}", version_text());
        std::process::exit(0);
    }
    let cli = Cli::parse_from(args);
    // Neither needs the daemon.
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "berth", &mut std::io::stdout());
            std::process::exit(0);
        }
        Command::Spec { bundle } => exit_with(write_spec(bundle)),
        Command::Man { dir } => exit_with(write_man_pages(dir)),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = if let Command::Health {
        service,
        connect_timeout,
        rpc_timeout,
    } = &cli.command
    {
        runtime.block_on(health(&cli.target, service, *connect_timeout, *rpc_timeout))
    } else {
        match runtime.block_on(run(cli)) {
            Ok(code) => code,
            Err(e) => {
                match e.downcast_ref::<tonic::Status>() {
                    Some(status) => eprintln!("{}", status.message()),
                    None => eprintln!("berth: {}", chain_text(&e)),
                }
                1
            }
        }
    };
    // The command is over: what it printed is flushed by exit, and what must be undone
    // (a raw terminal, the attach directory) was undone as its future ended. The runtime
    // and the connection are left to the kernel, which frees them faster than dropping
    // them does, and that is part of every command's time (issue 17).
    std::process::exit(code.into())
}

/// `berth --version` (or `-V`) alone, as tools probe a runtime: answered before clap builds
/// the command tree, which copies every global option into each subcommand first and is
/// most of the CLI's own start-up (issue 17). A test keeps the text clap's.
fn asks_for_the_version_alone(args: &[std::ffi::OsString]) -> bool {
    matches!(args, [_, arg] if arg == "--version" || arg == "-V")
}

fn version_text() -> String {
    format!("berth {}\n", env!("CARGO_PKG_VERSION"))
}

/// An error and its causes, as `{:#}` prints them, without a cause that only repeats the
/// one before: tonic's transport errors wrap the same io::Error more than once, and
/// "No such file or directory" said three times helps nobody.
fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut last = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if last.ends_with(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
        last = message;
    }
    text
}

fn exit_with(result: anyhow::Result<()>) -> ! {
    if let Err(e) = &result {
        eprintln!("berth: {}", chain_text(e));
    }
    std::process::exit(result.is_err().into())
}

async fn connect(target: &Target) -> anyhow::Result<ContainerServiceClient<Channel>> {
    let channel = target
        .endpoint()?
        .connect()
        .await
        .with_context(|| format!("cannot connect to berthd at {}", target.describe()))?;
    Ok(ContainerServiceClient::new(channel))
}

/// A path as the API takes it: absolute, or empty for none.
fn path_text(path: Option<PathBuf>) -> anyhow::Result<String> {
    Ok(match path {
        Some(path) => std::path::absolute(&path)?.to_string_lossy().into_owned(),
        None => String::new(),
    })
}

/// The exit code of a command that needs the daemon.
async fn run(cli: Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Run(args) => args.check_target(&cli.target)?,
        Command::Exec(args) => args.check_target(&cli.target)?,
        _ => {}
    }
    let mut client = connect(&cli.target).await?;
    match cli.command {
        Command::Create {
            bundle,
            stdout,
            stderr,
            labels,
            stdin,
            console_socket,
            id,
        } => {
            let bundle = std::path::absolute(&bundle)
                .with_context(|| format!("bundle {}", bundle.display()))?;
            client
                .create_container(proto::CreateContainerRequest {
                    id,
                    bundle: bundle.to_string_lossy().into_owned(),
                    stdout_path: path_text(stdout)?,
                    stderr_path: path_text(stderr)?,
                    labels: label_map(labels)?,
                    stdin_path: path_text(stdin)?,
                    console_socket: path_text(console_socket)?,
                })
                .await?;
        }
        Command::Run(args) => return run::run(&mut client, args).await,
        Command::Exec(args) => return exec::exec(&mut client, args).await,
        Command::Start { id } => {
            client
                .start_container(proto::StartContainerRequest { id })
                .await?;
        }
        Command::Kill { id, signal, all } => {
            let signal = parse_signal(&signal)?;
            client
                .kill_container(proto::KillContainerRequest { id, signal, all })
                .await?;
        }
        Command::Pause { id } => {
            client
                .pause_container(proto::PauseContainerRequest { id })
                .await?;
        }
        Command::Resume { id } => {
            client
                .resume_container(proto::ResumeContainerRequest { id })
                .await?;
        }
        Command::Delete { force, id } => {
            let response = client
                .delete_container(proto::DeleteContainerRequest { id, force })
                .await?
                .into_inner();
            for warning in response.warnings {
                eprintln!("warning: {warning}");
            }
        }
        Command::State { id } => {
            let container = client
                .get_container(proto::GetContainerRequest { id })
                .await?
                .into_inner()
                .container
                .context("daemon sent no container")?;
            println!("{}", serde_json::to_string_pretty(&state_json(&container))?);
        }
        Command::List {
            json,
            quiet,
            labels,
        } => {
            let containers = client
                .list_containers(proto::ListContainersRequest {
                    label_selector: label_map(labels)?,
                })
                .await?
                .into_inner()
                .containers;
            if json {
                let all: Vec<_> = containers.iter().map(state_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if quiet {
                for container in &containers {
                    println!("{}", container.id);
                }
            } else {
                print_table(&containers);
            }
        }
        Command::Events {
            id,
            types,
            json,
            after,
            instance,
        } => {
            let types = types
                .iter()
                .map(|name| parse_event_type(name).map(i32::from))
                .collect::<anyhow::Result<_>>()?;
            let mut stream = client
                .watch_events(proto::WatchEventsRequest {
                    id: id.unwrap_or_default(),
                    types,
                    after_sequence: after.unwrap_or_default(),
                    instance: instance.unwrap_or_default(),
                })
                .await?
                .into_inner();
            while let Some(event) = stream.message().await? {
                println!("{}", event_line(&event, json));
            }
        }
        Command::Wait { id } => return wait(&mut client, id).await,
        Command::Ps { id, json } => {
            let pids = client
                .list_processes(proto::ListProcessesRequest { id })
                .await?
                .into_inner()
                .pids;
            if json {
                println!("{}", serde_json::to_string(&pids)?);
            } else {
                println!("PID");
                for pid in pids {
                    println!("{pid}");
                }
            }
        }
        Command::Update(args) => usage::update(&mut client, args).await?,
        Command::Stats(args) => usage::stats(&mut client, args).await?,
        Command::Health { .. }
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Spec { .. } => {
            unreachable!("handled before connecting")
        }
    }
    Ok(0)
}

/// The init's exit code, for this process's. berthd ends a call at its --rpc-timeout with
/// CANCELLED; the exit is kept until delete, so asking again loses nothing.
async fn wait(client: &mut ContainerServiceClient<Channel>, id: String) -> anyhow::Result<u8> {
    loop {
        let request = proto::WaitContainerRequest { id: id.clone() };
        match client.wait_container(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let code = response.exit_status.map_or(255, |exit| exit.code);
                if response.exit_unknown {
                    eprintln!("berth: container {id} exited while berthd could not see it; its exit code is unknown");
                }
                return Ok(u8::try_from(code).unwrap_or(255));
            }
            Err(status) if status.code() == tonic::Code::Cancelled => continue,
            Err(status) => return Err(status.into()),
        }
    }
}

/// runc 1.1.5's default spec (with the ociVersion berthd implements), written with
/// O_EXCL so an existing config.json is never replaced, even by a racing writer.
fn write_spec(bundle: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let path = bundle.join("config.json");
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("File {} exists. Remove it first", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
    };
    let text = serde_json::to_string_pretty(&default_spec())? + "\n";
    file.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

fn default_spec() -> serde_json::Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "network"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    // As runc: a cgroup namespace only where the unified hierarchy is the only one.
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        namespaces.push(json!({"type": "cgroup"}));
    }
    json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// berth(1) and berth-<command>(1) for each subcommand. berthd(8) is berthd's own
/// (`berthd man DIR`): the CLI links no daemon code.
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("write man pages to {}", dir.display()))?;
    Ok(())
}

/// grpc_health_probe's contract: 0 serving, 2 connection failed, 3 RPC failed, 4 not serving.
async fn health(
    target: &Target,
    service: &str,
    connect_timeout: Duration,
    rpc_timeout: Duration,
) -> u8 {
    let channel = match target.endpoint() {
        Ok(endpoint) => endpoint.connect_timeout(connect_timeout).connect().await,
        Err(e) => {
            eprintln!("berth: {}", chain_text(&e));
            return 2;
        }
    };
    let channel = match channel {
        Ok(channel) => channel,
        Err(e) => {
            eprintln!(
                "berth: cannot connect to berthd at {}: {e}",
                target.describe()
            );
            return 2;
        }
    };
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    request.set_timeout(rpc_timeout);
    match HealthClient::new(channel).check(request).await {
        Ok(response) => {
            let status = response.into_inner().status();
            println!("status: {}", status.as_str_name());
            if status == ServingStatus::Serving {
                0
            } else {
                4
            }
        }
        Err(status) => {
            eprintln!(
                "berth: health check failed: {}: {}",
                status.code(),
                status.message()
            );
            3
        }
    }
}

/// A signal by number, or by name with or without the SIG prefix.
fn parse_signal(text: &str) -> anyhow::Result<u32> {
    if let Ok(number) = text.parse::<u32>() {
        return Ok(number);
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    match nix::sys::signal::Signal::from_str(&name) {
        Ok(signal) => Ok(signal as u32),
        Err(_) => bail!("unknown signal {text:?}"),
    }
}

/// `KEY=VALUE`, split at the first `=`; berthd checks the lengths.
fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    Ok((key.to_owned(), value.to_owned()))
}

/// The --label pairs; a key given twice is a mistake, not an override.
fn label_map(
    labels: Vec<(String, String)>,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let mut map = std::collections::HashMap::new();
    for (key, value) in labels {
        if map.insert(key.clone(), value).is_some() {
            bail!("label {key:?} is given twice");
        }
    }
    Ok(map)
}

fn parse_event_type(name: &str) -> anyhow::Result<proto::EventType> {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    proto::EventType::from_str_name(&format!("EVENT_TYPE_{upper}"))
        .filter(|t| *t != proto::EventType::Unspecified)
        .with_context(|| format!("unknown event type {name:?}"))
}

fn status_name(container: &proto::Container) -> String {
    container
        .status()
        .as_str_name()
        .trim_start_matches("CONTAINER_STATUS_")
        .to_ascii_lowercase()
}

fn time_text(timestamp: &Option<prost_types::Timestamp>) -> Option<String> {
    let timestamp = timestamp.as_ref()?;
    let time = std::time::SystemTime::try_from(*timestamp).ok()?;
    Some(humantime::format_rfc3339_nanos(time).to_string())
}

/// The OCI runtime-spec version berthd implements (oci-spec's `runtime::VERSION`, which
/// berthd writes into its own state; a test keeps the two equal).
const OCI_VERSION: &str = "1.1.0";

/// The OCI state of a container, with what OCI has no field for under `berth`.
fn state_json(container: &proto::Container) -> serde_json::Value {
    let mut berth = json!({ "created": time_text(&container.created_at) });
    if let Some(exit) = &container.exit_status {
        berth["exit"] = json!({
            "code": exit.code,
            "signal": exit.signal,
            "exitedAt": time_text(&exit.exited_at),
        });
    }
    if !container.status_reason.is_empty() {
        berth["statusReason"] = json!(container.status_reason);
    }
    if !container.labels.is_empty() {
        let labels: std::collections::BTreeMap<_, _> = container.labels.iter().collect();
        berth["labels"] = json!(labels);
    }
    json!({
        "ociVersion": OCI_VERSION,
        "id": container.id,
        "status": status_name(container),
        "pid": container.pid,
        "bundle": container.bundle,
        "annotations": container.annotations,
        "berth": berth,
    })
}

fn print_table(containers: &[proto::Container]) {
    let rows: Vec<[String; 5]> = containers
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                c.pid.to_string(),
                status_name(c),
                c.bundle.clone(),
                time_text(&c.created_at).unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn event_line(event: &proto::Event, json: bool) -> String {
    let kind = event
        .r#type()
        .as_str_name()
        .trim_start_matches("EVENT_TYPE_")
        .to_ascii_lowercase();
    let at = time_text(&event.timestamp).unwrap_or_default();
    if json {
        return json!({
            "sequence": event.sequence,
            "type": kind,
            "id": event.id,
            "timestamp": at,
            "exitStatus": event.exit_status.as_ref().map(|e| json!({"code": e.code, "signal": e.signal})),
            "warnings": event.warnings,
            "missed": event.missed,
            "execId": event.exec_id,
            "pid": event.pid,
            "instance": event.instance,
        })
        .to_string();
    }
    let mut line = format!("{at} #{} {kind} {}", event.sequence, event.id);
    if !event.exec_id.is_empty() {
        line += &format!(" exec={}", event.exec_id);
    }
    if event.pid != 0 {
        line += &format!(" pid={}", event.pid);
    }
    if let Some(exit) = &event.exit_status {
        line += &format!(" code={}", exit.code);
    }
    if event.missed > 0 {
        line += &format!(" missed={}", event.missed);
    }
    for warning in &event.warnings {
        line += &format!(" warning={warning:?}");
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_oci_version_is_the_one_berthd_implements() {
        assert_eq!(super::OCI_VERSION, oci_spec::runtime::VERSION);
    }

    #[test]
    fn a_cause_that_repeats_the_one_before_is_said_once() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let error = anyhow::Error::new(std::io::Error::other(io.to_string()))
            .context(io.to_string())
            .context("cannot connect to berthd at /run/x.sock");
        assert_eq!(
            super::chain_text(&error),
            "cannot connect to berthd at /run/x.sock: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn the_early_version_is_claps() {
        use clap::CommandFactory;
        assert_eq!(
            super::version_text(),
            super::Cli::command().render_version()
        );
    }
}
