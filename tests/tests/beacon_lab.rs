//! Beacons, live: an implant on an inside host (the server's namespace, behind the gateway)
//! polls an outside HTTPS command-and-control server (`openssl s_server -WWW` in the
//! attacker's namespace) with `curl` through the gateway where the agent runs, as the issue
//! describes: every 2 s, and every 2 to 3 s with jitter.
//!
//! - observe mode: the agent alerts on the channel within the beacon's first 30 connections;
//!   the alert names the inside host (the likely infected machine) and the C2 server, and
//!   nothing is blocked;
//! - mitigate mode with `detection.block_beacon_peers`: the C2 server is blocked as a source,
//!   so the channel is cut at the gateway (the next polls fail), and the inside host is not
//!   blocked. Only the beacon detector runs here (`--detectors beacons`): ten short HTTPS
//!   connections in 20 s also look like slow password guessing to `brute_force`, which would
//!   block the inside host first (see README.md, "Detection scorecard").
//!
//! Privileged (namespaces, XDP, bpffs); skipped otherwise. Bounded: at most 30 polls a run.
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use netanom_lab::{
    Gateway, StateDirs,
    agent::block_list,
    read_alerts, require_root,
    servers::{KillOnDrop, self_signed_cert, tool},
    start_agent, sweep_leftovers, sweep_state_leftovers,
};
use serde_json::Value;

/// The bound: alerted on within the beacon's first 30 connections.
const MAX_POLLS: u32 = 30;
/// The beacon detector's signature.
const BEACON_SID: u64 = 9_000_012;

/// A self-signed certificate and `openssl s_server -WWW` on the attacker's 443, serving
/// `beacon` from `dir`; dies with the test.
fn c2_server(lab: &Gateway, dir: &Path) -> KillOnDrop {
    let openssl = tool("openssl").expect("openssl is installed (cargo xtask setup)");
    std::fs::write(dir.join("beacon"), "{\"task\":\"sleep\"}\n").unwrap();
    let (cert, key) = self_signed_cert(dir, "c2.lab.example").unwrap();
    let c2 = lab.attacker_link.host.ep.ipv4;
    let child = lab
        .attacker
        .command(&openssl)
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("{c2}:443"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c2 = KillOnDrop(child);
    // Listening before the first poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    while poll(lab) != Some(true) {
        assert!(
            Instant::now() < deadline,
            "the C2 server did not answer within 10 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c2
}

/// One beacon poll from the inside host to the C2; `Some(success)`.
fn poll(lab: &Gateway) -> Option<bool> {
    let c2 = lab.attacker_link.host.ep.ipv4;
    lab.server
        .command("curl")
        .args(["-sk", "-o", "/dev/null", "--max-time", "2"])
        .arg(format!("https://{c2}/beacon"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .map(|s| s.success())
}

/// The beacon alerts in `alerts`.
fn beacons(alerts: &Path) -> Vec<Value> {
    read_alerts(alerts)
        .into_iter()
        .filter(|a| a["alert"]["signature_id"] == BEACON_SID)
        .collect()
}

/// What a beacon run saw.
struct Run {
    /// Polls made until the first beacon alert (it included).
    polls_to_alert: Option<u32>,
    /// Whether each poll succeeded, in order.
    results: Vec<bool>,
    alerts: Vec<Value>,
}

/// Polls every `period_ms` (+ up to `jitter_ms`, from a fixed sequence) until the agent
/// alerts and `after` more polls were made, or [`MAX_POLLS`].
fn beacon(lab: &Gateway, alerts: &Path, period_ms: u64, jitter_ms: u64, after: u32) -> Run {
    let mut run = Run {
        polls_to_alert: None,
        results: Vec::new(),
        alerts: Vec::new(),
    };
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 1..=MAX_POLLS {
        run.results.push(poll(lab) == Some(true));
        // The alert for a connection comes once its flow ended (FIN) and was drained.
        std::thread::sleep(Duration::from_millis(300));
        if run.polls_to_alert.is_none() && !beacons(alerts).is_empty() {
            run.polls_to_alert = Some(i);
        }
        if run.polls_to_alert.is_some_and(|p| i >= p + after) {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let jitter = if jitter_ms == 0 { 0 } else { rng % (jitter_ms + 1) };
        std::thread::sleep(
            Duration::from_millis(period_ms + jitter).saturating_sub(Duration::from_millis(300)),
        );
    }
    run.alerts = beacons(alerts);
    run
}

fn new_lab(tag: &str) -> (Gateway, StateDirs, PathBuf, PathBuf) {
    let lab = Gateway::new(tag).unwrap();
    lab.settle().unwrap();
    let dirs = StateDirs::new(tag);
    std::fs::create_dir_all(&dirs.state_dir).unwrap();
    let alerts = dirs.state_dir.join("alerts.json");
    let c2_dir = dirs.state_dir.join("c2");
    std::fs::create_dir_all(&c2_dir).unwrap();
    (lab, dirs, alerts, c2_dir)
}

#[test]
fn a_beacon_is_alerted_on_within_30_connections_and_its_peer_can_be_cut_off() {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP, bpffs)");
        return;
    }
    let started = Instant::now();
    sweep_leftovers().unwrap();
    sweep_state_leftovers();
    let (inside, c2) = ("198.18.3.2", "198.18.2.2");

    // Every 2 s, observe mode.
    let (lab, dirs, alerts, c2_dir) = new_lab("beacon2s");
    let server = c2_server(&lab, &c2_dir);
    let af = alerts.to_str().unwrap().to_owned();
    let agent = start_agent(&lab, &dirs, &["--alerts", &af, "--mode", "observe"]);
    let run = beacon(&lab, &alerts, 2000, 0, 0);
    let polls = run
        .polls_to_alert
        .expect("no beacon alert within 30 polls every 2 s");
    eprintln!("every 2 s: alerted at poll {polls} ({:.1?})", started.elapsed());
    assert!(polls <= MAX_POLLS);
    assert!(
        run.results.iter().all(|ok| *ok),
        "observe mode cuts nothing: {:?}",
        run.results
    );
    let a = &run.alerts[0];
    assert_eq!(
        (a["src_ip"].as_str(), a["dest_ip"].as_str()),
        (Some(inside), Some(c2)),
        "{a}"
    );
    assert_eq!(a["dest_port"], 443);
    let reason = a["netanom"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("inside host {inside} (likely infected)")),
        "{reason}"
    );
    assert!(
        block_list(&lab, &dirs, false).is_empty(),
        "observe mode blocks nothing"
    );
    drop(agent);
    drop(server);
    drop(lab);

    // Every 2 to 3 s, mitigate mode, the peer blocked.
    let (lab, dirs, alerts, c2_dir) = new_lab("beaconjit");
    let server = c2_server(&lab, &c2_dir);
    let af = alerts.to_str().unwrap().to_owned();
    let cfg = dirs.state_dir.join("netanom.toml");
    std::fs::write(&cfg, "[detection]\nblock_beacon_peers = true\n").unwrap();
    let cf = cfg.to_str().unwrap().to_owned();
    let agent = start_agent(
        &lab,
        &dirs,
        &[
            "--alerts",
            &af,
            "--mode",
            "mitigate",
            "--config",
            &cf,
            "--detectors",
            "beacons",
        ],
    );
    let run = beacon(&lab, &alerts, 2000, 1000, 2);
    let polls = run
        .polls_to_alert
        .expect("no beacon alert within 30 polls every 2-3 s");
    eprintln!("every 2-3 s: alerted at poll {polls} ({:.1?})", started.elapsed());
    let a = &run.alerts[0];
    assert_eq!(a["alert"]["action"], "blocked", "{a}");
    assert_eq!(a["netanom"]["block"]["prefix"], format!("{c2}/32"));
    let blocked: Vec<String> = block_list(&lab, &dirs, false)
        .iter()
        .map(|b| b["prefix"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(blocked.contains(&format!("{c2}/32")), "{blocked:?}");
    assert!(
        !blocked.iter().any(|p| p.starts_with(inside)),
        "the inside host is never blocked: {blocked:?}"
    );
    // The polls after the block fail: the C2's answers are dropped at the gateway.
    let after = &run.results[polls as usize..];
    assert!(
        !after.is_empty() && after.iter().all(|ok| !ok),
        "polls after the block: {after:?}"
    );
    drop(agent);
    drop(server);
    eprintln!("done in {:.1?}", started.elapsed());
}
