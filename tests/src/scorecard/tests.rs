//! The scoring logic against alerts written by hand.
use std::{net::IpAddr, str::FromStr as _};

use netanom::respond::prefix::Cidr;
use netanom_common::time::EveTime;

use super::{
    alerts::{Alert, eve_time_ns, parse, parse_lines},
    report::{CaptureReport, ConfigResult, Report, markdown, totals},
    run::Config,
    score::{Score, Subject, median, score},
};
use crate::corpus::{
    capture::{Facts, Roles},
    manifest::{Entry, Expected, Label},
};

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000_000_000;
const S: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    IpAddr::from_str(s).unwrap()
}

fn cidr(s: &str) -> Cidr {
    Cidr::from_str(s).unwrap()
}

fn roles(attackers: &[&str], victims: &[&str], innocents: &[&str]) -> Roles {
    let v = |x: &[&str]| x.iter().map(|s| cidr(s)).collect();
    Roles {
        attackers: v(attackers),
        victims: v(victims),
        innocents: v(innocents),
    }
}

/// A capture of 60 s whose attack starts 10 s in.
fn facts() -> Facts {
    Facts {
        frames: 1000,
        first_ns: T0,
        last_ns: T0 + 60 * S,
        attack_start_ns: Some(T0 + 10 * S),
        ..Facts::default()
    }
}

fn alert(at_s: f64, src: &str, dest: &str, action: &str, kind: &str) -> Alert {
    Alert {
        ts_ns: T0 + (at_s * 1e9) as u64,
        src: ip(src),
        dest: ip(dest),
        action: action.into(),
        kind: kind.into(),
        block: None,
        rate_limit: None,
    }
}

fn blocked(at_s: f64, src: &str, dest: &str, kind: &str, prefix: &str) -> Alert {
    Alert {
        block: Some(cidr(prefix)),
        ..alert(at_s, src, dest, "blocked", kind)
    }
}

fn scored(label: Label, expected: Expected, r: &Roles, f: &Facts, alerts: &[Alert]) -> Score {
    score(
        &Subject {
            label,
            expected,
            roles: r,
            facts: f,
        },
        alerts,
    )
}

const ATTACKER: &str = "198.18.2.2";
const SERVER: &str = "198.18.3.2";
const CLIENT: &str = "198.18.1.2";

#[test]
fn a_blocked_scanner_is_detected_with_its_times_and_kind() {
    let r = roles(&[ATTACKER], &[SERVER], &[CLIENT]);
    let a = [
        alert(12.5, ATTACKER, SERVER, "allowed", "flow_anomaly"),
        blocked(11.0, ATTACKER, "0.0.0.0", "source_scan", "198.18.2.2/32"),
    ];
    let s = scored(Label::Attack, Expected::BlockSource, &r, &facts(), &a);
    assert!(s.detected && s.outcome_met, "{s:?}");
    assert_eq!(s.first_alert_s, Some(1.0));
    assert_eq!(s.block_s, Some(1.0));
    assert_eq!(s.kinds, ["flow_anomaly", "source_scan"]);
    assert_eq!((s.alerts, s.false_alerts, s.blocks, s.other_blocks), (2, 0, 1, 0));
    assert!(s.innocents_alerted.is_empty() && s.innocents_blocked.is_empty());
}

#[test]
fn an_attack_without_alerts_about_it_is_missed() {
    let r = roles(&[ATTACKER], &[SERVER], &[CLIENT]);
    // The only alert is about the benign client talking to the victim: not a detection.
    let a = [alert(20.0, CLIENT, SERVER, "allowed", "flow_anomaly")];
    let s = scored(Label::Attack, Expected::BlockSource, &r, &facts(), &a);
    assert!(!s.detected && !s.outcome_met);
    assert_eq!((s.first_alert_s, s.block_s), (None, None));
    assert!(s.kinds.is_empty());
    assert_eq!(s.false_alerts, 1);
    assert_eq!(s.innocents_alerted, [CLIENT]);
}

#[test]
fn an_alert_without_the_expected_block_is_detected_but_not_met() {
    let r = roles(&[ATTACKER], &[SERVER], &[CLIENT]);
    // Observe-mode style decisions do not mitigate.
    let a = [Alert {
        block: Some(cidr("198.18.2.2/32")),
        ..alert(14.0, ATTACKER, SERVER, "would-block", "anomalous_flows")
    }];
    let s = scored(Label::Attack, Expected::BlockSource, &r, &facts(), &a);
    assert!(s.detected && !s.outcome_met);
    assert_eq!(s.first_alert_s, Some(4.0));
    assert_eq!(s.block_s, None);
    assert_eq!(s.blocks, 0);
}

#[test]
fn a_spoofed_flood_is_met_by_the_rate_limit_and_source_blocks_are_counted_apart() {
    // No attacker: the spoofed sources are not innocent, the client is.
    let r = roles(&[], &[SERVER], &[CLIENT]);
    let a = [
        Alert {
            rate_limit: Some(ip(SERVER)),
            ..alert(10.5, "0.0.0.0", SERVER, "blocked", "victim_flood")
        },
        blocked(10.7, "198.19.4.5", SERVER, "source_syn_flood", "198.19.4.5/32"),
        blocked(11.0, CLIENT, SERVER, "anomalous_flows", "198.18.1.0/24"),
    ];
    let s = scored(Label::Attack, Expected::VictimRateLimit, &r, &facts(), &a);
    assert!(s.detected && s.outcome_met, "{s:?}");
    assert_eq!(s.first_alert_s, Some(0.5));
    assert_eq!(s.block_s, Some(0.5));
    assert_eq!(s.kinds, ["source_syn_flood", "victim_flood"]);
    assert_eq!((s.rate_limits, s.blocks, s.other_blocks), (1, 2, 1));
    assert_eq!(s.innocents_alerted, [CLIENT]);
    // A /24 block around the client covers it.
    assert_eq!(s.innocents_blocked, ["198.18.1.2/32"]);
    assert_eq!(s.false_alerts, 1);
}

#[test]
fn a_victim_outcome_needs_a_rate_limit_toward_a_victim() {
    let r = roles(&[], &[SERVER], &[]);
    let a = [Alert {
        rate_limit: Some(ip("198.18.9.9")),
        ..alert(10.2, "0.0.0.0", SERVER, "blocked", "victim_flood")
    }];
    let s = scored(Label::Attack, Expected::VictimRateLimit, &r, &facts(), &a);
    assert!(s.detected && !s.outcome_met);
    assert_eq!(s.block_s, None);
}

#[test]
fn a_blocked_victim_is_an_innocent_blocked() {
    let r = roles(&[ATTACKER], &[SERVER], &[CLIENT]);
    let a = [blocked(15.0, SERVER, ATTACKER, "source_flood", "198.18.3.2/32")];
    let s = scored(Label::Attack, Expected::BlockSource, &r, &facts(), &a);
    assert!(!s.detected && !s.outcome_met);
    assert_eq!(s.innocents_alerted, [SERVER]);
    assert_eq!(s.innocents_blocked, ["198.18.3.2/32"]);
    assert_eq!(s.other_blocks, 0);
}

#[test]
fn an_alert_only_attack_is_met_by_any_alert_about_it_and_prefixes_match() {
    // A ping sweep's victims are a /24; the alert names one of its addresses.
    let r = roles(&[ATTACKER], &["198.18.3.0/24"], &[CLIENT]);
    let a = [alert(30.0, "0.0.0.0", "198.18.3.77", "allowed", "victim_flood")];
    let s = scored(Label::Attack, Expected::AlertOnly, &r, &facts(), &a);
    assert!(s.detected && s.outcome_met);
    assert_eq!(s.first_alert_s, Some(20.0));
}

#[test]
fn benign_captures_count_alerts_per_hour_and_every_host_is_innocent() {
    let r = roles(&[], &[], &[]);
    let f = Facts {
        last_ns: T0 + 1800 * S,
        attack_start_ns: None,
        ..facts()
    };
    let a = [
        alert(100.0, "192.168.2.108", "192.168.2.1", "allowed", "flow_anomaly"),
        blocked(
            200.0,
            "192.168.2.113",
            "0.0.0.0",
            "source_flood",
            "192.168.2.113/32",
        ),
    ];
    let s = scored(Label::Benign, Expected::None, &r, &f, &a);
    assert!(!s.detected && !s.outcome_met);
    assert_eq!(s.alerts_per_hour, Some(4.0));
    assert_eq!(s.false_alerts, 2);
    assert_eq!(s.innocents_alerted, ["192.168.2.108", "192.168.2.113"]);
    assert_eq!(s.innocents_blocked, ["192.168.2.113/32"]);
    let quiet = scored(Label::Benign, Expected::None, &r, &f, &[]);
    assert!(quiet.outcome_met);
    assert_eq!(quiet.alerts_per_hour, Some(0.0));
}

#[test]
fn medians() {
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
}

#[test]
fn eve_timestamps_parse_as_the_agent_writes_them() {
    for ns in [
        0,
        T0,
        T0 + 123_456_000,
        951_782_400 * S,
        4_102_444_800 * S - 1000,
        1_709_164_800 * S,
    ] {
        let text = EveTime(ns).to_string();
        assert_eq!(eve_time_ns(&text), Ok(ns - ns % 1000), "{text}");
    }
    for bad in [
        "2026-01-01 00:00:00.000000+0000",
        "2026-13-01T00:00:00.000000+0000",
        "2026-01-01T00:00:00.000000+0100",
        "",
    ] {
        assert!(eve_time_ns(bad).is_err(), "{bad}");
    }
}

#[test]
fn eve_lines_parse() {
    let line = r#"{"timestamp":"2026-01-01T00:00:01.500000+0000","flow_id":1,"event_type":"alert","src_ip":"198.18.2.2","dest_ip":"0.0.0.0","proto":"TCP","alert":{"action":"blocked","gid":1,"signature_id":9000005,"rev":1,"signature":"netanom: scan from source","category":"Detection of a Network Scan","severity":2},"netanom":{"kind":"source_scan","mode":"mitigate","scores":{},"thresholds":{},"top_features":[],"bundle":"x","block":{"prefix":"198.18.2.2/32","ttl_s":300,"expires":"2026-01-01T00:05:01.500000+0000","strikes":1}}}"#;
    let a = parse(line).unwrap();
    assert_eq!(a.ts_ns, T0 + 1_500_000_000);
    assert_eq!((a.src, a.dest), (ip(ATTACKER), ip("0.0.0.0")));
    assert_eq!((a.action.as_str(), a.kind.as_str()), ("blocked", "source_scan"));
    assert_eq!(a.block, Some(cidr("198.18.2.2/32")));
    assert_eq!(a.rate_limit, None);
    let limit = line.replace(
        r#""block":{"prefix":"198.18.2.2/32","ttl_s":300,"expires":"2026-01-01T00:05:01.500000+0000","strikes":1}"#,
        r#""rate_limit":{"dest_ip":"198.18.3.2","dest_port":80,"proto":"TCP","tcp_flags":"S","pps":1000,"burst":100,"ttl_s":300}"#,
    );
    let b = parse(&limit).unwrap();
    assert_eq!((b.block, b.rate_limit), (None, Some(ip(SERVER))));
    let both = format!("{line}\n\n{limit}\n");
    assert_eq!(parse_lines(&both).unwrap().len(), 2);
    let err = parse_lines(&format!("{line}\n{{\"src_ip\":1}}\n")).unwrap_err();
    assert_eq!(err.line, 2, "{err}");
}

fn entry(scenario: &str, label: Label, expected: Expected) -> Entry {
    Entry {
        file: format!("{scenario}.pcap"),
        scenario: scenario.into(),
        label,
        tool: "t".into(),
        command: "c".into(),
        attackers: vec![cidr(ATTACKER)],
        victims: vec![cidr(SERVER)],
        innocents: vec![cidr(CLIENT)],
        expected,
        sha256: "0".repeat(64),
        description: "d".into(),
    }
}

fn capture(e: Entry, duration_s: f64, scores: [Option<Score>; 3]) -> CaptureReport {
    let results = Config::ALL
        .iter()
        .zip(scores)
        .map(|(c, s)| {
            let error = s.is_none().then(|| "it broke".to_owned());
            (
                c.key(),
                ConfigResult {
                    score: s,
                    error,
                    summary: serde_json::Value::Null,
                    wall_s: 0.1,
                },
            )
        })
        .collect();
    CaptureReport {
        entry: e,
        frames: 10,
        duration_s,
        attack_start_s: Some(1.0),
        results,
    }
}

#[test]
fn totals_count_detections_medians_benign_rates_and_failures() {
    let hit = |first: f64, block: Option<f64>| Score {
        detected: true,
        outcome_met: block.is_some(),
        first_alert_s: Some(first),
        block_s: block,
        alerts: 1,
        blocks: 1,
        ..Score::default()
    };
    let miss = Score::default();
    let noisy = Score {
        alerts: 3,
        blocks: 1,
        innocents_alerted: vec![CLIENT.into()],
        ..Score::default()
    };
    let caps = [
        capture(
            entry("a", Label::Attack, Expected::BlockSource),
            10.0,
            [Some(hit(1.0, Some(1.0))), Some(miss.clone()), None],
        ),
        capture(
            entry("b", Label::Attack, Expected::BlockSource),
            10.0,
            [
                Some(hit(3.0, Some(4.0))),
                Some(hit(2.0, None)),
                Some(miss.clone()),
            ],
        ),
        capture(
            entry("c", Label::Attack, Expected::AlertOnly),
            10.0,
            [Some(hit(5.0, None)), Some(miss.clone()), Some(miss.clone())],
        ),
        capture(
            entry("q", Label::Benign, Expected::None),
            1800.0,
            [Some(noisy.clone()), Some(Score::default()), Some(noisy)],
        ),
    ];
    let all = totals(Config::All, &caps);
    assert_eq!((all.attacks, all.detected, all.outcome_met), (3, 3, 2));
    assert_eq!(all.median_first_alert_s, Some(3.0));
    assert_eq!(all.median_block_s, Some(2.5));
    assert!(all.missed.is_empty());
    assert_eq!(
        (all.benign_captures, all.benign_alerts, all.benign_blocks),
        (1, 3, 1)
    );
    assert_eq!(all.benign_alerts_per_hour, Some(6.0));
    assert_eq!(all.innocents_alerted, 1);
    let agg = totals(Config::Aggregates, &caps);
    assert_eq!(
        (agg.detected, agg.outcome_met, agg.missed.clone()),
        (1, 0, vec!["a".to_owned(), "c".into()])
    );
    assert_eq!(agg.median_block_s, None);
    assert_eq!(agg.benign_alerts_per_hour, Some(0.0));
    let models = totals(Config::Models, &caps);
    assert_eq!((models.attacks, models.errors), (2, 1));

    let r = Report {
        agent: "netanom 0.1.0".into(),
        manifest: "tests/corpus/manifest.toml".into(),
        captures: caps.to_vec(),
        totals: Config::ALL.iter().map(|c| totals(*c, &caps)).collect(),
        skipped: vec!["shared-one".into()],
    };
    let md = markdown(&r);
    assert!(
        md.contains("| all (models + aggregates + beacons) | 3 / 3 | 2 / 3 | 3.00 s | 2.50 s |"),
        "{md}"
    );
    assert!(
        md.contains("- **aggregates only** misses 2 of 3 attacks: a, c."),
        "{md}"
    );
    assert!(
        md.contains("**Missed** by aggregates only and models only."),
        "{md}"
    );
    assert!(md.contains("run failed: it broke"), "{md}");
    assert!(
        md.contains("Not scored (the shared data directory is missing): shared-one."),
        "{md}"
    );
    // b: the aggregates alone detect it; q: only the models alert on benign traffic.
    for part in [
        "- Detected by the aggregates and missed by the models: b.",
        "- Detected by the models and missed by the aggregates: —.",
        "- Benign captures alerted on by the models: q; by the aggregates: —.",
    ] {
        assert!(md.contains(part), "{part} in {md}");
    }
}
