//! Running a scenario's steps, and the benign client's background traffic.
use std::{
    fs,
    io::Write as _,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use netanom::respond::prefix::Cidr;

use super::lab::RecordLab;
use crate::{
    Netns,
    corpus::scenarios::{Background, Host, Step},
};

/// Longest a single run of a repeated command (a beacon, a lookup) may take.
const REPEAT_TIMEOUT: Duration = Duration::from_secs(15);

/// A small deterministic generator (xorshift64*), seeded per scenario, for jitter and typing
/// speed: a re-recording has the same rhythm.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (FNV-1a of its bytes).
    pub fn new(seed: &str) -> Rng {
        let mut x: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes() {
            x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(x | 1)
    }

    /// A value in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        lo + r % (hi - lo + 1)
    }
}

/// Where a scenario's commands run and write their output.
pub struct Env<'a> {
    /// The namespaces.
    pub lab: &'a RecordLab,
    /// The scratch directory: working directory of every command, and their logs.
    pub dir: &'a Path,
}

fn spawn(ns: &Netns, dir: &Path, argv: &[&str], stdin: Stdio) -> Result<Child> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("steps.log"))?;
    let mut c: Command = ns.command(argv[0]);
    c.args(&argv[1..])
        .current_dir(dir)
        .stdin(stdin)
        .stdout(log.try_clone()?)
        .stderr(log);
    c.spawn()
        .with_context(|| format!("cannot start `{}`", argv.join(" ")))
}

/// Waits for `child`, killing it after `limit`.
fn wait_bounded(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs one step.
pub fn run_step(cx: &Env, step: &Step, rng: &mut Rng) -> Result<()> {
    match *step {
        Step::Run {
            host,
            argv,
            timeout_s,
        } => run_once(cx, host, argv, timeout_s),
        Step::Repeat {
            host,
            argvs,
            count,
            period_ms,
            jitter_ms,
        } => repeat(cx, host, argvs, count, (period_ms, jitter_ms), rng),
        Step::Typed { host, argv, lines } => typed(cx, host, argv, lines, rng),
        Step::SpoofInto { prefix } => spoof_into(cx.lab.ns(Host::Attacker), cx.dir, prefix),
        Step::Sleep { ms } => {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        }
    }
}

fn run_once(cx: &Env, host: Host, argv: &[&str], timeout_s: u64) -> Result<()> {
    let mut child = spawn(cx.lab.ns(host), cx.dir, argv, Stdio::null())?;
    let shown = argv.join(" ");
    match wait_bounded(&mut child, Duration::from_secs(timeout_s))? {
        None => bail!("`{shown}` did not finish within {timeout_s} s (its output is in steps.log)"),
        // hping3 exits 1 when its probes got no answer, which is what a flood expects.
        Some(st) if st.success() || (argv[0] == "hping3" && st.code() == Some(1)) => Ok(()),
        Some(st) => bail!("`{shown}` failed ({st}); its output is in steps.log"),
    }
}

fn repeat(
    cx: &Env,
    host: Host,
    argvs: &[&[&str]],
    count: u32,
    (period_ms, jitter_ms): (u64, u64),
    rng: &mut Rng,
) -> Result<()> {
    let t0 = Instant::now();
    let mut failed = 0;
    for i in 0..count {
        let nominal = u64::from(i) * period_ms + jitter_ms;
        let at = t0 + Duration::from_millis(rng.between(nominal - jitter_ms, nominal + jitter_ms));
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let argv = argvs[i as usize % argvs.len()];
        let mut child = spawn(cx.lab.ns(host), cx.dir, argv, Stdio::null())?;
        if !wait_bounded(&mut child, REPEAT_TIMEOUT)?.is_some_and(|s| s.success()) {
            failed += 1;
        }
    }
    if failed * 2 > count {
        bail!(
            "{failed} of {count} runs of `{}` failed (their output is in steps.log)",
            argvs[0].join(" ")
        );
    }
    Ok(())
}

/// Types `lines` into `argv`'s standard input: 60 to 220 ms between keys, 1 to 3 s of
/// reading after each line, like a person at a terminal.
fn typed(cx: &Env, host: Host, argv: &[&str], lines: &[&str], rng: &mut Rng) -> Result<()> {
    let mut child = spawn(cx.lab.ns(host), cx.dir, argv, Stdio::piped())?;
    std::thread::sleep(Duration::from_millis(2000));
    let mut stdin = child.stdin.take().context("no stdin")?;
    for line in lines {
        for b in line.bytes().chain([b'\n']) {
            stdin.write_all(&[b])?;
            stdin.flush()?;
            std::thread::sleep(Duration::from_millis(rng.between(60, 220)));
        }
        std::thread::sleep(Duration::from_millis(rng.between(1000, 3000)));
    }
    drop(stdin);
    match wait_bounded(&mut child, Duration::from_secs(10))? {
        Some(st) if st.success() => Ok(()),
        other => bail!(
            "the session `{}` did not end cleanly ({other:?}); its output is in steps.log",
            argv.join(" ")
        ),
    }
}

/// nftables in the attacker's namespace: every IPv4 source address leaving it is rewritten
/// into `prefix` (its host bits kept), and anything still outside the lab's range is dropped,
/// so random-source tools (hping3 --rand-source) never put a foreign address on a lab wire.
fn spoof_into(ns: &Netns, dir: &Path, prefix: &str) -> Result<()> {
    let Ok(Cidr::V4 { addr, len }) = prefix.parse::<Cidr>() else {
        bail!("spoofed range {prefix} is not an IPv4 prefix");
    };
    let host_mask = std::net::Ipv4Addr::from(u32::MAX.checked_shr(u32::from(len)).unwrap_or(0));
    let rules = format!(
        "table ip nalab_spoof {{\n  chain out {{\n    type filter hook output priority raw; policy accept;\n    \
         ip saddr set ip saddr & {host_mask} | {addr}\n    ip saddr != 198.18.0.0/15 drop\n  }}\n}}\n\
         table ip6 nalab_spoof {{\n  chain out {{\n    type filter hook output priority raw; policy accept;\n    \
         ip6 saddr != 2001:db8::/32 drop\n  }}\n}}\n"
    );
    let file = dir.join("spoof.nft");
    fs::write(&file, rules)?;
    let out = ns
        .command("nft")
        .arg("-f")
        .arg(&file)
        .output()
        .context("running nft")?;
    if !out.status.success() {
        bail!(
            "nft could not install the source rewrite: {} (is nftables installed? `cargo xtask setup --corpus`)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let listed = ns
        .command("nft")
        .args(["list", "table", "ip", "nalab_spoof"])
        .output()?;
    if !String::from_utf8_lossy(&listed.stdout).contains("ip saddr set") {
        bail!("the source rewrite is not in place after nft -f; not sending spoofed traffic");
    }
    Ok(())
}

/// The benign client's background traffic: a web page or a DNS lookup every 0.2 to 1.2 s
/// until `stop` is set.
pub fn background(cx: &Env, kind: Background, stop: &AtomicBool, seed: &str) -> Result<u32> {
    let (web, dns): (&[&[&str]], &[&[&str]]) = match kind {
        Background::None => return Ok(0),
        Background::V4 => (
            &[
                &["curl", "-s", "-o", "/dev/null", "http://198.18.3.2/index.html"],
                &["curl", "-s", "-o", "/dev/null", "http://198.18.3.2/news.html"],
            ],
            &[
                &["dig", "@198.18.3.2", "+tries=1", "www.lab.example"],
                &["dig", "@198.18.3.2", "+tries=1", "mirror.lab.example", "AAAA"],
            ],
        ),
        Background::V6 => (
            &[
                &[
                    "curl",
                    "-s",
                    "-g",
                    "-o",
                    "/dev/null",
                    "http://[2001:db8:3::2]/index.html",
                ],
                &[
                    "curl",
                    "-s",
                    "-g",
                    "-o",
                    "/dev/null",
                    "http://[2001:db8:3::2]/news.html",
                ],
            ],
            &[&["dig", "@2001:db8:3::2", "+tries=1", "www.lab.example", "AAAA"]],
        ),
    };
    let mut rng = Rng::new(seed);
    let mut done = 0;
    // Bounded: at most an hour of it.
    while !stop.load(Ordering::Relaxed) && done < 10_000 {
        let set = if rng.between(0, 1) == 0 { web } else { dns };
        let argv = set[rng.between(0, set.len() as u64 - 1) as usize];
        let mut child = spawn(cx.lab.ns(Host::Client), cx.dir, argv, Stdio::null())?;
        if wait_bounded(&mut child, Duration::from_secs(5))?.is_some_and(|s| s.success()) {
            done += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.between(200, 1200)));
    }
    Ok(done)
}
