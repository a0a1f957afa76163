//! berth: the runtime library behind `berthd`.
//!
//! Dependencies point one way: `api` -> `registry` -> `container` -> (`process`,
//! `cgroups`, ...). `server` wires the API to a socket; `config` holds the daemon's flags.
pub mod api;
pub mod authority;
pub mod authz;
pub mod blocking;
pub mod cgroups;
pub mod config;
pub mod container;
pub mod error;
pub mod events;
pub mod fault;
pub mod hooks;
pub mod id;
pub mod init;
pub mod metrics;
pub mod process;
pub mod rdt;
pub mod registry;
pub mod server;
pub mod spawn;
pub mod state;
pub mod status;

/// Code generated from `proto/berth/v1/berth.proto`: the `berth-api` crate (`proto/`),
/// which the CLI uses too.
pub use berth_api as proto;
