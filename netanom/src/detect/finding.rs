//! What detection concludes: a finding about a source (an offender) or a destination (a
//! victim), with the evidence that an alert shows.
use std::net::IpAddr;

use super::kind::Kind;

/// At most this many of a flow's most unusual features are kept as evidence.
pub const MAX_TOP_FEATURES: usize = 5;

/// A 5-tuple and what the models said about one flow.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowEvidence {
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub proto: u8,
    /// (model name, score, threshold in force), ensemble last.
    pub scores: Vec<(String, f64, f64)>,
    /// (feature, value, contribution): the most unusual features of the flow.
    pub top_features: Vec<(String, f64, f64)>,
}

/// What detection concluded about one entity.
#[derive(Clone, Debug, PartialEq)]
pub enum Subject {
    /// A source address (an offender).
    Source(IpAddr),
    /// A destination service under a flood; `tcp_flags` is the flood's pattern (SYN for a SYN
    /// flood, 0 when unknown or not TCP).
    Victim {
        dst: IpAddr,
        port: u16,
        proto: u8,
        tcp_flags: u8,
        /// Whether the pattern is specific enough to rate-limit.
        limitable: bool,
    },
    /// A channel: `inside` opens flows to `peer`'s `port` (a beacon's infected host and its
    /// controller). `block_peer`: `detection.block_beacon_peers`, the peer is to be blocked
    /// as a source.
    Channel {
        inside: IpAddr,
        peer: IpAddr,
        port: u16,
        proto: u8,
        block_peer: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub subject: Subject,
    /// One line for people.
    pub reason: String,
    /// Aggregate rates of the entity (name → value), and the thresholds that applied.
    pub rates: Vec<(String, f64, f64)>,
    /// For flow-based findings: the most anomalous flow.
    pub flow: Option<FlowEvidence>,
}
