//! Bidirectional flow accounting, shared by the XDP/TC programs and the offline extractor.
//!
//! Both directions of a connection hit one [`FlowKey`]: the two endpoints are stored in a
//! canonical order (lower address/port first), and the [`FlowValue`] remembers which of them
//! sent the first packet (the forward direction). [`account`] is the one per-packet update;
//! the kernel calls it on a map value in place, the agent's pcap reader on a `HashMap` entry,
//! so live and offline feature vectors cannot drift apart.
use crate::parse::{FRAG_LATER, IPPROTO_TCP, PacketMeta};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;
pub const TCP_ECE: u8 = 0x40;
pub const TCP_CWR: u8 = 0x80;

/// Flow key: the two endpoints in canonical order. IPv4 and IPv6 share the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The lower endpoint's address (big-endian words, see [`PacketMeta`]).
    pub addr_lo: [u32; 4],
    pub addr_hi: [u32; 4],
    pub port_lo: u16,
    pub port_hi: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

impl FlowKey {
    /// The key of `m`'s flow, and whether `m`'s sender is the key's lower endpoint.
    #[inline(always)]
    pub fn of(m: &PacketMeta) -> (FlowKey, bool) {
        let sender_lo = endpoint_le(&m.src, m.sport, &m.dst, m.dport);
        let (a, pa, b, pb) = if sender_lo {
            (m.src, m.sport, m.dst, m.dport)
        } else {
            (m.dst, m.dport, m.src, m.sport)
        };
        (
            FlowKey {
                addr_lo: a,
                addr_hi: b,
                port_lo: pa,
                port_hi: pb,
                proto: m.proto,
                family: m.family,
                _pad: [0; 2],
            },
            sender_lo,
        )
    }
}

#[inline(always)]
fn endpoint_le(a: &[u32; 4], pa: u16, b: &[u32; 4], pb: u16) -> bool {
    for i in 0..4 {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    pa <= pb
}

/// Counters of one direction of a flow. Lengths are transport payload bytes, as in
/// CICFlowMeter; times are nanoseconds, inter-arrival times microseconds (so that the sum of
/// squares cannot overflow within an active timeout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    pub packets: u64,
    pub payload_bytes: u64,
    pub payload_sumsq: u64,
    /// Sum of transport header lengths.
    pub header_bytes: u64,
    /// Sum of whole-frame lengths.
    pub frame_bytes: u64,
    pub iat_sum_us: u64,
    pub iat_sumsq_us: u64,
    pub iat_min_us: u64,
    pub iat_max_us: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Packets with FIN, SYN, RST, PSH, ACK, URG, ECE, CWR set, in that order.
    pub flags: [u32; 8],
    /// Packets with at least one byte of payload.
    pub data_packets: u32,
    pub payload_min: u16,
    pub payload_max: u16,
    /// Smallest transport header seen.
    pub header_min: u16,
    /// TCP window of the first packet in this direction (unscaled).
    pub init_window: u16,
    /// Packets and frame bytes of this direction not yet credited to the per-source and
    /// per-destination aggregates (the kernel credits them in chunks, see
    /// [`crate::agg::pend`]); not a feature.
    pub agg_pkts: u32,
    pub agg_bytes: u32,
    pub _pad: [u8; 4],
    /// When this direction's volume was last credited to the aggregates (0: never).
    pub agg_ns: u64,
}
const _: () = assert!(core::mem::size_of::<DirStats>() == 152);

/// [`FlowValue::state`] bits.
pub const ST_FIN_FWD: u8 = 0x01;
pub const ST_FIN_BWD: u8 = 0x02;
pub const ST_RST: u8 = 0x04;
/// The flow has ended (FIN both ways, or RST) and was exported; later packets of the same
/// connection (the last ACK, retransmissions) are still counted here but not exported again.
pub const ST_CLOSED: u8 = 0x08;
/// The first packet was a SYN without ACK and the other side has not answered yet.
pub const ST_SYN_PENDING: u8 = 0x10;

/// Everything kept about one flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub fwd: DirStats,
    pub bwd: DirStats,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Inter-arrival times over both directions, microseconds.
    pub iat_sum_us: u64,
    pub iat_sumsq_us: u64,
    pub iat_min_us: u64,
    pub iat_max_us: u64,
    /// 1 if the forward direction (the first packet's sender) is the key's lower endpoint.
    pub fwd_is_lo: u8,
    pub state: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub _pad: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<FlowValue>() == 360);

/// Why a flow record was exported.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// FIN seen in both directions.
    Fin = 1,
    Rst = 2,
    /// The flow lasted longer than the active timeout; it continues as a new flow.
    ActiveTimeout = 3,
    /// No packet for the idle timeout (found by the agent's sweep).
    IdleTimeout = 4,
    /// Still live when the agent stopped or the capture ended.
    Flush = 5,
}

impl EndReason {
    pub const fn from_u32(v: u32) -> Option<EndReason> {
        match v {
            1 => Some(EndReason::Fin),
            2 => Some(EndReason::Rst),
            3 => Some(EndReason::ActiveTimeout),
            4 => Some(EndReason::IdleTimeout),
            5 => Some(EndReason::Flush),
            _ => None,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::ActiveTimeout => "active_timeout",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::Flush => "flush",
        }
    }
}

/// One ended flow, as the kernel hands it to the agent through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowRecord {
    pub key: FlowKey,
    /// An [`EndReason`] discriminant.
    pub reason: u32,
    pub _pad: u32,
    pub value: FlowValue,
}
const _: () = assert!(core::mem::size_of::<FlowRecord>() == 408);

/// Timeouts, nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// A flow older than this is exported and restarted (CICFlowMeter's flow timeout).
    pub active_ns: u64,
    /// A flow without packets for this long is exported by the sweep.
    pub idle_ns: u64,
    /// A closed flow is forgotten after this long without packets.
    pub closed_linger_ns: u64,
}
const _: () = assert!(core::mem::size_of::<FlowTimeouts>() == 24);

impl FlowTimeouts {
    pub const DEFAULT: FlowTimeouts = FlowTimeouts {
        active_ns: 120_000_000_000,
        idle_ns: 30_000_000_000,
        closed_linger_ns: 5_000_000_000,
    };
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What becomes of a flow that has been quiet since its last packet, at `now`: the one rule
/// that the agent's sweep of the kernel table and the offline extractor both apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Keep it: live and not idle long enough, or closed and still lingering (it absorbs the
    /// connection's stragglers).
    Keep,
    /// Live, and quiet for longer than the idle timeout: export it (idle timeout) and remove it.
    ExportIdle,
    /// Closed (already exported), and quiet for longer than the linger time: remove it.
    Forget,
}

/// [`Expiry`] of flow `v` at `now_ns` under the timeouts `t`.
#[inline(always)]
pub fn expiry(v: &FlowValue, now_ns: u64, t: &FlowTimeouts) -> Expiry {
    let quiet = now_ns.saturating_sub(v.last_ns);
    if v.state & ST_CLOSED != 0 {
        if quiet > t.closed_linger_ns {
            Expiry::Forget
        } else {
            Expiry::Keep
        }
    } else if quiet > t.idle_ns {
        Expiry::ExportIdle
    } else {
        Expiry::Keep
    }
}

/// What [`account`] asks the caller to do after updating a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: the flow goes on.
    Continue,
    /// The flow just ended: export the value as it is now (it stays in the table, closed).
    Ended(EndReason),
    /// The flow outlived the active timeout *before* this packet: export the value as it was,
    /// then start a fresh flow with this packet ([`start`]).
    Restart,
    /// A bare SYN reused the ports of a closed flow: the value now holds a new flow that this
    /// packet started (the old one was exported when it closed).
    Reopened,
}

/// Initializes `v` as a new flow whose first packet is `m`.
#[inline(always)]
pub fn start(v: &mut FlowValue, m: &PacketMeta, now_ns: u64, sender_lo: bool) {
    *v = FlowValue::default();
    start_scratch(v, m, now_ns, sender_lo);
}

/// [`start`] for a value that is zero except for what `start_scratch` itself writes (the
/// kernel's per-CPU scratch, zero when created and written by nothing else): it skips zeroing
/// the 360 bytes, about a tenth of a new flow's instructions in the XDP program. Every field
/// it sets, it sets unconditionally, so the result equals [`start`]'s whatever flow the
/// scratch held before.
#[inline(always)]
pub fn start_scratch(v: &mut FlowValue, m: &PacketMeta, now_ns: u64, sender_lo: bool) {
    v.first_ns = now_ns;
    v.last_ns = now_ns;
    v.fwd_is_lo = sender_lo as u8;
    v.icmp_type = m.icmp_type;
    v.icmp_code = m.icmp_code;
    v.state = if m.proto == IPPROTO_TCP && m.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        ST_SYN_PENDING
    } else {
        0
    };
    dir_first(&mut v.fwd, m, now_ns);
}

/// Accounts packet `m`, seen at `now_ns`, in the existing flow `v`.
#[inline(always)]
pub fn account(v: &mut FlowValue, m: &PacketMeta, now_ns: u64, sender_lo: bool, t: &FlowTimeouts) -> Verdict {
    let closed = v.state & ST_CLOSED != 0;
    // A new connection reusing a closed flow's ports, or an over-age flow: start afresh.
    if closed && m.proto == IPPROTO_TCP && m.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        start(v, m, now_ns, sender_lo);
        return Verdict::Reopened;
    }
    if !closed && now_ns.saturating_sub(v.first_ns) > t.active_ns {
        return Verdict::Restart;
    }
    let fwd = (v.fwd_is_lo != 0) == sender_lo;
    let iat = ns_to_us(now_ns.saturating_sub(v.last_ns));
    v.iat_sum_us += iat;
    v.iat_sumsq_us += iat * iat;
    v.iat_min_us = if v.fwd.packets + v.bwd.packets == 1 {
        iat
    } else {
        v.iat_min_us.min(iat)
    };
    v.iat_max_us = v.iat_max_us.max(iat);
    v.last_ns = now_ns;
    let d = if fwd { &mut v.fwd } else { &mut v.bwd };
    if d.packets == 0 {
        dir_first(d, m, now_ns);
    } else {
        dir_next(d, m, now_ns);
    }
    if !fwd {
        v.state &= !ST_SYN_PENDING;
    }
    if closed || m.proto != IPPROTO_TCP {
        return Verdict::Continue;
    }
    if m.tcp_flags & TCP_RST != 0 {
        v.state |= ST_RST | ST_CLOSED;
        return Verdict::Ended(EndReason::Rst);
    }
    if m.tcp_flags & TCP_FIN != 0 {
        v.state |= if fwd { ST_FIN_FWD } else { ST_FIN_BWD };
        if v.state & (ST_FIN_FWD | ST_FIN_BWD) == ST_FIN_FWD | ST_FIN_BWD {
            v.state |= ST_CLOSED;
            return Verdict::Ended(EndReason::Fin);
        }
    }
    Verdict::Continue
}

/// `ns / 1000`, without a division for gaps under 2^32 ns (4.3 s): a 64-bit division costs
/// tens of cycles per packet in the JIT-compiled program, a multiply and a shift a few. Exact:
/// 274,877,907 / 2^38 exceeds 1/1000 by less than 2.1e-13, so for `ns` < 2^32 the product
/// overshoots `ns / 1000` by less than 0.001, which never carries past the next integer.
#[inline(always)]
pub fn ns_to_us(ns: u64) -> u64 {
    if ns < 1 << 32 {
        (ns * 274_877_907) >> 38
    } else {
        ns / 1000
    }
}

#[inline(always)]
fn dir_first(d: &mut DirStats, m: &PacketMeta, now_ns: u64) {
    let p = u64::from(m.payload_len);
    d.packets = 1;
    d.payload_bytes = p;
    d.payload_sumsq = p * p;
    d.header_bytes = u64::from(m.l4_hdr_len);
    d.frame_bytes = u64::from(m.frame_len);
    d.first_ns = now_ns;
    d.last_ns = now_ns;
    d.payload_min = m.payload_len;
    d.payload_max = m.payload_len;
    d.header_min = m.l4_hdr_len;
    d.init_window = m.window;
    d.data_packets = (m.payload_len > 0) as u32;
    // Set, not added: a direction's first packet (see `start_scratch`).
    let f = m.tcp_flags;
    for (i, slot) in d.flags.iter_mut().enumerate() {
        *slot = u32::from((f >> i) & 1);
    }
}

#[inline(always)]
fn dir_next(d: &mut DirStats, m: &PacketMeta, now_ns: u64) {
    let p = u64::from(m.payload_len);
    let iat = ns_to_us(now_ns.saturating_sub(d.last_ns));
    d.iat_min_us = if d.packets == 1 {
        iat
    } else {
        d.iat_min_us.min(iat)
    };
    d.iat_max_us = d.iat_max_us.max(iat);
    d.iat_sum_us += iat;
    d.iat_sumsq_us += iat * iat;
    d.packets += 1;
    d.payload_bytes += p;
    d.payload_sumsq += p * p;
    d.header_bytes += u64::from(m.l4_hdr_len);
    d.frame_bytes += u64::from(m.frame_len);
    d.last_ns = now_ns;
    d.payload_min = d.payload_min.min(m.payload_len);
    d.payload_max = d.payload_max.max(m.payload_len);
    if m.fragment != FRAG_LATER {
        d.header_min = d.header_min.min(m.l4_hdr_len);
    }
    d.data_packets += (m.payload_len > 0) as u32;
    count_flags(d, m);
}

#[inline(always)]
fn count_flags(d: &mut DirStats, m: &PacketMeta) {
    let f = m.tcp_flags;
    for (i, slot) in d.flags.iter_mut().enumerate() {
        *slot += u32::from((f >> i) & 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{FAMILY_V4, IPPROTO_UDP};

    #[test]
    fn ns_to_us_is_exact() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let check = |ns: u64| assert_eq!(ns_to_us(ns), ns / 1000, "{ns}");
        for k in 0..=4_294_968u64 {
            // Every multiple of 1000 below 2^32 and its neighbours (where a floor could slip).
            let m = k * 1000;
            check(m);
            check(m.saturating_sub(1));
            check(m + 999);
        }
        for ns in [0, 1, 999, 1000, (1 << 32) - 1, 1 << 32, u64::MAX] {
            check(ns);
        }
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            check(x >> 32);
            check(x >> 20);
        }
    }

    fn meta(src: u32, sport: u16, dst: u32, dport: u16, flags: u8, payload: u16) -> PacketMeta {
        PacketMeta {
            family: FAMILY_V4,
            proto: IPPROTO_TCP,
            src: [src, 0, 0, 0],
            dst: [dst, 0, 0, 0],
            sport,
            dport,
            tcp_flags: flags,
            window: 1000,
            l4_hdr_len: 20,
            payload_len: payload,
            frame_len: 54 + payload,
            ..PacketMeta::default()
        }
    }

    #[test]
    fn both_directions_share_one_key() {
        let a = meta(0xc612_0002, 40000, 0xc612_0001, 80, TCP_SYN, 0);
        let b = meta(0xc612_0001, 80, 0xc612_0002, 40000, TCP_SYN | TCP_ACK, 0);
        let (ka, la) = FlowKey::of(&a);
        let (kb, lb) = FlowKey::of(&b);
        assert_eq!(ka, kb);
        assert_ne!(la, lb);
        assert_eq!((ka.addr_lo[0], ka.port_lo), (0xc612_0001, 80));
    }

    #[test]
    fn tcp_connection_counts_both_directions_and_ends_on_fin() {
        let t = FlowTimeouts::DEFAULT;
        let c = 0xc612_0002;
        let s = 0xc612_0001;
        let pkts = [
            (meta(c, 40000, s, 80, TCP_SYN, 0), 0u64),
            (meta(s, 80, c, 40000, TCP_SYN | TCP_ACK, 0), 1_000),
            (meta(c, 40000, s, 80, TCP_ACK, 0), 2_000),
            (meta(c, 40000, s, 80, TCP_ACK | TCP_PSH, 100), 3_000),
            (meta(s, 80, c, 40000, TCP_ACK | TCP_PSH, 300), 5_000),
            (meta(c, 40000, s, 80, TCP_ACK | TCP_FIN, 0), 9_000),
            (meta(s, 80, c, 40000, TCP_ACK | TCP_FIN, 0), 10_000),
            (meta(c, 40000, s, 80, TCP_ACK, 0), 11_000),
        ];
        let mut v = FlowValue::default();
        let mut verdicts = [Verdict::Continue; 8];
        for (i, (m, us)) in pkts.iter().enumerate() {
            let (_, lo) = FlowKey::of(m);
            let now = 1_000_000_000 + us * 1000;
            if i == 0 {
                start(&mut v, m, now, lo);
            } else {
                verdicts[i] = account(&mut v, m, now, lo, &t);
            }
        }
        assert_eq!(verdicts[6], Verdict::Ended(EndReason::Fin));
        assert_eq!(
            verdicts[7],
            Verdict::Continue,
            "the last ACK joins the closed flow"
        );
        assert_eq!((v.fwd.packets, v.bwd.packets), (5, 3));
        assert_eq!((v.fwd.payload_bytes, v.bwd.payload_bytes), (100, 300));
        assert_eq!(v.fwd.flags[1], 1); // SYN
        assert_eq!(v.bwd.flags[4], 3); // ACK
        assert_eq!(v.fwd.data_packets, 1);
        assert_eq!(v.iat_sum_us, 11_000);
        assert_eq!((v.iat_min_us, v.iat_max_us), (1_000, 4_000));
        assert_eq!(v.fwd.iat_sum_us, 11_000);
        assert_eq!(v.fwd.header_bytes, 100);
        assert_eq!(v.state & ST_SYN_PENDING, 0);
        assert_ne!(v.state & ST_CLOSED, 0);
    }

    #[test]
    fn active_timeout_asks_for_a_restart_and_syn_reopens_a_closed_flow() {
        let t = FlowTimeouts {
            active_ns: 1_000,
            ..FlowTimeouts::DEFAULT
        };
        let mut m = meta(1, 1, 2, 2, 0, 10);
        m.proto = IPPROTO_UDP;
        let mut v = FlowValue::default();
        start(&mut v, &m, 0, true);
        assert_eq!(account(&mut v, &m, 500, true, &t), Verdict::Continue);
        assert_eq!(account(&mut v, &m, 1_500, true, &t), Verdict::Restart);
        assert_eq!(v.fwd.packets, 2, "the restart leaves the old value for export");

        let mut v = FlowValue::default();
        let syn = meta(1, 1, 2, 2, TCP_SYN, 0);
        start(&mut v, &syn, 0, true);
        assert_eq!(
            account(&mut v, &meta(1, 1, 2, 2, TCP_RST, 0), 10, true, &t),
            Verdict::Ended(EndReason::Rst)
        );
        assert_eq!(account(&mut v, &syn, 20, true, &t), Verdict::Reopened);
        assert_eq!(
            (v.fwd.packets, v.state),
            (1, ST_SYN_PENDING),
            "a new SYN starts over"
        );
    }
    #[test]
    fn a_scratch_start_over_any_earlier_start_equals_a_start_from_zero() {
        let mut tcp = meta(1, 1, 2, 2, TCP_SYN, 0);
        tcp.icmp_type = 0;
        let mut udp = meta(3, 4, 5, 6, 0, 77);
        udp.proto = IPPROTO_UDP;
        let mut icmp = meta(7, 0, 8, 0, 0, 12);
        icmp.proto = 1;
        icmp.icmp_type = 8;
        let ack = meta(9, 9, 10, 10, TCP_ACK | TCP_PSH | TCP_FIN, 1400);
        let all = [tcp, udp, icmp, ack];
        for first in &all {
            for second in &all {
                let mut scratch = FlowValue::default();
                start_scratch(&mut scratch, first, 1_000, true);
                start_scratch(&mut scratch, second, 5_000, false);
                let mut want = FlowValue::default();
                start(&mut want, second, 5_000, false);
                assert_eq!(scratch, want, "{first:?} then {second:?}");
            }
        }
    }

    #[test]
    fn idle_flows_are_exported_and_closed_ones_forgotten_after_their_linger() {
        let t = FlowTimeouts {
            idle_ns: 100,
            closed_linger_ns: 10,
            ..FlowTimeouts::DEFAULT
        };
        let mut v = FlowValue {
            last_ns: 1_000,
            ..FlowValue::default()
        };
        assert_eq!(expiry(&v, 1_100, &t), Expiry::Keep);
        assert_eq!(expiry(&v, 1_101, &t), Expiry::ExportIdle);
        assert_eq!(
            expiry(&v, 0, &t),
            Expiry::Keep,
            "a clock behind the flow is no gap"
        );
        v.state = ST_CLOSED;
        assert_eq!(expiry(&v, 1_010, &t), Expiry::Keep);
        assert_eq!(expiry(&v, 1_011, &t), Expiry::Forget);
    }
}
