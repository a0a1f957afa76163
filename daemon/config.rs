//! berthd's settings, one flag each.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "berthd",
    version,
    about = "berth's container-management daemon"
)]
pub struct Config {
    /// State root: one directory per container, holding its state.json.
    #[arg(long, default_value = "/run/berth")]
    pub root: PathBuf,

    /// Unix socket to serve the gRPC API on (mode 0660; its directory must not be
    /// world-writable).
    #[arg(long, default_value = "/run/berth/berth.sock")]
    pub socket: PathBuf,

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

    /// Events a WatchEvents subscriber may fall behind by; past that it gets a LAGGED event
    /// saying how many it missed.
    #[arg(long, default_value_t = 1024)]
    pub event_backlog: usize,

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

    /// Largest gRPC message berthd accepts or sends, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_message_size: usize,

    /// Most concurrent calls (HTTP/2 streams) on one connection.
    #[arg(long, default_value_t = 128)]
    pub max_concurrent_streams: u32,

    /// Longest a call may take before it is cancelled with DEADLINE_EXCEEDED (event
    /// streams excepted once they started); a client's own deadline can only shorten it.
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
