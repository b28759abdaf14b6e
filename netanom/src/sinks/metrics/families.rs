//! The metric families, in groups that follow the data flow: each group registers its
//! families in the registry and refreshes them from what the pipeline counted.
use std::{
    sync::{Mutex, atomic::AtomicU64},
    time::Duration,
};

use netanom_common::{Event, Proto};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::Registry,
};

use crate::{
    detect::Kind,
    telemetry::{
        BundleInfo, InterfaceInfo, ResponseTotals, Snapshot,
        bgp::{BgpTotals, EXCLUSIONS, ROUTE_KINDS, SPEAKER_ERRORS},
        counters::FINDING_KINDS,
        fleet::{ACTIONS, FleetTotals, IGNORED, REJECTIONS},
    },
};

/// Bucket bounds of the latency histograms, seconds: 10 µs to 5 s in 1-2.5-5 steps. A sweep
/// of a million flows takes about a second; a ring-buffer read or a scored batch, micro- to
/// milliseconds.
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0,
];

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

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type NameLabel = [(&'static str, String); 1];
type InfoLabels = [(&'static str, String); 3];

/// Stores an absolute value in a counter fed by a cumulative source; never lowers it.
fn set_counter(c: &Counter, v: u64) {
    c.inner().fetch_max(v, std::sync::atomic::Ordering::Relaxed);
}

fn gauge_u64(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    r.register(name, help, c.clone());
    c
}

fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    r.register(name, help, g.clone());
    g
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Build, bundle and attachment info, and when the drain last refreshed the metrics.
#[derive(Debug)]
pub struct InfoMetrics {
    xdp_attached: Family<InfoLabels, Gauge>,
    model_bundle: Family<InfoLabels, Gauge>,
    last_update: Gauge<f64, AtomicU64>,
}

impl InfoMetrics {
    pub fn register(r: &mut Registry) -> Self {
        r.register(
            "build",
            "The netanom agent's version; always 1",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_owned())]),
        );
        // A gauge family, so that a reload (SIGHUP) can replace the bundle's labels.
        let model_bundle = Family::<InfoLabels, Gauge>::default();
        r.register(
            "model_bundle_info",
            "The model bundle scoring the flows (origin, training dataset, execution provider); always 1",
            model_bundle.clone(),
        );
        // A gauge family rather than an info family: prometheus-client encodes an info metric
        // inside a family with a stray comma.
        let xdp_attached = Family::<InfoLabels, Gauge>::default();
        r.register(
            "xdp_attached_info",
            "Interfaces the XDP program is attached to, its attach mode (native or skb) and \
             whether the TC egress classifier is attached too; always 1",
            xdp_attached.clone(),
        );
        let last_update = Gauge::<f64, AtomicU64>::default();
        r.register(
            "last_update_timestamp_seconds",
            "When the drain last refreshed these metrics from the kernel (Unix time); stale if the \
             drain is stuck",
            last_update.clone(),
        );
        InfoMetrics {
            xdp_attached,
            model_bundle,
            last_update,
        }
    }

    pub fn set_bundle(&self, bundle: &BundleInfo) {
        self.model_bundle.clear();
        let labels = [
            ("origin", bundle.origin.clone()),
            ("dataset", bundle.dataset.clone()),
            ("provider", bundle.provider.clone()),
        ];
        self.model_bundle.get_or_create(&labels).set(1);
    }

    pub fn set_attachments(&self, attachments: &[InterfaceInfo]) {
        for a in attachments {
            let labels = [
                ("iface", a.iface.clone()),
                ("mode", a.mode.clone()),
                ("egress", a.egress.to_string()),
            ];
            self.xdp_attached.get_or_create(&labels).set(1);
        }
    }

    /// The snapshot of `unix_s` is the latest one.
    pub fn touch(&self, unix_s: f64) {
        self.last_update.set(unix_s);
    }
}

/// Packets and bytes by protocol class, parser events, aggregates the kernel could not enter.
#[derive(Debug)]
pub struct TrafficMetrics {
    packets: Vec<(Proto, Counter)>,
    bytes: Vec<(Proto, Counter)>,
    parser_events: Vec<(&'static str, Counter)>,
    agg_insert_failed: Counter,
}

impl TrafficMetrics {
    pub fn register(r: &mut Registry) -> Self {
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
        let per_proto = |f: &Family<Labels2, Counter>| {
            Proto::ALL
                .iter()
                .map(|&p| (p, f.get_or_create_owned(&proto_labels(p))))
                .collect()
        };
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
        TrafficMetrics {
            packets: per_proto(&packets_f),
            bytes: per_proto(&bytes_f),
            parser_events,
            agg_insert_failed: counter(
                r,
                "aggregate_insert_failed",
                "Per-source or per-destination aggregates the kernel could not enter in their table",
            ),
        }
    }

    pub fn update(&self, s: &Snapshot) {
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
            }
        }
    }
}

/// The flow table: created, exported by path, lost, evicted, live, fill.
#[derive(Debug)]
pub struct FlowMetrics {
    created: Counter,
    /// By [`EXPORT_PATHS`].
    exported: [Counter; 3],
    export_lost: Counter,
    evicted: Counter,
    insert_failed: Counter,
    forgotten: Counter,
    live: Gauge,
    in_table: Gauge,
    table_entries: Gauge,
    fill_ratio: Gauge<f64, AtomicU64>,
    capacity: u64,
}

impl FlowMetrics {
    pub fn register(r: &mut Registry, flow_entries: u32) -> Self {
        let exported_f = Family::<Labels1, Counter>::default();
        let created = counter(
            r,
            "flows_created",
            "Flow entries the kernel created in its flow table",
        );
        r.register(
            "flows_exported",
            "Flow records handed to the agent, by path: ring (FIN, RST or active timeout, through the \
             ring buffer), idle (idle timeout, found by the sweep), flush (live when the agent stopped)",
            exported_f.clone(),
        );
        let m = FlowMetrics {
            created,
            exported: EXPORT_PATHS.map(|p| exported_f.get_or_create_owned(&[("path", p)])),
            export_lost: counter(
                r,
                "flows_export_lost",
                "Flow records the kernel could not queue because the export ring buffer was full",
            ),
            evicted: counter(
                r,
                "flows_evicted",
                "Flow entries the LRU flow table dropped before they were exported (derived at each sweep)",
            ),
            insert_failed: counter(
                r,
                "flows_insert_failed",
                "Flows that could not be entered in the flow table at all",
            ),
            forgotten: counter(
                r,
                "flows_forgotten",
                "Closed flows (already exported) deleted by the sweep after their linger time",
            ),
            live: gauge(
                r,
                "flows_live",
                "Live (not closed) flows in the flow table at the last sweep",
            ),
            in_table: gauge(r, "flows_in_table", "Entries in the flow table at the last sweep"),
            table_entries: gauge(r, "flow_table_entries", "Size of the flow table (entries)"),
            fill_ratio: Gauge::<f64, AtomicU64>::default(),
            capacity: u64::from(flow_entries),
        };
        r.register(
            "flow_table_fill_ratio",
            "Entries in the flow table at the last sweep divided by its size",
            m.fill_ratio.clone(),
        );
        m.table_entries.set(i64::from(flow_entries));
        m
    }

    pub fn update(&self, s: &Snapshot) {
        let f = &s.flows;
        set_counter(&self.created, f.created);
        for (c, v) in self
            .exported
            .iter()
            .zip([f.exported_ring, f.exported_idle, f.exported_flush])
        {
            set_counter(c, v);
        }
        set_counter(&self.export_lost, f.export_lost);
        set_counter(&self.evicted, f.evicted);
        set_counter(&self.insert_failed, f.insert_failed);
        set_counter(&self.forgotten, f.forgotten);
        gauge_u64(&self.live, f.live);
        gauge_u64(&self.in_table, f.in_table);
        gauge_u64(&self.table_entries, self.capacity);
        if self.capacity > 0 {
            self.fill_ratio.set(f.in_table as f64 / self.capacity as f64);
        }
    }
}

/// The drain-to-scoring queue and the drain's latency.
#[derive(Debug)]
pub struct QueueMetrics {
    vectors_in: Counter,
    vectors_out: Counter,
    full_waits: Counter,
    batches: Gauge,
    /// By [`DrainStage::ALL`].
    drain_duration: [Histogram; 3],
}

impl QueueMetrics {
    pub fn register(r: &mut Registry) -> Self {
        let vectors_in = counter(
            r,
            "queue_vectors_in",
            "Vectors (flows and aggregates) the drain queued for the scoring stage",
        );
        let vectors_out = counter(
            r,
            "queue_vectors_out",
            "Vectors the scoring stage took from the queue",
        );
        let full_waits = counter(
            r,
            "queue_full_waits",
            "Times the drain found the queue to the scoring stage full and waited (back-pressure)",
        );
        let batches = gauge(
            r,
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
        QueueMetrics {
            vectors_in,
            vectors_out,
            full_waits,
            batches,
            drain_duration: DrainStage::ALL.map(|s| drain_f.get_or_create_owned(&[("stage", s.name())])),
        }
    }

    pub fn update(&self, s: &Snapshot, queued_batches: usize) {
        let q = &s.queue;
        set_counter(&self.vectors_in, q.vectors_in);
        set_counter(&self.vectors_out, q.vectors_out);
        set_counter(&self.full_waits, q.full_waits);
        gauge_u64(&self.batches, queued_batches as u64);
    }

    pub fn observe_drain(&self, stage: DrainStage, took: Duration) {
        let i = DrainStage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        self.drain_duration[i].observe(took.as_secs_f64());
    }
}

/// Scoring: vectors scored and refused, anomalies by model (the bundle's names), latency.
#[derive(Debug)]
pub struct ScoringMetrics {
    scored: Counter,
    anomalies: Family<NameLabel, Counter>,
    rejected: Counter,
    pub(super) duration: Histogram,
    channels: Gauge,
    channels_dropped: Counter,
}

impl ScoringMetrics {
    pub fn register(r: &mut Registry) -> Self {
        let scored = counter(
            r,
            "vectors_scored",
            "Flow feature vectors scored by the model bundle",
        );
        let anomalies = Family::<NameLabel, Counter>::default();
        r.register(
            "anomalies",
            "Scored flow vectors flagged as anomalous, by model (the bundle's models, such as \
             autoencoder, iforest and rf) and by the ensemble",
            anomalies.clone(),
        );
        let rejected = counter(
            r,
            "vectors_rejected",
            "Flow feature vectors not scored because a feature was NaN or infinite",
        );
        let duration = latency_histogram();
        r.register(
            "scoring_duration_seconds",
            "Time the scoring stage spent on one batch of flow vectors (all models and the ensemble)",
            duration.clone(),
        );
        let channels = gauge(
            r,
            "beacon_channels",
            "Channels (inside host, remote host, port, protocol) the beacon detector follows",
        );
        let channels_dropped = counter(
            r,
            "beacon_channels_dropped",
            "Channels the beacon detector dropped to make room (detection.beacon_max_channels)",
        );
        ScoringMetrics {
            scored,
            anomalies,
            rejected,
            duration,
            channels,
            channels_dropped,
        }
    }

    pub fn update(&self, s: &Snapshot) {
        let m = &s.scoring;
        set_counter(&self.scored, m.scored);
        for (name, v) in &m.anomalies {
            set_counter(&self.anomalies.get_or_create(&[("model", name.clone())]), *v);
        }
        set_counter(&self.rejected, m.rejected);
        gauge_u64(&self.channels, m.channels);
        set_counter(&self.channels_dropped, m.channels_dropped);
    }
}

/// The response: drops in the kernel, blocks, rate limits, the breaker, findings and alerts,
/// and the mode in force.
#[derive(Debug)]
pub struct ResponseMetrics {
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
    /// By [`Kind::ALL`].
    findings: [Counter; FINDING_KINDS],
    alerts: Counter,
    alert_write_errors: Counter,
    mode_info: Family<Labels2, Gauge>,
    /// The (configured, effective) pair `mode_info` shows now.
    mode_shown: Mutex<Option<(&'static str, &'static str)>>,
}

impl ResponseMetrics {
    pub fn register(r: &mut Registry) -> Self {
        let dropped_f = Family::<Labels1, Counter>::default();
        r.register(
            "packets_dropped",
            "Packets the XDP program dropped, by reason: blocklist (the source matched an active \
             block), rate_limit (over a flood-pattern rate limit)",
            dropped_f.clone(),
        );
        let packets_dropped =
            DROP_REASONS.map(|(reason, _)| dropped_f.get_or_create_owned(&[("reason", reason)]));
        let findings_f = Family::<Labels1, Counter>::default();
        r.register(
            "findings",
            "Detections (anomalous flows, flood and scan patterns) the response stage handled, by \
             kind (the alert's netanom.kind)",
            findings_f.clone(),
        );
        let findings = Kind::ALL.map(|k| findings_f.get_or_create_owned(&[("kind", k.as_str())]));
        let m = ResponseMetrics {
            packets_dropped,
            findings,
            packets_passed_allowlisted: counter(
                r,
                "packets_passed_allowlisted",
                "Packets that matched a block or rate limit but were passed because their source is \
                 allowlisted",
            ),
            blocks_active: gauge(r, "blocks_active", "Blocklist entries in force in the kernel"),
            blocks_added: counter(r, "blocks_added", "Blocklist entries the agent added"),
            blocks_expired: counter(
                r,
                "blocks_expired",
                "Blocklist entries removed because their time ran out",
            ),
            would_block: counter(
                r,
                "would_block",
                "Decisions that would have blocked a source but did not, because the agent is in \
                 observe mode or the circuit breaker is open",
            ),
            allowlisted_decisions: counter(
                r,
                "allowlisted_decisions",
                "Detections on allowlisted sources (never blocked)",
            ),
            rate_limits_active: gauge(
                r,
                "rate_limits_active",
                "Flood-pattern rate limits in force in the kernel",
            ),
            rate_limits_added: counter(
                r,
                "rate_limits_added",
                "Flood-pattern rate limits the agent added",
            ),
            breaker_open: gauge(
                r,
                "circuit_breaker_open",
                "1 while the circuit breaker is open (too many blocks in a short time: new blocks are \
                 suspended), else 0",
            ),
            breaker_trips: counter(r, "circuit_breaker_trips", "Times the circuit breaker opened"),
            alerts: counter(r, "alerts", "Alerts written to the alert sink"),
            alert_write_errors: counter(
                r,
                "alert_write_errors",
                "Alerts that could not be written to the alert sink",
            ),
            mode_info: Family::<Labels2, Gauge>::default(),
            mode_shown: Mutex::new(None),
        };
        r.register(
            "mode_info",
            "The response mode configured and the one in effect (observe or mitigate; the agent \
             falls back to observe when it cannot mitigate); always 1",
            m.mode_info.clone(),
        );
        m
    }

    /// The kernel's drop counters, from the snapshot's events.
    pub fn update_drops(&self, s: &Snapshot) {
        set_counter(
            &self.packets_passed_allowlisted,
            s.event(Event::PassedAllowlisted),
        );
        for ((_, e), c) in DROP_REASONS.iter().zip(&self.packets_dropped) {
            set_counter(c, s.event(*e));
        }
    }

    pub fn update(&self, c: &ResponseTotals, configured: &'static str, effective: &'static str) {
        set_counter(&self.blocks_added, c.blocks_added);
        set_counter(&self.blocks_expired, c.blocks_expired);
        gauge_u64(&self.blocks_active, c.blocks_active);
        set_counter(&self.would_block, c.would_block);
        set_counter(&self.allowlisted_decisions, c.allowlisted);
        set_counter(&self.rate_limits_added, c.rate_limits_added);
        gauge_u64(&self.rate_limits_active, c.rate_limits_active);
        set_counter(&self.breaker_trips, c.breaker_trips);
        self.breaker_open.set(i64::from(c.breaker_open));
        for (counter, n) in self.findings.iter().zip(c.findings_by_kind) {
            set_counter(counter, n);
        }
        set_counter(&self.alerts, c.alerts);
        set_counter(&self.alert_write_errors, c.alert_errors);

        let labels = |(c, e): (&'static str, &'static str)| [("configured", c), ("effective", e)];
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
}

/// The BGP announcer: the speaker's state, routes announced, announcements and withdrawals by
/// kind, what the safety rules keep back, failed calls by reason.
#[derive(Debug)]
pub struct BgpMetrics {
    speaker_up: Gauge,
    /// By [`ROUTE_KINDS`].
    announced: [Gauge; 2],
    announcements: [Counter; 2],
    withdrawals: [Counter; 2],
    /// By [`EXCLUSIONS`].
    excluded: [Gauge; 4],
    /// By [`SPEAKER_ERRORS`].
    errors: [Counter; 3],
    cap_hits: Counter,
}

/// A family with one label over fixed `values`, registered; its metric for each value.
fn labelled<M, const N: usize>(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [M; N]
where
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Clone
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let f = Family::<Labels1, M>::default();
    r.register(name, help, f.clone());
    values.map(|v| f.get_or_create_owned(&[(label, v)]))
}

impl BgpMetrics {
    pub fn register(r: &mut Registry) -> Self {
        BgpMetrics {
            speaker_up: gauge(
                r,
                "bgp_speaker_up",
                "1 while the BGP speaker (gobgpd) answers the announcer, else 0",
            ),
            announced: labelled(
                r,
                "bgp_routes_announced",
                "Routes the BGP speaker announces for netanom, by kind (blackhole, flowspec)",
                "kind",
                ROUTE_KINDS,
            ),
            announcements: labelled(
                r,
                "bgp_announcements",
                "Routes added to (or replaced on) the BGP speaker, by kind (re-announcements after a \
                 speaker restart included)",
                "kind",
                ROUTE_KINDS,
            ),
            withdrawals: labelled(
                r,
                "bgp_withdrawals",
                "Routes withdrawn from the BGP speaker, by kind",
                "kind",
                ROUTE_KINDS,
            ),
            excluded: labelled(
                r,
                "bgp_routes_excluded",
                "Blocks and rate limits in force that are not announced, by reason: allowlisted, \
                 protected (host address, gateway, BGP peer), prefix_length (wider than \
                 bgp.widest_prefix_*), cap (bgp.max_routes)",
                "reason",
                EXCLUSIONS,
            ),
            errors: labelled(
                r,
                "bgp_speaker_errors",
                "Failed exchanges with the BGP speaker, by reason: unreachable, refused, timeout",
                "reason",
                SPEAKER_ERRORS,
            ),
            cap_hits: counter(
                r,
                "bgp_cap_hits",
                "Decisions refused because their route would exceed bgp.max_routes (each trips the \
                 circuit breaker)",
            ),
        }
    }

    pub fn update(&self, t: &BgpTotals) {
        self.speaker_up.set(i64::from(t.speaker_up));
        for (g, v) in self.announced.iter().zip(t.announced) {
            gauge_u64(g, v);
        }
        for (c, v) in self.announcements.iter().zip(t.announcements) {
            set_counter(c, v);
        }
        for (c, v) in self.withdrawals.iter().zip(t.withdrawals) {
            set_counter(c, v);
        }
        for (g, v) in self.excluded.iter().zip(t.excluded) {
            gauge_u64(g, v);
        }
        for (c, v) in self.errors.iter().zip(t.errors) {
            set_counter(c, v);
        }
        set_counter(&self.cap_hits, t.cap_hits);
    }
}

/// The fleet: the connection, decisions published, applied, ignored and rejected, alerts
/// published, the outbound queue.
#[derive(Debug)]
pub struct FleetMetrics {
    connected: Gauge,
    reconnects: Counter,
    /// By [`ACTIONS`].
    published: [Counter; 3],
    applied: [Counter; 3],
    /// By [`IGNORED`].
    ignored: [Counter; 10],
    /// By [`REJECTIONS`].
    rejected: [Counter; 4],
    alerts_published: Counter,
    queued: Gauge,
    overflow: Counter,
}

impl FleetMetrics {
    pub fn register(r: &mut Registry) -> Self {
        FleetMetrics {
            connected: gauge(
                r,
                "fleet_connected",
                "1 while the agent is connected to NATS, else 0",
            ),
            reconnects: counter(
                r,
                "fleet_connections",
                "Connections made to NATS (the first, then every reconnect)",
            ),
            published: labelled(
                r,
                "fleet_decisions_published",
                "This gateway's decisions published to the fleet (acknowledged by JetStream), by action",
                "action",
                ACTIONS,
            ),
            applied: labelled(
                r,
                "fleet_decisions_applied",
                "Other gateways' decisions applied here, by action",
                "action",
                ACTIONS,
            ),
            ignored: labelled(
                r,
                "fleet_decisions_ignored",
                "Decisions received and not applied, by reason: own, untrusted, expired, duplicate, \
                 allowlisted, protected, too_wide, cap, observe, apply_remote_off",
                "reason",
                IGNORED,
            ),
            rejected: labelled(
                r,
                "fleet_messages_rejected",
                "Fleet messages refused, by reason: malformed, version, unauthenticated (another \
                 gateway's name), skew (dated ahead of this clock by more than 30 s)",
                "reason",
                REJECTIONS,
            ),
            alerts_published: counter(
                r,
                "fleet_alerts_published",
                "Alerts published to the fleet's alerts stream",
            ),
            queued: gauge(
                r,
                "fleet_outbound_queue",
                "Messages waiting to be published to NATS (decisions and alerts)",
            ),
            overflow: counter(
                r,
                "fleet_outbound_dropped",
                "Messages dropped because the outbound queue was full (NATS unreachable too long)",
            ),
        }
    }

    pub fn update(&self, t: &FleetTotals) {
        self.connected.set(i64::from(t.connected));
        set_counter(&self.reconnects, t.reconnects);
        for (c, v) in self.published.iter().zip(t.published) {
            set_counter(c, v);
        }
        for (c, v) in self.applied.iter().zip(t.applied) {
            set_counter(c, v);
        }
        for (c, v) in self.ignored.iter().zip(t.ignored) {
            set_counter(c, v);
        }
        for (c, v) in self.rejected.iter().zip(t.rejected) {
            set_counter(c, v);
        }
        set_counter(&self.alerts_published, t.alerts_published);
        gauge_u64(&self.queued, t.queued);
        set_counter(&self.overflow, t.overflow);
    }
}
