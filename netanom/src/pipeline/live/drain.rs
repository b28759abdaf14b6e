//! The live drain's side of the pipeline: ended flows from the ring buffer and the sweep, and
//! aggregates every interval, turned into batches of feature vectors for the scoring stage,
//! every step timed.
use std::{sync::Arc, time::Instant as WallInstant};

use netanom_common::{Event, flow::FlowTimeouts};

use crate::{
    datapath::Datapath,
    pipeline::{batch::Batch, clock::SystemClock},
    sinks::metrics::{DrainStage, Metrics},
    sources::live::{self, ExportReader, Uncredited},
    telemetry::SweepTotals,
};

/// What the drain keeps between steps.
pub struct DrainState {
    pub totals: SweepTotals,
    /// Aggregate volume of idle-swept flows, credited with the next aggregate drain.
    pub uncredited: Uncredited,
    pub clock: SystemClock,
    pub metrics: Arc<Metrics>,
    /// When aggregates were last drained (their rates cover the time since).
    last_agg: WallInstant,
}

impl DrainState {
    pub fn new(clock: SystemClock, metrics: Arc<Metrics>) -> DrainState {
        DrainState {
            totals: SweepTotals::default(),
            uncredited: Uncredited::default(),
            clock,
            metrics,
            last_agg: WallInstant::now(),
        }
    }

    /// Starts the aggregate interval now.
    pub fn start_interval(&mut self) {
        self.last_agg = WallInstant::now();
    }

    /// Every record queued in the ring buffer, as a batch (none if none).
    pub fn ring(&mut self, reader: &mut ExportReader) -> Option<Batch> {
        let started = WallInstant::now();
        let mut recs = Vec::new();
        reader.read(&mut recs);
        let batch = Batch::flows(recs);
        self.metrics.observe_drain(DrainStage::Ring, started.elapsed());
        batch
    }

    /// One sweep of the flow table (a flush when `flush`): idle flows out as a batch, the
    /// totals updated, the time it took observed.
    pub fn sweep(
        &mut self,
        dp: &Datapath,
        timeouts: &FlowTimeouts,
        flush: bool,
    ) -> anyhow::Result<Option<Batch>> {
        let started = WallInstant::now();
        // What the sweep will find accounts for the flows created before it started.
        let created = dp
            .event_counters()?
            .iter()
            .find(|(e, _)| *e == Event::FlowCreated)
            .map_or(0, |(_, n)| *n);
        let mut recs = Vec::new();
        let now = crate::pipeline::clock::mono_now_ns();
        let s = live::sweep_flows_into(dp, now, timeouts, flush, &mut recs)?;
        s.add_to(&mut self.totals, flush);
        if !flush {
            recs.iter().for_each(|r| self.uncredited.add(r));
        }
        self.totals.created_at_sweep = created;
        let batch = Batch::flows(recs);
        self.metrics.observe_drain(DrainStage::Sweep, started.elapsed());
        Ok(batch)
    }

    /// The aggregates of the interval that just ended, reset in the kernel.
    pub fn aggregates(&mut self, dp: &Datapath) -> anyhow::Result<Batch> {
        let started = WallInstant::now();
        let (mut src, mut dst) = (Vec::new(), Vec::new());
        live::drain_aggregates(dp, &mut src, &mut dst)?;
        self.uncredited.credit(&mut src, &mut dst);
        let interval_s = self.last_agg.elapsed().as_secs_f64();
        self.last_agg = WallInstant::now();
        self.metrics
            .observe_drain(DrainStage::Aggregates, started.elapsed());
        Ok(Batch::Aggregates { interval_s, src, dst })
    }
}
