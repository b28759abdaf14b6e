//! The capture pipeline end to end on synthetic captures: the embedded bundle, the real
//! detector and responder, alerts to a file.
use std::path::{Path, PathBuf};

use netanom_common::flow::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN};
use pcap_file::DataLink;
use serde_json::Value;

use super::*;
use crate::{
    detect::DetectorName,
    pipeline::config::Config,
    respond::Mode,
    sinks::alerts::AlertTarget,
    sources::capture::{
        CaptureError,
        testing::{TempDir, tcp, udp, write_pcap},
    },
};

const CLIENT: [u8; 4] = [198, 18, 0, 2];
const FLOODER: [u8; 4] = [198, 18, 0, 66];
const SERVER: [u8; 4] = [198, 18, 1, 1];

/// Six seconds: a client's short TCP exchanges every 100 ms throughout, and from 2 s to 4 s a
/// UDP flood at 10,000 packets/s from another source. (µs after `testing::T0`, frame.)
fn flood_capture() -> Vec<(u64, Vec<u8>)> {
    let mut frames = Vec::new();
    for i in 0..60u64 {
        let (t, port) = (i * 100_000, 40_000 + i as u16);
        let exchange = [
            (0, tcp(CLIENT, port, SERVER, 80, TCP_SYN, 0)),
            (300, tcp(SERVER, 80, CLIENT, port, TCP_SYN | TCP_ACK, 0)),
            (600, tcp(CLIENT, port, SERVER, 80, TCP_ACK | TCP_PSH, 200)),
            (900, tcp(SERVER, 80, CLIENT, port, TCP_ACK | TCP_PSH, 1200)),
            (1_200, tcp(CLIENT, port, SERVER, 80, TCP_ACK | TCP_FIN, 0)),
            (1_500, tcp(SERVER, 80, CLIENT, port, TCP_ACK | TCP_FIN, 0)),
            (1_800, tcp(CLIENT, port, SERVER, 80, TCP_ACK, 0)),
        ];
        frames.extend(exchange.into_iter().map(|(dt, f)| (t + dt, f)));
    }
    for i in 0..20_000u64 {
        frames.push((2_000_000 + i * 100 + 7, udp(FLOODER, 5555, SERVER, 9, 64)));
    }
    frames.sort_by_key(|(t, _)| *t);
    frames
}

fn config(mode: Mode, alerts: &Path) -> Config {
    let mut c = Config::default();
    c.agent.mode = mode;
    c.agent.alerts = AlertTarget::File(alerts.to_path_buf());
    c
}

fn run_on(files: &[PathBuf], config: Config) -> CaptureRun {
    run(&CaptureOptions {
        config,
        files: files.to_vec(),
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
}

fn alerts(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn capture(dir: &TempDir) -> PathBuf {
    let path = dir.path("flood.pcap");
    write_pcap(&path, DataLink::ETHERNET, &flood_capture());
    path
}

#[test]
fn mitigate_mode_blocks_the_flood_in_capture_time_and_drops_its_frames() {
    let dir = TempDir::new("pipeline-mitigate");
    let pcap = capture(&dir);
    let out = dir.path("alerts.jsonl");
    let done = run_on(std::slice::from_ref(&pcap), config(Mode::Mitigate, &out));
    assert!(done.stopped.is_empty());
    let s = &done.summary;
    assert_eq!((s.frames, s.ip_packets), (60 * 7 + 20_000, 60 * 7 + 20_000));
    let a = alerts(&out);
    let flood: Vec<&Value> = a.iter().filter(|v| v["src_ip"] == "198.18.0.66").collect();
    assert!(!flood.is_empty(), "{a:?}");
    assert_eq!(flood[0]["alert"]["action"], "blocked");
    assert_eq!(flood[0]["netanom"]["kind"], "source_flood");
    assert_eq!(flood[0]["netanom"]["block"]["prefix"], "198.18.0.66/32");
    // Capture time: the flood starts 2 s after T0 (2023-11-14T22:13:20Z), and is found within
    // the aggregate interval after it starts.
    let ts = flood[0]["timestamp"].as_str().unwrap();
    assert!(ts.starts_with("2023-11-14T22:13:22."), "{ts}");
    assert!(
        a.iter().all(|v| v["src_ip"] != "198.18.0.2"),
        "the client was alerted: {a:?}"
    );
    // Blocked at the end of the aggregate interval it started in (2.5 s): its 15,000 frames
    // after that are dropped before flow accounting.
    assert_eq!(s.dropped.blocked, 15_000, "{:?}", s.dropped);
    assert_eq!(s.blocks, 1);
    assert!(s.findings["source_flood"] >= 1);
    assert!(s.scoring.scored > 60, "every flow is scored");
    // `--stats-format json` prints this object.
    let j = serde_json::to_value(s).unwrap();
    assert_eq!(j["dropped"]["blocked"], 15_000);
    assert_eq!(j["findings"]["source_flood"], s.findings["source_flood"]);
    assert_eq!(j["mode"], "mitigate");
    assert_eq!(j["files"][0]["frames"], s.frames);
}

#[test]
fn answers_to_a_blocked_scanner_are_not_taken_for_the_target_starting_flows() {
    let dir = TempDir::new("pipeline-answers");
    // A SYN scan of 3,000 ports at 1,500 ports/s, each answered with a RST.
    let target = [198, 18, 1, 9];
    let frames: Vec<(u64, Vec<u8>)> = (0..3_000u16)
        .flat_map(|p| {
            let t = u64::from(p) * 666;
            [
                (t, tcp(FLOODER, 61_000, target, p + 1, TCP_SYN, 0)),
                (t + 50, tcp(target, p + 1, FLOODER, 61_000, 0x14, 0)),
            ]
        })
        .collect();
    let pcap = dir.path("scan.pcap");
    write_pcap(&pcap, DataLink::ETHERNET, &frames);
    let out = dir.path("alerts.jsonl");
    let done = run_on(&[pcap], config(Mode::Mitigate, &out));
    let a = alerts(&out);
    assert!(
        a.iter()
            .any(|v| v["src_ip"] == "198.18.0.66" && v["alert"]["action"] == "blocked"),
        "{a:?}"
    );
    assert!(
        a.iter().all(|v| v["src_ip"] != "198.18.1.9"),
        "the scanned host was alerted: {a:?}"
    );
    let d = &done.summary.dropped;
    // Every SYN after the block is dropped, and its RST is not accounted.
    assert!(d.blocked > 1_000, "{d:?}");
    assert_eq!(d.answers_to_dropped, d.blocked, "{d:?}");
}

#[test]
fn observe_mode_drops_nothing() {
    let dir = TempDir::new("pipeline-observe");
    let pcap = capture(&dir);
    let out = dir.path("alerts.jsonl");
    let done = run_on(&[pcap], config(Mode::Observe, &out));
    let a = alerts(&out);
    let flood: Vec<&Value> = a.iter().filter(|v| v["src_ip"] == "198.18.0.66").collect();
    // One alert: while it would still be blocked, the source is not reported again.
    assert_eq!(flood.len(), 1, "{flood:?}");
    assert_eq!(flood[0]["alert"]["action"], "would-block");
    let s = &done.summary;
    assert_eq!((s.dropped.dropped(), s.blocks), (0, 0));
    // Found in each of the flood's four intervals.
    assert_eq!((s.findings["source_flood"], s.would_block), (4, 4));
}

#[test]
fn the_same_capture_gives_byte_identical_alerts() {
    let dir = TempDir::new("pipeline-determinism");
    let pcap = capture(&dir);
    let outs: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let out = dir.path(&format!("alerts-{i}.jsonl"));
            run_on(std::slice::from_ref(&pcap), config(Mode::Mitigate, &out));
            std::fs::read(&out).unwrap()
        })
        .collect();
    assert!(!outs[0].is_empty());
    assert!(outs[0] == outs[1], "two runs wrote different alerts");
}

#[test]
fn detectors_can_be_turned_off() {
    let dir = TempDir::new("pipeline-detectors");
    let pcap = capture(&dir);
    let out = dir.path("aggregates.jsonl");
    let mut c = config(Mode::Mitigate, &out);
    c.detection.detectors = vec![DetectorName::Aggregates];
    let done = run_on(std::slice::from_ref(&pcap), c);
    assert_eq!(done.summary.scoring.scored, 0, "no models: nothing scored");
    assert_eq!(done.summary.findings["source_flood"], 1);
    let out = dir.path("models.jsonl");
    let mut c = config(Mode::Mitigate, &out);
    c.detection.detectors = vec![DetectorName::Models];
    let done = run_on(&[pcap], c);
    assert!(done.summary.scoring.scored > 0);
    assert_eq!(
        done.summary.findings["source_flood"], 0,
        "no aggregates: no flood finding"
    );
    assert_eq!(done.summary.detectors, ["models"]);
}

#[test]
fn a_truncated_capture_is_scored_up_to_the_cut_and_reported() {
    let dir = TempDir::new("pipeline-truncated");
    let pcap = capture(&dir);
    let bytes = std::fs::read(&pcap).unwrap();
    // Cut inside the flood's last record: everything before it is processed.
    std::fs::write(&pcap, &bytes[..bytes.len() - 20]).unwrap();
    let out = dir.path("alerts.jsonl");
    let done = run_on(&[pcap], config(Mode::Mitigate, &out));
    assert!(
        matches!(done.stopped[..], [CaptureError::Truncated { .. }]),
        "{:?}",
        done.stopped.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    assert_eq!(done.summary.frames, 60 * 7 + 20_000 - 1);
    assert!(alerts(&out).iter().any(|v| v["src_ip"] == "198.18.0.66"));
    assert!(
        done.summary.files[0]
            .stopped
            .as_deref()
            .unwrap()
            .contains("truncated")
    );
}

#[test]
fn files_are_merged_by_timestamp() {
    let dir = TempDir::new("pipeline-merge");
    let frames = flood_capture();
    // The client's frames in one file, the flood's in another: the same as one capture.
    let (client, flood): (Vec<_>, Vec<_>) = frames.iter().cloned().partition(|(_, f)| f[23] == 6);
    let (a, b) = (dir.path("client.pcap"), dir.path("flood.pcap"));
    write_pcap(&a, DataLink::ETHERNET, &client);
    write_pcap(&b, DataLink::ETHERNET, &flood);
    let out = dir.path("merged.jsonl");
    let merged = run_on(&[a, b], config(Mode::Mitigate, &out));
    let one = dir.path("one.jsonl");
    let single = run_on(&[capture(&dir)], config(Mode::Mitigate, &one));
    assert_eq!(merged.summary.out_of_order, 0);
    assert_eq!(merged.summary.dropped, single.summary.dropped);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&one).unwrap());
}

#[test]
fn a_silent_stretch_exports_idle_flows_when_they_are_due() {
    let dir = TempDir::new("pipeline-gap");
    // A UDP exchange, an hour of silence, another packet: the exchange is exported as idle
    // 30 s after its last packet (the idle timeout), not an hour later.
    let frames = vec![
        (0, udp(CLIENT, 5353, SERVER, 53, 40)),
        (1_000, udp(SERVER, 53, CLIENT, 5353, 120)),
        (3_600_000_000, udp(CLIENT, 5354, SERVER, 53, 40)),
    ];
    let pcap = dir.path("gap.pcap");
    write_pcap(&pcap, DataLink::ETHERNET, &frames);
    let csv = dir.path("flows.csv");
    let mut c = config(Mode::Observe, &dir.path("alerts.jsonl"));
    c.agent.flows_out = Some(csv.clone());
    let done = run_on(&[pcap], c);
    assert_eq!(done.summary.flows.exported["idle_timeout"], 1);
    assert_eq!(done.summary.flows.exported["flush"], 1);
    let text = std::fs::read_to_string(&csv).unwrap();
    let idle = text
        .lines()
        .find(|l| l.ends_with(",idle_timeout"))
        .expect("an idle flow");
    assert!(idle.contains("198.18.0.2"), "{idle}");
    assert!(done.summary.capture_s >= 3600.0);
    // Not 7,200 half-second intervals: a few around the idle export, one before the packet,
    // one after it.
    assert!(
        done.summary.intervals < 12,
        "{} intervals",
        done.summary.intervals
    );
}
