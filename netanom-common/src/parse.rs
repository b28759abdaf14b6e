//! Header parsing shared by the XDP program and the agent's offline tools.
//!
//! The logic is written once, over the [`Packet`] trait: the XDP program implements it with
//! bounds-checked loads between `data` and `data_end` (which is what the verifier wants to
//! see), and the agent implements it over a byte slice. Every offset is bounded, every loop
//! has a constant trip count, and nothing here can panic.

use crate::{Event, Proto};

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;
/// VLAN tags we step over (802.1ad outer + 802.1Q inner).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers we step over before giving up.
pub const MAX_IPV6_EXT: usize = 6;
/// No header we parse starts beyond this offset; keeps every offset provably bounded.
pub const MAX_HDR_OFFSET: usize = 512;

/// Read-only, bounds-checked access to a frame starting at its Ethernet header.
///
/// Loads are 16 bits wide on purpose: for a 1-byte load LLVM rewrites the bounds check
/// `p + 1 > end` into `p >= end`, from which the BPF verifier learns no packet range. Every
/// byte-sized field we need shares a 16-bit word with its neighbour (see [`hi`], [`lo`]).
pub trait Packet {
    /// Length of the frame in bytes.
    fn len(&self) -> usize;
    /// Whether the frame has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The big-endian `u16` at `off`, or `None` if it does not fit.
    fn be16_at(&self, off: usize) -> Option<u16>;
    /// The big-endian `u32` at `off`, or `None` if it does not fit.
    fn be32_at(&self, off: usize) -> Option<u32>;
}

/// The first (high) byte of a big-endian word.
#[inline(always)]
pub const fn hi(w: u16) -> u8 {
    (w >> 8) as u8
}

/// The second (low) byte of a big-endian word.
#[inline(always)]
pub const fn lo(w: u16) -> u8 {
    w as u8
}

impl Packet for [u8] {
    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    #[inline(always)]
    fn be16_at(&self, off: usize) -> Option<u16> {
        match (self.get(off), self.get(off.wrapping_add(1))) {
            (Some(a), Some(b)) => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }
    #[inline(always)]
    fn be32_at(&self, off: usize) -> Option<u32> {
        let b = self.get(off..off.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// What the parser learned about one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The counter the frame goes under.
    pub proto: Proto,
    /// The frame carried at least one VLAN tag.
    pub vlan: bool,
    /// Something worth counting went wrong while parsing (the frame still passes).
    pub event: Option<Event>,
    /// Offset of the network header (after any VLAN tags).
    pub l3_off: usize,
}

/// Fragment position of an IP packet.
pub const FRAG_NONE: u8 = 0;
/// First fragment: carries the transport header.
pub const FRAG_FIRST: u8 = 1;
/// Later fragment: no transport header, so no ports or flags.
pub const FRAG_LATER: u8 = 2;

/// Address family tags used in keys.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Header fields of an IP packet, as flow accounting needs them.
///
/// Addresses are big-endian words: an IPv4 address is word 0 (others zero), an IPv6 address
/// all four; comparing words compares addresses byte-wise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    pub family: u8,
    /// IP protocol / IPv6 upper-layer next header.
    pub proto: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Ports (TCP/UDP), 0 otherwise and for later fragments.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (FIN 0x01 ... CWR 0x80), 0 for other protocols.
    pub tcp_flags: u8,
    /// [`FRAG_NONE`], [`FRAG_FIRST`] or [`FRAG_LATER`].
    pub fragment: u8,
    /// ICMP/ICMPv6 type and code (0 otherwise).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// TCP receive window (unscaled), 0 for other protocols.
    pub window: u16,
    /// Transport header length: TCP data offset × 4, 8 for UDP/ICMP/ICMPv6, 0 otherwise.
    pub l4_hdr_len: u16,
    /// Transport payload length, from the IP length fields (not from the captured bytes, so a
    /// capture cut at a snap length still gives true lengths).
    pub payload_len: u16,
    /// Bytes of the whole frame from the Ethernet header on.
    pub frame_len: u16,
}

/// Classification plus, for IP packets whose headers are complete, the flow metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub class: Classified,
    pub meta: Option<PacketMeta>,
}

/// Classifies a frame by address family and transport protocol.
#[inline(always)]
pub fn classify<P: Packet + ?Sized>(pkt: &P) -> Classified {
    parse(pkt).class
}

/// Parses a frame: Ethernet, up to two VLAN tags, IPv4 (options, fragments) or IPv6
/// (extension headers, fragments), then TCP/UDP/ICMP/ICMPv6 headers.
///
/// Truncated or malformed frames are classified as far as their bytes allow and flagged with
/// an [`Event`]; they get no [`PacketMeta`]. The caller always lets them pass.
#[inline(always)]
pub fn parse<P: Packet + ?Sized>(pkt: &P) -> Parsed {
    let mut out = Parsed {
        class: Classified {
            proto: Proto::OtherL2,
            vlan: false,
            event: None,
            l3_off: ETH_HLEN,
        },
        meta: None,
    };
    let Some(mut ethertype) = pkt.be16_at(12) else {
        out.class.event = Some(Event::Truncated);
        return out;
    };
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        out.class.vlan = true;
        // A tag is 4 bytes: TCI, then the encapsulated ethertype.
        match pkt.be16_at(off + 2) {
            Some(t) => ethertype = t,
            None => {
                out.class.event = Some(Event::Truncated);
                return out;
            }
        }
        off += 4;
    }
    out.class.l3_off = off;
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(pkt, off, &mut out),
        ETH_P_IPV6 => parse_ipv6(pkt, off, &mut out),
        ETH_P_ARP => out.class.proto = Proto::Arp,
        _ => {}
    }
    out
}

#[inline(always)]
fn parse_ipv4<P: Packet + ?Sized>(pkt: &P, off: usize, out: &mut Parsed) {
    out.class.proto = Proto::Ipv4Other;
    // Version/IHL share a word with the TOS; TTL shares one with the protocol.
    let (Some(w0), Some(w4)) = (pkt.be16_at(off), pkt.be16_at(off + 8)) else {
        out.class.event = Some(Event::Truncated);
        return;
    };
    let (vihl, proto) = (hi(w0), lo(w4));
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        out.class.event = Some(Event::BadIpHeader);
        return;
    }
    let (Some(total), Some(frag), Some(src), Some(dst)) = (
        pkt.be16_at(off + 2),
        pkt.be16_at(off + 6),
        pkt.be32_at(off + 12),
        pkt.be32_at(off + 16),
    ) else {
        out.class.event = Some(Event::Truncated);
        return;
    };
    if pkt.len() < off + ihl {
        out.class.event = Some(Event::Truncated);
        return;
    }
    out.class.proto = match proto {
        IPPROTO_TCP => Proto::Ipv4Tcp,
        IPPROTO_UDP => Proto::Ipv4Udp,
        IPPROTO_ICMP => Proto::Ipv4Icmp,
        _ => Proto::Ipv4Other,
    };
    let fragment = if frag & 0x1fff != 0 {
        FRAG_LATER
    } else if frag & 0x2000 != 0 {
        FRAG_FIRST
    } else {
        FRAG_NONE
    };
    let meta = PacketMeta {
        family: FAMILY_V4,
        proto,
        src: [src, 0, 0, 0],
        dst: [dst, 0, 0, 0],
        fragment,
        frame_len: pkt.len() as u16,
        ..PacketMeta::default()
    };
    let ip_payload = usize::from(total).saturating_sub(ihl);
    parse_l4(pkt, off + ihl, ip_payload, meta, out);
}

#[inline(always)]
fn parse_ipv6<P: Packet + ?Sized>(pkt: &P, off: usize, out: &mut Parsed) {
    out.class.proto = Proto::Ipv6Other;
    // Payload length precedes next header + hop limit; version leads the first word.
    let (Some(w0), Some(plen), Some(w3)) = (pkt.be16_at(off), pkt.be16_at(off + 4), pkt.be16_at(off + 6))
    else {
        out.class.event = Some(Event::Truncated);
        return;
    };
    let (ver, mut next) = (hi(w0), hi(w3));
    if ver >> 4 != 6 {
        out.class.event = Some(Event::BadIpHeader);
        return;
    }
    let mut meta = PacketMeta {
        family: FAMILY_V6,
        frame_len: pkt.len() as u16,
        ..PacketMeta::default()
    };
    for i in 0..4 {
        let (Some(s), Some(d)) = (pkt.be32_at(off + 8 + 4 * i), pkt.be32_at(off + 24 + 4 * i)) else {
            out.class.event = Some(Event::Truncated);
            return;
        };
        meta.src[i] = s;
        meta.dst[i] = d;
    }
    let mut hdr = off + 40;
    for _ in 0..MAX_IPV6_EXT {
        if !matches!(next, 0 | 43 | 44 | 51 | 60) {
            break;
        }
        // Every extension header starts with Next Header, Hdr Ext Len.
        let Some(w) = pkt.be16_at(hdr) else {
            out.class.event = Some(Event::Truncated);
            return;
        };
        let len = match next {
            // Fragment header: fixed 8 bytes; offset and M flag in its second word.
            44 => {
                let Some(fw) = pkt.be16_at(hdr + 2) else {
                    out.class.event = Some(Event::Truncated);
                    return;
                };
                meta.fragment = if fw >> 3 != 0 {
                    FRAG_LATER
                } else if fw & 1 != 0 {
                    FRAG_FIRST
                } else {
                    FRAG_NONE
                };
                8
            }
            // Authentication header: (Payload Len + 2) * 4 bytes.
            51 => (usize::from(lo(w)) + 2) * 4,
            // Hop-by-hop, routing, destination options: (Hdr Ext Len + 1) * 8 bytes.
            _ => (usize::from(lo(w)) + 1) * 8,
        };
        next = hi(w);
        hdr += len;
        if hdr > MAX_HDR_OFFSET {
            out.class.event = Some(Event::Ipv6ExtTooDeep);
            return;
        }
    }
    out.class.proto = match next {
        IPPROTO_TCP => Proto::Ipv6Tcp,
        IPPROTO_UDP => Proto::Ipv6Udp,
        IPPROTO_ICMPV6 => Proto::Ipv6Icmp,
        0 | 43 | 44 | 51 | 60 => {
            out.class.event = Some(Event::Ipv6ExtTooDeep);
            return;
        }
        _ => Proto::Ipv6Other,
    };
    if pkt.len() < off + 40 {
        out.class.event = Some(Event::Truncated);
        return;
    }
    meta.proto = next;
    // The IPv6 payload length covers the extension headers.
    let ip_payload = (usize::from(plen) + off + 40).saturating_sub(hdr);
    parse_l4(pkt, hdr, ip_payload, meta, out);
}

/// Transport header at `off`; `ip_payload` is what the IP header says follows it.
#[inline(always)]
fn parse_l4<P: Packet + ?Sized>(
    pkt: &P,
    off: usize,
    ip_payload: usize,
    mut meta: PacketMeta,
    out: &mut Parsed,
) {
    if meta.fragment == FRAG_LATER {
        meta.payload_len = ip_payload as u16;
        out.meta = Some(meta);
        return;
    }
    let hdr_len = match meta.proto {
        IPPROTO_TCP => {
            let (Some(sp), Some(dp), Some(w6), Some(win)) = (
                pkt.be16_at(off),
                pkt.be16_at(off + 2),
                pkt.be16_at(off + 12),
                pkt.be16_at(off + 14),
            ) else {
                out.class.event = Some(Event::Truncated);
                return;
            };
            meta.sport = sp;
            meta.dport = dp;
            meta.tcp_flags = lo(w6);
            meta.window = win;
            usize::from(hi(w6) >> 4) * 4
        }
        IPPROTO_UDP => {
            let (Some(sp), Some(dp)) = (pkt.be16_at(off), pkt.be16_at(off + 2)) else {
                out.class.event = Some(Event::Truncated);
                return;
            };
            meta.sport = sp;
            meta.dport = dp;
            8
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let Some(tc) = pkt.be16_at(off) else {
                out.class.event = Some(Event::Truncated);
                return;
            };
            meta.icmp_type = hi(tc);
            meta.icmp_code = lo(tc);
            8
        }
        _ => 0,
    };
    meta.l4_hdr_len = hdr_len as u16;
    meta.payload_len = ip_payload.saturating_sub(hdr_len) as u16;
    out.meta = Some(meta);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, payload: &[u8]) -> [u8; 128] {
        let mut f = [0u8; 128];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f[14..14 + payload.len()].copy_from_slice(payload);
        f
    }

    fn ipv4(proto: u8) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[9] = proto;
        h
    }

    fn ipv6(next: u8) -> [u8; 40] {
        let mut h = [0u8; 40];
        h[0] = 0x60;
        h[6] = next;
        h
    }

    #[test]
    fn ipv4_transports() {
        for (p, want) in [
            (IPPROTO_TCP, Proto::Ipv4Tcp),
            (IPPROTO_UDP, Proto::Ipv4Udp),
            (IPPROTO_ICMP, Proto::Ipv4Icmp),
            (47, Proto::Ipv4Other),
        ] {
            let f = eth(ETH_P_IPV4, &ipv4(p));
            let c = classify(&f[..54]);
            assert_eq!((c.proto, c.event, c.vlan), (want, None, false));
        }
    }

    #[test]
    fn ipv6_transports_and_extension_headers() {
        let f = eth(ETH_P_IPV6, &ipv6(IPPROTO_ICMPV6));
        assert_eq!(classify(&f[..]).proto, Proto::Ipv6Icmp);
        // Hop-by-hop (8 bytes) then fragment header then UDP.
        let mut p = [0u8; 64];
        p[..40].copy_from_slice(&ipv6(0));
        p[40] = 44; // hop-by-hop: next = fragment
        p[41] = 0; // (0 + 1) * 8 bytes
        p[48] = IPPROTO_UDP; // fragment: next = UDP
        let f = eth(ETH_P_IPV6, &p);
        let c = classify(&f[..]);
        assert_eq!((c.proto, c.event), (Proto::Ipv6Udp, None));
    }

    #[test]
    fn vlan_tags_are_stepped_over() {
        let mut f = [0u8; 128];
        f[12..14].copy_from_slice(&ETH_P_8021AD.to_be_bytes());
        f[16..18].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
        f[20..22].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
        f[22..42].copy_from_slice(&ipv4(IPPROTO_UDP));
        let c = classify(&f[..]);
        assert_eq!((c.proto, c.vlan, c.l3_off), (Proto::Ipv4Udp, true, 22));
    }

    #[test]
    fn arp_and_unknown_ethertypes() {
        assert_eq!(classify(&eth(ETH_P_ARP, &[])[..42]).proto, Proto::Arp);
        assert_eq!(classify(&eth(0x88cc, &[])[..60]).proto, Proto::OtherL2);
    }

    #[test]
    fn truncated_and_malformed_frames_never_panic() {
        let full = eth(ETH_P_IPV6, &ipv6(IPPROTO_TCP));
        for n in 0..full.len() {
            let c = classify(&full[..n]);
            if n < 14 {
                assert_eq!(c.event, Some(Event::Truncated));
            }
            if (14..54).contains(&n) {
                assert_eq!((c.proto, c.event), (Proto::Ipv6Other, Some(Event::Truncated)));
            }
        }
        let mut bad = eth(ETH_P_IPV4, &ipv4(IPPROTO_TCP));
        bad[14] = 0x42; // IHL 2: too short
        assert_eq!(classify(&bad[..]).event, Some(Event::BadIpHeader));
        // A pseudo-random byte soup never panics.
        let mut x: u32 = 0x1234_5678;
        let mut buf = [0u8; 96];
        for _ in 0..2000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            buf[12] = if x & 1 == 0 { 0x86 } else { 0x08 };
            buf[13] = if x & 1 == 0 { 0xdd } else { 0x00 };
            let _ = classify(&buf[..(x as usize % 96)]);
        }
    }
}
