//! Real kernel TCP connections through the lab, accounted live in both directions (XDP for
//! what arrives at a, the TC egress classifier for what a sends), exported when they close.

use std::{net::IpAddr, time::Duration};

use netanom_lab::{Agent, read_csv};
use netanom_lab::{Pair, require_root, sweep_leftovers, traffic};

const CONNECTIONS: u32 = 4;
const PAYLOAD: usize = 1000; // below the MSS: no segmentation offload in play
const PORT: u16 = 7777;

fn num(row: &std::collections::BTreeMap<String, String>, col: &str) -> u64 {
    row[col]
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("{col}: {}", row[col])) as u64
}

fn connections_both_directions(v6: bool) {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP)");
        return;
    }
    sweep_leftovers().unwrap();
    let lab = Pair::new(if v6 { "tcp6" } else { "tcp4" }).unwrap();
    let out = std::env::temp_dir().join(format!("nalab-flows-{}-{v6}.csv", std::process::id()));
    let iface = lab.a_side.iface.clone();
    let before = lab.a.iface_stats(&iface).unwrap();
    let agent = Agent::start(
        &lab.a,
        &[
            "--iface",
            &iface,
            "--flows-out",
            out.to_str().unwrap(),
            "--stats-format",
            "json",
        ],
    )
    .unwrap();
    let server: IpAddr = if v6 {
        lab.a_side.ep.ipv6.into()
    } else {
        lab.a_side.ep.ipv4.into()
    };
    let echoed = traffic::tcp_exchange(
        &lab.a,
        &lab.b,
        server,
        PORT,
        CONNECTIONS,
        PAYLOAD,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(echoed, u64::from(CONNECTIONS) * PAYLOAD as u64);
    std::thread::sleep(Duration::from_millis(300));
    let (code, stdout, stderr) = agent.stop(libc::SIGTERM);
    let after = lab.a.iface_stats(&iface).unwrap();
    assert_eq!(code, Some(0), "{stderr:?}");
    let rows = read_csv(&out);
    let _ = std::fs::remove_file(&out);

    let client = if v6 {
        lab.b_side.ep.ipv6.to_string()
    } else {
        lab.b_side.ep.ipv4.to_string()
    };
    assert_eq!(
        rows.len(),
        CONNECTIONS as usize,
        "one flow per connection: {rows:#?}"
    );
    let mut packets = 0;
    for r in &rows {
        // The client (in b) started each connection: it is the forward direction.
        assert_eq!(
            (r["Src IP"].as_str(), num(r, "Dst Port")),
            (client.as_str(), u64::from(PORT))
        );
        assert_eq!(r["End Reason"], "fin");
        assert_eq!(num(r, "Total Length of Fwd Packet"), PAYLOAD as u64);
        assert_eq!(num(r, "Total Length of Bwd Packet"), PAYLOAD as u64);
        assert_eq!(num(r, "SYN Flag Count"), 2, "SYN one way, SYN-ACK the other");
        assert_eq!(num(r, "FIN Flag Count"), 2);
        assert_eq!(num(r, "RST Flag Count"), 0);
        assert!(num(r, "FWD Init Win Bytes") > 0 && num(r, "Bwd Init Win Bytes") > 0);
        assert!(num(r, "Fwd Header Length") >= 20 * num(r, "Total Fwd Packet"));
        packets += num(r, "Total Fwd Packet") + num(r, "Total Bwd packets");
    }
    // The scoring stage (the embedded default bundle) scored every exported flow.
    let snap: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        snap["scoring"]["scored"],
        rows.len() as u64,
        "{}",
        snap["scoring"]
    );
    assert_eq!(snap["scoring"]["rejected"], 0);
    // Every frame on a's veth belongs to these flows. A flow is exported at its second FIN, so
    // the connection's last ACK (absorbed into the closed flow) is the only packet a record
    // may lack.
    let wire = (after.rx_packets - before.rx_packets) + (after.tx_packets - before.tx_packets);
    assert!(
        (packets..=packets + u64::from(CONNECTIONS)).contains(&wire),
        "records hold {packets} packets, the veth moved {wire}"
    );
}

#[test]
fn tcp_connections_ipv4_both_directions() {
    connections_both_directions(false);
}

#[test]
fn tcp_connections_ipv6_both_directions() {
    connections_both_directions(true);
}
