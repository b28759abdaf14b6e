//! The fleet's messages: versioned JSON, one per NATS message.
//!
//! A decision (`<prefix>.decisions.<gateway>`, into the decisions stream):
//!
//! ```json
//! {"v":1,"id":"gw-a-1733331234000000000-7","gateway":"gw-a","action":"block",
//!  "decided_at":1733331234.0,"prefix":"198.18.2.66/32","expires_at":1733331534.0,"ttl_s":300,
//!  "reason":"port scan: 3000 ports/s","signature":"netanom: port scan from source","strikes":1,
//!  "bundle":"cic-ids2017 v3"}
//! ```
//!
//! - `action`: `block`, `unblock` (only `prefix` besides the common fields) or `rate_limit`
//!   (with `rate_limit`: the pattern and its rate, and no `prefix`);
//! - times are Unix seconds (fractions allowed) of the deciding gateway's clock; `expires_at`
//!   `null` (or absent): never;
//! - a reader refuses a message of another `v`: a change of meaning gets a new version, and a
//!   new optional field does not.
//!
//! A heartbeat (`<prefix>.heartbeat.<gateway>`, plain NATS, every few seconds) says a gateway is
//! alive and what it published last.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::respond::Cidr;

/// The version this agent writes and reads.
pub const VERSION: u32 = 1;
/// A message larger than this is refused unread (a decision is well under 1 KiB).
pub const MAX_BYTES: usize = 16 * 1024;

/// What a decision does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Block,
    Unblock,
    RateLimit,
}

impl Action {
    /// Indexes `telemetry::fleet::ACTIONS`.
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn name(self) -> &'static str {
        crate::telemetry::fleet::ACTIONS[self.index()]
    }
}

/// A flood pattern limited: packets to `dst` port `port` with protocol `proto` and
/// `tcp_flags`, to `pps` per second with bursts of `burst`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    pub dst: IpAddr,
    pub port: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub pps: f64,
    pub burst: u32,
}

/// One gateway's decision, as published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionMsg {
    pub v: u32,
    /// Unique per decision: the stream's de-duplication key (`Nats-Msg-Id`).
    pub id: String,
    /// The deciding gateway (also the subject's last token).
    pub gateway: String,
    pub action: Action,
    pub decided_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Cidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Pattern>,
    /// `None`: never expires.
    #[serde(default)]
    pub expires_at: Option<f64>,
    #[serde(default)]
    pub ttl_s: u32,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub signature: String,
    #[serde(default)]
    pub strikes: u32,
    #[serde(default)]
    pub bundle: String,
}

/// A gateway's heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub v: u32,
    pub gateway: String,
    pub sent_at: f64,
    pub version: String,
    /// Decisions it has published since it started.
    pub published: u64,
    /// When it published its last decision (Unix seconds), if any.
    #[serde(default)]
    pub last_decision_at: Option<f64>,
}

/// Why a message was refused (indexes `telemetry::fleet::REJECTIONS`).
#[derive(Clone, Debug, Error, PartialEq)]
pub enum Rejected {
    #[error("malformed fleet message on {subject}: {detail}")]
    Malformed { subject: String, detail: String },
    #[error("fleet message of version {found} on {subject}: this agent reads version {VERSION}; upgrade it")]
    Version { subject: String, found: u64 },
    #[error(
        "fleet message on {subject} claims to come from gateway {claimed:?}: a gateway publishes only on \
         its own subject; check the NATS permissions of the user publishing there"
    )]
    Unauthenticated { subject: String, claimed: String },
}

impl Rejected {
    pub fn index(&self) -> usize {
        match self {
            Rejected::Malformed { .. } => 0,
            Rejected::Version { .. } => 1,
            Rejected::Unauthenticated { .. } => 2,
        }
    }
}

impl DecisionMsg {
    /// The JSON form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a decision received on `subject` from gateway `from` (the subject's last token):
    /// its version first, then its form, then that it names the gateway it came from.
    pub fn decode(subject: &str, from: &str, payload: &[u8]) -> Result<DecisionMsg, Rejected> {
        let malformed = |detail: String| Rejected::Malformed {
            subject: subject.to_owned(),
            detail,
        };
        let value = read_versioned(subject, payload)?;
        let m: DecisionMsg = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
        if m.gateway != from {
            return Err(Rejected::Unauthenticated {
                subject: subject.to_owned(),
                claimed: m.gateway,
            });
        }
        let shape_ok = match m.action {
            Action::Block | Action::Unblock => m.prefix.is_some(),
            Action::RateLimit => m
                .rate_limit
                .as_ref()
                .is_some_and(|p| p.pps > 0.0 && p.pps.is_finite()),
        };
        if !shape_ok {
            return Err(malformed(format!(
                "a {} without its {}",
                m.action.name(),
                if m.action == Action::RateLimit {
                    "rate_limit pattern"
                } else {
                    "prefix"
                }
            )));
        }
        let times_ok = m.decided_at.is_finite() && m.expires_at.is_none_or(f64::is_finite);
        if !times_ok || m.id.is_empty() {
            return Err(malformed("a time that is not a number, or no id".into()));
        }
        Ok(m)
    }
}

impl Heartbeat {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(subject: &str, from: &str, payload: &[u8]) -> Result<Heartbeat, Rejected> {
        let value = read_versioned(subject, payload)?;
        let h: Heartbeat = serde_json::from_value(value).map_err(|e| Rejected::Malformed {
            subject: subject.to_owned(),
            detail: e.to_string(),
        })?;
        if h.gateway != from {
            return Err(Rejected::Unauthenticated {
                subject: subject.to_owned(),
                claimed: h.gateway,
            });
        }
        Ok(h)
    }
}

/// The JSON object of a message, once its `v` is ours.
fn read_versioned(subject: &str, payload: &[u8]) -> Result<serde_json::Value, Rejected> {
    let malformed = |detail: String| Rejected::Malformed {
        subject: subject.to_owned(),
        detail,
    };
    if payload.len() > MAX_BYTES {
        return Err(malformed(format!(
            "{} bytes, more than {MAX_BYTES}",
            payload.len()
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => Ok(value),
        Some(found) => Err(Rejected::Version {
            subject: subject.to_owned(),
            found,
        }),
        None => Err(malformed("no version (\"v\")".into())),
    }
}

/// Unix nanoseconds as the messages' seconds.
pub fn secs(unix_ns: u64) -> f64 {
    unix_ns as f64 / 1e9
}
