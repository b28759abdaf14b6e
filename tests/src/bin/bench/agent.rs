//! The agent under benchmark: started in a lab namespace, its CPU and memory read from /proc.
use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context as _;
use netanom_lab::{Pair, StateDirs};

pub(crate) fn agent_bin() -> PathBuf {
    std::env::var_os("NETANOM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/netanom"))
}

/// `netanom run` on a's interface with `dirs`, no alerts, then `extra`; stdout to `stdout`.
pub(crate) fn spawn_agent(
    lab: &Pair,
    dirs: &StateDirs,
    extra: &[&str],
    stdout: Stdio,
) -> anyhow::Result<std::process::Child> {
    lab.a
        .command(agent_bin())
        .args(["run", "--iface", &lab.a_side.iface, "--alerts", ""])
        .args(["--pin-dir", dirs.pin(), "--state-dir", dirs.state()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", agent_bin().display()))
}

/// CPU seconds (user + system) and resident memory (bytes) of process `pid`.
pub(crate) fn cpu_and_rss(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is 0, utime 11, stime 12 (in clock ticks).
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf without side effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((ticks / hz.max(1.0), rss_kb * 1024))
}

/// The agent's CPU use (in % of one core) over `window`, and its resident memory at the end.
pub(crate) fn agent_load(pid: u32, window: Duration) -> anyhow::Result<(f64, f64)> {
    let (c0, _) = cpu_and_rss(pid).context("reading the agent's /proc entries")?;
    std::thread::sleep(window);
    let (c1, rss) = cpu_and_rss(pid).context("reading the agent's /proc entries")?;
    Ok((
        100.0 * (c1 - c0) / window.as_secs_f64(),
        rss as f64 / (1 << 20) as f64,
    ))
}

/// Stops the agent (SIGTERM) and reaps it.
pub(crate) fn stop(mut agent: std::process::Child) {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
}
