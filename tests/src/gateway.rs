//! A routed gateway topology ([`Gateway`]): a benign client, an attacker and a server, each in
//! its own namespace, joined through a fourth namespace that forwards between them — the place
//! where an inline detector runs.
//!
//! ```text
//!   client  198.18.1.2 ──veth── 198.18.1.1 ┐
//!           2001:db8:1::2      2001:db8:1::1│
//!   attacker 198.18.2.2 ──veth── 198.18.2.1 ├ gw (forwarding) ── 198.18.3.1 ──veth── 198.18.3.2  server
//!           2001:db8:2::2      2001:db8:2::1┘                    2001:db8:3::1      2001:db8:3::2
//! ```
//!
//! - Each link is its own /24 and /64 (`198.18.<n>.0/24`, `2001:db8:<n>::/64`; n = 1 client,
//!   2 attacker, 3 server); the gateway end is `.1` / `::1`, the host end `.2` / `::2`.
//! - The veths are configured like [`crate::Pair`]'s (NOARP, no address generation, no DAD,
//!   router solicitations or RA, permanent neighbour entries), so nothing unsolicited crosses
//!   them. The gateway's veths also have `multicast off` *before* IPv6 forwarding is switched
//!   on, so the gateway joins no all-routers groups and sends no MLD reports.
//! - The end hosts route `198.18.0.0/15` and `2001:db8::/32` via their gateway end: nothing
//!   outside the lab's ranges is routable anywhere in the topology.
//! - The gateway forwards IPv4 and IPv6, sends no redirects, and has `rp_filter` off (as has
//!   the server), so spoofed sources pass. It routes the ranges [`crate::replay`] maps a
//!   capture's non-victim addresses into ([`SPOOFED_V4`], [`SPOOFED_V6`]) via the attacker,
//!   so the server's answers to spoofed packets end at the attacker's namespace (which does
//!   not forward and drops them) instead of leaving the lab or filling neighbour tables.
//! - Frames built by the lab's generators or replayed from captures are sent on the
//!   attacker's (or client's) interface with the gateway's MAC as destination and the server's
//!   address as destination IP: [`Gateway::to_server`] gives that endpoint.
//!
//! Dropping the [`Gateway`] deletes the four namespaces, which destroys the veths.
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};

use crate::netns::{lab_mac, new_veth_names, sanitize_tag, settle_ifaces, veth_link};
use crate::{Endpoint, Netns, Side};

/// Where [`crate::replay`] maps a capture's IPv4 addresses other than the victim.
pub const SPOOFED_V4: &str = "198.19.0.0/16";
/// Where [`crate::replay`] maps a capture's IPv6 addresses other than the victim.
pub const SPOOFED_V6: &str = "2001:db8:ffff::/48";

/// One link of the gateway: the end host's side and the gateway's side of its veth.
#[derive(Clone, Debug)]
pub struct Link {
    /// The end host's end (in the client, attacker or server namespace).
    pub host: Side,
    /// The gateway's end (in the gateway namespace).
    pub gw: Side,
}

/// Four namespaces: `client`, `attacker` and `server` routed through `gw` (see the module
/// documentation).
#[derive(Debug)]
pub struct Gateway {
    /// The router, where the system under test runs.
    pub gw: Netns,
    /// The benign client.
    pub client: Netns,
    /// The attacker (also where answers to spoofed sources end).
    pub attacker: Netns,
    /// The server the client talks to and the attacker attacks.
    pub server: Netns,
    /// client – gw (198.18.1.0/24, 2001:db8:1::/64).
    pub client_link: Link,
    /// attacker – gw (198.18.2.0/24, 2001:db8:2::/64).
    pub attacker_link: Link,
    /// server – gw (198.18.3.0/24, 2001:db8:3::/64).
    pub server_link: Link,
}

/// The two sides of link `n` (gateway end `.1`/`::1`, host end `.2`/`::2`).
pub(crate) fn link_sides(n: u8) -> Result<Link> {
    let (serial, iface_gw, iface_host) = new_veth_names()?;
    let side = |iface: String, last: u8, tag: u8| Side {
        iface,
        ep: Endpoint {
            mac: lab_mac(serial, tag),
            ipv4: Ipv4Addr::new(198, 18, n, last),
            ipv6: Ipv6Addr::new(0x2001, 0xdb8, u16::from(n), 0, 0, 0, 0, u16::from(last)),
        },
    };
    Ok(Link {
        gw: side(iface_gw, 1, 0x0a),
        host: side(iface_host, 2, 0x0b),
    })
}

impl Gateway {
    /// Creates the namespaces `nalab-<pid>-<n>-<tag>-{gw,cl,at,sv}`, the three veths and the
    /// routing described in the module documentation. Call [`Gateway::settle`] before
    /// attaching anything that counts packets.
    pub fn new(tag: &str) -> Result<Gateway> {
        let tag = sanitize_tag(tag);
        let gw = Netns::new(&format!("{tag}-gw"))?;
        let client = Netns::new(&format!("{tag}-cl"))?;
        let attacker = Netns::new(&format!("{tag}-at"))?;
        let server = Netns::new(&format!("{tag}-sv"))?;
        let client_link = link_sides(1)?;
        let attacker_link = link_sides(2)?;
        let server_link = link_sides(3)?;
        for (host, link) in [
            (&client, &client_link),
            (&attacker, &attacker_link),
            (&server, &server_link),
        ] {
            veth_link(&gw, &link.gw, host, &link.host, 24, 64)?;
            host.ip(&[
                "route",
                "add",
                "198.18.0.0/15",
                "via",
                &link.gw.ep.ipv4.to_string(),
                "dev",
                &link.host.iface,
            ])?;
            host.ip(&[
                "-6",
                "route",
                "add",
                "2001:db8::/32",
                "via",
                &link.gw.ep.ipv6.to_string(),
                "dev",
                &link.host.iface,
            ])?;
            // No all-routers groups (and so no MLD reports) once forwarding is on.
            gw.ip(&["link", "set", "dev", &link.gw.iface, "multicast", "off"])?;
        }
        let mut settings = vec![
            ("net.ipv4.ip_forward".to_owned(), "1"),
            ("net.ipv6.conf.all.forwarding".to_owned(), "1"),
        ];
        for scope in ["all", "default"] {
            settings.push((format!("net.ipv4.conf.{scope}.rp_filter"), "0"));
            settings.push((format!("net.ipv4.conf.{scope}.send_redirects"), "0"));
        }
        for link in [&client_link, &attacker_link, &server_link] {
            settings.push((format!("net.ipv4.conf.{}.rp_filter", link.gw.iface), "0"));
            settings.push((format!("net.ipv4.conf.{}.send_redirects", link.gw.iface), "0"));
        }
        gw.sysctls(settings.iter().map(|(k, v)| (k.as_str(), *v)))
            .context("gateway sysctls")?;
        server.sysctls([
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ])?;
        let sv = server_link.host.iface.as_str();
        server.sysctls([(format!("net.ipv4.conf.{sv}.rp_filter").as_str(), "0")])?;
        // Answers to the replay's spoofed sources go back to the attacker's namespace.
        let at = &attacker_link;
        gw.ip(&[
            "route",
            "add",
            SPOOFED_V4,
            "via",
            &at.host.ep.ipv4.to_string(),
            "dev",
            &at.gw.iface,
        ])?;
        gw.ip(&[
            "-6",
            "route",
            "add",
            SPOOFED_V6,
            "via",
            &at.host.ep.ipv6.to_string(),
            "dev",
            &at.gw.iface,
        ])?;
        Ok(Gateway {
            gw,
            client,
            attacker,
            server,
            client_link,
            attacker_link,
            server_link,
        })
    }

    /// Makes the lab a one-way mirror for replays: the gateway discards what goes to the
    /// server (so nothing is answered) and to the replay's spoofed ranges (so a frame between
    /// two replayed addresses is not forwarded back out past the agent). Every frame the attacker sends then crosses the gateway's agent exactly once,
    /// as it is in the capture.
    pub fn silence(&self) -> Result<()> {
        let sv = &self.server_link.host.ep;
        // Blackhole routes discard without an ICMP error; the agent has seen the frame at
        // the attacker link's ingress by then.
        for (v6, prefix) in [
            (false, format!("{}/32", sv.ipv4)),
            (true, format!("{}/128", sv.ipv6)),
            (false, SPOOFED_V4.to_owned()),
            (true, SPOOFED_V6.to_owned()),
        ] {
            let mut args = if v6 { vec!["-6"] } else { vec![] };
            args.extend(["route", "replace", "blackhole", prefix.as_str()]);
            self.gw.ip(&args)?;
        }
        Ok(())
    }

    /// Waits until all six veth ends have been quiet for 200 ms (bounded by 3 s).
    pub fn settle(&self) -> Result<()> {
        let mut ifaces = Vec::new();
        for (host, link) in self.hosts() {
            ifaces.push((&self.gw, link.gw.iface.as_str()));
            ifaces.push((host, link.host.iface.as_str()));
        }
        settle_ifaces(&ifaces)
    }

    fn hosts(&self) -> [(&Netns, &Link); 3] {
        [
            (&self.client, &self.client_link),
            (&self.attacker, &self.attacker_link),
            (&self.server, &self.server_link),
        ]
    }

    /// The destination endpoint for frames sent on `from`'s host interface to the server:
    /// the gateway's MAC on that link, the server's addresses.
    pub fn to_server(&self, from: &Link) -> Endpoint {
        Endpoint {
            mac: from.gw.ep.mac,
            ..self.server_link.host.ep
        }
    }

    /// An extra source address on the attacker's link (`198.18.2.<last>`,
    /// `2001:db8:2::<last>` with `<last>` in decimal digits, so 68 gives 2001:db8:2::68), with the attacker's MAC, for frames the attacker sends as a
    /// distinct host. The gateway gets permanent neighbour entries for it, so the server's
    /// answers reach the attacker's namespace (which drops them).
    pub fn attacker_alias(&self, last: u8) -> Result<Endpoint> {
        let link = &self.attacker_link;
        let ep = Endpoint {
            ipv4: Ipv4Addr::new(198, 18, 2, last),
            // Written in decimal, like the IPv4 alias: 2001:db8:2::68 for 68.
            ipv6: format!("2001:db8:2::{last}").parse().context("alias address")?,
            ..link.host.ep
        };
        let lladdr = crate::netns::mac_string(&ep.mac);
        for addr in [ep.ipv4.to_string(), ep.ipv6.to_string()] {
            self.gw.ip(&[
                "neigh",
                "replace",
                &addr,
                "lladdr",
                &lladdr,
                "dev",
                &link.gw.iface,
                "nud",
                "permanent",
            ])?;
        }
        Ok(ep)
    }
}
