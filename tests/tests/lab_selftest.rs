//! Privileged self-test of the namespace lab: namespaces and veth pairs come and go cleanly,
//! the veth is silent, every generated frame arrives exactly once and byte for byte, kernel
//! TCP works over IPv4 and IPv6, and captures replay into the lab.
//!
//! Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); skips with a message otherwise.

use std::collections::HashSet;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use netanom_lab::frames::{self, TCP_ACK, TCP_PSH, TCP_SYN, TPID_8021AD, TPID_8021Q};
use netanom_lab::replay::{self, ReplayOptions};
use netanom_lab::traffic::{self, Pace, RawReceiver, RawSender};
use netanom_lab::{Netns, PREFIX, Pair};

/// Idle gap after which a receiver assumes the burst is over.
const IDLE: Duration = Duration::from_millis(300);
/// Upper bound for any receive loop in these tests.
const MAX_WAIT: Duration = Duration::from_secs(10);

fn lab_ready(test: &str) -> bool {
    if !netanom_lab::require_root() {
        eprintln!("skipping {test}: needs root (network namespaces, AF_PACKET)");
        return false;
    }
    if let Err(e) = netanom_lab::sweep_leftovers() {
        panic!("sweep_leftovers failed: {e:#}");
    }
    true
}

fn netns_list() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pair, settled, with a sender in `b` and a receiver in `a` (nothing queued yet).
fn pair_with_sockets(tag: &str) -> (Pair, RawSender, RawReceiver) {
    let pair = Pair::new(tag).expect("create pair");
    pair.settle().expect("settle");
    let tx = RawSender::open(&pair.b, &pair.b_side.iface).expect("sender in b");
    let rx = RawReceiver::open(&pair.a, &pair.a_side.iface).expect("receiver in a");
    assert_eq!(rx.drain().expect("drain"), 0, "nothing may arrive unsolicited");
    (pair, tx, rx)
}

#[test]
fn sweep_removes_namespaces_of_dead_processes() {
    if !lab_ready("sweep_removes_namespaces_of_dead_processes") {
        return;
    }
    // A pid that certainly is not running: a child that has exited and been reaped.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let dead = child.id();
    child.wait().expect("wait");
    assert!(!std::path::Path::new(&format!("/proc/{dead}")).exists());

    /// Deletes the namespace even if the test fails before the sweep does.
    struct Guard(String);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    let dead_name = format!("{PREFIX}-{dead}-0-sweeptest");
    let _dead_guard = Guard(dead_name.clone());
    let status = Command::new("ip")
        .args(["netns", "add", &dead_name])
        .status()
        .expect("ip netns add");
    assert!(status.success());
    // A namespace of this (live) process must survive the sweep.
    let live = Netns::new("sweep-live").expect("live netns");
    // (No check that it is listed now: a concurrently running test process may sweep it
    // first, which is fine.)
    let removed = netanom_lab::sweep_leftovers().expect("sweep");
    eprintln!("sweep removed {removed} namespace(s)");
    let list = netns_list();
    assert!(
        !list.contains(&dead_name),
        "leftover of pid {dead} not removed: {list}"
    );
    assert!(list.contains(live.name()), "namespace of a live process removed");
}

#[test]
fn pair_lifecycle_and_namespace_plumbing() {
    if !lab_ready("pair_lifecycle_and_namespace_plumbing") {
        return;
    }
    let pair = Pair::new("lifecycle").expect("create pair");
    let names = [pair.a.name().to_owned(), pair.b.name().to_owned()];
    for name in &names {
        assert!(
            name.starts_with(&format!("{PREFIX}-{}-", std::process::id())),
            "{name}"
        );
    }
    for iface in [&pair.a_side.iface, &pair.b_side.iface] {
        assert!(iface.starts_with(PREFIX) && iface.len() <= 15, "{iface}");
    }
    let list = netns_list();
    assert!(names.iter().all(|n| list.contains(n.as_str())), "{list}");

    // The veth lives only inside the lab, never in the host namespace.
    let host_links = Command::new("ip").args(["-o", "link"]).output().expect("ip link");
    assert!(!String::from_utf8_lossy(&host_links.stdout).contains(&pair.a_side.iface));

    // Configuration: addresses, NOARP, permanent neighbours, sysctls inside the namespace.
    let addrs = pair
        .a
        .ip(&["-o", "addr", "show", "dev", &pair.a_side.iface])
        .expect("ip addr");
    assert!(
        addrs.contains("198.18.0.1/24") && addrs.contains("2001:db8::1/64"),
        "{addrs}"
    );
    assert!(!addrs.contains("fe80"), "no link-local address expected: {addrs}");
    let link = pair
        .b
        .ip(&["-o", "link", "show", "dev", &pair.b_side.iface])
        .expect("ip link");
    assert!(link.contains("NOARP") && link.contains("LOWER_UP"), "{link}");
    let neigh = pair
        .a
        .ip(&["neigh", "show", "dev", &pair.a_side.iface])
        .expect("ip neigh");
    assert_eq!(neigh.matches("PERMANENT").count(), 2, "{neigh}");
    assert_eq!(
        pair.b.sysctl("net.ipv6.conf.all.accept_dad").expect("sysctl"),
        "0"
    );
    assert_eq!(
        pair.b
            .sysctl(&format!("net.ipv6.conf.{}.addr_gen_mode", pair.b_side.iface))
            .expect("sysctl"),
        "1"
    );

    // run(): the closure sees the namespace's interfaces.
    let iface = pair.a_side.iface.clone();
    let index = pair
        .a
        .run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))
        .expect("run");
    assert!(index.expect("read").contains(&iface));

    // command(): the child is in the namespace, but still sees the host's /sys/fs/bpf.
    let out = pair
        .a
        .command("sh")
        .args([
            "-c",
            "ip -o link show; if mountpoint -q /sys/fs/bpf; then echo BPFFS; fi",
        ])
        .output()
        .expect("spawn in netns");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&pair.a_side.iface) && !stdout.contains(&pair.b_side.iface),
        "{stdout}"
    );
    let host_has_bpffs = Command::new("mountpoint")
        .args(["-q", "/sys/fs/bpf"])
        .status()
        .is_ok_and(|s| s.success());
    assert_eq!(
        stdout.contains("BPFFS"),
        host_has_bpffs,
        "/sys/fs/bpf must look the same as on the host"
    );

    drop(pair);
    let list = netns_list();
    assert!(
        names.iter().all(|n| !list.contains(n.as_str())),
        "namespaces left after drop: {list}"
    );
}

#[test]
fn settled_veth_stays_silent() {
    if !lab_ready("settled_veth_stays_silent") {
        return;
    }
    let pair = Pair::new("silent").expect("create pair");
    // Open the receivers before settling, so that even setup traffic would be seen.
    let rx_a = RawReceiver::open(&pair.a, &pair.a_side.iface).expect("receiver in a");
    let rx_b = RawReceiver::open(&pair.b, &pair.b_side.iface).expect("receiver in b");
    pair.settle().expect("settle");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        rx_a.drain().expect("drain a"),
        0,
        "unsolicited frames arrived in a"
    );
    assert_eq!(
        rx_b.drain().expect("drain b"),
        0,
        "unsolicited frames arrived in b"
    );
}

#[test]
fn every_frame_arrives_exactly_once() {
    if !lab_ready("every_frame_arrives_exactly_once") {
        return;
    }
    let (pair, tx, rx) = pair_with_sockets("exact");
    let (src, dst) = (pair.b_side.ep, pair.a_side.ep);

    // Hand-built frames of every kind, including VLAN-tagged ones (the receiver restores the
    // tag the kernel strips), sent three times each.
    let mut sent = Vec::new();
    for v6 in [false, true] {
        for len in [0, 1, 18, 1000] {
            sent.push(frames::udp(&src, &dst, v6, 40000, 5001, &traffic::pattern(len)));
        }
        sent.push(frames::tcp(&src, &dst, v6, 40000, 80, TCP_SYN, 1, 0, &[]));
        sent.push(frames::tcp(
            &src,
            &dst,
            v6,
            40000,
            80,
            TCP_ACK | TCP_PSH,
            2,
            3,
            b"payload",
        ));
        sent.push(frames::icmp_echo(&src, &dst, v6, 7, 1, &traffic::pattern(56)));
        sent.push(frames::vlan_tag(
            &frames::udp(&src, &dst, v6, 1, 2, b"vlan"),
            TPID_8021Q,
            10,
        ));
    }
    sent.push(frames::vlan_tag(
        &frames::udp(&src, &dst, false, 1, 2, b"ad"),
        TPID_8021AD,
        20,
    ));
    let sent: Vec<Vec<u8>> = (0..3).flat_map(|_| sent.clone()).collect();
    let n = tx
        .send_all(sent.iter().map(Vec::as_slice), &Pace::default())
        .expect("send_all");
    assert_eq!(n, sent.len() as u64);
    let got = rx.collect(sent.len() + 10, IDLE, MAX_WAIT).expect("collect");
    assert_eq!(got.len(), sent.len(), "exactly the frames sent must arrive");
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "frame {i} differs");
    }

    // Generators: each frame arrives, parses, has valid checksums and the right addresses.
    let pace = Pace::default();
    for v6 in [false, true] {
        let (want_src, want_dst): (IpAddr, IpAddr) = if v6 {
            (src.ipv6.into(), dst.ipv6.into())
        } else {
            (src.ipv4.into(), dst.ipv4.into())
        };
        let counts = [
            traffic::udp_burst(&tx, &src, &dst, v6, 300, 100, &pace).expect("udp_burst"),
            traffic::tcp_syns(&tx, &src, &dst, v6, 80, 200, &pace).expect("tcp_syns"),
            traffic::icmp_echos(&tx, &src, &dst, v6, 50, &pace).expect("icmp_echos"),
            traffic::port_sweep(&tx, &src, &dst, v6, 1..=1024, &pace).expect("port_sweep"),
        ];
        assert_eq!(counts, [300, 200, 50, 1024], "generators return their count");
        let expected: u64 = counts.iter().sum();
        let got = rx
            .collect(expected as usize + 10, IDLE, MAX_WAIT)
            .expect("collect");
        assert_eq!(got.len() as u64, expected, "v6={v6}: frames lost or duplicated");
        let mut sweep_ports = HashSet::new();
        let mut syn_ports = HashSet::new();
        let mut per_proto = std::collections::HashMap::new();
        for frame in &got {
            let info = frames::parse(frame).expect("IP frame");
            *per_proto.entry(info.proto).or_insert(0u64) += 1;
            assert_eq!((info.src, info.dst), (want_src, want_dst));
            assert!(frames::verify_checksums(frame), "bad checksum in {frame:02x?}");
            if info.proto == frames::IPPROTO_TCP {
                let sport = u16::from_be_bytes([frame[info.l4_offset], frame[info.l4_offset + 1]]);
                let dport = u16::from_be_bytes([frame[info.l4_offset + 2], frame[info.l4_offset + 3]]);
                assert_eq!(frame[info.l4_offset + 13], TCP_SYN);
                if sport == traffic::ports::SWEEP_SRC {
                    sweep_ports.insert(dport);
                } else {
                    syn_ports.insert(sport);
                }
            }
        }
        let icmp = if v6 {
            frames::IPPROTO_ICMPV6
        } else {
            frames::IPPROTO_ICMP
        };
        assert_eq!(per_proto[&frames::IPPROTO_UDP], 300);
        assert_eq!(per_proto[&frames::IPPROTO_TCP], 200 + 1024);
        assert_eq!(per_proto[&icmp], 50);
        assert_eq!(sweep_ports.len(), 1024, "one SYN per swept port");
        assert_eq!(syn_ports.len(), 200, "SYNs use varying source ports");
    }
    assert_eq!(rx.drops().expect("drops"), 0);

    // Pacing: 100 pps for 100 frames takes about a second; max_duration cuts it short.
    let start = std::time::Instant::now();
    let n = traffic::udp_burst(
        &tx,
        &src,
        &dst,
        false,
        100,
        10,
        &Pace::rate(100, Duration::from_secs(5)),
    )
    .expect("paced");
    let took = start.elapsed();
    assert_eq!(n, 100);
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let n = traffic::udp_burst(
        &tx,
        &src,
        &dst,
        false,
        1000,
        10,
        &Pace::rate(100, Duration::from_millis(200)),
    )
    .expect("cut");
    assert!(
        (15..=21).contains(&n),
        "max_duration must stop the burst, sent {n}"
    );
    assert_eq!(
        rx.collect(2000, IDLE, MAX_WAIT).expect("collect").len() as u64,
        100 + n
    );
}

#[test]
fn kernel_tcp_over_ipv4_and_ipv6() {
    if !lab_ready("kernel_tcp_over_ipv4_and_ipv6") {
        return;
    }
    let pair = Pair::new("tcp").expect("create pair");
    pair.settle().expect("settle");
    let timeout = Duration::from_secs(20);
    for addr in [
        IpAddr::from(pair.a_side.ep.ipv4),
        IpAddr::from(pair.a_side.ep.ipv6),
    ] {
        let echoed = traffic::tcp_exchange(&pair.a, &pair.b, addr, 7000, 5, 3000, timeout).expect("exchange");
        assert_eq!(echoed, 5 * 3000, "{addr}");
        // A payload far larger than the socket buffers (exercises the lock-step echo).
        let echoed =
            traffic::tcp_exchange(&pair.a, &pair.b, addr, 7001, 1, 4 << 20, timeout).expect("big exchange");
        assert_eq!(echoed, 4 << 20, "{addr}");
    }
    // The other direction, server in b.
    let echoed = traffic::tcp_exchange(
        &pair.b,
        &pair.a,
        pair.b_side.ep.ipv6.into(),
        7002,
        2,
        100,
        timeout,
    )
    .expect("b server");
    assert_eq!(echoed, 200);
    // Nobody listening: a clear error, within the timeout.
    let err = traffic::tcp_exchange(
        &pair.a,
        &pair.b,
        "198.18.0.99".parse().expect("addr"),
        7003,
        1,
        1,
        Duration::from_secs(2),
    )
    .expect_err("no such address in a");
    eprintln!("expected failure: {err:#}");
}

#[test]
fn replay_of_real_captures() {
    if !lab_ready("replay_of_real_captures") {
        return;
    }
    let Some(small) = netanom_lab::pcap_path("benign-misc/tcpreplay_test.pcap") else {
        eprintln!("skipping replay_of_real_captures: shared captures not found (set NETANOM_SHARED)");
        return;
    };
    let (pair, tx, rx) = pair_with_sockets("replay");
    let (src, dst) = (pair.b_side.ep, pair.a_side.ep);

    let stats = replay::replay(&small, &tx, &src, &dst, &ReplayOptions::default()).expect("replay");
    eprintln!("tcpreplay_test.pcap: {stats:?}");
    assert_eq!(stats.read, 179);
    assert!(stats.sent > 0);
    assert!(stats.skipped >= 16, "MPLS and other non-IP frames are skipped");
    assert_eq!(stats.sent + stats.skipped, stats.read);
    let got = rx
        .collect(stats.sent as usize + 10, IDLE, MAX_WAIT)
        .expect("collect");
    assert_eq!(
        got.len() as u64,
        stats.sent,
        "every replayed frame arrives, nothing else"
    );
    for frame in &got {
        let info = frames::parse(frame).expect("only IP frames are replayed");
        for addr in [info.src, info.dst] {
            let ok = match addr {
                IpAddr::V4(a) => a.octets()[0] == 198 && a.octets()[1] & 0xfe == 18,
                IpAddr::V6(a) => a.segments()[..2] == [0x2001, 0x0db8],
            };
            assert!(ok, "address {addr} outside the lab ranges");
        }
        if info.ethertype == frames::ETHERTYPE_IPV4 {
            let ihl = info.l4_offset - info.l3_offset;
            assert_eq!(
                frames::ones_complement_sum(&[&frame[info.l3_offset..info.l3_offset + ihl]]),
                0xffff
            );
        }
        assert_eq!(&frame[..6], &dst.mac);
        assert_eq!(&frame[6..12], &src.mac);
    }

    // Original timing, capped: the capture spans 3.26 s, the cap stops it at 0.5 s.
    let opts = ReplayOptions {
        pace: Pace {
            pps: None,
            max_duration: Duration::from_millis(500),
        },
        max_packets: None,
        original_timing: true,
        speedup: 1.0,
    };
    let start = std::time::Instant::now();
    let timed = replay::replay(&small, &tx, &src, &dst, &opts).expect("timed replay");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        timed.read < 179,
        "max_duration must cut the timed replay: {timed:?}"
    );
    rx.drain().expect("drain");

    // The spoofed SYN flood: one victim, thousands of distinct sources.
    let Some(flood) = netanom_lab::pcap_path("attacks/ddos-stopddos/pkt.TCP.synflood.spoofed.pcap") else {
        return;
    };
    let opts = ReplayOptions {
        max_packets: Some(3000),
        ..ReplayOptions::default()
    };
    let stats = replay::replay(&flood, &tx, &src, &dst, &opts).expect("flood replay");
    assert_eq!((stats.read, stats.sent, stats.skipped), (3000, 3000, 0));
    let got = rx.collect(3010, IDLE, MAX_WAIT).expect("collect");
    assert_eq!(got.len(), 3000);
    let mut sources = HashSet::new();
    for frame in &got {
        let info = frames::parse(frame).expect("IP");
        assert_eq!(info.dst, IpAddr::from(dst.ipv4), "the victim maps to a's address");
        assert_eq!(info.proto, frames::IPPROTO_TCP);
        assert!(frames::verify_checksums(frame));
        sources.insert(info.src);
    }
    // As many distinct sources as in the original frames: the mapping is collision-free.
    let original: HashSet<IpAddr> = replay::read_frames(&flood)
        .expect("read flood")
        .iter()
        .take(3000)
        .map(|(_, f)| frames::parse(f).expect("IP").src)
        .collect();
    assert_eq!(
        sources.len(),
        original.len(),
        "distinct sources must stay distinct"
    );
    assert!(sources.len() > 2500, "{}", sources.len());
}
