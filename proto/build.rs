//! Compiles berth/v1/berth.proto with protox (a protobuf compiler written in Rust, so no
//! protoc is needed) and hands the descriptors to tonic-prost-build, which generates the
//! client and the server. The encoded descriptor set is kept for gRPC reflection.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["berth/v1/berth.proto"];
    println!("cargo:rerun-if-changed=berth");
    let descriptors = protox::compile(protos, ["."])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // compile_fds does not write the descriptor set itself, so reflection's copy is
    // written here.
    std::fs::write(
        out_dir.join("berth_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
