//! Mitigation's safety rails and TTL escalation, and an interface that disappears at run time.
//!
//! Two levels:
//! - the [`Responder`] alone, on real pinned maps in a throwaway bpffs directory, fed
//!   synthetic findings, with the clock it is given moved forward where a test would otherwise
//!   wait a minute (the per-minute cap, the breaker's cooldown); block TTLs are the kernel's
//!   monotonic clock, so those tests wait for real (TTLs of 1 s);
//! - the real agent in the namespace lab (as in `mitigation.rs`), with a configuration file of
//!   small caps and TTLs, and attackers flooding from side b: the breaker trips, is visible in
//!   `netanom status --json`, the metrics and the alerts, and closes again; a repeat offender
//!   gets strike 2 and a longer TTL; the veth is deleted and recreated under the agent.
mod common;

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use common::{
    Agent, attacker, block_list, block_of, http_get, lab_setup, netanom_in, read_alerts, sample,
    start_lab_agent, status_json, udp_flood, udp_through, wait_until, xdp_attached,
};
use netanom::{
    alerts::{self, AlertContext, AlertSink, Kind},
    cidr::Cidr,
    config::{MitigationConfig, Mode},
    detect::{Finding, Subject},
    respond::{MitigationCounters, Responder},
    tables::Tables,
};
use netanom_lab::{Endpoint, Pair, StateDirs, require_root, sweep_state_leftovers};
use serde_json::Value;

/// The lab scenarios share two cores: one at a time, so that timings mean something.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------------
// The responder alone.

/// A responder in mitigate mode on freshly pinned maps, writing alerts to a file.
struct Rig {
    responder: Responder,
    counters: Arc<MitigationCounters>,
    alerts: PathBuf,
    // Last: the pins go after the responder's map handles.
    _dirs: StateDirs,
}

fn rig(tag: &str, cfg: MitigationConfig) -> Option<Rig> {
    if !require_root() {
        eprintln!("skipped: needs root (bpffs, BPF maps)");
        return None;
    }
    if !netanom::datapath::has_program() {
        eprintln!("skipped: netanom was built without its XDP program (bpf-linker missing)");
        return None;
    }
    sweep_state_leftovers();
    let dirs = StateDirs::new(tag);
    std::fs::create_dir_all(&dirs.state_dir).unwrap();
    let tables = Tables::open_or_create(&dirs.pin_dir).unwrap();
    let alerts = dirs.state_dir.join("alerts.json");
    let sink = AlertSink::open(alerts.to_str().unwrap()).unwrap();
    let ctx = AlertContext {
        in_iface: Some("nalab0".into()),
        mode: alerts::Mode::Mitigate,
        bundle: "rails test".into(),
    };
    let counters = Arc::new(MitigationCounters::default());
    let responder = Responder::new(Mode::Mitigate, cfg, tables, sink, ctx, counters.clone());
    Some(Rig {
        responder,
        counters,
        alerts,
        _dirs: dirs,
    })
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

/// A source flood finding about 198.18.0.`last`, as the detector makes them.
fn offender(last: u8) -> Finding {
    Finding {
        kind: Kind::SourceFlood,
        subject: Subject::Source(ip(last)),
        reason: format!("{} sent 9000 packets/s", ip(last)),
        rates: vec![("src_packets_per_s".into(), 9000.0, 2000.0)],
        flow: None,
    }
}

impl Rig {
    fn offend(&mut self, lasts: &[u8], now: Instant) {
        self.responder
            .handle(lasts.iter().map(|l| offender(*l)).collect(), now);
        self.responder.flush();
    }

    /// Active blocks: prefix → (strikes, ttl_s).
    fn active(&mut self) -> Vec<(String, u32, u32)> {
        let now = netanom::drain::mono_now_ns();
        self.responder
            .tables()
            .blocks()
            .unwrap()
            .into_iter()
            .filter(|b| b.active(now))
            .map(|b| (b.prefix.to_string(), b.entry.strikes, b.entry.ttl_s))
            .collect()
    }

    fn entry(&mut self, last: u8) -> Option<netanom_common::mitigate::BlockEntry> {
        self.responder
            .tables()
            .block_entry(&Cidr::host(ip(last)))
            .unwrap()
    }

    fn alerts(&self) -> Vec<Value> {
        read_alerts(&self.alerts)
    }

    fn load(&self, f: impl Fn(&MitigationCounters) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&self.counters).load(Ordering::Relaxed)
    }

    fn breaker_open(&self) -> bool {
        self.counters.breaker_open.load(Ordering::Relaxed)
    }

    /// Waits (bounded by `limit`) until the block on 198.18.0.`last` is no longer active.
    fn wait_expired(&mut self, last: u8, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self
            .entry(last)
            .is_some_and(|e| e.active(netanom::drain::mono_now_ns()))
        {
            assert!(Instant::now() < deadline, "block on {} never expired", ip(last));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
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

fn set(ips: &[&str]) -> BTreeSet<String> {
    ips.iter().map(|s| s.to_string()).collect()
}

#[test]
fn responder_new_blocks_per_minute_cap_trips_the_breaker_until_cooldown_and_minute_pass() {
    let cfg = MitigationConfig {
        max_new_blocks_per_minute: 3,
        max_blocks: 100,
        breaker_cooldown: 5.0,
        block_ttl: 600.0,
        ..MitigationConfig::default()
    };
    let Some(mut r) = rig("rails-rate", cfg) else {
        return;
    };
    let t0 = Instant::now();
    let s = |secs: f64| t0 + Duration::from_secs_f64(secs);

    // Five offenders at once: exactly three blocked, the fourth trips the breaker, the
    // fourth and fifth are reported as would-block.
    r.offend(&[10, 11, 12, 13, 14], t0);
    let mut active = r.active();
    active.sort();
    assert_eq!(
        active,
        vec![
            ("198.18.0.10/32".to_owned(), 1, 600),
            ("198.18.0.11/32".to_owned(), 1, 600),
            ("198.18.0.12/32".to_owned(), 1, 600),
        ]
    );
    assert!(
        r.entry(13).is_none() && r.entry(14).is_none(),
        "nothing pinned for them"
    );
    assert_eq!(r.load(|c| &c.blocks_added), 3);
    assert_eq!(r.load(|c| &c.breaker_trips), 1);
    assert_eq!(r.load(|c| &c.would_block), 2);
    assert!(r.breaker_open());
    assert_eq!(r.responder.effective_mode(s(1.0)), Mode::Observe);
    let a = r.alerts();
    let blocked = of_action(&a, "blocked");
    assert_eq!(
        srcs(&blocked),
        set(&["198.18.0.10", "198.18.0.11", "198.18.0.12"])
    );
    assert!(
        blocked.iter().all(|x| x["netanom"]["mode"] == "mitigate"),
        "{a:?}"
    );
    let trips = breaker_alerts(&a);
    assert_eq!(trips.len(), 1, "{a:?}");
    let why = trips[0]["netanom"]["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("3 new blocks within a minute (mitigation.max_new_blocks_per_minute = 3)")
            && why.contains("observe mode for 5 s"),
        "{}",
        trips[0]
    );
    assert_eq!(trips[0]["netanom"]["mode"], "observe");
    let would = of_action(&a, "would-block");
    assert_eq!(srcs(&would), set(&["198.18.0.13", "198.18.0.14"]), "{a:?}");
    for x in &would {
        assert_eq!(x["netanom"]["mode"], "observe", "{x}");
        assert_eq!(x["netanom"]["block"]["strikes"], 1, "{x}");
        assert_eq!(x["netanom"]["block"]["ttl_s"], 600, "{x}");
    }

    // Still open two seconds later: a repeat is counted, not blocked, not re-alerted.
    r.offend(&[13], s(2.0));
    assert!(r.entry(13).is_none());
    assert_eq!(r.load(|c| &c.would_block), 3);
    assert_eq!(r.alerts().len(), a.len());

    // After the cooldown the breaker closes (maintenance notices it without any finding)...
    r.responder.maintain(s(5.5)).unwrap();
    assert!(!r.breaker_open());
    assert_eq!(r.responder.effective_mode(s(5.5)), Mode::Mitigate);
    // ...but the minute's three blocks are spent: the next new block would be the fourth
    // within a minute, so the breaker trips again instead.
    r.offend(&[15], s(6.0));
    assert!(r.entry(15).is_none());
    assert_eq!(r.load(|c| &c.breaker_trips), 2);
    assert!(r.breaker_open());
    assert_eq!(breaker_alerts(&r.alerts()).len(), 2);

    // A minute after the first blocks (and past the second cooldown): blocking resumes, for
    // exactly three new blocks again.
    r.offend(&[13, 15, 16, 17], s(61.5));
    let mut now_blocked: Vec<String> = r.active().into_iter().map(|(p, ..)| p).collect();
    now_blocked.sort();
    assert_eq!(
        now_blocked,
        [10, 11, 12, 13, 15, 16]
            .iter()
            .map(|l| format!("198.18.0.{l}/32"))
            .collect::<Vec<_>>()
    );
    assert!(r.entry(17).is_none());
    assert_eq!(r.load(|c| &c.blocks_added), 6);
    assert_eq!(r.load(|c| &c.breaker_trips), 3);
    let a = r.alerts();
    assert_eq!(
        srcs(&of_action(&a, "blocked")),
        set(&[
            "198.18.0.10",
            "198.18.0.11",
            "198.18.0.12",
            "198.18.0.13",
            "198.18.0.15",
            "198.18.0.16"
        ])
    );
}

#[test]
fn responder_max_blocks_trips_the_breaker_and_blocking_resumes_once_blocks_expired() {
    let cfg = MitigationConfig {
        max_blocks: 2,
        max_new_blocks_per_minute: 100,
        breaker_cooldown: 2.0,
        block_ttl: 1.0,
        max_block_ttl: 10.0,
        forget_after: 60.0,
        ..MitigationConfig::default()
    };
    let Some(mut r) = rig("rails-max", cfg) else {
        return;
    };
    let t0 = Instant::now();
    r.offend(&[20, 21, 22, 23], t0);
    let mut active: Vec<String> = r.active().into_iter().map(|(p, ..)| p).collect();
    active.sort();
    assert_eq!(active, ["198.18.0.20/32", "198.18.0.21/32"]);
    assert_eq!(r.load(|c| &c.breaker_trips), 1);
    assert_eq!(r.load(|c| &c.would_block), 2);
    assert!(r.breaker_open());
    let a = r.alerts();
    let trips = breaker_alerts(&a);
    assert_eq!(trips.len(), 1, "{a:?}");
    let why = trips[0]["netanom"]["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("2 active blocks (mitigation.max_blocks = 2)"),
        "{}",
        trips[0]
    );
    assert_eq!(
        srcs(&of_action(&a, "would-block")),
        set(&["198.18.0.22", "198.18.0.23"])
    );

    // The two blocks expire in the kernel (1 s); once the cooldown is over, there is room
    // again and the next offender is blocked without another trip.
    r.wait_expired(20, Duration::from_secs(5));
    r.wait_expired(21, Duration::from_secs(5));
    let later = t0 + Duration::from_secs_f64(2.5).max(t0.elapsed());
    assert_eq!(r.responder.effective_mode(later), Mode::Mitigate);
    r.offend(&[22], later);
    assert_eq!(r.active(), vec![("198.18.0.22/32".to_owned(), 1, 1)]);
    assert_eq!(r.load(|c| &c.breaker_trips), 1);
    assert_eq!(r.load(|c| &c.blocks_added), 3);
    assert!(!r.breaker_open());
    // A cap counts active blocks of every origin: with a manual block and .22, the cap is
    // reached again.
    let manual = netanom_common::mitigate::BlockEntry {
        expires_ns: netanom::drain::mono_now_ns() + 60_000_000_000,
        added_ns: netanom::drain::mono_now_ns(),
        packets: 0,
        bytes: 0,
        ttl_s: 60,
        strikes: 1,
        origin: netanom_common::mitigate::Origin::Manual as u32,
        _pad: 0,
        reason: netanom::tables::reason_bytes("operator"),
    };
    r.responder
        .tables()
        .put_block(&Cidr::host(ip(99)), &manual)
        .unwrap();
    r.offend(&[23], later + Duration::from_millis(100));
    assert!(r.entry(23).is_none());
    assert_eq!(r.load(|c| &c.breaker_trips), 2);
}

#[test]
fn responder_escalates_the_ttl_of_repeat_offenders_up_to_the_cap() {
    let cfg = MitigationConfig {
        block_ttl: 1.0,
        ttl_escalation: 3.0,
        max_block_ttl: 5.0,
        forget_after: 60.0,
        ..MitigationConfig::default()
    };
    let Some(mut r) = rig("rails-esc", cfg) else {
        return;
    };
    r.offend(&[30], Instant::now());
    let e = r.entry(30).expect("blocked");
    assert_eq!((e.strikes, e.ttl_s), (1, 1));
    assert_eq!(e.expires_ns - e.added_ns, 1_000_000_000);
    // Still blocked: a repeat finding changes nothing.
    r.offend(&[30], Instant::now());
    assert_eq!(r.entry(30), Some(e));
    assert_eq!(r.alerts().len(), 1);

    // Offending again after the block expired (within forget_after): strike 2, 1 s × 3.
    r.wait_expired(30, Duration::from_secs(5));
    // Maintenance keeps the expired entry: it remembers the strikes.
    std::thread::sleep(Duration::from_millis(1100));
    r.responder.maintain(Instant::now()).unwrap();
    assert_eq!(
        r.entry(30).map(|e| e.strikes),
        Some(1),
        "remembered after the sweep"
    );
    r.offend(&[30], Instant::now());
    let e = r.entry(30).expect("blocked again");
    assert_eq!((e.strikes, e.ttl_s), (2, 3));
    assert_eq!(e.expires_ns - e.added_ns, 3_000_000_000);
    // Third time: 1 × 3² = 9 s, capped at max_block_ttl = 5 s.
    r.wait_expired(30, Duration::from_secs(8));
    r.offend(&[30], Instant::now());
    let e = r.entry(30).expect("blocked a third time");
    assert_eq!((e.strikes, e.ttl_s), (3, 5));
    let a = r.alerts();
    let blocks: Vec<(u64, u64, &str)> = of_action(&a, "blocked")
        .iter()
        .map(|x| {
            let b = &x["netanom"]["block"];
            (
                b["strikes"].as_u64().unwrap(),
                b["ttl_s"].as_u64().unwrap(),
                b["prefix"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        blocks,
        [
            (1, 1, "198.18.0.30/32"),
            (2, 3, "198.18.0.30/32"),
            (3, 5, "198.18.0.30/32")
        ]
    );
    assert_eq!(r.load(|c| &c.blocks_added), 3);
}

#[test]
fn responder_forgets_strikes_after_forget_after() {
    let cfg = MitigationConfig {
        block_ttl: 1.0,
        ttl_escalation: 4.0,
        forget_after: 1.0,
        ..MitigationConfig::default()
    };
    let Some(mut r) = rig("rails-forget", cfg) else {
        return;
    };
    r.offend(&[31], Instant::now());
    assert_eq!(r.entry(31).map(|e| (e.strikes, e.ttl_s)), Some((1, 1)));
    r.wait_expired(31, Duration::from_secs(5));
    // More than forget_after (1 s) after the expiry: a first offence again.
    std::thread::sleep(Duration::from_millis(1300));
    r.offend(&[31], Instant::now());
    assert_eq!(r.entry(31).map(|e| (e.strikes, e.ttl_s)), Some((1, 1)));
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
