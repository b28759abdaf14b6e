//! What travels from the drain (or the capture reader) to the scoring stage.
use netanom_common::{
    agg::{DstKey, DstStats, HostKey, SrcStats},
    flow::FlowRecord,
};

use super::reload::Reload;
use crate::features;

/// What travels through the queue.
#[derive(Debug)]
pub enum Batch {
    /// Ended flows, with their feature vectors (row-major, `dim` values per flow).
    Flows {
        records: Vec<FlowRecord>,
        features: Vec<f64>,
        dim: usize,
    },
    /// One drain interval of aggregates.
    Aggregates {
        interval_s: f64,
        src: Vec<(HostKey, SrcStats)>,
        dst: Vec<(DstKey, DstStats)>,
    },
    /// A validated new configuration (and model bundle) for the scoring stage (SIGHUP).
    Reload(Box<Reload>),
}

impl Batch {
    /// The flows `recs` with their feature vectors; `None` when there are none.
    pub fn flows(recs: Vec<FlowRecord>) -> Option<Batch> {
        if recs.is_empty() {
            return None;
        }
        let dim = features::N_FLOW_FEATURES;
        let mut feats = vec![0.0; recs.len() * dim];
        for (r, row) in recs.iter().zip(feats.chunks_mut(dim)) {
            features::flow_features_into(&r.key, &r.value, row);
        }
        Some(Batch::Flows {
            records: recs,
            features: feats,
            dim,
        })
    }

    /// Vectors in the batch.
    pub fn len(&self) -> usize {
        match self {
            Batch::Flows { records, .. } => records.len(),
            Batch::Aggregates { src, dst, .. } => src.len() + dst.len(),
            Batch::Reload(_) => 0,
        }
    }
    /// Whether the batch carries nothing for the consumer. Aggregate batches and reloads are
    /// never empty: they are also the consumer's clock tick and its control messages.
    pub fn is_empty(&self) -> bool {
        matches!(self, Batch::Flows { records, .. } if records.is_empty())
    }
}
