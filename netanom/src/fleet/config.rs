//! `[fleet]`: sharing decisions and alerts with the other gateways over NATS JetStream.
use std::{fmt, path::PathBuf, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// `[fleet]`: off by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    pub enabled: bool,
    /// NATS servers (`nats://` or `tls://` URLs): the client picks one and fails over.
    pub servers: Vec<ServerUrl>,
    /// This gateway's name in the fleet; `""`: the host name.
    pub gateway_id: String,
    /// First token of every subject (`<prefix>.decisions.<gateway_id>`, ...).
    pub subject_prefix: String,
    /// A NATS credentials file (JWT and NKey seed); `""`: none.
    #[serde(with = "crate::pipeline::config::file::opt_path")]
    pub creds_file: Option<PathBuf>,
    /// User and password; `""`: none.
    pub user: String,
    pub password: String,
    /// CA certificate (PEM) the servers' TLS certificates are checked against; `""`: the
    /// system's roots (and TLS only for `tls://` servers).
    #[serde(with = "crate::pipeline::config::file::opt_path")]
    pub tls_ca: Option<PathBuf>,
    /// Publish this gateway's decisions.
    pub share_blocks: bool,
    /// Apply the other gateways' decisions.
    pub apply_remote: bool,
    /// The gateway ids whose decisions are applied; empty: all.
    pub trust: Vec<String>,
    /// Cap on active blocks applied from the fleet.
    pub max_remote_blocks: u32,
    /// Publish every EVE alert on `<prefix>.alerts.<gateway_id>`.
    pub publish_alerts: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            servers: vec![ServerUrl::local()],
            gateway_id: String::new(),
            subject_prefix: "netanom".into(),
            creds_file: None,
            user: String::new(),
            password: String::new(),
            tls_ca: None,
            share_blocks: true,
            apply_remote: true,
            trust: Vec::new(),
            max_remote_blocks: 10_000,
            publish_alerts: true,
        }
    }
}

impl FleetConfig {
    /// The gateway id in force: `gateway_id`, or the host name.
    pub fn gateway(&self) -> String {
        if !self.gateway_id.is_empty() {
            return self.gateway_id.clone();
        }
        host_name().unwrap_or_else(|| "gateway".into())
    }

    /// The subjects and streams of this fleet.
    pub fn subjects(&self) -> Subjects {
        Subjects::new(&self.subject_prefix)
    }

    /// Whether decisions from `gateway` are applied (`trust` empty: every gateway's).
    pub fn trusts(&self, gateway: &str) -> bool {
        self.trust.is_empty() || self.trust.iter().any(|t| t == gateway)
    }

    /// What the fleet shares and applies, and through what (logged at start-up).
    pub fn describe(&self, gateway: &str) -> String {
        let servers: Vec<&str> = self.servers.iter().map(ServerUrl::as_str).collect();
        let trust = if self.trust.is_empty() {
            "every gateway".to_owned()
        } else {
            self.trust.join(", ")
        };
        let yes_no = |b: bool| if b { "on" } else { "off" };
        format!(
            "gateway {gateway} on {} (subjects {}.*): sharing decisions {}, applying {} from {trust} \
             (at most {} blocks), publishing alerts {}",
            servers.join(", "),
            self.subject_prefix,
            yes_no(self.share_blocks),
            if self.apply_remote {
                "decisions"
            } else {
                "no decisions"
            },
            self.max_remote_blocks,
            yes_no(self.publish_alerts),
        )
    }
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: a valid buffer of the given length; gethostname NUL-terminates within it.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

/// A NATS server URL: `nats://HOST[:PORT]` or `tls://HOST[:PORT]` (port 4222 if left out).
/// Checked when the configuration is read, so a malformed one fails with its line and column;
/// a server that does not answer is not a configuration error (the agent keeps trying).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    text: String,
    addr: async_nats::ServerAddr,
}

/// Why a server URL was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{url:?} is not a NATS server URL: {why}; write nats://HOST:PORT or tls://HOST:PORT")]
pub struct UrlError {
    pub url: String,
    pub why: String,
}

impl ServerUrl {
    fn local() -> ServerUrl {
        "nats://127.0.0.1:4222"
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// Whether the connection must use TLS.
    pub fn is_tls(&self) -> bool {
        self.text.starts_with("tls://")
    }

    /// The client's form of it.
    pub fn addr(&self) -> async_nats::ServerAddr {
        self.addr.clone()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for ServerUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<ServerUrl, UrlError> {
        let err = |why: &str| UrlError {
            url: s.to_owned(),
            why: why.to_owned(),
        };
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(err("no scheme"));
        };
        if scheme != "nats" && scheme != "tls" {
            return Err(err(&format!("the scheme is {scheme:?}, not nats or tls")));
        }
        let host = rest.rsplit('@').next().unwrap_or(rest);
        if host.is_empty() || host.starts_with(':') || host.starts_with('/') {
            return Err(err("no host"));
        }
        let addr: async_nats::ServerAddr = s.parse().map_err(|e: std::io::Error| err(&e.to_string()))?;
        if addr.host().is_empty() {
            return Err(err("no host"));
        }
        Ok(ServerUrl {
            text: s.to_owned(),
            addr,
        })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ServerUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServerUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ServerUrl, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The fleet's subjects and JetStream streams, from `subject_prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    pub prefix: String,
}

impl Subjects {
    pub fn new(prefix: &str) -> Subjects {
        Subjects {
            prefix: prefix.to_owned(),
        }
    }
    /// Where `gateway` publishes its decisions.
    pub fn decisions(&self, gateway: &str) -> String {
        format!("{}.decisions.{gateway}", self.prefix)
    }
    pub fn alerts(&self, gateway: &str) -> String {
        format!("{}.alerts.{gateway}", self.prefix)
    }
    pub fn heartbeat(&self, gateway: &str) -> String {
        format!("{}.heartbeat.{gateway}", self.prefix)
    }
    /// `<prefix>.<kind>.*`: every gateway's.
    pub fn all(&self, kind: &str) -> String {
        format!("{}.{kind}.*", self.prefix)
    }
    /// The gateway a subject of `kind` belongs to (its last token).
    pub fn gateway_of<'a>(&self, kind: &str, subject: &'a str) -> Option<&'a str> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        let gw = rest.strip_prefix(kind)?.strip_prefix('.')?;
        (!gw.is_empty() && !gw.contains('.')).then_some(gw)
    }
    /// The decisions stream: `<PREFIX>_DECISIONS` (stream names take no dots).
    pub fn decision_stream(&self) -> String {
        format!("{}_DECISIONS", stream_token(&self.prefix))
    }
    pub fn alert_stream(&self) -> String {
        format!("{}_ALERTS", stream_token(&self.prefix))
    }
}

fn stream_token(prefix: &str) -> String {
    prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether `s` may be one token of a NATS subject (a gateway id, the prefix's parts).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
