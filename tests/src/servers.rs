//! Real servers the tests start inside lab namespaces (Prometheus, sshd, nats-server, bird):
//! finding the program, and a process guard that takes it down with the test.
use std::{
    path::{Path, PathBuf},
    process::Child,
};

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
