//! Generates KEDA's external-scaler gRPC code from `proto/externalscaler.proto` with a
//! pure-Rust protobuf compiler (`protox`), so no `protoc` is needed on the machine; and
//! bakes libtorch's folder into the run path, as every crate that loads it does.

#[path = "../build/libtorch_rpath.rs"]
mod libtorch_rpath;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    libtorch_rpath::main();
    println!("cargo:rerun-if-changed=proto/externalscaler.proto");
    let descriptors = protox::compile(["externalscaler.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
