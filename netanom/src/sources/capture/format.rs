//! What every capture format shares: the format's name, the file behind the reader, and
//! little- or big-endian fields.
use std::{
    fs::File,
    io::{self, Cursor},
};

use pcap_file::DataLink;

/// LINKTYPE_ETHERNET, the only link type we read.
pub const LINKTYPE_ETHERNET: u32 = 1;

pub(super) const PCAPNG_SHB: u32 = 0x0a0d_0d0a;

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

/// The file, preceded by the bytes read to recognise it.
pub(super) type Source = io::Chain<Cursor<Vec<u8>>, File>;

pub(super) fn link_name(dl: DataLink) -> String {
    match dl {
        DataLink::Unknown(_) => "not a link type this reader knows".to_string(),
        other => format!("LINKTYPE_{other:?}"),
    }
}

pub(super) fn rd32(b: &[u8], off: usize, big: bool) -> Option<u32> {
    let w: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    })
}

pub(super) fn rd16(b: &[u8], off: usize, big: bool) -> Option<u16> {
    let w: [u8; 2] = b.get(off..off + 2)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(w)
    } else {
        u16::from_le_bytes(w)
    })
}
