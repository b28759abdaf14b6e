//! Reading a capture file frame by frame: classic pcap or pcapng, told apart by the magic
//! number (not the file name), Ethernet framing only. A file that ends inside a record is a
//! truncation; a record that makes no sense is corruption; both name the byte offset.
use std::{
    fs::File,
    io::{self, Cursor, Read},
    path::Path,
};

use pcap_file::{Endianness, PcapError, TsResolution, pcap::PcapReader, pcapng::PcapNgReader};

use super::{
    error::{CaptureError, Position},
    format::{CaptureFormat, LINKTYPE_ETHERNET, PCAPNG_SHB, link_name, rd32},
    pcap::PcapState,
    pcapng::PcapNgState,
};

const PCAP_MAGICS: [u32; 4] = [0xa1b2_c3d4, 0xa1b2_3c4d, 0xd4c3_b2a1, 0x4d3c_b2a1];

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

enum Reader {
    Pcap(PcapState),
    PcapNg(PcapNgState),
}

/// An open capture file, read frame by frame.
pub struct Capture {
    pos: Position,
    reader: Reader,
    /// The current frame's bytes.
    buf: Vec<u8>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

/// The first bytes of a file and the file itself (for the readers, which start over).
fn read_head(path: &Path) -> Result<(Vec<u8>, File, bool), CaptureError> {
    let p = || path.to_path_buf();
    let meta = std::fs::metadata(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => CaptureError::NotFound { path: p() },
        _ => CaptureError::Open { path: p(), err },
    })?;
    if meta.is_dir() {
        return Err(CaptureError::IsDirectory { path: p() });
    }
    let mut file = File::open(path).map_err(|err| CaptureError::Open { path: p(), err })?;
    let mut head = Vec::with_capacity(12);
    (&mut file)
        .take(12)
        .read_to_end(&mut head)
        .map_err(|err| CaptureError::Read {
            path: p(),
            packets: 0,
            err,
        })?;
    if head.is_empty() {
        return Err(CaptureError::Empty { path: p() });
    }
    let not_capture = |what: String| CaptureError::NotCapture { path: p(), what };
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(not_capture(
            "it is gzip-compressed: decompress it first, e.g. with gunzip".into(),
        ));
    }
    if head.len() < 4 {
        return Err(not_capture(format!("it is only {} bytes long", head.len())));
    }
    Ok((head, file, meta.is_file()))
}

impl Capture {
    /// Opens `path` and reads its file header. Fails with a clear error for a missing file, a
    /// directory, an empty file, something that is not a capture, or a link type other than
    /// Ethernet.
    pub fn open(path: &Path) -> Result<Capture, CaptureError> {
        let p = || path.to_path_buf();
        let (head, file, regular) = read_head(path)?;
        let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let src = Cursor::new(head.clone()).chain(file);
        let bad_header = |format: CaptureFormat, e: PcapError| CaptureError::BadHeader {
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
                return Err(CaptureError::UnsupportedLinkType {
                    path: p(),
                    linktype,
                    name: link_name(h.datalink),
                });
            }
            let state = PcapState {
                nanos: h.ts_resolution == TsResolution::NanoSecond,
                big: h.endianness == Endianness::Big,
                snaplen: h.snaplen,
                r,
            };
            (CaptureFormat::Pcap, Reader::Pcap(state), 24)
        } else if magic == PCAPNG_SHB {
            let r = PcapNgReader::new(src).map_err(|e| bad_header(CaptureFormat::PcapNg, e))?;
            // The section header's length, for byte offsets in messages.
            let big = r.section().endianness == Endianness::Big;
            let shb_len = rd32(&head, 4, big).map_or(0, u64::from);
            (
                CaptureFormat::PcapNg,
                Reader::PcapNg(PcapNgState::new(r)),
                shb_len,
            )
        } else {
            return Err(CaptureError::NotCapture {
                path: p(),
                what: format!("it starts with the bytes {}", hex(&head[..4])),
            });
        };
        Ok(Capture {
            pos: Position {
                path: p(),
                format,
                offset,
                frames: 0,
                regular,
            },
            reader,
            buf: Vec::with_capacity(2048),
        })
    }

    pub fn path(&self) -> &Path {
        &self.pos.path
    }

    pub fn format(&self) -> CaptureFormat {
        self.pos.format
    }

    /// Frames returned so far.
    pub fn frames(&self) -> u64 {
        self.pos.frames
    }

    /// The next frame, `None` at the end of the file. A file that ends inside a record gives
    /// [`CaptureError::Truncated`], a record that makes no sense [`CaptureError::Corrupt`];
    /// after an error, stop reading.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let next = match &mut self.reader {
            Reader::Pcap(s) => s.next(&mut self.pos, &mut self.buf)?,
            Reader::PcapNg(s) => s.next(&mut self.pos, &mut self.buf)?,
        };
        let Some((ts_ns, orig_len)) = next else {
            return Ok(None);
        };
        self.pos.frames += 1;
        Ok(Some(Frame {
            ts_ns,
            orig_len,
            data: &self.buf,
        }))
    }
}
