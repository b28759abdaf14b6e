//! The capture: tcpdump on the gateway's end of the server link.
//!
//! That one interface carries everything the scenario sends toward the servers — the
//! attacker's and the benign client's traffic and the servers' answers, both directions —
//! with Ethernet framing (`tcpdump -i any` would write Linux cooked frames, which `netanom run
//! --pcap` refuses). It is what a gateway in front of the servers sees.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{Netns, servers::KillOnDrop};

/// Bytes kept of each frame: Ethernet (14) + IPv6 (40) or IPv4 with options (up to 60) + a
/// TCP header with options (up to 60) fit, which is all the parser reads; payloads are cut,
/// which keeps the captures small.
pub const SNAPLEN: u32 = 160;

/// A running capture; [`Tcpdump::stop`] ends it cleanly, dropping it kills it.
pub struct Tcpdump {
    proc: KillOnDrop,
    log: PathBuf,
}

impl Tcpdump {
    /// Starts tcpdump on `iface` in `ns`, writing `file`, and waits until it listens.
    pub fn start(ns: &Netns, iface: &str, file: &Path, log: &Path) -> Result<Tcpdump> {
        let prog = crate::servers::tool("tcpdump").or_else(|| Some(PathBuf::from("/usr/bin/tcpdump")));
        let prog = prog
            .filter(|p| p.is_file())
            .context("tcpdump is not installed: run `cargo xtask setup --corpus`")?;
        let err = fs::File::create(log)?;
        let child = ns
            .command(prog)
            // -U: every packet is written as it comes; -Z root: keep writing as root (the
            // scratch directory is root's).
            .args([
                "-i",
                iface,
                "-n",
                "-U",
                "-Z",
                "root",
                "-s",
                &SNAPLEN.to_string(),
                "-w",
            ])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .context("starting tcpdump")?;
        let cap = Tcpdump {
            proc: KillOnDrop(child),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cap.log_text().contains("listening on") {
            if Instant::now() > deadline {
                bail!(
                    "tcpdump did not start listening within 10 s: {}",
                    cap.log_text().trim()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cap)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the capture (SIGINT, so the file is complete) and returns how many packets the
    /// kernel dropped before tcpdump read them.
    pub fn stop(mut self) -> Result<u64> {
        let pid = self.proc.0.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.proc.0.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("tcpdump did not stop within 10 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = self.log_text();
        let dropped = text
            .lines()
            .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("tcpdump's summary has no drop count: {}", text.trim()))?;
        Ok(dropped)
    }
}
