//! The announcer: a [`DecisionSink`] that keeps the routes wanted upstream in step with the
//! blocks and rate limits in force, and hands them to the speaker's thread
//! ([`super::worker`]).
//!
//! It hands over state, not events: the whole wanted set, through a watch channel that keeps
//! only the latest. A decision or a maintenance pass never waits for the speaker and nothing
//! can overflow: the thread always works towards the latest set.
//!
//! - `decided` (a block or rate limit just put in force) adds its route at once;
//! - `maintain` (once a second) plans the whole set from the lists in force: expired and
//!   removed entries drop out, blocks added by hand come in;
//! - in observe mode (configured) nothing is wanted: what netanom announced is withdrawn; while
//!   the circuit breaker is open nothing is added, and what is announced stays while in force;
//! - `rail_hit`: a decision whose route would exceed `bgp.max_routes` trips the breaker.
use std::{
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::{Duration, Instant as WallInstant},
};

use netanom_common::{
    mitigate::{PatternKey, RateLimit},
    time::Instant,
};
use tokio::sync::watch;

use super::{
    config::BgpConfig,
    gobgp::GoBgp,
    plan::{Planner, Protected, Routes, Verdict},
    worker::{Want, Worker},
};
use crate::{
    datapath::host,
    respond::{Allow, Block, Cidr, Decision, DecisionSink, EnforceError, Enforcer, Mode, Proposal},
    telemetry::bgp::BgpCounters,
};

/// How long stopping waits for the speaker's thread to finish its last exchange.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The BGP announcer (see the module documentation).
pub struct Announcer {
    cfg: BgpConfig,
    counters: Arc<BgpCounters>,
    protected: Arc<Protected>,
    want: Option<watch::Sender<Want>>,
    /// The routes wanted now (the last set handed over).
    wanted: Routes,
    /// The allowlist's prefixes, as of the last maintenance; `None` before the first.
    allows: Option<Vec<Cidr>>,
    configured: Mode,
    effective: Mode,
    /// Reading the lists failed at the last maintenance (logged once until it works again).
    lists_failed: bool,
    worker: Option<JoinHandle<()>>,
}

impl Announcer {
    /// Starts the speaker's thread for `cfg` (the agent's mode is `mode`).
    pub fn start(cfg: BgpConfig, mode: Mode, counters: Arc<BgpCounters>) -> std::io::Result<Announcer> {
        let mut addrs: Vec<IpAddr> = host::host_addresses();
        addrs.extend(host::default_gateways());
        let protected = Arc::new(Protected::new(addrs));
        let (tx, rx) = watch::channel(None);
        let worker = {
            let (counters, protected, addr) = (counters.clone(), protected.clone(), cfg.speaker);
            std::thread::Builder::new()
                .name("netanom-bgp".into())
                .spawn(move || speaker_thread(addr, counters, protected, rx))?
        };
        Ok(Announcer::with_worker(
            cfg,
            mode,
            counters,
            protected,
            tx,
            Some(worker),
        ))
    }

    /// An announcer handing its routes to `want` (the unit tests hold the other end).
    pub fn with_worker(
        cfg: BgpConfig,
        mode: Mode,
        counters: Arc<BgpCounters>,
        protected: Arc<Protected>,
        want: watch::Sender<Want>,
        worker: Option<JoinHandle<()>>,
    ) -> Announcer {
        Announcer {
            cfg,
            counters,
            protected,
            want: Some(want),
            wanted: Routes::new(),
            allows: None,
            configured: mode,
            effective: mode,
            lists_failed: false,
            worker,
        }
    }

    /// Hands `routes` over when they differ from what was handed over last.
    fn publish(&mut self, routes: Routes, first: bool) {
        if routes == self.wanted && !first {
            return;
        }
        self.wanted = routes;
        if let Some(tx) = &self.want {
            tx.send_replace(Some(Arc::new(self.wanted.clone())));
        }
    }

    /// Whether the wanted set has room for a route with this key.
    fn has_room(&self, key: &super::route::RouteKey) -> bool {
        self.wanted.contains_key(key) || self.wanted.len() < self.cfg.max_routes as usize
    }
}

/// The blocks, rate limits and allowlist in force.
struct InForce {
    blocks: Vec<Block>,
    limits: Vec<(PatternKey, RateLimit)>,
    allows: Vec<Allow>,
}

fn read_lists(lists: &dyn Enforcer) -> Result<InForce, EnforceError> {
    Ok(InForce {
        blocks: lists.blocks()?,
        limits: lists.rate_limits()?,
        allows: lists.allows()?,
    })
}

/// The speaker's thread: its own single-threaded runtime, until the announcer is dropped.
fn speaker_thread(
    addr: std::net::SocketAddr,
    counters: Arc<BgpCounters>,
    protected: Arc<Protected>,
    rx: watch::Receiver<Want>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("BGP: cannot start the speaker's runtime: {e}; nothing is announced");
            return;
        }
    };
    rt.block_on(async move {
        let worker = Worker::new(GoBgp::new(addr), addr, counters, protected);
        worker.run(rx).await;
    });
}

impl DecisionSink for Announcer {
    fn decided(&mut self, d: &Decision, _now: Instant) {
        let Some(allows) = &self.allows else {
            return; // the first maintenance, within a second, plans it
        };
        if self.configured != Mode::Mitigate {
            return;
        }
        let protected = self.protected.get();
        let p = Planner {
            cfg: &self.cfg,
            allows,
            protected: &protected,
        };
        let v = match d {
            Decision::Block { prefix, .. } => p.blackhole(prefix),
            Decision::RateLimit { key, limit, .. } => p.flowspec(key, limit),
        };
        if let Verdict::Announce(r) = v
            && self.has_room(&r.key())
        {
            let mut routes = self.wanted.clone();
            routes.insert(r.key(), r);
            self.publish(routes, false);
        }
    }

    fn maintain(&mut self, lists: &dyn Enforcer, now: Instant) {
        let InForce {
            blocks,
            limits,
            allows,
        } = match read_lists(lists) {
            Ok(l) => {
                self.lists_failed = false;
                l
            }
            Err(e) => {
                if !self.lists_failed {
                    log::error!(
                        "BGP: reading the lists in force failed: {e}; the announcements stay as they are"
                    );
                    self.lists_failed = true;
                }
                return;
            }
        };
        let first = self.allows.is_none();
        let allows: Vec<Cidr> = allows.into_iter().map(|a| a.prefix).collect();
        let protected = self.protected.get();
        let p = Planner {
            cfg: &self.cfg,
            allows: &allows,
            protected: &protected,
        };
        let (routes, excluded) = match self.configured {
            Mode::Observe => (Routes::new(), [0; 4]),
            Mode::Mitigate => p.plan(
                &blocks,
                &limits,
                now.mono_ns,
                &self.wanted,
                self.effective == Mode::Mitigate,
            ),
        };
        for (c, n) in self.counters.excluded.iter().zip(excluded) {
            c.store(n, Ordering::Relaxed);
        }
        self.allows = Some(allows);
        self.publish(routes, first);
    }

    fn rail_hit(&mut self, p: Proposal<'_>, _now: Instant) -> Option<String> {
        if self.configured != Mode::Mitigate {
            return None;
        }
        let allows = self.allows.as_deref().unwrap_or_default();
        let protected = self.protected.get();
        let planner = Planner {
            cfg: &self.cfg,
            allows,
            protected: &protected,
        };
        let Verdict::Announce(r) = planner.proposal(p) else {
            return None;
        };
        if self.has_room(&r.key()) {
            return None;
        }
        self.counters.cap_hits.fetch_add(1, Ordering::Relaxed);
        Some(format!(
            "{} routes announced upstream over BGP (bgp.max_routes = {})",
            self.wanted.len(),
            self.cfg.max_routes
        ))
    }

    fn modes(&mut self, configured: Mode, effective: Mode) {
        self.configured = configured;
        self.effective = effective;
    }
}

impl Drop for Announcer {
    /// Lets the speaker's thread finish its last exchange (bounded): a decision taken just
    /// before a stop is announced, or picked up by the next start.
    fn drop(&mut self) {
        drop(self.want.take());
        let Some(worker) = self.worker.take() else {
            return;
        };
        let deadline = WallInstant::now() + STOP_WAIT;
        while !worker.is_finished() && WallInstant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if worker.is_finished() {
            let _ = worker.join();
        }
    }
}
