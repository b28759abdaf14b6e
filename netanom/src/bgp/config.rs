//! `[bgp]`: announcing blocks and rate limits upstream through a BGP speaker (GoBGP).
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::route::Community;
use crate::respond::Mode;

/// What a FlowSpec rule for a rate-limited pattern asks the routers to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowSpecAction {
    /// traffic-rate at `mitigation.rate_limit_pps` × `bgp.flowspec_packet_bytes` bytes/s.
    #[default]
    Rate,
    /// traffic-rate 0: drop the pattern's packets entirely.
    Discard,
}

/// `[bgp]`: off by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BgpConfig {
    pub enabled: bool,
    /// GoBGP's gRPC API (`gobgpd --api-hosts`).
    #[serde(with = "crate::sinks::metrics::config::socket_addr")]
    pub speaker: SocketAddr,
    /// Announce blocks as blackhole routes (RTBH).
    pub blackhole: bool,
    /// Prefix length announced around a blocked source: a narrower block is widened to it.
    pub blackhole_prefix_v4: u8,
    pub blackhole_prefix_v6: u8,
    /// Next hop of the blackhole routes: the address the routers send to their discard
    /// interface.
    pub next_hop_v4: Ipv4Addr,
    pub next_hop_v6: Ipv6Addr,
    /// Communities on every route, besides BLACKHOLE (65535:666) on blackhole routes.
    pub communities: Vec<Community>,
    /// Announce rate limits as FlowSpec rules.
    pub flowspec: bool,
    pub flowspec_action: FlowSpecAction,
    /// Bytes per packet in the traffic-rate: `rate_limit_pps` × this bytes/s.
    pub flowspec_packet_bytes: u32,
    /// Cap on announced routes (both kinds); a decision beyond it trips the circuit breaker.
    pub max_routes: u32,
    /// The widest prefix ever announced (the shortest length).
    pub widest_prefix_v4: u8,
    pub widest_prefix_v6: u8,
}

impl Default for BgpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            speaker: SocketAddr::from(([127, 0, 0, 1], 50051)),
            blackhole: true,
            blackhole_prefix_v4: 32,
            blackhole_prefix_v6: 128,
            // The customary RTBH discard next hops: TEST-NET-1 (RFC 5737) and the IPv6
            // discard-only prefix (RFC 6666), which routers point at a null interface.
            next_hop_v4: Ipv4Addr::new(192, 0, 2, 1),
            next_hop_v6: Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 1),
            communities: Vec::new(),
            flowspec: true,
            flowspec_action: FlowSpecAction::Rate,
            // A full-size frame: the routers never limit harder than the local rate limit.
            flowspec_packet_bytes: 1500,
            max_routes: 1000,
            widest_prefix_v4: 24,
            widest_prefix_v6: 48,
        }
    }
}

impl BgpConfig {
    /// The prefix length announced around a blocked source of this family.
    pub fn blackhole_prefix(&self, v4: bool) -> u8 {
        if v4 {
            self.blackhole_prefix_v4
        } else {
            self.blackhole_prefix_v6
        }
    }

    /// The widest prefix announced for this family.
    pub fn widest_prefix(&self, v4: bool) -> u8 {
        if v4 {
            self.widest_prefix_v4
        } else {
            self.widest_prefix_v6
        }
    }
}

impl BgpConfig {
    /// What is announced, and through what (logged at start-up).
    pub fn describe(&self, mode: Mode) -> String {
        let communities: Vec<String> = self.communities.iter().map(Community::to_string).collect();
        let blackhole = if self.blackhole {
            format!(
                "blocks as blackhole routes (/{} and /{} at most, next hop {} / {}, communities \
                 65535:666 {})",
                self.blackhole_prefix_v4,
                self.blackhole_prefix_v6,
                self.next_hop_v4,
                self.next_hop_v6,
                communities.join(" ")
            )
        } else {
            "no blackhole routes".into()
        };
        let flowspec = match (self.flowspec, self.flowspec_action) {
            (false, _) => "no FlowSpec rules".into(),
            (true, FlowSpecAction::Discard) => "rate limits as FlowSpec rules (discard)".into(),
            (true, FlowSpecAction::Rate) => format!(
                "rate limits as FlowSpec rules (traffic-rate: the limit's packets/s × {} bytes)",
                self.flowspec_packet_bytes
            ),
        };
        let observe = match mode {
            Mode::Observe => "; observe mode: nothing is announced",
            Mode::Mitigate => "",
        };
        format!(
            "announcing {blackhole} and {flowspec} through GoBGP at {}, at most {} routes{observe}",
            self.speaker, self.max_routes
        )
    }
}
