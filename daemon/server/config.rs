//! berthd's settings, one flag each.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "berthd",
    version,
    about = "berth's container-management daemon"
)]
pub struct Config {
    /// Read settings from this TOML file (keys: the flags' long names); flags given here
    /// win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// State root: one directory per container, holding its state.json.
    #[arg(long, default_value = "/run/berth")]
    pub root: PathBuf,

    /// Unix socket to serve the gRPC API on (mode 0660; its directory must not be
    /// world-writable).
    #[arg(long, default_value = "/run/berth/berth.sock")]
    pub socket: PathBuf,

    /// How log lines on stderr look: text for people, json for collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// A tracing filter: a level (error, warn, info, debug, trace) or directives such as
    /// `berth=debug`.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Cgroup under which containers without an absolute `linux.cgroupsPath` are placed, in
    /// every hierarchy.
    #[arg(long, default_value = "berth")]
    pub cgroup_parent: PathBuf,

    /// Where the resctrl file system (Intel RDT) is mounted.
    #[arg(long, default_value = "/sys/fs/resctrl")]
    pub resctrl_root: PathBuf,

    /// How many rounds a kill waits for a container's init to exit (delete.md D8).
    #[arg(long, default_value_t = 100)]
    pub kill_wait_rounds: u32,

    /// How long one such round lasts at most; it ends early when the init exits.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    pub kill_wait_round: Duration,

    /// How long a hook that names no timeout may run before it is killed, with its process
    /// group (runc waits forever).
    #[arg(long, value_parser = positive_duration, default_value = "1m")]
    pub hook_timeout_default: Duration,

    /// The longest any hook may run: a hook's own longer timeout is capped to this.
    #[arg(long, value_parser = positive_duration, default_value = "10m")]
    pub hook_timeout_max: Duration,

    /// Events a WatchEvents subscriber may fall behind by; past that it gets a LAGGED event
    /// saying how many it missed.
    #[arg(long, default_value_t = 1024)]
    pub event_backlog: usize,

    /// The newest events kept for WatchEvents subscribers that reconnect and resume (from
    /// an earlier sequence number); one resuming from further back gets a LAGGED event
    /// first. 0 keeps none.
    #[arg(long, default_value_t = 4096)]
    pub event_replay: usize,

    /// Also let this uid call (root always may); repeatable.
    #[arg(long, value_name = "UID")]
    pub allow_uid: Vec<u32>,

    /// Also let members of this group call; repeatable. The first one owns the socket.
    #[arg(long, value_name = "GID")]
    pub allow_gid: Vec<u32>,

    /// Let anyone who can reach the socket call the health service.
    #[arg(long)]
    pub health_open: bool,

    /// Also serve on this TCP address, with TLS only (needs --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// The server certificate (PEM) for --listen.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The server's private key (PEM) for --listen.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that TCP clients' certificates must chain to.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// Accept TCP clients without a certificate. Anyone who can reach the address can then
    /// manage containers as root.
    #[arg(long)]
    pub tls_no_client_auth: bool,

    /// Also serve the health service alone, in plaintext, on this TCP address: what a
    /// Kubernetes gRPC liveness probe (which speaks no TLS) can check.
    #[arg(long, value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,

    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Largest gRPC message berthd accepts or sends, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_message_size: usize,

    /// Most concurrent calls (HTTP/2 streams) on one connection.
    #[arg(long, default_value_t = 128)]
    pub max_concurrent_streams: u32,

    /// Longest a call may take before the caller gets CANCELLED (event streams excepted
    /// once they started; the change a call began still runs to its end); a client's own
    /// deadline can only shorten it.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub rpc_timeout: Duration,

    /// How long a shutdown waits for in-flight calls before exiting anyway.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub shutdown_grace: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Why berthd's settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    CommandLine(#[from] clap::Error),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}, line {line}: unknown key {key:?} (the keys are berthd's flag names, as `berthd config default` prints them)", path.display())]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
    },
    #[error("{}, line {line}: bad value for {key:?}: {message}", path.display())]
    BadValue {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

impl Config {
    /// The settings from the command line over those of the `--config` file, whose keys
    /// are the flags' long names. A flag given on the command line wins over the file.
    pub fn from_args(args: Vec<std::ffi::OsString>) -> Result<Self, ConfigError> {
        let config = Self::merge_args(args)?;
        config.check()?;
        Ok(config)
    }

    /// What no single flag's parser can see: settings that contradict each other.
    fn check(&self) -> Result<(), ConfigError> {
        use clap::CommandFactory;
        if self.hook_timeout_default > self.hook_timeout_max {
            return Err(Self::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "--hook-timeout-default ({}) is longer than --hook-timeout-max ({})",
                        humantime::format_duration(self.hook_timeout_default),
                        humantime::format_duration(self.hook_timeout_max)
                    ),
                )
                .into());
        }
        Ok(())
    }

    fn merge_args(args: Vec<std::ffi::OsString>) -> Result<Self, ConfigError> {
        use clap::{parser::ValueSource, ArgAction, CommandFactory, FromArgMatches, Parser};
        let command = Self::command();
        let matches = command.clone().try_get_matches_from(&args)?;
        let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
            return Ok(Self::from_arg_matches(&matches)?);
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
        let mut merged = args;
        for (key, value) in &table {
            let line = line_of(&text, key);
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_long() == Some(key.as_str()) && arg.get_id() != "config")
                .ok_or_else(|| ConfigError::UnknownKey {
                    path: path.clone(),
                    line,
                    key: key.clone(),
                })?;
            if matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
                continue;
            }
            let bad = |message: String| ConfigError::BadValue {
                path: path.clone(),
                line,
                key: key.clone(),
                message,
            };
            let mut pieces = Vec::new();
            if matches!(arg.get_action(), ArgAction::SetTrue) {
                match value {
                    toml::Value::Boolean(true) => pieces.push(format!("--{key}")),
                    toml::Value::Boolean(false) => {}
                    other => return Err(bad(format!("expected true or false, found {other}"))),
                }
            } else {
                let items = match value {
                    toml::Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                for item in items {
                    let text = match item {
                        toml::Value::String(text) => text,
                        toml::Value::Integer(number) => number.to_string(),
                        other => {
                            return Err(bad(format!(
                                "expected a string or a number, found {other}"
                            )))
                        }
                    };
                    pieces.push(format!("--{key}={text}"));
                }
            }
            // Each key on its own, so a bad value is reported with its line.
            let alone = std::iter::once("berthd".to_owned()).chain(pieces.iter().cloned());
            if let Err(e) = Self::command().try_get_matches_from(alone) {
                let message = e.render().to_string();
                let first = message
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ");
                return Err(bad(first.to_owned()));
            }
            merged.extend(pieces.into_iter().map(Into::into));
        }
        Ok(Self::try_parse_from(merged)?)
    }

    /// A config file with every key, its meaning and its default (`berthd config default`).
    pub fn default_file() -> String {
        use clap::CommandFactory;
        let mut file = String::from(
            "# berthd configuration: every key is a berthd flag (its long name); a flag given on\n\
             # the command line wins over the file. Values shown are the defaults.\n",
        );
        for arg in Self::command().get_arguments() {
            let Some(key) = arg.get_long() else { continue };
            if matches!(key, "config" | "help" | "version") {
                continue;
            }
            file.push('\n');
            for line in arg
                .get_help()
                .map(|h| h.to_string())
                .unwrap_or_default()
                .lines()
            {
                file.push_str(&format!("# {line}\n"));
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let entry = match defaults.as_slice() {
                [] if matches!(arg.get_action(), clap::ArgAction::Append) => {
                    format!("# {key} = []")
                }
                [] if matches!(arg.get_action(), clap::ArgAction::SetTrue) => {
                    format!("{key} = false")
                }
                [] => format!("# {key} = \"\""),
                [value] if value.parse::<i64>().is_ok() => format!("{key} = {value}"),
                [value] if value == "false" || value == "true" => format!("{key} = {value}"),
                [value] => format!("{key} = {value:?}"),
                values => format!("{key} = {values:?}"),
            };
            file.push_str(&entry);
            file.push('\n');
        }
        file
    }
}

/// A duration (humantime: `90s`, `1m 30s`) greater than zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

/// The 1-based line where `key` is set in a flat TOML file.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix(key)
                .or_else(|| line.strip_prefix(&format!("\"{key}\"")));
            rest.is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(0, |index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::from_args(
            std::iter::once("berthd")
                .chain(args.iter().copied())
                .map(Into::into)
                .collect(),
        )
    }

    #[test]
    fn hook_timeouts_default_to_one_minute_and_at_most_ten() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.hook_timeout_default, Duration::from_secs(60));
        assert_eq!(config.hook_timeout_max, Duration::from_secs(600));
        let config = parse(&["--hook-timeout-default", "1s", "--hook-timeout-max", "1h"]).unwrap();
        assert_eq!(config.hook_timeout_default, Duration::from_secs(1));
        assert_eq!(config.hook_timeout_max, Duration::from_secs(3600));
    }

    #[test]
    fn hook_timeouts_of_zero_are_refused() {
        for flag in ["--hook-timeout-default", "--hook-timeout-max"] {
            let error = parse(&[flag, "0s"]).unwrap_err().to_string();
            assert!(error.contains("must be greater than zero"), "{error}");
        }
    }

    #[test]
    fn a_hook_timeout_default_above_the_maximum_is_refused() {
        let error = parse(&["--hook-timeout-max", "30s"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--hook-timeout-default (1m) is longer than --hook-timeout-max (30s)"),
            "{error}"
        );
    }

    #[test]
    fn hook_timeouts_can_be_set_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berthd.toml");
        std::fs::write(
            &file,
            "hook-timeout-default = \"5s\"\nhook-timeout-max = \"2m\"\n",
        )
        .unwrap();
        let config = parse(&["--config", file.to_str().unwrap()]).unwrap();
        assert_eq!(config.hook_timeout_default, Duration::from_secs(5));
        assert_eq!(config.hook_timeout_max, Duration::from_secs(120));
        std::fs::write(&file, "hook-timeout-default = \"0s\"\n").unwrap();
        let error = parse(&["--config", file.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 1") && error.contains("greater than zero"),
            "{error}"
        );
    }
}
