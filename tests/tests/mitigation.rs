//! Mitigation end to end, with the real agent in the namespace lab: pinned block and allow
//! lists driven by `netanom block|allow|status` with and without an agent; floods and scans
//! blocked within 2 seconds in mitigate mode while the benign host keeps its traffic; observe
//! mode drops nothing; allowlisted sources are never blocked; blocks expire in the kernel
//! with the agent dead and survive restarts; a flood from thousands of spoofed sources (a
//! replay of a real capture when the shared captures are present) gets a victim alert and a
//! pattern rate limit instead of thousands of blocks.
//!
//! Side `a` runs the agent (its veth is the "gateway" interface); side `b` is the outside:
//! the benign host is b's own address 198.18.0.2, attackers are other addresses of
//! 198.18.0.0/24 sent from b's interface.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use netanom_lab::{
    Agent, Pace, Pair, RawReceiver, RawSender, StateDirs,
    agent::{block_list, block_of, netanom_in, netanom_json, status_json, xdp_attached},
    lab_setup,
    probes::{attacker, spoofed_syn_flood, udp_through},
    read_alerts, start_agent as start_lab_agent, time_to_block, traffic,
};
use serde_json::Value;

/// The scenarios share two cores: run them one at a time so timings mean something.
static SERIAL: Mutex<()> = Mutex::new(());

fn start(lab: &Pair, dirs: &StateDirs, extra: &[&str]) -> Agent {
    start_lab_agent(lab, dirs, extra)
}

#[test]
fn blocklist_commands_ttl_in_the_kernel_and_restarts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, dirs)) = lab_setup("blk") else {
        return;
    };
    let pin = dirs.pin();
    let bad = attacker(&lab, 66);
    let good = lab.b_side.ep;

    // Bad input: clear errors, nothing created.
    let (code, _, err) = netanom_in(&lab, &["block", "add", "198.18.0.66/33", "--pin-dir", pin]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("prefix length must be 0 to 32"), "{err}");
    let (code, _, err) = netanom_in(&lab, &["block", "list", "--pin-dir", pin]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no netanom maps are pinned"), "{err}");
    let (code, _, err) = netanom_in(&lab, &["block", "add", "198.18.0.0/24", "--pin-dir", pin]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("lock you out"),
        "the lab's own address is in that prefix: {err}"
    );

    // Without an agent: the command creates and pins the maps.
    let (code, out, err) = netanom_in(
        &lab,
        &[
            "block",
            "add",
            "198.18.0.66",
            // Long enough for an agent to start on a loaded machine before it lapses.
            "--ttl",
            "12",
            "--reason",
            "lab test",
            "--pin-dir",
            pin,
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("blocked 198.18.0.66/32 for 12 s"), "{out}");
    let b = block_of(&lab, &dirs, "198.18.0.66/32", false).expect("listed");
    assert_eq!(b["reason"], "lab test");
    assert_eq!(b["origin"], "manual");
    assert!(b["active"].as_bool().unwrap());

    // An agent enforces it: the blocked source's frames are dropped, the benign host's pass.
    let agent = start(&lab, &dirs, &[]);
    assert_eq!(udp_through(&lab, &bad, 50), 0, "blocked source dropped");
    assert_eq!(udp_through(&lab, &good, 50), 50, "benign host passes");
    let b = block_of(&lab, &dirs, "198.18.0.66/32", false).unwrap();
    assert_eq!(b["dropped_packets"], 50, "per-entry drop count: {b}");

    // The agent dies: the pinned XDP link keeps the program attached and the block enforced...
    drop(agent); // SIGKILL
    assert!(
        xdp_attached(&lab.a, &lab.a_side.iface),
        "still attached without an agent"
    );
    let st = netanom_json(
        &lab,
        &["status", "--json", "--pin-dir", pin, "--state-dir", dirs.state()],
    );
    assert_eq!(st["agent"], "not running (it did not stop cleanly)", "{st}");
    assert_eq!(st["pinned_links"][0], lab.a_side.iface.as_str(), "{st}");
    assert_eq!(
        udp_through(&lab, &bad, 20),
        0,
        "still dropped with the agent dead"
    );
    // ...until its TTL lapses, which the kernel enforces by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    while block_of(&lab, &dirs, "198.18.0.66/32", false).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        block_of(&lab, &dirs, "198.18.0.66/32", false).is_none(),
        "expired"
    );
    assert_eq!(
        udp_through(&lab, &bad, 20),
        20,
        "expired block no longer drops (no agent)"
    );
    let all = netanom_json(&lab, &["block", "list", "--json", "--all", "--pin-dir", pin]);
    assert_eq!(all[0]["active"], false, "remembered for escalation: {all}");

    // A new agent replaces the orphaned program; blocks added while it runs survive a
    // restart.
    let agent = start(&lab, &dirs, &[]);
    assert!(
        agent
            .stderr_seen
            .iter()
            .any(|l| l.contains("left attached by a previous agent"))
    );
    let (code, _, err) = netanom_in(
        &lab,
        &["block", "add", "198.18.0.77/32", "--ttl", "600", "--pin-dir", pin],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, _, _) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0));
    assert!(!xdp_attached(&lab.a, &lab.a_side.iface), "a clean stop detaches");
    let st = netanom_json(
        &lab,
        &["status", "--json", "--pin-dir", pin, "--state-dir", dirs.state()],
    );
    assert_eq!(st["agent"], "stopped", "{st}");
    assert_eq!(st["blocks_active"], 1, "{st}");
    let _agent = start(&lab, &dirs, &[]);
    assert!(block_of(&lab, &dirs, "198.18.0.77/32", false).is_some());
    assert_eq!(
        udp_through(&lab, &attacker(&lab, 77), 20),
        0,
        "kept across the restart"
    );
    let (code, out, _) = netanom_in(&lab, &["block", "del", "198.18.0.77/32", "--pin-dir", pin]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(udp_through(&lab, &attacker(&lab, 77), 20), 20);
    let (code, _, err) = netanom_in(&lab, &["block", "del", "198.18.0.77/32", "--pin-dir", pin]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not in the blocklist"), "{err}");
}

#[test]
fn mitigate_mode_blocks_floods_and_scans_fast_and_never_the_benign_host() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, dirs)) = lab_setup("mit") else {
        return;
    };
    let alerts_file = dirs.state_dir.join("alerts.json");
    let af = alerts_file.to_str().unwrap().to_owned();
    let agent = start(&lab, &dirs, &["--mode", "mitigate", "--alerts", &af]);
    let good = lab.b_side.ep;
    let n = udp_through(&lab, &good, 100);
    assert_eq!(
        n,
        100,
        "blocks {:?} alerts {:?}",
        block_list(&lab, &dirs, false),
        read_alerts(&alerts_file)
    );
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let dst = lab.a_side.ep;
    let flood = Pace::rate(20_000, Duration::from_secs(3));

    let udp = attacker(&lab, 66);
    let t = time_to_block(&lab, &dirs, "198.18.0.66/32", || {
        traffic::udp_burst(&tx, &udp, &dst, false, 60_000, 64, &flood).unwrap();
    })
    .expect("UDP flood source blocked");
    eprintln!("UDP flood blocked after {t:?}");
    assert!(t < Duration::from_secs(2), "{t:?}");

    let syn = attacker(&lab, 67);
    let t = time_to_block(&lab, &dirs, "198.18.0.67/32", || {
        traffic::tcp_syns(
            &tx,
            &syn,
            &dst,
            false,
            80,
            30_000,
            &Pace::rate(10_000, Duration::from_secs(3)),
        )
        .unwrap();
    })
    .expect("SYN flood source blocked");
    eprintln!("SYN flood blocked after {t:?}");
    assert!(t < Duration::from_secs(2), "{t:?}");

    let scan = attacker(&lab, 68);
    let t = time_to_block(&lab, &dirs, "198.18.0.68/32", || {
        traffic::port_sweep(
            &tx,
            &scan,
            &dst,
            false,
            1..=6000,
            &Pace::rate(3_000, Duration::from_secs(3)),
        )
        .unwrap();
    })
    .expect("port scanner blocked");
    eprintln!("port scan blocked after {t:?}");
    assert!(t < Duration::from_secs(2), "{t:?}");

    // The benign host was never blocked and its traffic still flows; attackers' does not.
    assert!(block_of(&lab, &dirs, "198.18.0.2/32", false).is_none());
    assert_eq!(udp_through(&lab, &good, 100), 100);
    assert_eq!(udp_through(&lab, &udp, 20), 0);
    let (code, out, _) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0));
    let last: Value = serde_json::from_str(out.lines().last().unwrap_or("{}")).unwrap();
    let dropped = last["events"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x[0] == "dropped_blocked"))
        .map(|x| x[1].as_u64().unwrap_or(0));
    eprintln!("kernel drops by the blocklist: {dropped:?}");

    // One EVE alert per decision, flushed before exit.
    let a = read_alerts(&alerts_file);
    for ip in ["198.18.0.66", "198.18.0.67", "198.18.0.68"] {
        let hit = a
            .iter()
            .find(|x| x["src_ip"] == ip && x["alert"]["action"] == "blocked")
            .unwrap_or_else(|| panic!("no blocked alert for {ip}: {a:?}"));
        assert_eq!(hit["event_type"], "alert");
        assert!(hit["timestamp"].as_str().unwrap().ends_with("+0000"));
        assert!(hit["flow_id"].as_u64().is_some());
        assert_eq!(hit["netanom"]["mode"], "mitigate");
        assert!(hit["netanom"]["block"]["ttl_s"].as_u64().unwrap() >= 1);
        assert!(!hit["netanom"]["thresholds"].as_object().unwrap().is_empty());
    }
    assert!(
        !a.iter().any(|x| x["src_ip"] == "198.18.0.2"),
        "no alert on the benign host"
    );
    // Whichever caught them first (the aggregates' learned thresholds, or the flow models on
    // the flows the server's resets ended), the alert carries its evidence.
    for x in &a {
        match x["netanom"]["kind"].as_str() {
            Some("anomalous_flows") => {
                let scores = x["netanom"]["scores"].as_object().unwrap();
                assert!(
                    scores.contains_key("autoencoder") && scores.contains_key("ensemble"),
                    "{x}"
                );
                // Contributions are measured against normal flows seen so far: none yet here.
                assert!(x["netanom"]["top_features"].is_array(), "{x}");
                assert!(
                    x["netanom"]["thresholds"]["autoencoder"].as_f64().unwrap() > 0.0,
                    "{x}"
                );
                assert!(
                    x["src_port"].as_u64().is_some() && x["dest_port"].as_u64().is_some(),
                    "{x}"
                );
            }
            Some("source_flood" | "source_syn_flood" | "source_scan") => {
                assert!(!x["netanom"]["aggregate"].as_object().unwrap().is_empty(), "{x}");
            }
            other => panic!("unexpected alert kind {other:?}: {x}"),
        }
    }
    let _ = std::fs::remove_file(&alerts_file);
}

#[test]
fn observe_mode_drops_nothing_and_allowlisted_attackers_are_never_blocked() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, dirs)) = lab_setup("obs") else {
        return;
    };
    let alerts_file = dirs.state_dir.join("alerts.json");
    let af = alerts_file.to_str().unwrap().to_owned();
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let dst = lab.a_side.ep;
    let bad = attacker(&lab, 66);
    // 8,000 UDP frames from `bad` at 8,000/s.
    let flood = || {
        let pace = Pace::rate(8_000, Duration::from_secs(3));
        traffic::udp_burst(&tx, &bad, &dst, false, 8_000, 64, &pace).unwrap()
    };

    // Observe (the default): a flood is reported as would-block, and nothing is dropped.
    let agent = start(&lab, &dirs, &["--alerts", &af]);
    let rx = RawReceiver::open(&lab.a, &lab.a_side.iface).unwrap();
    let sent = flood();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        block_list(&lab, &dirs, false).is_empty(),
        "observe mode blocks nothing"
    );
    let st = status_json(&lab, &dirs);
    assert_eq!(st["agent"], "running", "{st}");
    assert_eq!(st["mode"], "observe");
    assert!(st["mitigation"]["would_block"].as_u64().unwrap() >= 1, "{st}");
    let got = rx
        .recv_count(Duration::from_millis(300), Duration::from_secs(5))
        .unwrap();
    assert!(got >= sent, "every frame passed XDP ({got} of {sent})");
    agent.stop(libc::SIGTERM);
    let a = read_alerts(&alerts_file);
    assert!(
        a.iter()
            .any(|x| x["src_ip"] == "198.18.0.66" && x["alert"]["action"] == "would-block"),
        "{a:?}"
    );

    // Mitigate, with the attacker's prefix in the configured allowlist: never blocked.
    let cfg = dirs.state_dir.join("netanom.toml");
    std::fs::write(
        &cfg,
        "[agent]\nmode = \"mitigate\"\n[allowlist]\nprefixes = [\"198.18.0.64/26\"]\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap().to_owned();
    let agent = start(&lab, &dirs, &["--config", &c, "--alerts", &af]);
    let al = netanom_json(&lab, &["allow", "list", "--json", "--pin-dir", dirs.pin()]);
    let has = |v: &Value, p: &str| v.as_array().unwrap().iter().any(|x| x["prefix"] == p);
    assert!(has(&al, "198.18.0.64/26"), "{al}");
    assert!(has(&al, "198.18.0.1/32"), "the host's own address: {al}");
    flood();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        block_list(&lab, &dirs, false).is_empty(),
        "allowlisted source not blocked"
    );
    assert_eq!(udp_through(&lab, &bad, 50), 50);
    let a = read_alerts(&alerts_file);
    assert!(
        a.iter()
            .any(|x| x["src_ip"] == "198.18.0.66" && x["alert"]["action"] == "allowed"),
        "{a:?}"
    );
    // A manual block cannot override the allowlist either.
    let (code, _, err) = netanom_in(&lab, &["block", "add", "198.18.0.66", "--pin-dir", dirs.pin()]);
    assert_eq!(code, Some(0));
    assert!(err.contains("allowlist entry 198.18.0.64/26"), "{err}");
    assert_eq!(udp_through(&lab, &bad, 50), 50);

    // SIGHUP: an invalid file keeps the old configuration; a valid one is applied.
    std::fs::write(
        &cfg,
        "[agent]\nmode = \"mitigate\"\n[allowlist]\nprefixes = [\"198.18.0.1/8\"]\n",
    )
    .unwrap();
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
    let mut agent = agent;
    agent
        .wait_for_stderr("reload failed", Duration::from_secs(10))
        .unwrap();
    let al = netanom_json(&lab, &["allow", "list", "--json", "--pin-dir", dirs.pin()]);
    assert!(has(&al, "198.18.0.64/26"), "old allowlist kept: {al}");
    std::fs::write(
        &cfg,
        "[agent]\nmode = \"mitigate\"\n[allowlist]\nprefixes = [\"198.18.0.96/27\"]\n",
    )
    .unwrap();
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
    agent
        .wait_for_stderr("reloaded", Duration::from_secs(20))
        .unwrap();
    let al = netanom_json(&lab, &["allow", "list", "--json", "--pin-dir", dirs.pin()]);
    assert!(has(&al, "198.18.0.96/27") && !has(&al, "198.18.0.64/26"), "{al}");

    // SIGHUP reloads the model bundle too: one that does not fit the live features is refused
    // (the embedded one stays), a valid one replaces it, and status shows which is in force.
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let bundle_cfg = |dir: &str| {
        let path = models.join(dir).canonicalize().unwrap();
        format!(
            "[agent]\nmode = \"mitigate\"\nbundle = \"{}\"\n[allowlist]\nprefixes = [\"198.18.0.96/27\"]\n",
            path.display()
        )
    };
    std::fs::write(&cfg, bundle_cfg("bundles/kdd99")).unwrap();
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
    agent
        .wait_for_stderr("reload failed", Duration::from_secs(20))
        .unwrap();
    let bundle_in_force = || {
        // status.json is rewritten every second.
        std::thread::sleep(Duration::from_millis(1200));
        status_json(&lab, &dirs)["bundle"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let b = bundle_in_force();
    assert!(b.starts_with("embedded"), "the embedded bundle stays: {b}");
    std::fs::write(&cfg, bundle_cfg("default")).unwrap();
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
    agent
        .wait_for_stderr("reloaded", Duration::from_secs(20))
        .unwrap();
    let b = bundle_in_force();
    assert!(
        b.contains("models/default"),
        "the reloaded bundle is in force: {b}"
    );
    agent.stop(libc::SIGTERM);
    let _ = std::fs::remove_file(&alerts_file);
    let _ = std::fs::remove_file(&cfg);
}

#[test]
fn spoofed_syn_flood_gets_a_victim_alert_and_a_rate_limit_not_thousands_of_blocks() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, dirs)) = lab_setup("spf") else {
        return;
    };
    let alerts_file = dirs.state_dir.join("alerts.json");
    let af = alerts_file.to_str().unwrap().to_owned();
    let agent = start(&lab, &dirs, &["--mode", "mitigate", "--alerts", &af]);
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let dst = lab.a_side.ep;
    let pace = Pace::rate(8_000, Duration::from_secs(4));
    // The real thing when the shared captures are there: a prefix of a spoofed SYN flood
    // (37,841 SYNs to port 25565 from 37,623 sources), its victim rewritten to a's address and
    // its sources to 198.19.0.0/16. Otherwise a generated one: 12,000 SYNs to port 80 from
    // 4,000 spoofed sources in 198.19.0.0/16, 3 each.
    let port = match netanom_lab::pcap_path("attacks/ddos-stopddos/pkt.TCP.synflood.spoofed.pcap") {
        Some(capture) => {
            let opts = netanom_lab::replay::ReplayOptions {
                pace,
                max_packets: Some(12_000),
                original_timing: false,
                speedup: 1.0,
            };
            let st = netanom_lab::replay::replay(&capture, &tx, &lab.b_side.ep, &dst, &opts).unwrap();
            eprintln!("replayed {st:?} from {}", capture.display());
            assert!(st.sent >= 10_000, "{st:?}");
            25565
        }
        None => {
            eprintln!("shared captures not found (NETANOM_SHARED): generating the spoofed flood");
            assert_eq!(spoofed_syn_flood(&lab, 12_000, 4_000, &pace), 12_000);
            80
        }
    };
    std::thread::sleep(Duration::from_millis(1500));
    let st = status_json(&lab, &dirs);
    assert_eq!(st["rate_limits_active"], 1, "{st}");
    assert!(
        st["blocks_active"].as_u64().unwrap() < 10,
        "not thousands of source blocks: {st}"
    );
    agent.stop(libc::SIGTERM);
    let a = read_alerts(&alerts_file);
    let victim = a
        .iter()
        .find(|x| x["netanom"]["kind"] == "victim_flood")
        .unwrap_or_else(|| panic!("no victim alert: {a:?}"));
    assert_eq!(victim["dest_ip"], "198.18.0.1");
    assert_eq!(victim["dest_port"], port);
    assert_eq!(victim["alert"]["action"], "blocked");
    assert_eq!(victim["netanom"]["rate_limit"]["tcp_flags"], "S");
    let _ = std::fs::remove_file(&alerts_file);
}
