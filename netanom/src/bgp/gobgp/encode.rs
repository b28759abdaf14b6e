//! Routes as GoBGP API paths, and back.
//!
//! - Blackhole: NLRI `IPAddressPrefix`; ORIGIN IGP, the next hop (`NextHopAttribute` for IPv4,
//!   `MpReachNLRIAttribute` for IPv6), COMMUNITIES.
//! - FlowSpec (RFC 8955): NLRI `FlowSpecNLRI` with, in type order, the destination prefix (1),
//!   the IP protocol (3, `=`), the destination port (5, `=`) and the TCP flags (9: the
//!   pattern's flags set, `&!` the other [`PATTERN_FLAGS`] clear); ORIGIN IGP, MP_REACH with
//!   the unspecified next hop, the traffic-rate-bytes extended community (0 discards) and
//!   COMMUNITIES when configured.
//!
//! [`decode`] reads a path back into a [`Route`] only when it has exactly the form [`encode`]
//! gives: anything else the speaker originates is someone else's and is left alone.
use std::net::IpAddr;

use netanom_gobgp::{
    Any,
    apipb::{
        self, CommunitiesAttribute, ExtendedCommunitiesAttribute, Family, FlowSpecComponent,
        FlowSpecComponentItem, FlowSpecIpPrefix, FlowSpecNlri, IpAddressPrefix, MpReachNlriAttribute,
        NextHopAttribute, OriginAttribute, TrafficRateExtended, family,
    },
    pack, unpack,
};

use crate::bgp::route::{BLACKHOLE, Community, FlowAction, FlowMatch, PATTERN_FLAGS, Route};
use crate::respond::Cidr;

/// FlowSpec component types (RFC 8955 section 4.2.2).
const DST_PREFIX: u32 = 1;
const IP_PROTO: u32 = 3;
const DST_PORT: u32 = 5;
const TCP_FLAGS: u32 = 9;
/// Numeric operator `=`; bitmask operators match (all set) and not (none set); AND with the
/// previous item. The end-of-list and length bits are GoBGP's to set.
const OP_EQ: u32 = 0x01;
const OP_MATCH: u32 = 0x01;
const OP_NOT: u32 = 0x02;
const OP_AND: u32 = 0x40;
/// What [`decode`] ignores of an operator: end of list and value length.
const OP_LAYOUT: u32 = 0x80 | 0x30;
/// ORIGIN IGP.
const ORIGIN_IGP: u32 = 0;

/// The four families netanom announces in: (IPv4?, FlowSpec?).
pub fn family_of(v4: bool, flowspec: bool) -> Family {
    let afi = if v4 { family::Afi::Ip } else { family::Afi::Ip6 };
    let safi = if flowspec {
        family::Safi::FlowSpecUnicast
    } else {
        family::Safi::Unicast
    };
    Family {
        afi: afi as i32,
        safi: safi as i32,
    }
}

/// Every family netanom may have announced in.
pub fn families() -> [Family; 4] {
    [
        family_of(true, false),
        family_of(false, false),
        family_of(true, true),
        family_of(false, true),
    ]
}

fn prefix_parts(c: &Cidr) -> (u32, String) {
    (u32::from(c.len()), c.addr().to_string())
}

fn origin() -> Any {
    pack("OriginAttribute", &OriginAttribute { origin: ORIGIN_IGP })
}

fn communities_attr(c: &[Community]) -> Any {
    pack(
        "CommunitiesAttribute",
        &CommunitiesAttribute {
            communities: c.iter().map(|c| c.0).collect(),
        },
    )
}

/// `r` as a path to add.
pub fn encode(r: &Route) -> apipb::Path {
    let (family, nlri, mut pattrs) = match r {
        Route::Blackhole {
            prefix,
            next_hop,
            communities,
        } => blackhole_parts(prefix, *next_hop, communities),
        Route::FlowSpec {
            rule,
            action,
            communities,
        } => flowspec_parts(rule, *action, communities),
    };
    pattrs.sort_by(|a, b| a.type_url.cmp(&b.type_url));
    apipb::Path {
        nlri: Some(nlri),
        pattrs,
        family: Some(family),
        ..Default::default()
    }
}

fn blackhole_parts(prefix: &Cidr, next_hop: IpAddr, c: &[Community]) -> (Family, Any, Vec<Any>) {
    let (prefix_len, p) = prefix_parts(prefix);
    let nlri = pack(
        "IPAddressPrefix",
        &IpAddressPrefix {
            prefix_len,
            prefix: p,
        },
    );
    let family = family_of(prefix.is_v4(), false);
    let next_hop = if prefix.is_v4() {
        pack(
            "NextHopAttribute",
            &NextHopAttribute {
                next_hop: next_hop.to_string(),
            },
        )
    } else {
        mp_reach(family, &next_hop.to_string(), &nlri)
    };
    (family, nlri, vec![origin(), next_hop, communities_attr(c)])
}

fn flowspec_parts(rule: &FlowMatch, action: FlowAction, c: &[Community]) -> (Family, Any, Vec<Any>) {
    let nlri = pack("FlowSpecNLRI", &flow_nlri(rule));
    let FlowAction::RateBytes(rate) = action;
    let rate = pack("TrafficRateExtended", &TrafficRateExtended { asn: 0, rate });
    let ext = pack(
        "ExtendedCommunitiesAttribute",
        &ExtendedCommunitiesAttribute {
            communities: vec![rate],
        },
    );
    let v4 = rule.dst.is_v4();
    let family = family_of(v4, true);
    let unspecified = if v4 { "0.0.0.0" } else { "::" };
    let mut pattrs = vec![origin(), ext, mp_reach(family, unspecified, &nlri)];
    if !c.is_empty() {
        pattrs.push(communities_attr(c));
    }
    (family, nlri, pattrs)
}

fn mp_reach(family: Family, next_hop: &str, nlri: &Any) -> Any {
    pack(
        "MpReachNLRIAttribute",
        &MpReachNlriAttribute {
            family: Some(family),
            next_hops: vec![next_hop.to_owned()],
            nlris: vec![nlri.clone()],
        },
    )
}

fn component(typ: u32, items: Vec<(u32, u64)>) -> Any {
    let items = items
        .into_iter()
        .map(|(op, value)| FlowSpecComponentItem { op, value })
        .collect();
    pack("FlowSpecComponent", &FlowSpecComponent { r#type: typ, items })
}

fn flow_nlri(m: &FlowMatch) -> FlowSpecNlri {
    let (prefix_len, prefix) = prefix_parts(&m.dst);
    let mut rules = vec![
        pack(
            "FlowSpecIPPrefix",
            &FlowSpecIpPrefix {
                r#type: DST_PREFIX,
                prefix_len,
                prefix,
                offset: 0,
            },
        ),
        component(IP_PROTO, vec![(OP_EQ, u64::from(m.proto))]),
    ];
    if let Some(port) = m.port {
        rules.push(component(DST_PORT, vec![(OP_EQ, u64::from(port))]));
    }
    if let Some(flags) = m.tcp_flags {
        rules.push(component(TCP_FLAGS, flag_items(flags)));
    }
    FlowSpecNlri { rules }
}

/// The pattern's flags all set, and the other pattern flags all clear.
fn flag_items(flags: u8) -> Vec<(u32, u64)> {
    let clear = PATTERN_FLAGS & !flags;
    match (flags, clear) {
        (0, c) => vec![(OP_NOT, u64::from(c))],
        (f, 0) => vec![(OP_MATCH, u64::from(f))],
        (f, c) => vec![(OP_MATCH, u64::from(f)), (OP_AND | OP_NOT, u64::from(c))],
    }
}

/// The route `p` is, if it has exactly the form [`encode`] gives.
pub fn decode(p: &apipb::Path) -> Option<Route> {
    let fam = p.family.as_ref()?;
    let v4 = fam.afi == family::Afi::Ip as i32;
    if !v4 && fam.afi != family::Afi::Ip6 as i32 {
        return None;
    }
    let attrs = Attrs::of(&p.pattrs)?;
    let nlri = p.nlri.as_ref()?;
    if fam.safi == family::Safi::Unicast as i32 {
        let n: IpAddressPrefix = unpack(nlri, "IPAddressPrefix")?;
        let prefix = cidr(&n.prefix, n.prefix_len, v4)?;
        if !attrs.communities.contains(&BLACKHOLE) || attrs.rate.is_some() {
            return None;
        }
        let next_hop: IpAddr = attrs.next_hop?.parse().ok()?;
        return Some(Route::Blackhole {
            prefix,
            next_hop,
            communities: attrs.communities,
        });
    }
    if fam.safi != family::Safi::FlowSpecUnicast as i32 {
        return None;
    }
    let rule = decode_flow(&unpack(nlri, "FlowSpecNLRI")?, v4)?;
    Some(Route::FlowSpec {
        rule,
        action: FlowAction::RateBytes(attrs.rate?),
        communities: attrs.communities,
    })
}

fn cidr(addr: &str, len: u32, v4: bool) -> Option<Cidr> {
    let c: Cidr = format!("{addr}/{len}").parse().ok()?;
    (c.is_v4() == v4).then_some(c)
}

/// The path attributes [`decode`] reads; `None` when there is one it does not know.
#[derive(Default)]
struct Attrs {
    next_hop: Option<String>,
    communities: Vec<Community>,
    rate: Option<f32>,
}

impl Attrs {
    fn of(pattrs: &[Any]) -> Option<Attrs> {
        let mut a = Attrs::default();
        for any in pattrs {
            let name = any.type_url.rsplit('.').next().unwrap_or_default();
            match name {
                "OriginAttribute" | "AsPathAttribute" | "LocalPrefAttribute" => {}
                "NextHopAttribute" => a.next_hop = Some(unpack::<NextHopAttribute>(any, name)?.next_hop),
                "MpReachNLRIAttribute" => {
                    let m: MpReachNlriAttribute = unpack(any, name)?;
                    a.next_hop = m.next_hops.into_iter().next();
                }
                "CommunitiesAttribute" => {
                    let c: CommunitiesAttribute = unpack(any, name)?;
                    a.communities = c.communities.into_iter().map(Community).collect();
                    a.communities.sort_unstable();
                    a.communities.dedup();
                }
                "ExtendedCommunitiesAttribute" => {
                    let e: ExtendedCommunitiesAttribute = unpack(any, name)?;
                    let [rate] = e.communities.as_slice() else {
                        return None;
                    };
                    a.rate = Some(unpack::<TrafficRateExtended>(rate, "TrafficRateExtended")?.rate);
                }
                _ => return None,
            }
        }
        Some(a)
    }
}

fn decode_flow(n: &FlowSpecNlri, v4: bool) -> Option<FlowMatch> {
    let mut rules = n.rules.iter();
    let dst: FlowSpecIpPrefix = unpack(rules.next()?, "FlowSpecIPPrefix")?;
    if dst.r#type != DST_PREFIX || dst.offset != 0 {
        return None;
    }
    let dst = cidr(&dst.prefix, dst.prefix_len, v4)?;
    let (mut proto, mut port, mut flags) = (None, None, None);
    for any in rules {
        let c: FlowSpecComponent = unpack(any, "FlowSpecComponent")?;
        let items: Vec<(u32, u64)> = c.items.iter().map(|i| (i.op & !OP_LAYOUT, i.value)).collect();
        match (c.r#type, items.as_slice()) {
            (IP_PROTO, [(OP_EQ, v)]) if proto.is_none() => proto = u8::try_from(*v).ok(),
            (DST_PORT, [(OP_EQ, v)]) if proto.is_some() && port.is_none() => {
                port = Some(u16::try_from(*v).ok()?)
            }
            (TCP_FLAGS, _) if flags.is_none() => {
                let set = items
                    .first()
                    .filter(|(op, _)| *op == OP_MATCH)
                    .map_or(0, |(_, v)| *v);
                let f = u8::try_from(set).ok().filter(|f| f & !PATTERN_FLAGS == 0)?;
                (flag_items(f) == items).then_some(())?;
                flags = Some(f);
            }
            _ => return None,
        }
    }
    let m = FlowMatch::new(dst.addr(), proto?, port.unwrap_or(0), flags.unwrap_or(0));
    (dst.is_host() && m.port == port && m.tcp_flags == flags).then_some(m)
}
