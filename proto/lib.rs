//! berth's gRPC API: the code generated from `berth/v1/berth.proto` (messages, the
//! `ContainerService` client and server), and nothing else. The CLI uses the client side,
//! berthd the server side.
tonic::include_proto!("berth.v1");

/// The encoded descriptors, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("berth_descriptor");
