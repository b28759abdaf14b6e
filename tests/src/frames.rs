//! Ethernet frame builders and a small parser (pure functions, no I/O).
//!
//! Builders return complete Ethernet frames (destination MAC, source MAC, ethertype, ...)
//! without FCS and without padding to the 60-byte minimum. IPv4 packets have TTL 64, DF set
//! and an identification from a process-wide counter; IPv6 packets have hop limit 64. Every
//! checksum is filled in: the IPv4 header checksum, and the TCP, UDP, ICMP and ICMPv6
//! checksums (the latter three with the IPv4/IPv6 pseudo-header where the protocol has one).
//!
//! [`parse`] and [`verify_checksums`] read frames back; the replay module uses the same
//! parser to rewrite captures.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU16, Ordering};

use crate::Endpoint;

/// TCP flags, as the shared flow code names them.
pub use netanom_common::flow::{TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG};

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// TPID of an 802.1Q (customer) VLAN tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad (service) VLAN tag.
pub const TPID_8021AD: u16 = 0x88a8;
/// Legacy QinQ TPID, also recognised by the parser.
pub const TPID_QINQ_LEGACY: u16 = 0x9100;

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// Ethernet header length (no VLAN tag).
pub const ETH_HLEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_HLEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HLEN: usize = 40;
/// TCP header length without options.
pub const TCP_HLEN: usize = 20;
/// UDP header length.
pub const UDP_HLEN: usize = 8;
/// ICMP/ICMPv6 echo header length.
pub const ICMP_ECHO_HLEN: usize = 8;

/// Most VLAN tags the parser walks through.
const MAX_VLAN_TAGS: usize = 4;
/// Most IPv6 extension headers the parser walks through.
const MAX_EXT_HEADERS: usize = 8;

static IPV4_ID: AtomicU16 = AtomicU16::new(1);

fn next_ipv4_id() -> u16 {
    IPV4_ID.fetch_add(1, Ordering::Relaxed)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The RFC 1071 one's-complement sum of the concatenation of `parts`, folded to 16 bits
/// (not inverted). A region that contains a correct checksum sums to `0xffff`.
pub fn ones_complement_sum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    // A byte left over from an odd-length part, waiting for its low half.
    let mut pending: Option<u8> = None;
    for part in parts {
        let mut data = *part;
        if let Some(hi) = pending.take() {
            match data.split_first() {
                Some((lo, rest)) => {
                    sum += u64::from(u16::from_be_bytes([hi, *lo]));
                    data = rest;
                }
                None => {
                    pending = Some(hi);
                    continue;
                }
            }
        }
        let mut words = data.chunks_exact(2);
        for w in &mut words {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            pending = Some(*last);
        }
    }
    if let Some(hi) = pending {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum (inverted one's-complement sum) of the concatenation of `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    !ones_complement_sum(parts)
}

/// The pseudo-header that TCP, UDP and ICMPv6 checksums cover: the RFC 793 12-byte form for
/// IPv4, the RFC 8200 40-byte form for IPv6. `None` when the address families differ.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, l4_len: usize) -> Option<Vec<u8>> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = Vec::with_capacity(12);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(l4_len as u16).to_be_bytes());
            Some(p)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = Vec::with_capacity(40);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(l4_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
            Some(p)
        }
        _ => None,
    }
}

/// Offset of the checksum field inside an L4 header, and the shortest header that holds it.
fn l4_checksum_field(proto: u8) -> Option<(usize, usize)> {
    match proto {
        IPPROTO_TCP => Some((16, TCP_HLEN)),
        IPPROTO_UDP => Some((6, UDP_HLEN)),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => Some((2, 4)),
        _ => None,
    }
}

/// Computes and stores the checksum of the L4 segment `l4` (TCP, UDP, ICMP or ICMPv6)
/// carried between `src` and `dst`. ICMP (v4) has no pseudo-header. A computed UDP checksum
/// of 0 is sent as 0xffff. Returns false (and changes nothing) for other protocols, a
/// segment too short for its header, or mixed address families.
pub fn fill_l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, l4: &mut [u8]) -> bool {
    let Some((at, min_len)) = l4_checksum_field(proto) else {
        return false;
    };
    if l4.len() < min_len {
        return false;
    }
    put16(l4, at, 0);
    let sum = if proto == IPPROTO_ICMP {
        checksum(&[l4])
    } else {
        let Some(pseudo) = pseudo_header(src, dst, proto, l4.len()) else {
            return false;
        };
        checksum(&[&pseudo, l4])
    };
    let sum = if proto == IPPROTO_UDP && sum == 0 {
        0xffff
    } else {
        sum
    };
    put16(l4, at, sum);
    true
}

/// A 20-byte IPv4 header (TTL 64, DF, no options) with its checksum.
pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize, id: u16) -> [u8; IPV4_HLEN] {
    let mut h = [0u8; IPV4_HLEN];
    h[0] = 0x45;
    put16(&mut h, 2, (IPV4_HLEN + payload_len) as u16);
    put16(&mut h, 4, id);
    put16(&mut h, 6, 0x4000); // DF, offset 0
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&[&h]);
    put16(&mut h, 10, sum);
    h
}

/// A 40-byte IPv6 header (hop limit 64, traffic class and flow label 0).
pub fn ipv6_header(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload_len: usize) -> [u8; IPV6_HLEN] {
    let mut h = [0u8; IPV6_HLEN];
    h[0] = 0x60;
    put16(&mut h, 4, payload_len as u16);
    h[6] = next_header;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h
}

fn eth_header(out: &mut Vec<u8>, dst: &[u8; 6], src: &[u8; 6], ethertype: u16) {
    out.extend_from_slice(dst);
    out.extend_from_slice(src);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

fn ip_frame_with_id(src: &Endpoint, dst: &Endpoint, v6: bool, proto: u8, l4: &[u8], id: u16) -> Vec<u8> {
    let mut l4 = l4.to_vec();
    let mut out = Vec::with_capacity(ETH_HLEN + IPV6_HLEN + l4.len());
    if v6 {
        fill_l4_checksum(src.ipv6.into(), dst.ipv6.into(), proto, &mut l4);
        eth_header(&mut out, &dst.mac, &src.mac, ETHERTYPE_IPV6);
        out.extend_from_slice(&ipv6_header(src.ipv6, dst.ipv6, proto, l4.len()));
    } else {
        fill_l4_checksum(src.ipv4.into(), dst.ipv4.into(), proto, &mut l4);
        eth_header(&mut out, &dst.mac, &src.mac, ETHERTYPE_IPV4);
        out.extend_from_slice(&ipv4_header(src.ipv4, dst.ipv4, proto, l4.len(), id));
    }
    out.extend_from_slice(&l4);
    out
}

/// Wraps an L4 segment (header and payload) into an Ethernet + IPv4/IPv6 frame from `src`
/// to `dst`, filling in the segment's checksum when `proto` is TCP, UDP, ICMP or ICMPv6
/// (the checksum field's current value is ignored). Other protocols are carried unchanged.
pub fn ip_frame(src: &Endpoint, dst: &Endpoint, v6: bool, proto: u8, l4: &[u8]) -> Vec<u8> {
    ip_frame_with_id(src, dst, v6, proto, l4, next_ipv4_id())
}

fn udp_segment(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(UDP_HLEN + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&((UDP_HLEN + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    s
}

/// A UDP datagram frame.
pub fn udp(src: &Endpoint, dst: &Endpoint, v6: bool, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    ip_frame(src, dst, v6, IPPROTO_UDP, &udp_segment(sport, dport, payload))
}

/// A TCP segment frame: 20-byte header without options, window 64240, urgent pointer 0.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: &Endpoint,
    dst: &Endpoint,
    v6: bool,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut s = Vec::with_capacity(TCP_HLEN + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.push(((TCP_HLEN / 4) as u8) << 4);
    s.push(flags);
    s.extend_from_slice(&64240u16.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    s.extend_from_slice(payload);
    ip_frame(src, dst, v6, IPPROTO_TCP, &s)
}

/// An echo request frame: ICMP type 8 over IPv4, ICMPv6 type 128 over IPv6.
pub fn icmp_echo(src: &Endpoint, dst: &Endpoint, v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(ICMP_ECHO_HLEN + payload.len());
    s.extend_from_slice(&[if v6 { 128 } else { 8 }, 0, 0, 0]);
    s.extend_from_slice(&id.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(payload);
    ip_frame(src, dst, v6, if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP }, &s)
}

/// Inserts an 802.1Q (`tpid` 0x8100) or 802.1ad (0x88a8) tag after the two MAC addresses,
/// with VLAN id `vid` (12 bits; higher bits are ignored) and priority 0. Applying it twice
/// makes a double-tagged (QinQ) frame, the outer tag last. A frame shorter than the two MAC
/// addresses is returned unchanged.
pub fn vlan_tag(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    if frame.len() < 12 {
        return frame.to_vec();
    }
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// What [`parse`] found in an IP frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// VLAN tags in wire order (outermost first): (TPID, TCI).
    pub vlan: Vec<(u16, u16)>,
    /// Ethertype after the tags: [`ETHERTYPE_IPV4`] or [`ETHERTYPE_IPV6`].
    pub ethertype: u16,
    /// Offset of the IP header.
    pub l3_offset: usize,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol (IPv4 protocol, or IPv6 next header after the extension headers).
    pub proto: u8,
    /// Offset of the transport header (may be beyond the captured bytes).
    pub l4_offset: usize,
    /// Transport length according to the IP header(s).
    pub l4_len: usize,
    /// The packet is a fragment (more-fragments set or non-zero offset).
    pub fragment: bool,
    /// The whole IP packet (as its length field says) is present in the frame.
    pub complete: bool,
    /// IPv6 with a routing header (the pseudo-header's destination is then not `dst`).
    pub routing_header: bool,
}

impl FrameInfo {
    /// True for a complete, unfragmented TCP/UDP/ICMP/ICMPv6 packet whose checksum can be
    /// checked or recomputed from this frame alone.
    pub fn l4_checksum_computable(&self) -> bool {
        self.complete
            && !self.fragment
            && !self.routing_header
            && l4_checksum_field(self.proto).is_some_and(|(_, min)| self.l4_len >= min)
    }
}

/// Parses the Ethernet, VLAN and IP headers of `frame`. `None` for non-IP frames and for
/// frames too short to hold their IP header.
pub fn parse(frame: &[u8]) -> Option<FrameInfo> {
    if frame.len() < ETH_HLEN {
        return None;
    }
    let mut at = 12;
    let mut ethertype = be16(frame, at);
    let mut vlan = Vec::new();
    while matches!(ethertype, TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY) {
        if vlan.len() == MAX_VLAN_TAGS || frame.len() < at + 8 {
            return None;
        }
        vlan.push((ethertype, be16(frame, at + 2)));
        at += 4;
        ethertype = be16(frame, at);
    }
    let l3 = at + 2;
    match ethertype {
        ETHERTYPE_IPV4 => {
            let h = frame.get(l3..l3 + IPV4_HLEN)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if h[0] >> 4 != 4 || ihl < IPV4_HLEN || frame.len() < l3 + ihl {
                return None;
            }
            let total = usize::from(be16(h, 2));
            let frag = be16(h, 6);
            Some(FrameInfo {
                vlan,
                ethertype,
                l3_offset: l3,
                src: Ipv4Addr::new(h[12], h[13], h[14], h[15]).into(),
                dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]).into(),
                proto: h[9],
                l4_offset: l3 + ihl,
                l4_len: total.saturating_sub(ihl),
                fragment: frag & 0x3fff != 0,
                complete: total >= ihl && l3 + total <= frame.len(),
                routing_header: false,
            })
        }
        ETHERTYPE_IPV6 => {
            let h = frame.get(l3..l3 + IPV6_HLEN)?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let end = l3 + IPV6_HLEN + usize::from(be16(h, 4));
            let mut next = h[6];
            let mut at = l3 + IPV6_HLEN;
            let mut fragment = false;
            let mut routing_header = false;
            for _ in 0..MAX_EXT_HEADERS {
                let len = match next {
                    // Hop-by-hop, routing, destination options: (len + 1) * 8.
                    0 | 43 | 60 => frame.get(at + 1).map(|l| (usize::from(*l) + 1) * 8),
                    // Fragment header: fixed 8 bytes.
                    44 => frame.get(at + 2..at + 4).map(|f| {
                        let f = u16::from_be_bytes([f[0], f[1]]);
                        fragment |= f & 0xfff9 != 0;
                        8
                    }),
                    // Authentication header: (len + 2) * 4.
                    51 => frame.get(at + 1).map(|l| (usize::from(*l) + 2) * 4),
                    _ => break,
                };
                let Some(len) = len else { break };
                routing_header |= next == 43;
                next = frame[at];
                at += len;
            }
            Some(FrameInfo {
                vlan,
                ethertype,
                l3_offset: l3,
                src: Ipv6Addr::from(<[u8; 16]>::try_from(&h[8..24]).ok()?).into(),
                dst: Ipv6Addr::from(<[u8; 16]>::try_from(&h[24..40]).ok()?).into(),
                proto: next,
                l4_offset: at,
                l4_len: end.saturating_sub(at),
                fragment,
                complete: end <= frame.len() && at <= end,
                routing_header,
            })
        }
        _ => None,
    }
}

/// Checks every checksum that `frame` lets one check: the IPv4 header checksum, and the
/// TCP/UDP/ICMP/ICMPv6 checksum of complete, unfragmented packets (a zero UDP checksum over
/// IPv4 means "none" and passes). False for non-IP or unparseable frames.
pub fn verify_checksums(frame: &[u8]) -> bool {
    let Some(info) = parse(frame) else { return false };
    if info.ethertype == ETHERTYPE_IPV4 {
        let ihl = info.l4_offset - info.l3_offset;
        if ones_complement_sum(&[&frame[info.l3_offset..info.l3_offset + ihl]]) != 0xffff {
            return false;
        }
    }
    if !info.l4_checksum_computable() {
        return true;
    }
    let l4 = &frame[info.l4_offset..info.l4_offset + info.l4_len];
    if info.proto == IPPROTO_ICMP {
        return ones_complement_sum(&[l4]) == 0xffff;
    }
    if info.proto == IPPROTO_UDP && info.ethertype == ETHERTYPE_IPV4 && be16(l4, 6) == 0 {
        return true;
    }
    match pseudo_header(info.src, info.dst, info.proto, info.l4_len) {
        Some(pseudo) => ones_complement_sum(&[&pseudo, l4]) == 0xffff,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps() -> (Endpoint, Endpoint) {
        let a = Endpoint {
            mac: [0x02, 0x6e, 0x61, 0, 1, 0x0a],
            ipv4: Ipv4Addr::new(198, 18, 0, 1),
            ipv6: "2001:db8::1".parse().expect("addr"),
        };
        let b = Endpoint {
            mac: [0x02, 0x6e, 0x61, 0, 1, 0x0b],
            ipv4: Ipv4Addr::new(198, 18, 0, 2),
            ipv6: "2001:db8::2".parse().expect("addr"),
        };
        (a, b)
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn rfc1071_examples() {
        // RFC 1071 section 3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
        assert_eq!(
            ones_complement_sum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            0xddf2
        );
        // Splitting at odd boundaries does not change the sum.
        assert_eq!(
            ones_complement_sum(&[&[0x00], &[0x01, 0xf2], &[], &[0x03, 0xf4, 0xf5], &[0xf6, 0xf7]]),
            0xddf2
        );
        // Odd length: the last byte is padded with zero.
        assert_eq!(ones_complement_sum(&[&[0x12, 0x34, 0x56]]), 0x6834);
        assert_eq!(checksum(&[&[]]), 0xffff);
    }

    #[test]
    fn ipv4_header_checksum_known_value() {
        // The classic example header 4500 0073 0000 4000 4011 xxxx c0a8 0001 c0a8 00c7 has
        // checksum b861.
        let mut h = hex("4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7");
        assert_eq!(checksum(&[&h]), 0xb861);
        put16(&mut h, 10, 0xb861);
        assert_eq!(ones_complement_sum(&[&h]), 0xffff);
        let built = ipv4_header(
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(192, 168, 0, 199),
            17,
            0x73 - 20,
            0,
        );
        assert_eq!(built.to_vec(), h);
    }

    #[test]
    fn udp_ipv4_known_frame() {
        let (a, b) = eps();
        let frame = ip_frame_with_id(
            &b,
            &a,
            false,
            IPPROTO_UDP,
            &udp_segment(40000, 9, b"abcd"),
            0x1234,
        );
        // Checked independently (Python struct + RFC 1071 sum over the header, and over the
        // pseudo-header c612 0002 c612 0001 0011 000c + segment): IPv4 0x9c71, UDP 0x129e.
        let expected = hex("026e6100010a 026e6100010b 0800
             4500 0020 1234 4000 4011 9c71 c612 0002 c612 0001
             9c40 0009 000c 129e 61626364");
        assert_eq!(frame, expected);
        assert!(verify_checksums(&frame));
    }

    #[test]
    fn lengths_and_fields() {
        let (a, b) = eps();
        assert_eq!(udp(&a, &b, false, 1, 2, &[0; 10]).len(), 14 + 20 + 8 + 10);
        assert_eq!(udp(&a, &b, true, 1, 2, &[0; 10]).len(), 14 + 40 + 8 + 10);
        assert_eq!(tcp(&a, &b, false, 1, 2, TCP_SYN, 0, 0, &[]).len(), 14 + 20 + 20);
        assert_eq!(
            tcp(&a, &b, true, 1, 2, TCP_SYN, 0, 0, &[1, 2, 3]).len(),
            14 + 40 + 20 + 3
        );
        assert_eq!(icmp_echo(&a, &b, false, 1, 2, &[0; 56]).len(), 14 + 20 + 8 + 56);
        assert_eq!(icmp_echo(&a, &b, true, 1, 2, &[0; 56]).len(), 14 + 40 + 8 + 56);

        let f = tcp(&a, &b, false, 1234, 80, TCP_SYN | TCP_ECE | TCP_CWR, 7, 9, b"xy");
        assert_eq!(&f[0..6], &b.mac);
        assert_eq!(&f[6..12], &a.mac);
        assert_eq!(be16(&f, 12), ETHERTYPE_IPV4);
        assert_eq!(f[14 + 8], 64, "ttl");
        assert_eq!(be16(&f, 14 + 6), 0x4000, "DF, no fragment");
        assert_eq!(f[14 + 20 + 13], 0xc2);
        assert_eq!(u32::from_be_bytes(f[38..42].try_into().expect("4")), 7);
        let info = parse(&f).expect("parse");
        assert_eq!(info.src, IpAddr::from(a.ipv4));
        assert_eq!(info.dst, IpAddr::from(b.ipv4));
        assert_eq!(
            (info.proto, info.l4_len, info.complete, info.fragment),
            (IPPROTO_TCP, 22, true, false)
        );

        let f6 = icmp_echo(&a, &b, true, 5, 6, b"ping");
        assert_eq!(be16(&f6, 12), ETHERTYPE_IPV6);
        assert_eq!(f6[14 + 7], 64, "hop limit");
        assert_eq!(f6[14 + 40], 128);
        let info = parse(&f6).expect("parse");
        assert_eq!((info.proto, info.l4_len), (IPPROTO_ICMPV6, 12));
    }

    #[test]
    fn all_builders_have_valid_checksums() {
        let (a, b) = eps();
        for v6 in [false, true] {
            for len in [0usize, 1, 2, 17, 1000] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                for f in [
                    udp(&a, &b, v6, 53, 40000, &payload),
                    tcp(
                        &a,
                        &b,
                        v6,
                        40000,
                        443,
                        TCP_ACK | TCP_PSH,
                        0xdead_beef,
                        1,
                        &payload,
                    ),
                    icmp_echo(&a, &b, v6, 0x4e41, len as u16, &payload),
                ] {
                    assert!(verify_checksums(&f), "v6={v6} len={len}");
                    // Any flipped payload/header bit is detected.
                    let mut bad = f.clone();
                    let last = bad.len() - 1;
                    bad[last] ^= 0x10;
                    assert!(
                        !verify_checksums(&bad),
                        "corruption not detected v6={v6} len={len}"
                    );
                }
            }
        }
    }

    #[test]
    fn udp_zero_checksum_becomes_ffff() {
        // Find a payload whose UDP checksum computes to 0, and check it is sent as ffff.
        let (a, b) = eps();
        let base = udp(&a, &b, false, 1, 2, &[0, 0]);
        let current = be16(&base, 14 + 20 + 6);
        // Adding `current` to the payload's words makes the folded sum ffff, i.e. checksum 0.
        let frame = udp(&a, &b, false, 1, 2, &current.to_be_bytes());
        assert_eq!(be16(&frame, 14 + 20 + 6), 0xffff);
        assert!(verify_checksums(&frame));
    }

    #[test]
    fn vlan_insertion() {
        let (a, b) = eps();
        let f = udp(&a, &b, false, 1, 2, b"data");
        let t = vlan_tag(&f, TPID_8021Q, 100);
        assert_eq!(t.len(), f.len() + 4);
        assert_eq!(&t[..12], &f[..12]);
        assert_eq!(&t[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(&t[16..], &f[12..]);
        let qinq = vlan_tag(&t, TPID_8021AD, 0x1fff);
        assert_eq!(&qinq[12..20], &[0x88, 0xa8, 0x0f, 0xff, 0x81, 0x00, 0x00, 100]);
        let info = parse(&qinq).expect("parse");
        assert_eq!(info.vlan, vec![(TPID_8021AD, 0x0fff), (TPID_8021Q, 100)]);
        assert_eq!(info.l3_offset, 22);
        assert!(verify_checksums(&qinq));
        assert_eq!(vlan_tag(&[1, 2, 3], TPID_8021Q, 1), vec![1, 2, 3]);
    }

    #[test]
    fn parse_rejects_non_ip_and_short() {
        let (a, b) = eps();
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        assert!(parse(&arp).is_none());
        let f = udp(&a, &b, true, 1, 2, b"x");
        assert!(parse(&f[..14 + 39]).is_none());
        assert!(parse(&f[..10]).is_none());
        let truncated = parse(&f[..f.len() - 1]).expect("header present");
        assert!(!truncated.complete && !truncated.l4_checksum_computable());
    }

    #[test]
    fn ipv6_extension_headers_and_fragments() {
        let (a, b) = eps();
        // UDP behind a hop-by-hop header and a fragment header (offset 0, more fragments).
        let udp_seg = udp_segment(1, 2, b"abc");
        let mut payload = vec![44, 0, 1, 4, 0, 0, 0, 0]; // HBH: next=frag, len 0, PadN
        payload.extend_from_slice(&[IPPROTO_UDP, 0, 0x00, 0x01, 0, 0, 0, 1]); // frag: M=1
        payload.extend_from_slice(&udp_seg);
        let mut f = Vec::new();
        eth_header(&mut f, &b.mac, &a.mac, ETHERTYPE_IPV6);
        f.extend_from_slice(&ipv6_header(a.ipv6, b.ipv6, 0, payload.len()));
        f.extend_from_slice(&payload);
        let info = parse(&f).expect("parse");
        assert_eq!(info.proto, IPPROTO_UDP);
        assert_eq!(info.l4_offset, 14 + 40 + 16);
        assert_eq!(info.l4_len, udp_seg.len());
        assert!(info.fragment && info.complete && !info.l4_checksum_computable());
    }
}
