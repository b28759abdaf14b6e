//! Who talked to whom: a flow's endpoints oriented to its initiator, the names netanom
//! gives protocols and TCP flags, and the flow ids it writes (CIC's `Flow ID`, EVE's `flow_id`).
use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netanom_common::{
    flow::{EndReason, FlowKey, FlowRecord, FlowValue},
    parse::FAMILY_V6,
};

/// Who talked to whom in a flow, oriented forward: the source is the initiator (the sender of
/// the flow's first packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowIdentity {
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// Time of the first and last packet, nanoseconds (since the Unix epoch for captures; the
    /// kernel's clock for live flows).
    pub first_ts: u64,
    pub last_ts: u64,
    /// Why the flow was exported; `None` for a reason code this build does not know.
    pub reason: Option<EndReason>,
}

/// The address stored as big-endian words in a [`FlowKey`] or an aggregate key (see
/// `netanom_common::parse::PacketMeta`).
pub fn addr(family: u8, w: &[u32; 4]) -> IpAddr {
    if family == FAMILY_V6 {
        let bits =
            (u128::from(w[0]) << 96) | (u128::from(w[1]) << 64) | (u128::from(w[2]) << 32) | u128::from(w[3]);
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        IpAddr::V4(Ipv4Addr::from(w[0]))
    }
}

impl FlowIdentity {
    /// The identity of flow `v` under `key`, exported for `reason`.
    pub fn new(key: &FlowKey, v: &FlowValue, reason: Option<EndReason>) -> FlowIdentity {
        let lo = (addr(key.family, &key.addr_lo), key.port_lo);
        let hi = (addr(key.family, &key.addr_hi), key.port_hi);
        let ((src_ip, src_port), (dst_ip, dst_port)) = if v.fwd_is_lo != 0 { (lo, hi) } else { (hi, lo) };
        FlowIdentity {
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            protocol: key.proto,
            first_ts: v.first_ns,
            last_ts: v.last_ns,
            reason,
        }
    }

    /// The identity of an exported record.
    pub fn of_record(rec: &FlowRecord) -> FlowIdentity {
        FlowIdentity::new(&rec.key, &rec.value, EndReason::from_u32(rec.reason))
    }
}

/// CIC's "Flow ID": `src-dst-sport-dport-proto`, oriented forward, e.g.
/// `192.168.10.5-192.168.10.3-58181-53-17` (this is the order in 99.8 % of the CIC rows).
pub fn flow_id_string(id: &FlowIdentity) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        id.src_ip, id.dst_ip, id.src_port, id.dst_port, id.protocol
    )
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const FLOW_ID_MASK: u64 = (1 << 51) - 1;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

fn fnv_endpoint(hash: u64, ip: IpAddr, port: u16) -> u64 {
    let hash = match ip {
        IpAddr::V4(v4) => fnv1a(fnv1a(hash, &[4]), &v4.octets()),
        IpAddr::V6(v6) => fnv1a(fnv1a(hash, &[6]), &v6.octets()),
    };
    fnv1a(hash, &port.to_be_bytes())
}

/// A stable id for a connection, written as EVE's `flow_id`.
///
/// FNV-1a 64 over `proto`, then the lower `(address, port)` endpoint, then
/// the higher one (each as address family 4 or 6, the address bytes, the
/// port big-endian), masked to 51 bits so consumers that read JSON numbers
/// as `f64` keep it exact. Both directions of a connection get the same id,
/// and the id does not change between runs or hosts. Alerts without a
/// 5-tuple pass the addresses they have and port 0.
pub fn eve_flow_id(a: IpAddr, a_port: u16, b: IpAddr, b_port: u16, proto: u8) -> u64 {
    let (lo, hi) = if (a, a_port) <= (b, b_port) {
        ((a, a_port), (b, b_port))
    } else {
        ((b, b_port), (a, a_port))
    };
    let hash = fnv1a(FNV_OFFSET, &[proto]);
    let hash = fnv_endpoint(hash, lo.0, lo.1);
    fnv_endpoint(hash, hi.0, hi.1) & FLOW_ID_MASK
}

/// Suricata's name for an IP protocol number: `"TCP"`, `"UDP"`, `"ICMP"`,
/// `"IPv6-ICMP"`, else the number in decimal.
pub fn proto_name(p: u8) -> Cow<'static, str> {
    match p {
        1 => Cow::Borrowed("ICMP"),
        6 => Cow::Borrowed("TCP"),
        17 => Cow::Borrowed("UDP"),
        58 => Cow::Borrowed("IPv6-ICMP"),
        other => Cow::Owned(other.to_string()),
    }
}

/// TCP flag bits as letters, FIN first: `F` FIN, `S` SYN, `R` RST, `P` PSH,
/// `A` ACK, `U` URG, `E` ECE, `C` CWR. `0x02` gives `"S"`, `0x12` `"SA"`.
pub fn tcp_flags_letters(bits: u8) -> String {
    const LETTERS: [char; 8] = ['F', 'S', 'R', 'P', 'A', 'U', 'E', 'C'];
    LETTERS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn flow_id_symmetric_stable_and_small() {
        let a = v4(198, 18, 0, 9);
        let b = v4(198, 18, 1, 2);
        let id = eve_flow_id(a, 40000, b, 80, 6);
        assert_eq!(id, eve_flow_id(b, 80, a, 40000, 6));
        // Hard-coded: the id must not change between versions.
        assert_eq!(id, EXPECTED_FLOW_ID);
        assert!(id < 1 << 51);
        // Protocol, ports and addresses all matter.
        assert_ne!(id, eve_flow_id(a, 40000, b, 80, 17));
        assert_ne!(id, eve_flow_id(a, 40001, b, 80, 6));
        assert_ne!(id, eve_flow_id(a, 80, b, 40000, 6));
        assert_ne!(id, eve_flow_id(a, 40000, v4(198, 18, 1, 3), 80, 6));

        let c = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let d = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
        assert_eq!(eve_flow_id(c, 1, d, 2, 58), eve_flow_id(d, 2, c, 1, 58));
        assert!(eve_flow_id(c, 1, d, 2, 58) < 1 << 51);
        // Same address and port on both sides (hairpin) is fine too.
        assert_eq!(eve_flow_id(a, 5, a, 5, 17), eve_flow_id(a, 5, a, 5, 17));
        for i in 0..1000u16 {
            assert!(eve_flow_id(a, i, b, 443, 6) < 1 << 51);
        }
    }

    // Checked against an independent FNV-1a in Python.
    const EXPECTED_FLOW_ID: u64 = 972_984_946_286_803;

    #[test]
    fn proto_names() {
        assert_eq!(proto_name(6), "TCP");
        assert_eq!(proto_name(17), "UDP");
        assert_eq!(proto_name(1), "ICMP");
        assert_eq!(proto_name(58), "IPv6-ICMP");
        assert_eq!(proto_name(47), "47");
        assert_eq!(proto_name(0), "0");
        assert_eq!(proto_name(255), "255");
    }

    #[test]
    fn tcp_flags() {
        assert_eq!(tcp_flags_letters(0x02), "S");
        assert_eq!(tcp_flags_letters(0x12), "SA");
        assert_eq!(tcp_flags_letters(0x00), "");
        assert_eq!(tcp_flags_letters(0xff), "FSRPAUEC");
    }
}
