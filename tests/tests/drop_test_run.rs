//! The drop path checked with BPF_PROG_TEST_RUN: a packet of a blocked source (host block,
//! prefix block; IPv4, IPv6) or over an exceeded rate limit is dropped before the program
//! touches any flow or aggregate map.
use netanom::{
    datapath::{Datapath, LoadOptions},
    pipeline::clock::mono_now_ns,
    respond::{Cidr, Enforcer as _, KernelTables, enforcer::pattern_key, kernel},
    sources::live as drain,
};
use netanom_common::{
    Event,
    flow::{FlowRecord, FlowTimeouts},
    mitigate::{Origin, RateLimit},
};
use netanom_lab::{Endpoint, StateDirs, frames, require_root, test_endpoints};

const XDP_DROP: u32 = 1;

fn event(dp: &Datapath, e: Event) -> u64 {
    dp.event_counters()
        .unwrap()
        .into_iter()
        .find(|(q, _)| *q == e)
        .unwrap()
        .1
}

/// Every flow in the table, in key order, without removing any.
fn flows(dp: &Datapath) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    drain::sweep_flows_into(dp, mono_now_ns(), &FlowTimeouts::DEFAULT, true, &mut out).unwrap();
    out.sort_by_key(|r| r.key);
    out
}

/// How many per-source and per-destination entries the aggregate maps hold (draining them).
fn aggregates(dp: &Datapath) -> (usize, usize) {
    let (mut src, mut dst) = (Vec::new(), Vec::new());
    drain::drain_aggregates(dp, &mut src, &mut dst).unwrap();
    (src.len(), dst.len())
}

/// `b` moved to `v4` and 2001:db8:bad:`v6_net`::`v6_last`.
fn host(b: &Endpoint, v4: [u8; 4], v6_net: u16, v6_last: u16) -> Endpoint {
    let mut e = *b;
    e.ipv4 = v4.into();
    let mut seg = e.ipv6.segments();
    seg[2] = 0xbad;
    seg[3] = v6_net;
    seg[7] = v6_last;
    e.ipv6 = seg.into();
    e
}

#[test]
fn dropped_packets_touch_no_flow_or_aggregate_entry() {
    if !require_root() {
        eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    let dirs = StateDirs::new("drop-test-run");
    kernel::ensure_dir(&dirs.pin_dir).unwrap();
    let mut dp = Datapath::load_pinned(&LoadOptions::default(), Some(&dirs.pin_dir)).unwrap();
    let (server, client) = test_endpoints();
    // A host block and, through the trie, a /24 (IPv4) and a /64 (IPv6) block.
    let blocked_host = host(&client, [198, 19, 7, 7], 0, 7);
    let in_prefix = host(&client, [198, 19, 8, 9], 1, 9);
    let to = |src: &Endpoint, v6: bool, dport: u16| frames::udp(src, &server, v6, 40_000, dport, &[0; 32]);
    // Both blocked sources already have flows (and aggregates) from before their block.
    for v6 in [false, true] {
        for src in [&blocked_host, &in_prefix] {
            assert_ne!(dp.test_run(&to(src, v6, 53), 3).unwrap().0, XDP_DROP);
        }
    }
    let mut tables = KernelTables::open(&dirs.pin_dir).unwrap();
    put_blocks(&mut tables, &blocked_host);
    let setup_drops = put_rate_limits(&mut dp, &mut tables, &client, &server);
    let before = flows(&dp);
    assert!(before.len() >= 6, "{} flows", before.len());
    aggregates(&dp); // empties the aggregate maps: any later touch would show
    let created = event(&dp, Event::FlowCreated);
    let n = 500;
    for v6 in [false, true] {
        for (src, port) in [
            (&blocked_host, 53),
            (&in_prefix, 53),
            (&blocked_host, 9999),
            (&client, 5353),
        ] {
            let (action, _) = dp.test_run(&to(src, v6, port), n).unwrap();
            assert_eq!(action, XDP_DROP, "{src:?} v6={v6} port {port}");
        }
    }
    assert_eq!(flows(&dp), before, "no flow entry changed, none was created");
    assert_eq!(aggregates(&dp), (0, 0), "no aggregate entry was touched");
    assert_eq!(event(&dp, Event::FlowCreated), created);
    assert_eq!(event(&dp, Event::DroppedBlocked), u64::from(6 * n));
    assert_eq!(
        event(&dp, Event::DroppedRateLimited),
        u64::from(2 * n) + setup_drops
    );
    // The drops are counted on their entries: the host block in its hash, the prefixes in
    // the trie.
    let blocks = tables.blocks().unwrap();
    let dropped = |p: Cidr| blocks.iter().find(|b| b.prefix == p).map(|b| b.entry.packets);
    assert_eq!(
        dropped(Cidr::V4 {
            addr: blocked_host.ipv4,
            len: 32
        }),
        Some(u64::from(2 * n))
    );
    assert_eq!(
        dropped(Cidr::V4 {
            addr: [198, 19, 8, 0].into(),
            len: 24
        }),
        Some(u64::from(n))
    );
    // Unblocked (hash entry removed, filter rebuilt), the host passes again; the /24 drops.
    let host = Cidr::V4 {
        addr: blocked_host.ipv4,
        len: 32,
    };
    assert!(tables.del_block(&host).unwrap());
    assert_ne!(dp.test_run(&to(&blocked_host, false, 53), 1).unwrap().0, XDP_DROP);
    assert_eq!(dp.test_run(&to(&in_prefix, false, 53), 1).unwrap().0, XDP_DROP);
}

/// Blocks `blocked_host` (/32 and /128, in the host hashes), 198.19.8.0/24 and
/// 2001:db8:bad:1::/64 (in the tries) for an hour.
fn put_blocks(tables: &mut KernelTables, blocked_host: &Endpoint) {
    let now = mono_now_ns();
    let entry = netanom::respond::enforcer::NewBlock {
        now_ns: now,
        ttl: std::time::Duration::from_secs(3600),
        strikes: 1,
        origin: Origin::Manual,
        reason: "drop test",
    }
    .entry(None);
    for prefix in [
        Cidr::V4 {
            addr: blocked_host.ipv4,
            len: 32,
        },
        Cidr::V6 {
            addr: blocked_host.ipv6,
            len: 128,
        },
        Cidr::V4 {
            addr: [198, 19, 8, 0].into(),
            len: 24,
        },
        Cidr::V6 {
            addr: "2001:db8:bad:1::".parse().unwrap(),
            len: 64,
        },
    ] {
        tables.put_block(&prefix, &entry).unwrap();
    }
}

/// A rate limit (one packet per 100 s, burst 1) on the server's UDP port 5353, IPv4 and
/// IPv6: the packets it admits (two: the first and the burst's; the program judges by the
/// coarse clock, so the second may come a tick later) are accounted as usual. Returns the
/// drops it took to see them all through.
fn put_rate_limits(
    dp: &mut Datapath,
    tables: &mut KernelTables,
    client: &Endpoint,
    server: &Endpoint,
) -> u64 {
    let now = mono_now_ns();
    let limit = RateLimit::new(0.01, 1, now, now + 3_600_000_000_000);
    let mut setup_drops = 0;
    for v6 in [false, true] {
        let dst = if v6 {
            server.ipv6.into()
        } else {
            server.ipv4.into()
        };
        tables
            .put_rate_limit(&pattern_key(dst, 5353, 17, 0), &limit)
            .unwrap();
        let f = frames::udp(client, server, v6, 40_000, 5353, &[0; 32]);
        let (mut passed, mut drops) = (0, 0);
        while drops < 3 {
            if dp.test_run(&f, 1).unwrap().0 == XDP_DROP {
                drops += 1;
                std::thread::sleep(std::time::Duration::from_millis(15));
            } else {
                passed += 1;
            }
        }
        assert_eq!(passed, 2, "v6={v6}");
        setup_drops += drops;
    }
    setup_drops
}
