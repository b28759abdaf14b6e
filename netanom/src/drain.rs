//! Getting ended flows and aggregates out of the kernel.
//!
//! Three paths, all counted:
//! - flows that end in the kernel (FIN, RST, active timeout) arrive through the ring buffer
//!   ([`ExportReader`]); the kernel counts records it could not queue (`export_lost`);
//! - flows that simply stop (idle timeout) are found by [`sweep_flows`], which reads the flow
//!   table in batches, exports the idle ones and deletes them, and forgets closed flows after
//!   their linger time;
//! - per-source and per-destination aggregates are read and reset every interval by
//!   [`drain_aggregates`], so each drained entry describes one interval. The kernel credits
//!   aggregate volume in chunks (`agg::CREDIT_PACKETS`); what an idle flow still had pending
//!   when the sweep exported it is credited by the agent ([`Uncredited`]).
use std::{collections::HashMap, hash::Hash, io, os::fd::AsFd};

use aya::maps::{MapData, RingBuf};
use netanom_common::{
    agg::{DstKey, DstStats, HostKey, SrcStats},
    flow::{EndReason, FlowKey, FlowRecord, FlowTimeouts, FlowValue, ST_CLOSED},
    names,
};
use thiserror::Error;

use crate::{
    batch::BatchMap,
    datapath::{Datapath, DatapathError},
};

/// Elements moved per batch syscall.
pub const BATCH: usize = 1024;

#[derive(Debug, Error)]
pub enum DrainError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("reading kernel map {map} in batches failed: {source}")]
    Batch {
        map: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("opening the flow export ring buffer failed: {0}")]
    Ring(String),
}

fn batch_err(map: &'static str) -> impl Fn(io::Error) -> DrainError {
    move |source| DrainError::Batch { map, source }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of the kernel's timestamps.
pub fn mono_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Converts the kernel's monotonic timestamps to Unix time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Unix time minus monotonic time, nanoseconds.
    offset_ns: i128,
}

impl Clock {
    pub fn now() -> Clock {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Clock {
            offset_ns: wall - i128::from(mono_now_ns()),
        }
    }
    /// Unix nanoseconds of a monotonic timestamp.
    pub fn unix_ns(&self, mono_ns: u64) -> u64 {
        (i128::from(mono_ns) + self.offset_ns).max(0) as u64
    }
}

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

/// What one sweep of the flow table found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Entries in the table before the sweep deleted any.
    pub entries: usize,
    /// Live (not closed) flows left in the table.
    pub live: usize,
    /// Flows exported (idle ones, deleted; or, when flushing, every live one, kept).
    pub exported: usize,
    /// Closed flows deleted after their linger time.
    pub forgotten: usize,
}

impl Sweep {
    /// Entries left in the table after the sweep.
    pub fn remaining(&self, flush: bool) -> usize {
        let deleted = self.forgotten + if flush { 0 } else { self.exported };
        self.entries.saturating_sub(deleted)
    }

    /// Adds this sweep to the running totals.
    pub fn add_to(&self, t: &mut crate::stats::SweepTotals, flush: bool) {
        if flush {
            t.exported_flush += self.exported as u64;
        } else {
            t.exported_idle += self.exported as u64;
        }
        t.forgotten += self.forgotten as u64;
        t.in_table = self.remaining(flush) as u64;
        t.live = self.live as u64;
    }
}

/// Sweeps the flow table at monotonic time `now`: flows idle longer than the idle timeout
/// are exported (reason idle) and deleted; closed flows past their linger time are deleted.
/// With `flush`, every live flow is exported (reason flush) and nothing is deleted.
///
/// Streams: `export` gets each record as its chunk is read, and each chunk's deletions are
/// made before the next chunk is read, so memory stays bounded by one chunk.
pub fn sweep_flows(
    dp: &Datapath,
    now: u64,
    t: &FlowTimeouts,
    flush: bool,
    mut export: impl FnMut(&FlowRecord),
) -> Result<Sweep, DrainError> {
    let data = dp.map_data(names::MAP_FLOWS)?;
    let map: BatchMap<'_, FlowKey, FlowValue> = BatchMap::new(data.fd());
    let mut doomed = Vec::with_capacity(BATCH);
    let mut s = Sweep::default();
    let mut delete_err = None;
    map.for_each_chunk(BATCH, |keys, values| {
        for (k, v) in keys.iter().zip(values) {
            s.entries += 1;
            let idle = now.saturating_sub(v.last_ns);
            if v.state & ST_CLOSED != 0 {
                if !flush && idle > t.closed_linger_ns {
                    doomed.push(*k);
                    s.forgotten += 1;
                }
                continue;
            }
            if flush || idle > t.idle_ns {
                export(&FlowRecord {
                    key: *k,
                    reason: if flush {
                        EndReason::Flush
                    } else {
                        EndReason::IdleTimeout
                    } as u32,
                    _pad: 0,
                    value: *v,
                });
                s.exported += 1;
                if !flush {
                    doomed.push(*k);
                }
            } else {
                s.live += 1;
            }
        }
        if !doomed.is_empty() {
            if let Err(e) = map.delete(&doomed) {
                delete_err.get_or_insert(e);
            }
            doomed.clear();
        }
    })
    .map_err(batch_err(names::MAP_FLOWS))?;
    if let Some(e) = delete_err {
        return Err(batch_err(names::MAP_FLOWS)(e));
    }
    Ok(s)
}

/// [`sweep_flows`] collecting the records in a vector.
pub fn sweep_flows_into(
    dp: &Datapath,
    now: u64,
    t: &FlowTimeouts,
    flush: bool,
    out: &mut Vec<FlowRecord>,
) -> Result<Sweep, DrainError> {
    sweep_flows(dp, now, t, flush, |r| out.push(*r))
}

/// Reads and resets every per-source and per-destination aggregate.
pub fn drain_aggregates(
    dp: &Datapath,
    src: &mut Vec<(HostKey, SrcStats)>,
    dst: &mut Vec<(DstKey, DstStats)>,
) -> Result<(), DrainError> {
    let s = dp.map_data(names::MAP_SRC)?;
    BatchMap::<HostKey, SrcStats>::new(s.fd())
        .drain(BATCH, |k, v| src.push((*k, *v)))
        .map_err(batch_err(names::MAP_SRC))?;
    let d = dp.map_data(names::MAP_DST)?;
    BatchMap::<DstKey, DstStats>::new(d.fd())
        .drain(BATCH, |k, v| dst.push((*k, *v)))
        .map_err(batch_err(names::MAP_DST))?;
    Ok(())
}

/// Aggregate volume the kernel had not credited yet when the sweep exported an idle flow
/// (it credits in chunks, see `agg::CREDIT_PACKETS`): credited by the agent to the next
/// drained aggregates, so that per-source and per-destination volume loses nothing.
#[derive(Debug, Default)]
pub struct Uncredited {
    src: HashMap<HostKey, Volume>,
    dst: HashMap<DstKey, Volume>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Volume {
    packets: u64,
    bytes: u64,
    last_ns: u64,
    /// Of `packets`, those sent in the flow's forward direction (sources only, see
    /// `SrcStats::fwd_packets`).
    fwd_packets: u64,
}

impl Volume {
    fn add(&mut self, packets: u64, bytes: u64, last_ns: u64) {
        self.packets += packets;
        self.bytes += bytes;
        self.last_ns = self.last_ns.max(last_ns);
    }
}

impl Uncredited {
    /// Notes what the exported flow `r` still had pending, per direction.
    pub fn add(&mut self, r: &FlowRecord) {
        let (k, v) = (&r.key, &r.value);
        let lo = (k.addr_lo, k.port_lo);
        let hi = (k.addr_hi, k.port_hi);
        let (initiator, responder) = if v.fwd_is_lo != 0 { (lo, hi) } else { (hi, lo) };
        for (d, sender, forward) in [(&v.fwd, initiator, true), (&v.bwd, responder, false)] {
            if d.agg_pkts == 0 {
                continue;
            }
            let (packets, bytes) = (u64::from(d.agg_pkts), u64::from(d.agg_bytes));
            let host = HostKey {
                addr: sender.0,
                family: k.family,
                _pad: [0; 3],
            };
            let vol = self.src.entry(host).or_default();
            vol.add(packets, bytes, d.last_ns);
            if forward {
                vol.fwd_packets += packets;
            }
            if forward {
                let service = DstKey {
                    addr: responder.0,
                    port: responder.1,
                    proto: k.proto,
                    family: k.family,
                };
                self.dst
                    .entry(service)
                    .or_default()
                    .add(packets, bytes, d.last_ns);
            }
        }
    }

    /// Whether nothing is waiting to be credited.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty() && self.dst.is_empty()
    }

    /// Adds what was noted to freshly drained aggregates (a source or service the kernel has
    /// no entry for gets one), and forgets it.
    pub fn credit(&mut self, src: &mut Vec<(HostKey, SrcStats)>, dst: &mut Vec<(DstKey, DstStats)>) {
        merge(&mut self.src, src, |s, v| {
            add_volume(&mut s.packets, &mut s.bytes, &mut s.first_ns, &mut s.last_ns, v);
            s.fwd_packets += v.fwd_packets;
        });
        merge(&mut self.dst, dst, |d, v| {
            add_volume(&mut d.packets, &mut d.bytes, &mut d.first_ns, &mut d.last_ns, v)
        });
    }
}

fn add_volume(packets: &mut u64, bytes: &mut u64, first_ns: &mut u64, last_ns: &mut u64, v: &Volume) {
    if *packets == 0 {
        *first_ns = v.last_ns;
    }
    *packets += v.packets;
    *bytes += v.bytes;
    *last_ns = (*last_ns).max(v.last_ns);
}

fn merge<K: Hash + Eq + Copy, V: Default>(
    pending: &mut HashMap<K, Volume>,
    drained: &mut Vec<(K, V)>,
    add: impl Fn(&mut V, &Volume),
) {
    if pending.is_empty() {
        return;
    }
    for (k, v) in drained.iter_mut() {
        if let Some(p) = pending.remove(k) {
            add(v, &p);
        }
    }
    for (k, p) in pending.drain() {
        let mut v = V::default();
        add(&mut v, &p);
        drained.push((k, v));
    }
}

/// Number of entries in the flow table (one batch pass; for tests and status).
pub fn flow_entries(dp: &Datapath) -> Result<usize, DrainError> {
    let data = dp.map_data(names::MAP_FLOWS)?;
    BatchMap::<FlowKey, FlowValue>::new(data.fd())
        .for_each(BATCH, |_, _| {})
        .map_err(batch_err(names::MAP_FLOWS))
}
