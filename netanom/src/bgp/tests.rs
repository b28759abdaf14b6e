//! The announcer without a network: the plan's safety rules and cap, the speaker thread's
//! reconciliation against a speaker in memory (restarts, failures, earlier runs), and the
//! decision sink inside a real responder (observe mode, the breaker, the cap tripping it).
use std::{
    net::IpAddr,
    sync::{Arc, Mutex, atomic::Ordering},
};

use netanom_common::{
    mitigate::{BlockEntry, Origin, RateLimit},
    time::{Instant, NS_PER_S},
};
use tokio::sync::watch;

use super::{
    announcer::Announcer,
    config::{BgpConfig, FlowSpecAction},
    plan::{Exclusion, Planner, Protected, Routes, Verdict},
    route::{Community, FlowAction, Route, RouteKey},
    speaker::{Held, Speaker, SpeakerError},
    worker::{Want, Worker},
};
use crate::{
    detect::{Finding, Kind, Subject},
    respond::{
        AlertContext, Block, Cidr, Enforcer, MitigationConfig, Mode, Responder, SharedTables,
        enforcer::pattern_key,
    },
    sinks::alerts::memory,
    telemetry::{ResponseCounters, bgp::BgpCounters},
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn cfg() -> BgpConfig {
    BgpConfig {
        enabled: true,
        next_hop_v4: "198.18.255.1".parse().unwrap(),
        communities: vec![Community(64512 << 16 | 100)],
        ..BgpConfig::default()
    }
}

fn block(prefix: &str, expires_ns: u64) -> Block {
    Block {
        prefix: cidr(prefix),
        entry: BlockEntry {
            expires_ns,
            added_ns: 0,
            packets: 0,
            bytes: 0,
            ttl_s: 0,
            strikes: 1,
            origin: Origin::Manual as u32,
            _pad: 0,
            reason: [0; netanom_common::mitigate::REASON_LEN],
        },
    }
}

fn keys(r: &Routes) -> Vec<String> {
    r.keys().map(RouteKey::to_string).collect()
}

#[test]
fn the_plan_widens_blocks_and_keeps_back_what_the_safety_rules_exclude() {
    let mut c = cfg();
    c.blackhole_prefix_v4 = 24;
    let allows = [cidr("198.18.9.7/32")];
    let protected = [ip("198.18.4.1")];
    let p = Planner {
        cfg: &c,
        allows: &allows,
        protected: &protected,
    };
    let blocks = [
        block("198.18.2.2/32", 0),
        block("198.18.2.3/32", 0),            // same /24: one route
        block("198.18.9.1/32", 0),            // its /24 holds an allowlisted address
        block("198.18.4.0/24", 0),            // holds a protected address
        block("198.18.0.0/16", 0),            // wider than widest_prefix_v4
        block("198.18.7.1/32", 5 * NS_PER_S), // expired at 10 s
    ];
    let (routes, excluded) = p.plan(&blocks, &[], 10 * NS_PER_S, &Routes::new(), true);
    assert_eq!(keys(&routes), ["blackhole 198.18.2.0/24"]);
    assert_eq!(excluded, [1, 1, 1, 0]);
    match routes.values().next().unwrap() {
        Route::Blackhole {
            next_hop,
            communities,
            ..
        } => {
            assert_eq!(*next_hop, ip("198.18.255.1"));
            let c: Vec<String> = communities.iter().map(|c| c.to_string()).collect();
            assert_eq!(c, ["64512:100", "65535:666"]);
        }
        other => panic!("{other:?}"),
    }
    let off = BgpConfig {
        blackhole: false,
        ..c.clone()
    };
    let p = Planner { cfg: &off, ..p };
    assert_eq!(p.blackhole(&cidr("198.18.2.2/32")), Verdict::Off);
}

#[test]
fn flowspec_rules_rate_limit_in_bytes_or_discard() {
    let c = cfg();
    let p = Planner {
        cfg: &c,
        allows: &[],
        protected: &[],
    };
    let key = pattern_key(ip("198.18.3.2"), 80, 6, 0x02);
    let limit = RateLimit::new(1000.0, 100, 0, 0);
    let Verdict::Announce(Route::FlowSpec { rule, action, .. }) = p.flowspec(&key, &limit) else {
        panic!("not announced")
    };
    assert_eq!(
        (rule.dst, rule.port, rule.tcp_flags),
        (cidr("198.18.3.2/32"), Some(80), Some(0x02))
    );
    assert_eq!(action, FlowAction::RateBytes(1.5e6));
    let discard = BgpConfig {
        flowspec_action: FlowSpecAction::Discard,
        ..c.clone()
    };
    let p = Planner { cfg: &discard, ..p };
    let Verdict::Announce(Route::FlowSpec { action, .. }) = p.flowspec(&key, &limit) else {
        panic!("not announced")
    };
    assert_eq!(action, FlowAction::RateBytes(0.0));
    // A victim that is this host, or allowlisted, is not announced either.
    let protected = [ip("198.18.3.2")];
    let p = Planner {
        protected: &protected,
        ..p
    };
    assert_eq!(p.flowspec(&key, &limit), Verdict::Excluded(Exclusion::Protected));
}

#[test]
fn the_cap_keeps_announced_routes_first_and_the_breaker_adds_nothing() {
    let mut c = cfg();
    c.max_routes = 2;
    let p = Planner {
        cfg: &c,
        allows: &[],
        protected: &[],
    };
    let blocks: Vec<Block> = (1..=4).map(|i| block(&format!("198.18.2.{i}/32"), 0)).collect();
    let (first, excluded) = p.plan(&blocks[2..], &[], 0, &Routes::new(), true);
    assert_eq!(excluded[Exclusion::Cap as usize], 0);
    let (routes, excluded) = p.plan(&blocks, &[], 0, &first, true);
    assert_eq!(
        keys(&routes),
        ["blackhole 198.18.2.3/32", "blackhole 198.18.2.4/32"]
    );
    assert_eq!(excluded[Exclusion::Cap as usize], 2);
    // The breaker is open: of the new routes, none; of the old, those still in force.
    let (routes, _) = p.plan(&blocks[..3], &[], 0, &first, false);
    assert_eq!(keys(&routes), ["blackhole 198.18.2.3/32"]);
}

/// A speaker in memory: what it holds, what it was asked, and whether it answers.
#[derive(Clone, Default)]
struct Memory(Arc<Mutex<MemoryState>>);

#[derive(Default)]
struct MemoryState {
    routes: Routes,
    adds: usize,
    withdrawals: usize,
    failing: Option<SpeakerError>,
}

impl Memory {
    fn check(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, SpeakerError> {
        let s = self.0.lock().unwrap();
        match &s.failing {
            Some(e) => Err(e.clone()),
            None => Ok(s),
        }
    }
}

impl Speaker for Memory {
    type Path = ();
    async fn held(&mut self) -> Result<Vec<Held<()>>, SpeakerError> {
        let s = self.check()?;
        Ok(s.routes
            .values()
            .map(|r| Held {
                route: r.clone(),
                path: (),
            })
            .collect())
    }
    async fn add(&mut self, r: &Route) -> Result<(), SpeakerError> {
        let mut s = self.check()?;
        s.adds += 1;
        s.routes.insert(r.key(), r.clone());
        Ok(())
    }
    async fn withdraw(&mut self, h: &Held<()>) -> Result<(), SpeakerError> {
        let mut s = self.check()?;
        s.withdrawals += 1;
        s.routes.remove(&h.route.key());
        Ok(())
    }
    async fn peers(&mut self) -> Result<Vec<IpAddr>, SpeakerError> {
        self.check().map(|_| vec![ip("198.18.4.2")])
    }
}

fn routes(list: &[Route]) -> Routes {
    list.iter().map(|r| (r.key(), r.clone())).collect()
}

fn bh(prefix: &str) -> Route {
    Route::Blackhole {
        prefix: cidr(prefix),
        next_hop: ip("198.18.255.1"),
        communities: super::route::communities(&[], true),
    }
}

fn worker(speaker: &Memory) -> (Worker<Memory>, Arc<BgpCounters>, Arc<Protected>) {
    let counters = Arc::new(BgpCounters::default());
    let protected = Arc::new(Protected::default());
    let w = Worker::new(
        speaker.clone(),
        "127.0.0.1:50051".parse().unwrap(),
        counters.clone(),
        protected.clone(),
    );
    (w, counters, protected)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn the_worker_makes_the_speaker_hold_exactly_the_wanted_routes() {
    let speaker = Memory::default();
    // Left by an earlier run: one still wanted, one stale.
    *speaker.0.lock().unwrap() = MemoryState {
        routes: routes(&[bh("198.18.2.1/32"), bh("198.18.2.9/32")]),
        ..MemoryState::default()
    };
    let (mut w, counters, protected) = worker(&speaker);
    block_on(async {
        // Not planned yet: nothing changes.
        w.sync(None).await;
        assert_eq!(speaker.0.lock().unwrap().routes.len(), 2);
        let want = routes(&[bh("198.18.2.1/32"), bh("198.18.2.2/32"), bh("198.18.4.2/32")]);
        w.sync(Some(&want)).await;
        let s = speaker.0.lock().unwrap();
        // The stale one withdrawn, the live one kept, the new one added; the peer's never.
        assert_eq!(
            keys(&s.routes),
            ["blackhole 198.18.2.1/32", "blackhole 198.18.2.2/32"]
        );
        assert_eq!((s.adds, s.withdrawals), (1, 1));
    });
    assert!(protected.get().contains(&ip("198.18.4.2")));
    let t = counters.totals();
    assert_eq!((t.announced[0], t.announcements[0], t.withdrawals[0]), (2, 1, 1));
    assert!(t.speaker_up);
    let state = counters.state();
    assert_eq!(state.state, "up");
    assert_eq!(state.announced.len(), 2);
}

#[test]
fn a_restarted_or_failing_speaker_gets_everything_back_once_it_answers() {
    let speaker = Memory::default();
    let (mut w, counters, _) = worker(&speaker);
    let want = routes(&[bh("198.18.2.1/32"), bh("198.18.2.2/32")]);
    block_on(async {
        w.sync(Some(&want)).await;
        // The speaker restarts: its RIB is empty.
        speaker.0.lock().unwrap().routes.clear();
        w.sync(Some(&want)).await;
        assert_eq!(speaker.0.lock().unwrap().routes, want);
        // It stops answering: counted at every attempt; the state says why.
        speaker.0.lock().unwrap().failing = Some(SpeakerError::Unreachable {
            addr: "127.0.0.1:50051".into(),
            detail: "connection refused".into(),
        });
        w.sync(Some(&want)).await;
        w.sync(Some(&want)).await;
        let t = counters.totals();
        assert_eq!((t.speaker_up, t.errors), (false, [2, 0, 0]));
        let state = counters.state();
        assert_eq!(state.state, "unreachable");
        assert!(state.error.unwrap().contains("gobgpd --api-hosts"));
        // Back, empty (a restart while down): re-announced.
        {
            let mut s = speaker.0.lock().unwrap();
            s.failing = None;
            s.routes.clear();
        }
        w.sync(Some(&want)).await;
    });
    assert_eq!(speaker.0.lock().unwrap().routes, want);
    assert_eq!(counters.totals().announcements[0], 6);
    assert_eq!(counters.state().state, "up");
}

/// A responder in mitigate mode on shared in-memory tables, with an announcer whose wanted
/// routes the test reads from the watch channel.
struct Rig {
    responder: Responder,
    tables: SharedTables,
    want: watch::Receiver<Want>,
    counters: Arc<BgpCounters>,
    alerts: crate::sinks::alerts::MemoryBuffer,
    t0: Instant,
}

fn rig(bgp: BgpConfig, mode: Mode) -> Rig {
    let tables = SharedTables::new();
    let (sink, alerts) = memory();
    let t0 = Instant {
        mono_ns: 1_000 * NS_PER_S,
        unix_ns: 1_700_000_000 * NS_PER_S,
    };
    let ctx = AlertContext {
        in_iface: None,
        mode,
        bundle: "bgp test".into(),
    };
    let mut responder = Responder::new(
        mode,
        MitigationConfig::default(),
        Box::new(tables.clone()),
        Box::new(sink),
        ctx,
        Arc::new(ResponseCounters::default()),
        t0,
    );
    let counters = Arc::new(BgpCounters::default());
    let (tx, want) = watch::channel(None);
    let protected = Arc::new(Protected::new(vec![ip("198.18.4.1")]));
    let a = Announcer::with_worker(bgp, mode, counters.clone(), protected, tx, None);
    responder.add_decision_sink(Box::new(a));
    Rig {
        responder,
        tables,
        want,
        counters,
        alerts,
        t0,
    }
}

fn scanner(who: &str) -> Finding {
    Finding {
        kind: Kind::SourceScan,
        subject: Subject::Source(ip(who)),
        reason: format!("{who} probed 900 ports/s"),
        rates: vec![("src_ports_per_s".into(), 900.0, 50.0)],
        flow: None,
    }
}

impl Rig {
    fn at(&self, secs: f64) -> Instant {
        self.t0.plus_ns((secs * NS_PER_S as f64) as u64)
    }

    fn wanted(&self) -> Option<Vec<String>> {
        self.want.borrow().as_ref().map(|r| keys(r))
    }
}

#[test]
fn decisions_are_wanted_at_once_and_the_lists_reconcile_them() {
    let mut r = rig(cfg(), Mode::Mitigate);
    // Before the first maintenance nothing is wanted, not even an empty set.
    r.responder.handle(vec![scanner("198.18.2.2")], r.at(0.0));
    assert_eq!(r.wanted(), None);
    r.responder.maintain(r.at(1.0)).unwrap();
    assert_eq!(r.wanted().unwrap(), ["blackhole 198.18.2.2/32"]);
    r.responder.handle(vec![scanner("198.18.2.3")], r.at(1.2));
    assert_eq!(
        r.wanted().unwrap(),
        ["blackhole 198.18.2.2/32", "blackhole 198.18.2.3/32"]
    );
    // An operator's block comes in, one removed by hand goes.
    let manual = block("198.18.6.6/32", 0);
    let mut t = r.tables.clone();
    t.put_block(&manual.prefix, &manual.entry).unwrap();
    t.del_block(&cidr("198.18.2.2/32")).unwrap();
    r.responder.maintain(r.at(2.2)).unwrap();
    assert_eq!(
        r.wanted().unwrap(),
        ["blackhole 198.18.2.3/32", "blackhole 198.18.6.6/32"]
    );
    // The agent's block expires (block_ttl 300 s); the manual one stays.
    r.responder.maintain(r.at(302.0)).unwrap();
    assert_eq!(r.wanted().unwrap(), ["blackhole 198.18.6.6/32"]);
}

#[test]
fn observe_mode_wants_nothing_even_with_blocks_in_force() {
    let mut r = rig(cfg(), Mode::Observe);
    let manual = block("198.18.6.6/32", 0);
    r.tables.clone().put_block(&manual.prefix, &manual.entry).unwrap();
    r.responder.handle(vec![scanner("198.18.2.2")], r.at(0.0));
    r.responder.maintain(r.at(1.0)).unwrap();
    assert_eq!(r.wanted(), Some(Vec::new()));
}

#[test]
fn a_decision_beyond_max_routes_trips_the_breaker_and_is_not_made() {
    let mut c = cfg();
    c.max_routes = 1;
    let mut r = rig(c, Mode::Mitigate);
    r.responder.maintain(r.at(1.0)).unwrap();
    r.responder.handle(vec![scanner("198.18.2.2")], r.at(1.1));
    r.responder.handle(vec![scanner("198.18.2.3")], r.at(1.2));
    let blocks = r.tables.blocks().unwrap();
    assert_eq!(blocks.len(), 1, "the second block was not made: {blocks:?}");
    assert_eq!(r.counters.cap_hits.load(Ordering::Relaxed), 1);
    r.responder.flush();
    let alerts = r.alerts.lines().join("\n");
    assert!(alerts.contains("bgp.max_routes = 1"), "{alerts}");
    assert!(alerts.contains("circuit breaker tripped"), "{alerts}");
    // While the breaker is open, the announced route stays and nothing is added.
    let manual = block("198.18.6.6/32", 0);
    r.tables.clone().put_block(&manual.prefix, &manual.entry).unwrap();
    r.responder.maintain(r.at(2.5)).unwrap();
    assert_eq!(r.wanted().unwrap(), ["blackhole 198.18.2.2/32"]);
}

fn victim() -> Finding {
    Finding {
        kind: Kind::VictimFlood,
        subject: Subject::Victim {
            dst: ip("198.18.3.2"),
            port: 80,
            proto: 6,
            tcp_flags: 0x02,
            limitable: true,
        },
        reason: "7000 distinct sources/s".into(),
        rates: vec![("dst_distinct_srcs_per_s".into(), 7000.0, 200.0)],
        flow: None,
    }
}

#[test]
fn a_rate_limit_beyond_max_routes_trips_the_breaker_too() {
    let mut c = cfg();
    c.max_routes = 1;
    let mut r = rig(c, Mode::Mitigate);
    // An operator's block takes the one route.
    let manual = block("198.18.6.6/32", 0);
    r.tables.clone().put_block(&manual.prefix, &manual.entry).unwrap();
    r.responder.maintain(r.at(1.0)).unwrap();
    r.responder.handle(vec![victim()], r.at(1.1));
    assert!(r.tables.rate_limits().unwrap().is_empty());
    assert_eq!(r.counters.cap_hits.load(Ordering::Relaxed), 1);
    r.responder.flush();
    let alerts = r.alerts.lines().join("\n");
    assert!(
        alerts.contains("circuit breaker tripped: 1 routes announced upstream"),
        "{alerts}"
    );
    assert!(alerts.contains("would-block"), "{alerts}");
}

#[test]
fn rate_limits_are_announced_as_flowspec_and_allowlisted_blocks_never() {
    let mut r = rig(cfg(), Mode::Mitigate);
    r.tables
        .clone()
        .put_allow(&cidr("198.18.2.0/24"), Origin::Manual, 0)
        .unwrap();
    let manual = block("198.18.2.7/32", 0);
    r.tables.clone().put_block(&manual.prefix, &manual.entry).unwrap();
    r.responder.maintain(r.at(1.0)).unwrap();
    r.responder.handle(vec![victim()], r.at(1.1));
    assert_eq!(
        r.wanted().unwrap(),
        ["flowspec destination 198.18.3.2/32 protocol TCP port 80 tcp-flags S of FSRA"]
    );
    r.responder.maintain(r.at(2.2)).unwrap();
    assert_eq!(
        r.counters.excluded[Exclusion::Allowlisted as usize].load(Ordering::Relaxed),
        1
    );
    assert!(matches!(
        r.responder.enforcer().rate_limits().unwrap()[..],
        [(_, RateLimit { .. })]
    ));
}

fn parse(text: &str) -> Result<crate::pipeline::config::Config, String> {
    crate::pipeline::config::Config::parse(text, "/etc/netanom.toml").map_err(|e| e.to_string())
}

#[test]
fn the_bgp_section_is_read_and_bad_values_are_named() {
    let c = parse(
        "[bgp]\nenabled = true\nspeaker = \"[::1]:50052\"\ncommunities = [\"64512:666\", \"65535:65281\"]\n\
         flowspec_action = \"discard\"\nblackhole_prefix_v4 = 24\nnext_hop_v6 = \"2001:db8:ff::1\"\n",
    )
    .unwrap()
    .bgp;
    assert!(c.enabled);
    assert_eq!(c.speaker.to_string(), "[::1]:50052");
    assert_eq!(
        c.communities,
        [Community(64512 << 16 | 666), Community(0xFFFF_FF01)]
    );
    assert_eq!(c.flowspec_action, FlowSpecAction::Discard);
    assert_eq!((c.blackhole_prefix(true), c.blackhole_prefix(false)), (24, 128));
    for (text, wanted) in [
        (
            "communities = [\"64512:70000\"]",
            "/etc/netanom.toml:2:15: `64512:70000` is not a BGP community",
        ),
        (
            "speaker = \"localhost\"",
            "/etc/netanom.toml:2:11: `localhost` is not ADDRESS:PORT",
        ),
        (
            "next_hop_v4 = \"0.0.0.0\"",
            "bgp.next_hop_v4 = an unspecified address is not allowed",
        ),
        (
            "blackhole_prefix_v4 = 16",
            "bgp.blackhole_prefix_v4 = 16 is not allowed: at least bgp.widest_prefix_v4 (24)",
        ),
        (
            "widest_prefix_v6 = 129",
            "bgp.widest_prefix_v6 = 129 is not allowed: from 8 to 128",
        ),
        (
            "max_routes = 0",
            "bgp.max_routes = 0 is not allowed: from 1 to 100000",
        ),
        (
            "flowspec_action = \"drop\"",
            "/etc/netanom.toml:2:19: unknown variant `drop`",
        ),
        ("next_hop = \"192.0.2.1\"", "unknown field `next_hop`"),
    ] {
        let e = parse(&format!("[bgp]\n{text}\n")).unwrap_err();
        assert!(e.contains(wanted), "{text}: {e}");
    }
}

#[test]
fn bgp_metrics_show_the_counters_and_only_with_bgp_on() {
    use crate::sinks::metrics::Metrics;
    let counters = BgpCounters::default();
    counters.speaker_up.store(true, Ordering::Relaxed);
    counters.announced[1].store(2, Ordering::Relaxed);
    counters.withdrawals[0].store(5, Ordering::Relaxed);
    counters.excluded[Exclusion::Protected as usize].store(1, Ordering::Relaxed);
    counters.errors[1].store(7, Ordering::Relaxed);
    let m = Metrics::new(64, None).with_bgp();
    m.update_bgp(&counters.totals());
    let text = m.text();
    for line in [
        "netanom_bgp_speaker_up 1",
        "netanom_bgp_routes_announced{kind=\"flowspec\"} 2",
        "netanom_bgp_routes_announced{kind=\"blackhole\"} 0",
        "netanom_bgp_withdrawals_total{kind=\"blackhole\"} 5",
        "netanom_bgp_routes_excluded{reason=\"protected\"} 1",
        "netanom_bgp_speaker_errors_total{reason=\"refused\"} 7",
        "netanom_bgp_cap_hits_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in {text}");
    }
    let off = Metrics::new(64, None);
    off.update_bgp(&counters.totals());
    assert!(!off.text().contains("netanom_bgp"));
}
