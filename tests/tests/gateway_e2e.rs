//! netanom as an inline gateway, end to end, with real captures.
//!
//! Topology ([`netanom_lab::Gateway`]): four namespaces, `client` (benign, 198.18.1.2,
//! 2001:db8:1::2), `attacker` (198.18.2.2 and aliases 198.18.2.x, 2001:db8:2::x) and `server`
//! (198.18.3.2, 2001:db8:3::2), each joined by a veth to `gw`, which forwards between them. The
//! agent runs in `gw` with `--iface` on the client link and on the attacker link (XDP on what
//! arrives from outside, the TC egress classifier on what leaves towards it); the server link
//! is the inside. Frames from the lab's generators and replays are sent on the attacker's
//! interface with the gateway's MAC as destination and the server as destination IP; the
//! replays map every non-victim address into 198.19.0.0/16 / 2001:db8:ffff::/48, which the
//! gateway routes back to the attacker, so the server's answers stay in the lab.
//!
//! For the whole test a benign client exchanges real kernel TCP (IPv4 and IPv6, echoed and
//! verified) and UDP (kernel sockets, echoed) with the server through the gateway, one round
//! every ~100 ms (bounded in rounds and time).
//!
//! Mitigate mode (`--mode mitigate`), asserted:
//! - a UDP flood (198.18.2.66), a SYN flood (198.18.2.67) and a TCP port scan over IPv6
//!   (2001:db8:2::68) towards the server are each blocked (`netanom block list`) within 2 s of
//!   the attack's start; the measured times are printed;
//! - afterwards no frame from those sources reaches the server (counted with a raw receiver in
//!   the server's namespace), while the client's still do;
//! - a replay of the real spoofed SYN flood `pkt.TCP.synflood.spoofed.pcap` (a bounded prefix at
//!   a bounded rate) produces a `victim_flood` alert naming the server and port 25565, exactly
//!   one pattern rate limit (`status --json` `rate_limits_active`), no blocks in the spoofed
//!   range, and the rate limit visibly cuts what reaches the server;
//! - replays of two real UDP amplification captures: `amp.UDP.snmp.src161.pcapng` (4,276
//!   reflectors, each sending about one packet, to three victim ports) and
//!   `amp.UDP.isakmp.pcap` (2,767 reflectors, 1.4 packets each, to 3,853 different victim
//!   ports). The right response is about the victim, not the reflectors (open servers, each
//!   sending a handful of packets, whose addresses would fill the blocklist): a `victim_flood`
//!   alert naming the server (for SNMP a rate limit per flooded port; for ISAKMP, whose ports
//!   are all different, an alert without a port pattern to limit) and no reflector blocked;
//! - the benign client is never blocked, never the subject of an alert, and every one of its
//!   exchanges succeeded; the server (which answers floods) is never blocked either.
//!
//! Observe mode (a fresh agent, default mode, fresh pin directory): a UDP flood from
//! 198.18.2.69 is reported as `would-block` (alert, and `mitigation.would_block` ≥ 1 in
//! `status --json`), no block exists, and every flood frame reaches the server.
//!
//! The captures come from `$NETANOM_SHARED/datasets/pcaps/attacks/ddos-stopddos/` (see
//! PROVENANCE.md there); without them the replays are skipped (with a message) and the rest
//! runs. Every loop is bounded; the whole test takes about 25 s.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use netanom_lab::{
    Agent, Endpoint, Gateway, Pace, RawReceiver, RawSender, StateDirs, Topology as _,
    agent::{assert_innocents_not_blocked, block_list, status_json},
    frames, read_alerts,
    replay::{self, ReplayOptions},
    require_root, start_agent as start_lab_agent, sweep_leftovers, sweep_state_leftovers, time_to_block,
    traffic,
};
use serde_json::Value;

/// Port of the server's TCP echo service (the benign exchanges).
const TCP_PORT: u16 = 8080;
/// Port of the server's UDP echo socket.
const UDP_PORT: u16 = 5353;
/// Upper bounds of the benign traffic loop.
const BENIGN_MAX_ROUNDS: u32 = 1_000;
const BENIGN_MAX_TIME: Duration = Duration::from_secs(120);

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the benign client did.
#[derive(Debug, Default)]
struct Benign {
    rounds: u32,
    tcp_ok: u32,
    udp_sent: u32,
    udp_echoed: u32,
    failures: Vec<String>,
}

/// The benign client: until `stop` (bounded by [`BENIGN_MAX_ROUNDS`] and
/// [`BENIGN_MAX_TIME`]), one round every ~100 ms of two real TCP echo connections (16 KiB
/// each, IPv4 and IPv6 alternately) and ten UDP datagrams echoed by the server.
fn benign_traffic(lab: &Gateway, stop: &AtomicBool) -> Benign {
    let server = lab.server_link.host.ep;
    let server_udp = SocketAddr::new(IpAddr::V4(server.ipv4), UDP_PORT);
    let srv = lab
        .server
        .run(|| UdpSocket::bind(server_udp))
        .unwrap()
        .expect("server UDP socket");
    let cli = lab
        .client
        .run(|| UdpSocket::bind("198.18.1.2:0"))
        .unwrap()
        .expect("client UDP socket");
    for s in [&srv, &cli] {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    }
    let mut b = Benign::default();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) && b.rounds < BENIGN_MAX_ROUNDS && start.elapsed() < BENIGN_MAX_TIME {
        let addr = if b.rounds % 2 == 0 {
            IpAddr::V4(server.ipv4)
        } else {
            IpAddr::V6(server.ipv6)
        };
        match traffic::tcp_exchange(
            &lab.server,
            &lab.client,
            addr,
            TCP_PORT,
            2,
            16 * 1024,
            Duration::from_secs(5),
        ) {
            Ok(n) if n == 2 * 16 * 1024 => b.tcp_ok += 2,
            Ok(n) => b
                .failures
                .push(format!("round {}: TCP {addr}: echoed {n} bytes", b.rounds)),
            Err(e) => b.failures.push(format!("round {}: TCP {addr}: {e:#}", b.rounds)),
        }
        for i in 0..10u32 {
            let msg = format!("benign {} {i}", b.rounds);
            b.udp_sent += 1;
            let echoed = (|| -> std::io::Result<bool> {
                cli.send_to(msg.as_bytes(), server_udp)?;
                let (n, from) = srv.recv_from(&mut buf)?;
                srv.send_to(&buf[..n], from)?;
                let (n, _) = cli.recv_from(&mut buf)?;
                Ok(&buf[..n] == msg.as_bytes())
            })();
            match echoed {
                Ok(true) => b.udp_echoed += 1,
                Ok(false) => b
                    .failures
                    .push(format!("round {}: UDP {i}: wrong echo", b.rounds)),
                Err(e) => b.failures.push(format!("round {}: UDP {i}: {e}", b.rounds)),
            }
        }
        b.rounds += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    b
}

/// How many of `frames` come from `src`.
fn count_from(frames: &[Vec<u8>], src: IpAddr) -> u64 {
    frames
        .iter()
        .filter(|f| frames::parse(f).is_some_and(|i| i.src == src))
        .count() as u64
}

/// Reads what queued up at `rx` (the server's interface) after a burst: waits 300 ms for the
/// burst to cross the gateway, then reads until the queue is empty and no frame came for
/// 20 ms (the benign client's traffic keeps arriving, in rounds with gaps, so a longer idle
/// time would rarely end), at most 3 s. Callers filter out the benign traffic.
fn queued_at_server(rx: &RawReceiver) -> Vec<Vec<u8>> {
    std::thread::sleep(Duration::from_millis(300));
    let frames = rx
        .collect(200_000, Duration::from_millis(20), Duration::from_secs(3))
        .unwrap();
    assert_eq!(rx.drops().unwrap(), 0, "the server's counting socket lost frames");
    frames
}

/// Sends `count` UDP datagrams from `src` towards the server on the attacker's (or client's)
/// link and returns how many of them arrived at the server.
fn udp_reaching_server(lab: &Gateway, from_client: bool, src: &Endpoint, v6: bool, count: u64) -> u64 {
    let (ns, link) = if from_client {
        (&lab.client, &lab.client_link)
    } else {
        (&lab.attacker, &lab.attacker_link)
    };
    let rx = RawReceiver::open(&lab.server, &lab.server_link.host.iface).unwrap();
    let tx = RawSender::open(ns, &link.host.iface).unwrap();
    let dst = lab.to_server(link);
    traffic::udp_burst(
        &tx,
        src,
        &dst,
        v6,
        count,
        32,
        &Pace::rate(2_000, Duration::from_secs(5)),
    )
    .unwrap();
    let got = queued_at_server(&rx);
    let src: IpAddr = if v6 { src.ipv6.into() } else { src.ipv4.into() };
    // Only the burst's datagrams: the benign client's own traffic shares its address.
    got.iter()
        .filter(|f| {
            frames::parse(f).is_some_and(|i| {
                i.src == src
                    && i.proto == frames::IPPROTO_UDP
                    && f.get(i.l4_offset + 2..i.l4_offset + 4)
                        == Some(&traffic::ports::UDP_DST.to_be_bytes()[..])
            })
        })
        .count() as u64
}

fn start_agent(lab: &Gateway, dirs: &StateDirs, alerts_file: &Path, extra: &[&str]) -> Agent {
    let af = alerts_file.to_str().unwrap().to_owned();
    let mut args = vec!["--alerts", af.as_str()];
    args.extend_from_slice(extra);
    start_lab_agent(lab, dirs, &args)
}

fn state_dirs(tag: &str) -> (StateDirs, PathBuf) {
    let dirs = StateDirs::new(tag);
    std::fs::create_dir_all(&dirs.state_dir).unwrap();
    let alerts = dirs.state_dir.join("alerts.json");
    (dirs, alerts)
}

/// Whether `ip` is in the ranges the replay maps a capture's non-victim addresses into.
fn replayed_source(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[..2] == [198, 19],
        IpAddr::V6(a) => a.segments()[..3] == [0x2001, 0x0db8, 0xffff],
    }
}

/// Replays (a prefix of) a capture from the attacker towards the server; returns (frames sent,
/// replayed frames that reached the server).
fn replay_to_server(lab: &Gateway, capture: &Path, max_packets: u64, pps: u32, max_s: u64) -> (u64, u64) {
    let rx = RawReceiver::open(&lab.server, &lab.server_link.host.iface).unwrap();
    let tx = RawSender::open(&lab.attacker, &lab.attacker_link.host.iface).unwrap();
    let opts = ReplayOptions {
        pace: Pace::rate(pps, Duration::from_secs(max_s)),
        max_packets: Some(max_packets),
        original_timing: false,
        speedup: 1.0,
    };
    let dst = lab.to_server(&lab.attacker_link);
    let stats = replay::replay(capture, &tx, &lab.attacker_link.host.ep, &dst, &opts).unwrap();
    let arrived = queued_at_server(&rx)
        .iter()
        .filter(|f| frames::parse(f).is_some_and(|i| replayed_source(i.src)))
        .count() as u64;
    eprintln!(
        "replayed {}: {} read, {} sent, {} skipped; {arrived} of them reached the server",
        capture.file_name().unwrap().to_string_lossy(),
        stats.read,
        stats.sent,
        stats.skipped
    );
    (stats.sent, arrived)
}

fn capture(name: &str) -> Option<PathBuf> {
    netanom_lab::pcap_path(&format!("attacks/ddos-stopddos/{name}"))
}

#[test]
fn gateway_blocks_attackers_rate_limits_spoofed_floods_and_spares_the_benign_client() {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP, bpffs)");
        return;
    }
    let captures = match (
        capture("pkt.TCP.synflood.spoofed.pcap"),
        capture("amp.UDP.snmp.src161.pcapng"),
        capture("amp.UDP.isakmp.pcap"),
    ) {
        (Some(syn), Some(snmp), Some(isakmp)) => Some((syn, snmp, isakmp)),
        _ => {
            eprintln!("the shared captures were not found (set NETANOM_SHARED): replays skipped");
            None
        }
    };
    let t_test = Instant::now();
    sweep_leftovers().unwrap();
    sweep_state_leftovers();
    let lab = Gateway::new("gwe2e").unwrap();
    lab.settle().unwrap();
    let (dirs, alerts_file) = state_dirs("gwe2e");
    let client = lab.client_link.host.ep;
    let server = lab.server_link.host.ep;

    eprintln!("[{:.1?}] topology ready", t_test.elapsed());
    // Mitigate mode.
    let agent = start_agent(&lab, &dirs, &alerts_file, &["--mode", "mitigate"]);
    eprintln!("[{:.1?}] agent ready (mitigate)", t_test.elapsed());
    let stop = AtomicBool::new(false);
    let (benign, observe_alerts) = std::thread::scope(|s| {
        // Stops the benign client however this scope ends (a failed assertion included).
        let _stop = StopOnDrop(&stop);
        let benign = s.spawn(|| benign_traffic(&lab, &stop));
        // Let the benign traffic get going (and the agent see it) before the attacks.
        std::thread::sleep(Duration::from_secs(1));

        let tx = RawSender::open(&lab.attacker, &lab.attacker_link.host.iface).unwrap();
        let dst = lab.to_server(&lab.attacker_link);
        let udp = lab.attacker_alias(66).unwrap();
        let syn = lab.attacker_alias(67).unwrap();
        let scan = lab.attacker_alias(68).unwrap();
        let mut times = Vec::new();
        let t = time_to_block(&lab, &dirs, "198.18.2.66/32", || {
            traffic::udp_burst(
                &tx,
                &udp,
                &dst,
                false,
                60_000,
                64,
                &Pace::rate(20_000, Duration::from_secs(3)),
            )
            .unwrap();
        });
        times.push(("UDP flood 198.18.2.66", t));
        let t = time_to_block(&lab, &dirs, "198.18.2.67/32", || {
            traffic::tcp_syns(
                &tx,
                &syn,
                &dst,
                false,
                80,
                30_000,
                &Pace::rate(10_000, Duration::from_secs(3)),
            )
            .unwrap();
        });
        times.push(("SYN flood 198.18.2.67", t));
        let t = time_to_block(&lab, &dirs, "2001:db8:2::68/128", || {
            traffic::port_sweep(
                &tx,
                &scan,
                &dst,
                true,
                1..=6000,
                &Pace::rate(3_000, Duration::from_secs(3)),
            )
            .unwrap();
        });
        times.push(("IPv6 port scan 2001:db8:2::68", t));
        for (what, t) in &times {
            eprintln!("{what}: blocked after {t:?}");
        }
        for (what, t) in &times {
            let t = t.unwrap_or_else(|| {
                panic!(
                    "{what}: not blocked within 5 s; blocks {:?}; alerts {:?}",
                    block_list(&lab, &dirs, false),
                    read_alerts(&alerts_file)
                )
            });
            assert!(t < Duration::from_secs(2), "{what}: blocked only after {t:?}");
        }

        // Blocked sources no longer reach the server; the client still does.
        assert_eq!(
            udp_reaching_server(&lab, false, &udp, false, 50),
            0,
            "UDP flooder"
        );
        assert_eq!(
            udp_reaching_server(&lab, false, &syn, false, 50),
            0,
            "SYN flooder"
        );
        assert_eq!(udp_reaching_server(&lab, false, &scan, true, 50), 0, "scanner");
        assert_eq!(udp_reaching_server(&lab, true, &client, false, 50), 50, "client");

        eprintln!("[{:.1?}] generated attacks done", t_test.elapsed());
        if let Some((synflood, snmp, isakmp)) = &captures {
            // The real spoofed SYN flood: a victim alert and one pattern rate limit.
            let before = status_json(&lab, &dirs);
            let (sent, arrived) = replay_to_server(&lab, synflood, 30_000, 8_000, 4);
            std::thread::sleep(Duration::from_millis(1000));
            let st = status_json(&lab, &dirs);
            let rate_limited = |st: &Value| {
                st["counters"]["events"]
                    .as_array()
                    .and_then(|e| e.iter().find(|x| x[0] == "dropped_rate_limited"))
                    .and_then(|x| x[1].as_u64())
                    .unwrap_or(0)
            };
            eprintln!(
                "after the SYN flood replay: rate_limits_active {}, blocks_active {} (before: {}), \
                 dropped by rate limits {}",
                st["rate_limits_active"],
                st["blocks_active"],
                before["blocks_active"],
                rate_limited(&st) - rate_limited(&before)
            );
            assert_eq!(st["rate_limits_active"], 1, "{st}");
            let list = block_list(&lab, &dirs, false);
            let spoofed_blocks = list
                .iter()
                .filter(|b| b["prefix"].as_str().is_some_and(|p| p.starts_with("198.19.")))
                .count();
            // Each spoofed source sends one or two SYNs: blocking any of them would be wrong.
            assert_eq!(spoofed_blocks, 0, "not thousands of source blocks: {list:?}");
            assert!(sent >= 20_000, "replayed {sent}");
            assert!(
                arrived < sent / 2,
                "the rate limit cut the flood: {arrived} of {sent} frames reached the server"
            );

            // Real UDP amplification: about the victim, not the reflectors.
            let (sent_snmp, _) = replay_to_server(&lab, snmp, 5_000, 8_000, 2);
            std::thread::sleep(Duration::from_millis(1000));
            let (sent_isakmp, _) = replay_to_server(&lab, isakmp, 5_000, 8_000, 2);
            assert!(
                sent_snmp >= 4_000 && sent_isakmp >= 3_900,
                "{sent_snmp} {sent_isakmp}"
            );
            std::thread::sleep(Duration::from_millis(1000));
            let list = block_list(&lab, &dirs, false);
            assert_innocents_not_blocked(&lab, &list);
            let spoofed_blocks = list
                .iter()
                .filter(|b| b["prefix"].as_str().is_some_and(|p| p.starts_with("198.19.")))
                .count();
            assert_eq!(
                spoofed_blocks, 0,
                "reflectors are not blocked one by one: {list:?}"
            );
            let st = status_json(&lab, &dirs);
            eprintln!(
                "after the amplification replays: rate_limits_active {}, blocks_active {}, mitigation {}",
                st["rate_limits_active"], st["blocks_active"], st["mitigation"]
            );
        }

        eprintln!("[{:.1?}] replays done", t_test.elapsed());
        // Observe mode on the same topology, the benign client still running.
        let (code, _, _) = agent.stop(libc::SIGTERM);
        assert_eq!(code, Some(0));
        let (odirs, oalerts) = state_dirs("gwe2e-obs");
        let oagent = start_agent(&lab, &odirs, &oalerts, &[]);
        eprintln!("[{:.1?}] agent ready (observe)", t_test.elapsed());
        let bad = lab.attacker_alias(69).unwrap();
        let rx = RawReceiver::open(&lab.server, &lab.server_link.host.iface).unwrap();
        let sent = traffic::udp_burst(
            &tx,
            &bad,
            &dst,
            false,
            16_000,
            64,
            &Pace::rate(8_000, Duration::from_secs(3)),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let st = status_json(&lab, &odirs);
        assert_eq!(st["mode"], "observe", "{st}");
        assert!(st["mitigation"]["would_block"].as_u64().unwrap() >= 1, "{st}");
        assert!(
            block_list(&lab, &odirs, false).is_empty(),
            "observe mode blocks nothing"
        );
        let reached = count_from(&queued_at_server(&rx), bad.ipv4.into());
        eprintln!("observe mode: {reached} of {sent} flood frames reached the server");
        assert_eq!(reached, sent, "every flood frame passed the gateway");
        stop.store(true, Ordering::Relaxed);
        let (code, _, _) = oagent.stop(libc::SIGTERM);
        assert_eq!(code, Some(0));
        let a = read_alerts(&oalerts);
        assert!(
            a.iter()
                .any(|x| x["src_ip"] == bad.ipv4.to_string() && x["alert"]["action"] == "would-block"),
            "{a:?}"
        );
        drop(odirs);
        (benign.join().unwrap(), a)
    });

    // The benign client: every exchange succeeded, never blocked (checked at every poll),
    // never accused.
    eprintln!("benign client: {benign:?}");
    assert!(benign.failures.is_empty(), "{:?}", benign.failures);
    assert!(benign.rounds >= 10, "{benign:?}");
    assert_eq!(benign.udp_echoed, benign.udp_sent);
    let a = read_alerts(&alerts_file);
    for x in a.iter().chain(&observe_alerts) {
        for who in lab.innocents().iter().map(|a| a.to_string()) {
            assert_ne!(x["src_ip"], who.as_str(), "alert about {who}: {x}");
        }
    }

    // One EVE alert per decision: the flooders blocked, the spoofed flood limited.
    for ip in ["198.18.2.66", "198.18.2.67", "2001:db8:2::68"] {
        let hit = a
            .iter()
            .find(|x| x["src_ip"] == ip && x["alert"]["action"] == "blocked")
            .unwrap_or_else(|| panic!("no blocked alert for {ip}: {a:?}"));
        assert_eq!(hit["event_type"], "alert");
        assert_eq!(hit["netanom"]["mode"], "mitigate");
    }
    if captures.is_some() {
        let victim: Vec<&Value> = a
            .iter()
            .filter(|x| x["netanom"]["kind"] == "victim_flood")
            .collect();
        for v in &victim {
            eprintln!(
                "victim alert: {} {}:{} {} {}",
                v["alert"]["action"], v["dest_ip"], v["dest_port"], v["proto"], v["netanom"]["reason"]
            );
        }
        let syn_victim = victim
            .iter()
            .find(|x| x["dest_port"] == 25565)
            .unwrap_or_else(|| panic!("no victim alert for port 25565: {a:?}"));
        assert_eq!(syn_victim["dest_ip"], server.ipv4.to_string());
        assert_eq!(syn_victim["alert"]["action"], "blocked");
        assert_eq!(syn_victim["netanom"]["rate_limit"]["tcp_flags"], "S");
        // SNMP amplification: three victim ports, each flooded from thousands of reflectors, each
        // rate-limited.
        let udp_to_server = |x: &&&Value| x["proto"] == "UDP" && x["dest_ip"] == server.ipv4.to_string();
        let snmp_ports: HashSet<u64> = victim
            .iter()
            .filter(udp_to_server)
            .filter(|x| x["alert"]["action"] == "blocked" && x["netanom"]["rate_limit"]["proto"] == "UDP")
            .filter_map(|x| x["dest_port"].as_u64())
            .collect();
        assert!(
            !snmp_ports.is_empty() && snmp_ports.is_subset(&HashSet::from([54609, 12294, 3299])),
            "SNMP amplification: a rate limit per flooded port expected: {snmp_ports:?} {victim:?}"
        );
        // ISAKMP amplification: 3,853 different victim ports, so a victim alert about the host
        // (no port), without a pattern to rate-limit.
        let spread = victim
            .iter()
            .filter(udp_to_server)
            .find(|x| x.get("dest_port").is_none())
            .unwrap_or_else(|| panic!("no victim alert for the spread UDP flood: {victim:?}"));
        assert_eq!(spread["alert"]["action"], "allowed", "{spread}");
        assert!(
            spread["netanom"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("spread over") && r.contains("alert only")),
            "{spread}"
        );
    }
    drop(dirs);
    eprintln!("total {:?}", t_test.elapsed());
}
