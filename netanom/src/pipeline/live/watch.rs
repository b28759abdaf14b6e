//! The live agent's event loop, on a single-threaded async runtime: signals, the ring
//! buffer, the sweep, the aggregate drain, the reports, and the interfaces, until SIGINT or
//! SIGTERM; then the flows still live are exported and everything queued is scored.
use std::time::Duration;

use anyhow::Context as _;
use netanom_common::time::NS_PER_S;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    time::{Interval, MissedTickBehavior},
};

use super::{Live, interfaces::IFACE_CHECK, report::queue_counters};
use crate::{
    datapath::Datapath,
    pipeline::{batch::Batch, clock::Clock as _, queue, reload::reload},
    sources::live::ExportReader,
};

/// How often the metrics are refreshed from the kernel at least, whatever `stats_interval`.
const METRICS_REFRESH: Duration = Duration::from_secs(1);

fn ticker(every: Duration) -> Interval {
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Queues a batch for the consumer (waiting, counted, while the queue is full).
async fn send(tx: &mut queue::Sender, batch: Option<Batch>) {
    if let Some(b) = batch {
        tx.send(b).await;
    }
}

impl Live {
    /// Runs until SIGINT or SIGTERM, then stops cleanly: `worker` has scored everything
    /// queued when this returns.
    pub async fn watch(
        &mut self,
        dp: &mut Datapath,
        reader: ExportReader,
        mut tx: queue::Sender,
        worker: queue::Worker,
    ) -> anyhow::Result<()> {
        let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        // SAFETY: the reader owns the ring buffer's map fd, which stays open and unchanged for
        // as long as the AsyncFd (which owns the reader) lives.
        let mut ring = unsafe { AsyncFd::register_with_interest(reader, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("watching the flow export ring buffer: {e}"))?;
        let mut iface_tick = ticker(IFACE_CHECK);
        let mut stats_tick = ticker(self.opts.stats_interval());
        let mut sweep_tick = ticker(self.opts.sweep_interval());
        let mut agg_tick = ticker(self.opts.aggregate_interval());
        let mut metrics_tick = ticker(METRICS_REFRESH.min(self.opts.stats_interval()));
        // The first tick of an interval fires at once; aggregates are first drained one
        // interval after the start, so that their rates cover a whole interval.
        agg_tick.tick().await;
        self.drain.start_interval();
        // Tells whoever started us (people, scripts, tests) that the program is attached.
        eprintln!("netanom: ready");
        loop {
            tokio::select! {
                _ = sigint.recv() => { log::info!("SIGINT: stopping"); break; }
                _ = sigterm.recv() => { log::info!("SIGTERM: stopping"); break; }
                _ = sighup.recv() => self.on_sighup(&mut tx).await,
                _ = iface_tick.tick() => self.check_interfaces(dp),
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the flow export ring buffer")?;
                    let batch = self.drain.ring(guard.get_inner_mut());
                    guard.clear_ready();
                    send(&mut tx, batch).await;
                }
                _ = sweep_tick.tick() => {
                    let batch = self.drain.sweep(dp, &self.opts.load().timeouts, false)?;
                    send(&mut tx, batch).await;
                }
                _ = agg_tick.tick() => {
                    let batch = self.drain.aggregates(dp)?;
                    tx.send(batch).await;
                }
                _ = stats_tick.tick() => {
                    dp.flush_logs();
                    let s = self.snapshot(dp, &tx)?;
                    self.reports.stats.print(&s);
                    self.reports.write_state(dp, &self.ifaces, Some(&s), false);
                }
                _ = metrics_tick.tick() => {
                    let s = self.snapshot(dp, &tx)?;
                    self.reports.write_state(dp, &self.ifaces, Some(&s), false);
                }
            }
        }
        self.stop(dp, ring.get_mut(), tx, worker).await
    }

    /// Stop: collect what ended, export what is still live, hand it all to the consumer, wait
    /// until it has scored everything, and print the final counters.
    async fn stop(
        &mut self,
        dp: &mut Datapath,
        reader: &mut ExportReader,
        mut tx: queue::Sender,
        worker: queue::Worker,
    ) -> anyhow::Result<()> {
        let batch = self.drain.ring(reader);
        send(&mut tx, batch).await;
        let batch = self.drain.sweep(dp, &self.opts.load().timeouts, true)?;
        send(&mut tx, batch).await;
        let q = queue_counters(&tx);
        drop(tx);
        // Whatever happened, print what was counted before detaching, once the consumer has
        // scored everything queued.
        let unix_s = self.drain.clock.now().unix_ns as f64 / NS_PER_S as f64;
        let last = self.reports.snapshot(dp, &self.drain.totals, q, 0, unix_s);
        worker.join();
        if let Ok(mut s) = last {
            s.queue.vectors_out = s.queue.vectors_in;
            s.scoring = self.reports.tally.get();
            self.reports.metrics.update(&s, 0);
            self.reports.stats.print_final(&s);
        }
        Ok(())
    }

    fn snapshot(&self, dp: &Datapath, tx: &queue::Sender) -> anyhow::Result<crate::telemetry::Snapshot> {
        let unix_s = self.drain.clock.now().unix_ns as f64 / NS_PER_S as f64;
        self.reports
            .snapshot(dp, &self.drain.totals, queue_counters(tx), tx.queued(), unix_s)
    }

    async fn on_sighup(&mut self, tx: &mut queue::Sender) {
        log::info!("SIGHUP: reloading the configuration, the allowlist and the model bundle");
        let Some(source) = &self.opts.source else {
            log::error!(
                "reload failed, the running configuration, allowlist and bundle stay in force: no configuration to reload"
            );
            return;
        };
        match reload(source, &self.opts.config) {
            Ok((r, info)) => {
                self.reports.metrics.set_bundle(&info);
                self.reports.bundle = info;
                tx.send(Batch::Reload(Box::new(r))).await;
            }
            Err(e) => log::error!(
                "reload failed, the running configuration, allowlist and bundle stay in force: {e:#}"
            ),
        }
    }

    fn check_interfaces(&mut self, dp: &mut Datapath) {
        let d = &self.opts.config.datapath;
        if self.ifaces.check(dp, d.xdp_mode, d.egress) {
            self.reports
                .metrics
                .set_attachments(&super::report::interface_info(dp));
        }
    }
}
