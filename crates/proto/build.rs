//! Generates the Rust code of every Tierline contract from `proto/`, without a system `protoc`.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let root = root.canonicalize()?;
    println!("cargo:rerun-if-changed={}", root.display());

    let files = [
        "tierline/common/v1/common.proto",
        "tierline/customer/v1/customer.proto",
        "tierline/ticket/v1/ticket.proto",
        "tierline/routing/v1/routing.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }

    let fds = protox::compile(files, [&root])?;
    // Reflection needs the encoded descriptor set; compile_fds does not write one itself.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("tierline_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
