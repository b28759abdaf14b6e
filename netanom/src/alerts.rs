//! Alert lines in the form of Suricata's EVE JSON output.
//!
//! Every decision the agent takes is written as one JSON object per line
//! (JSON Lines) with the fields of a Suricata EVE `alert` event, so a SIEM
//! that already reads `eve.json` can read netanom's alerts with the same
//! parser. Our own details go in a `netanom` object, which EVE consumers
//! ignore or keep as extra fields.
//!
//! ```json
//! {"timestamp":"2026-11-21T10:15:02.123456+0000","flow_id":1234567890123,"in_iface":"eth0",
//!  "event_type":"alert","src_ip":"198.18.0.9","src_port":40000,"dest_ip":"198.18.1.2",
//!  "dest_port":80,"proto":"TCP","alert":{"action":"blocked","gid":1,"signature_id":9000001,
//!  "rev":1,"signature":"netanom: anomalous flows from source","category":"Anomalous traffic",
//!  "severity":2},"netanom":{"kind":"anomalous_flows","mode":"mitigate", ...}}
//! ```
//! (shown wrapped; each alert is a single line).
//!
//! # EVE fields
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `timestamp` | string | UTC time of the decision, `YYYY-MM-DDTHH:MM:SS.ffffff+0000` (Suricata's format) |
//! | `flow_id` | integer | [`flow_id`] of the 5-tuple: the same for both directions, below 2^51 |
//! | `in_iface` | string | interface the traffic arrived on; omitted when unknown |
//! | `event_type` | string | always `"alert"` |
//! | `src_ip`, `dest_ip` | string | addresses; for a destination-level alert `src_ip` is the unspecified address when no single source is to blame |
//! | `src_port`, `dest_port` | integer | omitted when there is no port (ICMP, source- or destination-level alerts) |
//! | `proto` | string | [`proto_name`]: `"TCP"`, `"UDP"`, `"ICMP"`, `"IPv6-ICMP"`, else the number |
//! | `alert.action` | string | [`Action`]: `"allowed"`, `"blocked"` or `"would-block"` |
//! | `alert.gid`, `alert.rev` | integer | always 1 |
//! | `alert.signature_id`, `alert.signature`, `alert.category`, `alert.severity` | | from [`Kind`], table below |
//!
//! # Alert kinds
//!
//! Severity follows Suricata's priorities: 1 = high, 2 = medium, 3 = low.
//!
//! | [`Kind`] | `netanom.kind` | `signature_id` | `signature` | `category` | `severity` |
//! |---|---|---|---|---|---|
//! | [`Kind::AnomalousFlows`] | `anomalous_flows` | 9000001 | netanom: anomalous flows from source | Anomalous traffic | 2 |
//! | [`Kind::FlowAnomaly`] | `flow_anomaly` | 9000002 | netanom: anomalous flow | Anomalous traffic | 3 |
//! | [`Kind::SourceFlood`] | `source_flood` | 9000003 | netanom: flood from source | Attempted Denial of Service | 1 |
//! | [`Kind::SourceSynFlood`] | `source_syn_flood` | 9000004 | netanom: SYN flood from source | Attempted Denial of Service | 1 |
//! | [`Kind::SourceScan`] | `source_scan` | 9000005 | netanom: scan from source | Detection of a Network Scan | 2 |
//! | [`Kind::VictimFlood`] | `victim_flood` | 9000006 | netanom: destination under flood | Attempted Denial of Service | 1 |
//! | [`Kind::RateLimit`] | `rate_limit` | 9000007 | netanom: rate limit toward destination | Attempted Denial of Service | 2 |
//! | [`Kind::CircuitBreaker`] | `circuit_breaker` | 9000008 | netanom: mitigation circuit breaker tripped | Misc activity | 2 |
//!
//! # The `netanom` object
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `kind` | string | the [`Kind`] in snake_case (table above) |
//! | `mode` | string | [`Mode`]: `"observe"` or `"mitigate"`, the mode the agent was in |
//! | `scores` | object | model name (`autoencoder`, `iforest`, `rf`, `ensemble`, ...) → score; may be empty (aggregate alerts) |
//! | `thresholds` | object | model name → threshold in force for that score |
//! | `top_features` | array | up to [`MAX_TOP_FEATURES`] `{"name", "value", "score"}`: the features that contributed most, largest contribution first; `value` is the feature's value, `score` the contribution measure the agent computed |
//! | `bundle` | string | model bundle version or origin |
//! | `block` | object | only when a block was installed (or would have been): `prefix` (e.g. `"198.18.0.9/32"`), `ttl_s`, `expires` (timestamp, format above), `strikes` (how many times this prefix was blocked, this one included) |
//! | `rate_limit` | object | only when a rate limit was installed (or would have been): `dest_ip`, `dest_port` (omitted when all ports), `proto` (name as above), `tcp_flags` (e.g. `"S"`, omitted when empty), `pps`, `burst`, `ttl_s` |
//! | `aggregate` | object | only for source/destination alerts: feature name → value of the aggregate that fired |
//! | `reason` | string | only when set: free text, e.g. `"14 of 20 flows anomalous in 10 s"` |
//!
//! Scores and other numbers that are not finite (NaN, infinity) are written
//! as `null`, as JSON has no such numbers. Objects keyed by name are written
//! in name order, so lines are stable across runs.
//!
//! # Writing
//!
//! [`AlertSink`] writes the lines to standard output (`"-"`), a file opened
//! for appending (any other target) or nowhere (`""`, alerts are still
//! counted). Lines are buffered; call [`AlertSink::flush`] once per loop
//! iteration so readers tailing the file see alerts promptly.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt::Write as _,
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, Serializer, ser::SerializeStruct as _};
use thiserror::Error;

/// At most this many `top_features` are written per alert.
pub const MAX_TOP_FEATURES: usize = 5;

/// Suricata's generator id for rule-based alerts; we use the same.
pub const GID: u32 = 1;

/// Revision of every netanom signature.
pub const REV: u32 = 1;

// ---------------------------------------------------------------------------
// Timestamps

const NANOS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: u64 = 86_400;

/// `(year, month 1..=12, day 1..=31)` of the given day counted from
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats nanoseconds since the Unix epoch as Suricata does:
/// `YYYY-MM-DDTHH:MM:SS.ffffff+0000` in UTC (microseconds, truncated).
pub fn format_timestamp(unix_ns: u64) -> String {
    let mut out = String::with_capacity(31);
    write_timestamp(&mut out, unix_ns);
    out
}

fn write_timestamp(out: &mut String, unix_ns: u64) {
    let secs = unix_ns / NANOS_PER_SEC;
    let micros = (unix_ns % NANOS_PER_SEC) / 1_000;
    // u64 nanoseconds reach no further than the year 2554: no overflow.
    let (year, month, day) = civil_from_days((secs / SECS_PER_DAY) as i64);
    let sod = secs % SECS_PER_DAY;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}+0000",
        sod / 3_600,
        sod / 60 % 60,
        sod % 60,
    );
}

/// The current time in nanoseconds since the Unix epoch (0 if the clock is
/// set before 1970).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn ser_timestamp<S: Serializer>(unix_ns: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(*unix_ns))
}

// ---------------------------------------------------------------------------
// Flow ids and protocol names

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const FLOW_ID_MASK: u64 = (1 << 51) - 1;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

fn fnv_endpoint(hash: u64, ip: IpAddr, port: u16) -> u64 {
    let hash = match ip {
        IpAddr::V4(v4) => fnv1a(fnv1a(hash, &[4]), &v4.octets()),
        IpAddr::V6(v6) => fnv1a(fnv1a(hash, &[6]), &v6.octets()),
    };
    fnv1a(hash, &port.to_be_bytes())
}

/// A stable id for a connection, written as EVE's `flow_id`.
///
/// FNV-1a 64 over `proto`, then the lower `(address, port)` endpoint, then
/// the higher one (each as address family 4 or 6, the address bytes, the
/// port big-endian), masked to 51 bits so consumers that read JSON numbers
/// as `f64` keep it exact. Both directions of a connection get the same id,
/// and the id does not change between runs or hosts. Alerts without a
/// 5-tuple pass the addresses they have and port 0.
pub fn flow_id(a: IpAddr, a_port: u16, b: IpAddr, b_port: u16, proto: u8) -> u64 {
    let (lo, hi) = if (a, a_port) <= (b, b_port) {
        ((a, a_port), (b, b_port))
    } else {
        ((b, b_port), (a, a_port))
    };
    let hash = fnv1a(FNV_OFFSET, &[proto]);
    let hash = fnv_endpoint(hash, lo.0, lo.1);
    fnv_endpoint(hash, hi.0, hi.1) & FLOW_ID_MASK
}

/// Suricata's name for an IP protocol number: `"TCP"`, `"UDP"`, `"ICMP"`,
/// `"IPv6-ICMP"`, else the number in decimal.
pub fn proto_name(p: u8) -> Cow<'static, str> {
    match p {
        1 => Cow::Borrowed("ICMP"),
        6 => Cow::Borrowed("TCP"),
        17 => Cow::Borrowed("UDP"),
        58 => Cow::Borrowed("IPv6-ICMP"),
        other => Cow::Owned(other.to_string()),
    }
}

fn ser_proto<S: Serializer>(p: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&proto_name(*p))
}

/// TCP flag bits as letters, FIN first: `F` FIN, `S` SYN, `R` RST, `P` PSH,
/// `A` ACK, `U` URG, `E` ECE, `C` CWR. `0x02` gives `"S"`, `0x12` `"SA"`.
pub fn tcp_flags_letters(bits: u8) -> String {
    const LETTERS: [char; 8] = ['F', 'S', 'R', 'P', 'A', 'U', 'E', 'C'];
    LETTERS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

// ---------------------------------------------------------------------------
// Alert types

/// What the agent did about what it detected (EVE `alert.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// `"allowed"`: detected, but the source is allowlisted and is never blocked.
    Allowed,
    /// `"blocked"`: a kernel block or rate limit was installed.
    Blocked,
    /// `"would-block"`: observe mode (or the circuit breaker is open); it
    /// would have been blocked.
    WouldBlock,
}

/// The agent's mode when it took the decision (`netanom.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `"observe"`: detect and report only.
    #[default]
    Observe,
    /// `"mitigate"`: install blocks and rate limits.
    Mitigate,
}

/// What was detected; each kind has its own signature (table in the module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Enough of a source's recent flows were anomalous.
    AnomalousFlows,
    /// One flow scored above threshold.
    FlowAnomaly,
    /// A source sends far more packets or bytes than usual.
    SourceFlood,
    /// A source sends SYNs that are not answered.
    SourceSynFlood,
    /// A source contacts many destinations or ports.
    SourceScan,
    /// A destination receives a flood (many sources, or volume).
    VictimFlood,
    /// A rate limit toward a destination.
    RateLimit,
    /// Too many new blocks: mitigation falls back to observe mode.
    CircuitBreaker,
}

impl Kind {
    /// Every kind, in signature id order.
    pub const ALL: [Kind; 8] = [
        Kind::AnomalousFlows,
        Kind::FlowAnomaly,
        Kind::SourceFlood,
        Kind::SourceSynFlood,
        Kind::SourceScan,
        Kind::VictimFlood,
        Kind::RateLimit,
        Kind::CircuitBreaker,
    ];

    /// EVE `alert.signature_id`.
    pub const fn signature_id(self) -> u32 {
        match self {
            Kind::AnomalousFlows => 9_000_001,
            Kind::FlowAnomaly => 9_000_002,
            Kind::SourceFlood => 9_000_003,
            Kind::SourceSynFlood => 9_000_004,
            Kind::SourceScan => 9_000_005,
            Kind::VictimFlood => 9_000_006,
            Kind::RateLimit => 9_000_007,
            Kind::CircuitBreaker => 9_000_008,
        }
    }

    /// EVE `alert.signature`.
    pub const fn signature(self) -> &'static str {
        match self {
            Kind::AnomalousFlows => "netanom: anomalous flows from source",
            Kind::FlowAnomaly => "netanom: anomalous flow",
            Kind::SourceFlood => "netanom: flood from source",
            Kind::SourceSynFlood => "netanom: SYN flood from source",
            Kind::SourceScan => "netanom: scan from source",
            Kind::VictimFlood => "netanom: destination under flood",
            Kind::RateLimit => "netanom: rate limit toward destination",
            Kind::CircuitBreaker => "netanom: mitigation circuit breaker tripped",
        }
    }

    /// EVE `alert.category` (Suricata's classification names where one fits).
    pub const fn category(self) -> &'static str {
        match self {
            Kind::AnomalousFlows | Kind::FlowAnomaly => "Anomalous traffic",
            Kind::SourceFlood | Kind::SourceSynFlood | Kind::VictimFlood | Kind::RateLimit => {
                "Attempted Denial of Service"
            }
            Kind::SourceScan => "Detection of a Network Scan",
            Kind::CircuitBreaker => "Misc activity",
        }
    }

    /// EVE `alert.severity`: 1 = high, 2 = medium, 3 = low.
    pub const fn severity(self) -> u8 {
        match self {
            Kind::SourceFlood | Kind::SourceSynFlood | Kind::VictimFlood => 1,
            Kind::AnomalousFlows | Kind::SourceScan | Kind::RateLimit | Kind::CircuitBreaker => 2,
            Kind::FlowAnomaly => 3,
        }
    }

    /// `netanom.kind`, e.g. `"source_syn_flood"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::AnomalousFlows => "anomalous_flows",
            Kind::FlowAnomaly => "flow_anomaly",
            Kind::SourceFlood => "source_flood",
            Kind::SourceSynFlood => "source_syn_flood",
            Kind::SourceScan => "source_scan",
            Kind::VictimFlood => "victim_flood",
            Kind::RateLimit => "rate_limit",
            Kind::CircuitBreaker => "circuit_breaker",
        }
    }
}

/// One of the features that contributed most to a score
/// (`netanom.top_features[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureContribution {
    /// Feature name, as in the feature schema.
    pub name: String,
    /// The feature's value for this flow (or aggregate).
    pub value: f64,
    /// How much it contributed (the agent's measure, e.g. the feature's
    /// share of the reconstruction error).
    pub score: f64,
}

impl FeatureContribution {
    pub fn new(name: impl Into<String>, value: f64, score: f64) -> Self {
        Self {
            name: name.into(),
            value,
            score,
        }
    }
}

/// A block that was installed, or would have been (`netanom.block`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockInfo {
    /// The blocked prefix, e.g. `"198.18.0.9/32"`.
    pub prefix: String,
    /// Time to live of the block, in seconds.
    pub ttl_s: u64,
    /// When the block expires, in nanoseconds since the Unix epoch; written
    /// as `expires`, a timestamp string.
    #[serde(rename = "expires", serialize_with = "ser_timestamp")]
    pub expires_ns: u64,
    /// How many times this prefix has been blocked, this time included.
    pub strikes: u32,
}

impl BlockInfo {
    /// A block of `prefix` for `ttl_s` seconds from `now_ns`.
    pub fn new(prefix: impl Into<String>, ttl_s: u64, strikes: u32, now_ns: u64) -> Self {
        Self {
            prefix: prefix.into(),
            ttl_s,
            expires_ns: now_ns.saturating_add(ttl_s.saturating_mul(NANOS_PER_SEC)),
            strikes,
        }
    }
}

/// A rate limit that was installed, or would have been
/// (`netanom.rate_limit`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitInfo {
    /// The protected destination.
    pub dest_ip: IpAddr,
    /// Destination port, `None` for all ports (omitted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    /// IP protocol number, written as [`proto_name`].
    #[serde(serialize_with = "ser_proto")]
    pub proto: u8,
    /// TCP flags the limit matches, e.g. `"S"` ([`tcp_flags_letters`]);
    /// empty (omitted) for any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tcp_flags: String,
    /// Packets per second allowed.
    pub pps: f64,
    /// Burst size, in packets.
    pub burst: u64,
    /// Time to live of the limit, in seconds.
    pub ttl_s: u64,
}

/// netanom's own fields (the `netanom` object, less `kind`, which comes from
/// [`Alert::kind`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Details {
    pub mode: Mode,
    /// Model name → score.
    pub scores: BTreeMap<String, f64>,
    /// Model name → threshold in force.
    pub thresholds: BTreeMap<String, f64>,
    /// Largest contributions first; only the first [`MAX_TOP_FEATURES`] are
    /// written.
    #[serde(serialize_with = "ser_top_features")]
    pub top_features: Vec<FeatureContribution>,
    /// Model bundle version or origin.
    pub bundle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitInfo>,
    /// Feature name → value, for source- and destination-level alerts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn ser_top_features<S: Serializer>(v: &[FeatureContribution], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().take(MAX_TOP_FEATURES))
}

/// One alert: one EVE line. Build with [`Alert::new`] (or
/// [`AlertContext::alert`]) and the `with_*` methods; the fields are public
/// too.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Nanoseconds since the Unix epoch, written as `timestamp`.
    pub timestamp_ns: u64,
    pub flow_id: u64,
    pub in_iface: Option<String>,
    pub src_ip: IpAddr,
    pub src_port: Option<u16>,
    pub dest_ip: IpAddr,
    pub dest_port: Option<u16>,
    /// IP protocol number, written as [`proto_name`].
    pub proto: u8,
    /// Gives `alert.signature_id` and the rest of the `alert` object, and
    /// `netanom.kind`.
    pub kind: Kind,
    pub action: Action,
    pub netanom: Details,
}

impl Alert {
    /// An alert without ports, in observe mode, with no scores; the flow id
    /// is computed from the addresses (ports 0) and `proto`.
    pub fn new(kind: Kind, action: Action, timestamp_ns: u64, src: IpAddr, dest: IpAddr, proto: u8) -> Self {
        Self {
            timestamp_ns,
            flow_id: flow_id(src, 0, dest, 0, proto),
            in_iface: None,
            src_ip: src,
            src_port: None,
            dest_ip: dest,
            dest_port: None,
            proto,
            kind,
            action,
            netanom: Details::default(),
        }
    }

    /// Sets the ports and recomputes the flow id (a `None` port counts as 0).
    pub fn with_ports(mut self, src_port: Option<u16>, dest_port: Option<u16>) -> Self {
        self.src_port = src_port;
        self.dest_port = dest_port;
        self.flow_id = flow_id(
            self.src_ip,
            src_port.unwrap_or(0),
            self.dest_ip,
            dest_port.unwrap_or(0),
            self.proto,
        );
        self
    }

    /// Replaces the computed flow id.
    pub fn with_flow_id(mut self, flow_id: u64) -> Self {
        self.flow_id = flow_id;
        self
    }

    pub fn with_iface(mut self, iface: impl Into<String>) -> Self {
        self.in_iface = Some(iface.into());
        self
    }

    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.netanom.mode = mode;
        self
    }

    pub fn with_bundle(mut self, bundle: impl Into<String>) -> Self {
        self.netanom.bundle = bundle.into();
        self
    }

    /// Adds (or replaces) one model's score.
    pub fn with_score(mut self, model: impl Into<String>, score: f64) -> Self {
        self.netanom.scores.insert(model.into(), score);
        self
    }

    /// Adds (or replaces) one model's threshold.
    pub fn with_threshold(mut self, model: impl Into<String>, threshold: f64) -> Self {
        self.netanom.thresholds.insert(model.into(), threshold);
        self
    }

    /// Sets the top features: sorted by contribution magnitude (largest
    /// first, NaN last) and cut to [`MAX_TOP_FEATURES`].
    pub fn with_top_features(mut self, features: impl IntoIterator<Item = FeatureContribution>) -> Self {
        let mut v: Vec<_> = features.into_iter().collect();
        v.sort_by(|a, b| {
            let key = |f: &FeatureContribution| {
                if f.score.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    f.score.abs()
                }
            };
            key(b).total_cmp(&key(a))
        });
        v.truncate(MAX_TOP_FEATURES);
        self.netanom.top_features = v;
        self
    }

    pub fn with_block(mut self, block: BlockInfo) -> Self {
        self.netanom.block = Some(block);
        self
    }

    pub fn with_rate_limit(mut self, rate_limit: RateLimitInfo) -> Self {
        self.netanom.rate_limit = Some(rate_limit);
        self
    }

    /// Sets the aggregate that fired (feature name → value).
    pub fn with_aggregate<K: Into<String>>(mut self, values: impl IntoIterator<Item = (K, f64)>) -> Self {
        self.netanom.aggregate = Some(values.into_iter().map(|(k, v)| (k.into(), v)).collect());
        self
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.netanom.reason = Some(reason.into());
        self
    }

    /// The alert as one JSON line, without the newline.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: all map keys are strings.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The EVE `alert` object.
#[derive(Serialize)]
struct AlertInfo {
    action: Action,
    gid: u32,
    signature_id: u32,
    rev: u32,
    signature: &'static str,
    category: &'static str,
    severity: u8,
}

/// The `netanom` object: `kind`, then the fields of [`Details`] (spelled
/// out: serde's `flatten` needs serde's `std` feature, which is off).
#[derive(Serialize)]
struct NetanomOut<'a> {
    kind: Kind,
    mode: Mode,
    scores: &'a BTreeMap<String, f64>,
    thresholds: &'a BTreeMap<String, f64>,
    #[serde(serialize_with = "ser_top_features")]
    top_features: &'a [FeatureContribution],
    bundle: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    block: Option<&'a BlockInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<&'a RateLimitInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aggregate: Option<&'a BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl<'a> NetanomOut<'a> {
    fn new(kind: Kind, d: &'a Details) -> Self {
        // Destructured so a new field in Details cannot be forgotten here.
        let Details {
            mode,
            scores,
            thresholds,
            top_features,
            bundle,
            block,
            rate_limit,
            aggregate,
            reason,
        } = d;
        Self {
            kind,
            mode: *mode,
            scores,
            thresholds,
            top_features,
            bundle,
            block: block.as_ref(),
            rate_limit: rate_limit.as_ref(),
            aggregate: aggregate.as_ref(),
            reason: reason.as_deref(),
        }
    }
}

impl Serialize for Alert {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = 9
            + usize::from(self.in_iface.is_some())
            + usize::from(self.src_port.is_some())
            + usize::from(self.dest_port.is_some());
        let mut st = s.serialize_struct("Alert", len)?;
        st.serialize_field("timestamp", &format_timestamp(self.timestamp_ns))?;
        st.serialize_field("flow_id", &self.flow_id)?;
        match &self.in_iface {
            Some(iface) => st.serialize_field("in_iface", iface)?,
            None => st.skip_field("in_iface")?,
        }
        st.serialize_field("event_type", "alert")?;
        st.serialize_field("src_ip", &self.src_ip)?;
        match self.src_port {
            Some(p) => st.serialize_field("src_port", &p)?,
            None => st.skip_field("src_port")?,
        }
        st.serialize_field("dest_ip", &self.dest_ip)?;
        match self.dest_port {
            Some(p) => st.serialize_field("dest_port", &p)?,
            None => st.skip_field("dest_port")?,
        }
        st.serialize_field("proto", &proto_name(self.proto))?;
        st.serialize_field(
            "alert",
            &AlertInfo {
                action: self.action,
                gid: GID,
                signature_id: self.kind.signature_id(),
                rev: REV,
                signature: self.kind.signature(),
                category: self.kind.category(),
                severity: self.kind.severity(),
            },
        )?;
        st.serialize_field("netanom", &NetanomOut::new(self.kind, &self.netanom))?;
        st.end()
    }
}

/// What every alert of a run shares: fill it once, then
/// [`AlertContext::alert`] gives alerts with the interface, mode and bundle
/// set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertContext {
    pub in_iface: Option<String>,
    pub mode: Mode,
    pub bundle: String,
}

impl AlertContext {
    /// [`Alert::new`] with this context's interface, mode and bundle.
    pub fn alert(
        &self,
        kind: Kind,
        action: Action,
        timestamp_ns: u64,
        src: IpAddr,
        dest: IpAddr,
        proto: u8,
    ) -> Alert {
        let mut alert = Alert::new(kind, action, timestamp_ns, src, dest, proto);
        alert.in_iface = self.in_iface.clone();
        alert.netanom.mode = self.mode;
        alert.netanom.bundle = self.bundle.clone();
        alert
    }
}

// ---------------------------------------------------------------------------
// Sink

/// Opening or writing the alert log failed.
#[derive(Debug, Error)]
pub enum AlertError {
    #[error(
        "cannot open the alert log {} for appending: {source}; check that its directory exists and that this user may write there, or use \"-\" for standard output",
        path.display()
    )]
    Open { path: PathBuf, source: io::Error },
    #[error("writing alerts to {target} failed: {source}; check free space and permissions on it")]
    Write { target: String, source: io::Error },
    #[error("encoding an alert as JSON failed: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Where alert lines go: standard output, a file (appended to), memory, or
/// nowhere. Buffered: call [`AlertSink::flush`] regularly; dropping the sink
/// flushes it.
pub struct AlertSink {
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    target: String,
    written: u64,
    line: Vec<u8>,
}

impl std::fmt::Debug for AlertSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSink")
            .field("target", &self.target)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl AlertSink {
    /// `"-"`: standard output; `""`: nowhere (alerts are counted and
    /// dropped); anything else: a file path, opened for appending and
    /// created if missing.
    pub fn open(target: &str) -> Result<AlertSink, AlertError> {
        match target {
            "" => Ok(Self::discard()),
            "-" => Ok(Self::with_target(Box::new(io::stdout()), "standard output")),
            path => {
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .map_err(|source| AlertError::Open {
                        path: PathBuf::from(path),
                        source,
                    })?;
                Ok(Self::with_target(Box::new(file), path))
            }
        }
    }

    /// A sink that drops every alert (and still counts them).
    pub fn discard() -> Self {
        Self {
            out: None,
            target: "nowhere".to_owned(),
            written: 0,
            line: Vec::new(),
        }
    }

    /// A sink writing to any writer.
    pub fn from_writer(writer: Box<dyn Write + Send>) -> Self {
        Self::with_target(writer, "writer")
    }

    /// A sink writing to memory, and a handle to read what it wrote (after
    /// [`AlertSink::flush`]).
    pub fn memory() -> (Self, MemoryBuffer) {
        let buf = MemoryBuffer::default();
        (Self::with_target(Box::new(buf.clone()), "memory"), buf)
    }

    fn with_target(writer: Box<dyn Write + Send>, target: &str) -> Self {
        Self {
            out: Some(BufWriter::new(writer)),
            target: target.to_owned(),
            written: 0,
            line: Vec::with_capacity(1024),
        }
    }

    /// Writes one alert as one line. On error nothing is counted; the sink
    /// stays usable (later writes try again).
    pub fn write(&mut self, alert: &Alert) -> Result<(), AlertError> {
        let Some(out) = self.out.as_mut() else {
            self.written += 1;
            return Ok(());
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, alert)?;
        self.line.push(b'\n');
        out.write_all(&self.line).map_err(|source| AlertError::Write {
            target: self.target.clone(),
            source,
        })?;
        self.written += 1;
        Ok(())
    }

    /// Pushes buffered lines to the target.
    pub fn flush(&mut self) -> Result<(), AlertError> {
        match self.out.as_mut() {
            Some(out) => out.flush().map_err(|source| AlertError::Write {
                target: self.target.clone(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// Alerts written (or, for a discarding sink, dropped) so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Where the alerts go: the path, `"standard output"`, `"memory"`,
    /// `"writer"` or `"nowhere"`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether alerts go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.out.is_some()
    }
}

impl Drop for AlertSink {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The shared buffer behind [`AlertSink::memory`].
#[derive(Debug, Clone, Default)]
pub struct MemoryBuffer(Arc<Mutex<Vec<u8>>>);

impl MemoryBuffer {
    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Each line written so far.
    pub fn lines(&self) -> Vec<String> {
        self.contents().lines().map(str::to_owned).collect()
    }
}

impl Write for MemoryBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const NS: u64 = NANOS_PER_SEC;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn timestamp_epoch() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000+0000");
    }

    #[test]
    fn timestamp_leap_day() {
        // date -u -d 2024-02-29T23:59:59 +%s
        let ns = 1_709_251_199 * NS + 999_999_999;
        assert_eq!(format_timestamp(ns), "2024-02-29T23:59:59.999999+0000");
        assert_eq!(format_timestamp(ns + 1), "2024-03-01T00:00:00.000000+0000");
    }

    #[test]
    fn timestamp_known_dates() {
        assert_eq!(
            format_timestamp(1_795_256_102 * NS + 123_456_789),
            "2026-11-21T10:15:02.123456+0000"
        );
        assert_eq!(
            format_timestamp(951_868_800 * NS),
            "2000-03-01T00:00:00.000000+0000"
        );
        assert_eq!(
            format_timestamp(951_868_800 * NS - 1),
            "2000-02-29T23:59:59.999999+0000"
        );
        assert_eq!(
            format_timestamp(4_107_542_400 * NS),
            "2100-03-01T00:00:00.000000+0000"
        );
        assert_eq!(
            format_timestamp(4_107_542_400 * NS - 1),
            "2100-02-28T23:59:59.999999+0000"
        );
        assert_eq!(format_timestamp(u64::MAX), "2554-07-21T23:34:33.709551+0000");
    }

    #[test]
    fn civil_from_days_round_trip() {
        // Walk day by day from 1970 to 2200, checking each date follows the last.
        let (mut y, mut m, mut d) = civil_from_days(0);
        assert_eq!((y, m, d), (1970, 1, 1));
        for day in 1..(230 * 366) {
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let next = if d < len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(civil_from_days(day), next, "day {day}");
            (y, m, d) = next;
        }
    }

    #[test]
    fn now_is_after_2024() {
        assert!(now_ns() > 1_704_067_200 * NS);
    }

    #[test]
    fn flow_id_symmetric_stable_and_small() {
        let a = v4(198, 18, 0, 9);
        let b = v4(198, 18, 1, 2);
        let id = flow_id(a, 40000, b, 80, 6);
        assert_eq!(id, flow_id(b, 80, a, 40000, 6));
        // Hard-coded: the id must not change between versions.
        assert_eq!(id, EXPECTED_FLOW_ID);
        assert!(id < 1 << 51);
        // Protocol, ports and addresses all matter.
        assert_ne!(id, flow_id(a, 40000, b, 80, 17));
        assert_ne!(id, flow_id(a, 40001, b, 80, 6));
        assert_ne!(id, flow_id(a, 80, b, 40000, 6));
        assert_ne!(id, flow_id(a, 40000, v4(198, 18, 1, 3), 80, 6));

        let c = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let d = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
        assert_eq!(flow_id(c, 1, d, 2, 58), flow_id(d, 2, c, 1, 58));
        assert!(flow_id(c, 1, d, 2, 58) < 1 << 51);
        // Same address and port on both sides (hairpin) is fine too.
        assert_eq!(flow_id(a, 5, a, 5, 17), flow_id(a, 5, a, 5, 17));
        for i in 0..1000u16 {
            assert!(flow_id(a, i, b, 443, 6) < 1 << 51);
        }
    }

    // Checked against an independent FNV-1a in Python.
    const EXPECTED_FLOW_ID: u64 = 972_984_946_286_803;

    #[test]
    fn proto_names() {
        assert_eq!(proto_name(6), "TCP");
        assert_eq!(proto_name(17), "UDP");
        assert_eq!(proto_name(1), "ICMP");
        assert_eq!(proto_name(58), "IPv6-ICMP");
        assert_eq!(proto_name(47), "47");
        assert_eq!(proto_name(0), "0");
        assert_eq!(proto_name(255), "255");
    }

    #[test]
    fn tcp_flags() {
        assert_eq!(tcp_flags_letters(0x02), "S");
        assert_eq!(tcp_flags_letters(0x12), "SA");
        assert_eq!(tcp_flags_letters(0x00), "");
        assert_eq!(tcp_flags_letters(0xff), "FSRPAUEC");
    }

    #[test]
    fn kinds_have_distinct_signatures() {
        let mut ids: Vec<_> = Kind::ALL.iter().map(|k| k.signature_id()).collect();
        ids.dedup();
        assert_eq!(ids.len(), Kind::ALL.len());
        for k in Kind::ALL {
            assert!(k.signature().starts_with("netanom: "));
            assert!((1..=3).contains(&k.severity()));
            // as_str matches the serde name.
            assert_eq!(serde_json::to_value(k).unwrap(), Value::from(k.as_str()));
        }
    }

    fn full_alert() -> Alert {
        let ts = 1_795_256_102 * NS + 123_456_789;
        AlertContext {
            in_iface: Some("eth0".into()),
            mode: Mode::Mitigate,
            bundle: "bundle-2026.11.1 (/var/lib/netanom/models)".into(),
        }
        .alert(
            Kind::AnomalousFlows,
            Action::Blocked,
            ts,
            v4(198, 18, 0, 9),
            v4(198, 18, 1, 2),
            6,
        )
        .with_ports(Some(40000), Some(80))
        .with_score("autoencoder", 0.93)
        .with_score("ensemble", 0.88)
        .with_threshold("autoencoder", 0.5)
        .with_threshold("ensemble", 0.6)
        .with_top_features(
            (0..7).map(|i| FeatureContribution::new(format!("f{i}"), f64::from(i), f64::from(i) / 10.0)),
        )
        .with_block(BlockInfo::new("198.18.0.9/32", 300, 2, ts))
        .with_rate_limit(RateLimitInfo {
            dest_ip: v4(198, 18, 1, 2),
            dest_port: Some(80),
            proto: 6,
            tcp_flags: tcp_flags_letters(0x02),
            pps: 1000.0,
            burst: 200,
            ttl_s: 60,
        })
        .with_aggregate([("flows", 20.0), ("anomalous_flows", 14.0)])
        .with_reason("14 of 20 flows anomalous in 10 s")
    }

    #[test]
    fn full_alert_eve_fields() {
        let alert = full_alert();
        let line = alert.to_json();
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        let o = v.as_object().unwrap();
        let keys: Vec<_> = o.keys().map(String::as_str).collect();
        let mut expected = vec![
            "timestamp",
            "flow_id",
            "in_iface",
            "event_type",
            "src_ip",
            "src_port",
            "dest_ip",
            "dest_port",
            "proto",
            "alert",
            "netanom",
        ];
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        // EVE order is kept in the line itself.
        assert!(line.starts_with("{\"timestamp\":\"2026-11-21T10:15:02.123456+0000\",\"flow_id\":"));

        assert_eq!(v["timestamp"], "2026-11-21T10:15:02.123456+0000");
        assert_eq!(
            v["flow_id"].as_u64().unwrap(),
            flow_id(v4(198, 18, 1, 2), 80, v4(198, 18, 0, 9), 40000, 6)
        );
        assert_eq!(v["in_iface"], "eth0");
        assert_eq!(v["event_type"], "alert");
        assert_eq!(v["src_ip"], "198.18.0.9");
        assert_eq!(v["src_port"], 40000);
        assert_eq!(v["dest_ip"], "198.18.1.2");
        assert_eq!(v["dest_port"], 80);
        assert_eq!(v["proto"], "TCP");

        let a = &v["alert"];
        assert_eq!(a.as_object().unwrap().len(), 7);
        assert_eq!(a["action"], "blocked");
        assert_eq!(a["gid"], 1);
        assert_eq!(a["signature_id"], 9_000_001);
        assert_eq!(a["rev"], 1);
        assert_eq!(a["signature"], "netanom: anomalous flows from source");
        assert_eq!(a["category"], "Anomalous traffic");
        assert_eq!(a["severity"], 2);

        let n = &v["netanom"];
        assert_eq!(n["kind"], "anomalous_flows");
        assert_eq!(n["mode"], "mitigate");
        assert_eq!(n["scores"]["autoencoder"], 0.93);
        assert_eq!(n["scores"]["ensemble"], 0.88);
        assert_eq!(n["thresholds"]["autoencoder"], 0.5);
        assert_eq!(n["thresholds"]["ensemble"], 0.6);
        let top = n["top_features"].as_array().unwrap();
        assert_eq!(top.len(), MAX_TOP_FEATURES);
        assert_eq!(top[0]["name"], "f6");
        assert_eq!(top[0]["value"], 6.0);
        assert_eq!(top[0]["score"], 0.6);
        assert_eq!(top[4]["name"], "f2");
        assert_eq!(n["bundle"], "bundle-2026.11.1 (/var/lib/netanom/models)");
        assert_eq!(n["block"]["prefix"], "198.18.0.9/32");
        assert_eq!(n["block"]["ttl_s"], 300);
        assert_eq!(n["block"]["expires"], "2026-11-21T10:20:02.123456+0000");
        assert_eq!(n["block"]["strikes"], 2);
        let rl = &n["rate_limit"];
        assert_eq!(rl["dest_ip"], "198.18.1.2");
        assert_eq!(rl["dest_port"], 80);
        assert_eq!(rl["proto"], "TCP");
        assert_eq!(rl["tcp_flags"], "S");
        assert_eq!(rl["pps"], 1000.0);
        assert_eq!(rl["burst"], 200);
        assert_eq!(rl["ttl_s"], 60);
        assert_eq!(n["aggregate"]["flows"], 20.0);
        assert_eq!(n["aggregate"]["anomalous_flows"], 14.0);
        assert_eq!(n["reason"], "14 of 20 flows anomalous in 10 s");
    }

    #[test]
    fn minimal_alert_omits_optional_fields() {
        let alert = Alert::new(
            Kind::VictimFlood,
            Action::WouldBlock,
            0,
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            58,
        );
        let v: Value = serde_json::from_str(&alert.to_json()).unwrap();
        let o = v.as_object().unwrap();
        for absent in ["src_port", "dest_port", "in_iface"] {
            assert!(!o.contains_key(absent), "{absent} present");
        }
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000+0000");
        assert_eq!(v["src_ip"], "::");
        assert_eq!(v["dest_ip"], "2001:db8::1");
        assert_eq!(v["proto"], "IPv6-ICMP");
        assert_eq!(v["alert"]["action"], "would-block");
        assert_eq!(v["alert"]["severity"], 1);
        let n = v["netanom"].as_object().unwrap();
        let mut keys: Vec<_> = n.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["bundle", "kind", "mode", "scores", "thresholds", "top_features"]
        );
        assert_eq!(n["mode"], "observe");
        assert_eq!(n["scores"], serde_json::json!({}));
        assert_eq!(n["top_features"], serde_json::json!([]));
    }

    #[test]
    fn actions_and_non_finite_scores() {
        for (action, name) in [
            (Action::Allowed, "allowed"),
            (Action::Blocked, "blocked"),
            (Action::WouldBlock, "would-block"),
        ] {
            let alert = Alert::new(Kind::FlowAnomaly, action, 0, v4(1, 2, 3, 4), v4(5, 6, 7, 8), 17)
                .with_score("rf", f64::NAN);
            let v: Value = serde_json::from_str(&alert.to_json()).unwrap();
            assert_eq!(v["alert"]["action"], name);
            assert_eq!(v["netanom"]["scores"]["rf"], Value::Null);
        }
    }

    #[test]
    fn memory_sink_counts_and_flushes() {
        let (mut sink, buf) = AlertSink::memory();
        let alert = full_alert();
        sink.write(&alert).unwrap();
        sink.write(&alert).unwrap();
        assert_eq!(sink.written(), 2);
        sink.flush().unwrap();
        let lines = buf.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], alert.to_json());
    }

    #[test]
    fn discarding_sink_counts() {
        let mut sink = AlertSink::open("").unwrap();
        assert!(!sink.is_enabled());
        sink.write(&full_alert()).unwrap();
        sink.flush().unwrap();
        assert_eq!(sink.written(), 1);
    }

    #[test]
    fn sink_is_send() {
        fn send<T: Send>() {}
        send::<AlertSink>();
        send::<Alert>();
    }

    #[test]
    fn file_sink_appends() {
        let dir =
            std::env::temp_dir().join(format!("netanom-alerts-test-{}-{}", std::process::id(), now_ns()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("eve.json");
        let target = path.to_str().unwrap();
        {
            let mut sink = AlertSink::open(target).unwrap();
            assert_eq!(sink.target(), target);
            sink.write(&full_alert()).unwrap();
            sink.write(&full_alert().with_ports(None, None)).unwrap();
            assert_eq!(sink.written(), 2);
        } // dropped: flushed
        {
            let mut sink = AlertSink::open(target).unwrap();
            sink.write(&full_alert()).unwrap();
            sink.flush().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(text.ends_with('\n'));
        for line in lines {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["event_type"], "alert");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_path_names_it() {
        let err = AlertSink::open("/proc/nonexistent/x").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AlertError::Open { .. }));
        assert!(msg.contains("/proc/nonexistent/x"), "{msg}");
        assert!(msg.contains("directory exists"), "{msg}");
    }

    #[test]
    fn write_error_is_returned() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let mut sink = AlertSink::from_writer(Box::new(Broken));
        // Buffered: the error shows on flush (or on a write that fills the buffer).
        let first = sink.write(&full_alert());
        let flushed = sink.flush();
        assert!(first.is_err() || flushed.is_err());
        let msg = flushed.unwrap_err().to_string();
        assert!(msg.contains("disk on fire"), "{msg}");
        drop(sink); // must not panic
    }
}
