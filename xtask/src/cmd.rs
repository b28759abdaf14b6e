//! Running commands with readable failures.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The workspace root (the parent of xtask/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A command that runs in the workspace root.
pub fn new(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(root());
    c
}

fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `c` with inherited output; fails naming the command if it fails.
pub fn status(mut c: Command) -> anyhow::Result<()> {
    let what = describe(&c);
    let st = c.status().with_context(|| format!("could not start `{what}`"))?;
    if !st.success() {
        bail!("`{what}` failed ({st})");
    }
    Ok(())
}

/// Runs `c` quietly and returns its stdout; fails with its stderr.
pub fn output(mut c: Command) -> anyhow::Result<String> {
    let what = describe(&c);
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
