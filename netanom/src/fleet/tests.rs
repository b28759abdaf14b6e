//! The fleet without a network: the messages (encoding, versions, bad input), the rails a
//! remote decision goes through (trust, the cap, expiry, clock skew, idempotence, own echoes,
//! the allowlist and protected addresses, observe mode), `[fleet]` parsing and validation, the
//! subjects, the outbox's bound, and the decision sink's messages.
use std::{net::IpAddr, sync::Arc};

use netanom_common::{
    mitigate::{BlockEntry, Origin, RateLimit},
    time::{Instant, NS_PER_S},
};

use super::{
    apply::{Ignored, Outcome, Rules, SKEW_S, gateway_of_reason},
    config::{FleetConfig, Subjects},
    message::{Action, DecisionMsg, Heartbeat, Pattern, Rejected, VERSION},
    outbox::{Kind, Outbound, outbox},
    publisher::{self, decision_msg, outbound},
};
use crate::{
    detect::Kind as Finding,
    pipeline::config::Config,
    respond::{Cidr, Decision, DecisionSink as _, Enforcer, MemoryTables, Mode, enforcer::pattern_key},
    sinks::alerts::fleet::with_host,
    telemetry::fleet::FleetCounters,
};

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

/// Both clocks at `s` seconds (monotonic 1000 s behind Unix, so mixing them up shows).
fn at(s: f64) -> Instant {
    let ns = (s * 1e9) as u64;
    Instant {
        mono_ns: ns,
        unix_ns: ns + 1000 * NS_PER_S,
    }
}

/// Unix seconds of [`at`]`(s)`.
fn unix(s: f64) -> f64 {
    s + 1000.0
}

fn block_msg(gw: &str, prefix: &str, decided: f64, ttl: u32) -> DecisionMsg {
    DecisionMsg {
        v: VERSION,
        id: format!("{gw}-1-{prefix}"),
        gateway: gw.into(),
        action: Action::Block,
        decided_at: unix(decided),
        prefix: Some(cidr(prefix)),
        rate_limit: None,
        expires_at: Some(unix(decided) + f64::from(ttl)),
        ttl_s: ttl,
        reason: "port scan".into(),
        signature: "netanom: port scan from source".into(),
        strikes: 2,
        bundle: "test v1".into(),
    }
}

struct Here {
    cfg: FleetConfig,
    protected: Vec<IpAddr>,
    lists: MemoryTables,
    mitigating: bool,
}

impl Here {
    fn new() -> Here {
        Here {
            cfg: FleetConfig {
                enabled: true,
                gateway_id: "gw-b".into(),
                ..FleetConfig::default()
            },
            protected: vec!["198.18.3.1".parse().unwrap()],
            lists: MemoryTables::new(),
            mitigating: true,
        }
    }

    fn apply(&mut self, m: &DecisionMsg, now: Instant) -> Outcome {
        let rules = Rules {
            cfg: &self.cfg,
            me: "gw-b",
            protected: &self.protected,
            mitigating: self.mitigating,
            max_rate_limits: 2,
        };
        rules.apply(&mut self.lists, m, now).unwrap()
    }

    fn block(&self, prefix: &str) -> Option<BlockEntry> {
        self.lists.block_entry(&cidr(prefix)).unwrap()
    }
}

#[test]
fn messages_round_trip_and_name_their_version() {
    let m = block_msg("gw-a", "198.18.2.66/32", 10.0, 300);
    let bytes = m.encode();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["v"], 1);
    assert_eq!(json["action"], "block");
    assert_eq!(json["prefix"], "198.18.2.66/32");
    assert_eq!(json["expires_at"], unix(10.0) + 300.0);
    let back = DecisionMsg::decode("netanom.decisions.gw-a", "gw-a", &bytes).unwrap();
    assert_eq!(back, m);
    // A new optional field does not need a new version.
    let mut extra = json.clone();
    extra["later_field"] = serde_json::json!(true);
    let bytes = serde_json::to_vec(&extra).unwrap();
    assert!(DecisionMsg::decode("netanom.decisions.gw-a", "gw-a", &bytes).is_ok());
    let h = Heartbeat {
        v: VERSION,
        gateway: "gw-a".into(),
        sent_at: 1.0,
        version: "0.1.0".into(),
        published: 3,
        last_decision_at: Some(0.5),
    };
    assert_eq!(
        Heartbeat::decode("netanom.heartbeat.gw-a", "gw-a", &h.encode()).unwrap(),
        h
    );
}

#[test]
fn bad_messages_are_rejected_with_their_reason() {
    let subject = "netanom.decisions.gw-a";
    let decode = |p: &[u8]| DecisionMsg::decode(subject, "gw-a", p).unwrap_err();
    assert!(matches!(decode(b"not json"), Rejected::Malformed { .. }));
    assert!(matches!(
        decode(b"{\"action\":\"block\"}"),
        Rejected::Malformed { .. }
    ));
    let mut v2 = serde_json::to_value(block_msg("gw-a", "198.18.2.66", 1.0, 60)).unwrap();
    v2["v"] = serde_json::json!(2);
    let e = decode(&serde_json::to_vec(&v2).unwrap());
    assert_eq!(e.index(), 1);
    assert!(e.to_string().contains("version 2"), "{e}");
    // Another gateway's name on gw-a's subject.
    let forged = block_msg("gw-c", "198.18.2.66", 1.0, 60).encode();
    let e = decode(&forged);
    assert!(matches!(e, Rejected::Unauthenticated { .. }), "{e}");
    assert!(e.to_string().contains("permissions"), "{e}");
    // A block without a prefix, a rate limit without its pattern, a huge message.
    let mut m = block_msg("gw-a", "198.18.2.66", 1.0, 60);
    m.prefix = None;
    assert!(matches!(decode(&m.encode()), Rejected::Malformed { .. }));
    m.action = Action::RateLimit;
    assert!(matches!(decode(&m.encode()), Rejected::Malformed { .. }));
    assert!(matches!(decode(&vec![b' '; 20_000]), Rejected::Malformed { .. }));
}

#[test]
fn a_trusted_block_is_applied_with_origin_fleet_and_its_gateway() {
    let mut h = Here::new();
    let m = block_msg("gw-a", "198.18.2.66/32", 10.0, 300);
    assert_eq!(h.apply(&m, at(10.5)), Outcome::Applied);
    let e = h.block("198.18.2.66/32").unwrap();
    assert_eq!(e.origin, Origin::Fleet as u32);
    assert_eq!((e.ttl_s, e.strikes), (300, 2));
    // The absolute expiry: 300 s after the decision, so 299.5 s from now here.
    assert_eq!(e.expires_ns, at(310.0).mono_ns);
    let b = h.lists.blocks().unwrap().remove(0);
    assert_eq!(b.origin(), "fleet");
    assert_eq!(gateway_of_reason(&b.reason()), Some("gw-a"));
    assert_eq!(b.reason(), "gw-a: port scan");
}

#[test]
fn duplicates_and_replays_change_nothing() {
    let mut h = Here::new();
    let m = block_msg("gw-a", "198.18.2.66/32", 10.0, 300);
    assert_eq!(h.apply(&m, at(10.5)), Outcome::Applied);
    let first = h.block("198.18.2.66/32");
    assert_eq!(h.apply(&m, at(11.0)), Outcome::Ignored(Ignored::Duplicate));
    assert_eq!(h.apply(&m, at(200.0)), Outcome::Ignored(Ignored::Duplicate));
    assert_eq!(h.block("198.18.2.66/32"), first);
    // A shorter block of the same prefix does not shorten it; a longer one extends it.
    let short = block_msg("gw-c", "198.18.2.66/32", 20.0, 60);
    assert_eq!(h.apply(&short, at(20.0)), Outcome::Ignored(Ignored::Duplicate));
    let long = block_msg("gw-c", "198.18.2.66/32", 20.0, 3600);
    assert_eq!(h.apply(&long, at(20.0)), Outcome::Applied);
    assert_eq!(h.block("198.18.2.66/32").unwrap().expires_ns, at(3620.0).mono_ns);
}

#[test]
fn own_and_untrusted_decisions_are_ignored() {
    let mut h = Here::new();
    let own = block_msg("gw-b", "198.18.2.66/32", 10.0, 300);
    assert_eq!(h.apply(&own, at(10.0)), Outcome::Ignored(Ignored::Own));
    h.cfg.trust = vec!["gw-a".into()];
    let rogue = block_msg("gw-x", "198.18.2.67/32", 10.0, 300);
    assert_eq!(h.apply(&rogue, at(10.0)), Outcome::Ignored(Ignored::Untrusted));
    let trusted = block_msg("gw-a", "198.18.2.67/32", 10.0, 300);
    assert_eq!(h.apply(&trusted, at(10.0)), Outcome::Applied);
    assert_eq!(h.lists.blocks().unwrap().len(), 1);
}

#[test]
fn the_allowlist_host_addresses_and_wide_prefixes_win() {
    let mut h = Here::new();
    h.lists
        .put_allow(&cidr("198.18.2.0/28"), Origin::Agent, 0)
        .unwrap();
    let allowed = block_msg("gw-a", "198.18.2.7/32", 10.0, 300);
    assert_eq!(
        h.apply(&allowed, at(10.0)),
        Outcome::Ignored(Ignored::Allowlisted)
    );
    // A wider block overlapping the allowlist is not applied either.
    let wider = block_msg("gw-a", "198.18.2.0/24", 10.0, 300);
    assert_eq!(h.apply(&wider, at(10.0)), Outcome::Ignored(Ignored::Allowlisted));
    let gateway = block_msg("gw-a", "198.18.3.0/24", 10.0, 300);
    assert_eq!(h.apply(&gateway, at(10.0)), Outcome::Ignored(Ignored::Protected));
    let wide = block_msg("gw-a", "10.0.0.0/7", 10.0, 300);
    assert_eq!(h.apply(&wide, at(10.0)), Outcome::Ignored(Ignored::TooWide));
    assert!(h.lists.blocks().unwrap().is_empty());
}

#[test]
fn expired_decisions_are_not_applied_and_skew_is_bounded() {
    let mut h = Here::new();
    let old = block_msg("gw-a", "198.18.2.66/32", 10.0, 60);
    assert_eq!(h.apply(&old, at(71.0)), Outcome::Ignored(Ignored::Expired));
    // The sender's clock 20 s ahead: within the tolerance, applied, and never longer than
    // its TTL plus the tolerance here.
    let ahead = block_msg("gw-a", "198.18.2.67/32", 120.0, 60);
    assert_eq!(h.apply(&ahead, at(100.0)), Outcome::Applied);
    let e = h.block("198.18.2.67/32").unwrap();
    assert_eq!(e.expires_ns, at(180.0).mono_ns);
    let far = block_msg("gw-a", "198.18.2.68/32", 100.0 + SKEW_S + 100.0, 3600);
    assert_eq!(h.apply(&far, at(100.0)), Outcome::Skewed);
    let way_ahead = block_msg("gw-a", "198.18.2.69/32", 100.0 + SKEW_S - 1.0, 10);
    assert_eq!(h.apply(&way_ahead, at(100.0)), Outcome::Applied);
    assert_eq!(
        h.block("198.18.2.69/32").unwrap().expires_ns,
        at(100.0 + SKEW_S - 1.0 + 10.0).mono_ns
    );
    // No expiry: a permanent block.
    let mut forever = block_msg("gw-a", "198.18.2.70/32", 100.0, 0);
    forever.expires_at = None;
    assert_eq!(h.apply(&forever, at(100.0)), Outcome::Applied);
    assert_eq!(h.block("198.18.2.70/32").unwrap().expires_ns, 0);
}

#[test]
fn the_remote_cap_holds_and_observe_mode_applies_nothing() {
    let mut h = Here::new();
    h.cfg.max_remote_blocks = 2;
    for (i, want) in [
        (1, Outcome::Applied),
        (2, Outcome::Applied),
        (3, Outcome::Ignored(Ignored::Cap)),
    ] {
        let m = block_msg("gw-a", &format!("198.18.2.{i}/32"), 10.0, 300);
        assert_eq!(h.apply(&m, at(10.0)), want, "block {i}");
    }
    // An expired one frees its place.
    let m = block_msg("gw-a", "198.18.2.9/32", 400.0, 300);
    assert_eq!(h.apply(&m, at(400.0)), Outcome::Applied);
    let mut h = Here::new();
    h.mitigating = false;
    let m = block_msg("gw-a", "198.18.2.66/32", 10.0, 300);
    assert_eq!(h.apply(&m, at(10.0)), Outcome::Ignored(Ignored::Observe));
    h.mitigating = true;
    h.cfg.apply_remote = false;
    assert_eq!(h.apply(&m, at(10.0)), Outcome::Ignored(Ignored::ApplyOff));
    assert!(h.lists.blocks().unwrap().is_empty());
}

#[test]
fn an_unblock_removes_only_what_the_fleet_put() {
    let mut h = Here::new();
    let m = block_msg("gw-a", "198.18.2.66/32", 10.0, 300);
    assert_eq!(h.apply(&m, at(10.0)), Outcome::Applied);
    let local = BlockEntry {
        origin: Origin::Agent as u32,
        expires_ns: at(500.0).mono_ns,
        ..h.block("198.18.2.66/32").unwrap()
    };
    h.lists.put_block(&cidr("198.18.2.77/32"), &local).unwrap();
    let mut un = block_msg("gw-a", "198.18.2.66/32", 20.0, 0);
    un.action = Action::Unblock;
    assert_eq!(h.apply(&un, at(20.0)), Outcome::Applied);
    assert_eq!(h.block("198.18.2.66/32"), None);
    assert_eq!(h.apply(&un, at(21.0)), Outcome::Ignored(Ignored::Duplicate));
    un.prefix = Some(cidr("198.18.2.77/32"));
    assert_eq!(h.apply(&un, at(21.0)), Outcome::Ignored(Ignored::Protected));
    assert!(h.block("198.18.2.77/32").is_some());
}

#[test]
fn rate_limits_are_applied_once_within_the_cap() {
    let mut h = Here::new();
    let rl = |port: u16| DecisionMsg {
        action: Action::RateLimit,
        prefix: None,
        rate_limit: Some(Pattern {
            dst: "198.18.3.2".parse().unwrap(),
            port,
            proto: 6,
            tcp_flags: 0x02,
            pps: 1000.0,
            burst: 100,
        }),
        ..block_msg("gw-a", "198.18.2.66/32", 10.0, 300)
    };
    assert_eq!(h.apply(&rl(80), at(10.0)), Outcome::Applied);
    assert_eq!(h.apply(&rl(80), at(11.0)), Outcome::Ignored(Ignored::Duplicate));
    assert_eq!(h.apply(&rl(81), at(11.0)), Outcome::Applied);
    assert_eq!(h.apply(&rl(82), at(11.0)), Outcome::Ignored(Ignored::Cap));
    let limits = h.lists.rate_limits().unwrap();
    let key = pattern_key("198.18.3.2".parse().unwrap(), 80, 6, 0x02);
    let (_, l) = limits.iter().find(|(k, _)| *k == key).unwrap();
    assert_eq!(l.interval_ns, 1_000_000);
    assert_eq!(l.expires_ns, at(310.0).mono_ns);
}

#[test]
fn the_sink_publishes_decisions_with_absolute_expiries() {
    let counters = Arc::new(FleetCounters::default());
    let (ob, mut inbox) = outbox(8, counters.clone());
    let origin = publisher::Origin {
        gateway: "gw-a".into(),
        bundle: "test v1".into(),
        subjects: Subjects::new("netanom"),
        boot_ns: 7,
    };
    let mitigating = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut p = publisher::Publisher::new(origin.clone(), ob, true, mitigating.clone());
    let now = at(10.0);
    let entry = BlockEntry {
        expires_ns: at(310.0).mono_ns,
        added_ns: now.mono_ns,
        packets: 0,
        bytes: 0,
        ttl_s: 300,
        strikes: 1,
        origin: Origin::Agent as u32,
        _pad: 0,
        reason: [0; netanom_common::mitigate::REASON_LEN],
    };
    let d = Decision::Block {
        prefix: cidr("198.18.2.66/32"),
        entry,
        kind: Finding::SourceScan,
        reason: "3000 ports/s".into(),
    };
    p.decided(&d, now);
    let key = pattern_key("198.18.3.2".parse().unwrap(), 80, 6, 0x02);
    let limit = RateLimit::new(1000.0, 100, now.mono_ns, at(70.0).mono_ns);
    let rl = Decision::RateLimit {
        key,
        limit,
        kind: Finding::VictimFlood,
        reason: "flood".into(),
    };
    p.decided(&rl, now);
    let a = inbox.try_recv().unwrap();
    assert_eq!(a.subject, "netanom.decisions.gw-a");
    assert_eq!(a.msg_id.as_deref(), Some("gw-a-7-1"));
    let m = DecisionMsg::decode(&a.subject, "gw-a", &a.payload).unwrap();
    assert_eq!(m.expires_at, Some(unix(310.0)));
    assert_eq!((m.ttl_s, m.strikes, m.bundle.as_str()), (300, 1, "test v1"));
    assert_eq!(m.signature, Finding::SourceScan.signature());
    let b = inbox.try_recv().unwrap();
    let m = DecisionMsg::decode(&b.subject, "gw-a", &b.payload).unwrap();
    let pat = m.rate_limit.unwrap();
    assert_eq!(
        (pat.dst.to_string().as_str(), pat.port, pat.pps, pat.burst),
        ("198.18.3.2", 80, 1000.0, 100)
    );
    assert_eq!((m.expires_at, m.ttl_s), (Some(unix(70.0)), 60));
    // The mode in force reaches the fleet's thread.
    p.modes(Mode::Mitigate, Mode::Observe);
    assert!(!mitigating.load(std::sync::atomic::Ordering::Relaxed));
    // Not sharing: nothing queued.
    let (ob, mut inbox) = outbox(8, counters);
    let mut quiet = publisher::Publisher::new(origin, ob, false, mitigating);
    quiet.decided(&d, now);
    assert!(inbox.try_recv().is_err());
}

#[test]
fn a_full_outbox_drops_counts_and_never_waits() {
    let counters = Arc::new(FleetCounters::default());
    let (ob, mut inbox) = outbox(2, counters.clone());
    let m = |i: u8| Outbound {
        subject: format!("netanom.alerts.gw-a.{i}"),
        payload: vec![i],
        msg_id: None,
        kind: Kind::Alert,
    };
    for i in 0..5 {
        ob.push(m(i));
    }
    let t = counters.totals();
    assert_eq!((t.queued, t.overflow), (2, 3));
    // What waited goes out in order.
    assert_eq!(inbox.try_recv().unwrap().payload, vec![0]);
    assert_eq!(inbox.try_recv().unwrap().payload, vec![1]);
    ob.push(m(9));
    assert_eq!(counters.totals().queued, 1);
}

#[test]
fn fleet_config_parses_validates_and_says_where() {
    let cfg = Config::parse(
        "[fleet]\nenabled = true\nservers = [\"nats://198.18.9.1:4222\", \"tls://nats.example:4443\"]\n\
         gateway_id = \"gw-a\"\ntrust = [\"gw-b\"]\nuser = \"netanom\"\npassword = \"s3cret\"\n",
        "t.toml",
    )
    .unwrap();
    cfg.validate().unwrap();
    let f = &cfg.fleet;
    assert_eq!(f.gateway(), "gw-a");
    assert!(f.servers[1].is_tls() && !f.servers[0].is_tls());
    assert!(f.trusts("gw-b") && !f.trusts("gw-c"));
    assert!(FleetConfig::default().trusts("anyone"));
    let d = FleetConfig::default();
    assert_eq!(
        (
            d.enabled,
            d.subject_prefix.as_str(),
            d.max_remote_blocks,
            d.share_blocks
        ),
        (false, "netanom", 10_000, true)
    );
    // A malformed URL fails with its line and column; an unreachable server is not an error.
    for bad in ["http://x:4222", "nats://", "198.18.9.1:4222", "nats://:4222"] {
        let e = Config::parse(&format!("[fleet]\nservers = [\"{bad}\"]\n"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:2:"), "{bad}: {e}");
        assert!(e.contains("not a NATS server URL"), "{e}");
    }
    let invalid = |text: &str| {
        Config::parse(text, "t.toml")
            .and_then(|c| c.validate())
            .unwrap_err()
            .to_string()
    };
    assert!(invalid("[fleet]\ngateway_id = \"gw a\"\n").contains("fleet.gateway_id"));
    assert!(invalid("[fleet]\nsubject_prefix = \"a..b\"\n").contains("fleet.subject_prefix"));
    assert!(invalid("[fleet]\nuser = \"x\"\n").contains("fleet.password"));
    assert!(invalid("[fleet]\nmax_remote_blocks = 0\n").contains("fleet.max_remote_blocks"));
    assert!(invalid("[fleet]\ntrust = [\"a.b\"]\n").contains("fleet.trust"));
    assert!(invalid("[fleet]\nenabled = true\nservers = []\n").contains("fleet.servers"));
}

#[test]
fn subjects_and_streams_follow_the_prefix() {
    let s = Subjects::new("acme.netanom");
    assert_eq!(s.decisions("gw-a"), "acme.netanom.decisions.gw-a");
    assert_eq!(s.all("alerts"), "acme.netanom.alerts.*");
    assert_eq!(
        s.gateway_of("decisions", "acme.netanom.decisions.gw-a"),
        Some("gw-a")
    );
    assert_eq!(s.gateway_of("decisions", "acme.netanom.alerts.gw-a"), None);
    assert_eq!(s.gateway_of("decisions", "acme.netanom.decisions.a.b"), None);
    assert_eq!(s.decision_stream(), "ACME_NETANOM_DECISIONS");
    assert_eq!(s.alert_stream(), "ACME_NETANOM_ALERTS");
}

#[test]
fn published_alerts_are_eve_with_the_gateway_as_host() {
    use crate::respond::{Action as AlertAction, Alert};
    let a = Alert::new(
        Finding::SourceScan,
        AlertAction::Blocked,
        1_700_000_000_000_000_000,
        "198.18.2.66".parse().unwrap(),
        "198.18.3.2".parse().unwrap(),
        6,
    );
    let v: serde_json::Value = serde_json::from_str(&with_host(&a, "gw-a")).unwrap();
    assert_eq!(v["host"], "gw-a");
    assert_eq!(v["src_ip"], "198.18.2.66");
    assert_eq!(v["event_type"], "alert");
    let m = decision_msg(
        &publisher::Origin {
            gateway: "gw-a".into(),
            bundle: String::new(),
            subjects: Subjects::new("netanom"),
            boot_ns: 0,
        },
        "x".into(),
        &Decision::Block {
            prefix: cidr("2001:db8:2::66/128"),
            entry: BlockEntry {
                expires_ns: 0,
                added_ns: 0,
                packets: 0,
                bytes: 0,
                ttl_s: 0,
                strikes: 1,
                origin: Origin::Agent as u32,
                _pad: 0,
                reason: [0; netanom_common::mitigate::REASON_LEN],
            },
            kind: Finding::SourceScan,
            reason: String::new(),
        },
        at(1.0),
    );
    assert_eq!(m.expires_at, None);
    assert_eq!(
        outbound(&Subjects::new("netanom"), &m).kind,
        Kind::Decision(Action::Block)
    );
}
