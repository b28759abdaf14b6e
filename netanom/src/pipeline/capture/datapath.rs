//! The XDP program's work on a capture, packet by packet: enforcement first (a blocked
//! source's packets, and packets over a rate limit, are dropped before flow accounting), then
//! the flow table and the aggregates.
use std::io;

use netanom_common::{flow::FlowRecord, parse::PacketMeta};

use crate::{
    respond::{FrameVerdict, SharedTables},
    sources::capture::{AggregateTable, FlowTable},
};

/// What enforcement did, as the kernel's event counters count it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropCounts {
    /// Packets of blocked sources, dropped.
    pub blocked: u64,
    /// Packets over a rate limit, dropped.
    pub rate_limited: u64,
    /// Packets a block or rate limit would have dropped, passed because their source is
    /// allowlisted.
    pub passed_allowlisted: u64,
}

impl DropCounts {
    /// Packets dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.blocked + self.rate_limited
    }
}

/// The capture's datapath: the lists the responder writes, the flow table, the aggregates.
pub struct CaptureDatapath {
    pub flows: FlowTable,
    pub aggregates: AggregateTable,
    pub tables: SharedTables,
    pub drops: DropCounts,
}

impl CaptureDatapath {
    pub fn new(flows: FlowTable, tables: SharedTables) -> CaptureDatapath {
        CaptureDatapath {
            flows,
            aggregates: AggregateTable::new(),
            tables,
            drops: DropCounts::default(),
        }
    }

    /// One IP packet at `now_ns`: dropped, or accounted into its flow (ended flows go to
    /// `ended`) and the aggregates. Returns whether it was accounted.
    pub fn packet(&mut self, m: &PacketMeta, now_ns: u64, ended: &mut Vec<FlowRecord>) -> io::Result<bool> {
        match self.tables.lock().verdict(m, now_ns) {
            FrameVerdict::Pass => {}
            FrameVerdict::PassedAllowlisted => self.drops.passed_allowlisted += 1,
            FrameVerdict::DroppedBlocked => {
                self.drops.blocked += 1;
                return Ok(false);
            }
            FrameVerdict::DroppedRateLimited => {
                self.drops.rate_limited += 1;
                return Ok(false);
            }
        }
        let ev = self.flows.packet(m, now_ns, ended)?;
        self.aggregates.packet(m, &ev, now_ns);
        Ok(true)
    }
}
