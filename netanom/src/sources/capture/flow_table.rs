//! The flow table of the offline extractor: the kernel's per-packet semantics
//! ([`netanom_common::flow`]), plus the agent's sweep ([`netanom_common::flow::expiry`]),
//! driven by capture timestamps.
use std::{
    collections::{HashMap, hash_map::Entry},
    io,
};

use netanom_common::{
    agg::FlowEvent,
    flow::{
        self, EndReason, Expiry, FlowKey, FlowRecord, FlowTimeouts, FlowValue, ST_CLOSED, ST_SYN_PENDING,
        Verdict, expiry,
    },
    parse::PacketMeta,
};

use crate::sources::record::RecordSink;

/// How often (in capture time) the table is swept for idle and expired flows.
pub const DEFAULT_SWEEP_INTERVAL_NS: u64 = 1_000_000_000;

/// Starts `v` as a new flow with packet `m`: the event of a flow's first packet.
fn started(v: &mut FlowValue, m: &PacketMeta, now_ns: u64, sender_lo: bool) -> FlowEvent {
    flow::start(v, m, now_ns, sender_lo);
    FlowEvent {
        started: true,
        syn: v.state & ST_SYN_PENDING != 0,
        syn_answered: false,
        forward: true,
    }
}

/// Flows exported, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportCounts {
    pub fin: u64,
    pub rst: u64,
    pub active_timeout: u64,
    pub idle_timeout: u64,
    pub flush: u64,
}

impl ExportCounts {
    pub fn get(&self, r: EndReason) -> u64 {
        match r {
            EndReason::Fin => self.fin,
            EndReason::Rst => self.rst,
            EndReason::ActiveTimeout => self.active_timeout,
            EndReason::IdleTimeout => self.idle_timeout,
            EndReason::Flush => self.flush,
        }
    }
    fn add(&mut self, r: EndReason) {
        *match r {
            EndReason::Fin => &mut self.fin,
            EndReason::Rst => &mut self.rst,
            EndReason::ActiveTimeout => &mut self.active_timeout,
            EndReason::IdleTimeout => &mut self.idle_timeout,
            EndReason::Flush => &mut self.flush,
        } += 1;
    }
    pub fn total(&self) -> u64 {
        self.fin + self.rst + self.active_timeout + self.idle_timeout + self.flush
    }
}

/// What a [`FlowTable`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// IP packets accounted.
    pub packets: u64,
    /// Flows started (new keys, restarts after an active or idle timeout, SYNs reopening a
    /// closed flow, packets arriving after a closed flow was forgotten).
    pub flows_started: u64,
    pub exported: ExportCounts,
    /// Packets counted into a flow that had already ended (FIN/RST) and been exported: they are
    /// in no exported record.
    pub absorbed: u64,
    /// Closed flows forgotten after the linger time (not exported again).
    pub closed_expired: u64,
}

/// The flow table of the offline extractor: the kernel's per-packet semantics, plus the
/// agent's sweep, driven by capture timestamps.
///
/// - a packet of an unknown key starts a flow ([`flow::start`]); otherwise [`flow::account`];
///   `Ended(r)` exports the flow with reason `r` (it stays in the table, closed, and absorbs
///   later packets without exporting them again); `Restart` exports it as `ActiveTimeout` and
///   starts it again with the packet;
/// - a live flow without packets for longer than `idle_ns` is exported as `IdleTimeout` and
///   removed; a closed flow without packets for longer than `closed_linger_ns` is removed
///   without export. Both are applied as if the sweep ran continuously: a packet arriving after
///   such a gap finds its flow already gone, and the table is also scanned every
///   `sweep_interval_ns` of capture time so that idle flows are exported in time order;
/// - [`FlowTable::finish`] exports what is left (idle flows as `IdleTimeout`, the other live
///   flows as `Flush`, oldest first).
pub struct FlowTable {
    flows: HashMap<FlowKey, FlowValue>,
    timeouts: FlowTimeouts,
    sweep_interval_ns: u64,
    next_sweep_ns: u64,
    stats: TableStats,
}

fn export(
    sink: &mut dyn RecordSink,
    counts: &mut ExportCounts,
    key: &FlowKey,
    v: &FlowValue,
    reason: EndReason,
) -> io::Result<()> {
    sink.record(&FlowRecord {
        key: *key,
        reason: reason as u32,
        _pad: 0,
        value: *v,
    })?;
    counts.add(reason);
    Ok(())
}

impl FlowTable {
    pub fn new(timeouts: FlowTimeouts) -> FlowTable {
        FlowTable::with_sweep_interval(timeouts, DEFAULT_SWEEP_INTERVAL_NS)
    }

    pub fn with_sweep_interval(timeouts: FlowTimeouts, sweep_interval_ns: u64) -> FlowTable {
        FlowTable {
            flows: HashMap::new(),
            timeouts,
            sweep_interval_ns,
            next_sweep_ns: 0,
            stats: TableStats::default(),
        }
    }

    /// Whether packet `m` belongs to a flow in the table (live or closed).
    pub fn has_flow_of(&self, m: &PacketMeta) -> bool {
        self.flows.contains_key(&FlowKey::of(m).0)
    }

    /// Flows in the table (live and closed).
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    /// Accounts IP packet `m` seen at `now_ns`; returns what happened to its flow, as the
    /// aggregates see it (the XDP program's `FlowEvent` for the same packet). Timestamps must
    /// not go backwards (the caller clamps them, as a kernel clock would never go back).
    pub fn packet(
        &mut self,
        m: &PacketMeta,
        now_ns: u64,
        sink: &mut dyn RecordSink,
    ) -> io::Result<FlowEvent> {
        self.sweep_if_due(now_ns, sink)?;
        let t = self.timeouts;
        let s = &mut self.stats;
        s.packets += 1;
        let (key, sender_lo) = FlowKey::of(m);
        let v = match self.flows.entry(key) {
            Entry::Vacant(e) => {
                let v = e.insert(FlowValue::default());
                s.flows_started += 1;
                return Ok(started(v, m, now_ns, sender_lo));
            }
            Entry::Occupied(e) => e.into_mut(),
        };
        let closed = v.state & ST_CLOSED != 0;
        // What the sweep would have done before this packet arrived.
        match expiry(v, now_ns, &t) {
            Expiry::Forget => {
                s.closed_expired += 1;
                s.flows_started += 1;
                return Ok(started(v, m, now_ns, sender_lo));
            }
            Expiry::ExportIdle => {
                export(sink, &mut s.exported, &key, v, EndReason::IdleTimeout)?;
                s.flows_started += 1;
                return Ok(started(v, m, now_ns, sender_lo));
            }
            Expiry::Keep => {}
        }
        let pending = v.state & ST_SYN_PENDING != 0;
        let mut began = false;
        match flow::account(v, m, now_ns, sender_lo, &t) {
            Verdict::Continue => s.absorbed += u64::from(closed),
            // A bare SYN reused the ports of the closed flow: a new flow.
            Verdict::Reopened => {
                s.flows_started += 1;
                began = true;
            }
            Verdict::Ended(r) => export(sink, &mut s.exported, &key, v, r)?,
            Verdict::Restart => {
                export(sink, &mut s.exported, &key, v, EndReason::ActiveTimeout)?;
                s.flows_started += 1;
                flow::start(v, m, now_ns, sender_lo);
                began = true;
            }
        }
        let syn_pending = v.state & ST_SYN_PENDING != 0;
        Ok(FlowEvent {
            started: began,
            syn: began && syn_pending,
            syn_answered: pending && !began && !syn_pending,
            forward: (v.fwd_is_lo != 0) == sender_lo,
        })
    }

    /// Sweeps at `now_ns` if a sweep interval has passed since the last sweep (the agent's
    /// sweep timer, in capture time).
    pub fn sweep_if_due(&mut self, now_ns: u64, sink: &mut dyn RecordSink) -> io::Result<()> {
        if now_ns >= self.next_sweep_ns {
            self.sweep(now_ns, sink)?;
            self.next_sweep_ns = now_ns.saturating_add(self.sweep_interval_ns);
        }
        Ok(())
    }

    /// The earliest time at which a sweep would export a live flow as idle (`None` without
    /// live flows): how far a replay may skip ahead through a silent stretch of capture.
    /// Scans the table.
    pub fn next_idle_export_ns(&self) -> Option<u64> {
        self.flows
            .values()
            .filter(|v| v.state & ST_CLOSED == 0)
            .map(|v| v.last_ns.saturating_add(self.timeouts.idle_ns).saturating_add(1))
            .min()
    }

    /// Exports the live flows idle for longer than the idle timeout (oldest activity first) and
    /// forgets the closed flows quiet for longer than the linger time.
    pub fn sweep(&mut self, now_ns: u64, sink: &mut dyn RecordSink) -> io::Result<()> {
        let t = self.timeouts;
        let stats = &mut self.stats;
        let mut idle = Vec::new();
        self.flows.retain(|k, v| match expiry(v, now_ns, &t) {
            Expiry::Keep => true,
            Expiry::Forget => {
                stats.closed_expired += 1;
                false
            }
            Expiry::ExportIdle => {
                idle.push((*k, *v));
                false
            }
        });
        idle.sort_unstable_by_key(|(k, v)| (v.last_ns, v.first_ns, *k));
        for (k, v) in &idle {
            export(sink, &mut stats.exported, k, v, EndReason::IdleTimeout)?;
        }
        Ok(())
    }

    /// End of input at `now_ns`: a last sweep, then every live flow is exported as `Flush`,
    /// ordered by first packet, then key. The table is left empty.
    pub fn finish(&mut self, now_ns: u64, sink: &mut dyn RecordSink) -> io::Result<()> {
        self.sweep(now_ns, sink)?;
        let live: Vec<_> = self
            .flows
            .drain()
            .filter(|(_, v)| v.state & ST_CLOSED == 0)
            .collect();
        // Sort small (first packet, key, index) entries rather than the 368-byte flows.
        let mut order: Vec<_> = live
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (v.first_ns, *k, i))
            .collect();
        order.sort_unstable();
        for (_, _, i) in order {
            let (k, v) = &live[i];
            export(sink, &mut self.stats.exported, k, v, EndReason::Flush)?;
        }
        Ok(())
    }
}
