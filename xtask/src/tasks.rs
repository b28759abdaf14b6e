//! `build`, `run` and `test`.
use std::{os::unix::process::CommandExt as _, path::PathBuf, time::Instant};

use anyhow::{Context as _, bail};

use crate::{cmd, setup::Env};

pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds the agent (which builds and embeds the XDP program); returns the binary's path.
pub fn build(_env: &Env, release: bool) -> anyhow::Result<PathBuf> {
    let mut args = vec!["build", "--package", "netanom"];
    if release {
        args.push("--release");
    }
    cmd::status(cmd::new(&cargo(), &args))?;
    let bin = cmd::root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("netanom");
    if !bin.is_file() {
        bail!("the build finished but {} is missing", bin.display());
    }
    Ok(bin)
}

/// Builds, then replaces this process with `netanom run ARGS`, so signals reach the agent.
pub fn run(env: &Env, release: bool, args: &[String]) -> anyhow::Result<()> {
    let bin = build(env, release)?;
    let err = std::process::Command::new(&bin)
        .arg("run")
        .args(args)
        .env("NETANOM_ORT_LIB", &env.ort_lib)
        .exec();
    Err(err).with_context(|| format!("could not start {}", bin.display()))
}

/// The README test command: format, lint (user crates and the eBPF crate for its real
/// target), unit tests and privileged integration tests, then a check for leftovers.
pub fn test(env: &Env, container: bool) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "`cargo xtask test` runs privileged integration tests (network namespaces, XDP) and \
             needs root: run `sudo -E cargo xtask test`. Unprivileged unit tests alone: `cargo test`."
        );
    }
    let started = Instant::now();
    let cargo = cargo();
    lint(&cargo)?;

    section("deployment files: Kubernetes and Compose schemas, Prometheus rules and their tests");
    crate::deploy::check_files()?;

    section("build the agent for the integration tests");
    let bin = build(env, false)?;

    section("unit and integration tests");
    let mut t = cmd::new(&cargo, &["test", "--workspace", "--no-fail-fast"]);
    t.env("NETANOM_BIN", &bin).env("NETANOM_ORT_LIB", &env.ort_lib);
    let shared = cmd::root().join("..").join("shared");
    if shared.is_dir() {
        t.env("NETANOM_SHARED", &shared);
    }
    cmd::status(t)?;

    cuda_fallback(env, &cargo, &shared)?;

    if container {
        section("container image: build, check, run the agent from its filesystem in the lab");
        crate::container::test(&cargo)?;
    }

    section("model pipeline (pytest, in models/.venv)");
    crate::models::pytest()?;

    section("leftovers");
    check_leftovers()?;
    println!(
        "xtask test: all checks passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo fmt --check`, then clippy with warnings denied on the user-space crates and on the
/// eBPF crate for its real target.
fn lint(cargo: &str) -> anyhow::Result<()> {
    section("rustfmt");
    cmd::status(cmd::new(cargo, &["fmt", "--all", "--", "--check"]))?;

    section("clippy: user-space crates (warnings denied)");
    cmd::status(cmd::new(
        cargo,
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
    ))?;

    section("clippy: eBPF crate for bpfel-unknown-none (warnings denied)");
    let mut c = cmd::new(
        "rustup",
        &[
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--package",
            "netanom-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
            "target/bpf-clippy",
            "--",
            "-D",
            "warnings",
        ],
    );
    c.env_remove("RUSTC").env_remove("RUSTC_WORKSPACE_WRAPPER");
    cmd::status(c)?;

    Ok(())
}

/// The `cuda` build: clippy, and the model tests requesting CUDA with the CPU-only library
/// (no CUDA provider) and with onnxruntime-gpu's (a provider that cannot start without a
/// GPU). Every load falls back to the CPU, says why, and scores the same; on a GPU machine
/// the second run scores on CUDA.
fn cuda_fallback(env: &Env, cargo: &str, shared: &std::path::Path) -> anyhow::Result<()> {
    section("the `cuda` feature: clippy, and the model tests requesting CUDA");
    cmd::status(cmd::new(
        cargo,
        &[
            "clippy",
            "--package",
            "netanom",
            "--features",
            "cuda",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ))?;
    // With the CPU-only library (no CUDA provider) and with onnxruntime-gpu's (a provider that
    // cannot start without a GPU): every load falls back to the CPU, says why, and scores the
    // same. On a GPU machine the second run scores on CUDA.
    for lib in [&env.ort_lib, &env.ort_cuda_lib] {
        let mut t = cmd::new(
            cargo,
            &[
                "test",
                "--package",
                "netanom-lab",
                "--features",
                "netanom/cuda",
                "--test",
                "model_parity",
            ],
        );
        t.env("NETANOM_ORT_LIB", lib).env("NETANOM_TEST_PROVIDER", "cuda");
        if shared.is_dir() {
            t.env("NETANOM_SHARED", shared);
        }
        cmd::status(t)?;
    }

    Ok(())
}

/// `cargo xtask bench`: builds the agent and the benchmark in release mode and runs it.
pub fn bench(env: &Env, quick: bool, out: Option<PathBuf>, only: Option<String>) -> anyhow::Result<()> {
    if !is_root() {
        bail!("`cargo xtask bench` loads XDP programs and creates network namespaces: run it as root.");
    }
    let agent = build(env, true)?;
    let cargo = cargo();
    cmd::status(cmd::new(
        &cargo,
        &[
            "build",
            "--release",
            "--package",
            "netanom-lab",
            "--bin",
            "netanom-bench",
        ],
    ))?;
    let mut c = std::process::Command::new(cmd::root().join("target/release/netanom-bench"));
    c.current_dir(cmd::root())
        .env("NETANOM_BIN", &agent)
        .env("NETANOM_ORT_LIB", &env.ort_lib);
    if quick {
        c.arg("--quick");
    }
    if let Some(o) = out {
        c.arg("--out").arg(o);
    }
    if let Some(o) = only {
        c.arg("--only").arg(o);
    }
    cmd::status(c)
}

fn section(name: &str) {
    println!("\n=== {name} ===");
}

pub(crate) fn is_root() -> bool {
    cmd::output(cmd::new("id", &["-u"])).is_ok_and(|s| s.trim() == "0")
}

/// After the suite, no namespace, veth or XDP program of ours may remain.
fn check_leftovers() -> anyhow::Result<()> {
    let ns = cmd::output(cmd::new("ip", &["netns", "list"]))?;
    let ours: Vec<&str> = ns
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("nalab"))
        .collect();
    let links = cmd::output(cmd::new("ip", &["-o", "link", "show"]))?;
    let xdp: Vec<&str> = links
        .lines()
        .filter(|l| l.contains(" xdp") || l.contains("prog/xdp"))
        .filter_map(|l| l.split(": ").nth(1))
        .collect();
    let veths: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|n| n.starts_with("nalab"))
        .collect();
    // Pin directories (maps, XDP links) and state directories of lab agents.
    let pins: Vec<String> = ["/sys/fs/bpf", "/tmp"]
        .iter()
        .flat_map(|root| std::fs::read_dir(root).into_iter().flatten().flatten())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        // `nalab-<pid>-<n>-<tag>`: what the lab's `StateDirs` creates.
        .filter(|n| {
            n.strip_prefix("nalab-")
                .and_then(|r| r.split_once('-'))
                .is_some_and(|(pid, _)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    if !ours.is_empty() || !xdp.is_empty() || !veths.is_empty() || !pins.is_empty() {
        bail!(
            "the tests left things behind: namespaces {ours:?}, XDP on {xdp:?}, veths {veths:?}, \
             pin/state directories {pins:?}. A test's teardown is broken; remove them with \
             `ip netns del NAME` / `ip link set dev IF xdp off` / `rm -r /sys/fs/bpf/NAME`."
        );
    }
    println!("no namespaces, veths, XDP programs or pinned maps left behind");
    Ok(())
}
