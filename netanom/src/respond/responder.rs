//! The responder: what the agent does about each finding, and the alert it writes for it.
//!
//! In order: an entity already handled (blocked, or reported and still within its would-be
//! TTL) is skipped; an allowlisted source gets an `allowed` alert and is never blocked; in
//! observe mode, or while the circuit breaker is open, a `would-block` alert; in mitigate mode
//! a block of the offender's prefix (escalating TTL for repeat offenders, [`super::source`])
//! or, for a flood from many sources, a rate limit on the flood's pattern
//! ([`super::victim`]). The safety rails and the circuit breaker are in [`super::rails`].
//!
//! The responder acts through an [`Enforcer`] and writes through an [`AlertSink`]; it reads no
//! clock: every call is given `now`.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
};

use netanom_common::time::{Instant, NS_PER_S, secs_to_ns};

use super::{
    alert::{Action, Alert, AlertContext, FeatureContribution},
    config::{MitigationConfig, Mode},
    decision::{Decision, DecisionSink, Proposal},
    enforcer::{EnforceError, Enforcer},
    sink::AlertSink,
};
use crate::{
    detect::{Finding, Subject},
    telemetry::ResponseCounters,
};

/// Entities reported without a block are remembered at most this many at once.
const MAX_QUIET: usize = 100_000;
/// Maintenance (expiry sweep, gauges) runs at most this often, nanoseconds.
const MAINTAIN_EVERY_NS: u64 = NS_PER_S;

/// The agent's response state.
pub struct Responder {
    pub(super) mode: Mode,
    pub(super) cfg: MitigationConfig,
    pub(super) enforcer: Box<dyn Enforcer>,
    sink: Box<dyn AlertSink>,
    /// Told of every decision put in force (the fleet, BGP speakers).
    decision_sinks: Vec<Box<dyn DecisionSink>>,
    pub(super) ctx: AlertContext,
    pub(super) counters: Arc<ResponseCounters>,
    /// The circuit breaker: `None` closed; `Some(Some(t))` open until `t`; `Some(None)` open
    /// until the configuration is reloaded (`mitigation.breaker_cooldown = 0`).
    pub(super) breaker_until: Option<Option<Instant>>,
    pub(super) recent_blocks: VecDeque<Instant>,
    /// Entities reported without a block (observe mode, allowlisted, breaker): not reported
    /// again until this time.
    quiet_until: HashMap<String, Instant>,
    last_sweep: Instant,
    write_failed: bool,
}

impl Responder {
    /// A responder starting at `now`, with the circuit breaker closed.
    pub fn new(
        mode: Mode,
        cfg: MitigationConfig,
        enforcer: Box<dyn Enforcer>,
        sink: Box<dyn AlertSink>,
        ctx: AlertContext,
        counters: Arc<ResponseCounters>,
        now: Instant,
    ) -> Responder {
        counters
            .configured_mitigate
            .store(mode == Mode::Mitigate, Ordering::Relaxed);
        counters
            .effective_mitigate
            .store(mode == Mode::Mitigate, Ordering::Relaxed);
        Responder {
            mode,
            cfg,
            enforcer,
            sink,
            decision_sinks: Vec::new(),
            ctx,
            counters,
            breaker_until: None,
            recent_blocks: VecDeque::new(),
            quiet_until: HashMap::new(),
            last_sweep: now,
            write_failed: false,
        }
    }

    /// Applies a reloaded configuration (the circuit breaker is reset).
    pub fn reconfigure(&mut self, mode: Mode, cfg: MitigationConfig, bundle: String) {
        self.mode = mode;
        self.cfg = cfg;
        self.ctx.bundle = bundle;
        self.breaker_until = None;
        self.counters.breaker_open.store(false, Ordering::Relaxed);
        self.show_mode(mode);
    }

    /// Tells the counters the modes in force: the configured one, and `effective`.
    fn show_mode(&self, effective: Mode) {
        let c = &self.counters;
        c.configured_mitigate
            .store(self.mode == Mode::Mitigate, Ordering::Relaxed);
        c.effective_mitigate
            .store(effective == Mode::Mitigate, Ordering::Relaxed);
    }

    /// Adds a sink that is told of every decision from now on.
    pub fn add_decision_sink(&mut self, sink: Box<dyn DecisionSink>) {
        self.decision_sinks.push(sink);
    }

    /// Tells every decision sink of `d`.
    pub(super) fn decided(&mut self, d: Decision, now: Instant) {
        for s in &mut self.decision_sinks {
            s.decided(&d, now);
        }
    }

    /// The first safety rail of a decision sink that `p` would break, if any.
    pub(super) fn sink_rail_hit(&mut self, p: Proposal<'_>, now: Instant) -> Option<String> {
        self.decision_sinks.iter_mut().find_map(|s| s.rail_hit(p, now))
    }

    /// The lists the decisions go to.
    pub fn enforcer(&mut self) -> &mut dyn Enforcer {
        self.enforcer.as_mut()
    }

    /// The mode in force: the configured one, unless the circuit breaker is open.
    pub fn effective_mode(&mut self, now: Instant) -> Mode {
        if let Some(until) = self.breaker_until {
            match until {
                Some(t) if now >= t => {
                    log::info!(
                        "circuit breaker closed after its cooldown: back to {} mode",
                        self.mode.name()
                    );
                    self.breaker_until = None;
                    self.counters.breaker_open.store(false, Ordering::Relaxed);
                }
                _ => {
                    self.show_mode(Mode::Observe);
                    return Mode::Observe;
                }
            }
        }
        self.show_mode(self.mode);
        self.mode
    }

    pub(super) fn write(&mut self, a: &Alert) {
        match self.sink.write(a) {
            Ok(()) => ResponseCounters::bump(&self.counters.alerts),
            Err(e) => {
                ResponseCounters::bump(&self.counters.alert_errors);
                if !self.write_failed {
                    log::error!("writing an alert failed: {e}; alerts are still counted");
                    self.write_failed = true;
                }
            }
        }
    }

    /// Flushes written alerts (called every tick and before exit).
    pub fn flush(&mut self) {
        if let (Err(e), false) = (self.sink.flush(), self.write_failed) {
            log::error!("flushing alerts failed: {e}");
            self.write_failed = true;
        }
    }

    /// Whether `key` was reported within its quiet time; if not, it is from now on, for
    /// `secs` seconds (at least one).
    pub(super) fn quiet(&mut self, key: String, now: Instant, secs: f64) -> bool {
        if self.quiet_until.get(&key).is_some_and(|t| now < *t) {
            return true;
        }
        if self.quiet_until.len() > MAX_QUIET {
            self.quiet_until.retain(|_, t| now < *t);
        }
        self.quiet_until
            .insert(key, now.plus_ns(secs_to_ns(secs.max(1.0))));
        false
    }

    /// Handles findings: decides, acts, writes one alert per decision.
    pub fn handle(&mut self, findings: Vec<Finding>, now: Instant) {
        for f in findings {
            ResponseCounters::bump(&self.counters.findings[f.kind.index()]);
            self.ctx.mode = self.effective_mode(now);
            let r = match &f.subject {
                Subject::Source(ip) => self.on_source(*ip, &f, now),
                Subject::Victim { .. } => self.on_victim(&f, now),
                Subject::Channel { .. } => self.on_channel(&f, now),
            };
            if let Err(e) = r {
                log::error!("acting on \"{}\" failed: {e}", f.reason);
            }
        }
    }

    /// The alert for finding `f`, with its evidence: the aggregate rates beside their
    /// thresholds, or the most anomalous flow's scores and features.
    pub(super) fn base_alert(
        &self,
        f: &Finding,
        action: Action,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        now: Instant,
    ) -> Alert {
        let mut a = self
            .ctx
            .alert(f.kind, action, now.unix_ns, src, dst, proto)
            .with_reason(&f.reason);
        if !f.rates.is_empty() {
            a = a.with_aggregate(f.rates.iter().map(|(n, v, _)| (n.clone(), *v)));
            for (n, _, t) in &f.rates {
                a = a.with_threshold(n.clone(), *t);
            }
            a = a.with_top_features(f.rates.iter().map(|(n, v, t)| {
                FeatureContribution::new(n.clone(), *v, if *t > 0.0 { v / t } else { 0.0 })
            }));
        }
        if let Some(e) = &f.flow {
            a = a.with_ports(Some(e.src_port), Some(e.dst_port));
            for (m, s, t) in &e.scores {
                a = a.with_score(m.clone(), *s).with_threshold(m.clone(), *t);
            }
            a = a.with_top_features(
                e.top_features
                    .iter()
                    .map(|(n, v, z)| FeatureContribution::new(n.clone(), *v, *z)),
            );
        }
        a
    }

    /// Removes expired rate limits and long-expired blocks, counts blocks that expired since
    /// the last call, refreshes the gauges. Cheap enough to call every aggregate tick; runs at
    /// most once a second.
    pub fn maintain(&mut self, now: Instant) -> Result<(), EnforceError> {
        if now.since_ns(self.last_sweep) < MAINTAIN_EVERY_NS {
            return Ok(());
        }
        let since = self.last_sweep.mono_ns;
        self.last_sweep = now;
        let blocks = self.enforcer.blocks()?;
        let expired = blocks
            .iter()
            .filter(|b| {
                b.entry.expires_ns != 0 && b.entry.expires_ns > since && b.entry.expires_ns <= now.mono_ns
            })
            .count() as u64;
        self.counters.blocks_expired.fetch_add(expired, Ordering::Relaxed);
        self.enforcer
            .sweep(now.mono_ns, secs_to_ns(self.cfg.forget_after))?;
        // The sweep removed only expired entries: count the active ones from the same listing.
        let active = blocks.iter().filter(|b| b.active(now.mono_ns)).count();
        self.counters
            .blocks_active
            .store(active as u64, Ordering::Relaxed);
        let limits = self
            .enforcer
            .rate_limits()?
            .iter()
            .filter(|(_, r)| r.active(now.mono_ns))
            .count();
        self.counters
            .rate_limits_active
            .store(limits as u64, Ordering::Relaxed);
        let effective = self.effective_mode(now);
        for s in &mut self.decision_sinks {
            s.modes(self.mode, effective);
            s.maintain(self.enforcer.as_ref(), now);
        }
        Ok(())
    }
}
