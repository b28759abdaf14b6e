//! Compiles the vendored GoBGP API (proto/) into a tonic client, with protox: no `protoc` and
//! nothing downloaded at build time.
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new("proto");
    let files = ["gobgp.proto", "attribute.proto", "capability.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={}", dir.join(f).display());
    }
    let fds = protox::compile(files, [dir])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
