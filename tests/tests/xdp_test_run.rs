//! The XDP program run directly with BPF_PROG_TEST_RUN (aya `TestRun`): no interface needed.
//! Loading it at all proves it passes the verifier on this kernel.
use netanom::datapath::Datapath;
use netanom_common::{Event, Proto};
use netanom_lab::{
    frames,
    frames::{TCP_ACK, TCP_SYN},
    require_root, test_endpoints as endpoints,
};

const XDP_PASS: u32 = 2;

fn counters(dp: &Datapath) -> Vec<(Proto, u64, u64)> {
    dp.proto_counters()
        .unwrap()
        .into_iter()
        .map(|(p, c)| (p, c.packets, c.bytes))
        .collect()
}

fn get(dp: &Datapath, p: Proto) -> (u64, u64) {
    counters(dp)
        .into_iter()
        .find(|(q, ..)| *q == p)
        .map(|(_, n, b)| (n, b))
        .unwrap()
}

fn event(dp: &Datapath, e: Event) -> u64 {
    dp.event_counters()
        .unwrap()
        .into_iter()
        .find(|(q, _)| *q == e)
        .unwrap()
        .1
}

#[test]
fn every_protocol_class_is_counted_exactly() {
    if !require_root() {
        eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    let (a, b) = endpoints();
    let mut dp = Datapath::load().expect("XDP program loads (verifier)");
    let cases: Vec<(Proto, Vec<u8>, u32)> = vec![
        (Proto::Ipv4Udp, frames::udp(&b, &a, false, 4000, 53, &[7; 33]), 5),
        (
            Proto::Ipv4Tcp,
            frames::tcp(&b, &a, false, 4001, 80, TCP_SYN, 1, 0, &[]),
            3,
        ),
        (
            Proto::Ipv4Icmp,
            frames::icmp_echo(&b, &a, false, 1, 1, &[1; 56]),
            2,
        ),
        (Proto::Ipv6Udp, frames::udp(&b, &a, true, 4000, 53, &[7; 100]), 4),
        (
            Proto::Ipv6Tcp,
            frames::tcp(&b, &a, true, 4001, 443, TCP_ACK, 9, 9, &[1; 10]),
            6,
        ),
        (Proto::Ipv6Icmp, frames::icmp_echo(&b, &a, true, 1, 1, &[1; 8]), 7),
    ];
    for (_, frame, n) in &cases {
        for _ in 0..*n {
            let (action, _) = dp.test_run(frame, 1).unwrap();
            assert_eq!(action, XDP_PASS);
        }
    }
    for (proto, frame, n) in &cases {
        let want = (u64::from(*n), u64::from(*n) * frame.len() as u64);
        assert_eq!(get(&dp, *proto), want, "{proto:?}");
    }
    assert_eq!(get(&dp, Proto::Arp), (0, 0));
    assert_eq!(event(&dp, Event::Truncated), 0);
}

#[test]
fn vlan_tagged_frames_are_classified_by_their_payload() {
    if !require_root() {
        eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    let (a, b) = endpoints();
    let mut dp = Datapath::load().unwrap();
    let inner = frames::udp(&b, &a, false, 1, 2, &[0; 20]);
    let q = frames::vlan_tag(&inner, 0x8100, 10);
    let qinq = frames::vlan_tag(&q, 0x88a8, 20);
    dp.test_run(&q, 1).unwrap();
    dp.test_run(&qinq, 1).unwrap();
    assert_eq!(get(&dp, Proto::Ipv4Udp), (2, (q.len() + qinq.len()) as u64));
    assert_eq!(event(&dp, Event::VlanTagged), 2);
}

#[test]
fn truncated_and_random_frames_always_pass() {
    if !require_root() {
        eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    let (a, b) = endpoints();
    let mut dp = Datapath::load().unwrap();
    // Every prefix of a TCP/IPv6 frame (the kernel needs at least an Ethernet header).
    let full = frames::tcp(&b, &a, true, 5, 6, TCP_SYN, 0, 0, &[]);
    for n in 14..full.len() {
        let (action, _) = dp.test_run(&full[..n], 1).unwrap();
        assert_eq!(action, XDP_PASS, "prefix of {n} bytes");
    }
    // Prefixes that cut the IPv6 header, or the TCP header up to the window field that flow
    // accounting reads (bytes 54..70), are counted as truncated.
    let truncated = (14..54 + 16).count() as u64;
    assert_eq!(event(&dp, Event::Truncated), truncated);
    // Pseudo-random frames, some claiming IPv4/IPv6/VLAN, of random lengths.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut sent = 0u64;
    for i in 0..3000u64 {
        let len = 14 + (next() % 200) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let et: [u8; 2] = match i % 4 {
            0 => [0x08, 0x00],
            1 => [0x86, 0xdd],
            2 => [0x81, 0x00],
            _ => [f[12], f[13]],
        };
        f[12..14].copy_from_slice(&et);
        let (action, _) = dp.test_run(&f, 1).unwrap();
        assert_eq!(action, XDP_PASS);
        sent += 1;
    }
    let total: u64 = counters(&dp).iter().map(|(_, n, _)| n).sum();
    assert_eq!(
        total,
        sent + (full.len() - 14) as u64,
        "every frame is counted once"
    );
}
