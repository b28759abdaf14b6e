//! Real servers the tests start inside lab namespaces (Prometheus, sshd, nats-server, bird):
//! finding the program, and a process guard that takes it down with the test.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
};

use anyhow::{Context, Result, bail};

/// `/usr/bin/NAME` or `/usr/sbin/NAME` (where Debian installs it; bird is in sbin), else NAME
/// found on PATH; None when none exists (`cargo xtask setup` installs the packages the tests
/// need).
pub fn tool(name: &str) -> Option<PathBuf> {
    if let Some(fixed) = ["/usr/bin", "/usr/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
    {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| c.is_file())
    })
}

/// A child process killed (and reaped) on drop, so a failing test leaves no server behind.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A fresh self-signed P-256 certificate for `cn` (one day) written by `openssl req` into
/// `dir`: (certificate, key). For the TLS servers of the lab (the beacons' C2).
pub fn self_signed_cert(dir: &Path, cn: &str) -> Result<(PathBuf, PathBuf)> {
    let openssl = tool("openssl").context("openssl is not installed: run `cargo xtask setup`")?;
    let (cert, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let out = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .args(["-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("cannot run openssl req")?;
    if !out.status.success() {
        bail!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((cert, key))
}
