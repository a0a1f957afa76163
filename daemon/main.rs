use std::{path::Path, process::ExitCode};

use anyhow::Context;
use berth::config::{Config, ConfigError, LogFormat};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // The container-init helper: decided before anything else starts (no threads, no
    // runtime), since it forks.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == berth::runtime::helper::INIT_ARG)
    {
        berth::runtime::init::main();
    }
    let args: Vec<_> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == "config" && args[2] == "default" {
        print!("{}", Config::default_file());
        return ExitCode::SUCCESS;
    }
    if args.len() == 3 && args[1] == "man" {
        return match write_man_page(Path::new(&args[2])) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berthd: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(ConfigError::CommandLine(e)) => e.exit(),
        Err(e) => {
            eprintln!("berthd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `berthd man DIR`: berthd(8), from the flags' clap definitions, as `DIR/berthd.8`.
fn write_man_page(dir: &Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut page = Vec::new();
    clap_mangen::Man::new(Config::command())
        .section("8")
        .render(&mut page)?;
    let path = dir.join("berthd.8");
    std::fs::write(&path, page).with_context(|| format!("write {}", path.display()))
}

fn run(config: Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("bad --log-level {:?}", config.log_level))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    raise_open_file_limit();
    let runtime = tokio::runtime::Runtime::new().context("start the tokio runtime")?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        };
        berth::serve::serve(&config, shutdown)
            .await
            .map_err(Into::into)
    })
}

/// Every connection and container costs berthd a few descriptors; the soft limit a shell
/// hands out (often 1024) is far below what the hard limit allows.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, "cannot raise the open file limit");
            }
        }
    }
}
