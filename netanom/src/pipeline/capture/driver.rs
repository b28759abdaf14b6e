//! What the live agent's timers do, in capture time: ended flows go to the scoring stage as
//! they accumulate (the ring buffer is read as soon as it has records), the flow table is swept
//! every sweep interval, the aggregates are drained every aggregate interval. Everything the
//! stage decides is handed the capture's time.
//!
//! A silent stretch of capture is skipped, not ticked through interval by interval: only idle
//! flows can end in it, so the replay jumps to the tick at which the first of them is due
//! (or to the next frame).
use std::io;

use netanom_common::{flow::FlowRecord, parse::PacketMeta, time::Instant};

use super::datapath::CaptureDatapath;
use crate::pipeline::{batch::Batch, stage::Stage};

/// Ended flows waiting are scored once this many have gathered...
const FLOW_BATCH: usize = 256;
/// ...or once the first of them has waited this long (capture time).
const FLOW_WAIT_NS: u64 = 50_000_000;

/// The capture's datapath feeding the scoring stage on the capture's clock.
pub struct Driver {
    pub datapath: CaptureDatapath,
    pub stage: Stage,
    /// Aggregate interval, nanoseconds.
    interval_ns: u64,
    /// The end of the current aggregate interval; `None` before the first packet.
    next_tick_ns: Option<u64>,
    /// Ended flows not yet scored, and when the first of them ended.
    ended: Vec<FlowRecord>,
    ended_since_ns: u64,
    /// Aggregate intervals drained.
    pub ticks: u64,
}

impl Driver {
    pub fn new(datapath: CaptureDatapath, stage: Stage, interval_ns: u64) -> Driver {
        Driver {
            datapath,
            stage,
            interval_ns: interval_ns.max(1),
            next_tick_ns: None,
            ended: Vec::new(),
            ended_since_ns: 0,
            ticks: 0,
        }
    }

    /// One IP packet at `now_ns` (never earlier than the one before).
    pub fn packet(&mut self, m: &PacketMeta, now_ns: u64) -> io::Result<()> {
        self.advance(now_ns)?;
        let waiting = self.ended.len();
        self.datapath.packet(m, now_ns, &mut self.ended)?;
        if waiting == 0 && !self.ended.is_empty() {
            self.ended_since_ns = now_ns;
        }
        if self.ended.len() >= FLOW_BATCH || self.flows_due(now_ns) {
            self.score_ended(now_ns);
        }
        Ok(())
    }

    /// The end of the capture at `now_ns`: the interval under way is completed as if the
    /// capture went on silently (a live agent keeps running after the traffic stops), then
    /// every flow still live is exported as a flush and scored.
    pub fn finish(&mut self, now_ns: u64) -> io::Result<()> {
        let end = match self.next_tick_ns {
            Some(t) => {
                self.tick(t)?;
                t
            }
            None => now_ns,
        };
        self.datapath.flows.finish(end, &mut self.ended)?;
        self.score_ended(end);
        Ok(())
    }

    fn flows_due(&self, now_ns: u64) -> bool {
        !self.ended.is_empty() && now_ns.saturating_sub(self.ended_since_ns) >= FLOW_WAIT_NS
    }

    /// Runs every tick due at or before `now_ns`, skipping silent intervals.
    fn advance(&mut self, now_ns: u64) -> io::Result<()> {
        let iv = self.interval_ns;
        let Some(mut next) = self.next_tick_ns else {
            self.next_tick_ns = Some(now_ns.saturating_add(iv));
            return Ok(());
        };
        while now_ns >= next {
            self.tick(next)?;
            next = next.saturating_add(iv);
            if now_ns >= next.saturating_add(iv) {
                // Whole intervals without a packet: the next thing that can happen is an idle
                // flow's export, or the packet.
                let wake = self.datapath.flows.next_idle_export_ns().unwrap_or(u64::MAX);
                let target = wake.min(now_ns);
                if target > next {
                    next += (target - next) / iv * iv;
                }
            }
        }
        self.next_tick_ns = Some(next);
        Ok(())
    }

    /// The aggregate interval ending at `t_ns`: the sweep if due, the flows waiting, then the
    /// interval's aggregates.
    fn tick(&mut self, t_ns: u64) -> io::Result<()> {
        self.datapath.flows.sweep_if_due(t_ns, &mut self.ended)?;
        self.score_ended(t_ns);
        let (src, dst) = self.datapath.aggregates.drain();
        let batch = Batch::Aggregates {
            interval_s: self.interval_ns as f64 / 1e9,
            src,
            dst,
        };
        self.stage.consume(batch, Instant::capture(t_ns));
        self.ticks += 1;
        Ok(())
    }

    fn score_ended(&mut self, now_ns: u64) {
        if let Some(batch) = Batch::flows(std::mem::take(&mut self.ended)) {
            self.stage.consume(batch, Instant::capture(now_ns));
        }
    }
}
