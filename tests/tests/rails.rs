//! Mitigation's safety rails and TTL escalation, and an interface that disappears at run time.
//!
//! Two levels:
//! - the responder on the real pinned maps in a throwaway bpffs directory against the same
//!   responder on the in-memory enforcer (whose policy tests are unprivileged unit tests in
//!   `netanom/src/respond/tests.rs`): one scenario, the same decisions at every step;
//! - the real agent in the namespace lab (as in `mitigation.rs`), with a configuration file of
//!   small caps and TTLs, and attackers flooding from side b: the breaker trips, is visible in
//!   `netanom status --json`, the metrics and the alerts, and closes again; a repeat offender
//!   gets strike 2 and a longer TTL; the veth is deleted and recreated under the agent.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use netanom::{
    detect::{Finding, Kind, Subject},
    pipeline::clock::mono_now_ns,
    respond::{
        AlertContext, Cidr, Enforcer, KernelTables, MemoryTables, MitigationConfig, Mode, Responder,
        enforcer::reason_bytes,
    },
    telemetry::{ResponseCounters, ResponseTotals},
};
use netanom_common::{
    mitigate::{BlockEntry, Origin},
    time::{Instant as Moment, NS_PER_S},
};
use netanom_lab::{
    Agent, Endpoint, Pair, StateDirs,
    agent::{block_list, block_of, netanom_in, status_json, xdp_attached},
    http::{http_get, sample},
    lab_setup,
    probes::{attacker, udp_flood, udp_through},
    read_alerts, require_root, start_agent as start_lab_agent, sweep_state_leftovers, wait_until,
};
use serde_json::Value;

/// The lab scenarios share two cores: one at a time, so that timings mean something.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------------
// The kernel tables against the in-memory enforcer.

/// The responder's policy itself (caps, breaker, escalation, forgetting) is unit-tested on the
/// in-memory enforcer (`netanom/src/respond/tests.rs`); this runs one scenario through both
/// enforcers and requires the same decisions, alerts and counters at every step, and the same
/// lists in the end, from the real pinned maps.
#[test]
fn kernel_tables_behave_like_the_in_memory_enforcer() {
    if !require_root() {
        eprintln!("skipped: needs root (bpffs, BPF maps)");
        return;
    }
    if !netanom::datapath::has_program() {
        eprintln!("skipped: netanom was built without its XDP program (bpf-linker missing)");
        return;
    }
    sweep_state_leftovers();
    let dirs = StateDirs::new("rails-kernel");
    let kernel = KernelTables::open_or_create(&dirs.pin_dir).unwrap();
    let on_kernel = scenario(Box::new(kernel));
    let on_memory = scenario(Box::new(MemoryTables::new()));
    assert_eq!(on_kernel.len(), on_memory.len());
    for (k, m) in on_kernel.iter().zip(&on_memory) {
        assert_eq!(k, m, "kernel tables and memory differ at step {}", k.step);
    }
    // The steps did something: blocks, the breaker, a rate limit, escalation.
    let last = on_kernel.last().unwrap();
    assert!(
        last.counters.blocks_added >= 5 && last.counters.breaker_trips >= 2,
        "{last:?}"
    );
    assert!(last.blocks.iter().any(|b| b.1 == 2), "a second strike: {last:?}");
    assert_eq!(last.rate_limits, 1, "{last:?}");
}

/// What one step of the scenario left.
#[derive(Debug, PartialEq)]
struct Step {
    step: usize,
    /// (prefix, strikes, ttl_s, origin, active at the step's time)
    blocks: Vec<(String, u32, u32, String, bool)>,
    rate_limits: usize,
    counters: ResponseTotals,
    alerts: Vec<Value>,
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

fn offenders(lasts: &[u8]) -> Vec<Finding> {
    lasts
        .iter()
        .map(|l| Finding {
            kind: Kind::SourceFlood,
            subject: Subject::Source(ip(*l)),
            reason: format!("{} sent 9000 packets/s", ip(*l)),
            rates: vec![("src_packets_per_s".into(), 9000.0, 2000.0)],
            flow: None,
        })
        .collect()
}

fn victim() -> Finding {
    Finding {
        kind: Kind::VictimFlood,
        subject: Subject::Victim {
            dst: "198.18.1.2".parse().unwrap(),
            port: 80,
            proto: 6,
            tcp_flags: 0x02,
            limitable: true,
        },
        reason: "5000 distinct sources/s to 198.18.1.2 port 80".into(),
        rates: vec![("dst_distinct_srcs_per_s".into(), 5000.0, 200.0)],
        flow: None,
    }
}

/// The scenario on `enforcer`: a minute's cap, the breaker and its cooldown, expiry and a
/// second strike, a manual block counting towards `max_blocks` (the breaker again), a rate
/// limit once the breaker has closed, maintenance.
fn scenario(enforcer: Box<dyn Enforcer>) -> Vec<Step> {
    let cfg = MitigationConfig {
        max_new_blocks_per_minute: 3,
        max_blocks: 4,
        breaker_cooldown: 5.0,
        block_ttl: 1.0,
        ttl_escalation: 3.0,
        max_block_ttl: 5.0,
        forget_after: 100.0,
        ..MitigationConfig::default()
    };
    let (sink, lines) = netanom::sinks::alerts::memory();
    let ctx = AlertContext {
        in_iface: Some("nalab0".into()),
        mode: Mode::Mitigate,
        bundle: "rails test".into(),
    };
    let counters = Arc::new(ResponseCounters::default());
    let t0 = Moment {
        mono_ns: mono_now_ns(),
        unix_ns: 1_700_000_000 * NS_PER_S,
    };
    let at = |s: f64| t0.plus_ns((s * NS_PER_S as f64) as u64);
    let mut r = Responder::new(
        Mode::Mitigate,
        cfg,
        enforcer,
        Box::new(sink),
        ctx,
        counters.clone(),
        t0,
    );
    let manual = BlockEntry {
        expires_ns: at(120.0).mono_ns,
        added_ns: at(61.5).mono_ns,
        packets: 0,
        bytes: 0,
        ttl_s: 60,
        strikes: 1,
        origin: Origin::Manual as u32,
        _pad: 0,
        reason: reason_bytes("operator"),
    };
    let mut steps = Vec::new();
    for (n, when) in [0.0, 2.0, 5.5, 61.0, 61.5, 62.0, 68.0, 70.0]
        .into_iter()
        .enumerate()
    {
        let now = at(when);
        match n {
            0 => r.handle(offenders(&[10, 11, 12, 13]), now),
            1 | 2 | 7 => r.maintain(now).unwrap(),
            3 => r.handle(offenders(&[10, 20]), now),
            4 => r.enforcer().put_block(&Cidr::host(ip(99)), &manual).unwrap(),
            5 => r.handle(offenders(&[21, 22]), now),
            _ => r.handle(vec![victim()], now),
        }
        r.flush();
        let blocks = r
            .enforcer()
            .blocks()
            .unwrap()
            .iter()
            .map(|b| {
                let e = &b.entry;
                (
                    b.prefix.to_string(),
                    e.strikes,
                    e.ttl_s,
                    b.origin().to_owned(),
                    b.active(now.mono_ns),
                )
            })
            .collect();
        steps.push(Step {
            step: n,
            blocks,
            rate_limits: r.enforcer().rate_limits().unwrap().len(),
            counters: counters.totals(),
            alerts: lines
                .lines()
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        });
    }
    steps
}

fn of_action<'a>(a: &'a [Value], action: &str) -> Vec<&'a Value> {
    a.iter()
        .filter(|x| x["alert"]["action"] == action && x["netanom"]["kind"] != "circuit_breaker")
        .collect()
}

fn breaker_alerts(a: &[Value]) -> Vec<&Value> {
    a.iter()
        .filter(|x| x["netanom"]["kind"] == "circuit_breaker")
        .collect()
}

fn srcs(v: &[&Value]) -> BTreeSet<String> {
    v.iter()
        .map(|x| x["src_ip"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The real agent in the lab.

const METRICS_PORT: u16 = 19755;

/// Mitigate mode; destination-side detection out of the way (several sources flooding one
/// address would otherwise also make a victim finding and a rate limit); then `mitigation`.
fn config(dirs: &StateDirs, mitigation: &str) -> String {
    let path = dirs.state_dir.join("netanom.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nmode = \"mitigate\"\n[detection]\ndst_pps = 1e9\ndst_sources = 1e9\n\
             [mitigation]\n{mitigation}"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn start(lab: &Pair, dirs: &StateDirs, extra: &[&str]) -> Agent {
    let alerts = dirs.state_dir.join("alerts.json");
    let mut args = vec!["--alerts", alerts.to_str().unwrap()];
    args.extend_from_slice(extra);
    start_lab_agent(lab, dirs, &args)
}

fn lab_alerts(dirs: &StateDirs) -> Vec<Value> {
    read_alerts(&dirs.state_dir.join("alerts.json"))
}

fn metrics_text(lab: &Pair) -> String {
    let (status, _, body) = http_get(&lab.a, METRICS_PORT, "/metrics", None).unwrap();
    assert_eq!(status, 200);
    body
}

fn active_prefixes(lab: &Pair, dirs: &StateDirs) -> BTreeSet<String> {
    block_list(lab, dirs, false)
        .iter()
        .map(|b| b["prefix"].as_str().unwrap().to_owned())
        .collect()
}

fn host(e: &Endpoint) -> String {
    format!("{}/32", e.ipv4)
}

#[test]
fn agent_breaker_trips_at_the_new_block_cap_shows_everywhere_and_closes_after_cooldown() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, dirs)) = lab_setup("rrate") else {
        return;
    };
    let cfg = config(
        &dirs,
        "block_ttl = 120.0\nmax_new_blocks_per_minute = 3\nbreaker_cooldown = 6.0\n",
    );
    let addr = format!("127.0.0.1:{METRICS_PORT}");
    let agent = start(&lab, &dirs, &["--config", &cfg, "--metrics-addr", &addr]);
    let good = lab.b_side.ep;
    assert_eq!(udp_through(&lab, &good, 50), 50);

    // Five sources flood at once, 4000 packets/s each (the floor is 2000) for 1.5 s.
    let offenders: Vec<Endpoint> = (66..71).map(|o| attacker(&lab, o)).collect();
    let t0 = Instant::now();
    udp_flood(&lab, &offenders, 4_000, Duration::from_millis(1500));
    let st = wait_until(Duration::from_secs(8), || {
        let st = status_json(&lab, &dirs);
        (st["mitigation"]["breaker_trips"] == 1 && st["mitigation"]["would_block"].as_u64() >= Some(2))
            .then_some(st)
    })
    .unwrap_or_else(|| panic!("the breaker did not trip: {}", status_json(&lab, &dirs)));
    eprintln!("breaker tripped within {:?} of the flood's start", t0.elapsed());
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "before the cooldown could end"
    );

    // Exactly the cap is blocked, by the agent, for the configured TTL.
    let blocked = active_prefixes(&lab, &dirs);
    assert_eq!(blocked.len(), 3, "{blocked:?}");
    for b in block_list(&lab, &dirs, true) {
        assert_eq!(b["origin"], "agent", "{b}");
        assert_eq!(
            (b["strikes"].as_u64(), b["ttl_s"].as_u64()),
            (Some(1), Some(120)),
            "{b}"
        );
    }
    let spared: Vec<&Endpoint> = offenders.iter().filter(|e| !blocked.contains(&host(e))).collect();
    assert_eq!(spared.len(), 2);
    assert!(blocked.iter().all(|p| offenders.iter().any(|e| host(e) == *p)));

    // status --json: configured mitigate, observe in force, breaker open, one trip.
    assert_eq!(st["mode"], "mitigate", "{st}");
    assert_eq!(st["effective_mode"], "observe", "{st}");
    assert_eq!(st["mitigation"]["breaker_open"], true, "{st}");
    assert_eq!(st["mitigation"]["blocks_added"], 3, "{st}");
    assert_eq!(st["blocks_active"], 3, "{st}");
    // The metrics say the same.
    let m = wait_until(Duration::from_secs(3), || {
        let m = metrics_text(&lab);
        (sample(&m, "netanom_circuit_breaker_trips_total") == Some(1.0)).then_some(m)
    })
    .expect("trip counted in the metrics");
    for (series, v) in [
        ("netanom_circuit_breaker_open", 1.0),
        ("netanom_blocks_added_total", 3.0),
        (
            r#"netanom_mode_info{configured="mitigate",effective="observe"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&m, series), Some(v), "{series}:\n{m}");
    }
    assert!(
        sample(&m, "netanom_would_block_total").unwrap_or(0.0) >= 2.0,
        "{m}"
    );

    // The kernel drops the blocked sources only; the spared ones pass (observe fallback).
    let first_blocked = offenders.iter().find(|e| blocked.contains(&host(e))).unwrap();
    assert_eq!(udp_through(&lab, first_blocked, 20), 0);
    for e in &spared {
        assert_eq!(udp_through(&lab, e, 20), 20, "{}", e.ipv4);
    }

    // Alerts: three blocks, one circuit_breaker, would-block for the other two.
    let a = lab_alerts(&dirs);
    let b = of_action(&a, "blocked");
    assert_eq!(
        srcs(&b),
        blocked
            .iter()
            .map(|p| p.trim_end_matches("/32").to_owned())
            .collect(),
        "{a:?}"
    );
    let trips = breaker_alerts(&a);
    assert_eq!(trips.len(), 1, "{a:?}");
    let why = trips[0]["netanom"]["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("mitigation.max_new_blocks_per_minute = 3") && why.contains("for 6 s"),
        "{why}"
    );
    let would = of_action(&a, "would-block");
    assert_eq!(
        srcs(&would),
        spared.iter().map(|e| e.ipv4.to_string()).collect(),
        "{a:?}"
    );
    assert!(would.iter().all(|x| x["netanom"]["mode"] == "observe"), "{a:?}");

    // After the cooldown the breaker closes by itself: status and metrics show it.
    let st = wait_until(Duration::from_secs(12), || {
        let st = status_json(&lab, &dirs);
        (st["mitigation"]["breaker_open"] == false).then_some(st)
    })
    .unwrap_or_else(|| panic!("the breaker never closed: {}", status_json(&lab, &dirs)));
    eprintln!("breaker closed {:?} after the flood's start", t0.elapsed());
    assert!(t0.elapsed() >= Duration::from_secs(6), "not before the cooldown");
    assert_eq!(st["effective_mode"], "mitigate", "{st}");
    assert_eq!(st["mitigation"]["breaker_trips"], 1, "{st}");
    let m = wait_until(Duration::from_secs(3), || {
        let m = metrics_text(&lab);
        (sample(&m, "netanom_circuit_breaker_open") == Some(0.0)).then_some(m)
    })
    .expect("breaker closed in the metrics");
    assert_eq!(
        sample(
            &m,
            r#"netanom_mode_info{configured="mitigate",effective="mitigate"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(sample(&m, "netanom_circuit_breaker_trips_total"), Some(1.0));
    let (code, _, err) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "{err:?}");
}

#[test]
fn agent_breaker_trips_at_max_blocks_and_blocking_resumes_after_cooldown() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, dirs)) = lab_setup("rmax") else {
        return;
    };
    let cfg = config(
        &dirs,
        "block_ttl = 3.0\nmax_blocks = 2\nmax_new_blocks_per_minute = 100\nbreaker_cooldown = 5.0\n",
    );
    let agent = start(&lab, &dirs, &["--config", &cfg]);
    let offenders: Vec<Endpoint> = (76..80).map(|o| attacker(&lab, o)).collect();
    udp_flood(&lab, &offenders, 4_000, Duration::from_secs(1));
    let st = wait_until(Duration::from_secs(4), || {
        let st = status_json(&lab, &dirs);
        (st["mitigation"]["breaker_trips"] == 1 && st["mitigation"]["would_block"].as_u64() >= Some(2))
            .then_some(st)
    })
    .unwrap_or_else(|| panic!("the breaker did not trip: {}", status_json(&lab, &dirs)));
    assert_eq!(st["effective_mode"], "observe", "{st}");
    assert_eq!(st["mitigation"]["blocks_added"], 2, "{st}");
    let a = lab_alerts(&dirs);
    let trips = breaker_alerts(&a);
    assert_eq!(trips.len(), 1, "{a:?}");
    assert!(
        trips[0]["netanom"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("2 active blocks (mitigation.max_blocks = 2)"),
        "{}",
        trips[0]
    );
    let blocked = srcs(&of_action(&a, "blocked"));
    assert_eq!(blocked.len(), 2, "{a:?}");
    let spared: Vec<Endpoint> = offenders
        .iter()
        .filter(|e| !blocked.contains(&e.ipv4.to_string()))
        .copied()
        .collect();
    assert_eq!(srcs(&of_action(&a, "would-block")).len(), 2, "{a:?}");

    // The blocks expire (3 s) and the breaker closes (5 s): a spared source flooding again is
    // now blocked, with no second trip.
    wait_until(Duration::from_secs(10), || {
        let st = status_json(&lab, &dirs);
        (st["effective_mode"] == "mitigate" && st["blocks_active"] == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("breaker still open: {}", status_json(&lab, &dirs)));
    let again = spared[0];
    udp_flood(&lab, &[again], 4_000, Duration::from_secs(1));
    let b = wait_until(Duration::from_secs(4), || {
        block_of(&lab, &dirs, &host(&again), false)
    })
    .unwrap_or_else(|| panic!("{} not blocked after the cooldown", again.ipv4));
    assert_eq!(b["strikes"], 1, "{b}");
    assert_eq!(udp_through(&lab, &again, 20), 0, "dropped again");
    let st = status_json(&lab, &dirs);
    assert_eq!(st["mitigation"]["breaker_trips"], 1, "{st}");
    assert_eq!(st["mitigation"]["blocks_added"], 3, "{st}");
    let (code, _, err) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "{err:?}");
}

#[test]
fn agent_repeat_offender_gets_strike_two_and_a_longer_ttl() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, dirs)) = lab_setup("resc") else {
        return;
    };
    let cfg = config(
        &dirs,
        "block_ttl = 2.0\nttl_escalation = 3.0\nmax_block_ttl = 60.0\nforget_after = 120.0\n",
    );
    let agent = start(&lab, &dirs, &["--config", &cfg]);
    let bad = attacker(&lab, 90);
    let prefix = host(&bad);

    udp_flood(&lab, &[bad], 4_000, Duration::from_secs(1));
    let b =
        wait_until(Duration::from_secs(4), || block_of(&lab, &dirs, &prefix, false)).expect("first block");
    assert_eq!(
        (b["strikes"].as_u64(), b["ttl_s"].as_u64()),
        (Some(1), Some(2)),
        "{b}"
    );
    assert_eq!(b["origin"], "agent");
    // It expires; the entry is remembered (for escalation) but no longer enforced.
    wait_until(Duration::from_secs(6), || {
        block_of(&lab, &dirs, &prefix, false).is_none().then_some(())
    })
    .expect("first block expired");
    let remembered = block_of(&lab, &dirs, &prefix, true).expect("remembered");
    assert_eq!(remembered["active"], false, "{remembered}");
    assert_eq!(udp_through(&lab, &bad, 20), 20, "expired: passes");

    // The same source floods again within forget_after: strike 2, 2 s × 3 = 6 s.
    udp_flood(&lab, &[bad], 4_000, Duration::from_secs(1));
    let b =
        wait_until(Duration::from_secs(4), || block_of(&lab, &dirs, &prefix, false)).expect("second block");
    assert_eq!(
        (b["strikes"].as_u64(), b["ttl_s"].as_u64()),
        (Some(2), Some(6)),
        "{b}"
    );
    assert_eq!(udp_through(&lab, &bad, 20), 0, "dropped again");
    let (code, _, err) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "{err:?}");

    let a = lab_alerts(&dirs);
    let blocks: Vec<(u64, u64)> = of_action(&a, "blocked")
        .iter()
        .filter(|x| x["src_ip"] == bad.ipv4.to_string())
        .map(|x| {
            let b = &x["netanom"]["block"];
            assert_eq!(b["prefix"], prefix.as_str(), "{x}");
            assert_eq!(x["netanom"]["mode"], "mitigate", "{x}");
            (b["strikes"].as_u64().unwrap(), b["ttl_s"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(blocks, [(1, 2), (2, 6)], "{a:?}");
}

#[test]
fn agent_survives_its_interface_disappearing_and_reattaches_when_it_returns() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, dirs)) = lab_setup("rifc") else {
        return;
    };
    let iface = lab.a_side.iface.clone();
    let mut agent = start(&lab, &dirs, &["--mode", "mitigate"]);
    let bad = attacker(&lab, 66);
    let good = lab.b_side.ep;
    let (code, _, err) = netanom_in(
        &lab,
        &[
            "block",
            "add",
            "198.18.0.66",
            "--ttl",
            "300",
            "--reason",
            "lab",
            "--pin-dir",
            dirs.pin(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(udp_through(&lab, &bad, 50), 0);
    assert_eq!(udp_through(&lab, &good, 50), 50);

    // The veth goes away: the agent logs it, keeps running, the block stays pinned.
    lab.delete_link().unwrap();
    agent
        .wait_for_stderr(&format!("interface {iface} disappeared"), Duration::from_secs(5))
        .unwrap();
    assert!(matches!(agent.child.try_wait(), Ok(None)), "still running");
    assert!(block_of(&lab, &dirs, "198.18.0.66/32", false).is_some());
    let st = wait_until(Duration::from_secs(3), || {
        let st = status_json(&lab, &dirs);
        (st["interfaces"][0]["xdp_mode"] == "down").then_some(st)
    })
    .unwrap_or_else(|| panic!("status does not show {iface} down: {}", status_json(&lab, &dirs)));
    assert_eq!(st["agent"], "running", "{st}");

    // It comes back (same name, same addresses): reattached within a few seconds, and the
    // block is enforced again while the benign host passes.
    let back = Instant::now();
    lab.recreate_link().unwrap();
    agent
        .wait_for_stderr(
            &format!("interface {iface} is back: reattached in"),
            Duration::from_secs(5),
        )
        .unwrap();
    eprintln!("reattached {:?} after the interface returned", back.elapsed());
    assert!(xdp_attached(&lab.a, &iface));
    assert_eq!(udp_through(&lab, &bad, 50), 0, "blocked source dropped again");
    assert_eq!(udp_through(&lab, &good, 50), 50, "benign host passes");
    let b = block_of(&lab, &dirs, "198.18.0.66/32", false).unwrap();
    assert_eq!(b["dropped_packets"], 100, "{b}");

    // Replaced faster than the agent looks (deleted and recreated at once, within its 1 s
    // check): a new interface under the same name, without the program. The agent must
    // notice that too, and reattach.
    lab.delete_link().unwrap();
    lab.recreate_link().unwrap();
    let back = Instant::now();
    agent
        .wait_for_stderr(&format!("interface {iface} was replaced"), Duration::from_secs(5))
        .unwrap();
    agent
        .wait_for_stderr(
            &format!("interface {iface} is back: reattached in"),
            Duration::from_secs(5),
        )
        .unwrap();
    eprintln!("replaced interface reattached after {:?}", back.elapsed());
    assert!(xdp_attached(&lab.a, &iface));
    assert_eq!(
        udp_through(&lab, &bad, 50),
        0,
        "blocked source dropped on the new interface"
    );
    assert_eq!(udp_through(&lab, &good, 50), 50);

    let (code, _, err) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "{err:?}");
    assert!(!xdp_attached(&lab.a, &iface), "a clean stop detaches");
    assert!(err.iter().all(|l| !l.contains("panicked")), "{err:?}");
}
