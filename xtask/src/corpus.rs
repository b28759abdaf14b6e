//! `corpus` and `scorecard`: thin drivers of the lab crate's `netanom-corpus` and
//! `netanom-scorecard` programs (tests/src/corpus, tests/src/scorecard).
use std::path::PathBuf;

use anyhow::bail;

use crate::{cmd, setup::Env, tasks};

/// `cargo xtask corpus [--only NAME]...`: re-records the lab captures of tests/corpus/ and
/// their manifest entries (setup has installed the tools).
pub fn record(only: &[String]) -> anyhow::Result<()> {
    if !tasks::is_root() {
        bail!("`cargo xtask corpus` records in network namespaces: run it as root.");
    }
    cmd::status(cmd::new(
        &tasks::cargo(),
        &["build", "--package", "netanom-lab", "--bin", "netanom-corpus"],
    ))?;
    let mut c = std::process::Command::new(cmd::root().join("target/debug/netanom-corpus"));
    c.current_dir(cmd::root());
    for name in only {
        c.args(["--only", name]);
    }
    cmd::status(c)
}

/// `cargo xtask scorecard [--only NAME]... [--out DIR]`: builds the agent (release) and runs
/// the scorecard over the corpus.
pub fn scorecard(env: &Env, only: &[String], out: Option<PathBuf>) -> anyhow::Result<()> {
    let agent = tasks::build(env, true)?;
    cmd::status(cmd::new(
        &tasks::cargo(),
        &[
            "build",
            "--release",
            "--package",
            "netanom-lab",
            "--bin",
            "netanom-scorecard",
        ],
    ))?;
    let mut c = std::process::Command::new(cmd::root().join("target/release/netanom-scorecard"));
    c.current_dir(cmd::root())
        .env("NETANOM_BIN", &agent)
        .env("NETANOM_ORT_LIB", &env.ort_lib);
    let shared = cmd::root().join("..").join("shared");
    if shared.is_dir() {
        c.env("NETANOM_SHARED", &shared);
    }
    for name in only {
        c.args(["--only", name]);
    }
    if let Some(o) = out {
        c.arg("--out").arg(o);
    }
    cmd::status(c)
}
