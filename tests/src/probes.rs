//! Traffic on a [`crate::Pair`] whose outcome tells what the datapath did: how many frames
//! got through, floods from several sources at once.
use std::{net::Ipv4Addr, time::Duration};

use crate::{Endpoint, Pace, Pair, RawReceiver, RawSender, traffic};

/// An attacker on b's side of the lab: b's interface and MAC, address 198.18.0.`last_octet`.
pub fn attacker(lab: &Pair, last_octet: u8) -> Endpoint {
    let mut e = lab.b_side.ep;
    e.ipv4 = Ipv4Addr::new(198, 18, 0, last_octet);
    e
}

/// Sends `count` UDP datagrams from `src` (on b's side) to a's address; returns how many
/// a's interface received from `src` (after XDP: dropped frames never reach a packet socket).
pub fn udp_through(lab: &Pair, src: &Endpoint, count: u64) -> u64 {
    let rx = RawReceiver::open(&lab.a, &lab.a_side.iface).unwrap();
    rx.drain().unwrap();
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let pace = Pace::rate(2_000, Duration::from_secs(5));
    traffic::udp_burst(&tx, src, &lab.a_side.ep, false, count, 32, &pace).unwrap();
    let frames = rx
        .collect(
            count as usize * 4 + 64,
            Duration::from_millis(300),
            Duration::from_secs(5),
        )
        .unwrap();
    let want = src.ipv4.octets();
    frames
        .iter()
        .filter(|f| f.len() > 34 && f[12..14] == [0x08, 0x00] && f[26..30] == want)
        .count() as u64
}

/// A UDP flood from every source in `srcs` at once (frames interleaved), `pps_each` frames
/// per second from each, for `duration`. Returns how many frames were sent.
pub fn udp_flood(lab: &Pair, srcs: &[Endpoint], pps_each: u32, duration: Duration) -> u64 {
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let n = srcs.len() as u64;
    let total = (u64::from(pps_each) * n) as f64 * duration.as_secs_f64();
    let pace = Pace::rate(pps_each * n as u32, duration + Duration::from_millis(500));
    let payload = traffic::pattern(64);
    let dst = lab.a_side.ep;
    tx.send_generated(total as u64, &pace, |i| {
        let src = &srcs[(i % n) as usize];
        crate::frames::udp(src, &dst, false, 40_000, 9, &payload)
    })
    .unwrap()
}

/// `count` SYNs to a's port 80 from `sources` spoofed addresses in 198.19.0.0/16 (sent from
/// b's interface, the sources taking turns), paced by `pace`. Returns how many were sent.
pub fn spoofed_syn_flood(lab: &Pair, count: u64, sources: u16, pace: &Pace) -> u64 {
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let (base, dst) = (lab.b_side.ep, lab.a_side.ep);
    let n = u64::from(sources.max(1));
    tx.send_generated(count, pace, |i| {
        let mut src = base;
        let k = (i % n) as u16;
        src.ipv4 = Ipv4Addr::new(198, 19, (k >> 8) as u8, (k & 0xff) as u8);
        crate::frames::tcp(
            &src,
            &dst,
            false,
            1024 + (i / n) as u16,
            80,
            crate::frames::TCP_SYN,
            i as u32,
            0,
            &[],
        )
    })
    .unwrap()
}
