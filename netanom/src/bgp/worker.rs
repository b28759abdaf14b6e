//! The speaker's side of the announcer, on a thread of its own: every time the wanted routes
//! change, and every second anyway, it reads what the speaker holds for netanom and makes it
//! exactly the wanted set (withdraws the rest, adds what is missing or different). That one
//! step covers new decisions, expiry and removal, an agent restart (stale routes withdrawn,
//! live ones kept), and a speaker restart or reconnect (everything re-announced).
//!
//! A speaker that cannot be reached or refuses is logged once per change of state and counted
//! at every attempt; the scoring stage never waits for it.
use std::{
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant as WallInstant},
};

use tokio::{sync::watch, time::MissedTickBehavior};

use super::{
    plan::{Protected, Routes},
    route::Route,
    speaker::{ErrorKind, Held, Speaker, SpeakerError},
};
use crate::{
    datapath::host,
    telemetry::bgp::{BgpCounters, BgpState},
};

/// Exchanges with the speaker at least this often.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// The protected addresses (host, gateways, the speaker's peers) are re-read this often.
const PROTECT_EVERY: Duration = Duration::from_secs(10);

/// The wanted routes: `None` until the agent has planned them once (until then nothing is
/// changed on the speaker, so a restart never withdraws live routes).
pub type Want = Option<Arc<Routes>>;

/// How the last exchange went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Connecting,
    Up,
    Down(ErrorKind),
}

/// The speaker thread's state.
pub struct Worker<S: Speaker> {
    speaker: S,
    addr: String,
    counters: Arc<BgpCounters>,
    protected: Arc<Protected>,
    /// Always protected: the speaker's own address, when it is not loopback.
    fixed: Vec<IpAddr>,
    /// What the speaker holds for netanom, as of the last exchange.
    held: Routes,
    link: Link,
    last_error: Option<String>,
    protected_at: Option<WallInstant>,
}

impl<S: Speaker> Worker<S> {
    pub fn new(
        speaker: S,
        addr: std::net::SocketAddr,
        counters: Arc<BgpCounters>,
        protected: Arc<Protected>,
    ) -> Self {
        Worker {
            speaker,
            addr: addr.to_string(),
            counters,
            protected,
            fixed: (!addr.ip().is_loopback())
                .then_some(addr.ip())
                .into_iter()
                .collect(),
            held: Routes::new(),
            link: Link::Connecting,
            last_error: None,
            protected_at: None,
        }
    }

    /// Runs until the sender is dropped (the agent stops), after a last exchange.
    pub async fn run(mut self, mut want: watch::Receiver<Want>) {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let open = tokio::select! {
                r = want.changed() => r.is_ok(),
                _ = tick.tick() => true,
            };
            let w = want.borrow_and_update().clone();
            self.sync(w.as_deref()).await;
            if !open {
                break;
            }
        }
    }

    /// One exchange: makes the speaker hold `want` (only reads it while `want` is `None`).
    pub async fn sync(&mut self, want: Option<&Routes>) {
        match self.reconcile(want).await {
            Ok((added, withdrawn)) => self.up(added, withdrawn),
            Err(e) => self.down(e),
        }
        self.publish();
    }

    async fn reconcile(&mut self, want: Option<&Routes>) -> Result<(usize, usize), SpeakerError> {
        self.refresh_protected().await?;
        let held: Vec<Held<S::Path>> = self.speaker.held().await?;
        self.held = held.iter().map(|h| (h.route.key(), h.route.clone())).collect();
        let Some(want) = want else {
            return Ok((0, 0));
        };
        let protected = self.protected.get();
        let allowed = |r: &Route| !covers_any(r, &protected);
        let mut withdrawn = 0;
        for h in &held {
            let key = h.route.key();
            if want.get(&key).is_some_and(allowed) {
                continue;
            }
            self.speaker.withdraw(h).await?;
            self.held.remove(&key);
            self.counters.withdrawals[key.kind() as usize].fetch_add(1, Ordering::Relaxed);
            withdrawn += 1;
            log::info!("BGP: withdrew {key}");
        }
        let mut added = 0;
        for (key, r) in want.iter().filter(|(_, r)| allowed(r)) {
            if self.held.get(key) == Some(r) {
                continue;
            }
            self.speaker.add(r).await?;
            self.held.insert(*key, r.clone());
            self.counters.announcements[key.kind() as usize].fetch_add(1, Ordering::Relaxed);
            added += 1;
            log::info!("BGP: announced {}", r.announced());
        }
        Ok((added, withdrawn))
    }

    /// Re-reads the host's addresses and gateways and the speaker's peers, when due.
    async fn refresh_protected(&mut self) -> Result<(), SpeakerError> {
        let due = self.link != Link::Up || self.protected_at.is_none_or(|t| t.elapsed() >= PROTECT_EVERY);
        if !due {
            return Ok(());
        }
        let mut addrs = self.speaker.peers().await?;
        addrs.extend(host::host_addresses());
        addrs.extend(host::default_gateways());
        addrs.extend(&self.fixed);
        self.protected.set(addrs);
        self.protected_at = Some(WallInstant::now());
        Ok(())
    }

    fn up(&mut self, added: usize, withdrawn: usize) {
        if self.link != Link::Up {
            log::info!(
                "BGP: the speaker at {} answers; it announces {} routes for netanom ({added} added and \
                 {withdrawn} withdrawn to match the blocks and rate limits in force)",
                self.addr,
                self.held.len()
            );
        }
        self.link = Link::Up;
        self.last_error = None;
        self.counters.speaker_up.store(true, Ordering::Relaxed);
    }

    fn down(&mut self, e: SpeakerError) {
        let kind = e.kind();
        self.counters.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
        self.counters.speaker_up.store(false, Ordering::Relaxed);
        if self.link != Link::Down(kind) {
            log::error!(
                "BGP: {e}. Nothing is announced or withdrawn until it answers (tried every {} s); \
                 local blocks and rate limits go on",
                SYNC_EVERY.as_secs()
            );
        }
        self.link = Link::Down(kind);
        self.last_error = Some(e.to_string());
    }

    /// Shows the speaker's state and routes in the counters and the status.
    fn publish(&self) {
        let mut by_kind = [0u64; 2];
        for k in self.held.keys() {
            by_kind[k.kind() as usize] += 1;
        }
        for (a, n) in self.counters.announced.iter().zip(by_kind) {
            a.store(n, Ordering::Relaxed);
        }
        let state = match self.link {
            Link::Connecting => "connecting",
            Link::Up => "up",
            Link::Down(k) => k.name(),
        };
        self.counters.set_state(BgpState {
            speaker: self.addr.clone(),
            state: state.into(),
            error: self.last_error.clone(),
            announced: self.held.values().map(Route::announced).collect(),
            excluded: Vec::new(),
        });
    }
}

/// Whether `r` covers one of `addrs` (its prefix, or a FlowSpec rule's destination).
pub fn covers_any(r: &Route, addrs: &[IpAddr]) -> bool {
    let prefix = match r {
        Route::Blackhole { prefix, .. } => prefix,
        Route::FlowSpec { rule, .. } => &rule.dst,
    };
    addrs.iter().any(|a| prefix.contains(*a))
}
