//! Prometheus metrics: what the agent counts, served at `GET /metrics`.
//!
//! The metrics are built with `prometheus-client` and hold only labels from small fixed sets
//! (protocol family and transport, parser event, export path, model, drain stage, drop reason,
//! response mode) or sets the operator bounds (interfaces); never an address or a port.
//!
//! **Counters are cumulative totals since the agent started.** Most mirror a cumulative
//! source (the kernel's per-CPU counters, the drain's tallies, the scoring thread's atomics),
//! so [`Metrics::update`] stores the source's latest absolute value in the counter's atomic
//! with `fetch_max`: a counter never goes down between scrapes, even if a derived source (such
//! as `evicted`) is momentarily lower than a value already exposed. The response's counters
//! ([`crate::respond::MitigationCounters`]) are mirrored the same way by
//! [`Metrics::update_mitigation`]. The histograms are
//! observed where the work happens (the drain's sweeps and ring-buffer reads, the consumer's
//! scoring).
//!
//! **Exposition.** The registry is encoded in the OpenMetrics text format. A scraper that asks
//! for it (`Accept: application/openmetrics-text`, as Prometheus does) gets it as is; every
//! other client gets the classic Prometheus text format (version 0.0.4), which is what
//! `promtool check metrics`, curl users and older scrapers read. The conversion is mechanical:
//! counter families are named with their `_total` suffix, info metrics become gauges named
//! `..._info`, and `# EOF` is dropped.
//!
//! **Server.** A minimal HTTP/1.1 server on its own thread (a single-threaded tokio runtime),
//! so a slow scrape never delays the drain and a long sweep never delays a scrape. One request
//! per connection (`Connection: close`); request heads are bounded ([`MAX_REQUEST_BYTES`]),
//! connections are bounded in number and time; anything malformed gets a 4xx answer.
use std::{
    fmt::Write as _,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use netanom_common::{Event, Proto};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::Registry,
};
use thiserror::Error;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, oneshot},
};

use crate::{alerts::Kind, config::Mode, datapath::Attachment, respond::MitigationCounters, stats::Snapshot};

/// Where `netanom run` serves metrics unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9754";
/// The only path served.
pub const PATH: &str = "/metrics";
/// Longest request head (request line and headers) read; longer requests get 431.
pub const MAX_REQUEST_BYTES: usize = 8192;
/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection must send its request and take the answer within this time.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Content type of the OpenMetrics text format (what `prometheus-client` encodes).
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds of the latency histograms, seconds: 10 µs to 5 s in 1-2.5-5 steps. A sweep
/// of a million flows takes about a second; a ring-buffer read or a scored batch, micro- to
/// milliseconds.
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The models whose decisions are counted, in the order of [`crate::stats::ScoreCounters`].
pub const MODELS: [&str; 4] = ["autoencoder", "iforest", "rf", "ensemble"];
/// How an exported flow reached the agent.
pub const EXPORT_PATHS: [&str; 3] = ["ring", "idle", "flush"];
/// Why the XDP program dropped a packet (the `reason` label of `netanom_packets_dropped_total`),
/// with the kernel event counting it.
pub const DROP_REASONS: [(&str, Event); 2] = [
    ("blocklist", Event::DroppedBlocked),
    ("rate_limit", Event::DroppedRateLimited),
];

/// What the drain stage timed (the `stage` label of `netanom_drain_duration_seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainStage {
    /// One read of the flow export ring buffer (records plus their feature vectors).
    Ring,
    /// One sweep of the flow table (idle flows exported, plus their feature vectors).
    Sweep,
    /// One drain of the per-source and per-destination aggregates.
    Aggregates,
}

impl DrainStage {
    pub const ALL: [DrainStage; 3] = [DrainStage::Ring, DrainStage::Sweep, DrainStage::Aggregates];

    pub const fn name(self) -> &'static str {
        match self {
            DrainStage::Ring => "ring",
            DrainStage::Sweep => "sweep",
            DrainStage::Aggregates => "aggregates",
        }
    }
}

/// The model bundle in use, for `netanom_model_bundle_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleInfo {
    /// `embedded` for the default bundle, else the `--bundle` directory.
    pub origin: String,
    /// The manifest's dataset.
    pub dataset: String,
    /// The execution provider actually used (`cpu` or `cuda`).
    pub provider: String,
}

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type IfaceLabels = [(&'static str, String); 3];

/// Stores an absolute value in a counter fed by a cumulative source; never lowers it.
fn set_counter(c: &Counter, v: u64) {
    c.inner().fetch_max(v, Ordering::Relaxed);
}

fn gauge_u64(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

/// Every metric the agent exposes, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    packets: Vec<(Proto, Counter)>,
    bytes: Vec<(Proto, Counter)>,
    parser_events: Vec<(&'static str, Counter)>,
    agg_insert_failed: Counter,
    flows_created: Counter,
    /// By [`EXPORT_PATHS`].
    flows_exported: [Counter; 3],
    flows_export_lost: Counter,
    flows_evicted: Counter,
    flows_insert_failed: Counter,
    flows_forgotten: Counter,
    flows_live: Gauge,
    flows_in_table: Gauge,
    flow_table_entries: Gauge,
    flow_table_fill_ratio: Gauge<f64, AtomicU64>,
    vectors_scored: Counter,
    /// By [`MODELS`].
    anomalies: [Counter; 4],
    vectors_rejected: Counter,
    queue_vectors_in: Counter,
    queue_vectors_out: Counter,
    queue_full_waits: Counter,
    queue_batches: Gauge,
    /// By [`DrainStage::ALL`].
    drain_duration: [Histogram; 3],
    scoring_duration: Histogram,
    xdp_attached: Family<IfaceLabels, Gauge>,
    model_bundle: Family<IfaceLabels, Gauge>,
    /// By [`DROP_REASONS`].
    packets_dropped: [Counter; 2],
    packets_passed_allowlisted: Counter,
    blocks_active: Gauge,
    blocks_added: Counter,
    blocks_expired: Counter,
    would_block: Counter,
    allowlisted_decisions: Counter,
    rate_limits_active: Gauge,
    rate_limits_added: Counter,
    breaker_open: Gauge,
    breaker_trips: Counter,
    findings: [Counter; Kind::ALL.len()],
    alerts: Counter,
    alert_write_errors: Counter,
    mode_info: Family<Labels2, Gauge>,
    /// The (configured, effective) pair `mode_info` shows now.
    mode_shown: Mutex<Option<(Mode, Mode)>>,
    last_update: Gauge<f64, AtomicU64>,
    flow_capacity: u64,
}

impl Metrics {
    /// Registers every metric. `flow_entries` is the flow table's size (for the fill ratio);
    /// `bundle`, when given, fills `netanom_model_bundle_info`.
    pub fn new(flow_entries: u32, bundle: Option<&BundleInfo>) -> Self {
        let mut r = Registry::with_prefix("netanom");

        r.register(
            "build",
            "The netanom agent's version; always 1",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_owned())]),
        );
        // A gauge family, so that a reload (SIGHUP) can replace the bundle's labels.
        let model_bundle = Family::<IfaceLabels, Gauge>::default();
        r.register(
            "model_bundle_info",
            "The model bundle scoring the flows (origin, training dataset, execution provider); always 1",
            model_bundle.clone(),
        );
        // A gauge family rather than an info family: prometheus-client encodes an info metric
        // inside a family with a stray comma.
        let xdp_attached = Family::<IfaceLabels, Gauge>::default();
        r.register(
            "xdp_attached_info",
            "Interfaces the XDP program is attached to, its attach mode (native or skb) and \
             whether the TC egress classifier is attached too; always 1",
            xdp_attached.clone(),
        );

        let packets_f = Family::<Labels2, Counter>::default();
        let bytes_f = Family::<Labels2, Counter>::default();
        r.register(
            "packets",
            "Packets accounted by the XDP program (and the TC egress classifier), by address family \
             and transport",
            packets_f.clone(),
        );
        r.register(
            "bytes",
            "Bytes of the accounted packets (whole frames from the Ethernet header on), by address \
             family and transport",
            bytes_f.clone(),
        );
        let proto_labels = |p: Proto| [("family", p.family()), ("transport", p.transport())];
        let packets = Proto::ALL
            .iter()
            .map(|&p| (p, packets_f.get_or_create_owned(&proto_labels(p))))
            .collect();
        let bytes = Proto::ALL
            .iter()
            .map(|&p| (p, bytes_f.get_or_create_owned(&proto_labels(p))))
            .collect();

        let events_f = Family::<Labels1, Counter>::default();
        r.register(
            "parser_events",
            "Malformed or unusual frames the parser met (they are still passed), by event",
            events_f.clone(),
        );
        let parser_events = Event::ALL
            .iter()
            .filter(|e| e.is_parser_event())
            .map(|e| (e.name(), events_f.get_or_create_owned(&[("event", e.name())])))
            .collect();
        let agg_insert_failed = Counter::default();
        r.register(
            "aggregate_insert_failed",
            "Per-source or per-destination aggregates the kernel could not enter in their table",
            agg_insert_failed.clone(),
        );

        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };

        let flows_created = counter(
            &mut r,
            "flows_created",
            "Flow entries the kernel created in its flow table",
        );
        let exported_f = Family::<Labels1, Counter>::default();
        r.register(
            "flows_exported",
            "Flow records handed to the agent, by path: ring (FIN, RST or active timeout, through the \
             ring buffer), idle (idle timeout, found by the sweep), flush (live when the agent stopped)",
            exported_f.clone(),
        );
        let flows_exported = EXPORT_PATHS.map(|p| exported_f.get_or_create_owned(&[("path", p)]));
        let flows_export_lost = counter(
            &mut r,
            "flows_export_lost",
            "Flow records the kernel could not queue because the export ring buffer was full",
        );
        let flows_evicted = counter(
            &mut r,
            "flows_evicted",
            "Flow entries the LRU flow table dropped before they were exported (derived at each sweep)",
        );
        let flows_insert_failed = counter(
            &mut r,
            "flows_insert_failed",
            "Flows that could not be entered in the flow table at all",
        );
        let flows_forgotten = counter(
            &mut r,
            "flows_forgotten",
            "Closed flows (already exported) deleted by the sweep after their linger time",
        );
        let flows_live = gauge(
            &mut r,
            "flows_live",
            "Live (not closed) flows in the flow table at the last sweep",
        );
        let flows_in_table = gauge(
            &mut r,
            "flows_in_table",
            "Entries in the flow table at the last sweep",
        );
        let flow_table_entries = gauge(&mut r, "flow_table_entries", "Size of the flow table (entries)");
        flow_table_entries.set(i64::from(flow_entries));
        let flow_table_fill_ratio = Gauge::<f64, AtomicU64>::default();
        r.register(
            "flow_table_fill_ratio",
            "Entries in the flow table at the last sweep divided by its size",
            flow_table_fill_ratio.clone(),
        );

        let vectors_scored = counter(
            &mut r,
            "vectors_scored",
            "Flow feature vectors scored by the model bundle",
        );
        let anomalies_f = Family::<Labels1, Counter>::default();
        r.register(
            "anomalies",
            "Scored flow vectors flagged as anomalous, by model (autoencoder, iforest, rf) and by the \
             ensemble",
            anomalies_f.clone(),
        );
        let anomalies = MODELS.map(|m| anomalies_f.get_or_create_owned(&[("model", m)]));
        let vectors_rejected = counter(
            &mut r,
            "vectors_rejected",
            "Flow feature vectors not scored because a feature was NaN or infinite",
        );

        let queue_vectors_in = counter(
            &mut r,
            "queue_vectors_in",
            "Vectors (flows and aggregates) the drain queued for the scoring stage",
        );
        let queue_vectors_out = counter(
            &mut r,
            "queue_vectors_out",
            "Vectors the scoring stage took from the queue",
        );
        let queue_full_waits = counter(
            &mut r,
            "queue_full_waits",
            "Times the drain found the queue to the scoring stage full and waited (back-pressure)",
        );
        let queue_batches = gauge(
            &mut r,
            "queue_batches",
            "Batches waiting in the queue to the scoring stage",
        );

        let drain_f =
            Family::<Labels1, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        r.register(
            "drain_duration_seconds",
            "Time the drain spent on one unit of work, by stage: ring (one read of the export ring \
             buffer), sweep (one sweep of the flow table), aggregates (one drain of the aggregates); \
             feature vectors included, waiting for the queue excluded",
            drain_f.clone(),
        );
        let drain_duration = DrainStage::ALL.map(|s| drain_f.get_or_create_owned(&[("stage", s.name())]));
        let scoring_duration = latency_histogram();
        r.register(
            "scoring_duration_seconds",
            "Time the scoring stage spent on one batch of flow vectors (all models and the ensemble)",
            scoring_duration.clone(),
        );
        let dropped_f = Family::<Labels1, Counter>::default();
        r.register(
            "packets_dropped",
            "Packets the XDP program dropped, by reason: blocklist (the source matched an active \
             block), rate_limit (over a flood-pattern rate limit)",
            dropped_f.clone(),
        );
        let packets_dropped =
            DROP_REASONS.map(|(reason, _)| dropped_f.get_or_create_owned(&[("reason", reason)]));
        let packets_passed_allowlisted = counter(
            &mut r,
            "packets_passed_allowlisted",
            "Packets that matched a block or rate limit but were passed because their source is \
             allowlisted",
        );
        let blocks_active = gauge(
            &mut r,
            "blocks_active",
            "Blocklist entries in force in the kernel",
        );
        let blocks_added = counter(&mut r, "blocks_added", "Blocklist entries the agent added");
        let blocks_expired = counter(
            &mut r,
            "blocks_expired",
            "Blocklist entries removed because their time ran out",
        );
        let would_block = counter(
            &mut r,
            "would_block",
            "Decisions that would have blocked a source but did not, because the agent is in \
             observe mode or the circuit breaker is open",
        );
        let allowlisted_decisions = counter(
            &mut r,
            "allowlisted_decisions",
            "Detections on allowlisted sources (never blocked)",
        );
        let rate_limits_active = gauge(
            &mut r,
            "rate_limits_active",
            "Flood-pattern rate limits in force in the kernel",
        );
        let rate_limits_added = counter(
            &mut r,
            "rate_limits_added",
            "Flood-pattern rate limits the agent added",
        );
        let breaker_open = gauge(
            &mut r,
            "circuit_breaker_open",
            "1 while the circuit breaker is open (too many blocks in a short time: new blocks are \
             suspended), else 0",
        );
        let breaker_trips = counter(
            &mut r,
            "circuit_breaker_trips",
            "Times the circuit breaker opened",
        );
        let findings_f = Family::<Labels1, Counter>::default();
        r.register(
            "findings",
            "Detections (anomalous flows and flood patterns) the response stage handled, by kind \
             (the alert's netanom.kind)",
            findings_f.clone(),
        );
        let findings = Kind::ALL.map(|k| findings_f.get_or_create_owned(&[("kind", k.as_str())]));
        let alerts = counter(&mut r, "alerts", "Alerts written to the alert sink");
        let alert_write_errors = counter(
            &mut r,
            "alert_write_errors",
            "Alerts that could not be written to the alert sink",
        );
        let mode_info = Family::<Labels2, Gauge>::default();
        r.register(
            "mode_info",
            "The response mode configured and the one in effect (observe or mitigate; the agent \
             falls back to observe when it cannot mitigate); always 1",
            mode_info.clone(),
        );

        let last_update = Gauge::<f64, AtomicU64>::default();
        r.register(
            "last_update_timestamp_seconds",
            "When the drain last refreshed these metrics from the kernel (Unix time); stale if the \
             drain is stuck",
            last_update.clone(),
        );

        let m = Self {
            registry: r,
            packets,
            bytes,
            parser_events,
            agg_insert_failed,
            flows_created,
            flows_exported,
            flows_export_lost,
            flows_evicted,
            flows_insert_failed,
            flows_forgotten,
            flows_live,
            flows_in_table,
            flow_table_entries,
            flow_table_fill_ratio,
            vectors_scored,
            anomalies,
            vectors_rejected,
            queue_vectors_in,
            queue_vectors_out,
            queue_full_waits,
            queue_batches,
            drain_duration,
            scoring_duration,
            xdp_attached,
            packets_dropped,
            packets_passed_allowlisted,
            blocks_active,
            blocks_added,
            blocks_expired,
            would_block,
            allowlisted_decisions,
            rate_limits_active,
            rate_limits_added,
            breaker_open,
            breaker_trips,
            findings,
            alerts,
            alert_write_errors,
            mode_info,
            mode_shown: Mutex::new(None),
            last_update,
            flow_capacity: u64::from(flow_entries),
            model_bundle,
        };
        if let Some(b) = bundle {
            m.set_bundle(b);
        }
        m
    }

    /// Shows `bundle` in `netanom_model_bundle_info` (replacing the one shown before).
    pub fn set_bundle(&self, bundle: &BundleInfo) {
        self.model_bundle.clear();
        let labels = [
            ("origin", bundle.origin.clone()),
            ("dataset", bundle.dataset.clone()),
            ("provider", bundle.provider.clone()),
        ];
        self.model_bundle.get_or_create(&labels).set(1);
    }

    /// Records the interfaces the program is attached to (`netanom_xdp_attached_info`).
    pub fn set_attachments(&self, attachments: &[Attachment]) {
        for a in attachments {
            let labels = [
                ("iface", a.iface.clone()),
                ("mode", a.mode.to_string()),
                ("egress", a.egress.to_string()),
            ];
            self.xdp_attached.get_or_create(&labels).set(1);
        }
    }

    /// Refreshes the counters and gauges from a snapshot (the data the stats line shows) and
    /// the number of batches waiting in the queue.
    pub fn update(&self, s: &Snapshot, queued_batches: usize) {
        for row in &s.protocols {
            let hit = |(p, _): &&(Proto, Counter)| p.family() == row.family && p.transport() == row.transport;
            if let Some((_, c)) = self.packets.iter().find(hit) {
                set_counter(c, row.packets);
            }
            if let Some((_, c)) = self.bytes.iter().find(hit) {
                set_counter(c, row.bytes);
            }
        }
        for &(name, v) in &s.events {
            if let Some((_, c)) = self.parser_events.iter().find(|(n, _)| *n == name) {
                set_counter(c, v);
            } else if name == Event::AggInsertFailed.name() {
                set_counter(&self.agg_insert_failed, v);
            } else if name == Event::PassedAllowlisted.name() {
                set_counter(&self.packets_passed_allowlisted, v);
            } else if let Some(i) = DROP_REASONS.iter().position(|(_, e)| e.name() == name) {
                set_counter(&self.packets_dropped[i], v);
            }
        }
        let f = &s.flows;
        set_counter(&self.flows_created, f.created);
        for (c, v) in self
            .flows_exported
            .iter()
            .zip([f.exported_ring, f.exported_idle, f.exported_flush])
        {
            set_counter(c, v);
        }
        set_counter(&self.flows_export_lost, f.export_lost);
        set_counter(&self.flows_evicted, f.evicted);
        set_counter(&self.flows_insert_failed, f.insert_failed);
        set_counter(&self.flows_forgotten, f.forgotten);
        gauge_u64(&self.flows_live, f.live);
        gauge_u64(&self.flows_in_table, f.in_table);
        gauge_u64(&self.flow_table_entries, self.flow_capacity);
        if self.flow_capacity > 0 {
            self.flow_table_fill_ratio
                .set(f.in_table as f64 / self.flow_capacity as f64);
        }
        let m = &s.scoring;
        set_counter(&self.vectors_scored, m.scored);
        for (c, v) in self.anomalies.iter().zip([
            m.anomalies_autoencoder,
            m.anomalies_iforest,
            m.anomalies_rf,
            m.anomalies_ensemble,
        ]) {
            set_counter(c, v);
        }
        set_counter(&self.vectors_rejected, m.rejected);
        let q = &s.queue;
        set_counter(&self.queue_vectors_in, q.vectors_in);
        set_counter(&self.queue_vectors_out, q.vectors_out);
        set_counter(&self.queue_full_waits, q.full_waits);
        gauge_u64(&self.queue_batches, queued_batches as u64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.last_update.set(now);
    }

    /// Refreshes the response's counters and gauges, and `netanom_mode_info` for the
    /// `configured` and `effective` modes (only the current pair is exposed).
    pub fn update_mitigation(&self, c: &MitigationCounters, configured: Mode, effective: Mode) {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        set_counter(&self.blocks_added, ld(&c.blocks_added));
        set_counter(&self.blocks_expired, ld(&c.blocks_expired));
        gauge_u64(&self.blocks_active, ld(&c.blocks_active));
        set_counter(&self.would_block, ld(&c.would_block));
        set_counter(&self.allowlisted_decisions, ld(&c.allowlisted));
        set_counter(&self.rate_limits_added, ld(&c.rate_limits_added));
        gauge_u64(&self.rate_limits_active, ld(&c.rate_limits_active));
        set_counter(&self.breaker_trips, ld(&c.breaker_trips));
        self.breaker_open
            .set(i64::from(c.breaker_open.load(Ordering::Relaxed)));
        for (counter, c) in self.findings.iter().zip(&c.findings) {
            set_counter(counter, ld(c));
        }
        set_counter(&self.alerts, ld(&c.alerts));
        set_counter(&self.alert_write_errors, ld(&c.alert_errors));

        let labels = |(c, e): (Mode, Mode)| [("configured", c.name()), ("effective", e.name())];
        let now = (configured, effective);
        let mut shown = self.mode_shown.lock().unwrap_or_else(|p| p.into_inner());
        if *shown != Some(now) {
            if let Some(old) = shown.take() {
                self.mode_info.remove(&labels(old));
            }
            self.mode_info.get_or_create(&labels(now)).set(1);
            *shown = Some(now);
        }
    }

    /// Records how long one unit of drain work took.
    pub fn observe_drain(&self, stage: DrainStage, took: Duration) {
        let i = DrainStage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        self.drain_duration[i].observe(took.as_secs_f64());
    }

    /// Records how long scoring one batch took.
    pub fn observe_scoring(&self, took: Duration) {
        self.scoring_duration.observe(took.as_secs_f64());
    }

    /// The registry in the OpenMetrics text format (ends with `# EOF`).
    pub fn openmetrics(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Only native-only histograms fail to encode, and there are none.
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }

    /// The registry in the classic Prometheus text format (version 0.0.4).
    pub fn text(&self) -> String {
        openmetrics_to_text(&self.openmetrics())
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Converts `prometheus-client`'s OpenMetrics text into the classic text format: counter
/// families take their `_total` name, info families become gauges named `..._info`, `unknown`
/// becomes `untyped`; `# EOF` and `# UNIT` lines are dropped; HELP text is re-escaped (classic
/// HELP knows only `\\` and `\n`). Sample lines are the same in both formats.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (classic, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((_, text)) = help.take().filter(|(n, _)| *n == name) {
                let _ = writeln!(out, "# HELP {classic} {}", classic_help(text));
            }
            let _ = writeln!(out, "# TYPE {classic} {kind}");
        } else if line.starts_with('#') || line.is_empty() {
            // `# EOF`, `# UNIT`: not part of the classic format.
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// OpenMetrics HELP escapes (`\\`, `\n`, `\"`) to classic ones (`\\`, `\n`).
fn classic_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push_str("\\n"),
                Some('"') => out.push('"'),
                Some('\\') | None => out.push_str("\\\\"),
                Some(other) => {
                    out.push_str("\\\\");
                    out.push(other);
                }
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// The endpoint could not be opened.
#[derive(Debug, Error)]
#[error(
    "cannot serve Prometheus metrics on {addr}: {io}. {hint}Choose another address with \
     `--metrics-addr ADDRESS:PORT`, or run without the metrics endpoint (`--no-metrics`)."
)]
pub struct BindError {
    pub addr: SocketAddr,
    /// Already in the message, so not a `source` (which would repeat it).
    pub io: io::Error,
    hint: String,
}

/// Opens the listening socket (before anything is attached, so a busy port fails fast).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    let fail = |io: io::Error| {
        let hint = match io.kind() {
            io::ErrorKind::AddrInUse => format!(
                "Another program listens there (perhaps another netanom agent: each needs its own \
                 port); `ss -ltnp 'sport = :{}'` shows which. ",
                addr.port()
            ),
            io::ErrorKind::AddrNotAvailable => format!(
                "{} is not an address of this host (in this network namespace); `ip -br addr` \
                 lists them. ",
                addr.ip()
            ),
            io::ErrorKind::PermissionDenied => "Ports below 1024 need CAP_NET_BIND_SERVICE. ".to_owned(),
            _ => String::new(),
        };
        BindError { addr, io, hint }
    };
    let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    Ok(listener)
}

/// The metrics server's thread. Dropping it stops the server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `metrics` on `listener` (from [`bind`]) from a thread of its own.
    pub fn start(listener: std::net::TcpListener, metrics: Arc<Metrics>) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _guard = rt.enter();
            listener.set_nonblocking(true)?;
            TcpListener::from_std(listener)?
        };
        let (stop, stopped) = oneshot::channel();
        let thread = thread::Builder::new()
            .name("netanom-metrics".into())
            .spawn(move || {
                rt.block_on(serve(listener, metrics, async {
                    let _ = stopped.await;
                }));
            })?;
        Ok(Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections until `shutdown` completes; each is answered on its own task, at most
/// [`MAX_CONNECTIONS`] at once, each within [`CONNECTION_TIMEOUT`].
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut warned = false;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors, or the like: say so once, then back off.
                    if !warned {
                        log::warn!("metrics endpoint: accepting a connection failed: {e}");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, handle(stream, &metrics)).await;
        });
    }
}

/// Reads one request head (bounded) and writes the answer.
async fn handle(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let response = loop {
        if let Some(end) = head_end(&buf) {
            break respond(&buf[..end], metrics);
        }
        if buf.len() >= MAX_REQUEST_BYTES {
            break Response::error(431, "Request Header Fields Too Large", "request head too large\n");
        }
        let want = chunk.len().min(MAX_REQUEST_BYTES - buf.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            // Closed before sending a whole request head.
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    stream.write_all(&response.to_bytes()).await?;
    stream.shutdown().await
}

/// End of the request head (after the blank line), if it has arrived.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An HTTP response, written with `Connection: close`.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub body: String,
    /// HEAD: headers as for GET, no body.
    pub head_only: bool,
    pub allow: bool,
}

impl Response {
    fn error(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            head_only: false,
            allow: status == 405,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// The answer to one request head: 200 with the metrics for `GET /metrics` (and `HEAD`), 404
/// for any other path, 405 for any other method, 400 for anything that is not HTTP/1.x.
pub fn respond(head: &[u8], metrics: &Metrics) -> Response {
    let Ok(head) = std::str::from_utf8(head) else {
        return Response::error(400, "Bad Request", "bad request\n");
    };
    let mut lines = head.lines();
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::error(400, "Bad Request", "bad request\n");
    };
    if method.is_empty() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Response::error(400, "Bad Request", "bad request\n");
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != PATH {
        return Response::error(404, "Not Found", "not found: metrics are served at /metrics\n");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Response::error(405, "Method Not Allowed", "method not allowed: use GET\n"),
    };
    let openmetrics = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .any(|(_, v)| v.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (OPENMETRICS_CONTENT_TYPE, metrics.openmetrics())
    } else {
        (TEXT_CONTENT_TYPE, metrics.text())
    };
    Response {
        status: 200,
        reason: "OK",
        content_type,
        body,
        head_only,
        allow: false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use netanom_common::ProtoCounter;

    use super::*;
    use crate::{
        datapath::AttachMode,
        stats::{QueueCounters, ScoreCounters, SweepTotals},
    };

    fn snapshot(udp_packets: u64) -> Snapshot {
        let protos: Vec<(Proto, ProtoCounter)> = Proto::ALL
            .iter()
            .map(|&p| {
                let n = if p == Proto::Ipv4Udp { udp_packets } else { 0 };
                (
                    p,
                    ProtoCounter {
                        packets: n,
                        bytes: n * 100,
                    },
                )
            })
            .collect();
        let mut s = Snapshot::from_counters(
            UNIX_EPOCH,
            vec![],
            &protos,
            &[
                (Event::Truncated, 2),
                (Event::FlowCreated, 5),
                (Event::AggInsertFailed, 1),
                (Event::DroppedBlocked, 5),
                (Event::PassedAllowlisted, 2),
            ],
        )
        .with_flows(
            &SweepTotals {
                exported_idle: 1,
                in_table: 4,
                live: 3,
                created_at_sweep: 5,
                ..SweepTotals::default()
            },
            QueueCounters {
                vectors_in: 9,
                vectors_out: 8,
                full_waits: 1,
            },
        );
        s.scoring = ScoreCounters {
            scored: 8,
            anomalies_ensemble: 2,
            ..ScoreCounters::default()
        };
        s
    }

    fn metrics() -> Metrics {
        let m = Metrics::new(
            64,
            Some(&BundleInfo {
                origin: "embedded".into(),
                dataset: "cic-ids2017".into(),
                provider: "cpu".into(),
            }),
        );
        m.set_attachments(&[Attachment {
            iface: "veth0".into(),
            mode: AttachMode::Skb,
            egress: false,
        }]);
        m
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_reloaded_bundle_replaces_the_bundle_info() {
        let m = metrics();
        m.set_bundle(&BundleInfo {
            origin: "/srv/bundles/new".into(),
            dataset: "cic-ids2017".into(),
            provider: "cpu".into(),
        });
        let text = m.text();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("netanom_model_bundle_info{"))
            .collect();
        assert_eq!(
            lines,
            [
                r#"netanom_model_bundle_info{origin="/srv/bundles/new",dataset="cic-ids2017",provider="cpu"} 1"#
            ]
        );
    }

    #[test]
    fn snapshot_values_appear_in_both_formats() {
        let m = metrics();
        m.update(&snapshot(7), 3);
        m.observe_drain(DrainStage::Sweep, Duration::from_micros(300));
        m.observe_scoring(Duration::from_millis(2));
        let text = m.text();
        for (series, v) in [
            (r#"netanom_packets_total{family="ipv4",transport="udp"}"#, 7.0),
            (r#"netanom_bytes_total{family="ipv4",transport="udp"}"#, 700.0),
            (r#"netanom_packets_total{family="ipv6",transport="tcp"}"#, 0.0),
            (r#"netanom_parser_events_total{event="truncated"}"#, 2.0),
            ("netanom_aggregate_insert_failed_total", 1.0),
            ("netanom_flows_created_total", 5.0),
            (r#"netanom_flows_exported_total{path="idle"}"#, 1.0),
            ("netanom_flows_evicted_total", 0.0),
            ("netanom_flows_in_table", 4.0),
            ("netanom_flows_live", 3.0),
            ("netanom_flow_table_entries", 64.0),
            ("netanom_flow_table_fill_ratio", 4.0 / 64.0),
            ("netanom_vectors_scored_total", 8.0),
            (r#"netanom_anomalies_total{model="ensemble"}"#, 2.0),
            (r#"netanom_anomalies_total{model="rf"}"#, 0.0),
            ("netanom_queue_vectors_in_total", 9.0),
            ("netanom_queue_vectors_out_total", 8.0),
            ("netanom_queue_full_waits_total", 1.0),
            ("netanom_queue_batches", 3.0),
            (r#"netanom_drain_duration_seconds_count{stage="sweep"}"#, 1.0),
            (r#"netanom_drain_duration_seconds_count{stage="ring"}"#, 0.0),
            ("netanom_scoring_duration_seconds_count", 1.0),
            (r#"netanom_scoring_duration_seconds_bucket{le="0.0025"}"#, 1.0),
            (r#"netanom_scoring_duration_seconds_bucket{le="0.001"}"#, 0.0),
        ] {
            assert_eq!(sample(&text, series), Some(v), "{series}:\n{text}");
        }
        let build = format!(
            r#"netanom_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
        assert!(text.contains(
            r#"netanom_model_bundle_info{origin="embedded",dataset="cic-ids2017",provider="cpu"} 1"#
        ));
        assert!(
            text.contains(r#"netanom_xdp_attached_info{iface="veth0",mode="skb",egress="false"} 1"#),
            "{text}"
        );
        assert!(text.contains("# TYPE netanom_packets_total counter\n"));
        assert!(text.contains("# TYPE netanom_build_info gauge\n"));
        assert!(!text.contains("# EOF"));
        let om = m.openmetrics();
        assert!(om.ends_with("# EOF\n") && om.contains("# TYPE netanom_build info\n"));
        assert!(om.contains(r#"netanom_packets_total{family="ipv4",transport="udp"} 7"#));
    }

    fn mitigation_counters(blocks_active: u64, alerts: u64) -> MitigationCounters {
        let c = MitigationCounters::default();
        c.blocks_added.store(4, Ordering::Relaxed);
        c.blocks_expired.store(1, Ordering::Relaxed);
        c.blocks_active.store(blocks_active, Ordering::Relaxed);
        c.would_block.store(6, Ordering::Relaxed);
        c.allowlisted.store(2, Ordering::Relaxed);
        c.rate_limits_added.store(1, Ordering::Relaxed);
        c.rate_limits_active.store(1, Ordering::Relaxed);
        c.breaker_trips.store(1, Ordering::Relaxed);
        c.breaker_open.store(true, Ordering::Relaxed);
        c.alerts.store(alerts, Ordering::Relaxed);
        c.alert_errors.store(0, Ordering::Relaxed);
        c.findings[Kind::ALL.iter().position(|k| *k == Kind::SourceFlood).unwrap()]
            .store(9, Ordering::Relaxed);
        c.findings[Kind::ALL.iter().position(|k| *k == Kind::VictimFlood).unwrap()]
            .store(3, Ordering::Relaxed);
        c
    }

    #[test]
    fn mitigation_counters_drops_and_mode() {
        let m = metrics();
        m.update(&snapshot(7), 0);
        m.update_mitigation(&mitigation_counters(3, 10), Mode::Mitigate, Mode::Mitigate);
        let text = m.text();
        assert!(text.contains("netanom_mode_info{configured=\"mitigate\",effective=\"mitigate\"} 1\n"));
        // The effective mode falls back: only the new pair is exposed.
        m.update_mitigation(&mitigation_counters(2, 8), Mode::Mitigate, Mode::Observe);
        let text = m.text();
        for (series, v) in [
            (r#"netanom_packets_dropped_total{reason="blocklist"}"#, 5.0),
            (r#"netanom_packets_dropped_total{reason="rate_limit"}"#, 0.0),
            ("netanom_packets_passed_allowlisted_total", 2.0),
            ("netanom_blocks_active", 2.0),
            ("netanom_blocks_added_total", 4.0),
            ("netanom_blocks_expired_total", 1.0),
            ("netanom_would_block_total", 6.0),
            ("netanom_allowlisted_decisions_total", 2.0),
            ("netanom_rate_limits_active", 1.0),
            ("netanom_rate_limits_added_total", 1.0),
            ("netanom_circuit_breaker_open", 1.0),
            ("netanom_circuit_breaker_trips_total", 1.0),
            (r#"netanom_findings_total{kind="source_flood"}"#, 9.0),
            (r#"netanom_findings_total{kind="victim_flood"}"#, 3.0),
            (r#"netanom_findings_total{kind="source_scan"}"#, 0.0),
            // A counter never goes down (10 was exposed before 8 was read).
            ("netanom_alerts_total", 10.0),
            ("netanom_alert_write_errors_total", 0.0),
            (
                r#"netanom_mode_info{configured="mitigate",effective="observe"}"#,
                1.0,
            ),
        ] {
            assert_eq!(sample(&text, series), Some(v), "{series}:\n{text}");
        }
        assert!(text.contains("# TYPE netanom_packets_dropped_total counter\n"));
        assert!(text.contains("# TYPE netanom_mode_info gauge\n"));
        assert!(
            !text.contains(r#"effective="mitigate""#),
            "old mode pair still exposed:\n{text}"
        );
        assert_eq!(text.matches("netanom_mode_info{").count(), 1, "{text}");
        // Back again, and the breaker closes.
        let c = mitigation_counters(3, 10);
        c.breaker_open.store(false, Ordering::Relaxed);
        m.update_mitigation(&c, Mode::Mitigate, Mode::Mitigate);
        let text = m.text();
        assert_eq!(sample(&text, "netanom_circuit_breaker_open"), Some(0.0));
        assert_eq!(sample(&text, "netanom_blocks_active"), Some(3.0));
        assert_eq!(text.matches("netanom_mode_info{").count(), 1, "{text}");
        assert!(text.contains(r#"netanom_mode_info{configured="mitigate",effective="mitigate"} 1"#));
        let om = m.openmetrics();
        assert!(
            om.contains(r#"netanom_packets_dropped_total{reason="blocklist"} 5"#),
            "{om}"
        );
    }

    /// Every metric family, fully populated.
    fn full_exposition() -> String {
        let m = metrics();
        m.update(&snapshot(7), 1);
        m.observe_drain(DrainStage::Ring, Duration::from_micros(30));
        m.observe_scoring(Duration::from_millis(1));
        m.update_mitigation(&mitigation_counters(3, 10), Mode::Mitigate, Mode::Observe);
        m.text()
    }

    #[test]
    fn every_metric_is_documented_in_the_readme() {
        const README: &str = include_str!("../../README.md");
        let start = README
            .find("\n### Metrics\n")
            .expect("README has a Metrics section");
        let section = &README[start + 1..];
        let section = &section[..section[1..].find("\n#").map_or(section.len(), |i| i + 1)];
        let text = full_exposition();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .collect();
        assert!(names.len() > 30, "{names:?}");
        let missing: Vec<&&str> = names
            .iter()
            .filter(|n| !section.contains(&format!("`{n}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "metrics missing from README.md's Metrics section: {missing:?}"
        );
    }

    #[test]
    fn promtool_accepts_the_exposition() {
        use std::{
            io::Write as _,
            process::{Command, Stdio},
        };
        let Ok(mut check) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("skipped: promtool not installed (`cargo xtask setup` installs it)");
            return;
        };
        let text = full_exposition();
        check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = check.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.trim().is_empty(),
            "promtool check metrics: {report}\n{text}"
        );
    }

    #[test]
    fn counters_never_go_down() {
        let m = metrics();
        m.update(&snapshot(7), 0);
        m.update(&snapshot(5), 0);
        let series = r#"netanom_packets_total{family="ipv4",transport="udp"}"#;
        assert_eq!(sample(&m.text(), series), Some(7.0));
        m.update(&snapshot(9), 0);
        assert_eq!(sample(&m.text(), series), Some(9.0));
    }

    #[test]
    fn classic_conversion_renames_families_and_escapes_help() {
        let om = "# HELP a_b Say \\\"hi\\\" \\\\ now\n# TYPE a_b counter\na_b_total 1\n\
                  # HELP c Info.\n# TYPE c info\nc_info{x=\"1\"} 1\n# TYPE d unknown\nd 2\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_b_total Say \"hi\" \\\\ now\n# TYPE a_b_total counter\na_b_total 1\n\
             # HELP c_info Info.\n# TYPE c_info gauge\nc_info{x=\"1\"} 1\n# TYPE d untyped\nd 2\n"
        );
    }

    #[test]
    fn responses_by_path_and_method() {
        let m = metrics();
        let get = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &m);
        assert_eq!((get.status, get.content_type), (200, TEXT_CONTENT_TYPE));
        assert!(get.body.contains("netanom_packets_total"));
        let om = respond(
            b"GET /metrics?x=1 HTTP/1.1\r\n\
              ACCEPT: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
            &m,
        );
        assert_eq!((om.status, om.content_type), (200, OPENMETRICS_CONTENT_TYPE));
        let head = respond(b"HEAD /metrics HTTP/1.0\r\n\r\n", &m);
        assert!(head.head_only && !String::from_utf8(head.to_bytes()).unwrap().contains("# TYPE"));
        assert_eq!(respond(b"GET / HTTP/1.1\r\n\r\n", &m).status, 404);
        assert_eq!(respond(b"GET /metricsx HTTP/1.1\r\n\r\n", &m).status, 404);
        let post = respond(b"POST /metrics HTTP/1.1\r\n\r\n", &m);
        assert_eq!(post.status, 405);
        assert!(
            String::from_utf8(post.to_bytes())
                .unwrap()
                .contains("Allow: GET, HEAD\r\n")
        );
        for bad in [
            &b"\xff\xfe\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics SPDY/3\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert_eq!(respond(bad, &m).status, 400, "{bad:?}");
        }
    }

    /// Sends `request` to the server, returns the whole answer (the server closes).
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The server may answer (and close) before a long request is fully written.
        let _ = s.write_all(request).await;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    fn status(answer: &str) -> &str {
        answer.lines().next().unwrap_or("")
    }

    #[tokio::test]
    async fn http_server_answers_on_a_real_socket() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let m = Arc::new(metrics());
        m.update(&snapshot(11), 0);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, m, async {
            let _ = stopped.await;
        }));

        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(status(&ok), "HTTP/1.1 200 OK", "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"), "{ok}");
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{head}"
        );
        for name in [
            "netanom_packets_total",
            "netanom_flows_created_total",
            "netanom_anomalies_total",
            "netanom_drain_duration_seconds_bucket",
            "netanom_build_info",
        ] {
            assert!(body.contains(name), "{name} missing:\n{body}");
        }
        assert!(body.contains(r#"netanom_packets_total{family="ipv4",transport="udp"} 11"#));

        assert_eq!(
            status(&exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n").await),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(&exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await),
            "HTTP/1.1 405 Method Not Allowed"
        );
        // Garbage, an oversized head, a connection closed mid-request: answered or dropped,
        // and the server keeps serving.
        assert_eq!(
            status(&exchange(addr, b"\x00\x01garbage\n\n").await),
            "HTTP/1.1 400 Bad Request"
        );
        let huge = vec![b'a'; 3 * MAX_REQUEST_BYTES];
        assert_eq!(
            status(&exchange(addr, &huge).await),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        assert_eq!(exchange(addr, b"GET /metr").await, "");
        // Concurrent scrapes.
        let scrapes: Vec<_> = (0..8)
            .map(|_| tokio::spawn(exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n")))
            .collect();
        for s in scrapes {
            assert_eq!(status(&s.await.unwrap()), "HTTP/1.1 200 OK");
        }
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[test]
    fn server_thread_serves_and_stops() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let server = Server::start(listener, Arc::new(metrics())).unwrap();
        let addr = server.local_addr();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        use std::io::{Read as _, Write as _};
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        drop(server);
        assert!(std::net::TcpStream::connect(addr).is_err(), "stopped serving");
    }

    #[test]
    fn busy_port_is_a_clear_error() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let e = bind(addr).unwrap_err().to_string();
        assert!(
            e.contains(&addr.to_string()) && e.contains("--metrics-addr") && e.contains("--no-metrics"),
            "{e}"
        );
        assert!(e.contains("another netanom agent"), "{e}");
    }
}
