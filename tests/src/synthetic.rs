//! A synthetic gateway capture, written to a pcap file: many clients' TCP sessions (IPv4 and
//! IPv6) and DNS lookups, with a UDP flood and a SYN scan in the middle. Clients are in
//! 198.18.0.0/24, servers in 198.18.1.0/24, the resolver in 198.18.2.0/24, the attackers in
//! 198.18.3.0/24. Deterministic: the
//! same `sessions` give the same bytes. For measuring capture replay (`cargo xtask bench`)
//! where a real capture of that size cannot be committed.
use std::{
    fs::File,
    io::BufWriter,
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use pcap_file::pcap::{PcapPacket, PcapWriter};

use crate::{
    Endpoint, frames,
    frames::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN},
};

/// When the capture starts (2026-01-01T00:00:00Z).
pub const START_S: u64 = 1_767_225_600;
/// The flooding source.
pub const FLOODER: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 66);
/// The scanner.
pub const SCANNER: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 77);

/// What was written.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    /// Frames in the file.
    pub frames: u64,
    /// Capture time covered, seconds.
    pub duration_s: f64,
}

fn host(i: u32, net: u8) -> Endpoint {
    Endpoint {
        mac: [0x02, 0, 0, net, (i >> 8) as u8, i as u8],
        ipv4: Ipv4Addr::new(198, 18, net, (i % 250) as u8 + 2),
        ipv6: Ipv6Addr::new(0x2001, 0xdb8, u16::from(net), 0, 0, 0, 0, (i % 250) as u16 + 2),
    }
}

/// A small linear congruential generator: the same sequence on every run and machine.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

/// One TCP session of `c` with `s` on port 443 from `sport` at `t` µs: handshake, a request,
/// a four-segment answer, both FINs.
fn session(out: &mut Vec<(u64, Vec<u8>)>, c: &Endpoint, s: &Endpoint, v6: bool, sport: u16, t: u64) {
    let up = |flags, payload: usize| frames::tcp(c, s, v6, sport, 443, flags, 1, 1, &vec![0x16; payload]);
    let down = |flags, payload: usize| frames::tcp(s, c, v6, 443, sport, flags, 1, 1, &vec![0x17; payload]);
    let steps = [
        up(TCP_SYN, 0),
        down(TCP_SYN | TCP_ACK, 0),
        up(TCP_ACK, 0),
        up(TCP_ACK | TCP_PSH, 300),
        down(TCP_ACK, 1400),
        down(TCP_ACK, 1400),
        down(TCP_ACK, 1400),
        down(TCP_ACK | TCP_PSH, 600),
        up(TCP_ACK, 0),
        up(TCP_ACK | TCP_FIN, 0),
        down(TCP_ACK | TCP_FIN, 0),
        up(TCP_ACK, 0),
    ];
    for (k, f) in steps.into_iter().enumerate() {
        out.push((t + k as u64 * 900, f));
    }
}

/// Writes the capture to `path`: `sessions` TCP sessions (one in five over IPv6) and as many
/// DNS lookups spread over `sessions / 50` seconds, a 100,000-frame UDP flood (20,000
/// packets/s) and a 10,000-port SYN scan (answered with RSTs) a third of the way in.
pub fn write_mixed(path: &Path, sessions: u32) -> anyhow::Result<Written> {
    let span_us = u64::from(sessions.max(50)) / 50 * 1_000_000;
    let mut rng = Lcg(0x6e65_7461_6e6f_6d21);
    let mut out: Vec<(u64, Vec<u8>)> = Vec::with_capacity(sessions as usize * 14 + 120_000);
    let resolver = host(0, 2);
    for i in 0..sessions {
        let (c, s) = (host(rng.next(200) as u32, 0), host(rng.next(20) as u32 + 1, 1));
        let t = rng.next(span_us);
        session(&mut out, &c, &s, i % 5 == 0, 20_000 + (i % 40_000) as u16, t);
        let q = frames::udp(
            &c,
            &resolver,
            false,
            30_000 + (i % 30_000) as u16,
            53,
            &[0x01; 40],
        );
        let a = frames::udp(
            &resolver,
            &c,
            false,
            53,
            30_000 + (i % 30_000) as u16,
            &[0x81; 120],
        );
        let t = rng.next(span_us);
        out.push((t, q));
        out.push((t + 400, a));
    }
    let (victim, target) = (host(1, 1), host(2, 1));
    let (flooder, scanner) = (host(64, 3), host(75, 3));
    debug_assert_eq!((flooder.ipv4, scanner.ipv4), (FLOODER, SCANNER));
    let t0 = span_us / 3;
    for k in 0..100_000u64 {
        out.push((
            t0 + k * 50,
            frames::udp(&flooder, &victim, false, 5_555, 9, &[0; 64]),
        ));
    }
    for port in 1..=10_000u16 {
        let t = t0 + u64::from(port) * 200;
        out.push((
            t,
            frames::tcp(&scanner, &target, false, 61_000, port, TCP_SYN, 7, 0, &[]),
        ));
        out.push((
            t + 50,
            frames::tcp(
                &target,
                &scanner,
                false,
                port,
                61_000,
                TCP_RST | TCP_ACK,
                0,
                8,
                &[],
            ),
        ));
    }
    out.sort_by_key(|(t, _)| *t);
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut w = PcapWriter::new(file)?;
    for (t, f) in &out {
        let ts = Duration::from_micros(START_S * 1_000_000 + t);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))?;
    }
    Ok(Written {
        frames: out.len() as u64,
        duration_s: out.last().map_or(0.0, |(t, _)| *t as f64 / 1e6),
    })
}
