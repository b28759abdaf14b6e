//! Live and offline feature vectors agree: a real capture is replayed through the XDP path in
//! the lab while the agent writes the flows it exports (`--flows-out`), the very frames sent
//! are saved as a pcap, and `netanom features --pcap` is run on that file. Every flow must be
//! in both outputs with equal counts (packets, bytes, header lengths, flag counts, windows,
//! lengths: exactly); timing features (durations, inter-arrival times, rates) agree within
//! the tolerance stated in `timing_close`. The saved pcap carries each frame's actual send
//! time, so the comparison is kernel clock against sender clock, whatever the replay pacing.

use std::{
    collections::BTreeMap,
    fs::File,
    process::Command,
    time::{Duration, Instant},
};

use netanom_lab::{
    Agent, Pair, RawSender, TempDir, agent_bin,
    files::{Row, read_csv},
    pcap_path,
    replay::{AddressMap, read_frames, rewrite_frame},
    require_root, run_to_end, sweep_leftovers,
};
use pcap_file::pcap::{PcapPacket, PcapWriter};

fn is_timing(column: &str) -> bool {
    column.contains("Duration") || column.contains("IAT") || column.ends_with("/s")
}

/// Durations and inter-arrival times (µs): within 20 ms or 5 %, whichever is larger. Rates:
/// within 10 %, checked only for flows that lasted at least 0.5 s (a rate over a few
/// microseconds says nothing about replay accuracy).
fn timing_close(column: &str, live: f64, offline: f64, offline_duration_us: f64) -> bool {
    if column.ends_with("/s") {
        return offline_duration_us < 500_000.0 || (live - offline).abs() <= 0.10 * offline.abs().max(1e-9);
    }
    (live - offline).abs() <= f64::max(20_000.0, 0.05 * offline.abs())
}

/// Groups rows by flow identity (several flows may share a 5-tuple over time).
fn by_flow(rows: Vec<Row>) -> BTreeMap<(String, usize), Row> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    rows.into_iter()
        .map(|r| {
            let id = r["Flow ID"].clone();
            let n = seen.entry(id.clone()).or_default();
            *n += 1;
            ((id, *n), r)
        })
        .collect()
}

/// Replays `capture` (paced by its own timestamps if `timed`) and compares. Returns the
/// number of flows compared.
/// Pace of untimed replays: 20,000 frames/s.
const REPLAY_INTERVAL: Duration = Duration::from_micros(50);

fn replay_and_compare(capture: &str, timed: bool) -> Option<usize> {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP)");
        return None;
    }
    let Some(path) = pcap_path(capture) else {
        eprintln!("skipped: {capture} not found (set NETANOM_SHARED)");
        return None;
    };
    sweep_leftovers().unwrap();
    let dir = TempDir::new(capture.rsplit('/').next().unwrap_or("cap"));
    let (live_csv, sent_pcap, offline_csv) = (
        dir.0.join("live.csv"),
        dir.0.join("sent.pcap"),
        dir.0.join("offline.csv"),
    );

    let lab = Pair::new("parity").unwrap();
    let frames = read_frames(&path).unwrap();
    let map = AddressMap::from_capture(frames.iter().map(|(_, f)| f.as_slice()));
    let rewritten: Vec<(Duration, Vec<u8>)> = frames
        .iter()
        .filter_map(|(ts, f)| rewrite_frame(f, &map, &lab.b_side.ep, &lab.a_side.ep).map(|g| (*ts, g)))
        .collect();
    assert!(!rewritten.is_empty());

    let iface = lab.a_side.iface.clone();
    let agent = Agent::start(
        &lab.a,
        &[
            "--iface",
            &iface,
            "--no-egress",
            "--flows-out",
            live_csv.to_str().unwrap(),
        ],
    )
    .unwrap();
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let before = lab.b.iface_stats(&lab.b_side.iface).unwrap();
    let mut writer = PcapWriter::new(File::create(&sent_pcap).unwrap()).unwrap();
    let (t0, base) = (Instant::now(), rewritten[0].0);
    let mut sent = 0usize;
    for (i, (ts, f)) in rewritten.iter().enumerate() {
        let due = if timed {
            ts.saturating_sub(base)
        } else {
            // Untimed replays still go at a bounded rate: a veth with XDP queues at most 256
            // frames for its receiver, and drops the rest when the receiving CPU is busy.
            REPLAY_INTERVAL * i as u32
        };
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        // Only frames the interface accepted are part of the comparison. The pcap records
        // when each frame was really sent (replay pacing is only as good as the scheduler),
        // so timing features compare the kernel's clock with the sender's, not the capture's.
        let at = if timed { base + t0.elapsed() } else { *ts };
        if tx.try_send(f).is_ok() {
            writer
                .write_packet(&PcapPacket::new(at, f.len() as u32, f))
                .unwrap();
            sent += 1;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "replay is bounded in time"
        );
    }
    drop(writer);
    std::thread::sleep(Duration::from_millis(300));
    // A frame the veth accepted but dropped before XDP saw it is in the pcap and not live.
    let dropped = lab.b.iface_stats(&lab.b_side.iface).unwrap().tx_dropped - before.tx_dropped;
    assert_eq!(
        dropped, 0,
        "the veth dropped {dropped} frames before XDP (the machine was too busy to keep up with \
         the replay): the comparison would be meaningless"
    );
    let (code, _, stderr) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "{stderr:?}");

    let mut c = Command::new(agent_bin());
    c.args([
        "features",
        "--pcap",
        sent_pcap.to_str().unwrap(),
        "--out",
        offline_csv.to_str().unwrap(),
    ]);
    let (code, _, err) = run_to_end(c);
    assert_eq!(code, Some(0), "{err}");

    let live = by_flow(read_csv(&live_csv));
    let offline = by_flow(read_csv(&offline_csv));
    eprintln!(
        "{capture}: {sent} frames sent, {} live flows, {} offline flows",
        live.len(),
        offline.len()
    );
    let missing: Vec<_> = offline
        .keys()
        .filter(|k| !live.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = live
        .keys()
        .filter(|k| !offline.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing live: {missing:?}, extra live: {extra:?}"
    );
    let mut worst_timing = (0.0f64, String::new());
    for (k, off) in &offline {
        let liv = &live[k];
        let duration: f64 = off["Flow Duration"].parse().unwrap();
        for (col, ov) in off {
            if col == "Timestamp" {
                continue;
            }
            let lv = &liv[col];
            if is_timing(col) {
                if timed {
                    let (l, o): (f64, f64) = (lv.parse().unwrap(), ov.parse().unwrap());
                    assert!(
                        timing_close(col, l, o, duration),
                        "{k:?} {col}: live {l} offline {o}"
                    );
                    if !col.ends_with("/s") && (l - o).abs() > worst_timing.0 {
                        worst_timing = ((l - o).abs(), col.clone());
                    }
                }
            } else {
                assert_eq!(lv, ov, "{k:?} {col}");
            }
        }
    }
    if timed {
        eprintln!(
            "largest timing difference: {:.0} µs ({})",
            worst_timing.0, worst_timing.1
        );
    }
    Some(live.len())
}

#[test]
fn benign_capture_with_original_timing() {
    if let Some(n) = replay_and_compare("benign-misc/tcpreplay_test.pcap", true) {
        assert!(n >= 20, "{n} flows");
    }
}

#[test]
fn syn_ack_reflection_capture_counts() {
    if let Some(n) = replay_and_compare("attacks/ddos-stopddos/amp.TCP.reflection.SYNACK.pcap", false) {
        assert!(n > 7_000, "{n} flows");
    }
}
