//! pcapng blocks: section headers, interface descriptions (link type, timestamp resolution
//! and offset), and the three kinds of packet block; everything else is skipped.
use pcap_file::{
    Endianness,
    pcapng::{PcapNgReader, blocks::interface_description::InterfaceDescriptionOption},
};

use super::{
    error::{CaptureError, Position},
    format::{LINKTYPE_ETHERNET, PCAPNG_SHB, Source, link_name, rd16, rd32},
};

const PCAPNG_IDB: u32 = 1;
const PCAPNG_PB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
/// The largest record we consider plausible: pcap-file buffers at most 8 MB.
const MAX_RECORD: u64 = 8_000_000;

/// A pcapng interface: how to read its timestamps.
#[derive(Clone, Copy, Debug)]
struct Iface {
    /// Timestamp ticks per second (if_tsresol; default 10^6).
    ticks_per_s: u64,
    /// Seconds added to every timestamp (if_tsoffset).
    offset_s: u64,
}

/// A packet block's fields: interface, timestamp ticks (none in a simple packet block),
/// original length, and where the captured bytes are in the body.
struct PacketFields {
    iface: u32,
    ticks: Option<u64>,
    orig_len: u32,
    data: usize,
    captured: usize,
}

/// A pcapng file being read.
pub(super) struct PcapNgState {
    r: PcapNgReader<Source>,
    ifaces: Vec<Iface>,
    /// A simple packet block has no timestamp: it gets the previous packet's.
    last_ts_ns: u64,
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

/// The fields of a packet block of type `ty` (none for other blocks), checked against `body`.
fn packet_fields(ty: u32, body: &[u8], big: bool) -> Result<Option<PacketFields>, String> {
    match ty {
        PCAPNG_EPB | PCAPNG_PB => {
            let iface = if ty == PCAPNG_EPB {
                rd32(body, 0, big)
            } else {
                rd16(body, 0, big).map(u32::from)
            };
            let fields = (
                iface,
                rd32(body, 4, big),
                rd32(body, 8, big),
                rd32(body, 12, big),
                rd32(body, 16, big),
            );
            let (Some(iface), Some(hi), Some(lo), Some(cap), Some(orig_len)) = fields else {
                return Err("a packet block is too short for its header".into());
            };
            if body.len() < 20 + cap as usize {
                return Err(format!(
                    "a packet block claims {cap} captured bytes it does not hold"
                ));
            }
            Ok(Some(PacketFields {
                iface,
                ticks: Some((u64::from(hi) << 32) | u64::from(lo)),
                orig_len,
                data: 20,
                captured: cap as usize,
            }))
        }
        PCAPNG_SPB => {
            let Some(orig_len) = rd32(body, 0, big) else {
                return Err("a simple packet block is too short".into());
            };
            Ok(Some(PacketFields {
                iface: 0,
                ticks: None,
                orig_len,
                data: 4,
                captured: (orig_len as usize).min(body.len() - 4),
            }))
        }
        _ => Ok(None),
    }
}

impl PcapNgState {
    pub fn new(r: PcapNgReader<Source>) -> PcapNgState {
        PcapNgState {
            r,
            ifaces: Vec::new(),
            last_ts_ns: 0,
        }
    }

    /// The next frame's (timestamp, original length), its bytes in `buf`; `None` at the end.
    pub fn next(
        &mut self,
        pos: &mut Position,
        buf: &mut Vec<u8>,
    ) -> Result<Option<(u64, u32)>, CaptureError> {
        loop {
            let big = self.r.section().endianness == Endianness::Big;
            let block = match self.r.next_raw_block() {
                None => return Ok(None),
                Some(Ok(b)) => b,
                Some(Err(e)) => return Err(pos.read_error(e, big, MAX_RECORD)),
            };
            let (ty, len) = (block.type_, u64::from(block.initial_len));
            let pkt = packet_fields(ty, &block.body, big).map_err(|reason| pos.corrupt(0, reason))?;
            if let Some(p) = &pkt {
                buf.clear();
                buf.extend_from_slice(&block.body[p.data..p.data + p.captured]);
            }
            drop(block);
            pos.offset += len;
            match ty {
                PCAPNG_SHB => self.ifaces.clear(),
                PCAPNG_IDB => self.interface(pos, len)?,
                _ => {}
            }
            let Some(p) = pkt else {
                continue;
            };
            let ts = match p.ticks {
                None => self.last_ts_ns,
                Some(t) => self.timestamp(pos, len, p.iface, t)?,
            };
            self.last_ts_ns = ts;
            return Ok(Some((ts, p.orig_len)));
        }
    }

    /// Learns the interface just described (the block of `len` bytes before the offset).
    fn interface(&mut self, pos: &Position, len: u64) -> Result<(), CaptureError> {
        let Some(idb) = self.r.interfaces().last() else {
            return Ok(());
        };
        let linktype = u32::from(idb.linktype);
        if linktype != LINKTYPE_ETHERNET {
            return Err(CaptureError::UnsupportedLinkType {
                path: pos.path.clone(),
                linktype,
                name: link_name(idb.linktype),
            });
        }
        let mut iface = Iface {
            ticks_per_s: 1_000_000,
            offset_s: 0,
        };
        for opt in &idb.options {
            match opt {
                InterfaceDescriptionOption::IfTsResol(v) => match ticks_per_second(*v) {
                    Some(t) if t > 0 => iface.ticks_per_s = t,
                    _ => {
                        return Err(pos.corrupt(
                            len,
                            format!("interface timestamp resolution {v:#04x} is not usable"),
                        ));
                    }
                },
                InterfaceDescriptionOption::IfTsOffset(s) => iface.offset_s = *s,
                _ => {}
            }
        }
        self.ifaces.push(iface);
        Ok(())
    }

    /// Unix nanoseconds of `ticks` on interface `i`.
    fn timestamp(&self, pos: &Position, len: u64, i: u32, ticks: u64) -> Result<u64, CaptureError> {
        let Some(iface) = self.ifaces.get(i as usize) else {
            return Err(pos.corrupt(
                len,
                format!(
                    "a packet refers to interface {i}, but only {} interface descriptions precede it",
                    self.ifaces.len()
                ),
            ));
        };
        let ns = u128::from(ticks) * 1_000_000_000 / u128::from(iface.ticks_per_s)
            + u128::from(iface.offset_s) * 1_000_000_000;
        Ok(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}
