//! First end-to-end slice: the real agent attached to a lab veth counts exactly the traffic a
//! peer namespace sends, over IPv4 and IPv6, and detaches cleanly on SIGINT/SIGTERM.

use std::time::Duration;

use netanom_lab::agent::{Agent, xdp_attached};
use netanom_lab::{Pace, Pair, RawSender, frames, require_root, sweep_leftovers, traffic};
use serde_json::Value;

const N_UDP: u64 = 120;
const M_TCP: u64 = 75;
const K_ICMP: u64 = 40;
const UDP_PAYLOAD: usize = 64;

fn row(snap: &Value, family: &str, transport: &str) -> (u64, u64) {
    let r = snap["protocols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["family"] == family && r["transport"] == transport)
        .unwrap_or_else(|| panic!("no {family}/{transport} row in {snap}"));
    (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap())
}

/// Sends the known traffic from b to a while an agent watches a's veth; returns the agent's
/// final snapshot and the expected (family, transport, packets, bytes) of what b sent.
/// (family, transport, packets, bytes) that b sent.
type Expected = Vec<(&'static str, &'static str, u64, u64)>;

fn exact_counts(signal: i32, egress: bool) -> Option<(Value, Expected)> {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP)");
        return None;
    }
    sweep_leftovers().unwrap();
    let lab = Pair::new("e2e").unwrap();
    let iface = lab.a_side.iface.clone();
    let mut args = vec![
        "--iface",
        &iface,
        "--stats-format",
        "json",
        "--stats-interval",
        "0.2",
    ];
    if !egress {
        args.push("--no-egress");
    }
    let agent = Agent::start(&lab.a, &args).unwrap();
    assert!(
        xdp_attached(&lab.a, &iface),
        "XDP program attached while the agent runs"
    );
    let mode = agent
        .stderr_seen
        .iter()
        .filter(|l| l.contains("attached to"))
        .find_map(|l| {
            l.split(" in ")
                .nth(1)
                .and_then(|m| m.split(' ').next())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    eprintln!("agent attached to {iface} in {mode} XDP mode");
    assert!(
        mode == "native" || mode == "skb",
        "mode reported: {:?}",
        agent.stderr_seen
    );

    let (src, dst) = (lab.b_side.ep, lab.a_side.ep);
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let pace = Pace {
        pps: Some(20_000),
        max_duration: Duration::from_secs(10),
    };
    let mut expect = Vec::new();
    for v6 in [false, true] {
        let family = if v6 { "ipv6" } else { "ipv4" };
        let udp_len = frames::udp(&src, &dst, v6, 1, 2, &[0; UDP_PAYLOAD]).len() as u64;
        let tcp_len = frames::tcp(&src, &dst, v6, 1, 2, frames::TCP_SYN, 0, 0, &[]).len() as u64;
        let icmp_len = frames::icmp_echo(&src, &dst, v6, 1, 1, &[0; 56]).len() as u64;
        assert_eq!(
            traffic::udp_burst(&tx, &src, &dst, v6, N_UDP, UDP_PAYLOAD, &pace).unwrap(),
            N_UDP
        );
        assert_eq!(
            traffic::tcp_syns(&tx, &src, &dst, v6, 80, M_TCP, &pace).unwrap(),
            M_TCP
        );
        assert_eq!(
            traffic::icmp_echos(&tx, &src, &dst, v6, K_ICMP, &pace).unwrap(),
            K_ICMP
        );
        expect.push((family, "udp", N_UDP, N_UDP * udp_len));
        expect.push((family, "tcp", M_TCP, M_TCP * tcp_len));
        expect.push((family, "icmp", K_ICMP, K_ICMP * icmp_len));
    }
    // The frames are on the wire; give the kernel a moment before asking the agent to stop.
    std::thread::sleep(Duration::from_millis(300));
    let (code, stdout, stderr) = agent.stop(signal);
    assert_eq!(code, Some(0), "clean exit; stderr: {stderr:?}");
    assert!(stderr.iter().any(|l| l.contains("detached from")), "{stderr:?}");
    let last = stdout.lines().last().expect("a final counter snapshot");
    let snap: Value = serde_json::from_str(last).unwrap();
    assert_eq!(snap["interfaces"][0]["iface"], iface.as_str());
    assert_eq!(snap["interfaces"][0]["egress"], egress);
    assert!(
        !xdp_attached(&lab.a, &iface),
        "XDP program detached after the agent stopped"
    );
    Some((snap, expect))
}

fn assert_exact(signal: i32) {
    let Some((snap, expect)) = exact_counts(signal, false) else {
        return;
    };
    for (family, transport, packets, bytes) in expect {
        assert_eq!(
            row(&snap, family, transport),
            (packets, bytes),
            "{family}/{transport}"
        );
    }
}

#[test]
fn counts_exactly_and_detaches_on_sigterm() {
    assert_exact(libc::SIGTERM);
}

#[test]
fn counts_exactly_and_detaches_on_sigint() {
    assert_exact(libc::SIGINT);
}

/// With the TC egress classifier, a's own replies are accounted too: every SYN to the closed
/// port is answered by exactly one RST of the same size, every echo request by one reply.
#[test]
fn egress_classifier_accounts_the_hosts_replies() {
    let Some((snap, expect)) = exact_counts(libc::SIGTERM, true) else {
        return;
    };
    for (family, transport, packets, bytes) in expect {
        let got = row(&snap, family, transport);
        match transport {
            "tcp" => assert_eq!(got, (2 * packets, 2 * bytes), "{family}/tcp: SYNs in + RSTs out"),
            // Echo replies mirror the requests; port-unreachable errors for the UDP probes
            // are rate-limited by the kernel, so only a lower bound holds.
            "icmp" => assert!(
                got.0 >= 2 * packets && got.1 >= 2 * bytes,
                "{family}/icmp: {got:?}"
            ),
            _ => assert_eq!(got, (packets, bytes), "{family}/{transport}"),
        }
    }
}

/// `--iface` may repeat: one program on two interfaces, one set of counters.
#[test]
fn attaches_to_several_interfaces() {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP)");
        return;
    }
    sweep_leftovers().unwrap();
    let lab = Pair::new("multi").unwrap();
    // A second link between the same namespaces; it dies with them.
    let (a2, b2) = (
        format!("nalab{}m2a", std::process::id() % 10_000),
        format!("nalab{}m2b", std::process::id() % 10_000),
    );
    lab.a
        .ip(&[
            "link",
            "add",
            &a2,
            "type",
            "veth",
            "peer",
            "name",
            &b2,
            "netns",
            lab.b.name(),
        ])
        .unwrap();
    for (ns, dev) in [(&lab.a, &a2), (&lab.b, &b2)] {
        ns.sysctls([(format!("net.ipv6.conf.{dev}.disable_ipv6").as_str(), "1")])
            .unwrap();
        ns.ip(&["link", "set", "dev", dev, "arp", "off", "up"]).unwrap();
    }
    let iface1 = lab.a_side.iface.clone();
    let agent = Agent::start(
        &lab.a,
        &[
            "--iface",
            &iface1,
            "--iface",
            &a2,
            "--no-egress",
            "--stats-format",
            "json",
            "--stats-interval",
            "0.2",
        ],
    )
    .unwrap();
    assert!(xdp_attached(&lab.a, &iface1) && xdp_attached(&lab.a, &a2));
    let (src, dst) = (lab.b_side.ep, lab.a_side.ep);
    let pace = Pace {
        pps: Some(20_000),
        max_duration: Duration::from_secs(5),
    };
    let tx1 = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let tx2 = RawSender::open(&lab.b, &b2).unwrap();
    assert_eq!(
        traffic::udp_burst(&tx1, &src, &dst, false, 10, 32, &pace).unwrap(),
        10
    );
    assert_eq!(
        traffic::udp_burst(&tx2, &src, &dst, false, 20, 32, &pace).unwrap(),
        20
    );
    std::thread::sleep(Duration::from_millis(300));
    let (code, stdout, stderr) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "{stderr:?}");
    let snap: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let len = frames::udp(&src, &dst, false, 1, 2, &[0; 32]).len() as u64;
    assert_eq!(row(&snap, "ipv4", "udp"), (30, 30 * len));
    let names: Vec<&str> = snap["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["iface"].as_str().unwrap())
        .collect();
    assert_eq!(names, [iface1.as_str(), a2.as_str()]);
    assert!(
        !xdp_attached(&lab.a, &iface1) && !xdp_attached(&lab.a, &a2),
        "both detached"
    );
}
