//! Per-source and per-destination aggregates are read and reset every interval, so each drained
//! entry describes one interval.
use netanom_common::{
    agg::{DstKey, DstStats, HostKey, SrcStats},
    names,
};

use super::error::{BATCH, DrainError, batch_err};
use crate::datapath::{Datapath, batch::BatchMap};

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
