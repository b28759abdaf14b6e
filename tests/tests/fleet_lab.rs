//! A fleet of gateways sharing decisions and alerts over NATS JetStream (issue 16), end to
//! end: a real `nats-server -js` with authentication (one user per gateway, allowed to publish
//! only its own subjects) in its own namespace, and three gateway labs (A, B, C), each with an
//! agent in mitigate mode whose `[fleet]` points at it ([`netanom_lab::fleet`]).
//!
//! - **Propagation:** a scanner blocked at A is blocked at B and C within 2 s of A's block,
//!   with origin `fleet` and gateway `gw-a`; its frames through B are dropped.
//! - **Rails:** a prefix allowlisted on B is never blocked there by A's decision (C applies
//!   it); a gateway outside B's and C's `trust` is ignored there (A, trusting all, applies it).
//! - **NATS down:** with the server stopped, A still blocks a new attacker locally; once the
//!   server is back, B and C get that block.
//! - **Late joiner:** C restarted with empty lists has the fleet's active blocks as soon as it
//!   reports ready (the stream replayed).
//! - **Alerts:** alerts of A and B are read back from the alerts stream (`netanom fleet tail`).
//! - **Status and unblock:** `netanom fleet status` at A lists its peers with their
//!   heartbeats, last decision and lag; `netanom block del --fleet` at A lifts the block at B
//!   and C.
//! - **Figures:** the time from A's block to B's (p50, p95 of 20), against JetStream's
//!   acknowledgement, and the decisions per second the path sustains (a burst of 1000).
//! - **Cluster:** with a 3-node JetStream cluster (the streams on three replicas) and the node
//!   the gateways use killed, decisions still flow.
use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use netanom_lab::{
    Gateway, Pace, RawSender, StateDirs,
    agent::{agent_bin, block_of, netanom_in},
    fleet::{Member, MemberConfig, fleet_section, measure, quantile},
    http::http_get,
    nats::Nats,
    require_root,
    servers::KillOnDrop,
    sweep_leftovers, sweep_state_leftovers, time_to_block, traffic, wait_until,
};

/// The lab scenarios share two cores: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whom B and C trust (not gw-x).
const TRUSTED: [&str; 3] = ["gw-a", "gw-b", "gw-c"];

fn trusted() -> Vec<String> {
    TRUSTED.iter().map(|s| (*s).to_owned()).collect()
}

/// A port scan of `gw`'s server from its attacker's alias 198.18.2.`last`.
fn scan(gw: &Gateway, last: u8) {
    let tx = RawSender::open(&gw.attacker, &gw.attacker_link.host.iface).unwrap();
    let src = gw.attacker_alias(last).unwrap();
    let dst = gw.to_server(&gw.attacker_link);
    let pace = Pace::rate(3_000, Duration::from_secs(3));
    traffic::port_sweep(&tx, &src, &dst, false, 1..=6000, &pace).unwrap();
}

/// `frames` SYNs to `gw`'s server from the attacker's alias 198.18.2.`last`, quickly.
fn frames_from(gw: &Gateway, last: u8, frames: u16) {
    let tx = RawSender::open(&gw.attacker, &gw.attacker_link.host.iface).unwrap();
    let src = gw.attacker_alias(last).unwrap();
    let dst = gw.to_server(&gw.attacker_link);
    let pace = Pace::rate(2_000, Duration::from_secs(2));
    traffic::port_sweep(&tx, &src, &dst, false, 20_000..=20_000 + frames - 1, &pace).unwrap();
}

fn metrics(m: &Member) -> String {
    http_get(&m.gw.gw, netanom_lab::fleet::METRICS_PORT, "/metrics", None)
        .map(|(_, _, body)| body)
        .unwrap_or_default()
}

/// The value of the sample `series` (name and labels, as written) in a metrics text.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Prints what `m`'s agent logged about the fleet.
fn dump(m: &mut Member) {
    if let Some(a) = &mut m.agent {
        let _ = a.wait_for_stderr("never printed", Duration::from_millis(100));
        for l in a.stderr_seen.iter().filter(|l| l.contains("fleet")) {
            eprintln!("{}: {l}", m.id);
        }
    }
}

/// Waits (at most 3 s: the metrics are refreshed every second) until `series` at `m` is at
/// least `min`.
fn wait_sample(m: &Member, series: &str, min: f64) {
    let got = wait_until(Duration::from_secs(3), || {
        (sample(&metrics(m), series) >= min).then_some(())
    });
    assert!(got.is_some(), "{series} < {min} at {}: {}", m.id, metrics(m));
}

/// Waits (at most `limit`) until `m` blocks `prefix`; how long it took.
fn wait_block(m: &Member, prefix: &str, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    wait_until(limit, || m.blocks(prefix).then(|| t0.elapsed()))
}

/// The `block list` entry of `prefix` at `m` says origin fleet, from `gateway`.
fn assert_fleet_entry(m: &Member, prefix: &str, gateway: &str) {
    let e =
        block_of(&m.gw, &m.dirs, prefix, false).unwrap_or_else(|| panic!("{prefix} not listed at {}", m.id));
    assert_eq!(e["origin"], "fleet", "{e}");
    assert_eq!(e["gateway"], gateway, "{e}");
}

struct Lab {
    nats: Nats,
    a: Member,
    b: Member,
    c: Member,
}

fn lab() -> Option<Lab> {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP, bpffs)");
        return None;
    }
    if netanom_lab::servers::tool("nats-server").is_none() {
        panic!("nats-server is not installed: run `cargo xtask setup` (Debian's nats-server)");
    }
    sweep_leftovers().unwrap();
    sweep_state_leftovers();
    let mut nats = Nats::new("fleet", &["gw-a", "gw-b", "gw-c", "gw-x"]).unwrap();
    let a = Member::new("gw-a", "flta", &mut nats, 11).unwrap();
    let b = Member::new("gw-b", "fltb", &mut nats, 12).unwrap();
    let c = Member::new("gw-c", "fltc", &mut nats, 13).unwrap();
    nats.start().unwrap();
    a.configure(&MemberConfig::default()).unwrap();
    b.configure(&MemberConfig {
        trust: trusted(),
        allow: vec!["198.18.2.77/32".into()],
        ..MemberConfig::default()
    })
    .unwrap();
    c.configure(&MemberConfig {
        trust: trusted(),
        ..MemberConfig::default()
    })
    .unwrap();
    Some(Lab { nats, a, b, c })
}

/// A's scanner is blocked at B and C within 2 s of A's block; its frames through B drop.
fn propagation(lab: &Lab) {
    let gw = &lab.a.gw;
    let blocked = time_to_block(gw, &lab.a.dirs, "198.18.2.66/32", || scan(gw, 66));
    assert!(blocked.is_some(), "A did not block its scanner");
    for m in [&lab.b, &lab.c] {
        let t = wait_block(m, "198.18.2.66/32", Duration::from_secs(2));
        assert!(t.is_some(), "{} did not get A's block within 2 s", m.id);
        eprintln!("A blocked its scanner after {blocked:?}; {} {t:?} later", m.id);
        assert_fleet_entry(m, "198.18.2.66/32", "gw-a");
    }
    let series = "netanom_packets_dropped_total{reason=\"blocklist\"}";
    let before = sample(&metrics(&lab.b), series);
    frames_from(&lab.b.gw, 66, 200);
    let dropped = wait_until(Duration::from_secs(3), || {
        let now = sample(&metrics(&lab.b), series);
        (now - before >= 200.0).then_some(now - before)
    });
    assert!(
        dropped.is_some(),
        "B did not drop the scanner's frames: {}",
        metrics(&lab.b)
    );
}

/// B's allowlist wins over A's decision (C applies it); gw-x is outside B's and C's trust.
fn rails(lab: &Lab) {
    let gw = &lab.a.gw;
    let blocked = time_to_block(gw, &lab.a.dirs, "198.18.2.77/32", || scan(gw, 77));
    assert!(blocked.is_some(), "A did not block 198.18.2.77");
    assert!(wait_block(&lab.c, "198.18.2.77/32", Duration::from_secs(2)).is_some());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !lab.b.blocks("198.18.2.77/32"),
        "B blocked its allowlisted prefix"
    );
    wait_sample(
        &lab.b,
        "netanom_fleet_decisions_ignored_total{reason=\"allowlisted\"}",
        1.0,
    );

    // gw-x, with its own NATS user, publishes an operator's block from A's namespace.
    let x = StateDirs::new("fltx");
    std::fs::create_dir_all(&x.state_dir).unwrap();
    let config = x.state_dir.join("x.toml");
    std::fs::write(&config, fleet_section("gw-x", &lab.a.urls, &[])).unwrap();
    let args = [
        "block",
        "add",
        "198.18.2.99",
        "--ttl",
        "60",
        "--fleet",
        "--config",
        config.to_str().unwrap(),
        "--pin-dir",
        x.pin(),
    ];
    let (code, out, err) = netanom_in(&lab.a.gw, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        wait_block(&lab.a, "198.18.2.99/32", Duration::from_secs(2)).is_some(),
        "A trusts all"
    );
    assert_fleet_entry(&lab.a, "198.18.2.99/32", "gw-x");
    std::thread::sleep(Duration::from_millis(300));
    for m in [&lab.b, &lab.c] {
        assert!(
            !m.blocks("198.18.2.99/32"),
            "{} applied an untrusted decision",
            m.id
        );
        wait_sample(
            m,
            "netanom_fleet_decisions_ignored_total{reason=\"untrusted\"}",
            1.0,
        );
    }
}

/// With NATS stopped A still blocks a new attacker; B and C get it when NATS returns.
fn nats_down(lab: &mut Lab) {
    lab.nats.stop();
    let gw = &lab.a.gw;
    let blocked = time_to_block(gw, &lab.a.dirs, "198.18.2.88/32", || scan(gw, 88));
    assert!(
        blocked.is_some_and(|t| t < Duration::from_secs(3)),
        "local blocking goes on without NATS: {blocked:?}"
    );
    assert!(!lab.b.blocks("198.18.2.88/32"));
    let down = wait_until(Duration::from_secs(3), || {
        (sample(&metrics(&lab.a), "netanom_fleet_connected") == 0.0).then_some(())
    });
    assert!(down.is_some(), "{}", metrics(&lab.a));
    lab.nats.start().unwrap();
    for m in [&mut lab.b, &mut lab.c] {
        let t = wait_block(m, "198.18.2.88/32", Duration::from_secs(10));
        if t.is_none() {
            dump(&mut lab.a);
            dump(m);
        }
        assert!(
            t.is_some(),
            "{} did not get the block decided while NATS was down",
            m.id
        );
        eprintln!("after NATS returned, {} blocked 198.18.2.88 in {t:?}", m.id);
    }
    wait_sample(&lab.a, "netanom_fleet_connections_total", 2.0);
    wait_sample(
        &lab.a,
        "netanom_fleet_decisions_published_total{action=\"block\"}",
        3.0,
    );
}

/// C restarted with empty lists has the fleet's active blocks as soon as it is ready.
fn late_joiner(lab: &mut Lab) {
    let stopped = lab.c.agent.take().map(|a| a.stop(libc::SIGTERM).0);
    assert_eq!(stopped, Some(Some(0)));
    // New, empty pin and state directories: a gateway that never ran.
    let fresh = StateDirs::new("fltc2");
    std::fs::create_dir_all(&fresh.state_dir).unwrap();
    std::fs::copy(&lab.c.config, fresh.state_dir.join("netanom.toml")).unwrap();
    lab.c.config = fresh.state_dir.join("netanom.toml");
    lab.c.dirs = fresh;
    assert_eq!(lab.c.active_blocks(), 0);
    lab.c.start();
    for p in ["198.18.2.66/32", "198.18.2.77/32", "198.18.2.88/32"] {
        assert!(lab.c.blocks(p), "C restarted is ready without {p}");
    }
    assert!(
        !lab.c.blocks("198.18.2.99/32"),
        "C applied gw-x's decision on replay"
    );
    let s = netanom_lab::agent::netanom_json(
        &lab.c.gw,
        &["fleet", "status", "--json", "--state-dir", lab.c.dirs.state()],
    );
    assert_eq!(s["replayed"], true, "{s}");
    assert!(s["remote_blocks"].as_u64() >= Some(0), "{s}");
}

/// Alerts of both A and B, read back from the alerts stream with `netanom fleet tail`.
fn alerts(lab: &Lab) {
    // B's own scanner: B alerts (and blocks, and shares it).
    let gw = &lab.b.gw;
    let blocked = time_to_block(gw, &lab.b.dirs, "198.18.2.55/32", || scan(gw, 55));
    assert!(blocked.is_some(), "B did not block its scanner");
    assert!(wait_block(&lab.a, "198.18.2.55/32", Duration::from_secs(2)).is_some());
    let mut cmd = lab.a.gw.gw.command(agent_bin());
    cmd.args(["fleet", "tail", "--json", "--all", "--count", "50", "--config"])
        .arg(&lab.a.config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut hosts = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while hosts.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["event_type"], "alert", "{v}");
            hosts.insert(v["host"].as_str().unwrap_or_default().to_owned());
        }
    }
    drop(child);
    assert!(hosts.contains("gw-a") && hosts.contains("gw-b"), "{hosts:?}");
}

/// `netanom fleet status` at A lists B and C (heartbeats) with B's last decision; an operator's
/// `block del --fleet` at A lifts the fleet's block at B and C.
fn status_and_unblock(lab: &Lab) {
    let listed = wait_until(Duration::from_secs(5), || {
        let s = netanom_lab::agent::netanom_json(
            &lab.a.gw,
            &["fleet", "status", "--json", "--state-dir", lab.a.dirs.state()],
        );
        let peers = s["peers"].as_array().cloned().unwrap_or_default();
        let peer = |id: &str| peers.iter().find(|p| p["gateway"] == id).cloned();
        let b = peer("gw-b")?;
        (s["connection"] == "connected"
            && b["heartbeat_at"].is_number()
            && b["last_decision"] == "block 198.18.2.55/32"
            && b["lag_s"].is_number()
            && peer("gw-c").is_some_and(|c| c["heartbeat_at"].is_number()))
        .then_some(s)
    });
    assert!(listed.is_some(), "fleet status at A lacks its peers");
    let (code, text, err) = netanom_in(&lab.a.gw, &["fleet", "status", "--state-dir", lab.a.dirs.state()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.contains("connection:   connected") && text.contains("gw-b"),
        "{text}"
    );
    let config = lab.a.config.to_str().unwrap();
    let args = [
        "block",
        "del",
        "198.18.2.88/32",
        "--fleet",
        "--config",
        config,
        "--pin-dir",
        lab.a.dirs.pin(),
    ];
    let (code, out, err) = netanom_in(&lab.a.gw, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    for m in [&lab.b, &lab.c] {
        let gone = wait_until(Duration::from_secs(2), || {
            (!m.blocks("198.18.2.88/32")).then_some(())
        });
        assert!(gone.is_some(), "{} kept the block the fleet lifted", m.id);
    }
}

#[test]
fn a_fleet_shares_blocks_and_alerts_through_nats_jetstream() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let Some(mut lab) = lab() else {
        return;
    };
    for m in [&mut lab.a, &mut lab.b, &mut lab.c] {
        m.start();
    }
    propagation(&lab);
    rails(&lab);
    nats_down(&mut lab);
    late_joiner(&mut lab);
    alerts(&lab);
    status_and_unblock(&lab);
    let bench = measure(&lab.a, &lab.b, 20, 1000, 60).unwrap();
    eprintln!(
        "fleet: A's block to B's: p50 {:.1} ms, p95 {:.1} ms (JetStream's ack: p50 {:.1} ms, p95 {:.1} ms); \
         a burst of {}: {:.0} decisions/s applied at B ({:.0}/s published and acknowledged)",
        quantile(&bench.propagation, 0.5) * 1e3,
        quantile(&bench.propagation, 0.95) * 1e3,
        quantile(&bench.ack, 0.5) * 1e3,
        quantile(&bench.ack, 0.95) * 1e3,
        bench.burst,
        bench.applied_per_s,
        bench.published_per_s
    );
    assert!(quantile(&bench.propagation, 0.95) < 2.0);
    for m in [&mut lab.a, &mut lab.b, &mut lab.c] {
        drop(m.agent.take());
    }
    eprintln!("fleet lab: {:.0} s", t0.elapsed().as_secs_f64());
}

/// With a 3-node JetStream cluster and the node the gateways use killed, decisions still flow
/// (the decisions stream has three replicas; the clients fail over).
#[test]
fn decisions_flow_through_a_cluster_with_a_node_down() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP, bpffs)");
        return;
    }
    sweep_leftovers().unwrap();
    sweep_state_leftovers();
    let mut nats = Nats::cluster("flcl", &["gw-a", "gw-b"], 3).unwrap();
    let mut a = Member::new("gw-a", "flcla", &mut nats, 21).unwrap();
    let mut b = Member::new("gw-b", "flclb", &mut nats, 22).unwrap();
    nats.start().unwrap();
    for m in [&a, &b] {
        m.configure(&MemberConfig::default()).unwrap();
    }
    a.start();
    b.start();
    let gw = &a.gw;
    let blocked = time_to_block(gw, &a.dirs, "198.18.2.66/32", || scan(gw, 66));
    assert!(blocked.is_some(), "A did not block its scanner");
    assert!(
        wait_block(&b, "198.18.2.66/32", Duration::from_secs(2)).is_some(),
        "{}",
        nats.log()
    );
    // Node 0 (first in every gateway's list) dies; the stream's other replicas go on.
    nats.stop_node(0);
    let blocked = time_to_block(gw, &a.dirs, "198.18.2.67/32", || scan(gw, 67));
    assert!(blocked.is_some(), "A did not block its second scanner");
    // NATS elects new stream and metadata leaders first (several seconds on 2.9).
    let t = wait_block(&b, "198.18.2.67/32", Duration::from_secs(45));
    if t.is_none() {
        dump(&mut a);
        dump(&mut b);
    }
    assert!(
        t.is_some(),
        "no decision through the cluster with a node down: {}",
        nats.log()
    );
    eprintln!("with node 0 down, B blocked A's second scanner {t:?} after A");
    drop(a.agent.take());
    drop(b.agent.take());
}

/// The example cluster configuration (deploy/nats/cluster.conf) is one nats-server accepts.
#[test]
fn the_example_nats_cluster_configuration_is_valid() {
    let Some(nats) = netanom_lab::servers::tool("nats-server") else {
        eprintln!("skipped: nats-server not installed (cargo xtask setup)");
        return;
    };
    let file = netanom_lab::deploy::repo_file("deploy/nats/cluster.conf");
    let out = std::process::Command::new(nats)
        .arg("-t")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
