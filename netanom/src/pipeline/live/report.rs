//! The live agent's reports: one telemetry snapshot at a time (the kernel's counters, the
//! drain's, the queue's, the scoring stage's), fed to the metrics, the stats line and the
//! status file.
use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
};

use netanom_common::time::NS_PER_S;

use super::interfaces::Interfaces;
use crate::{
    datapath::Datapath,
    pipeline::{clock::Clock as _, queue},
    sinks::{
        metrics::Metrics,
        stats_line::StatsLine,
        status::{AgentState, InterfaceState},
    },
    telemetry::{
        BundleInfo, InterfaceInfo, QueueCounters, ResponseCounters, ScoreTally, Snapshot, bgp::BgpCounters,
        fleet::FleetCounters,
    },
};

/// Everything the reports read, and where they go.
pub struct Reports {
    pub metrics: Arc<Metrics>,
    pub tally: Arc<ScoreTally>,
    pub response: Arc<ResponseCounters>,
    pub stats: StatsLine,
    pub bundle: BundleInfo,
    pub state_dir: PathBuf,
    pub pin_dir: String,
    pub config_path: Option<String>,
    pub started_unix: f64,
    /// The BGP announcer's counters, when `[bgp]` is on.
    pub bgp: Option<Arc<BgpCounters>>,
    /// The fleet's counters, when `[fleet]` is on.
    pub fleet: Option<Arc<FleetCounters>>,
    state_failed: bool,
}

/// The interfaces as telemetry shows them.
pub fn interface_info(dp: &Datapath) -> Vec<InterfaceInfo> {
    dp.attachments()
        .iter()
        .map(|a| InterfaceInfo {
            iface: a.iface.clone(),
            mode: a.mode.to_string(),
            egress: a.egress,
        })
        .collect()
}

/// The queue's counters, from its shared atomics.
pub fn queue_counters(tx: &queue::Sender) -> QueueCounters {
    let s = tx.stats();
    QueueCounters {
        vectors_in: s.vectors_in.load(Ordering::Relaxed),
        vectors_out: s.vectors_out.load(Ordering::Relaxed),
        full_waits: s.full_waits.load(Ordering::Relaxed),
    }
}

impl Reports {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        metrics: Arc<Metrics>,
        tally: Arc<ScoreTally>,
        response: Arc<ResponseCounters>,
        stats: StatsLine,
        bundle: BundleInfo,
        state_dir: PathBuf,
        pin_dir: String,
        config_path: Option<String>,
        started_unix: f64,
    ) -> Reports {
        Reports {
            metrics,
            tally,
            response,
            stats,
            bundle,
            state_dir,
            pin_dir,
            config_path,
            started_unix,
            bgp: None,
            fleet: None,
            state_failed: false,
        }
    }

    /// Reads every counter at `unix_s` and refreshes the metrics from them.
    pub fn snapshot(
        &self,
        dp: &Datapath,
        totals: &crate::telemetry::SweepTotals,
        queue: QueueCounters,
        queued: usize,
        unix_s: f64,
    ) -> anyhow::Result<Snapshot> {
        let mut s = Snapshot::from_counters(
            unix_s,
            interface_info(dp),
            &dp.proto_counters()?,
            &dp.event_counters()?,
        )
        .with_flows(totals, queue);
        s.scoring = self.tally.get();
        self.metrics.update(&s, queued);
        Ok(s)
    }

    /// Writes the status file (errors are logged once) and refreshes the response's metrics.
    pub fn write_state(&mut self, dp: &Datapath, ifaces: &Interfaces, s: Option<&Snapshot>, stopped: bool) {
        let r = self.response.totals();
        self.metrics
            .update_mitigation(&r, r.configured_mode, r.effective_mode);
        if let Some(b) = &self.bgp {
            self.metrics.update_bgp(&b.totals());
        }
        if let Some(f) = &self.fleet {
            self.metrics.update_fleet(&f.totals());
        }
        let state = self.agent_state(dp, ifaces, s, stopped);
        if let Err(e) = state.write(&self.state_dir)
            && !self.state_failed
        {
            self.state_failed = true;
            log::warn!(
                "cannot write the status file in {}: {e}; `netanom status` will not see this agent",
                self.state_dir.display()
            );
        }
    }

    fn agent_state(
        &self,
        dp: &Datapath,
        ifaces: &Interfaces,
        s: Option<&Snapshot>,
        stopped: bool,
    ) -> AgentState {
        let mut interfaces: Vec<InterfaceState> = interface_info(dp)
            .into_iter()
            .map(|a| InterfaceState {
                iface: a.iface,
                xdp_mode: a.mode,
                egress: a.egress,
            })
            .collect();
        interfaces.extend(ifaces.down.iter().map(|i| InterfaceState {
            iface: i.clone(),
            xdp_mode: "down".into(),
            egress: false,
        }));
        let r = self.response.totals();
        let now = crate::pipeline::clock::SystemClock::new().now();
        AgentState {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_unix: self.started_unix,
            updated_unix: now.unix_ns as f64 / NS_PER_S as f64,
            mode: r.configured_mode.into(),
            effective_mode: r.effective_mode.into(),
            config: self.config_path.clone(),
            interfaces,
            bundle: self.bundle.label(),
            pin_dir: self.pin_dir.clone(),
            counters: s
                .and_then(|s| serde_json::from_str(&s.to_json()).ok())
                .unwrap_or_default(),
            mitigation: serde_json::to_value(r).unwrap_or_default(),
            bgp: self.bgp.as_ref().map(|b| b.state()),
            fleet: self.fleet.as_ref().map(|f| f.state()),
            stopped,
        }
    }
}
