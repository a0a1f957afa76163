//! `containerd-shim-berth-v1`: the runtime `io.containerd.berth.v1` for containerd 1.6 and
//! 1.7. containerd's own runc shim cannot front berth: it must be the parent of the
//! container's init to learn its exit, and berth's inits are berthd's children. This shim
//! speaks containerd's task API (v2, over ttrpc) and drives berthd over its gRPC API; berthd
//! stays the only owner of containers, and the shim keeps nothing berthd lacks but the
//! cleanup note in the bundle.
mod berthd;
mod config;
mod container;
mod lifecycle;
mod metrics;
mod naming;
mod note;
mod relay;
mod rootfs;
mod service;
mod stdio;

/// The runtime name containerd knows the shim by.
const RUNTIME_ID: &str = "io.containerd.berth.v1";

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("containerd-shim-berth-v1 {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let config = containerd_shim::Config {
        // berth's processes are berthd's children, never the shim's: there is nothing to
        // reap but a logging binary, which tokio waits for itself.
        no_reaper: true,
        no_sub_reaper: true,
        ..Default::default()
    };
    containerd_shim::asynchronous::run::<lifecycle::BerthShim>(RUNTIME_ID, Some(config)).await;
}
