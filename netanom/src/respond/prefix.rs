//! IP prefixes (`198.18.0.0/15`, `2001:db8::/32`): the allowlist's entries and the blocks the
//! agent puts around offenders.
//!
//! A [`Cidr`] is always in network form: its host bits are zero. Parsing rejects a prefix with
//! host bits set (`10.0.0.1/8`) rather than silently masking it, because such a typo usually
//! means the operator meant something else; the error suggests the network form.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 prefix: a network address and a prefix length, host bits zero.
///
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are IPv6 addresses here: an IPv4 prefix
/// never contains them, and an IPv6 prefix contains them only by their IPv6 form.
///
/// Ordering: every IPv4 prefix before every IPv6 one, then by address, then by length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cidr {
    V4 { addr: Ipv4Addr, len: u8 },
    V6 { addr: Ipv6Addr, len: u8 },
}

/// Why a string is not a prefix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error(
        "empty prefix: write an address with an optional prefix length, for example \
         198.18.0.0/15, 2001:db8::/32 or 192.0.2.1"
    )]
    Empty,
    #[error(
        "`{input}` is not an IP address: write an IPv4 or IPv6 address with an optional prefix \
         length, for example 198.18.0.0/15, 2001:db8::/32 or 192.0.2.1"
    )]
    NotAnAddress { input: String },
    #[error("`{input}`: prefix length must be 0 to {max} for an {family} prefix")]
    BadLength {
        input: String,
        max: u8,
        family: &'static str,
    },
    #[error("`{input}` has host bits set after the /{len}: did you mean {network}?")]
    HostBits { input: String, len: u8, network: Cidr },
}

const fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

const fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len as u32)
    }
}

impl Cidr {
    /// The prefix of one address: `/32` for IPv4, `/128` for IPv6.
    pub fn host(ip: IpAddr) -> Cidr {
        match ip {
            IpAddr::V4(addr) => Cidr::V4 { addr, len: 32 },
            IpAddr::V6(addr) => Cidr::V6 { addr, len: 128 },
        }
    }

    /// The prefix of length `len` that contains `ip` (its host bits cleared): e.g. the /24 or
    /// /64 around an offender. A `len` longer than the family allows is clamped to it (32 or
    /// 128).
    pub fn covering(ip: IpAddr, len: u8) -> Cidr {
        match ip {
            IpAddr::V4(a) => {
                let len = len.min(32);
                Cidr::V4 {
                    addr: Ipv4Addr::from(u32::from(a) & mask4(len)),
                    len,
                }
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                Cidr::V6 {
                    addr: Ipv6Addr::from(u128::from(a) & mask6(len)),
                    len,
                }
            }
        }
    }

    /// The prefix length.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u8 {
        match *self {
            Cidr::V4 { len, .. } | Cidr::V6 { len, .. } => len,
        }
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        match *self {
            Cidr::V4 { addr, .. } => IpAddr::V4(addr),
            Cidr::V6 { addr, .. } => IpAddr::V6(addr),
        }
    }

    pub fn is_v4(&self) -> bool {
        matches!(self, Cidr::V4 { .. })
    }

    pub fn is_v6(&self) -> bool {
        matches!(self, Cidr::V6 { .. })
    }

    /// The longest prefix length of this family: 32 or 128.
    pub fn max_len(&self) -> u8 {
        if self.is_v4() { 32 } else { 128 }
    }

    /// Whether this prefix is a single address (`/32` or `/128`).
    pub fn is_host(&self) -> bool {
        self.len() == self.max_len()
    }

    /// Whether `ip` is inside this prefix. An IPv4 prefix contains only IPv4 addresses (not
    /// their IPv4-mapped IPv6 forms), an IPv6 prefix only IPv6 ones.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Cidr::V4 { addr, len }, IpAddr::V4(ip)) => u32::from(ip) & mask4(len) == u32::from(addr),
            (Cidr::V6 { addr, len }, IpAddr::V6(ip)) => u128::from(ip) & mask6(len) == u128::from(addr),
            _ => false,
        }
    }

    /// Whether the two prefixes share an address (one contains the other).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let len = self.len().min(other.len());
        self.is_v4() == other.is_v4() && Cidr::covering(self.addr(), len) == Cidr::covering(other.addr(), len)
    }

    /// The network address's bytes, for an IPv4 prefix.
    pub fn v4_bytes(&self) -> Option<[u8; 4]> {
        match self {
            Cidr::V4 { addr, .. } => Some(addr.octets()),
            Cidr::V6 { .. } => None,
        }
    }

    /// The network address's bytes, for an IPv6 prefix.
    pub fn v6_bytes(&self) -> Option<[u8; 16]> {
        match self {
            Cidr::V6 { addr, .. } => Some(addr.octets()),
            Cidr::V4 { .. } => None,
        }
    }
}

impl fmt::Display for Cidr {
    /// Canonical form, always with the length: `10.0.0.0/8`, `2001:db8::/32`, `192.0.2.1/32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cidr::V4 { addr, len } => write!(f, "{addr}/{len}"),
            Cidr::V6 { addr, len } => write!(f, "{addr}/{len}"),
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDRESS/LENGTH` or a bare `ADDRESS` (a `/32` or `/128`).
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::NotAnAddress { input: s.to_owned() })?;
        let (max, family) = match ip {
            IpAddr::V4(_) => (32u8, "IPv4"),
            IpAddr::V6(_) => (128u8, "IPv6"),
        };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                // `u8::from_str` accepts a leading `+`; a prefix length does not.
                .filter(|&n| n <= max && l.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| CidrError::BadLength {
                    input: s.to_owned(),
                    max,
                    family,
                })?,
        };
        let network = Cidr::covering(ip, len);
        if network.addr() != ip {
            return Err(CidrError::HostBits {
                input: s.to_owned(),
                len,
                network,
            });
        }
        Ok(network)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Cidr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP prefix such as \"198.18.0.0/15\" or \"2001:db8::/32\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cidr, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn c(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_prefixes_and_bare_addresses() {
        assert_eq!(
            c("198.18.0.0/15"),
            Cidr::V4 {
                addr: Ipv4Addr::new(198, 18, 0, 0),
                len: 15
            }
        );
        assert_eq!(
            c("2001:db8::/32"),
            Cidr::V6 {
                addr: "2001:db8::".parse().unwrap(),
                len: 32
            }
        );
        assert_eq!(c("192.0.2.1"), Cidr::host(ip("192.0.2.1")));
        assert_eq!(c("192.0.2.1").len(), 32);
        assert_eq!(c("2001:db8::1").len(), 128);
        assert_eq!(c("0.0.0.0/0").len(), 0);
        assert_eq!(c("::/0").len(), 0);
        assert_eq!(c("10.1.2.3/32").addr(), ip("10.1.2.3"));
        // Non-canonical IPv6 spelling is accepted and printed canonically.
        assert_eq!(c("2001:0db8:0000::/48").to_string(), "2001:db8::/48");
    }

    #[test]
    fn display_is_canonical_with_length() {
        for (input, shown) in [
            ("198.18.0.0/15", "198.18.0.0/15"),
            ("192.0.2.1", "192.0.2.1/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"),
        ] {
            assert_eq!(c(input).to_string(), shown);
            assert_eq!(c(shown), c(input), "Display round-trips");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!("".parse::<Cidr>(), Err(CidrError::Empty));
        assert!(CidrError::Empty.to_string().contains("for example"));

        for bad in [
            "foo",
            "10.0.0",
            "10.0.0.256/8",
            "/8",
            "fe80::1%eth0",
            " 10.0.0.0/8",
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(matches!(e, CidrError::NotAnAddress { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains("is not an IP address"), "{e}");
        }

        let e = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("prefix length must be 0 to 32"), "{e}");
        let e = "2001:db8::/129".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("prefix length must be 0 to 128"), "{e}");
        for bad in [
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/300",
            "10.0.0.0/8/8",
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(matches!(e, CidrError::BadLength { max: 32, .. }), "{bad}: {e:?}");
        }

        let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            e,
            CidrError::HostBits {
                input: "10.0.0.1/8".into(),
                len: 8,
                network: c("10.0.0.0/8")
            }
        );
        assert!(e.to_string().contains("did you mean 10.0.0.0/8?"), "{e}");
        let e = "2001:db8::1/64".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("did you mean 2001:db8::/64?"), "{e}");
    }

    #[test]
    fn contains() {
        let net = c("198.18.0.0/15");
        assert!(net.contains(ip("198.18.0.0")));
        assert!(net.contains(ip("198.19.255.255")));
        assert!(!net.contains(ip("198.20.0.0")));
        assert!(!net.contains(ip("198.17.255.255")));
        // IPv4-mapped IPv6 addresses are not IPv4.
        assert!(!net.contains(ip("::ffff:198.18.0.1")));
        assert!(c("::ffff:0.0.0.0/96").contains(ip("::ffff:198.18.0.1")));
        assert!(!c("::/0").contains(ip("198.18.0.1")));
        assert!(c("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(!c("0.0.0.0/0").contains(ip("::")));

        let v6 = c("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::")));
        assert!(c("192.0.2.1").contains(ip("192.0.2.1")));
        assert!(!c("192.0.2.1").contains(ip("192.0.2.2")));
    }

    #[test]
    fn host_and_covering() {
        assert_eq!(Cidr::host(ip("192.0.2.7")).to_string(), "192.0.2.7/32");
        assert_eq!(Cidr::host(ip("2001:db8::7")).to_string(), "2001:db8::7/128");
        assert!(Cidr::host(ip("192.0.2.7")).is_host());

        assert_eq!(Cidr::covering(ip("192.0.2.77"), 24), c("192.0.2.0/24"));
        assert_eq!(Cidr::covering(ip("192.0.2.77"), 32), c("192.0.2.77/32"));
        assert_eq!(Cidr::covering(ip("192.0.2.77"), 0), c("0.0.0.0/0"));
        assert_eq!(Cidr::covering(ip("192.0.2.77"), 200), c("192.0.2.77/32"));
        assert_eq!(
            Cidr::covering(ip("2001:db8:1:2:3:4:5:6"), 64),
            c("2001:db8:1:2::/64")
        );
        assert_eq!(Cidr::covering(ip("2001:db8::1"), 128), c("2001:db8::1/128"));
        assert_eq!(Cidr::covering(ip("2001:db8::1"), 0), c("::/0"));
        for len in 0..=32 {
            let n = Cidr::covering(ip("203.0.113.200"), len);
            assert_eq!(n.len(), len);
            assert!(n.contains(ip("203.0.113.200")));
            assert_eq!(c(&n.to_string()), n);
        }
        for len in 0..=128 {
            let n = Cidr::covering(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), len);
            assert!(n.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
            assert_eq!(c(&n.to_string()), n);
        }
    }

    #[test]
    fn accessors() {
        let v4 = c("10.1.0.0/16");
        assert!(v4.is_v4() && !v4.is_v6());
        assert_eq!(v4.max_len(), 32);
        assert_eq!(v4.v4_bytes(), Some([10, 1, 0, 0]));
        assert_eq!(v4.v6_bytes(), None);
        assert!(!v4.is_host());

        let v6 = c("2001:db8::/32");
        assert!(v6.is_v6() && !v6.is_v4());
        assert_eq!(v6.max_len(), 128);
        assert_eq!(v6.v4_bytes(), None);
        let mut want = [0u8; 16];
        want[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(v6.v6_bytes(), Some(want));
        assert_eq!(v6.addr(), ip("2001:db8::"));
    }

    #[test]
    fn overlaps() {
        assert!(c("10.0.0.0/8").overlaps(&c("10.1.0.0/16")));
        assert!(c("10.1.0.0/16").overlaps(&c("10.0.0.0/8")));
        assert!(!c("10.1.0.0/16").overlaps(&c("10.2.0.0/16")));
        assert!(!c("0.0.0.0/0").overlaps(&c("::/0")));
        assert!(c("2001:db8::/32").overlaps(&c("2001:db8::1")));
    }

    #[test]
    fn ordering_and_hash() {
        let mut v = [
            c("2001:db8::/32"),
            c("10.0.0.0/16"),
            c("10.0.0.0/8"),
            c("9.0.0.0/8"),
        ];
        v.sort();
        let shown: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16", "2001:db8::/32"]);
        let set: std::collections::HashSet<Cidr> =
            [c("10.0.0.0/8"), c("10.0.0.0/8"), c("10.0.0.0/16")].into();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn serde_as_string() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct T {
            p: Vec<Cidr>,
        }
        let t = T {
            p: vec![c("198.18.0.0/15"), c("2001:db8::/32"), c("192.0.2.1")],
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"p":["198.18.0.0/15","2001:db8::/32","192.0.2.1/32"]}"#);
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);

        let e = serde_json::from_str::<T>(r#"{"p":["10.0.0.1/8"]}"#).unwrap_err();
        assert!(e.to_string().contains("did you mean 10.0.0.0/8?"), "{e}");
        let e = serde_json::from_str::<T>(r#"{"p":[8]}"#).unwrap_err();
        assert!(e.to_string().contains("an IP prefix"), "{e}");
    }
}
