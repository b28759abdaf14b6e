//! `[metrics]`: the Prometheus endpoint.
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Served at `http://ADDR/metrics`.
    #[serde(with = "socket_addr")]
    pub addr: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 9754)),
        }
    }
}

/// `SocketAddr` as `"ADDRESS:PORT"`, with the CLI's error message (also `bgp.speaker`).
pub(crate) mod socket_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "`{s}` is not ADDRESS:PORT (for example 127.0.0.1:9754, 0.0.0.0:9754 or \
                 [::1]:9754)"
            ))
        })
    }
}
