//! Builds the XDP program (netanom-ebpf) for the BPF target with aya-build and leaves it in
//! OUT_DIR, where `src/datapath.rs` embeds it: the agent is one self-contained executable.
//!
//! Without bpf-linker (a fresh machine before `cargo xtask setup`), or with
//! NETANOM_EBPF_PLACEHOLDER=1, an empty placeholder object is embedded instead, so `cargo
//! check`, clippy and the unprivileged unit tests work anywhere; such a binary refuses to
//! attach and says how to get the real program.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("OUT_DIR not set"))?);
    let object = out_dir.join("netanom");
    println!("cargo:rerun-if-env-changed=NETANOM_EBPF_PLACEHOLDER");
    let forced = env::var("NETANOM_EBPF_PLACEHOLDER").is_ok_and(|v| v == "1");
    let linker = which::which("bpf-linker");
    if forced || linker.is_err() {
        if !forced {
            // Rebuild as soon as bpf-linker appears where `cargo install` puts it.
            let home = env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
            if let Some(home) = home {
                println!("cargo:rerun-if-changed={}", home.join("bin/bpf-linker").display());
            }
            println!(
                "cargo:warning=bpf-linker not found: embedding a placeholder instead of the XDP program; run `cargo xtask setup`"
            );
        }
        fs::write(&object, [])?;
        return Ok(());
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../netanom-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "netanom-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
