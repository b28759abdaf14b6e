//! Tests of reading captures and turning them into flows: exact features, timeouts and
//! closed flows, malformed frames, truncated and corrupt files, pcapng timestamps, and every
//! shared capture against its manifest.
use netanom_common::{
    Event,
    flow::{EndReason, FlowTimeouts, TCP_ACK, TCP_SYN},
};
use pcap_file::DataLink;

use super::{testing::*, *};
use std::path::Path;

use crate::features::{FlowIdentity, flow_features, identity::flow_id_string};

#[test]
fn synthetic_tcp_exchange_gives_exact_features() {
    let dir = TempDir::new("tcp");
    let path = dir.path("exchange.pcap");
    write_pcap(&path, DataLink::ETHERNET, &tcp_exchange());
    let (s, recs) = run(&path, &ExtractOptions::default());
    assert!(s.stopped.is_none());
    assert_eq!(
        (s.packets_read, s.table.packets, s.skipped_non_ip, s.malformed()),
        (8, 8, 0, 0)
    );
    assert_eq!(recs.len(), 1, "one flow, exported once at the second FIN");
    assert_eq!(s.table.exported.fin, 1);
    assert_eq!(s.table.absorbed, 1, "the last ACK joins the closed flow");
    assert_eq!(packets(&recs) + s.table.absorbed, s.table.packets);
    let r = &recs[0];
    assert_eq!(r.reason, EndReason::Fin as u32);
    let id = FlowIdentity::of_record(r);
    assert_eq!(flow_id_string(&id), "192.168.1.20-192.168.1.10-40000-80-6");
    assert_eq!(id.first_ts, T0 * 1_000_000_000);
    let want = [
        ("Flow Duration", 10_000.0),
        ("Total Fwd Packet", 4.0),
        ("Total Bwd packets", 3.0),
        ("Total Length of Fwd Packet", 100.0),
        ("Total Length of Bwd Packet", 300.0),
        ("Fwd Packet Length Std", 50.0),
        ("Flow Bytes/s", 40_000.0),
        ("Flow Packets/s", 700.0),
        ("Flow IAT Max", 4_000.0),
        ("Fwd IAT Total", 9_000.0),
        ("Bwd IAT Mean", 4_500.0),
        ("Fwd Header Length", 80.0),
        ("Bwd Header Length", 60.0),
        ("Packet Length Max", 300.0),
        ("ACK Flag Count", 6.0),
        ("SYN Flag Count", 2.0),
        ("FIN Flag Count", 2.0),
        ("Down/Up Ratio", 0.75),
        ("FWD Init Win Bytes", 64240.0),
        ("Bwd Init Win Bytes", 29200.0),
        ("Fwd Seg Size Min", 20.0),
        ("fwd_frame_bytes", 4.0 * 54.0 + 100.0),
        ("bwd_frame_bytes", 3.0 * 54.0 + 300.0),
        ("protocol", 6.0),
    ];
    for (name, v) in want {
        assert_eq!(feat(r, name), v, "{name}");
    }
}

#[test]
fn timeouts_and_closed_flows() {
    let t = FlowTimeouts {
        active_ns: 10_000_000_000,
        idle_ns: 3_000_000_000,
        closed_linger_ns: 2_000_000_000,
    };
    let opts = ExtractOptions {
        timeouts: t,
        ..ExtractOptions::default()
    };
    let s = 1_000_000u64; // µs per second
    let mut frames = vec![
        // UDP: 0 s, 1 s, then 5 s (idle 4 s > 3 s: exported, new flow), then every 2 s up
        // to 17 s (12 s after the restart at 5 s: active timeout at 17 s).
        (0, udp(CLI, 1000, SRV, 2000, 10)),
        (s, udp(SRV, 2000, CLI, 1000, 10)),
        (5 * s, udp(CLI, 1000, SRV, 2000, 10)),
    ];
    for k in 1..=6 {
        frames.push(((5 + 2 * k) * s, udp(CLI, 1000, SRV, 2000, 10)));
    }
    // TCP reset at 1 s, a straggler at 2 s (absorbed), another at 5 s (closed flow forgotten
    // after 2 s: starts a new flow, flushed at the end).
    frames.push((s / 2, tcp(CLI, 40001, SRV, 80, TCP_SYN, 0)));
    frames.push((
        s,
        tcp(SRV, 80, CLI, 40001, netanom_common::flow::TCP_RST | TCP_ACK, 0),
    ));
    frames.push((2 * s, tcp(CLI, 40001, SRV, 80, TCP_ACK, 0)));
    frames.push((5 * s + 1, tcp(CLI, 40001, SRV, 80, TCP_ACK, 0)));
    // A second UDP flow, live at the end with the restarted one.
    frames.push((16 * s, udp(CLI, 1001, SRV, 2000, 10)));
    frames.sort_by_key(|(t, _)| *t);
    let dir = TempDir::new("timeouts");
    let path = dir.path("t.pcap");
    write_pcap(&path, DataLink::ETHERNET, &frames);
    let (sum, recs) = run(&path, &opts);
    let reasons: Vec<_> = recs
        .iter()
        .map(|r| EndReason::from_u32(r.reason).unwrap())
        .collect();
    use EndReason::*;
    assert_eq!(
        reasons,
        [Rst, IdleTimeout, IdleTimeout, ActiveTimeout, Flush, Flush]
    );
    // The reset TCP flow: SYN and RST; the ACK at 2 s is absorbed, and the one at 5 s finds
    // the closed flow forgotten (quiet > 2 s), starts a new one, idle-exported at 8+ s.
    assert_eq!(
        feat(&recs[0], "Total Fwd Packet") + feat(&recs[0], "Total Bwd packets"),
        2.0
    );
    assert_eq!(sum.table.absorbed, 1);
    assert_eq!(sum.table.closed_expired, 1);
    assert_eq!((recs[2].key.proto, feat(&recs[2], "Total Fwd Packet")), (6, 1.0));
    // The UDP flow before its 4 s gap: one packet each way.
    assert_eq!(feat(&recs[1], "Total Fwd Packet"), 1.0);
    assert_eq!(feat(&recs[1], "Total Bwd packets"), 1.0);
    // Restarted at 5 s: 5, 7, ..., 15 s are six packets; the one at 17 s is 12 s after the
    // start (> 10 s active timeout) and starts afresh.
    assert_eq!(feat(&recs[3], "Total Fwd Packet"), 6.0);
    assert_eq!(recs[3].value.first_ns, (T0 + 5) * 1_000_000_000);
    // The flush is ordered by first packet: port 1001 (16 s) before the restart (17 s).
    assert_eq!(FlowIdentity::of_record(&recs[4]).src_port, 1001);
    assert_eq!(recs[5].value.first_ns, (T0 + 17) * 1_000_000_000);
    assert_eq!(packets(&recs) + sum.table.absorbed, sum.table.packets);
    assert_eq!(sum.table.packets, 14);
}

#[test]
fn malformed_and_non_ip_frames_are_counted_and_skipped() {
    let mut short = tcp(CLI, 1, SRV, 2, TCP_SYN, 0);
    short.truncate(14 + 10); // IPv4 header cut short
    let mut bad_ihl = udp(CLI, 1, SRV, 2, 4);
    bad_ihl[14] = 0x42;
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let frames = vec![
        (0, udp(CLI, 1000, SRV, 53, 20)),
        (10, short),
        (20, bad_ihl),
        (30, arp),
        (40, vec![0u8; 6]),
        (50, udp(SRV, 53, CLI, 1000, 60)),
    ];
    let dir = TempDir::new("malformed");
    let path = dir.path("m.pcap");
    write_pcap(&path, DataLink::ETHERNET, &frames);
    let (s, recs) = run(&path, &ExtractOptions::default());
    assert_eq!(s.packets_read, 6);
    assert_eq!(s.table.packets, 2);
    assert_eq!(s.skipped_non_ip, 1);
    assert_eq!(s.skipped_malformed[Event::Truncated as usize], 2);
    assert_eq!(s.skipped_malformed[Event::BadIpHeader as usize], 1);
    assert_eq!(recs.len(), 1);
    assert_eq!(feat(&recs[0], "Total Bwd packets"), 1.0);
    let line = s.line();
    assert!(
        line.contains("6 packets read, 2 IP packets accounted, 4 skipped (1 not IP, 3 malformed"),
        "{line}"
    );
    assert!(line.contains("truncated 2, bad_ip_header 1"), "{line}");
}

#[test]
fn unsupported_link_type_is_named() {
    let dir = TempDir::new("linktype");
    let path = dir.path("raw.pcap");
    write_pcap(&path, DataLink::RAW, &[(0, vec![0x45; 40])]);
    let e = Capture::open(&path).err().expect("a RAW capture is refused");
    assert!(
        matches!(e, CaptureError::UnsupportedLinkType { linktype: 101, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("link type 101 (LINKTYPE_RAW)") && msg.contains("LINKTYPE_ETHERNET = 1"),
        "{msg}"
    );
}

#[test]
fn truncated_file_keeps_the_complete_packets_and_fails() {
    let dir = TempDir::new("trunc");
    let full = dir.path("full.pcap");
    write_pcap(&full, DataLink::ETHERNET, &tcp_exchange());
    let bytes = std::fs::read(&full).unwrap();
    // The last record is 16 + 54 bytes: cut inside its data, then inside its header.
    for (cut, name) in [
        (bytes.len() - 20, "cut-data.pcap"),
        (bytes.len() - 60, "cut-header.pcap"),
    ] {
        let path = dir.path(name);
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let (s, recs) = run(&path, &ExtractOptions::default());
        assert_eq!(s.packets_read, 7, "{name}");
        match &s.stopped {
            Some(CaptureError::Truncated {
                packets: 7, offset, ..
            }) => assert_eq!(*offset, bytes.len() as u64 - 70),
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(recs.len(), 1, "the FIN-ended flow is still exported");
        let msg = s.stopped.as_ref().unwrap().to_string();
        assert!(
            msg.contains("truncated") && msg.contains("7 packets were processed"),
            "{msg}"
        );
        // The command writes the rows, then fails.
        let out = dir.path("out.csv");
        let args = crate::cli::features::FeaturesArgs {
            pcap: path,
            out: Some(out.clone()),
            active_timeout: std::time::Duration::from_secs(120),
            idle_timeout: std::time::Duration::from_secs(30),
        };
        assert!(matches!(
            crate::cli::features::run(&args),
            Err(CaptureError::Truncated { packets: 7, .. })
        ));
        assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
    }
    // An absurd record length is corruption, not truncation.
    let mut bad = bytes.clone();
    let last = bytes.len() - 70;
    bad[last + 8..last + 12].copy_from_slice(&0x4000_0000u32.to_le_bytes());
    let path = dir.path("corrupt.pcap");
    std::fs::write(&path, &bad).unwrap();
    let (s, _) = run(&path, &ExtractOptions::default());
    assert!(
        matches!(s.stopped, Some(CaptureError::Corrupt { packets: 7, .. })),
        "{:?}",
        s.stopped
    );
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = TempDir::new("bad");
    let open = |p: &Path| Capture::open(p).err().expect("refused");
    assert!(matches!(open(&dir.0), CaptureError::IsDirectory { .. }));
    assert!(matches!(
        open(&dir.path("missing.pcap")),
        CaptureError::NotFound { .. }
    ));
    let write = |name: &str, b: &[u8]| {
        let p = dir.path(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    assert!(matches!(
        open(&write("empty.pcap", b"")),
        CaptureError::Empty { .. }
    ));
    let e = open(&write("garbage.pcap", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(e.to_string().contains("47 45 54 20"), "{e}");
    let e = open(&write("x.pcap.gz", &[0x1f, 0x8b, 8, 0, 0, 0]));
    assert!(e.to_string().contains("gzip"), "{e}");
    let e = open(&write("tiny.pcap", &[0xd4, 0xc3]));
    assert!(matches!(e, CaptureError::NotCapture { .. }), "{e}");
    let e = open(&write("short-header.pcap", &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]));
    assert!(
        matches!(
            e,
            CaptureError::BadHeader {
                format: CaptureFormat::Pcap,
                ..
            }
        ),
        "{e}"
    );
    let e = open(&write(
        "short-ng.pcapng",
        &[0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0],
    ));
    assert!(
        matches!(
            e,
            CaptureError::BadHeader {
                format: CaptureFormat::PcapNg,
                ..
            }
        ),
        "{e}"
    );
    for e in [open(&dir.0), open(&dir.path("missing.pcap"))] {
        let m = e.to_string();
        assert!(
            !m.contains('\n') && m.contains(';'),
            "one paragraph with advice: {m}"
        );
    }
}

#[test]
fn pcapng_timestamps_follow_the_interface_resolution() {
    let dir = TempDir::new("ng");
    let frames = tcp_exchange();
    for resol in [None, Some(6), Some(9)] {
        let path = dir.path("x.pcapng");
        write_pcapng(&path, resol, DataLink::ETHERNET, &frames);
        let (s, recs) = run(&path, &ExtractOptions::default());
        assert_eq!(s.format, CaptureFormat::PcapNg);
        assert_eq!(s.packets_read, 8);
        assert!(s.stopped.is_none());
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].value.first_ns, T0 * 1_000_000_000, "{resol:?}");
        assert_eq!(feat(&recs[0], "Flow Duration"), 10_000.0, "{resol:?}");
    }
    // Truncated pcapng.
    let path = dir.path("x.pcapng");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let (s, _) = run(&path, &ExtractOptions::default());
    assert!(
        matches!(s.stopped, Some(CaptureError::Truncated { packets: 7, .. })),
        "{:?}",
        s.stopped
    );
    // Non-Ethernet interface: reading stops there (what came before would be kept).
    write_pcapng(&path, None, DataLink::LINUX_SLL, &frames);
    let (s, recs) = run(&path, &ExtractOptions::default());
    assert!(
        matches!(
            s.stopped,
            Some(CaptureError::UnsupportedLinkType { linktype: 113, .. })
        ),
        "{:?}",
        s.stopped
    );
    assert_eq!((s.packets_read, recs.len()), (0, 0));
}

/// Every capture of the shared manifest: the packet count matches, and every IP packet is
/// in exactly one exported flow or was absorbed by a closed one.
#[test]
fn shared_captures_match_the_manifest() {
    let dir = shared_dir().join("datasets/pcaps");
    let Ok(manifest) = std::fs::read_to_string(dir.join("manifest.csv")) else {
        eprintln!(
            "skipped: {} not found (set NETANOM_SHARED)",
            dir.join("manifest.csv").display()
        );
        return;
    };
    let mut lines = manifest.lines();
    let header: Vec<_> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let (file_col, packets_col) = (col("file"), col("packets"));
    let mut seen_tcpreplay = false;
    for line in lines {
        let f: Vec<_> = line.split(',').collect();
        let path = dir.join(f[file_col]);
        if !path.exists() {
            eprintln!("skipped: {} absent", path.display());
            continue;
        }
        let want: u64 = f[packets_col].parse().unwrap();
        let (s, recs) = run(&path, &ExtractOptions::default());
        assert!(s.stopped.is_none(), "{}: {:?}", path.display(), s.stopped);
        assert_eq!(s.packets_read, want, "{}", path.display());
        assert_eq!(s.table.packets + s.skipped_non_ip + s.malformed(), s.packets_read);
        assert_eq!(
            packets(&recs) + s.table.absorbed,
            s.table.packets,
            "{}",
            path.display()
        );
        assert_eq!(recs.len() as u64, s.table.exported.total());
        for r in &recs {
            assert!(flow_features(&r.key, &r.value).iter().all(|x| x.is_finite()));
        }
        if f[file_col].ends_with("tcpreplay_test.pcap") {
            seen_tcpreplay = true;
            assert_eq!(s.packets_read, 179);
        }
    }
    assert!(seen_tcpreplay || !dir.join("benign-misc/tcpreplay_test.pcap").exists());
}

#[test]
fn frame_stream_merges_files_by_time_and_never_goes_back() {
    let dir = TempDir::new("stream");
    let (a, b) = (dir.path("a.pcap"), dir.path("b.pcap"));
    let f = |port: u16| udp(CLI, port, SRV, 53, 10);
    // a: 0, 30, 20 (back in time); b: 10, 30 (a tie with a's second frame), then not IP.
    write_pcap(&a, DataLink::ETHERNET, &[(0, f(1)), (30, f(2)), (20, f(3))]);
    let mut arp = f(9);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    write_pcap(&b, DataLink::ETHERNET, &[(10, f(4)), (30, f(5)), (40, arp)]);
    let mut s = FrameStream::new(vec![Capture::open(&a).unwrap(), Capture::open(&b).unwrap()]);
    let base = T0 * 1_000_000_000;
    assert_eq!(s.peek_ts_ns(), Some(base));
    let mut got = Vec::new();
    while let Some((m, now)) = s.next_packet() {
        got.push((m.sport, (now - base) / 1_000));
    }
    // Ties go to the file named first; the frame stamped 20 after 30 is accounted at 30.
    assert_eq!(got, [(1, 0), (4, 10), (2, 30), (3, 30), (5, 30)]);
    let c = *s.counts();
    assert_eq!((c.read, c.ip_packets, c.non_ip, c.out_of_order), (6, 5, 1, 1));
    // The last frame (not IP) still moves the clock.
    assert_eq!(c.last_ts_ns, Some(base + 40_000));
    let inputs = s.finish();
    assert_eq!((inputs[0].frames, inputs[1].frames), (3, 3));
    assert!(inputs.iter().all(|i| i.stopped.is_none()));
}
