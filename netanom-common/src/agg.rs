//! Per-source and per-destination aggregates, updated per packet next to the flow table.
//!
//! A port scan is many small flows from one source; a spoofed flood is many small flows from
//! thousands of sources to one destination. Neither stands out flow by flow, so the kernel
//! also keeps, per source address, what it started and how widely it reached ([`SrcStats`]),
//! and per destination address and port, what arrived there ([`DstStats`]). Distinct counts
//! use fixed-size bitmap sketches (linear counting), so an entry never grows.
use crate::{flow::DirStats, parse::PacketMeta};

/// Bits in a distinct-count sketch.
pub const SKETCH_BITS: u32 = 512;
pub const SKETCH_WORDS: usize = (SKETCH_BITS / 64) as usize;

/// A source host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostKey {
    pub addr: [u32; 4],
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<HostKey>() == 20);

/// A destination service: address, port and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DstKey {
    pub addr: [u32; 4],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<DstKey>() == 20);

/// What one source address did since its entry was last drained.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SrcStats {
    /// Packets and frame bytes it sent (any direction of any flow).
    pub packets: u64,
    pub bytes: u64,
    /// Of `packets`, those it sent in the forward direction of their flow, i.e. in flows it
    /// started: what it sent on its own initiative. The rest are answers (a server's
    /// SYN-ACKs, RSTs or replies to whoever contacted it), which say nothing about the
    /// sender flooding anyone.
    pub fwd_packets: u64,
    /// Flows it started.
    pub flows: u64,
    /// Flows it started with a bare SYN ...
    pub syn_flows: u64,
    /// ... and how many of those the other side answered.
    pub syn_answered: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Sketch of the destination ports of the flows it started.
    pub port_sketch: [u64; SKETCH_WORDS],
    /// Sketch of the destination hosts of the flows it started.
    pub host_sketch: [u64; SKETCH_WORDS],
}
const _: () = assert!(core::mem::size_of::<SrcStats>() == 192);

/// What arrived at one destination service since its entry was last drained, counting the
/// forward direction of flows (initiator to responder).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DstStats {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub syn_flows: u64,
    pub syn_answered: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Sketch of the source addresses of the flows it received.
    pub src_sketch: [u64; SKETCH_WORDS],
}
const _: () = assert!(core::mem::size_of::<DstStats>() == 120);

impl HostKey {
    #[inline(always)]
    pub fn src_of(m: &PacketMeta) -> HostKey {
        HostKey {
            addr: m.src,
            family: m.family,
            _pad: [0; 3],
        }
    }
    #[inline(always)]
    pub fn dst_of(m: &PacketMeta) -> HostKey {
        HostKey {
            addr: m.dst,
            family: m.family,
            _pad: [0; 3],
        }
    }
}

impl DstKey {
    /// The service `m` is sent to.
    #[inline(always)]
    pub fn to(m: &PacketMeta) -> DstKey {
        DstKey {
            addr: m.dst,
            port: m.dport,
            proto: m.proto,
            family: m.family,
        }
    }
    /// The service `m` is sent from (used when a responder answers).
    #[inline(always)]
    pub fn from(m: &PacketMeta) -> DstKey {
        DstKey {
            addr: m.src,
            port: m.sport,
            proto: m.proto,
            family: m.family,
        }
    }
}

/// What happened to the flow of the packet, as far as aggregates care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// This packet started a flow.
    pub started: bool,
    /// ... with a bare SYN.
    pub syn: bool,
    /// This packet is the responder's first answer to a flow that started with a bare SYN.
    pub syn_answered: bool,
    /// The packet travels in the flow's forward direction.
    pub forward: bool,
}

#[inline(always)]
fn mix32(mut x: u32) -> u32 {
    // A small integer hash (lowbias32): good bit spread, cheap in BPF.
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

#[inline(always)]
fn sketch_set(sketch: &mut [u64; SKETCH_WORDS], h: u32) {
    let bit = h & (SKETCH_BITS - 1);
    let w = (bit / 64) as usize;
    if w < SKETCH_WORDS {
        sketch[w] |= 1u64 << (bit % 64);
    }
}

/// Adds an item (hashed like the kernel's) to a sketch: for tests and synthetic aggregates.
pub fn sketch_add(sketch: &mut [u64; SKETCH_WORDS], item: u32) {
    sketch_set(sketch, mix32(item));
}

#[inline(always)]
fn addr_hash(a: &[u32; 4]) -> u32 {
    mix32(a[0] ^ mix32(a[1] ^ mix32(a[2] ^ mix32(a[3]))))
}

/// Estimated distinct items in a sketch (linear counting; saturates near
/// `SKETCH_BITS * ln(SKETCH_BITS)` ≈ 3,200).
pub fn sketch_estimate(sketch: &[u64; SKETCH_WORDS]) -> f64 {
    let set: u32 = sketch.iter().map(|w| w.count_ones()).sum();
    let m = f64::from(SKETCH_BITS);
    let zeros = (m - f64::from(set)).max(0.5);
    m * libm_ln(m / zeros)
}

/// ln for `no_std` (the kernel half never calls it; agents and tests do).
fn libm_ln(x: f64) -> f64 {
    // ln(x) = 2 atanh((x-1)/(x+1)), series converges fast for the range used here after
    // scaling x into [1, 2) by powers of two.
    let mut k = 0i32;
    let mut y = x;
    while y >= 2.0 {
        y /= 2.0;
        k += 1;
    }
    while y < 1.0 {
        y *= 2.0;
        k -= 1;
    }
    let z = (y - 1.0) / (y + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    let mut n = 1.0;
    while n < 60.0 {
        sum += term / n;
        term *= z2;
        n += 2.0;
    }
    2.0 * sum + f64::from(k) * core::f64::consts::LN_2
}

/// Aggregate volume (packets, bytes, last-seen time) is credited per flow direction in
/// chunks rather than per packet: the per-packet path then touches only the flow entry, and
/// the two aggregate lookups run once per chunk. A direction's pending volume is credited at
/// its first packet, when [`CREDIT_PACKETS`] packets are pending, when [`CREDIT_NS`] has
/// passed since its last credit, and when the flow ends or restarts; what is still pending
/// when the agent's sweep finds the flow idle is credited by the agent. Per-interval
/// aggregates therefore lag the traffic by at most one chunk per flow direction, and no
/// volume is lost.
pub const CREDIT_PACKETS: u32 = 64;
/// See [`CREDIT_PACKETS`].
pub const CREDIT_NS: u64 = 50_000_000;

/// Adds one packet of `frame_len` bytes to the direction's pending volume; returns whether
/// the pending volume is due for crediting (see [`CREDIT_PACKETS`]).
#[inline(always)]
pub fn pend(d: &mut DirStats, frame_len: u16, now_ns: u64) -> bool {
    d.agg_pkts += 1;
    d.agg_bytes += u32::from(frame_len);
    d.agg_pkts >= CREDIT_PACKETS || now_ns.wrapping_sub(d.agg_ns) >= CREDIT_NS
}

/// Takes the direction's pending volume (packets, bytes), marking it credited at `now_ns`.
#[inline(always)]
pub fn take(d: &mut DirStats, now_ns: u64) -> (u64, u64) {
    let v = (u64::from(d.agg_pkts), u64::from(d.agg_bytes));
    d.agg_pkts = 0;
    d.agg_bytes = 0;
    d.agg_ns = now_ns;
    v
}

/// Credits `packets` and `bytes` sent by the source at `now_ns`, in the forward direction of
/// their flow when `forward` (see [`SrcStats::fwd_packets`]); when `ev.started`, the packet
/// `m` started a flow, which is counted with its port and host.
#[inline(always)]
pub fn src_account(
    s: &mut SrcStats,
    m: &PacketMeta,
    packets: u64,
    bytes: u64,
    forward: bool,
    now_ns: u64,
    ev: &FlowEvent,
) {
    if s.packets == 0 {
        s.first_ns = now_ns;
    }
    s.packets += packets;
    s.bytes += bytes;
    if forward {
        s.fwd_packets += packets;
    }
    s.last_ns = now_ns;
    if ev.started {
        s.flows += 1;
        s.syn_flows += ev.syn as u64;
        sketch_set(
            &mut s.port_sketch,
            mix32(u32::from(m.dport) ^ (u32::from(m.proto) << 16)),
        );
        sketch_set(&mut s.host_sketch, addr_hash(&m.dst));
    }
}

/// Credits forward-direction `packets` and `bytes` that reached the service at `now_ns`;
/// when `ev.started`, the packet `m` started a flow to it.
#[inline(always)]
pub fn dst_account(d: &mut DstStats, m: &PacketMeta, packets: u64, bytes: u64, now_ns: u64, ev: &FlowEvent) {
    if d.packets == 0 {
        d.first_ns = now_ns;
    }
    d.packets += packets;
    d.bytes += bytes;
    d.last_ns = now_ns;
    if ev.started {
        d.flows += 1;
        d.syn_flows += ev.syn as u64;
        sketch_set(&mut d.src_sketch, addr_hash(&m.src));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketch_estimates_distinct_counts() {
        for n in [1u32, 10, 100, 500, 1000] {
            let mut s = [0u64; SKETCH_WORDS];
            for i in 0..n {
                sketch_set(&mut s, mix32(i));
                sketch_set(&mut s, mix32(i)); // duplicates do not count
            }
            let e = sketch_estimate(&s);
            let err = (e - f64::from(n)).abs() / f64::from(n);
            assert!(err < 0.15, "n={n} estimate={e}");
        }
        assert_eq!(sketch_estimate(&[0; SKETCH_WORDS]), 0.0);
    }

    #[test]
    fn ln_matches_std() {
        for x in [0.3, 1.0, 1.5, 2.0, 10.0, 512.0, 1024.0] {
            assert!((libm_ln(x) - std_ln(x)).abs() < 1e-9, "{x}");
        }
    }

    fn std_ln(x: f64) -> f64 {
        extern crate std;
        x.ln()
    }

    #[test]
    fn scan_and_flood_shapes() {
        let mut src = SrcStats::default();
        let mut dst = DstStats::default();
        for port in 1..=200u16 {
            let m = PacketMeta {
                proto: 6,
                src: [1, 0, 0, 0],
                dst: [2, 0, 0, 0],
                dport: port,
                frame_len: 60,
                ..PacketMeta::default()
            };
            let ev = FlowEvent {
                started: true,
                syn: true,
                syn_answered: false,
                forward: true,
            };
            src_account(&mut src, &m, 1, 60, true, u64::from(port), &ev);
        }
        assert_eq!((src.flows, src.syn_flows, src.bytes), (200, 200, 12_000));
        assert_eq!(src.fwd_packets, 200);
        // An answer (the reverse direction of a flow someone else started) is not counted
        // as the source's own initiative.
        let answer = FlowEvent {
            started: false,
            syn: false,
            syn_answered: true,
            forward: false,
        };
        src_account(&mut src, &PacketMeta::default(), 1, 60, false, 1, &answer);
        assert_eq!((src.packets, src.fwd_packets), (201, 200));
        let ports = sketch_estimate(&src.port_sketch);
        assert!((170.0..230.0).contains(&ports), "{ports}");
        assert!(sketch_estimate(&src.host_sketch) < 1.5);
        for s in 0..300u32 {
            let m = PacketMeta {
                proto: 6,
                src: [s, 0, 0, 0],
                dst: [9, 0, 0, 0],
                dport: 80,
                frame_len: 60,
                ..PacketMeta::default()
            };
            let ev = FlowEvent {
                started: true,
                syn: true,
                syn_answered: false,
                forward: true,
            };
            dst_account(&mut dst, &m, 1, 60, 1, &ev);
        }
        let srcs = sketch_estimate(&dst.src_sketch);
        assert!((255.0..345.0).contains(&srcs), "{srcs}");
    }

    #[test]
    fn volume_is_credited_in_chunks_and_nothing_is_lost() {
        let mut d = DirStats::default();
        let t0 = 1_000_000_000u64;
        // The first packet of a direction is due at once.
        assert!(pend(&mut d, 100, t0));
        assert_eq!(take(&mut d, t0), (1, 100));
        // A fast flow: due every CREDIT_PACKETS packets.
        let mut credited = (0, 0);
        let mut dues = 0;
        for i in 0..(3 * CREDIT_PACKETS as u64 + 5) {
            let now = t0 + 1_000 * (i + 1);
            if pend(&mut d, 60, now) {
                dues += 1;
                let (p, b) = take(&mut d, now);
                assert_eq!(p, u64::from(CREDIT_PACKETS));
                credited = (credited.0 + p, credited.1 + b);
            }
        }
        assert_eq!(dues, 3);
        assert_eq!((d.agg_pkts, d.agg_bytes), (5, 300), "the rest stays pending");
        assert_eq!(
            credited,
            (3 * u64::from(CREDIT_PACKETS), 3 * 60 * u64::from(CREDIT_PACKETS))
        );
        // A slow flow: due once CREDIT_NS has passed since the last credit.
        let last = d.agg_ns;
        assert!(!pend(&mut d, 60, last + CREDIT_NS - 1));
        assert!(pend(&mut d, 60, last + CREDIT_NS));
        assert_eq!(take(&mut d, last + CREDIT_NS), (7, 420));
    }
}
