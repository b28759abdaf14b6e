//! Classic pcap records: a 16-byte header (timestamp, captured and original lengths), then
//! the frame.
use pcap_file::pcap::PcapReader;

use super::{
    error::{CaptureError, Position},
    format::Source,
};

/// A classic pcap file being read.
pub(super) struct PcapState {
    pub r: PcapReader<Source>,
    /// Nanosecond timestamps (magic `a1b23c4d`), else microseconds.
    pub nanos: bool,
    pub big: bool,
    pub snaplen: u32,
}

impl PcapState {
    /// The next frame's (timestamp, original length), its bytes in `buf`; `None` at the end.
    pub fn next(
        &mut self,
        pos: &mut Position,
        buf: &mut Vec<u8>,
    ) -> Result<Option<(u64, u32)>, CaptureError> {
        let pkt = match self.r.next_raw_packet() {
            None => return Ok(None),
            Some(Ok(pkt)) => pkt,
            Some(Err(e)) => {
                // A record longer than the snap length (or 256 KiB) is no truncation but garbage.
                let limit = u64::from(self.snaplen).max(262_144) + 16;
                return Err(pos.read_error(e, self.big, limit));
            }
        };
        pos.offset += 16 + u64::from(pkt.incl_len);
        let frac = u64::from(pkt.ts_frac);
        let ts = u64::from(pkt.ts_sec) * 1_000_000_000 + if self.nanos { frac } else { frac * 1000 };
        buf.clear();
        buf.extend_from_slice(&pkt.data);
        Ok(Some((ts, pkt.orig_len)))
    }
}
