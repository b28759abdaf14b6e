//! Recording what a lab interface receives into a pcap file, as a capture tool on the link
//! would: each receiver on its own thread, frames stamped with the wall clock when read, the
//! receivers' frames merged by time. Receivers see incoming frames only, so both directions of
//! a link are recorded with one receiver at each end.
use std::{
    fs::File,
    io::BufWriter,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use pcap_file::pcap::{PcapPacket, PcapWriter};

use crate::{Netns, traffic::RECV_BUF, traffic::RawReceiver};

/// Frames recorded: (Unix time in ns, frame).
type Frames = Vec<(u64, Vec<u8>)>;

/// A recording under way; [`Recorder::finish`] stops it and writes the file.
pub struct Recorder {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<Frames>>>,
}

impl Recorder {
    /// Starts recording what each `(namespace, interface)` receives, at most `max_frames`
    /// frames per receiver and `max_time` in all.
    pub fn start(points: &[(&Netns, &str)], max_frames: usize, max_time: Duration) -> Result<Recorder> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (ns, iface) in points {
            let rx = RawReceiver::open(ns, iface)?;
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                record(&rx, &stop, max_frames, max_time)
            }));
        }
        Ok(Recorder { stop, threads })
    }

    /// Stops, merges the receivers' frames by time and writes them to `path` (classic pcap,
    /// nanosecond timestamps). Returns how many frames were written.
    pub fn finish(self, path: &Path) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.threads {
            let frames = t
                .join()
                .map_err(|_| anyhow::anyhow!("a recorder thread panicked"))??;
            all.extend(frames);
        }
        all.sort_by_key(|(t, _)| *t);
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let header = pcap_file::pcap::PcapHeader {
            ts_resolution: pcap_file::TsResolution::NanoSecond,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(BufWriter::new(file), header)?;
        for (t, f) in &all {
            w.write_packet(&PcapPacket::new(Duration::from_nanos(*t), f.len() as u32, f))?;
        }
        Ok(all.len() as u64)
    }
}

/// Reads frames until told to stop (bounded in count and time).
fn record(rx: &RawReceiver, stop: &AtomicBool, max_frames: usize, max_time: Duration) -> Result<Frames> {
    let started = Instant::now();
    let mut buf = vec![0u8; RECV_BUF];
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) && out.len() < max_frames && started.elapsed() < max_time {
        if let Some(f) = rx.recv_with(&mut buf, Duration::from_millis(20))? {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            out.push((now.as_nanos() as u64, f));
        }
    }
    Ok(out)
}
