//! Alerts as Suricata's EVE JSON: the encoding of an [`Alert`].
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
//! | `flow_id` | integer | [`eve_flow_id`] of the 5-tuple: the same for both directions, below 2^51 |
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
//! | [`Kind::BruteForce`] | `brute_force` | 9000009 | netanom: password guessing against a service | Attempted User Privilege Gain | 1 |
//! | [`Kind::HostSweep`] | `host_sweep` | 9000010 | netanom: sweep of many hosts from source | Detection of a Network Scan | 2 |
//! | [`Kind::SlowScan`] | `slow_scan` | 9000011 | netanom: slow scan from source | Detection of a Network Scan | 2 |
//! | [`Kind::Beacon`] | `beacon` | 9000012 | netanom: command-and-control beacon from inside host | A Network Trojan was detected | 1 |
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
//!
//! The sinks in `crate::sinks::alerts` write these lines (to standard output, a file, memory)
//! through the [`super::sink::AlertSink`] trait.
use serde::{Serialize, Serializer, ser::SerializeStruct as _};

use super::{
    alert::{Action, Alert, BlockInfo, Details, FeatureContribution, RateLimitInfo},
    config::Mode,
};
#[cfg(doc)]
use crate::features::identity::eve_flow_id;
use crate::{
    detect::{Kind, finding::MAX_TOP_FEATURES},
    features::identity::proto_name,
};
use netanom_common::time::EveTime;
use std::collections::BTreeMap;

/// Suricata's generator id for rule-based alerts; we use the same.
pub const GID: u32 = 1;

/// Revision of every netanom signature.
pub const REV: u32 = 1;

pub(super) fn ser_timestamp<S: Serializer>(unix_ns: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&EveTime(*unix_ns))
}

pub(super) fn ser_proto<S: Serializer>(p: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&proto_name(*p))
}

pub(super) fn ser_top_features<S: Serializer>(v: &[FeatureContribution], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().take(MAX_TOP_FEATURES))
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
        st.serialize_field("timestamp", &EveTime(self.timestamp_ns).to_string())?;
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use serde_json::Value;

    use super::*;
    use crate::respond::alert::sample;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn full_alert_eve_fields() {
        let alert = sample();
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
            crate::features::identity::eve_flow_id(v4(198, 18, 1, 2), 80, v4(198, 18, 0, 9), 40000, 6)
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
}
