//! The frames of one or more captures, in timestamp order, parsed as the XDP program parses
//! them: what the capture source hands the flow table, with a count of everything skipped.
//!
//! Several files are merged by timestamp (ties go to the file named first): rotated files
//! (`tcpdump -C`) play one after the other, captures of two interfaces of the same host
//! interleave as the host saw them. Time never goes back, as a kernel clock never does: a
//! frame stamped earlier than the one before is accounted at the earlier frame's time and
//! counted as out of order.
//!
//! A file that cannot be read to its end (truncated, corrupt, a read error, a pcapng
//! interface of another link type) stops contributing at that point; the others go on, and
//! the error is kept in [`InputSummary::stopped`], so that nothing read before is lost.
use std::path::PathBuf;

use netanom_common::{
    Event,
    parse::{self, PacketMeta},
};

use super::{error::CaptureError, format::CaptureFormat, reader::Capture};

/// What was skipped and seen, over every input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames read from the files.
    pub read: u64,
    /// IP packets handed on.
    pub ip_packets: u64,
    /// Frames that are not IP (ARP, MPLS, LLDP, ...).
    pub non_ip: u64,
    /// Malformed frames, by parser [`Event`] (indexed by its discriminant).
    pub malformed: [u64; Event::COUNT as usize],
    /// Frames stamped earlier than the frame before them.
    pub out_of_order: u64,
    /// First and last time seen (nanoseconds since the Unix epoch), `None` before any frame.
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
}

impl FrameCounts {
    /// Malformed frames, every reason.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}

/// One input file, once read.
#[derive(Debug)]
pub struct InputSummary {
    pub path: PathBuf,
    pub format: CaptureFormat,
    /// Frames read from it.
    pub frames: u64,
    /// Why reading stopped before its end, if it did.
    pub stopped: Option<CaptureError>,
}

struct Input {
    capture: Capture,
    /// The next frame, read ahead for the merge: (timestamp, length on the wire, bytes).
    next: Option<(u64, u32, Vec<u8>)>,
    stopped: Option<CaptureError>,
}

impl Input {
    /// Reads the next frame into `next` (reusing its buffer); `next` stays empty at the end
    /// of the file or after an error.
    fn read_ahead(&mut self) {
        let mut buf = self.next.take().map(|(_, _, b)| b).unwrap_or_default();
        match self.capture.next_frame() {
            Ok(Some(f)) => {
                buf.clear();
                buf.extend_from_slice(f.data);
                self.next = Some((f.ts_ns, f.orig_len, buf));
            }
            Ok(None) => {}
            Err(e) => self.stopped = Some(e),
        }
    }
}

/// Frames of one or more open captures, merged by timestamp and parsed.
pub struct FrameStream {
    inputs: Vec<Input>,
    counts: FrameCounts,
    now_ns: u64,
}

impl FrameStream {
    /// A stream over `captures`, in the order given (which breaks timestamp ties).
    pub fn new(captures: Vec<Capture>) -> FrameStream {
        let mut inputs: Vec<Input> = captures
            .into_iter()
            .map(|capture| Input {
                capture,
                next: None,
                stopped: None,
            })
            .collect();
        inputs.iter_mut().for_each(Input::read_ahead);
        FrameStream {
            inputs,
            counts: FrameCounts::default(),
            now_ns: 0,
        }
    }

    /// The next IP packet and the time it is accounted at; `None` when every input is done.
    /// The packet's `frame_len` is its length on the wire (a capture may hold fewer bytes).
    pub fn next_packet(&mut self) -> Option<(PacketMeta, u64)> {
        loop {
            let i = self.earliest()?;
            let input = &mut self.inputs[i];
            let (ts_ns, orig_len, data) = input.next.as_ref()?;
            let c = &mut self.counts;
            c.read += 1;
            if c.first_ts_ns.is_none() {
                c.first_ts_ns = Some(*ts_ns);
                self.now_ns = *ts_ns;
            }
            if *ts_ns < self.now_ns {
                c.out_of_order += 1;
            } else {
                self.now_ns = *ts_ns;
            }
            c.last_ts_ns = Some(self.now_ns);
            let parsed = parse::parse(data.as_slice());
            let packet = match parsed.meta {
                Some(mut m) => {
                    // The kernel sees the whole frame; a capture may hold only its first bytes.
                    let wire = (*orig_len).max(data.len() as u32);
                    m.frame_len = u16::try_from(wire).unwrap_or(u16::MAX);
                    c.ip_packets += 1;
                    Some(m)
                }
                None => {
                    match parsed.class.event {
                        Some(e) => c.malformed[e as usize] += 1,
                        None => c.non_ip += 1,
                    }
                    None
                }
            };
            input.read_ahead();
            if let Some(m) = packet {
                return Some((m, self.now_ns));
            }
        }
    }

    /// The input whose next frame is earliest (the first named on ties).
    fn earliest(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for (i, input) in self.inputs.iter().enumerate() {
            if let Some((ts, _, _)) = &input.next
                && best.is_none_or(|(b, _)| *ts < b)
            {
                best = Some((*ts, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// The timestamp of the first frame still to come (the earliest of the inputs').
    pub fn peek_ts_ns(&self) -> Option<u64> {
        self.earliest()
            .and_then(|i| self.inputs[i].next.as_ref())
            .map(|(ts, _, _)| *ts)
    }

    /// The time of the last frame (0 before any).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub fn counts(&self) -> &FrameCounts {
        &self.counts
    }

    /// Every input, once the stream is done: how far each was read, and why it stopped early.
    pub fn finish(self) -> Vec<InputSummary> {
        self.inputs
            .into_iter()
            .map(|i| InputSummary {
                path: i.capture.path().to_path_buf(),
                format: i.capture.format(),
                frames: i.capture.frames(),
                stopped: i.stopped,
            })
            .collect()
    }
}
