//! Everything that can go wrong reading a capture. Messages are one paragraph: what happened,
//! then what to do.
use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::PathBuf,
};

use pcap_file::PcapError;

use super::format::{CaptureFormat, rd32};

/// Everything that can go wrong reading a capture or writing its flows. Messages are one
/// paragraph: what happened, then what to do.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("capture file {} does not exist; check the path given to --pcap", path.display())]
    NotFound { path: PathBuf },
    #[error(
        "{} is a directory, not a capture file; give --pcap the path of one .pcap or .pcapng file \
         (repeat --pcap for several files)",
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
        "{} is not a pcap or pcapng capture ({what}); netanom reads classic pcap and pcapng \
         files, recognised by their first bytes whatever their extension",
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
         were processed before the truncation and the flows built from them were written (and \
         scored, by `netanom run --pcap`); the rest of the capture is missing (was the capture interrupted, or the copy incomplete?)",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        packets: u64,
        offset: u64,
    },
    #[error(
        "{} is corrupt at byte offset {offset}: {reason}. {packets} packets were processed before it \
         and the flows built from them were written (and scored, by `netanom run --pcap`); the \
         rest of the file was not read",
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

/// Where reading has got to: what errors report.
pub(super) struct Position {
    pub path: PathBuf,
    pub format: CaptureFormat,
    /// Bytes of the file consumed so far.
    pub offset: u64,
    /// Frames returned so far.
    pub frames: u64,
    /// A regular file (not a pipe), which can be opened again to inspect a bad record.
    pub regular: bool,
}

impl Position {
    /// A record that makes no sense, at the current offset (or `back` bytes before it).
    pub fn corrupt(&self, back: u64, reason: String) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.clone(),
            packets: self.frames,
            offset: self.offset - back,
            reason,
        }
    }

    /// Turns a reader error into ours: the end of the file inside a record is a truncation,
    /// unless the record's own length field is absurd (then the file is corrupt).
    pub fn read_error(&self, e: PcapError, big: bool, limit: u64) -> CaptureError {
        let (path, packets, offset) = (self.path.clone(), self.frames, self.offset);
        match e {
            PcapError::IoError(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                match self.claimed_record_len(big) {
                    Some(n) if n > limit => CaptureError::Corrupt {
                        path,
                        packets,
                        offset,
                        reason: format!("the record there claims {n} bytes, more than any packet can have"),
                    },
                    _ => CaptureError::Truncated {
                        path,
                        packets,
                        offset,
                    },
                }
            }
            PcapError::IoError(err) => CaptureError::Read { path, packets, err },
            other => CaptureError::Corrupt {
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
