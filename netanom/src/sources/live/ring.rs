//! Flows that end in the kernel (FIN, RST, active timeout) arrive through the export ring
//! buffer; the kernel counts the records it could not queue (`export_lost`).
use std::os::fd::AsFd;

use aya::maps::{MapData, RingBuf};
use netanom_common::{flow::FlowRecord, names};

use super::error::DrainError;
use crate::datapath::Datapath;

/// Reads flow records from the kernel's export ring buffer.
pub struct ExportReader {
    ring: RingBuf<MapData>,
}

impl ExportReader {
    /// Takes the ring buffer out of the datapath.
    pub fn new(dp: &mut Datapath) -> Result<Self, DrainError> {
        let map = dp.take_map(names::MAP_FLOW_EXPORT)?;
        let ring = RingBuf::try_from(map).map_err(|e| DrainError::Ring(e.to_string()))?;
        Ok(Self { ring })
    }

    /// Appends every record queued so far to `out`; returns how many.
    pub fn read(&mut self, out: &mut Vec<FlowRecord>) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if item.len() >= size_of::<FlowRecord>() {
                // SAFETY: the kernel wrote a whole FlowRecord (checked length); it is plain
                // data, and read_unaligned makes no alignment assumption.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const FlowRecord) });
                n += 1;
            }
        }
        n
    }
}

impl AsFd for ExportReader {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

impl std::os::fd::AsRawFd for ExportReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}
