//! What the agent launcher and the control helpers need of a lab topology, so that one set of
//! helpers serves both [`crate::Pair`] and [`crate::Gateway`].
use std::net::IpAddr;

use crate::{Gateway, Netns, Pair};

/// A topology with a place for the agent under test.
pub trait Topology {
    /// The namespace the agent runs in.
    fn agent_ns(&self) -> &Netns;
    /// The interfaces the agent attaches to (inside [`Topology::agent_ns`]).
    fn agent_ifaces(&self) -> Vec<&str>;
    /// Hosts that must never be blocked, whatever the test sends.
    fn innocents(&self) -> Vec<IpAddr>;
}

/// The agent watches `a`'s end of the veth; `b` is the traffic source.
impl Topology for Pair {
    fn agent_ns(&self) -> &Netns {
        &self.a
    }
    fn agent_ifaces(&self) -> Vec<&str> {
        vec![self.a_side.iface.as_str()]
    }
    fn innocents(&self) -> Vec<IpAddr> {
        Vec::new()
    }
}

/// The agent runs on the gateway, attached to its outside-facing links (client and
/// attacker); the client and the server are innocent.
impl Topology for Gateway {
    fn agent_ns(&self) -> &Netns {
        &self.gw
    }
    fn agent_ifaces(&self) -> Vec<&str> {
        vec![
            self.client_link.gw.iface.as_str(),
            self.attacker_link.gw.iface.as_str(),
        ]
    }
    fn innocents(&self) -> Vec<IpAddr> {
        let (c, s) = (&self.client_link.host.ep, &self.server_link.host.ep);
        vec![
            IpAddr::V4(c.ipv4),
            IpAddr::V6(c.ipv6),
            IpAddr::V4(s.ipv4),
            IpAddr::V6(s.ipv6),
        ]
    }
}
