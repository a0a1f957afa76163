//! berth-runtime: containers on one node, without any server. The registry of containers
//! (per-id leases), the container operations, status, state on disk, processes and pidfds,
//! cgroups, RDT, hooks and the init helper. `berthd`'s server (`daemon/server/`) depends on
//! this crate; nothing here knows about gRPC, sockets or metrics.
pub mod blocking;
pub mod cgroups;
pub mod container;
pub mod error;
pub mod events;
pub mod fault;
pub mod freezers;
pub mod helper;
pub mod hooks;
pub mod id;
pub mod init;
pub mod labels;
pub mod process;
pub mod quote;
pub mod rdt;
pub mod registry;
pub mod seccomp;
pub mod spec_support;
pub mod state;
pub mod state_dir;
pub mod status;
pub mod stdio;
pub mod userns;
