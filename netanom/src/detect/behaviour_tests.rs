//! Tests of the behavioural detectors: password guessing (per service), host sweeps, and slow
//! scans over the long windows. Time is the `now` each call is given.
use netanom_common::{
    agg::{self, HostKey, SrcStats},
    flow::{EndReason, FlowKey, FlowRecord, FlowValue, TCP_FIN, TCP_RST, TCP_SYN},
    parse::{FAMILY_V4, IPPROTO_TCP, IPPROTO_UDP},
    time::{Instant, NS_PER_S},
};

use super::*;

const T0: u64 = 1_700_000_000 * NS_PER_S;

fn at(s: f64) -> Instant {
    Instant::capture(T0 + (s * NS_PER_S as f64) as u64)
}

fn v4(last: u8) -> [u32; 4] {
    [u32::from_be_bytes([198, 18, 0, last]), 0, 0, 0]
}

/// A connection from 198.18.0.`src` port `sport` to 198.18.0.`dst`:`dport`, started at
/// `start_s`, lasting `dur_s`, with the payload each way, ended by `reason`.
fn conn(
    src: u8,
    sport: u16,
    dst: u8,
    dport: u16,
    (start_s, dur_s): (f64, f64),
    (up, down): (u64, u64),
) -> FlowRecord {
    let mut v = FlowValue {
        first_ns: at(start_s).mono_ns,
        last_ns: at(start_s + dur_s).mono_ns,
        fwd_is_lo: 1,
        ..FlowValue::default()
    };
    v.fwd.packets = 6;
    v.bwd.packets = 5;
    v.fwd.payload_bytes = up;
    v.bwd.payload_bytes = down;
    v.fwd.flags[TCP_SYN.trailing_zeros() as usize] = 1;
    v.fwd.flags[TCP_FIN.trailing_zeros() as usize] = 1;
    v.bwd.flags[TCP_FIN.trailing_zeros() as usize] = 1;
    FlowRecord {
        key: FlowKey {
            addr_lo: v4(src),
            addr_hi: v4(dst),
            port_lo: sport,
            port_hi: dport,
            proto: IPPROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        },
        reason: EndReason::Fin as u32,
        _pad: 0,
        value: v,
    }
}

fn brute(found: &[Finding]) -> Vec<String> {
    found
        .iter()
        .filter(|f| f.kind == Kind::BruteForce)
        .map(|f| f.reason.clone())
        .collect()
}

#[test]
fn a_burst_of_parallel_login_attempts_is_guessing() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    // Five SSH logins at once, each 0.15 s and 3.6 kB (the lab's hydra against sshd).
    let recs: Vec<_> = (0..5)
        .map(|i| {
            conn(
                9,
                40_000 + i,
                200,
                22,
                (f64::from(i) * 0.01, 0.15),
                (1_575, 2_085),
            )
        })
        .collect();
    let f = d.observe_connections(&recs[..3], at(0.2));
    assert!(f.is_empty(), "three are not yet a burst: {f:?}");
    let f = d.observe_connections(&recs[3..], at(0.2));
    let reasons = brute(&f);
    assert_eq!(reasons.len(), 1, "{f:?}");
    // The fourth at once makes the burst (`brute_parallel_connections`).
    assert!(
        reasons[0].starts_with("4 connections to 198.18.0.200:22 in 30 s, 4 of them login-like"),
        "{}",
        reasons[0]
    );
    assert!(reasons[0].ends_with("up to 4 at once"), "{}", reasons[0]);
    assert_eq!(f[0].subject, Subject::Source("198.18.0.9".parse().unwrap()));
    assert_eq!(f[0].flow.as_ref().map(|e| e.dst_port), Some(22));
    // Reported once per window.
    let more = conn(9, 40_100, 200, 22, (0.3, 0.15), (1_575, 2_085));
    assert!(brute(&d.observe_connections(&[more], at(0.5))).is_empty());
}

#[test]
fn serial_attempts_need_the_fast_or_the_slow_floor() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    // One FTP login every 3.5 s, reset by the server: 9 in 30 s is below the floor of 10.
    let mut found = Vec::new();
    for i in 0..9u16 {
        let mut r = conn(9, 41_000 + i, 200, 21, (f64::from(i) * 3.5, 1.0), (90, 190));
        r.value.bwd.flags[TCP_RST.trailing_zeros() as usize] = 1;
        found.extend(d.observe_connections(&[r], at(f64::from(i) * 3.5 + 1.0)));
    }
    assert!(brute(&found).is_empty(), "{found:?}");
    // One every 9 s: the slow window's 30 within 300 s catches it, at the 30th.
    let mut d = Detector::new(DetectionConfig::default(), 3);
    let mut first = None;
    for i in 0..40u16 {
        let t = f64::from(i) * 9.0;
        let r = conn(9, 42_000 + i, 200, 2222, (t, 0.5), (1_500, 2_000));
        if !brute(&d.observe_connections(&[r], at(t + 0.5))).is_empty() && first.is_none() {
            first = Some(i);
        }
    }
    assert_eq!(first, Some(29));
}

#[test]
fn clients_that_reconnect_to_download_are_not_guessing() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    // An HTTP client fetching a 6 kB page twice a second for a minute, one at a time, and a
    // UDP resolver client: neither is guessing.
    let mut found = Vec::new();
    for i in 0..120u16 {
        let t = f64::from(i) * 0.5;
        found.extend(d.observe_connections(
            &[conn(2, 50_000 + i, 200, 80, (t, 0.05), (83, 6_287))],
            at(t + 0.1),
        ));
        let mut dns = conn(2, 30_000 + i, 201, 53, (t, 0.01), (40, 120));
        dns.key.proto = IPPROTO_UDP;
        found.extend(d.observe_connections(&[dns], at(t + 0.1)));
    }
    assert!(brute(&found).is_empty(), "{found:?}");
}

#[test]
fn a_port_whose_clients_reconnect_often_learns_a_higher_level() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    // 300 clients, each polling port 8443 with 8 short, small exchanges within 30 s: normal.
    for c in 0..300u32 {
        for i in 0..8u32 {
            let t = f64::from(c) * 0.01 + f64::from(i) * 3.0;
            let mut r = conn(1, (i + 1) as u16, 200, 8443, (t, 0.1), (300, 400));
            r.key.addr_lo = [0xc613_0000 + c, 0, 0, 0];
            d.observe_connections(&[r], at(t + 0.1));
        }
    }
    // Now 12 serial ones from a new client: above the floor of 10, below 3 × the learned 8.
    let mut found = Vec::new();
    for i in 0..12u16 {
        let t = 40.0 + f64::from(i) * 2.0;
        found.extend(d.observe_connections(
            &[conn(9, 60_000 + i, 200, 8443, (t, 0.1), (300, 400))],
            at(t + 0.1),
        ));
    }
    assert!(brute(&found).is_empty(), "{found:?}");
}

fn sources(src: &[(u8, SrcStats)]) -> Vec<(HostKey, SrcStats)> {
    src.iter()
        .map(|(last, s)| {
            let k = HostKey {
                addr: v4(*last),
                family: FAMILY_V4,
                _pad: [0; 3],
            };
            (k, *s)
        })
        .collect()
}

/// A source's interval: `flows` flows to `hosts` distinct hosts and `ports` distinct ports,
/// the ports numbered from `first_port`.
fn probing(flows: u64, hosts: u32, (first_port, ports): (u32, u32)) -> SrcStats {
    let mut s = SrcStats {
        packets: flows * 2,
        fwd_packets: flows * 2,
        flows,
        syn_flows: flows,
        ..SrcStats::default()
    };
    for h in 0..hosts {
        agg::sketch_add(&mut s.host_sketch, h.wrapping_mul(2_654_435_761));
    }
    for p in first_port..first_port + ports {
        agg::sketch_add(&mut s.port_sketch, p);
    }
    s
}

#[test]
fn a_ping_sweep_is_found_in_its_first_interval() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    // 86 hosts in half a second, one port (ICMP echo): 172 hosts/s.
    let f = d.observe_aggregates(0.5, &sources(&[(9, probing(86, 86, (0, 1)))]), &[], at(1.0));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, Kind::HostSweep);
    // (The sketch estimates 86 hosts within a few.)
    assert!(
        f[0].reason
            .contains("distinct destination hosts/s from 198.18.0.9, 8"),
        "{}",
        f[0].reason
    );
    assert!(
        f[0].reason.ends_with("in 0.5 s (threshold 50)"),
        "{}",
        f[0].reason
    );
}

#[test]
fn a_slow_port_scan_is_found_over_the_minute_and_old_ports_are_forgotten() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    // nmap -T2: one new port every 0.4 s, under the 100 ports/s of the fast check.
    let mut found_at = None;
    for i in 0..120u32 {
        let t = 1.0 + f64::from(i) * 0.5;
        let f = d.observe_aggregates(0.5, &sources(&[(9, probing(1, 1, (i * 2, 2)))]), &[], at(t));
        if let Some(f) = f.first() {
            assert_eq!(f.kind, Kind::SlowScan, "{f:?}");
            assert!(
                f.reason
                    .contains("distinct destination ports from 198.18.0.9 within the last 1m"),
                "{}",
                f.reason
            );
            found_at.get_or_insert(i);
        }
    }
    // Over 30 distinct ports after about 16 intervals (8 s), reported once per minute.
    let i = found_at.expect("a slow-scan finding");
    assert!((14..=18).contains(&i), "found at interval {i}");
    // A source that comes back after ten minutes of silence starts from nothing.
    let mut d = Detector::new(DetectionConfig::default(), 3);
    d.observe_aggregates(0.5, &sources(&[(7, probing(20, 1, (0, 20)))]), &[], at(1.0));
    let f = d.observe_aggregates(0.5, &sources(&[(7, probing(20, 1, (100, 20)))]), &[], at(700.0));
    assert!(f.is_empty(), "{f:?}");
    // A client on its usual few ports never is.
    let mut d = Detector::new(DetectionConfig::default(), 3);
    for i in 0..1_200u32 {
        let f = d.observe_aggregates(
            0.5,
            &sources(&[(2, probing(3, 2, (0, 3)))]),
            &[],
            at(f64::from(i) * 0.5),
        );
        assert!(f.is_empty(), "{f:?}");
    }
}

#[test]
fn a_server_answering_many_sources_is_not_sweeping() {
    use netanom_common::agg::{DstKey, DstStats};
    let mut d = Detector::new(DetectionConfig::default(), 3);
    // 198.18.0.9 starts flows to 400 hosts (ICMP unreachables to a spoofed flood's sources),
    // and 400 sources started flows to it.
    let mut inbound = DstStats {
        packets: 400,
        flows: 400,
        ..DstStats::default()
    };
    for h in 0..400u32 {
        agg::sketch_add(&mut inbound.src_sketch, h.wrapping_mul(2_654_435_761));
    }
    let k = DstKey {
        addr: v4(9),
        port: 9,
        proto: IPPROTO_UDP,
        family: FAMILY_V4,
    };
    let mut icmp = probing(400, 400, (0, 1));
    icmp.syn_flows = 0;
    let src = sources(&[(9, icmp)]);
    let f = d.observe_aggregates(1.0, &src, &[(k, inbound)], at(1.0));
    assert!(
        f.iter()
            .all(|f| f.kind != Kind::HostSweep && f.kind != Kind::SlowScan),
        "{f:?}"
    );
    // Without anyone reaching it, the same is a sweep.
    let mut d = Detector::new(DetectionConfig::default(), 3);
    let f = d.observe_aggregates(1.0, &src, &[], at(1.0));
    assert_eq!(f.first().map(|f| f.kind), Some(Kind::HostSweep), "{f:?}");
}
