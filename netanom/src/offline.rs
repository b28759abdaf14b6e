//! `netanom features`: flow records from a capture file, with the kernel's flow semantics.
//!
//! A [`Capture`] reads classic pcap or pcapng (told apart by the magic number, not the file
//! name) with Ethernet framing. Each frame goes through the parser shared with the XDP program
//! ([`netanom_common::parse`]), and each IP packet through [`FlowTable`], which applies the very
//! code the kernel runs ([`netanom_common::flow::start`] / [`account`]) to a `HashMap` driven by
//! the capture's timestamps, plus what the agent does around it: export on idle timeout, forget
//! closed flows after a linger time, flush live flows at the end.
//!
//! Every exported flow goes to a [`RecordSink`]; [`CsvSink`] writes the CSV of
//! [`crate::features`]. The live agent hands the kernel's records to the same sink, so offline
//! and live rows are produced by one piece of code.
use std::{
    collections::{HashMap, hash_map::Entry},
    fmt::Write as _,
    fs::File,
    io::{self, BufWriter, Cursor, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use netanom_common::{
    Event,
    flow::{self, EndReason, FlowKey, FlowRecord, FlowTimeouts, FlowValue, ST_CLOSED, Verdict},
    parse::{self, PacketMeta},
};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution, pcap::PcapReader, pcapng::PcapNgReader};

use crate::features;

/// LINKTYPE_ETHERNET, the only link type we read.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// How often (in capture time) the table is swept for idle and expired flows.
pub const DEFAULT_SWEEP_INTERVAL_NS: u64 = 1_000_000_000;

/// Everything that can go wrong reading a capture or writing its flows. Messages are one
/// paragraph: what happened, then what to do.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("capture file {} does not exist; check the path given to --pcap", path.display())]
    NotFound { path: PathBuf },
    #[error(
        "{} is a directory, not a capture file; give --pcap the path of one .pcap or .pcapng file \
         (run `netanom features` once per file to process a directory)",
        path.display()
    )]
    IsDirectory { path: PathBuf },
    #[error("cannot open capture file {}: {err}; check that it exists and that this user may read it", path.display())]
    Open { path: PathBuf, err: io::Error },
    #[error(
        "capture file {} is empty (0 bytes), so there is nothing to read; check that the capture \
         was written completely",
        path.display()
    )]
    Empty { path: PathBuf },
    #[error(
        "{} is not a pcap or pcapng capture ({what}); `netanom features` reads classic pcap and \
         pcapng files, recognised by their first bytes whatever their extension",
        path.display()
    )]
    NotCapture { path: PathBuf, what: String },
    #[error(
        "{} starts like a {format} capture but its file header is unusable ({reason}); the file is \
         damaged or was cut short",
        path.display()
    )]
    BadHeader {
        path: PathBuf,
        format: CaptureFormat,
        reason: String,
    },
    #[error(
        "{} has link type {linktype} ({name}); only Ethernet (LINKTYPE_ETHERNET = 1) is supported, \
         because flows are parsed from Ethernet frames. Capture on an Ethernet interface (not \
         `any`), or convert the file first, e.g. `tcprewrite --dlt=enet`",
        path.display()
    )]
    UnsupportedLinkType {
        path: PathBuf,
        linktype: u32,
        name: String,
    },
    #[error(
        "{} is truncated: it ends in the middle of a record at byte offset {offset}. {packets} packets \
         were processed before the truncation and the flows built from them were written; the rest \
         of the capture is missing (was the capture interrupted, or the copy incomplete?)",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        packets: u64,
        offset: u64,
    },
    #[error(
        "{} is corrupt at byte offset {offset}: {reason}. {packets} packets were processed before it \
         and the flows built from them were written; the rest of the file was not read",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        packets: u64,
        offset: u64,
        reason: String,
    },
    #[error("reading {} failed after {packets} packets: {err}", path.display())]
    Read {
        path: PathBuf,
        packets: u64,
        err: io::Error,
    },
    #[error(
        "cannot write flow records to {dest}: {err}; check that the directory exists and is \
         writable, that the disk has space, or that the reader of the pipe is still running"
    )]
    Output { dest: String, err: io::Error },
    #[error("--out {} is the capture itself; choose another output file", path.display())]
    OutputIsInput { path: PathBuf },
}

/// Capture file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    Pcap,
    PcapNg,
}

impl std::fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CaptureFormat::Pcap => "pcap",
            CaptureFormat::PcapNg => "pcapng",
        })
    }
}

/// One frame of a capture.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length of the frame on the wire (`data` may be shorter: snap length).
    pub orig_len: u32,
    /// The captured bytes, from the Ethernet header on.
    pub data: &'a [u8],
}

/// The file, preceded by the bytes read to recognise it.
type Source = io::Chain<Cursor<Vec<u8>>, File>;

/// A pcapng interface: how to read its timestamps.
#[derive(Clone, Copy, Debug)]
struct Iface {
    /// Timestamp ticks per second (if_tsresol; default 10^6).
    ticks_per_s: u64,
    /// Seconds added to every timestamp (if_tsoffset).
    offset_s: u64,
}

enum Reader {
    Pcap {
        r: PcapReader<Source>,
        nanos: bool,
        big: bool,
        snaplen: u32,
    },
    PcapNg {
        r: PcapNgReader<Source>,
        ifaces: Vec<Iface>,
        last_ts_ns: u64,
    },
}

/// An open capture file, read frame by frame.
pub struct Capture {
    path: PathBuf,
    format: CaptureFormat,
    reader: Reader,
    /// Bytes of the file consumed so far.
    offset: u64,
    /// Frames returned so far.
    frames: u64,
    /// The current frame's bytes.
    buf: Vec<u8>,
    /// A regular file (not a pipe), which can be opened again to inspect a bad record.
    regular: bool,
}

const PCAP_MAGICS: [u32; 4] = [0xa1b2_c3d4, 0xa1b2_3c4d, 0xd4c3_b2a1, 0x4d3c_b2a1];
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_PB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
/// The largest record we consider plausible: pcap-file buffers at most 8 MB.
const MAX_RECORD: u64 = 8_000_000;

fn link_name(dl: DataLink) -> String {
    match dl {
        DataLink::Unknown(_) => "not a link type this reader knows".to_string(),
        other => format!("LINKTYPE_{other:?}"),
    }
}

fn rd32(b: &[u8], off: usize, big: bool) -> Option<u32> {
    let w: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    })
}

fn rd16(b: &[u8], off: usize, big: bool) -> Option<u16> {
    let w: [u8; 2] = b.get(off..off + 2)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(w)
    } else {
        u16::from_le_bytes(w)
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

/// Timestamp ticks per second for an `if_tsresol` value, or `None` if it cannot be represented.
fn ticks_per_second(tsresol: u8) -> Option<u64> {
    let e = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(e)
    } else {
        1u64.checked_shl(e).filter(|_| e < 64)
    }
}

impl Capture {
    /// Opens `path` and reads its file header. Fails with a clear error for a missing file, a
    /// directory, an empty file, something that is not a capture, or a link type other than
    /// Ethernet.
    pub fn open(path: &Path) -> Result<Capture, OfflineError> {
        let p = || path.to_path_buf();
        let meta = std::fs::metadata(path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => OfflineError::NotFound { path: p() },
            _ => OfflineError::Open { path: p(), err },
        })?;
        if meta.is_dir() {
            return Err(OfflineError::IsDirectory { path: p() });
        }
        let mut file = File::open(path).map_err(|err| OfflineError::Open { path: p(), err })?;
        let mut head = Vec::with_capacity(12);
        (&mut file)
            .take(12)
            .read_to_end(&mut head)
            .map_err(|err| OfflineError::Read {
                path: p(),
                packets: 0,
                err,
            })?;
        if head.is_empty() {
            return Err(OfflineError::Empty { path: p() });
        }
        let not_capture = |what: String| OfflineError::NotCapture { path: p(), what };
        if head.starts_with(&[0x1f, 0x8b]) {
            return Err(not_capture(
                "it is gzip-compressed: decompress it first, e.g. with gunzip".into(),
            ));
        }
        if head.len() < 4 {
            return Err(not_capture(format!("it is only {} bytes long", head.len())));
        }
        let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let src = Cursor::new(head.clone()).chain(file);
        let bad_header = |format: CaptureFormat, e: PcapError| OfflineError::BadHeader {
            path: p(),
            format,
            reason: match e {
                PcapError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    "the file ends inside it".to_string()
                }
                other => other.to_string(),
            },
        };
        let (format, reader, offset) = if PCAP_MAGICS.contains(&magic) {
            let r = PcapReader::new(src).map_err(|e| bad_header(CaptureFormat::Pcap, e))?;
            let h = r.header();
            let linktype = u32::from(h.datalink);
            if linktype != LINKTYPE_ETHERNET {
                return Err(OfflineError::UnsupportedLinkType {
                    path: p(),
                    linktype,
                    name: link_name(h.datalink),
                });
            }
            let reader = Reader::Pcap {
                r,
                nanos: h.ts_resolution == TsResolution::NanoSecond,
                big: h.endianness == Endianness::Big,
                snaplen: h.snaplen,
            };
            (CaptureFormat::Pcap, reader, 24)
        } else if magic == PCAPNG_SHB {
            let r = PcapNgReader::new(src).map_err(|e| bad_header(CaptureFormat::PcapNg, e))?;
            // The section header's length, for byte offsets in messages.
            let big = r.section().endianness == Endianness::Big;
            let shb_len = rd32(&head, 4, big).map_or(0, u64::from);
            let reader = Reader::PcapNg {
                r,
                ifaces: Vec::new(),
                last_ts_ns: 0,
            };
            (CaptureFormat::PcapNg, reader, shb_len)
        } else {
            return Err(not_capture(format!(
                "it starts with the bytes {}",
                hex(&head[..4])
            )));
        };
        Ok(Capture {
            path: p(),
            format,
            reader,
            offset,
            frames: 0,
            buf: Vec::with_capacity(2048),
            regular: meta.is_file(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Frames returned so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next frame, `None` at the end of the file. A file that ends inside a record gives
    /// [`OfflineError::Truncated`], a record that makes no sense [`OfflineError::Corrupt`];
    /// after an error, stop reading.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, OfflineError> {
        let (ts_ns, orig_len) = match &mut self.reader {
            Reader::Pcap {
                r,
                nanos,
                big,
                snaplen,
            } => {
                let pkt = match r.next_raw_packet() {
                    None => return Ok(None),
                    Some(Ok(pkt)) => pkt,
                    Some(Err(e)) => {
                        let (big, limit) = (*big, u64::from(*snaplen).max(262_144) + 16);
                        return Err(self.read_error(e, big, limit));
                    }
                };
                self.offset += 16 + u64::from(pkt.incl_len);
                let frac = u64::from(pkt.ts_frac);
                let ts = u64::from(pkt.ts_sec) * 1_000_000_000 + if *nanos { frac } else { frac * 1000 };
                self.buf.clear();
                self.buf.extend_from_slice(&pkt.data);
                (ts, pkt.orig_len)
            }
            Reader::PcapNg {
                r,
                ifaces,
                last_ts_ns,
            } => loop {
                let big = r.section().endianness == Endianness::Big;
                let block = match r.next_raw_block() {
                    None => return Ok(None),
                    Some(Ok(b)) => b,
                    Some(Err(e)) => return Err(self.read_error(e, big, MAX_RECORD)),
                };
                let (ty, len) = (block.type_, u64::from(block.initial_len));
                let body = &block.body[..];
                let corrupt = |reason: String| OfflineError::Corrupt {
                    path: self.path.clone(),
                    packets: self.frames,
                    offset: self.offset,
                    reason,
                };
                // (interface, timestamp ticks, original length, data offset, captured length)
                let pkt = match ty {
                    PCAPNG_EPB | PCAPNG_PB => {
                        let (iface, ts_off) = if ty == PCAPNG_EPB {
                            (rd32(body, 0, big), 4)
                        } else {
                            (rd16(body, 0, big).map(u32::from), 4)
                        };
                        let fields = (
                            iface,
                            rd32(body, ts_off, big),
                            rd32(body, ts_off + 4, big),
                            rd32(body, ts_off + 8, big),
                            rd32(body, ts_off + 12, big),
                        );
                        let (Some(i), Some(hi), Some(lo), Some(cap), Some(orig)) = fields else {
                            return Err(corrupt("a packet block is too short for its header".into()));
                        };
                        let data = ts_off + 16;
                        if body.len() < data + cap as usize {
                            return Err(corrupt(format!(
                                "a packet block claims {cap} captured bytes it does not hold"
                            )));
                        }
                        Some((
                            i,
                            Some((u64::from(hi) << 32) | u64::from(lo)),
                            orig,
                            data,
                            cap as usize,
                        ))
                    }
                    PCAPNG_SPB => {
                        let Some(orig) = rd32(body, 0, big) else {
                            return Err(corrupt("a simple packet block is too short".into()));
                        };
                        Some((0, None, orig, 4, (orig as usize).min(body.len() - 4)))
                    }
                    _ => None,
                };
                if let Some((_, _, _, data, cap)) = pkt {
                    self.buf.clear();
                    self.buf.extend_from_slice(&body[data..data + cap]);
                }
                drop(block);
                self.offset += len;
                match ty {
                    PCAPNG_SHB => ifaces.clear(),
                    PCAPNG_IDB => {
                        let Some(idb) = r.interfaces().last() else {
                            continue;
                        };
                        let linktype = u32::from(idb.linktype);
                        if linktype != LINKTYPE_ETHERNET {
                            return Err(OfflineError::UnsupportedLinkType {
                                path: self.path.clone(),
                                linktype,
                                name: link_name(idb.linktype),
                            });
                        }
                        let mut iface = Iface {
                            ticks_per_s: 1_000_000,
                            offset_s: 0,
                        };
                        for opt in &idb.options {
                            use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption as O;
                            match opt {
                                O::IfTsResol(v) => match ticks_per_second(*v) {
                                    Some(t) if t > 0 => iface.ticks_per_s = t,
                                    _ => {
                                        return Err(OfflineError::Corrupt {
                                            path: self.path.clone(),
                                            packets: self.frames,
                                            offset: self.offset - len,
                                            reason: format!(
                                                "interface timestamp resolution {v:#04x} is not usable"
                                            ),
                                        });
                                    }
                                },
                                O::IfTsOffset(s) => iface.offset_s = *s,
                                _ => {}
                            }
                        }
                        ifaces.push(iface);
                    }
                    _ => {}
                }
                let Some((i, ticks, orig, _, _)) = pkt else {
                    continue;
                };
                let ts = match ticks {
                    None => *last_ts_ns,
                    Some(t) => {
                        let Some(iface) = ifaces.get(i as usize) else {
                            return Err(OfflineError::Corrupt {
                                path: self.path.clone(),
                                packets: self.frames,
                                offset: self.offset - len,
                                reason: format!(
                                    "a packet refers to interface {i}, but only {} interface descriptions precede it",
                                    ifaces.len()
                                ),
                            });
                        };
                        let ns = u128::from(t) * 1_000_000_000 / u128::from(iface.ticks_per_s)
                            + u128::from(iface.offset_s) * 1_000_000_000;
                        u64::try_from(ns).unwrap_or(u64::MAX)
                    }
                };
                *last_ts_ns = ts;
                break (ts, orig);
            },
        };
        self.frames += 1;
        Ok(Some(Frame {
            ts_ns,
            orig_len,
            data: &self.buf,
        }))
    }

    /// Turns a reader error into ours: the end of the file inside a record is a truncation,
    /// unless the record's own length field is absurd (then the file is corrupt).
    fn read_error(&self, e: PcapError, big: bool, limit: u64) -> OfflineError {
        let (path, packets, offset) = (self.path.clone(), self.frames, self.offset);
        match e {
            PcapError::IoError(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                match self.claimed_record_len(big) {
                    Some(n) if n > limit => OfflineError::Corrupt {
                        path,
                        packets,
                        offset,
                        reason: format!("the record there claims {n} bytes, more than any packet can have"),
                    },
                    _ => OfflineError::Truncated {
                        path,
                        packets,
                        offset,
                    },
                }
            }
            PcapError::IoError(err) => OfflineError::Read { path, packets, err },
            other => OfflineError::Corrupt {
                path,
                packets,
                offset,
                reason: other.to_string(),
            },
        }
    }

    /// The length the record at the current offset says it has, read again from the file.
    fn claimed_record_len(&self, big: bool) -> Option<u64> {
        if !self.regular {
            return None;
        }
        let mut f = File::open(&self.path).ok()?;
        f.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut h = [0u8; 16];
        let mut got = 0;
        while got < h.len() {
            match f.read(&mut h[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let h = &h[..got];
        match self.format {
            CaptureFormat::Pcap => rd32(h, 8, big).map(|n| 16 + u64::from(n)),
            CaptureFormat::PcapNg => rd32(h, 4, big).map(u64::from),
        }
    }
}

/// Where exported flow records go. The offline extractor and the live agent share it.
pub trait RecordSink {
    fn record(&mut self, rec: &FlowRecord) -> io::Result<()>;
}

/// Collects records in memory (tests, small tools).
impl RecordSink for Vec<FlowRecord> {
    fn record(&mut self, rec: &FlowRecord) -> io::Result<()> {
        self.push(*rec);
        Ok(())
    }
}

/// Converts a record's timestamps (nanoseconds) to nanoseconds since the Unix epoch: the
/// identity for captures, the kernel-clock translation for the live agent.
pub type ToUnixNs = Box<dyn Fn(u64) -> u64 + Send>;

/// Writes records as CSV ([`features::csv_header`], [`features::write_csv_row`]). The header is
/// written before the first row, or by [`CsvSink::flush`] / [`CsvSink::finish`] if there is none.
pub struct CsvSink<W: Write> {
    out: W,
    to_unix_ns: ToUnixNs,
    line: String,
    header_done: bool,
    rows: u64,
}

impl<W: Write> CsvSink<W> {
    /// A sink whose records carry timestamps that `to_unix_ns` turns into Unix nanoseconds
    /// (the live agent passes its kernel-clock translation).
    pub fn new(out: W, to_unix_ns: impl Fn(u64) -> u64 + Send + 'static) -> CsvSink<W> {
        CsvSink {
            out,
            to_unix_ns: Box::new(to_unix_ns),
            line: String::with_capacity(1024),
            header_done: false,
            rows: 0,
        }
    }

    /// A sink for records whose timestamps already are Unix nanoseconds (captures).
    pub fn unix(out: W) -> CsvSink<W> {
        CsvSink::new(out, |ns| ns)
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_done {
            self.out.write_all(features::csv_header().as_bytes())?;
            self.out.write_all(b"\n")?;
            self.header_done = true;
        }
        Ok(())
    }

    /// Writes one row (and the header first, if this is the first row).
    pub fn record(&mut self, rec: &FlowRecord) -> io::Result<()> {
        self.header()?;
        self.line.clear();
        features::write_csv_row(&mut self.line, rec, &*self.to_unix_ns)
            .map_err(|_| io::Error::other("formatting a CSV row"))?;
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the header if no row did yet, and flushes the writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.header()?;
        self.out.flush()
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// [`CsvSink::flush`], then hands back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> RecordSink for CsvSink<W> {
    fn record(&mut self, rec: &FlowRecord) -> io::Result<()> {
        CsvSink::record(self, rec)
    }
}

/// Flows exported, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportCounts {
    pub fin: u64,
    pub rst: u64,
    pub active_timeout: u64,
    pub idle_timeout: u64,
    pub flush: u64,
}

impl ExportCounts {
    pub fn get(&self, r: EndReason) -> u64 {
        match r {
            EndReason::Fin => self.fin,
            EndReason::Rst => self.rst,
            EndReason::ActiveTimeout => self.active_timeout,
            EndReason::IdleTimeout => self.idle_timeout,
            EndReason::Flush => self.flush,
        }
    }
    fn add(&mut self, r: EndReason) {
        *match r {
            EndReason::Fin => &mut self.fin,
            EndReason::Rst => &mut self.rst,
            EndReason::ActiveTimeout => &mut self.active_timeout,
            EndReason::IdleTimeout => &mut self.idle_timeout,
            EndReason::Flush => &mut self.flush,
        } += 1;
    }
    pub fn total(&self) -> u64 {
        self.fin + self.rst + self.active_timeout + self.idle_timeout + self.flush
    }
}

/// What a [`FlowTable`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// IP packets accounted.
    pub packets: u64,
    /// Flows started (new keys, restarts after an active or idle timeout, SYNs reopening a
    /// closed flow, packets arriving after a closed flow was forgotten).
    pub flows_started: u64,
    pub exported: ExportCounts,
    /// Packets counted into a flow that had already ended (FIN/RST) and been exported: they are
    /// in no exported record.
    pub absorbed: u64,
    /// Closed flows forgotten after the linger time (not exported again).
    pub closed_expired: u64,
}

/// The flow table of the offline extractor: the kernel's per-packet semantics, plus the
/// agent's sweep, driven by capture timestamps.
///
/// - a packet of an unknown key starts a flow ([`flow::start`]); otherwise [`flow::account`];
///   `Ended(r)` exports the flow with reason `r` (it stays in the table, closed, and absorbs
///   later packets without exporting them again); `Restart` exports it as `ActiveTimeout` and
///   starts it again with the packet;
/// - a live flow without packets for longer than `idle_ns` is exported as `IdleTimeout` and
///   removed; a closed flow without packets for longer than `closed_linger_ns` is removed
///   without export. Both are applied as if the sweep ran continuously: a packet arriving after
///   such a gap finds its flow already gone, and the table is also scanned every
///   `sweep_interval_ns` of capture time so that idle flows are exported in time order;
/// - [`FlowTable::finish`] exports what is left (idle flows as `IdleTimeout`, the other live
///   flows as `Flush`, oldest first).
pub struct FlowTable {
    flows: HashMap<FlowKey, FlowValue>,
    timeouts: FlowTimeouts,
    sweep_interval_ns: u64,
    next_sweep_ns: u64,
    stats: TableStats,
}

fn export(
    sink: &mut dyn RecordSink,
    counts: &mut ExportCounts,
    key: &FlowKey,
    v: &FlowValue,
    reason: EndReason,
) -> io::Result<()> {
    sink.record(&FlowRecord {
        key: *key,
        reason: reason as u32,
        _pad: 0,
        value: *v,
    })?;
    counts.add(reason);
    Ok(())
}

impl FlowTable {
    pub fn new(timeouts: FlowTimeouts) -> FlowTable {
        FlowTable::with_sweep_interval(timeouts, DEFAULT_SWEEP_INTERVAL_NS)
    }

    pub fn with_sweep_interval(timeouts: FlowTimeouts, sweep_interval_ns: u64) -> FlowTable {
        FlowTable {
            flows: HashMap::new(),
            timeouts,
            sweep_interval_ns,
            next_sweep_ns: 0,
            stats: TableStats::default(),
        }
    }

    /// Flows in the table (live and closed).
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    /// Accounts IP packet `m` seen at `now_ns`. Timestamps must not go backwards (the caller
    /// clamps them, as a kernel clock would never go back).
    pub fn packet(&mut self, m: &PacketMeta, now_ns: u64, sink: &mut dyn RecordSink) -> io::Result<()> {
        if now_ns >= self.next_sweep_ns {
            self.sweep(now_ns, sink)?;
            self.next_sweep_ns = now_ns.saturating_add(self.sweep_interval_ns);
        }
        let t = self.timeouts;
        let s = &mut self.stats;
        s.packets += 1;
        let (key, sender_lo) = FlowKey::of(m);
        let v = match self.flows.entry(key) {
            Entry::Vacant(e) => {
                let mut v = FlowValue::default();
                flow::start(&mut v, m, now_ns, sender_lo);
                e.insert(v);
                s.flows_started += 1;
                return Ok(());
            }
            Entry::Occupied(e) => e.into_mut(),
        };
        let quiet = now_ns.saturating_sub(v.last_ns);
        let closed = v.state & ST_CLOSED != 0;
        // What the sweep would have done before this packet arrived.
        if closed && quiet > t.closed_linger_ns {
            s.closed_expired += 1;
            s.flows_started += 1;
            flow::start(v, m, now_ns, sender_lo);
            return Ok(());
        }
        if !closed && quiet > t.idle_ns {
            export(sink, &mut s.exported, &key, v, EndReason::IdleTimeout)?;
            s.flows_started += 1;
            flow::start(v, m, now_ns, sender_lo);
            return Ok(());
        }
        match flow::account(v, m, now_ns, sender_lo, &t) {
            Verdict::Continue => s.absorbed += u64::from(closed),
            // A bare SYN reused the ports of the closed flow: a new flow.
            Verdict::Reopened => s.flows_started += 1,
            Verdict::Ended(r) => export(sink, &mut s.exported, &key, v, r)?,
            Verdict::Restart => {
                export(sink, &mut s.exported, &key, v, EndReason::ActiveTimeout)?;
                s.flows_started += 1;
                flow::start(v, m, now_ns, sender_lo);
            }
        }
        Ok(())
    }

    /// Exports the live flows idle for longer than the idle timeout (oldest activity first) and
    /// forgets the closed flows quiet for longer than the linger time.
    pub fn sweep(&mut self, now_ns: u64, sink: &mut dyn RecordSink) -> io::Result<()> {
        let t = self.timeouts;
        let stats = &mut self.stats;
        let mut idle = Vec::new();
        self.flows.retain(|k, v| {
            let quiet = now_ns.saturating_sub(v.last_ns);
            if v.state & ST_CLOSED != 0 {
                let keep = quiet <= t.closed_linger_ns;
                stats.closed_expired += u64::from(!keep);
                return keep;
            }
            if quiet > t.idle_ns {
                idle.push((*k, *v));
                return false;
            }
            true
        });
        idle.sort_unstable_by_key(|(k, v)| (v.last_ns, v.first_ns, *k));
        for (k, v) in &idle {
            export(sink, &mut stats.exported, k, v, EndReason::IdleTimeout)?;
        }
        Ok(())
    }

    /// End of input at `now_ns`: a last sweep, then every live flow is exported as `Flush`,
    /// ordered by first packet, then key. The table is left empty.
    pub fn finish(&mut self, now_ns: u64, sink: &mut dyn RecordSink) -> io::Result<()> {
        self.sweep(now_ns, sink)?;
        let live: Vec<_> = self
            .flows
            .drain()
            .filter(|(_, v)| v.state & ST_CLOSED == 0)
            .collect();
        // Sort small (first packet, key, index) entries rather than the 368-byte flows.
        let mut order: Vec<_> = live
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (v.first_ns, *k, i))
            .collect();
        order.sort_unstable();
        for (_, _, i) in order {
            let (k, v) = &live[i];
            export(sink, &mut self.stats.exported, k, v, EndReason::Flush)?;
        }
        Ok(())
    }
}

/// How to turn packets into flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtractOptions {
    pub timeouts: FlowTimeouts,
    /// Capture time between sweeps of the table.
    pub sweep_interval_ns: u64,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            timeouts: FlowTimeouts::DEFAULT,
            sweep_interval_ns: DEFAULT_SWEEP_INTERVAL_NS,
        }
    }
}

/// What [`extract`] did.
#[derive(Debug)]
pub struct ExtractSummary {
    pub path: PathBuf,
    pub format: CaptureFormat,
    /// Frames read from the file.
    pub packets_read: u64,
    /// Frames that are not IP (ARP, MPLS, LLDP, ...).
    pub skipped_non_ip: u64,
    /// Malformed frames, by parser [`Event`] (indexed by its discriminant).
    pub skipped_malformed: [u64; Event::COUNT as usize],
    /// Frames whose timestamp was earlier than the previous one's (accounted at the previous
    /// one's time).
    pub out_of_order: u64,
    /// The flow table's counters; `table.packets` is the IP packets accounted.
    pub table: TableStats,
    /// First and last timestamp seen, nanoseconds since the Unix epoch.
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
    /// Wall-clock time spent.
    pub elapsed: Duration,
    /// Set when reading stopped before the end of the file ([`OfflineError::Truncated`] or
    /// [`OfflineError::Corrupt`]); the flows of the packets before were still exported.
    pub stopped: Option<OfflineError>,
}

impl ExtractSummary {
    pub fn malformed(&self) -> u64 {
        self.skipped_malformed.iter().sum()
    }

    /// One line for people: counts, skips by reason, exports by reason, speed.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} ({}): {} packets read, {} IP packets accounted, {} skipped ({} not IP, {} malformed",
            self.path.display(),
            self.format,
            self.packets_read,
            self.table.packets,
            self.skipped_non_ip + self.malformed(),
            self.skipped_non_ip,
            self.malformed()
        );
        for e in Event::ALL {
            let n = self.skipped_malformed[e as usize];
            if n > 0 {
                let _ = write!(s, ", {} {n}", e.name());
            }
        }
        let x = &self.table.exported;
        let _ = write!(
            s,
            "); {} flows exported (fin {}, rst {}, active_timeout {}, idle_timeout {}, flush {}); \
             {} packets absorbed by closed flows",
            x.total(),
            x.fin,
            x.rst,
            x.active_timeout,
            x.idle_timeout,
            x.flush,
            self.table.absorbed
        );
        if self.out_of_order > 0 {
            let _ = write!(s, "; {} out-of-order timestamps", self.out_of_order);
        }
        let secs = self.elapsed.as_secs_f64();
        let _ = write!(s, "; {secs:.3} s");
        if secs > 0.0 {
            let _ = write!(s, " ({:.0} packets/s)", self.packets_read as f64 / secs);
        }
        if self.stopped.is_some() {
            s.push_str("; stopped early, see the error below");
        }
        s
    }
}

/// Reads every frame of `capture`, accounts its IP packets, and exports flows to `sink`.
///
/// Malformed and non-IP frames are counted and skipped. A truncated or corrupt file stops the
/// reading but not the export: the flows of the packets read are flushed, and the error is
/// returned in [`ExtractSummary::stopped`]. Other errors (writing to the sink, an unsupported
/// link type inside a pcapng file) are returned as `Err`.
pub fn extract(
    capture: &mut Capture,
    opts: &ExtractOptions,
    sink: &mut dyn RecordSink,
) -> Result<ExtractSummary, OfflineError> {
    let started = Instant::now();
    let mut table = FlowTable::with_sweep_interval(opts.timeouts, opts.sweep_interval_ns);
    let mut sum = ExtractSummary {
        path: capture.path().to_path_buf(),
        format: capture.format(),
        packets_read: 0,
        skipped_non_ip: 0,
        skipped_malformed: [0; Event::COUNT as usize],
        out_of_order: 0,
        table: TableStats::default(),
        first_ts_ns: None,
        last_ts_ns: None,
        elapsed: Duration::ZERO,
        stopped: None,
    };
    let sink_err = |err| OfflineError::Output {
        dest: "the output".into(),
        err,
    };
    let mut now = 0u64;
    loop {
        let frame = match capture.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e @ (OfflineError::Truncated { .. } | OfflineError::Corrupt { .. })) => {
                sum.stopped = Some(e);
                break;
            }
            Err(e) => return Err(e),
        };
        sum.packets_read += 1;
        if sum.first_ts_ns.is_none() {
            sum.first_ts_ns = Some(frame.ts_ns);
            now = frame.ts_ns;
        }
        if frame.ts_ns < now {
            sum.out_of_order += 1;
        } else {
            now = frame.ts_ns;
        }
        let parsed = parse::parse(frame.data);
        match parsed.meta {
            Some(mut m) => {
                // The kernel sees the whole frame; a capture may hold only its first bytes.
                let wire = frame.orig_len.max(frame.data.len() as u32);
                m.frame_len = u16::try_from(wire).unwrap_or(u16::MAX);
                table.packet(&m, now, sink).map_err(sink_err)?;
            }
            None => match parsed.class.event {
                Some(e) => sum.skipped_malformed[e as usize] += 1,
                None => sum.skipped_non_ip += 1,
            },
        }
    }
    sum.last_ts_ns = sum.first_ts_ns.map(|_| now);
    table.finish(now, sink).map_err(sink_err)?;
    sum.table = *table.stats();
    sum.elapsed = started.elapsed();
    Ok(sum)
}

/// [`Capture::open`] then [`extract`].
pub fn extract_file(
    path: &Path,
    opts: &ExtractOptions,
    sink: &mut dyn RecordSink,
) -> Result<ExtractSummary, OfflineError> {
    let mut capture = Capture::open(path)?;
    extract(&mut capture, opts, sink)
}

/// `netanom features`: flow features of a capture file, as CSV.
#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    /// Capture to read: classic pcap or pcapng, recognised by content (not by extension), with
    /// Ethernet link type.
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// Write the CSV here instead of standard output.
    #[arg(long, value_name = "FILE.csv")]
    pub out: Option<PathBuf>,
    /// Export a flow and start it afresh once it is older than this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout,
          default_value_t = FlowTimeouts::DEFAULT.active_ns as f64 / 1e9)]
    pub active_timeout: f64,
    /// Export a flow that has seen no packet for this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout,
          default_value_t = FlowTimeouts::DEFAULT.idle_ns as f64 / 1e9)]
    pub idle_timeout: f64,
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.000_001..=31_536_000.0).contains(&secs) {
        return Err(format!("{secs} s is out of range (1 µs to 1 year)"));
    }
    Ok(secs)
}

fn secs_to_ns(secs: f64) -> u64 {
    (secs * 1e9).round() as u64
}

impl FeaturesArgs {
    pub fn options(&self) -> ExtractOptions {
        ExtractOptions {
            timeouts: FlowTimeouts {
                active_ns: secs_to_ns(self.active_timeout),
                idle_ns: secs_to_ns(self.idle_timeout),
                ..FlowTimeouts::DEFAULT
            },
            ..ExtractOptions::default()
        }
    }
}

/// Runs `netanom features`: writes the CSV, prints the summary line on stderr, and fails if
/// the capture could not be read to its end (after writing what it held).
pub fn run_features(args: &FeaturesArgs) -> Result<(), OfflineError> {
    let mut capture = Capture::open(&args.pcap)?;
    let (dest, out): (String, Box<dyn Write>) = match &args.out {
        Some(path) => {
            if let (Ok(a), Ok(b)) = (std::fs::canonicalize(path), std::fs::canonicalize(&args.pcap))
                && a == b
            {
                return Err(OfflineError::OutputIsInput { path: path.clone() });
            }
            let dest = path.display().to_string();
            let file = File::create(path).map_err(|err| OfflineError::Output {
                dest: dest.clone(),
                err,
            })?;
            (dest, Box::new(BufWriter::with_capacity(1 << 16, file)))
        }
        None => (
            "standard output".into(),
            Box::new(BufWriter::with_capacity(1 << 16, io::stdout().lock())),
        ),
    };
    let output_err = |err| OfflineError::Output {
        dest: dest.clone(),
        err,
    };
    let mut sink = CsvSink::unix(out);
    let summary = match extract(&mut capture, &args.options(), &mut sink) {
        Ok(s) => s,
        Err(OfflineError::Output { err, .. }) => return Err(output_err(err)),
        Err(e) => return Err(e),
    };
    sink.finish().map_err(output_err)?;
    eprintln!("netanom: features: {}", summary.line());
    match summary.stopped {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use netanom_common::flow::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN};
    use pcap_file::{
        pcap::{PcapHeader, PcapPacket, PcapWriter},
        pcapng::{
            PcapNgBlock as _, PcapNgWriter,
            blocks::{
                enhanced_packet::EnhancedPacketBlock,
                interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            },
        },
    };

    use super::*;
    use crate::features::{FLOW_FEATURES, FlowIdentity, feature_index, flow_features};

    /// A directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("netanom-offline-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self, f: &str) -> PathBuf {
            self.0.join(f)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn eth_ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8], payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        let total = (20 + l4.len() + payload) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[22] = 64;
        f[23] = proto;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f.extend_from_slice(l4);
        f.resize(f.len() + payload, 0xab);
        f
    }

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, payload: usize) -> Vec<u8> {
        let mut h = [0u8; 20];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[12] = 5 << 4;
        h[13] = flags;
        h[14..16].copy_from_slice(&(if sport == 80 { 29200u16 } else { 64240 }).to_be_bytes());
        eth_ipv4(6, src, dst, &h, payload)
    }

    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: usize) -> Vec<u8> {
        let mut h = [0u8; 8];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        eth_ipv4(17, src, dst, &h, payload)
    }

    const CLI: [u8; 4] = [192, 168, 1, 20];
    const SRV: [u8; 4] = [192, 168, 1, 10];
    const T0: u64 = 1_700_000_000;

    /// Handshake, request, response, FIN both ways, last ACK: (µs after T0, frame).
    fn tcp_exchange() -> Vec<(u64, Vec<u8>)> {
        vec![
            (0, tcp(CLI, 40000, SRV, 80, TCP_SYN, 0)),
            (1_000, tcp(SRV, 80, CLI, 40000, TCP_SYN | TCP_ACK, 0)),
            (2_000, tcp(CLI, 40000, SRV, 80, TCP_ACK, 0)),
            (3_000, tcp(CLI, 40000, SRV, 80, TCP_ACK | TCP_PSH, 100)),
            (5_000, tcp(SRV, 80, CLI, 40000, TCP_ACK | TCP_PSH, 300)),
            (9_000, tcp(CLI, 40000, SRV, 80, TCP_ACK | TCP_FIN, 0)),
            (10_000, tcp(SRV, 80, CLI, 40000, TCP_ACK | TCP_FIN, 0)),
            (11_000, tcp(CLI, 40000, SRV, 80, TCP_ACK, 0)),
        ]
    }

    fn write_pcap(path: &Path, datalink: DataLink, frames: &[(u64, Vec<u8>)]) {
        let header = PcapHeader {
            datalink,
            endianness: Endianness::Little,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
        for (us, f) in frames {
            let ts = Duration::from_micros(T0 * 1_000_000 + us);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f)).unwrap();
        }
    }

    fn run(path: &Path, opts: &ExtractOptions) -> (ExtractSummary, Vec<FlowRecord>) {
        let mut recs = Vec::new();
        let s = extract_file(path, opts, &mut recs).unwrap_or_else(|e| panic!("{e}"));
        (s, recs)
    }

    fn feat(rec: &FlowRecord, name: &str) -> f64 {
        flow_features(&rec.key, &rec.value)[feature_index(name).unwrap()]
    }

    fn packets(recs: &[FlowRecord]) -> u64 {
        recs.iter()
            .map(|r| r.value.fwd.packets + r.value.bwd.packets)
            .sum()
    }

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
        assert_eq!(
            features::flow_id_string(&id),
            "192.168.1.20-192.168.1.10-40000-80-6"
        );
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
    fn csv_output_end_to_end() {
        let dir = TempDir::new("csv");
        let path = dir.path("exchange.pcapng.pcap");
        let mut frames = tcp_exchange();
        frames.push((20_000, udp(CLI, 5353, SRV, 53, 30)));
        write_pcap(&path, DataLink::ETHERNET, &frames);
        let out = dir.path("flows.csv");
        let args = FeaturesArgs {
            pcap: path,
            out: Some(out.clone()),
            active_timeout: 120.0,
            idle_timeout: 30.0,
        };
        run_features(&args).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], features::csv_header());
        assert!(lines[1].starts_with("192.168.1.20-192.168.1.10-40000-80-6,192.168.1.20,40000,"));
        assert!(lines[1].ends_with(",fin"));
        assert!(lines[2].starts_with("192.168.1.20-192.168.1.10-5353-53-17,"));
        assert!(lines[2].ends_with(",flush"));
        let cols = 7 + FLOW_FEATURES.len() + 1;
        assert!(lines.iter().all(|l| l.split(',').count() == cols));
        // --out must not overwrite the capture.
        let same = FeaturesArgs {
            out: Some(args.pcap.clone()),
            ..args
        };
        assert!(matches!(
            run_features(&same),
            Err(OfflineError::OutputIsInput { .. })
        ));
    }

    #[test]
    fn csv_sink_translates_clocks_and_always_writes_a_header() {
        let mut empty = CsvSink::unix(Vec::new());
        empty.flush().unwrap();
        assert_eq!(
            String::from_utf8(empty.finish().unwrap()).unwrap(),
            features::csv_header() + "\n"
        );
        // The live agent's records carry the kernel clock: the sink translates it.
        let mut table = FlowTable::new(FlowTimeouts::DEFAULT);
        let mut recs = Vec::new();
        let m = parse::parse(&udp(CLI, 1, SRV, 2, 5)[..]).meta.unwrap();
        table.packet(&m, 5_000_000_000, &mut recs).unwrap();
        table.finish(5_000_000_000, &mut recs).unwrap();
        let mut sink = CsvSink::new(Vec::new(), |mono| mono + T0 * 1_000_000_000);
        let dyn_sink: &mut dyn RecordSink = &mut sink;
        dyn_sink.record(&recs[0]).unwrap();
        assert_eq!(sink.rows(), 1);
        let text = String::from_utf8(sink.finish().unwrap()).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains(",2023-11-14 22:13:25.000000,"), "{row}");
        assert_eq!(
            row,
            features::csv_row(&FlowRecord {
                value: FlowValue {
                    first_ns: recs[0].value.first_ns + T0 * 1_000_000_000,
                    ..recs[0].value
                },
                ..recs[0]
            })
        );
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
            matches!(e, OfflineError::UnsupportedLinkType { linktype: 101, .. }),
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
                Some(OfflineError::Truncated {
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
            let args = FeaturesArgs {
                pcap: path,
                out: Some(out.clone()),
                active_timeout: 120.0,
                idle_timeout: 30.0,
            };
            assert!(matches!(
                run_features(&args),
                Err(OfflineError::Truncated { packets: 7, .. })
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
            matches!(s.stopped, Some(OfflineError::Corrupt { packets: 7, .. })),
            "{:?}",
            s.stopped
        );
    }

    #[test]
    fn bad_inputs_give_clear_errors() {
        let dir = TempDir::new("bad");
        let open = |p: &Path| Capture::open(p).err().expect("refused");
        assert!(matches!(open(&dir.0), OfflineError::IsDirectory { .. }));
        assert!(matches!(
            open(&dir.path("missing.pcap")),
            OfflineError::NotFound { .. }
        ));
        let write = |name: &str, b: &[u8]| {
            let p = dir.path(name);
            std::fs::write(&p, b).unwrap();
            p
        };
        assert!(matches!(
            open(&write("empty.pcap", b"")),
            OfflineError::Empty { .. }
        ));
        let e = open(&write("garbage.pcap", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(e.to_string().contains("47 45 54 20"), "{e}");
        let e = open(&write("x.pcap.gz", &[0x1f, 0x8b, 8, 0, 0, 0]));
        assert!(e.to_string().contains("gzip"), "{e}");
        let e = open(&write("tiny.pcap", &[0xd4, 0xc3]));
        assert!(matches!(e, OfflineError::NotCapture { .. }), "{e}");
        let e = open(&write("short-header.pcap", &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]));
        assert!(
            matches!(
                e,
                OfflineError::BadHeader {
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
                OfflineError::BadHeader {
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

    fn write_pcapng(path: &Path, tsresol: Option<u8>, linktype: DataLink, frames: &[(u64, Vec<u8>)]) {
        let mut w = PcapNgWriter::with_endianness(File::create(path).unwrap(), Endianness::Little).unwrap();
        let options = tsresol
            .map(InterfaceDescriptionOption::IfTsResol)
            .into_iter()
            .collect();
        let idb = InterfaceDescriptionBlock {
            linktype,
            snaplen: 65535,
            options,
        };
        w.write_block(&idb.into_block()).unwrap();
        for (us, f) in frames {
            let us = T0 * 1_000_000 + us;
            // pcap-file writes the Duration's nanoseconds as the raw tick count.
            let ticks = if tsresol == Some(9) { us * 1000 } else { us };
            let epb = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(ticks),
                original_len: f.len() as u32,
                data: Cow::Borrowed(f),
                options: vec![],
            };
            w.write_block(&epb.into_block()).unwrap();
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
            matches!(s.stopped, Some(OfflineError::Truncated { packets: 7, .. })),
            "{:?}",
            s.stopped
        );
        // Non-Ethernet interface.
        write_pcapng(&path, None, DataLink::LINUX_SLL, &frames);
        let mut recs = Vec::new();
        let e = extract_file(&path, &ExtractOptions::default(), &mut recs).unwrap_err();
        assert!(
            matches!(e, OfflineError::UnsupportedLinkType { linktype: 113, .. }),
            "{e}"
        );
    }

    #[test]
    fn cli_parses_features_arguments() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(["netanom", "features", "--pcap", "a.pcap"]).unwrap();
        let crate::cli::Command::Features(a) = cli.command else {
            panic!("not features")
        };
        assert_eq!(a.options().timeouts, FlowTimeouts::DEFAULT);
        assert_eq!(a.out, None);
        let cli = crate::cli::Cli::try_parse_from([
            "netanom",
            "features",
            "--pcap",
            "a.pcap",
            "--out",
            "f.csv",
            "--active-timeout",
            "60",
            "--idle-timeout",
            "0.5",
        ])
        .unwrap();
        let crate::cli::Command::Features(a) = cli.command else {
            panic!("not features")
        };
        let t = a.options().timeouts;
        assert_eq!((t.active_ns, t.idle_ns), (60_000_000_000, 500_000_000));
        assert!(
            crate::cli::Cli::try_parse_from(["netanom", "features", "--pcap", "a", "--idle-timeout", "0"])
                .is_err()
        );
        assert!(crate::cli::Cli::try_parse_from(["netanom", "features"]).is_err());
    }

    fn shared_dir() -> PathBuf {
        std::env::var_os("NETANOM_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
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
}
