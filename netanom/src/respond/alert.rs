//! The record of each decision the response takes: an alert, written by the alert sinks as
//! one EVE JSON line ([`super::eve`]). Build one with [`AlertContext::alert`] (or
//! [`Alert::new`]) and the `with_*` methods.
use std::{collections::BTreeMap, net::IpAddr};

use netanom_common::time::NS_PER_S;
use serde::Serialize;

use super::config::Mode;
use crate::{
    detect::{Kind, finding::MAX_TOP_FEATURES},
    features::identity::eve_flow_id,
};

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
    #[serde(rename = "expires", serialize_with = "super::eve::ser_timestamp")]
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
            expires_ns: now_ns.saturating_add(ttl_s.saturating_mul(NS_PER_S)),
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
    #[serde(serialize_with = "super::eve::ser_proto")]
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
    #[serde(serialize_with = "super::eve::ser_top_features")]
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
            flow_id: eve_flow_id(src, 0, dest, 0, proto),
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
        self.flow_id = eve_flow_id(
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

/// An alert with every optional field set, for tests of its encodings and sinks.
#[cfg(test)]
pub(crate) fn sample() -> Alert {
    use crate::features::identity::tcp_flags_letters;
    let v4 = |a, b, c, d| IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d));
    let ts = 1_795_256_102 * NS_PER_S + 123_456_789;
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
