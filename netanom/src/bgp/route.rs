//! The routes netanom announces: a blackhole route (RTBH) per blocked prefix and a FlowSpec
//! rule per rate-limited flood pattern, each with its attributes, so that what the speaker
//! holds can be compared with what is wanted, attribute by attribute.
use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    features::identity::{proto_name, tcp_flags_letters},
    respond::Cidr,
    telemetry::bgp::AnnouncedRoute,
};

/// A standard BGP community (RFC 1997), `ASN:VALUE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

/// BLACKHOLE (RFC 7999): every blackhole route carries it.
pub const BLACKHOLE: Community = Community(0xFFFF_029A);

/// The TCP flags a flood pattern distinguishes (FIN, SYN, RST, ACK: the kernel's
/// `PATTERN_FLAGS`).
pub const PATTERN_FLAGS: u8 = netanom_common::mitigate::PATTERN_FLAGS;

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xFFFF)
    }
}

impl FromStr for Community {
    type Err = String;

    fn from_str(s: &str) -> Result<Community, String> {
        let bad = || {
            format!(
                "`{s}` is not a BGP community: write ASN:VALUE with both from 0 to 65535, for \
                 example \"64512:666\""
            )
        };
        let (asn, value) = s.split_once(':').ok_or_else(bad)?;
        let part = |p: &str| {
            p.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| p.parse::<u16>().ok())
                .flatten()
                .ok_or_else(bad)
        };
        Ok(Community((u32::from(part(asn)?) << 16) | u32::from(part(value)?)))
    }
}

impl Serialize for Community {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Community {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Community, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What a FlowSpec rule matches: the flood pattern of a rate limit (RFC 8955 components 1, 3,
/// 5 and 9), exactly as the kernel matches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowMatch {
    /// The victim: a /32 or /128.
    pub dst: Cidr,
    pub proto: u8,
    /// TCP, UDP and SCTP patterns match their destination port; others have none.
    pub port: Option<u16>,
    /// TCP patterns match these flags exactly among [`PATTERN_FLAGS`]; others have none.
    pub tcp_flags: Option<u8>,
}

impl FlowMatch {
    /// The pattern on `dst` as the kernel keys it (`port` and `tcp_flags` as in the key).
    pub fn new(dst: IpAddr, proto: u8, port: u16, tcp_flags: u8) -> FlowMatch {
        FlowMatch {
            dst: Cidr::host(dst),
            proto,
            port: matches!(proto, 6 | 17 | 132).then_some(port),
            tcp_flags: (proto == 6).then_some(tcp_flags & PATTERN_FLAGS),
        }
    }
}

impl fmt::Display for FlowMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "destination {} protocol {}", self.dst, proto_name(self.proto))?;
        if let Some(p) = self.port {
            write!(f, " port {p}")?;
        }
        if let Some(flags) = self.tcp_flags {
            write!(f, " tcp-flags {}", tcp_flags_letters(flags))?;
            if flags == 0 {
                f.write_str("(none)")?;
            }
            write!(f, " of {}", tcp_flags_letters(PATTERN_FLAGS))?;
        }
        Ok(())
    }
}

/// What a FlowSpec rule asks the routers to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FlowAction {
    /// traffic-rate-bytes (RFC 8955 0x8006) at this many bytes per second; 0 discards.
    RateBytes(f32),
}

impl fmt::Display for FlowAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowAction::RateBytes(r) if *r == 0.0 => f.write_str("discard"),
            FlowAction::RateBytes(r) => write!(f, "rate-limit {r} bytes/s"),
        }
    }
}

/// What identifies a route on the speaker: its NLRI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKey {
    Blackhole(Cidr),
    FlowSpec(FlowMatch),
}

/// One route with its attributes.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// The prefix, routed to `next_hop` (which the routers send to a discard interface), with
    /// BLACKHOLE and the configured communities, sorted and without repeats.
    Blackhole {
        prefix: Cidr,
        next_hop: IpAddr,
        communities: Vec<Community>,
    },
    FlowSpec {
        rule: FlowMatch,
        action: FlowAction,
        communities: Vec<Community>,
    },
}

/// The two kinds of route, as metrics label them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Blackhole = 0,
    FlowSpec = 1,
}

impl Route {
    pub fn key(&self) -> RouteKey {
        match self {
            Route::Blackhole { prefix, .. } => RouteKey::Blackhole(*prefix),
            Route::FlowSpec { rule, .. } => RouteKey::FlowSpec(*rule),
        }
    }

    pub fn kind(&self) -> RouteKind {
        self.key().kind()
    }

    /// The route as `netanom status` lists it.
    pub fn announced(&self) -> AnnouncedRoute {
        let communities = |c: &[Community]| c.iter().map(Community::to_string).collect();
        match self {
            Route::Blackhole {
                prefix,
                next_hop,
                communities: c,
            } => AnnouncedRoute {
                kind: "blackhole".into(),
                route: prefix.to_string(),
                next_hop: Some(next_hop.to_string()),
                action: None,
                communities: communities(c),
            },
            Route::FlowSpec {
                rule,
                action,
                communities: c,
            } => AnnouncedRoute {
                kind: "flowspec".into(),
                route: rule.to_string(),
                next_hop: None,
                action: Some(action.to_string()),
                communities: communities(c),
            },
        }
    }
}

impl RouteKey {
    pub fn kind(&self) -> RouteKind {
        match self {
            RouteKey::Blackhole(_) => RouteKind::Blackhole,
            RouteKey::FlowSpec(_) => RouteKind::FlowSpec,
        }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteKey::Blackhole(p) => write!(f, "blackhole {p}"),
            RouteKey::FlowSpec(r) => write!(f, "flowspec {r}"),
        }
    }
}

/// `extra` with BLACKHOLE when `blackhole`, sorted, each once: the communities a route carries.
pub fn communities(extra: &[Community], blackhole: bool) -> Vec<Community> {
    let mut c: Vec<Community> = extra.to_vec();
    if blackhole {
        c.push(BLACKHOLE);
    }
    c.sort_unstable();
    c.dedup();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communities_parse_and_print_as_asn_value() {
        let c: Community = "65535:666".parse().unwrap();
        assert_eq!(c, BLACKHOLE);
        assert_eq!(c.to_string(), "65535:666");
        assert_eq!("0:0".parse::<Community>().unwrap(), Community(0));
        for bad in ["65536:1", "1:65536", "1", "a:b", "+1:2", "1:2:3", ""] {
            let e = bad.parse::<Community>().unwrap_err();
            assert!(e.contains("ASN:VALUE"), "{bad}: {e}");
        }
        assert_eq!(
            communities(&[Community(7), BLACKHOLE, Community(7)], true),
            vec![Community(7), BLACKHOLE]
        );
    }

    #[test]
    fn flow_matches_follow_the_kernel_key() {
        let v: IpAddr = "198.18.3.2".parse().unwrap();
        let syn = FlowMatch::new(v, 6, 80, 0x02 | 0x08);
        assert_eq!((syn.port, syn.tcp_flags), (Some(80), Some(0x02)));
        assert_eq!(
            syn.to_string(),
            "destination 198.18.3.2/32 protocol TCP port 80 tcp-flags S of FSRA"
        );
        let udp = FlowMatch::new(v, 17, 53, 0);
        assert_eq!((udp.port, udp.tcp_flags), (Some(53), None));
        let icmp = FlowMatch::new(v, 1, 0, 0);
        assert_eq!((icmp.port, icmp.tcp_flags), (None, None));
        assert_eq!(FlowAction::RateBytes(0.0).to_string(), "discard");
        assert_eq!(
            FlowAction::RateBytes(1.5e6).to_string(),
            "rate-limit 1500000 bytes/s"
        );
    }
}
