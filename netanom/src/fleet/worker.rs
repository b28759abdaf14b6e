//! The fleet's thread: its own single-threaded runtime, one NATS connection (which reconnects
//! by itself), and three jobs on it:
//!
//! - publishing what the outbox holds ([`super::publisher::publish_loop`], its own task);
//! - consuming the decisions stream with an ordered consumer, from its first message at
//!   start-up (the replay that gives a new or restarted gateway the fleet's active blocks) and
//!   from the next sequence after any break, applying each decision through
//!   [`super::apply::Rules`] to the pinned lists the XDP program reads;
//! - heartbeats: this gateway's every [`HEARTBEAT_EVERY`], and the peers' (for `netanom fleet
//!   status`).
//!
//! Nothing here is ever waited on by the packet path or the scoring stage: they share only the
//! pinned maps and the outbox.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant as WallInstant},
};

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull},
};
use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::{
    apply::{Outcome, Rules},
    client::{self, FleetError},
    config::{FleetConfig, Subjects},
    lists::Cached,
    message::{DecisionMsg, Heartbeat, Rejected, VERSION, secs},
    outbox::Inbox,
    publisher::publish_loop,
};
use crate::{
    datapath::host,
    pipeline::clock::{Clock as _, SystemClock},
    respond::KernelTables,
    telemetry::fleet::{FleetCounters, Peer},
};

/// How often this gateway says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// How often a broken consumer or a missing stream is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long the consumer's JetStream requests wait for an answer.
const REQUEST_WAIT: Duration = Duration::from_secs(2);
/// How often a quiet consumer is checked against the stream.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long opening the consumer waits for the connection.
const CONNECT_WAIT: Duration = Duration::from_secs(2);
/// How often the connection's state is looked at (a reconnect reopens the consumer).
const LINK_EVERY: Duration = Duration::from_millis(200);
/// The protected addresses (host, gateways) are re-read this often.
const PROTECT_EVERY: Duration = Duration::from_secs(10);
/// How long stopping waits for the queue to be published.
const STOP_WAIT: Duration = Duration::from_secs(3);
/// Rejections logged one by one; after that, every [`LOG_EVERY`]th.
const LOG_FIRST: u64 = 20;
const LOG_EVERY: u64 = 100;

/// What the fleet's thread is started with.
pub struct Setup {
    pub cfg: FleetConfig,
    pub gateway: String,
    pub pin_dir: PathBuf,
    /// Retention of the decisions stream when this gateway creates it: the longest TTL.
    pub max_age: Duration,
    pub max_rate_limits: u32,
    pub counters: Arc<FleetCounters>,
    /// Mitigate mode with the circuit breaker closed (told by the decision sink).
    pub mitigating: Arc<AtomicBool>,
    pub inbox: Inbox,
}

/// The running fleet thread; dropping it stops the thread (after publishing what waits,
/// bounded).
pub struct Fleet {
    stop: Option<watch::Sender<bool>>,
    ready: std_mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Fleet {
    pub fn start(s: Setup) -> std::io::Result<Fleet> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("netanom-fleet".into())
            .spawn(move || thread_main(s, stop_rx, ready_tx))?;
        Ok(Fleet {
            stop: Some(stop_tx),
            ready: ready_rx,
            thread: Some(thread),
        })
    }

    /// Waits (at most `limit`) until the decisions stream has been replayed up to where it
    /// stood at start-up; false if it was not.
    pub fn wait_ready(&self, limit: Duration) -> bool {
        self.ready.recv_timeout(limit).is_ok()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        drop(self.stop.take());
        let Some(t) = self.thread.take() else {
            return;
        };
        let deadline = WallInstant::now() + STOP_WAIT + Duration::from_secs(1);
        while !t.is_finished() && WallInstant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}

fn thread_main(s: Setup, stop: watch::Receiver<bool>, ready: std_mpsc::Sender<()>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("fleet: cannot start its runtime: {e}; nothing is shared with the fleet");
            return;
        }
    };
    rt.block_on(run(s, stop, ready));
}

async fn run(s: Setup, stop: watch::Receiver<bool>, ready: std_mpsc::Sender<()>) {
    let counters = s.counters.clone();
    counters.update(|st| {
        st.gateway = s.gateway.clone();
        st.servers = s.cfg.servers.iter().map(ToString::to_string).collect();
        st.connection = "connecting".into();
    });
    let name = format!("netanom {}", s.gateway);
    let client = match client::connect(&s.cfg, &name, Some(counters.clone()), true).await {
        Ok(c) => c,
        Err(e) => {
            log::error!("fleet: {e}; nothing is shared with the fleet");
            counters.update(|st| st.error = Some(e.to_string()));
            return;
        }
    };
    let js = jetstream::new(client.clone());
    let Setup { inbox, .. } = s;
    let publisher = tokio::spawn(publish_loop(js.clone(), inbox, counters.clone()));
    let tables = match KernelTables::open(&s.pin_dir) {
        Ok(t) => Some(Cached::new(t)),
        Err(e) => {
            log::error!("fleet: {e}; other gateways' decisions are not applied");
            None
        }
    };
    let mut c = Consumer {
        subjects: s.cfg.subjects(),
        cfg: s.cfg,
        gateway: s.gateway,
        max_age: s.max_age,
        max_rate_limits: s.max_rate_limits,
        counters: counters.clone(),
        mitigating: s.mitigating,
        tables,
        clock: SystemClock::new(),
        protected: Vec::new(),
        protected_at: None,
        next_seq: 1,
        stream: None,
        last_message: None,
        target: None,
        ready: Some(ready),
        peers: BTreeMap::new(),
        rejected: 0,
        published_count: 0,
        published_last: None,
        lists_failed: false,
    };
    // The consumer's requests give up sooner than publishing does: after a server loss, trying
    // again on another server is quicker than waiting.
    let mut consumer_js = jetstream::new(client.clone());
    consumer_js.set_timeout(REQUEST_WAIT);
    c.run(&client, &consumer_js, stop).await;
    // Every producer is gone by now (the scoring stage has ended): the task publishes what
    // waits, and ends.
    let _ = tokio::time::timeout(STOP_WAIT, publisher).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
}

/// The consuming side's state.
struct Consumer {
    cfg: FleetConfig,
    subjects: Subjects,
    gateway: String,
    max_age: Duration,
    max_rate_limits: u32,
    counters: Arc<FleetCounters>,
    mitigating: Arc<AtomicBool>,
    tables: Option<Cached>,
    clock: SystemClock,
    protected: Vec<IpAddr>,
    protected_at: Option<WallInstant>,
    /// The stream sequence to consume from after a break.
    next_seq: u64,
    /// The decisions stream, once opened, and when the consumer last delivered.
    stream: Option<jetstream::stream::Stream>,
    last_message: Option<WallInstant>,
    /// The stream's last sequence at start-up: replayed up to it, the agent is ready.
    target: Option<u64>,
    ready: Option<std_mpsc::Sender<()>>,
    peers: BTreeMap<String, Peer>,
    rejected: u64,
    /// Decisions published as of the last heartbeat, and when that count last grew.
    published_count: u64,
    published_last: Option<f64>,
    lists_failed: bool,
}

type Messages = pull::Ordered;

/// The next item of an optional stream; pending forever without one.
async fn next_of<S: futures_util::Stream + Unpin>(s: &mut Option<S>) -> Option<S::Item> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

impl Consumer {
    async fn run(
        &mut self,
        client: &async_nats::Client,
        js: &jetstream::Context,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
        let mut retry = tokio::time::interval(RETRY_EVERY);
        let mut msgs: Option<Messages> = None;
        let mut peers: Option<async_nats::Subscriber> = None;
        let mut failing = false;
        let mut link = tokio::time::interval(LINK_EVERY);
        let mut was_up = true;
        let mut check = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = link.tick() => {
                    // After a reconnect the server may have lost the consumer (a restart):
                    // open a new one from the next sequence rather than wait for the old one
                    // to notice.
                    let up = client.connection_state() == async_nats::connection::State::Connected;
                    if up && !was_up {
                        msgs = None;
                    }
                    was_up = up;
                }
                _ = retry.tick(), if msgs.is_none() => {
                    match self.open(client, js).await {
                        Ok(m) => {
                            msgs = Some(m);
                            failing = false;
                            self.counters.update(|s| s.error = None);
                        }
                        Err(e) => {
                            if !failing {
                                log::error!("fleet: {e}; trying again every {} s", RETRY_EVERY.as_secs());
                                failing = true;
                            }
                            self.counters.update(|s| s.error = Some(e.to_string()));
                        }
                    }
                    if peers.is_none() {
                        peers = client.subscribe(self.subjects.all("heartbeat")).await.ok();
                    }
                }
                _ = check.tick(), if msgs.is_some() => {
                    if self.stale().await {
                        log::info!("fleet: the decisions consumer fell behind the stream (a server lost it); resuming at {}", self.next_seq);
                        msgs = None;
                    }
                }
                m = next_of(&mut msgs) => match m {
                    Some(Ok(m)) => self.on_message(&m),
                    Some(Err(e)) => {
                        log::warn!("fleet: the decisions consumer stopped ({e}); resuming at {}", self.next_seq);
                        msgs = None;
                    }
                    None => msgs = None,
                },
                h = next_of(&mut peers) => match h {
                    Some(h) => self.on_heartbeat(&h),
                    None => peers = None,
                },
                _ = beat.tick() => self.heartbeat(client).await,
            }
        }
    }

    /// The decisions stream (created if missing), the alerts stream when alerts are published,
    /// and an ordered consumer from the next sequence not yet seen.
    async fn open(
        &mut self,
        client: &async_nats::Client,
        js: &jetstream::Context,
    ) -> Result<Messages, FleetError> {
        // The server's INFO (a cluster or not) is known once connected.
        let connected = || client.connection_state() == async_nats::connection::State::Connected;
        let deadline = WallInstant::now() + CONNECT_WAIT;
        while !connected() && WallInstant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !connected() {
            return Err(FleetError::Connect {
                servers: self.counters.state().servers.join(", "),
                detail: format!("no server answered within {} s", CONNECT_WAIT.as_secs()),
            });
        }
        let clustered = client::is_clustered(client);
        let stream = client::decision_stream(js, &self.subjects, self.max_age, clustered).await?;
        if self.cfg.publish_alerts {
            client::alert_stream(js, &self.subjects, clustered).await?;
        }
        let name = self.subjects.decision_stream();
        let err = |e: String| FleetError::Stream {
            stream: name.clone(),
            detail: e,
        };
        if self.target.is_none() {
            let info = stream.get_info().await.map_err(|e| err(e.to_string()))?;
            self.target = Some(info.state.last_sequence);
            if info.state.last_sequence < self.next_seq {
                self.replayed();
            }
        }
        let deliver_policy = if self.next_seq <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: self.next_seq,
            }
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.subjects.all("decisions"),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| err(e.to_string()))?;
        let msgs = consumer.messages().await.map_err(|e| err(e.to_string()))?;
        self.stream = Some(stream);
        self.last_message = Some(WallInstant::now());
        Ok(msgs)
    }

    /// Whether the stream holds messages past the consumer's while none came for a while: the
    /// consumer was lost with a server (its replacement is opened from the next sequence).
    async fn stale(&mut self) -> bool {
        if self.last_message.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return false;
        }
        let Some(stream) = &self.stream else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(1), stream.get_info()).await {
            Ok(Ok(info)) => info.state.last_sequence >= self.next_seq,
            _ => false,
        }
    }

    /// The stream is replayed up to where it stood at start-up: the agent may say it is ready.
    fn replayed(&mut self) {
        if let Some(r) = self.ready.take() {
            let _ = r.send(());
            self.counters.update(|s| s.replayed = true);
        }
    }

    fn on_message(&mut self, m: &jetstream::Message) {
        self.last_message = Some(WallInstant::now());
        if let Ok(info) = m.info() {
            self.next_seq = info.stream_sequence + 1;
            let caught_up = info.pending == 0 || self.target.is_some_and(|t| info.stream_sequence >= t);
            self.handle(m.subject.as_str(), &m.payload);
            if caught_up {
                self.replayed();
            }
        } else {
            self.handle(m.subject.as_str(), &m.payload);
        }
    }

    /// One decision message: refused, ignored or applied, counted either way.
    fn handle(&mut self, subject: &str, payload: &[u8]) {
        let from = self.subjects.gateway_of("decisions", subject).unwrap_or_default();
        let d = match DecisionMsg::decode(subject, from, payload) {
            Ok(d) => d,
            Err(r) => return self.reject(&r),
        };
        let now = self.clock.now();
        self.refresh_protected();
        let rules = Rules {
            cfg: &self.cfg,
            me: &self.gateway,
            protected: &self.protected,
            mitigating: self.mitigating.load(Ordering::Relaxed),
            max_rate_limits: self.max_rate_limits,
        };
        let outcome = match &mut self.tables {
            Some(t) => match rules.apply(t, &d, now) {
                Ok(o) => {
                    self.lists_failed = false;
                    o
                }
                Err(e) => {
                    if !self.lists_failed {
                        log::error!("fleet: applying {} from {} failed: {e}", what(&d), d.gateway);
                        self.lists_failed = true;
                    }
                    return;
                }
            },
            None => return,
        };
        self.count(&d, outcome, secs(now.unix_ns));
    }

    fn count(&mut self, d: &DecisionMsg, outcome: Outcome, now_s: f64) {
        let c = &self.counters;
        match outcome {
            Outcome::Applied => {
                FleetCounters::bump(&c.applied[d.action.index()]);
                log::info!(
                    "fleet: {} from {} (decided {:.2} s ago): {}",
                    what(d),
                    d.gateway,
                    now_s - d.decided_at,
                    d.reason
                );
            }
            Outcome::Ignored(i) => FleetCounters::bump(&c.ignored[i as usize]),
            Outcome::Skewed => {
                FleetCounters::bump(&c.rejected[3]);
                log::warn!(
                    "fleet: {} from {} is dated {:.0} s ahead of this clock (more than the {} s tolerated): \
                     rejected; check the gateways' clocks (NTP)",
                    what(d),
                    d.gateway,
                    d.decided_at - now_s,
                    super::apply::SKEW_S
                );
            }
        }
        if d.gateway == self.gateway {
            return;
        }
        let p = self.peers.entry(d.gateway.clone()).or_insert_with(|| Peer {
            gateway: d.gateway.clone(),
            ..Peer::default()
        });
        p.last_decision = Some(what(d));
        p.last_decision_at = Some(d.decided_at);
        p.lag_s = Some(now_s - d.decided_at);
        p.outcome = Some(outcome.name().into());
        self.show_peers();
    }

    fn reject(&mut self, r: &Rejected) {
        FleetCounters::bump(&self.counters.rejected[r.index()]);
        self.rejected += 1;
        if self.rejected <= LOG_FIRST || self.rejected.is_multiple_of(LOG_EVERY) {
            log::warn!("fleet: {r}; rejected ({} so far)", self.rejected);
        }
    }

    fn on_heartbeat(&mut self, m: &async_nats::Message) {
        let subject = m.subject.as_str();
        let from = self.subjects.gateway_of("heartbeat", subject).unwrap_or_default();
        let h = match Heartbeat::decode(subject, from, &m.payload) {
            Ok(h) => h,
            Err(r) => return self.reject(&r),
        };
        if h.gateway == self.gateway {
            return;
        }
        let now = secs(self.clock.now().unix_ns);
        let p = self.peers.entry(h.gateway.clone()).or_insert_with(|| Peer {
            gateway: h.gateway.clone(),
            ..Peer::default()
        });
        p.heartbeat_at = Some(now);
        self.show_peers();
    }

    fn show_peers(&self) {
        let peers: Vec<Peer> = self.peers.values().cloned().collect();
        self.counters.update(|s| s.peers = peers);
    }

    /// This gateway's heartbeat, and the count of active fleet blocks for the status.
    async fn heartbeat(&mut self, client: &async_nats::Client) {
        let t = self.counters.totals();
        let published: u64 = t.published.iter().sum();
        if published > self.published_count {
            self.published_count = published;
            self.published_last = Some(secs(self.clock.now().unix_ns));
        }
        let h = Heartbeat {
            v: VERSION,
            gateway: self.gateway.clone(),
            sent_at: secs(self.clock.now().unix_ns),
            version: env!("CARGO_PKG_VERSION").into(),
            published,
            last_decision_at: self.published_last,
        };
        let _ = client
            .publish(self.subjects.heartbeat(&self.gateway), h.encode().into())
            .await;
        let now = self.clock.now().mono_ns;
        let remote = self.tables.as_mut().map_or(0, |t| t.fleet_count(now)) as u64;
        self.counters.update(|s| s.remote_blocks = remote);
    }

    fn refresh_protected(&mut self) {
        if self.protected_at.is_some_and(|t| t.elapsed() < PROTECT_EVERY) {
            return;
        }
        let mut addrs = host::host_addresses();
        addrs.extend(host::default_gateways());
        self.protected = addrs;
        self.protected_at = Some(WallInstant::now());
    }
}

/// A decision in a few words: `block 198.18.2.66/32`, `rate_limit 198.18.3.2 port 80/6`.
pub fn what(d: &DecisionMsg) -> String {
    match (&d.prefix, &d.rate_limit) {
        (Some(p), _) => format!("{} {p}", d.action.name()),
        (None, Some(r)) => format!("{} {} port {}/{}", d.action.name(), r.dst, r.port, r.proto),
        (None, None) => d.action.name().into(),
    }
}
