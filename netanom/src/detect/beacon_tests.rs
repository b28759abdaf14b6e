//! Tests of beacon detection over channels, with a stand-in for the sequence model that
//! records what it was asked and answers a fixed score.
use std::net::{IpAddr, Ipv4Addr};

use netanom_common::{
    flow::{EndReason, FlowKey, FlowRecord, FlowValue},
    parse::{FAMILY_V4, IPPROTO_ICMP, IPPROTO_TCP},
    time::{Instant, NS_PER_S},
};

use super::*;

const T0: u64 = 1_700_000_000 * NS_PER_S;

/// Answers `score` for every window, or fails; remembers the windows' lengths per call.
struct Fixed {
    score: f32,
    fail: bool,
    calls: Vec<Vec<usize>>,
}

impl Fixed {
    fn new(score: f32) -> Fixed {
        Fixed {
            score,
            fail: false,
            calls: Vec::new(),
        }
    }
}

impl WindowScorer for Fixed {
    fn score_windows(&mut self, windows: &[&[i64]]) -> Result<Vec<f32>, String> {
        self.calls.push(windows.iter().map(|w| w.len()).collect());
        if self.fail {
            return Err("the model is unavailable".into());
        }
        Ok(vec![self.score; windows.len()])
    }
    fn max_len(&self) -> usize {
        500
    }
    fn default_threshold(&self) -> f64 {
        0.7
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

/// A 0.05 s, 900-byte flow from 198.18.0.`src` to 198.18.0.`dst`:`port` started at `start_s`.
fn flow(src: u8, dst: u8, port: u16, proto: u8, start_s: f64, reason: EndReason) -> FlowRecord {
    let word = |last: u8| [u32::from_be_bytes([198, 18, 0, last]), 0, 0, 0];
    let first_ns = T0 + (start_s * NS_PER_S as f64) as u64;
    let mut v = FlowValue {
        first_ns,
        last_ns: first_ns + NS_PER_S / 20,
        fwd_is_lo: 1,
        ..FlowValue::default()
    };
    v.fwd.frame_bytes = 500;
    v.bwd.frame_bytes = 400;
    FlowRecord {
        key: FlowKey {
            addr_lo: word(src),
            addr_hi: word(dst),
            port_lo: 40_000,
            port_hi: port,
            proto,
            family: FAMILY_V4,
            _pad: [0; 2],
        },
        reason: reason as u32,
        _pad: 0,
        value: v,
    }
}

fn polls(n: usize, from_s: f64) -> Vec<FlowRecord> {
    (0..n)
        .map(|i| flow(9, 66, 443, IPPROTO_TCP, from_s + i as f64 * 2.0, EndReason::Fin))
        .collect()
}

/// `n` flows of the same channel at irregular times (a person's use): gaps of 0.3 to 9 s.
fn irregular(n: usize, from_s: f64) -> Vec<FlowRecord> {
    const GAPS: [f64; 7] = [0.3, 4.0, 1.1, 9.0, 0.6, 2.5, 6.0];
    let mut t = from_s;
    (0..n)
        .map(|i| {
            t += GAPS[i % GAPS.len()];
            flow(9, 66, 443, IPPROTO_TCP, t, EndReason::Fin)
        })
        .collect()
}

fn now(s: f64) -> Instant {
    Instant::capture(T0 + (s * NS_PER_S as f64) as u64)
}

#[test]
fn a_channel_is_judged_from_its_min_flows_once_per_batch_and_reported_once() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    let mut m = Fixed::new(0.9);
    let min = DetectionConfig::default().beacon_min_flows as usize;
    let found = d
        .observe_channels(&polls(min - 1, 0.0), Some(&mut m), now(20.0))
        .unwrap();
    assert!(found.is_empty() && m.calls.is_empty(), "too young to judge");
    // Two more flows in one batch: one window scored, the newest (min + 1 symbols).
    let found = d
        .observe_channels(&polls(2, 2.0 * (min - 1) as f64), Some(&mut m), now(40.0))
        .unwrap();
    assert_eq!(m.calls.len(), 1);
    assert_eq!(m.calls[0].len(), 1);
    assert_eq!(found.len(), 1);
    let f = &found[0];
    assert_eq!(f.kind, Kind::Beacon);
    assert_eq!(
        f.subject,
        Subject::Channel {
            inside: ip(9),
            peer: ip(66),
            port: 443,
            proto: IPPROTO_TCP,
            block_peer: false,
        }
    );
    assert!(
        f.reason
            .contains("inside host 198.18.0.9 (likely infected) beacons to 198.18.0.66 port 443/tcp")
            && f.reason.contains("regular: one flow every 2.0 s")
            && f.reason.contains("sequence model score 0.900 > 0.700"),
        "{}",
        f.reason
    );
    let e = f.flow.as_ref().unwrap();
    assert_eq!(e.scores, vec![("sequence".to_owned(), f64::from(0.9f32), 0.7)]);
    // Reported: not scored again.
    let again = d
        .observe_channels(&polls(1, 100.0), Some(&mut m), now(100.0))
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(m.calls.len(), 1);
}

#[test]
fn the_configured_threshold_and_peer_blocking_apply() {
    let cfg = DetectionConfig {
        beacon_threshold: Some(0.95),
        block_beacon_peers: true,
        ..DetectionConfig::default()
    };
    let mut d = Detector::new(cfg, 3);
    let mut m = Fixed::new(0.9);
    let recs = irregular(13, 0.0);
    assert!(
        d.observe_channels(&recs[..12], Some(&mut m), now(30.0))
            .unwrap()
            .is_empty()
    );
    m.score = 0.96;
    let found = d.observe_channels(&recs[12..], Some(&mut m), now(31.0)).unwrap();
    assert_eq!(found.len(), 1);
    assert!(matches!(
        found[0].subject,
        Subject::Channel { block_peer: true, .. }
    ));
}

#[test]
fn cut_off_flows_and_icmp_grow_no_channel() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    let mut m = Fixed::new(0.9);
    let mut recs: Vec<FlowRecord> = (0..20)
        .map(|i| flow(9, 66, 443, IPPROTO_TCP, f64::from(i), EndReason::Flush))
        .collect();
    recs.extend((0..20).map(|i| flow(9, 66, 0, IPPROTO_ICMP, f64::from(i), EndReason::IdleTimeout)));
    assert!(
        d.observe_channels(&recs, Some(&mut m), now(30.0))
            .unwrap()
            .is_empty()
    );
    assert_eq!(d.channel_counts(), (0, 0));
    assert!(m.calls.is_empty());
}

#[test]
fn a_scoring_failure_is_returned_and_the_channel_keeps_its_flows() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    let mut m = Fixed::new(0.9);
    m.fail = true;
    let err = d
        .observe_channels(&polls(12, 0.0), Some(&mut m), now(30.0))
        .unwrap_err();
    assert!(err.contains("unavailable"));
    m.fail = false;
    let found = d
        .observe_channels(&polls(1, 24.0), Some(&mut m), now(31.0))
        .unwrap();
    assert_eq!(found.len(), 1, "13 flows kept: judged at the next growth");
}

#[test]
fn flows_of_a_batch_are_encoded_in_start_order() {
    // The same flows in two orders (live batches come in hash order) give the same letters.
    let letters = |recs: Vec<FlowRecord>| {
        let mut d = Detector::new(DetectionConfig::default(), 3);
        let mut m = Fixed::new(0.0);
        d.observe_channels(&recs, Some(&mut m), now(60.0)).unwrap();
        let key = channels::ChannelKey {
            inside: ip(9),
            peer: ip(66),
            port: 443,
            proto: IPPROTO_TCP,
        };
        d.channels.get(&key).map(|c| c.window().text())
    };
    let mut shuffled = polls(12, 0.0);
    shuffled.reverse();
    shuffled.swap(3, 7);
    assert_eq!(letters(polls(12, 0.0)), letters(shuffled));
    assert_eq!(letters(polls(3, 0.0)).as_deref(), Some("44.d."));
}

#[test]
fn the_periodicity_rule_finds_regular_channels_without_the_model() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    // Every 2 to 3 s (2.5 s ± 0.5 s), the same size: a beacon.
    let jitter = [0.1, -0.4, 0.5, -0.2, 0.3, -0.5, 0.0, 0.4, -0.1, 0.2, -0.3, 0.45];
    let mut t = 0.0;
    let recs: Vec<FlowRecord> = jitter
        .iter()
        .map(|j| {
            t += 2.5 + j;
            flow(9, 66, 443, IPPROTO_TCP, t, EndReason::Fin)
        })
        .collect();
    let found = d.observe_channels(&recs, None, now(40.0)).unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        found[0].reason.contains("regular: one flow every 2."),
        "{}",
        found[0].reason
    );
    assert!(
        found[0].flow.as_ref().unwrap().scores.is_empty(),
        "no model, no score"
    );
    // A person's irregular use of a service is not.
    let mut d = Detector::new(DetectionConfig::default(), 3);
    assert!(
        d.observe_channels(&irregular(30, 0.0), None, now(90.0))
            .unwrap()
            .is_empty()
    );
    // Nor is a burst of connections faster than beacon_min_period.
    let mut d = Detector::new(DetectionConfig::default(), 3);
    let burst: Vec<FlowRecord> = (0..20)
        .map(|i| flow(9, 66, 443, IPPROTO_TCP, f64::from(i) * 0.1, EndReason::Fin))
        .collect();
    assert!(d.observe_channels(&burst, None, now(5.0)).unwrap().is_empty());
}

#[test]
fn a_long_lived_channel_is_rescored_as_it_grows_by_an_eighth() {
    let mut d = Detector::new(DetectionConfig::default(), 3);
    let mut m = Fixed::new(0.0);
    // One flow per batch, 400 batches, at irregular times (no periodicity finding).
    let recs = irregular(400, 0.0);
    for (i, r) in recs.iter().enumerate() {
        let found = d
            .observe_channels(std::slice::from_ref(r), Some(&mut m), now(i as f64))
            .unwrap();
        assert!(found.is_empty());
    }
    // Every flow from the 10th to the 16th, then at every eighth more: 10..16, 18, 20, ...
    let calls = m.calls.len();
    assert!((30..=45).contains(&calls), "{calls} model runs for 391 growths");
    assert!(m.calls.iter().all(|c| c.len() == 1));
}
