//! The XDP program's work on a capture, packet by packet: enforcement first (a blocked
//! source's packets, and packets over a rate limit, are dropped before flow accounting), then
//! the flow table and the aggregates.
//!
//! One thing the XDP program never sees: a capture recorded without mitigation still holds
//! the answers to what the simulation dropped (a server's reply to a blocked client's request,
//! a scanned host's RSTs). On a live gateway they would never have been sent; accounted, they
//! would be flows *started* by the answering host and make it look like an offender. So a
//! packet that belongs to no flow and goes to a blocked address, or comes from a service a
//! rate limit protects, is not accounted (and is counted).
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
    /// Packets that belong to no flow and answer what the simulation dropped: to a blocked
    /// address, or from a service a rate limit protects (its SYN-ACKs to a flood's dropped
    /// SYNs). A capture still holds them; on a live gateway they would never have been sent.
    /// Not accounted.
    pub answers_to_dropped: u64,
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
    /// Whether `m` goes to a blocked address, or comes from a rate-limited service.
    fn answers_blocked(&self, m: &PacketMeta, now_ns: u64) -> bool {
        let t = self.tables.lock();
        !t.is_empty()
            && (t.blocks_ip(crate::features::identity::addr(m.family, &m.dst), now_ns)
                || t.limits_service((m.family, m.src, m.sport, m.proto), now_ns))
    }

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
        if !self.flows.has_flow_of(m) && self.answers_blocked(m, now_ns) {
            self.drops.answers_to_dropped += 1;
            return Ok(false);
        }
        let ev = self.flows.packet(m, now_ns, ended)?;
        self.aggregates.packet(m, &ev, now_ns);
        Ok(true)
    }
}
