//! The responder's policy on the in-memory enforcer, without privileges: the circuit breaker
//! and both caps, TTL escalation for repeat offenders and its reset. Time is the `now` each
//! call is given, so a minute passes at once. (`tests/tests/rails.rs` proves that the pinned
//! kernel tables behave the same.)
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, atomic::Ordering},
};

use netanom_common::{
    mitigate::{BlockEntry, Origin},
    time::{Instant, NS_PER_S},
};
use serde_json::Value;

use super::*;
use crate::{
    detect::{Finding, Kind, Subject},
    sinks::alerts::{MemoryBuffer, memory},
    telemetry::ResponseCounters,
};

/// A responder in mitigate mode on in-memory tables, writing alerts to memory.
struct Rig {
    responder: Responder,
    counters: Arc<ResponseCounters>,
    alerts: MemoryBuffer,
    t0: Instant,
}

fn rig(cfg: MitigationConfig) -> Rig {
    let (sink, alerts) = memory();
    let ctx = AlertContext {
        in_iface: Some("nalab0".into()),
        mode: Mode::Mitigate,
        bundle: "rails test".into(),
    };
    let counters = Arc::new(ResponseCounters::default());
    let t0 = Instant {
        mono_ns: 1_000 * NS_PER_S,
        unix_ns: 1_700_000_000 * NS_PER_S,
    };
    let responder = Responder::new(
        Mode::Mitigate,
        cfg,
        Box::new(MemoryTables::new()),
        Box::new(sink),
        ctx,
        counters.clone(),
        t0,
    );
    Rig {
        responder,
        counters,
        alerts,
        t0,
    }
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
    /// `secs` seconds after the rig started.
    fn at(&self, secs: f64) -> Instant {
        self.t0.plus_ns((secs * NS_PER_S as f64) as u64)
    }

    fn offend(&mut self, lasts: &[u8], now: Instant) {
        self.responder
            .handle(lasts.iter().map(|l| offender(*l)).collect(), now);
        self.responder.flush();
    }

    /// Blocks active at `now`: prefix → (strikes, ttl_s).
    fn active(&mut self, now: Instant) -> Vec<(String, u32, u32)> {
        self.responder
            .enforcer()
            .blocks()
            .unwrap()
            .into_iter()
            .filter(|b| b.active(now.mono_ns))
            .map(|b| (b.prefix.to_string(), b.entry.strikes, b.entry.ttl_s))
            .collect()
    }

    fn entry(&mut self, last: u8) -> Option<BlockEntry> {
        self.responder
            .enforcer()
            .block_entry(&Cidr::host(ip(last)))
            .unwrap()
    }

    fn alerts(&self) -> Vec<Value> {
        self.alerts
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn load(&self, f: impl Fn(&ResponseCounters) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&self.counters).load(Ordering::Relaxed)
    }

    fn breaker_open(&self) -> bool {
        self.counters.breaker_open.load(Ordering::Relaxed)
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
fn new_blocks_per_minute_cap_trips_the_breaker_until_cooldown_and_minute_pass() {
    let cfg = MitigationConfig {
        max_new_blocks_per_minute: 3,
        max_blocks: 100,
        breaker_cooldown: 5.0,
        block_ttl: 600.0,
        ..MitigationConfig::default()
    };
    let mut r = rig(cfg);
    let t0 = r.t0;

    // Five offenders at once: exactly three blocked, the fourth trips the breaker, the
    // fourth and fifth are reported as would-block.
    r.offend(&[10, 11, 12, 13, 14], t0);
    let mut active = r.active(t0);
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
        "nothing installed for them"
    );
    assert_eq!(r.load(|c| &c.blocks_added), 3);
    assert_eq!(r.load(|c| &c.breaker_trips), 1);
    assert_eq!(r.load(|c| &c.would_block), 2);
    assert!(r.breaker_open());
    assert_eq!(r.responder.effective_mode(r.at(1.0)), Mode::Observe);
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
    r.offend(&[13], r.at(2.0));
    assert!(r.entry(13).is_none());
    assert_eq!(r.load(|c| &c.would_block), 3);
    assert_eq!(r.alerts().len(), a.len());

    // After the cooldown the breaker closes (maintenance notices it without any finding)...
    r.responder.maintain(r.at(5.5)).unwrap();
    assert!(!r.breaker_open());
    assert_eq!(r.responder.effective_mode(r.at(5.5)), Mode::Mitigate);
    // ...but the minute's three blocks are spent: the next new block would be the fourth
    // within a minute, so the breaker trips again instead.
    r.offend(&[15], r.at(6.0));
    assert!(r.entry(15).is_none());
    assert_eq!(r.load(|c| &c.breaker_trips), 2);
    assert!(r.breaker_open());
    assert_eq!(breaker_alerts(&r.alerts()).len(), 2);

    // A minute after the first blocks (and past the second cooldown): blocking resumes, for
    // exactly three new blocks again.
    r.offend(&[13, 15, 16, 17], r.at(61.5));
    let mut now_blocked: Vec<String> = r.active(r.at(61.5)).into_iter().map(|(p, ..)| p).collect();
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
fn max_blocks_trips_the_breaker_and_blocking_resumes_once_blocks_expired() {
    let cfg = MitigationConfig {
        max_blocks: 2,
        max_new_blocks_per_minute: 100,
        breaker_cooldown: 2.0,
        block_ttl: 1.0,
        max_block_ttl: 10.0,
        forget_after: 60.0,
        ..MitigationConfig::default()
    };
    let mut r = rig(cfg);
    let t0 = r.t0;
    r.offend(&[20, 21, 22, 23], t0);
    let mut active: Vec<String> = r.active(t0).into_iter().map(|(p, ..)| p).collect();
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

    // The two blocks expire (1 s); once the cooldown is over, there is room again and the
    // next offender is blocked without another trip.
    let later = r.at(2.5);
    assert!(r.active(later).is_empty());
    assert_eq!(r.responder.effective_mode(later), Mode::Mitigate);
    r.offend(&[22], later);
    assert_eq!(r.active(later), vec![("198.18.0.22/32".to_owned(), 1, 1)]);
    assert_eq!(r.load(|c| &c.breaker_trips), 1);
    assert_eq!(r.load(|c| &c.blocks_added), 3);
    assert!(!r.breaker_open());
    // A cap counts active blocks of every origin: with a manual block and .22, the cap is
    // reached again.
    let manual = enforcer::NewBlock {
        now_ns: later.mono_ns,
        ttl: std::time::Duration::from_secs(60),
        strikes: 1,
        origin: Origin::Manual,
        reason: "operator",
    }
    .entry(None);
    r.responder
        .enforcer()
        .put_block(&Cidr::host(ip(99)), &manual)
        .unwrap();
    r.offend(&[23], later.plus_ns(NS_PER_S / 10));
    assert!(r.entry(23).is_none());
    assert_eq!(r.load(|c| &c.breaker_trips), 2);
}

#[test]
fn escalates_the_ttl_of_repeat_offenders_up_to_the_cap() {
    let cfg = MitigationConfig {
        block_ttl: 1.0,
        ttl_escalation: 3.0,
        max_block_ttl: 5.0,
        forget_after: 60.0,
        ..MitigationConfig::default()
    };
    let mut r = rig(cfg);
    r.offend(&[30], r.t0);
    let e = r.entry(30).expect("blocked");
    assert_eq!((e.strikes, e.ttl_s), (1, 1));
    assert_eq!(e.expires_ns - e.added_ns, NS_PER_S);
    // Still blocked: a repeat finding changes nothing.
    r.offend(&[30], r.at(0.5));
    assert_eq!(r.entry(30), Some(e));
    assert_eq!(r.alerts().len(), 1);

    // Offending again after the block expired (within forget_after): strike 2, 1 s × 3.
    // Maintenance keeps the expired entry: it remembers the strikes.
    r.responder.maintain(r.at(2.1)).unwrap();
    assert_eq!(
        r.entry(30).map(|e| e.strikes),
        Some(1),
        "remembered after the sweep"
    );
    r.offend(&[30], r.at(2.2));
    let e = r.entry(30).expect("blocked again");
    assert_eq!((e.strikes, e.ttl_s), (2, 3));
    assert_eq!(e.expires_ns - e.added_ns, 3 * NS_PER_S);
    // Third time: 1 × 3² = 9 s, capped at max_block_ttl = 5 s.
    r.offend(&[30], r.at(5.3));
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
fn forgets_strikes_after_forget_after() {
    let cfg = MitigationConfig {
        block_ttl: 1.0,
        ttl_escalation: 4.0,
        forget_after: 1.0,
        ..MitigationConfig::default()
    };
    let mut r = rig(cfg);
    r.offend(&[31], r.t0);
    assert_eq!(r.entry(31).map(|e| (e.strikes, e.ttl_s)), Some((1, 1)));
    // More than forget_after (1 s) after the expiry (at 1 s): a first offence again.
    r.offend(&[31], r.at(2.3));
    assert_eq!(r.entry(31).map(|e| (e.strikes, e.ttl_s)), Some((1, 1)));
}

/// Records what it is told (the decision seam's test double).
#[derive(Clone, Default)]
struct Recorder(Arc<std::sync::Mutex<(Vec<Decision>, u32)>>);

impl DecisionSink for Recorder {
    fn decided(&mut self, d: &Decision, _now: Instant) {
        self.0.lock().unwrap().0.push(d.clone());
    }
    fn maintain(&mut self, lists: &dyn Enforcer, _now: Instant) {
        assert!(lists.blocks().is_ok());
        self.0.lock().unwrap().1 += 1;
    }
}

#[test]
fn decision_sinks_learn_every_block_and_rate_limit_and_are_maintained() {
    let mut r = rig(MitigationConfig::default());
    let rec = Recorder::default();
    r.responder.add_decision_sink(Box::new(rec.clone()));
    r.responder.handle(vec![offender(9)], r.at(0.0));
    let victim = Finding {
        kind: Kind::VictimFlood,
        subject: Subject::Victim {
            dst: ip(200),
            port: 80,
            proto: 6,
            tcp_flags: 0x02,
            limitable: true,
        },
        reason: "7000 distinct sources/s".into(),
        rates: vec![("dst_distinct_srcs_per_s".into(), 7000.0, 200.0)],
        flow: None,
    };
    r.responder.handle(vec![victim], r.at(0.5));
    // Already blocked: no second decision.
    r.responder.handle(vec![offender(9)], r.at(1.0));
    r.responder.maintain(r.at(2.0)).unwrap();
    let (decisions, maintained) = rec.0.lock().unwrap().clone();
    assert_eq!(maintained, 1);
    match &decisions[..] {
        [
            Decision::Block {
                prefix, entry, kind, ..
            },
            Decision::RateLimit { key, kind: vkind, .. },
        ] => {
            assert_eq!(prefix.to_string(), "198.18.0.9/32");
            assert_eq!(*kind, Kind::SourceFlood);
            assert_eq!(entry.origin, Origin::Agent as u32);
            assert_eq!((key.port, key.proto), (80, 6));
            assert_eq!(*vkind, Kind::VictimFlood);
        }
        other => panic!("{other:?}"),
    }
}

/// A beacon finding: 198.18.0.`inside` to 198.18.0.`peer`:443.
fn beacon(inside: u8, peer: u8, block_peer: bool) -> Finding {
    Finding {
        kind: Kind::Beacon,
        subject: Subject::Channel {
            inside: ip(inside),
            peer: ip(peer),
            port: 443,
            proto: 6,
            block_peer,
        },
        reason: format!("inside host {} beacons to {}", ip(inside), ip(peer)),
        rates: vec![("channel_flows".into(), 12.0, 10.0)],
        flow: None,
    }
}

#[test]
fn a_beacon_is_alerted_on_and_only_its_peer_is_ever_blocked() {
    let mut r = rig(MitigationConfig::default());
    let t = r.at(1.0);
    r.responder.handle(vec![beacon(9, 66, false)], t);
    r.responder.flush();
    assert!(r.active(t).is_empty(), "block_beacon_peers off: nothing blocked");
    let a = r.alerts();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["src_ip"], "198.18.0.9");
    assert_eq!(a[0]["dest_ip"], "198.18.0.66");
    assert_eq!(a[0]["alert"]["action"], "allowed");
    assert!(a[0]["netanom"]["reason"].as_str().unwrap().contains("alert only"));
    // Reported once per TTL.
    r.responder.handle(vec![beacon(9, 66, false)], r.at(2.0));
    r.responder.flush();
    assert_eq!(r.alerts().len(), 1);
    // With block_beacon_peers, the peer is blocked as a source, never the inside host.
    let t = r.at(3.0);
    r.responder.handle(vec![beacon(10, 67, true)], t);
    r.responder.flush();
    let blocked: Vec<String> = r.active(t).into_iter().map(|b| b.0).collect();
    assert_eq!(blocked, ["198.18.0.67/32"]);
    let a = r.alerts();
    let last = a.last().unwrap();
    assert_eq!(last["alert"]["action"], "blocked");
    assert_eq!(last["src_ip"], "198.18.0.10", "the alert still names the channel");
    assert_eq!(last["dest_ip"], "198.18.0.67");
    assert_eq!(last["netanom"]["block"]["prefix"], "198.18.0.67/32");
}
