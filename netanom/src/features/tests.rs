//! Tests of the flow feature schema, vectors, identities and CSV form.
use std::{net::IpAddr, path::PathBuf};

use netanom_common::{
    flow::{
        self, EndReason, FlowKey, FlowRecord, FlowTimeouts, FlowValue, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN,
        Verdict,
    },
    parse::{FAMILY_V4, FAMILY_V6, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, PacketMeta},
};

use super::{csv::*, flow::*, identity::*};

fn tcp(src: u32, sport: u16, dst: u32, dport: u16, flags: u8, payload: u16, hdr: u16) -> PacketMeta {
    PacketMeta {
        family: FAMILY_V4,
        proto: IPPROTO_TCP,
        src: [src, 0, 0, 0],
        dst: [dst, 0, 0, 0],
        sport,
        dport,
        tcp_flags: flags,
        window: if sport == 80 { 29200 } else { 64240 },
        l4_hdr_len: hdr,
        payload_len: payload,
        frame_len: 14 + 20 + hdr + payload,
        ..PacketMeta::default()
    }
}

/// Runs packets `(meta, µs)` through the shared flow code, as the kernel would.
fn run(pkts: &[(PacketMeta, u64)]) -> (FlowKey, FlowValue) {
    let t = FlowTimeouts::DEFAULT;
    let (key, _) = FlowKey::of(&pkts[0].0);
    let mut v = FlowValue::default();
    for (i, (m, us)) in pkts.iter().enumerate() {
        let (k, lo) = FlowKey::of(m);
        assert_eq!(k, key);
        let now = 1_500_000_000_000_000_000 + us * 1000;
        if i == 0 {
            flow::start(&mut v, m, now, lo);
        } else {
            assert_ne!(flow::account(&mut v, m, now, lo, &t), Verdict::Restart);
        }
    }
    (key, v)
}

fn get(f: &[f64], name: &str) -> f64 {
    f[feature_index(name).unwrap_or_else(|| panic!("no feature {name}"))]
}

// Client 10.0.0.9:40000 (higher address, so the forward side is the key's upper endpoint),
// server 10.0.0.1:80.
const C: u32 = 0x0a00_0009;
const S: u32 = 0x0a00_0001;

fn handshake_data_fin() -> Vec<(PacketMeta, u64)> {
    vec![
        (tcp(C, 40000, S, 80, TCP_SYN, 0, 40), 0),
        (tcp(S, 80, C, 40000, TCP_SYN | TCP_ACK, 0, 40), 1_000),
        (tcp(C, 40000, S, 80, TCP_ACK, 0, 32), 2_000),
        (tcp(C, 40000, S, 80, TCP_ACK | TCP_PSH, 100, 32), 3_000),
        (tcp(S, 80, C, 40000, TCP_ACK | TCP_PSH, 300, 32), 5_000),
        (tcp(C, 40000, S, 80, TCP_ACK | TCP_FIN, 0, 32), 9_000),
        (tcp(S, 80, C, 40000, TCP_ACK | TCP_FIN, 0, 32), 10_000),
    ]
}

#[test]
fn schema_is_consistent() {
    assert_eq!(N_FLOW_FEATURES, 67);
    let mut names: Vec<_> = FLOW_FEATURES.iter().map(|f| f.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), N_FLOW_FEATURES, "duplicate feature names");
    for f in FLOW_FEATURES {
        assert!(!f.unit.is_empty() && !f.definition.is_empty(), "{}", f.name);
        assert!(
            !f.definition.contains('|'),
            "{}: '|' breaks the Markdown table",
            f.name
        );
        // Our own features are snake_case, CIC ones keep the CIC spelling.
        let ours = f.name.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_');
        assert_eq!(ours, f.cic == CicMatch::NotInCic, "{}", f.name);
    }
    // The NotInCic features come last, after every CIC one.
    let first_ours = FLOW_FEATURES
        .iter()
        .position(|f| f.cic == CicMatch::NotInCic)
        .unwrap();
    assert!(
        FLOW_FEATURES[first_ours..]
            .iter()
            .all(|f| f.cic == CicMatch::NotInCic)
    );
    assert_eq!(FLOW_FEATURES[0].name, "Flow Duration");
}

#[test]
fn hand_computed_tcp_flow() {
    let (key, v) = run(&handshake_data_fin());
    let f = flow_features(&key, &v);
    let expect = [
        ("Flow Duration", 10_000.0),
        ("Total Fwd Packet", 4.0),
        ("Total Bwd packets", 3.0),
        ("Total Length of Fwd Packet", 100.0),
        ("Total Length of Bwd Packet", 300.0),
        ("Fwd Packet Length Max", 100.0),
        ("Fwd Packet Length Min", 0.0),
        ("Fwd Packet Length Mean", 25.0),
        // Values 0, 0, 100, 0: mean 25, Σ(x − 25)² = 7500, / 3.
        ("Fwd Packet Length Std", 2500.0f64.sqrt()),
        ("Bwd Packet Length Max", 300.0),
        ("Bwd Packet Length Min", 0.0),
        ("Bwd Packet Length Mean", 100.0),
        // 0, 300, 0: Σ(x − 100)² = 60000, / 2.
        ("Bwd Packet Length Std", 30_000.0f64.sqrt()),
        ("Flow Bytes/s", 400.0 / 0.01),
        ("Flow Packets/s", 7.0 / 0.01),
        // Gaps 1000, 1000, 1000, 2000, 4000, 1000: mean 10000/6.
        ("Flow IAT Mean", 10_000.0 / 6.0),
        ("Flow IAT Max", 4_000.0),
        ("Flow IAT Min", 1_000.0),
        // Forward at 0, 2000, 3000, 9000: gaps 2000, 1000, 6000.
        ("Fwd IAT Total", 9_000.0),
        ("Fwd IAT Mean", 3_000.0),
        ("Fwd IAT Std", (14_000_000.0f64 / 2.0).sqrt()),
        ("Fwd IAT Max", 6_000.0),
        ("Fwd IAT Min", 1_000.0),
        // Backward at 1000, 5000, 10000: gaps 4000, 5000.
        ("Bwd IAT Total", 9_000.0),
        ("Bwd IAT Mean", 4_500.0),
        ("Bwd IAT Std", 500_000.0f64.sqrt()),
        ("Bwd IAT Max", 5_000.0),
        ("Bwd IAT Min", 4_000.0),
        ("Fwd PSH Flags", 1.0),
        ("Bwd PSH Flags", 1.0),
        ("Fwd URG Flags", 0.0),
        ("Fwd RST Flags", 0.0),
        ("Fwd Header Length", 40.0 + 3.0 * 32.0),
        ("Bwd Header Length", 40.0 + 2.0 * 32.0),
        ("Fwd Packets/s", 400.0),
        ("Bwd Packets/s", 300.0),
        ("Packet Length Min", 0.0),
        ("Packet Length Max", 300.0),
        ("Packet Length Mean", 400.0 / 7.0),
        // Σx² = 100000, n = 7: (7·100000 − 400²) / (7·6).
        ("Packet Length Variance", 540_000.0 / 42.0),
        ("Packet Length Std", (540_000.0f64 / 42.0).sqrt()),
        ("FIN Flag Count", 2.0),
        ("SYN Flag Count", 2.0),
        ("RST Flag Count", 0.0),
        ("PSH Flag Count", 2.0),
        ("ACK Flag Count", 6.0),
        ("CWR Flag Count", 0.0),
        ("Down/Up Ratio", 0.75),
        ("Average Packet Size", 400.0 / 7.0),
        ("Fwd Segment Size Avg", 25.0),
        ("Bwd Segment Size Avg", 100.0),
        ("FWD Init Win Bytes", 64240.0),
        ("Bwd Init Win Bytes", 29200.0),
        ("Fwd Act Data Pkts", 1.0),
        ("Fwd Seg Size Min", 32.0),
        ("ICMP Code", -1.0),
        ("ICMP Type", -1.0),
        ("protocol", 6.0),
        ("fwd_frame_bytes", 4.0 * 34.0 + 40.0 + 3.0 * 32.0 + 100.0),
        ("bwd_frame_bytes", 3.0 * 34.0 + 40.0 + 2.0 * 32.0 + 300.0),
        ("bwd_act_data_pkts", 1.0),
        ("bwd_seg_size_min", 32.0),
    ];
    for (name, want) in expect {
        let got = get(&f, name);
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{name}: got {got}, want {want}"
        );
    }
    // Flow IAT Std: gaps 1000 ×4, 2000, 4000 → Σ = 10000, Σx² = 24e6.
    let want = ((6.0 * 24e6 - 1e8) / 30.0f64).sqrt();
    assert!((get(&f, "Flow IAT Std") - want).abs() < 1e-6);
    assert!(f.iter().all(|x| x.is_finite()));
}

#[test]
fn identity_is_oriented_to_the_initiator() {
    let pkts = handshake_data_fin();
    let (key, v) = run(&pkts);
    // The client has the higher address: the key's lower endpoint is the server.
    assert_eq!(key.addr_lo[0], S);
    assert_eq!(v.fwd_is_lo, 0);
    let id = FlowIdentity::new(&key, &v, Some(EndReason::Fin));
    assert_eq!(id.src_ip, "10.0.0.9".parse::<IpAddr>().unwrap());
    assert_eq!((id.src_port, id.dst_port, id.protocol), (40000, 80, 6));
    assert_eq!(id.dst_ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(flow_id_string(&id), "10.0.0.9-10.0.0.1-40000-80-6");
    assert_eq!(id.last_ts - id.first_ts, 10_000_000);

    // Started by the server side instead: the same key, the other orientation.
    let mut rev = pkts.clone();
    rev.remove(0);
    let (key2, v2) = run(&rev);
    assert_eq!(key2, key);
    let id2 = FlowIdentity::new(&key2, &v2, None);
    assert_eq!(flow_id_string(&id2), "10.0.0.1-10.0.0.9-80-40000-6");
    let f = flow_features(&key2, &v2);
    assert_eq!(get(&f, "Total Fwd Packet"), 3.0);
    assert_eq!(get(&f, "FWD Init Win Bytes"), 29200.0);
}

#[test]
fn one_packet_and_zero_duration_flows_have_finite_zero_rates() {
    let m = PacketMeta {
        family: FAMILY_V4,
        proto: IPPROTO_UDP,
        src: [1, 0, 0, 0],
        dst: [2, 0, 0, 0],
        sport: 5000,
        dport: 53,
        l4_hdr_len: 8,
        payload_len: 40,
        frame_len: 82,
        ..PacketMeta::default()
    };
    let (key, v) = run(&[(m, 0)]);
    let f = flow_features(&key, &v);
    assert!(f.iter().all(|x| x.is_finite()));
    for name in [
        "Flow Duration",
        "Flow Bytes/s",
        "Flow Packets/s",
        "Fwd Packets/s",
        "Flow IAT Mean",
    ] {
        assert_eq!(get(&f, name), 0.0, "{name}");
    }
    assert_eq!(get(&f, "Packet Length Std"), 0.0);
    assert_eq!(get(&f, "Packet Length Mean"), 40.0);
    assert_eq!(get(&f, "Bwd Packet Length Min"), 0.0);
    assert_eq!(get(&f, "Down/Up Ratio"), 0.0);
    assert_eq!(get(&f, "Fwd Header Length"), 8.0);
    // Two packets in the same microsecond: duration 0, rates 0, one gap of 0.
    let (key, v) = run(&[(m, 0), (m, 0)]);
    let f = flow_features(&key, &v);
    assert_eq!(get(&f, "Flow Bytes/s"), 0.0);
    assert_eq!(get(&f, "Total Fwd Packet"), 2.0);
    assert_eq!(get(&f, "Fwd Act Data Pkts"), 2.0);
    // A value of all zeros (nothing accounted) is still safe.
    assert!(
        flow_features(&key, &FlowValue::default())
            .iter()
            .all(|x| x.is_finite())
    );
}

#[test]
fn icmp_type_and_code_and_ipv6_identity() {
    let m = PacketMeta {
        family: FAMILY_V6,
        proto: IPPROTO_ICMPV6,
        src: [0x2001_0db8, 0, 0, 1],
        dst: [0x2001_0db8, 0, 0, 2],
        icmp_type: 128,
        icmp_code: 0,
        l4_hdr_len: 8,
        payload_len: 56,
        frame_len: 118,
        ..PacketMeta::default()
    };
    let (key, v) = run(&[(m, 0)]);
    let f = flow_features(&key, &v);
    assert_eq!((get(&f, "ICMP Type"), get(&f, "ICMP Code")), (128.0, 0.0));
    let id = FlowIdentity::new(&key, &v, Some(EndReason::Flush));
    assert_eq!(flow_id_string(&id), "2001:db8::1-2001:db8::2-0-0-58");
}

#[test]
fn csv_header_and_row_line_up() {
    let (key, value) = run(&handshake_data_fin());
    let rec = FlowRecord {
        key,
        reason: EndReason::Fin as u32,
        value,
        ..FlowRecord::default()
    };
    let header = csv_header();
    let row = csv_row(&rec);
    let h: Vec<_> = header.split(',').collect();
    let r: Vec<_> = row.split(',').collect();
    assert_eq!(h.len(), r.len());
    assert_eq!(h.len(), 7 + N_FLOW_FEATURES + 1);
    assert_eq!(
        &r[..6],
        [
            "10.0.0.9-10.0.0.1-40000-80-6",
            "10.0.0.9",
            "40000",
            "10.0.0.1",
            "80",
            "6"
        ]
    );
    assert_eq!(r[6], "2017-07-14 02:40:00.000000");
    assert_eq!(*r.last().unwrap(), "fin");
    let col = |name: &str| r[h.iter().position(|c| *c == name).unwrap()];
    assert_eq!(
        col("Flow Duration"),
        "10000",
        "integers print without a decimal point"
    );
    assert_eq!(col("Down/Up Ratio"), "0.75");
    assert_eq!(col("ICMP Type"), "-1");
    // Every feature parses back to the value it was written from.
    let f = flow_features(&key, &value);
    for (i, x) in f.iter().enumerate() {
        assert_eq!(r[7 + i].parse::<f64>().unwrap(), *x, "{}", FLOW_FEATURES[i].name);
    }
    let unknown = FlowRecord { reason: 99, ..rec };
    assert!(csv_row(&unknown).ends_with(",unknown_99"));
}

/// `$NETANOM_SHARED`, or `shared/` next to the workspace.
fn shared_dir() -> PathBuf {
    std::env::var_os("NETANOM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

#[test]
fn cic_named_features_exist_in_the_cic_header() {
    let path = shared_dir().join("datasets/cic-ids2017-improved-sample/data_header_reference.csv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} not found (set NETANOM_SHARED)", path.display());
        return;
    };
    let cols: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    for f in FLOW_FEATURES {
        let present = cols.contains(&f.name);
        match f.cic {
            CicMatch::Exact | CicMatch::Differs(_) => assert!(present, "{} is not a CIC column", f.name),
            CicMatch::NotInCic => assert!(!present, "{} is a CIC column", f.name),
        }
    }
    for c in &CSV_ID_COLUMNS {
        assert!(cols.contains(c), "identity column {c} is not a CIC column");
    }
}

fn features_md() -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("FEATURES.md");
    let text = std::fs::read_to_string(&path).expect("netanom/FEATURES.md exists");
    (path, text)
}

const TABLE_BEGIN: &str = "<!-- BEGIN FLOW_FEATURES: generated from netanom/src/features/flow.rs -->\n";
const TABLE_END: &str = "<!-- END FLOW_FEATURES -->";

/// FEATURES.md carries exactly [`schema_markdown`]. To refresh it after changing the
/// schema: `NETANOM_UPDATE_FEATURES_MD=1 cargo test -p netanom --lib features_md`.
#[test]
fn features_md_has_the_schema_table() {
    let (path, text) = features_md();
    let (Some(b), Some(e)) = (text.find(TABLE_BEGIN), text.find(TABLE_END)) else {
        panic!(
            "{} lacks the {TABLE_BEGIN:?} / {TABLE_END:?} markers",
            path.display()
        );
    };
    let start = b + TABLE_BEGIN.len();
    let table = schema_markdown();
    if text[start..e] != table {
        if std::env::var_os("NETANOM_UPDATE_FEATURES_MD").is_some() {
            let new = format!("{}{table}{}", &text[..start], &text[e..]);
            std::fs::write(&path, new).unwrap();
        } else {
            panic!(
                "the table in {} differs from FLOW_FEATURES; regenerate it with \
                 NETANOM_UPDATE_FEATURES_MD=1 cargo test -p netanom --lib features_md",
                path.display()
            );
        }
    }
}

#[test]
fn features_md_names_every_feature() {
    let (_, text) = features_md();
    for f in FLOW_FEATURES {
        assert!(
            text.contains(&format!("`{}`", f.name)),
            "FEATURES.md does not mention `{}`",
            f.name
        );
    }
}

/// Recomputes derived CIC columns from the totals in the real CIC rows, which pins down the
/// definitions we match (sample std, rates per µs-duration, Down/Up as a fraction, means).
#[test]
fn definitions_agree_with_cic_rows() {
    // The CIC rows are gzipped and we have no gzip reader here; the checks over all 45,919
    // rows were made with a script (FEATURES.md, "How the definitions were pinned down").
    // Here: one real 4-packet DNS flow, BENIGN_5000 id 307514, rebuilt packet by packet.
    // fwd payloads 35, 35; bwd 51, 51; fwd gap 4 µs, bwd gap 47 µs, duration 245 µs.
    let q = |sport: u16, dport: u16, payload: u16| PacketMeta {
        family: FAMILY_V4,
        proto: IPPROTO_UDP,
        src: [if sport == 53 { 3 } else { 5 }, 0, 0, 0],
        dst: [if sport == 53 { 5 } else { 3 }, 0, 0, 0],
        sport,
        dport,
        l4_hdr_len: 8,
        payload_len: payload,
        frame_len: 42 + payload,
        ..PacketMeta::default()
    };
    let (key, v) = run(&[
        (q(58181, 53, 35), 0),
        (q(58181, 53, 35), 4),
        (q(53, 58181, 51), 198),
        (q(53, 58181, 51), 245),
    ]);
    let f = flow_features(&key, &v);
    let cic = [
        ("Flow Duration", 245.0),
        ("Flow Bytes/s", 702_040.816_326_530_7),
        ("Flow Packets/s", 16_326.530_612_244_898),
        ("Flow IAT Mean", 81.666_666_666_666_67),
        ("Flow IAT Std", 99.630_985_809_302),
        ("Flow IAT Max", 194.0),
        ("Flow IAT Min", 4.0),
        ("Fwd IAT Total", 4.0),
        ("Bwd IAT Total", 47.0),
        ("Fwd Header Length", 16.0),
        ("Fwd Packets/s", 8_163.265_306_122_449),
        ("Packet Length Min", 35.0),
        ("Packet Length Max", 51.0),
        ("Packet Length Mean", 43.0),
        ("Packet Length Std", 9.237_604_307_034_012),
        ("Packet Length Variance", 85.333_333_333_333_31),
        ("Down/Up Ratio", 1.0),
        ("Average Packet Size", 43.0),
        ("Fwd Segment Size Avg", 35.0),
        ("Bwd Segment Size Avg", 51.0),
        ("FWD Init Win Bytes", 0.0),
        ("Fwd Seg Size Min", 8.0),
        ("ICMP Code", -1.0),
    ];
    for (name, want) in cic {
        let got = get(&f, name);
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{name}: ours {got}, CIC {want}"
        );
    }
    // CIC says Fwd Act Data Pkts = 1 for this row (first packet not counted); ours is 2.
    assert_eq!(get(&f, "Fwd Act Data Pkts"), 2.0);
}
