//! Routes through GoBGP's API form and back; what is not netanom's form is left alone. (The
//! BGP lab test, tests/tests/bgp_lab.rs, proves gobgpd and BIRD take these paths.)
use std::net::IpAddr;

use netanom_gobgp::{
    apipb::{self, FlowSpecComponent, FlowSpecIpPrefix, FlowSpecNlri},
    pack, unpack,
};

use super::encode::{decode, encode, family_of};
use crate::{
    bgp::route::{BLACKHOLE, Community, FlowAction, FlowMatch, Route, communities},
    respond::Cidr,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn blackhole(prefix: &str, next_hop: &str) -> Route {
    Route::Blackhole {
        prefix: prefix.parse().unwrap(),
        next_hop: ip(next_hop),
        communities: communities(&[Community(64512 << 16 | 100)], true),
    }
}

fn flowspec(dst: &str, proto: u8, port: u16, flags: u8, rate: f32) -> Route {
    Route::FlowSpec {
        rule: FlowMatch::new(ip(dst), proto, port, flags),
        action: FlowAction::RateBytes(rate),
        communities: Vec::new(),
    }
}

fn type_names(p: &apipb::Path) -> Vec<String> {
    p.pattrs
        .iter()
        .map(|a| a.type_url.rsplit('.').next().unwrap().to_owned())
        .collect()
}

#[test]
fn every_route_netanom_makes_reads_back_as_itself() {
    let routes = [
        blackhole("198.18.2.2/32", "198.18.255.1"),
        blackhole("198.18.2.0/24", "198.18.255.1"),
        blackhole("2001:db8:2::2/128", "2001:db8:ff::1"),
        flowspec("198.18.3.2", 6, 80, 0x02, 1.5e6),
        flowspec("198.18.3.2", 6, 443, 0x12, 6.0e4),
        flowspec("198.18.3.2", 6, 22, 0x00, 1.0),
        flowspec("198.18.3.2", 17, 53, 0, 0.0),
        flowspec("198.18.3.2", 1, 0, 0, 1500.0),
        flowspec("2001:db8:3::2", 6, 80, 0x02, 1.5e6),
        Route::FlowSpec {
            rule: FlowMatch::new(ip("198.18.3.2"), 17, 123, 0),
            action: FlowAction::RateBytes(0.0),
            communities: vec![Community(7)],
        },
    ];
    for r in routes {
        let p = encode(&r);
        assert_eq!(decode(&p).as_ref(), Some(&r), "{r:?} as {p:?}");
    }
}

#[test]
fn blackholes_carry_origin_next_hop_and_communities_in_their_family() {
    let p = encode(&blackhole("198.18.2.2/32", "198.18.255.1"));
    assert_eq!(p.family, Some(family_of(true, false)));
    assert_eq!(
        type_names(&p),
        ["CommunitiesAttribute", "NextHopAttribute", "OriginAttribute"]
    );
    let c: apipb::CommunitiesAttribute = unpack(&p.pattrs[0], "CommunitiesAttribute").unwrap();
    assert_eq!(c.communities, [64512 << 16 | 100, BLACKHOLE.0]);
    let nlri: apipb::IpAddressPrefix = unpack(p.nlri.as_ref().unwrap(), "IPAddressPrefix").unwrap();
    assert_eq!((nlri.prefix.as_str(), nlri.prefix_len), ("198.18.2.2", 32));
    // IPv6: the next hop travels in MP_REACH_NLRI.
    let p = encode(&blackhole("2001:db8:2::2/128", "2001:db8:ff::1"));
    assert_eq!(p.family, Some(family_of(false, false)));
    let reach: apipb::MpReachNlriAttribute = unpack(&p.pattrs[1], "MpReachNLRIAttribute").unwrap();
    assert_eq!(reach.next_hops, ["2001:db8:ff::1"]);
}

#[test]
fn flowspec_rules_match_the_kernel_pattern_exactly() {
    let p = encode(&flowspec("198.18.3.2", 6, 80, 0x02, 1.5e6));
    assert_eq!(p.family, Some(family_of(true, true)));
    let n: FlowSpecNlri = unpack(p.nlri.as_ref().unwrap(), "FlowSpecNLRI").unwrap();
    let dst: FlowSpecIpPrefix = unpack(&n.rules[0], "FlowSpecIPPrefix").unwrap();
    assert_eq!(
        (dst.r#type, dst.prefix.as_str(), dst.prefix_len),
        (1, "198.18.3.2", 32)
    );
    let items = |i: usize| {
        let c: FlowSpecComponent = unpack(&n.rules[i], "FlowSpecComponent").unwrap();
        (
            c.r#type,
            c.items.iter().map(|i| (i.op, i.value)).collect::<Vec<_>>(),
        )
    };
    assert_eq!(items(1), (3, vec![(0x01, 6)]));
    assert_eq!(items(2), (5, vec![(0x01, 80)]));
    // SYN set, and FIN, RST and ACK clear (AND NOT), as the kernel's key.
    assert_eq!(items(3), (9, vec![(0x01, 0x02), (0x42, 0x15)]));
    let ext: apipb::ExtendedCommunitiesAttribute =
        unpack(&p.pattrs[0], "ExtendedCommunitiesAttribute").unwrap();
    let rate: apipb::TrafficRateExtended = unpack(&ext.communities[0], "TrafficRateExtended").unwrap();
    assert_eq!((rate.asn, rate.rate), (0, 1.5e6));
    let reach: apipb::MpReachNlriAttribute = unpack(&p.pattrs[1], "MpReachNLRIAttribute").unwrap();
    assert_eq!(reach.next_hops, ["0.0.0.0"]);
}

/// Sets the end-of-list and length bits on every operator, as gobgpd's listing returns them.
fn as_listed(mut p: apipb::Path) -> apipb::Path {
    let nlri = p.nlri.as_mut().unwrap();
    let mut n: FlowSpecNlri = unpack(nlri, "FlowSpecNLRI").unwrap();
    for rule in n.rules.iter_mut().skip(1) {
        let mut c: FlowSpecComponent = unpack(rule, "FlowSpecComponent").unwrap();
        let last = c.items.len() - 1;
        for (i, item) in c.items.iter_mut().enumerate() {
            item.op |= 0x10 | if i == last { 0x80 } else { 0 };
        }
        *rule = pack("FlowSpecComponent", &c);
    }
    *nlri = pack("FlowSpecNLRI", &n);
    p
}

#[test]
fn operators_read_back_whatever_their_layout_bits() {
    let r = flowspec("198.18.3.2", 6, 80, 0x02, 1.5e6);
    assert_eq!(decode(&as_listed(encode(&r))), Some(r));
}

#[test]
fn routes_of_other_forms_are_not_netanoms() {
    // A unicast route without BLACKHOLE: someone else's.
    let mut p = encode(&blackhole("198.18.2.2/32", "198.18.255.1"));
    p.pattrs[0] = pack(
        "CommunitiesAttribute",
        &apipb::CommunitiesAttribute {
            communities: vec![64512 << 16 | 100],
        },
    );
    assert_eq!(decode(&p), None);
    // An attribute netanom never sets (MED).
    let mut p = encode(&blackhole("198.18.2.2/32", "198.18.255.1"));
    p.pattrs.push(pack(
        "MultiExitDiscAttribute",
        &apipb::MultiExitDiscAttribute { med: 5 },
    ));
    assert_eq!(decode(&p), None);
    // A FlowSpec rule with a source prefix, or a port on ICMP, or other TCP flag logic.
    let with = |edit: &dyn Fn(&mut FlowSpecNlri)| {
        let mut p = encode(&flowspec("198.18.3.2", 6, 80, 0x02, 1.5e6));
        let mut n: FlowSpecNlri = unpack(p.nlri.as_ref().unwrap(), "FlowSpecNLRI").unwrap();
        edit(&mut n);
        p.nlri = Some(pack("FlowSpecNLRI", &n));
        decode(&p)
    };
    assert_eq!(
        with(&|n| n.rules.insert(
            1,
            pack(
                "FlowSpecIPPrefix",
                &FlowSpecIpPrefix {
                    r#type: 2,
                    prefix_len: 24,
                    prefix: "198.19.0.0".into(),
                    offset: 0
                }
            )
        )),
        None
    );
    assert_eq!(
        with(&|n| {
            let c = FlowSpecComponent {
                r#type: 3,
                items: vec![apipb::FlowSpecComponentItem { op: 1, value: 1 }],
            };
            n.rules[1] = pack("FlowSpecComponent", &c);
        }),
        None
    );
    assert_eq!(
        with(&|n| {
            let c = FlowSpecComponent {
                r#type: 9,
                items: vec![apipb::FlowSpecComponentItem { op: 1, value: 0x02 }],
            };
            n.rules[3] = pack("FlowSpecComponent", &c);
        }),
        None
    );
    // A FlowSpec rule on a prefix rather than a host.
    let p = encode(&Route::FlowSpec {
        rule: FlowMatch {
            dst: "198.18.3.0/24".parse::<Cidr>().unwrap(),
            ..FlowMatch::new(ip("198.18.3.2"), 17, 53, 0)
        },
        action: FlowAction::RateBytes(0.0),
        communities: Vec::new(),
    });
    assert_eq!(decode(&p), None);
}

/// A speaker on a real socket that is not one: nobody listening, a server that never answers,
/// one that is not gRPC. Each is an error of its kind, within the call timeout.
#[test]
fn failing_speakers_are_told_apart() {
    use std::time::{Duration, Instant};

    use tokio::{io::AsyncWriteExt as _, net::TcpListener};

    use super::GoBgp;
    use crate::bgp::speaker::{ErrorKind, Speaker};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kind = |addr| async move {
            let t0 = Instant::now();
            let e = GoBgp::new(addr).held().await.unwrap_err();
            assert!(t0.elapsed() < Duration::from_secs(5), "{e}");
            e.kind()
        };
        // Nobody listening.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        assert_eq!(kind(addr).await, ErrorKind::Unreachable);
        // Accepts, and never says a word.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(s);
        });
        assert_eq!(kind(addr).await, ErrorKind::Timeout);
        hold.abort();
        // Answers in HTTP/1.1, not gRPC: the connection closes on the call.
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = http.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            while let Ok((mut s, _)) = http.accept().await {
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        assert_eq!(kind(addr).await, ErrorKind::Refused);
        serve.abort();
    });
}
