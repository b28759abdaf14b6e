//! The recorder behind `cargo xtask corpus`: each scenario of [`crate::corpus::scenarios`] in
//! a fresh gateway lab, with real tools and real servers, captured where the gateway meets the
//! servers; then its manifest entry (with the capture's sha256) written in place.
//!
//! Why a Rust program and not shell scripts: the lab crate already has the namespaces with
//! Drop guards and the sweep of crashed runs' leftovers, the quiet routed topology the agent's
//! own tests use, and the process guards; the scenario table is data the manifest check reads
//! too, so the command lines in the manifest are the ones that ran.
pub mod lab;
pub mod servers;
pub mod steps;
pub mod tcpdump;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    capture::{Roles, facts, sha256},
    manifest::Manifest,
    render,
    scenarios::Scenario,
};
use crate::{TempDir, sweep_leftovers, sweep_state_leftovers};

/// Benign traffic alone before the first step (the detector's learned levels start from
/// normal traffic, as on a real network) and after the last.
const LEAD_IN: Duration = Duration::from_secs(5);
const LEAD_OUT: Duration = Duration::from_secs(3);

/// The word list hydra guesses from (tests/corpus/wordlist.txt).
const WORDLIST: &str = "wordlist.txt";

/// What one recording produced.
#[derive(Debug)]
pub struct Recorded {
    /// The capture written into the corpus.
    pub file: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Frames in it.
    pub frames: u64,
    /// Capture time from its first to its last frame.
    pub duration_s: f64,
    /// How long the recording took.
    pub seconds_taken: f64,
}

/// Where a failed recording's logs are kept (its scratch directory goes with it).
pub fn logs_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/corpus-logs")
        .join(name)
}

/// Records `s` into `corpus_dir/<name>.pcap` and writes its entry into `corpus_dir/manifest.toml`.
pub fn record(s: &Scenario, corpus_dir: &Path) -> Result<Recorded> {
    let started = Instant::now();
    sweep_leftovers()?;
    sweep_state_leftovers();
    let dir = TempDir::new(&format!("corpus-{}", s.name));
    std::fs::copy(corpus_dir.join(WORDLIST), dir.path("words.txt"))
        .with_context(|| format!("copying {}", corpus_dir.join(WORDLIST).display()))?;
    let raw = dir.path("capture.pcap");
    if let Err(e) = capture(s, &dir.0, &raw) {
        let kept = logs_dir(s.name);
        keep_logs(&dir.0, &kept);
        return Err(e.context(format!(
            "recording {} (its logs are in {})",
            s.name,
            kept.display()
        )));
    }
    let file = corpus_dir.join(s.file());
    std::fs::copy(&raw, &file).with_context(|| format!("writing {}", file.display()))?;
    let f = facts(&file, &Roles::default())?;
    let digest = sha256(&file)?;
    write_entry(corpus_dir, s, &digest)?;
    Ok(Recorded {
        bytes: std::fs::metadata(&file)?.len(),
        file,
        frames: f.frames,
        duration_s: f.duration_s(),
        seconds_taken: started.elapsed().as_secs_f64(),
    })
}

/// The lab, the servers and tcpdump for the scenario's run; the capture goes to `raw`.
fn capture(s: &Scenario, dir: &Path, raw: &Path) -> Result<()> {
    let lab = lab::RecordLab::new(s)?;
    let _servers = servers::start(&lab.net.server, dir)?;
    let cap = tcpdump::Tcpdump::start(&lab.net.gw, lab.capture_iface(), raw, &dir.join("tcpdump.log"))?;
    run_steps(&steps::Env { lab: &lab, dir }, s)?;
    let dropped = cap.stop()?;
    if dropped > 0 {
        bail!("tcpdump lost {dropped} packets: the capture is incomplete; record it again");
    }
    Ok(())
}

/// Copies the `*.log` files of `dir` to `to` (best effort: this runs on a failure path).
fn keep_logs(dir: &Path, to: &Path) {
    let _ = std::fs::create_dir_all(to);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log") {
            let _ = std::fs::copy(&p, to.join(e.file_name()));
        }
    }
}

/// The lead-in, the steps beside the background client, the lead-out.
fn run_steps(env: &steps::Env, s: &Scenario) -> Result<()> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let bg = scope.spawn(|| steps::background(env, s.background, &stop, s.name));
        let run = || -> Result<()> {
            std::thread::sleep(LEAD_IN);
            let mut rng = steps::Rng::new(s.name);
            for step in s.steps {
                steps::run_step(env, step, &mut rng)?;
            }
            std::thread::sleep(LEAD_OUT);
            Ok(())
        };
        let result = run();
        stop.store(true, Ordering::Relaxed);
        let bg = bg
            .join()
            .map_err(|_| anyhow::anyhow!("the background client panicked"))?;
        result?;
        bg.map(|_| ())
    })
}

/// The Debian package and version of the scenario's tool, e.g. `nmap 7.93+dfsg1-1`.
fn tool_version(package: &str) -> String {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!("{package} {}", String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| package.to_owned())
}

/// Puts the scenario's entry into the manifest, then re-reads it (a broken manifest fails
/// here, not later).
fn write_entry(corpus_dir: &Path, s: &Scenario, digest: &str) -> Result<()> {
    let path = corpus_dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let e = render::entry(s, digest, &tool_version(s.tool));
    let order: Vec<&str> = super::scenarios::SCENARIOS.iter().map(|s| s.name).collect();
    std::fs::write(&path, render::upsert(&text, &e, &order))
        .with_context(|| format!("writing {}", path.display()))?;
    Manifest::load(&path)?;
    Ok(())
}
