//! Compiles skein's protobuf files (`proto/` at the repository root: skein's own, and
//! Google's Workflows Executions service as skein serves it) with protox, a
//! protobuf compiler in Rust, so that no system `protoc` is needed; writes the tonic
//! code and the encoded descriptors that server reflection serves.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "skein/v1/runner.proto",
        "skein/v1/callback.proto",
        "google/cloud/workflows/executions/v1/executions.proto",
        "google/cloud/workflows/v1/workflows.proto",
    ];
    // The whole tree: the files above and what they import.
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("skein_v1.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
