//! Flows that simply stop are found by sweeping the flow table in batches: the idle ones are
//! exported and deleted, and closed flows are forgotten after their linger time, by the one
//! expiry rule the offline extractor applies too ([`netanom_common::flow::expiry`]).
use netanom_common::{
    flow::{EndReason, Expiry, FlowKey, FlowRecord, FlowTimeouts, FlowValue, ST_CLOSED, expiry},
    names,
};

use super::error::{BATCH, DrainError, batch_err};
use crate::{
    datapath::{Datapath, batch::BatchMap},
    telemetry::SweepTotals,
};

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
    pub fn add_to(&self, t: &mut SweepTotals, flush: bool) {
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
            let rule = expiry(v, now, t);
            if v.state & ST_CLOSED != 0 {
                if !flush && rule == Expiry::Forget {
                    doomed.push(*k);
                    s.forgotten += 1;
                }
                continue;
            }
            if flush || rule == Expiry::ExportIdle {
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

/// Number of entries in the flow table (one batch pass; for tests and status).
pub fn flow_entries(dp: &Datapath) -> Result<usize, DrainError> {
    let data = dp.map_data(names::MAP_FLOWS)?;
    BatchMap::<FlowKey, FlowValue>::new(data.fd())
        .for_each(BATCH, |_, _| {})
        .map_err(batch_err(names::MAP_FLOWS))
}
