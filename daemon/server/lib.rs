//! berthd's server: the gRPC API over the runtime (`berth-runtime`), who may call, the
//! Unix-socket `:authority` fix, the daemon's configuration, metrics, and the serving loop.
//! Dependencies point one way: server -> runtime -> (kernel); server -> berth-api.
pub mod api;
pub mod authz;
pub mod config;
pub mod deadline;
pub mod metrics;
pub mod serve;
pub mod unix_authority;

/// Code generated from `proto/berth/v1/berth.proto`: the `berth-api` crate (`proto/`),
/// which the CLI uses too.
pub use berth_api as proto;
/// The runtime library, for berthd's init mode and for tests.
pub use berth_runtime as runtime;
