//! Tests of the detector: floods, scans, victims, anomalous flows, learning and its freeze.
use netanom_common::{
    agg::{self, DstKey, DstStats, HostKey, SrcStats},
    parse::FAMILY_V4,
    time::{Instant, NS_PER_S},
};

use super::{learned::Learned, *};

/// A moment of the tests' clock.
fn now() -> Instant {
    Instant::capture(1_700_000_000 * NS_PER_S)
}

fn cfg() -> DetectionConfig {
    DetectionConfig::default()
}

fn host(a: [u8; 4]) -> HostKey {
    HostKey {
        addr: [u32::from_be_bytes(a), 0, 0, 0],
        family: FAMILY_V4,
        _pad: [0; 3],
    }
}

fn src_stats(packets: u64, syn: u64, answered: u64, ports: u16) -> SrcStats {
    let mut s = SrcStats {
        packets,
        fwd_packets: packets,
        syn_flows: syn,
        syn_answered: answered,
        ..SrcStats::default()
    };
    for p in 0..ports {
        agg::sketch_add(&mut s.port_sketch, u32::from(p));
    }
    s
}

#[test]
fn learned_quantile_tracks_the_distribution() {
    let mut l = Learned::default();
    assert_eq!(l.quantile(0.5, 1.0), None);
    for i in 1..=1000 {
        l.observe(f64::from(i));
    }
    let q = l.quantile(0.5, 100.0).unwrap();
    assert!((450.0..=600.0).contains(&q), "{q}");
    let q = l.quantile(0.999, 100.0).unwrap();
    assert!((990.0..=1200.0).contains(&q), "{q}");
    l.decay(0.5);
    assert!((l.total() - 500.0).abs() < 1e-9);
    assert_eq!(l.quantile(0.5, 600.0), None);
}

#[test]
fn floods_scans_and_syn_floods_are_told_apart_and_normal_sources_pass() {
    let mut d = Detector::new(cfg(), 3);
    let now = now();
    let src = [
        (host([198, 18, 0, 1]), src_stats(100, 2, 2, 2)),    // benign
        (host([198, 18, 0, 9]), src_stats(50_000, 0, 0, 1)), // UDP flood
        (host([198, 18, 0, 10]), src_stats(5_000, 2_000, 10, 1)), // SYN flood
        (host([198, 18, 0, 11]), src_stats(2_000, 500, 0, 1000)), // scan (below the SYN floor? no)
    ];
    let f = d.observe_aggregates(1.0, &src, &[], now);
    let kinds: Vec<_> = f
        .iter()
        .map(|f| match &f.subject {
            Subject::Source(ip) => (ip.to_string(), f.kind),
            _ => panic!(),
        })
        .collect();
    assert!(!kinds.iter().any(|(ip, _)| ip == "198.18.0.1"), "{kinds:?}");
    assert!(
        kinds.contains(&("198.18.0.9".into(), Kind::SourceFlood)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("198.18.0.10".into(), Kind::SourceSynFlood)),
        "{kinds:?}"
    );
    // 500 unanswered SYNs/s is over the SYN floor too: the SYN kind wins.
    assert!(kinds.iter().any(|(ip, _)| ip == "198.18.0.11"), "{kinds:?}");
    assert!(d.frozen(now));
}

#[test]
fn learned_levels_raise_thresholds_above_the_floor() {
    let mut c = cfg();
    c.src_pps = 10.0;
    let mut d = Detector::new(c, 3);
    let t0 = now();
    // A site where normal sources send 1000 packets/s.
    let normal: Vec<_> = (0..250u8)
        .map(|i| (host([198, 18, 1, i]), src_stats(1000, 0, 0, 1)))
        .collect();
    assert!(
        !d.observe_aggregates(1.0, &normal, &[], t0).is_empty(),
        "floor only at first"
    );
    // Once learned (no attack in progress), 1000 packets/s is normal.
    let mut d = Detector::new(
        DetectionConfig {
            src_pps: 10.0,
            ..cfg()
        },
        3,
    );
    d.src_pps.learned = {
        let mut l = Learned::default();
        for _ in 0..1000 {
            l.observe(1000.0);
        }
        l
    };
    assert!(d.observe_aggregates(1.0, &normal, &[], t0).is_empty());
    assert!(d.src_pps.threshold(3.0) >= 3000.0);
}

#[test]
fn spoofed_flood_is_a_victim_with_a_syn_pattern() {
    let mut d = Detector::new(cfg(), 3);
    let mut s = DstStats {
        packets: 20_000,
        flows: 5_000,
        syn_flows: 5_000,
        ..DstStats::default()
    };
    for i in 0..5_000u32 {
        agg::sketch_add(&mut s.src_sketch, i.wrapping_mul(2_654_435_761));
    }
    let k = DstKey {
        addr: [u32::from_be_bytes([198, 18, 1, 2]), 0, 0, 0],
        port: 80,
        proto: 6,
        family: FAMILY_V4,
    };
    let f = d.observe_aggregates(1.0, &[], &[(k, s)], now());
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].subject,
        Subject::Victim {
            dst: "198.18.1.2".parse().unwrap(),
            port: 80,
            proto: 6,
            tcp_flags: 0x02,
            limitable: true
        }
    );
}

#[test]
fn a_server_answering_a_flood_is_not_a_flooder() {
    let mut d = Detector::new(cfg(), 3);
    // 50,000 packets/s, all answers (RSTs to a SYN flood, replies to clients).
    let mut answering = src_stats(50_000, 0, 0, 0);
    answering.fwd_packets = 0;
    let f = d.observe_aggregates(1.0, &[(host([198, 18, 3, 2]), answering)], &[], now());
    assert!(f.is_empty(), "{f:?}");
    // The same volume on its own initiative is a flood.
    let f = d.observe_aggregates(
        1.0,
        &[(host([198, 18, 3, 2]), src_stats(50_000, 0, 0, 0))],
        &[],
        now(),
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, Kind::SourceFlood);
}

fn service(addr: [u8; 4], port: u16, proto: u8) -> DstKey {
    DstKey {
        addr: [u32::from_be_bytes(addr), 0, 0, 0],
        port,
        proto,
        family: FAMILY_V4,
    }
}

/// `packets` packets from `sources` distinct sources (numbered from `first`).
fn service_stats(packets: u64, first: u32, sources: u32) -> DstStats {
    let mut s = DstStats {
        packets,
        flows: u64::from(sources),
        ..DstStats::default()
    };
    for i in first..first + sources {
        agg::sketch_add(&mut s.src_sketch, i.wrapping_mul(2_654_435_761));
    }
    s
}

#[test]
fn a_flood_spread_over_many_ports_is_a_victim_without_a_pattern() {
    let mut d = Detector::new(cfg(), 3);
    let victim = [198, 18, 3, 2];
    // UDP amplification: 3,000 reflectors, one or two packets each, to 2,000 random ports.
    let mut dst: Vec<_> = (0..2_000u32)
        .map(|i| (service(victim, 1024 + i as u16, 17), service_stats(2, i * 3, 2)))
        .collect();
    // A benign service of another host, and the victim's own busy but normal TCP service.
    dst.push((service([198, 18, 1, 2], 53, 17), service_stats(40, 900_000, 10)));
    dst.push((service(victim, 8080, 6), service_stats(100, 800_000, 3)));
    let f = d.observe_aggregates(1.0, &[], &dst, now());
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, Kind::VictimFlood);
    assert_eq!(
        f[0].subject,
        Subject::Victim {
            dst: "198.18.3.2".parse().unwrap(),
            port: 0,
            proto: 17,
            tcp_flags: 0,
            limitable: false
        }
    );
    assert!(
        f[0].reason.contains("spread over 2000 UDP ports"),
        "{}",
        f[0].reason
    );
    assert_eq!(f[0].rates[0].0, "dst_host_distinct_srcs_per_s");

    // A flood on one port is that service's finding (rate-limitable), not the host's
    // too; the host's other services are judged without it.
    let mut d = Detector::new(cfg(), 3);
    let dst = [
        (service(victim, 25565, 6), {
            let mut s = service_stats(20_000, 0, 5_000);
            s.syn_flows = 5_000;
            s
        }),
        (service(victim, 8080, 6), service_stats(100, 800_000, 3)),
        (service(victim, 8081, 6), service_stats(100, 800_100, 3)),
    ];
    let f = d.observe_aggregates(1.0, &[], &dst, now());
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(matches!(
        f[0].subject,
        Subject::Victim {
            port: 25565,
            limitable: true,
            ..
        }
    ));
}

fn labels() -> Vec<(String, f64)> {
    vec![("autoencoder".into(), 1.0)]
}

fn flow<'a>(src: &str, anomaly: bool, features: &'a [f64]) -> ScoredFlow<'a> {
    ScoredFlow {
        src: src.parse().unwrap(),
        src_port: 1000,
        dst: "198.18.1.2".parse().unwrap(),
        dst_port: 80,
        proto: 6,
        features,
        scores: vec![if anomaly { 9.0 } else { 0.1 }],
        ensemble: if anomaly { 9.0 } else { 0.1 },
        anomaly,
        icmp_error: false,
    }
}

#[test]
fn anomalous_flows_make_an_offender_once_and_a_few_do_not() {
    let mut d = Detector::new(cfg(), 1);
    let now = now();
    let x = [1.0, 2.0];
    // A benign source with an occasional false positive: 3 of 100.
    let benign: Vec<_> = (0..100).map(|i| flow("198.18.0.1", i % 33 == 0, &x)).collect();
    assert!(d.observe_flows(&benign, &labels(), &["a", "b"], now).is_empty());
    // An attacker: 20 of 20 anomalous; reported once.
    let bad: Vec<_> = (0..20).map(|_| flow("198.18.0.9", true, &x)).collect();
    let f = d.observe_flows(&bad, &labels(), &["a", "b"], now);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].subject, Subject::Source("198.18.0.9".parse().unwrap()));
    assert!(f[0].flow.is_some());
    assert!(d.observe_flows(&bad, &labels(), &["a", "b"], now).is_empty());
    assert!(d.frozen(now));
}

#[test]
fn icmp_errors_are_answers_not_offences() {
    let mut d = Detector::new(cfg(), 1);
    let now = now();
    let x = [1.0, 2.0];
    // A server answering UDP to closed ports from 50 spoofed sources: 50 unreachables,
    // each its own (anomalous-looking) flow.
    let unreachables: Vec<_> = (0..50)
        .map(|_| ScoredFlow {
            proto: 1,
            icmp_error: true,
            ..flow("198.18.3.2", true, &x)
        })
        .collect();
    assert!(
        d.observe_flows(&unreachables, &labels(), &["a", "b"], now)
            .is_empty()
    );
    assert!(!d.frozen(now));
    assert!(is_icmp_error(1, 3) && is_icmp_error(1, 11) && is_icmp_error(58, 1));
    assert!(!is_icmp_error(1, 8) && !is_icmp_error(58, 128) && !is_icmp_error(17, 3));
}

#[test]
fn recalibration_needs_enough_normal_flows_and_freezes_during_attacks() {
    let mut c = cfg();
    c.recalibrate_min_samples = 100;
    let mut d = Detector::new(c, 1);
    let t0 = now();
    let x = [1.0];
    let normal: Vec<_> = (0..99).map(|_| flow("198.18.0.1", false, &x)).collect();
    d.observe_flows(&normal, &labels(), &["a"], t0);
    assert_eq!(d.recalibrated(), vec![None]);
    d.observe_flows(&normal[..1], &labels(), &["a"], t0);
    let t = d.recalibrated()[0].unwrap();
    assert!((0.1..0.2).contains(&t), "{t}");
    // During an attack nothing is learned.
    let bad: Vec<_> = (0..20).map(|_| flow("198.18.0.9", true, &x)).collect();
    d.observe_flows(&bad, &labels(), &["a"], t0);
    let before = d.normal_flow_samples();
    d.observe_flows(&normal, &labels(), &["a"], t0);
    assert_eq!(d.normal_flow_samples(), before);
}
