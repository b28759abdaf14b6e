//! The recording lab: a [`Gateway`] whose server namespace has the scenario table's extra
//! addresses, whose links carry wire-sized frames, and whose hosts the scenario's steps run on.
use anyhow::{Context, Result, bail};

use crate::{
    Gateway, Netns,
    corpus::scenarios::{ATTACKER_V4, C2, CLIENT_V4, Host, SERVER_V4, SWEEP_HOSTS, Scenario},
    netns::mac_string,
};

/// A gateway lab set up for one scenario; dropping it deletes the namespaces.
pub struct RecordLab {
    /// The client, attacker and server around the gateway.
    pub net: Gateway,
}

impl RecordLab {
    /// Creates the lab for `s` and waits until its links are quiet.
    pub fn new(s: &Scenario) -> Result<RecordLab> {
        let net = Gateway::new(&format!("rec-{}", s.name))?;
        let lab = RecordLab { net };
        lab.check_addresses()?;
        for last in SWEEP_HOSTS {
            lab.server_alias(&format!("198.18.3.{last}"))?;
        }
        lab.server_alias(C2)?;
        lab.no_segmentation_offload()?;
        if s.icmp_unlimited {
            lab.net
                .server
                .sysctls([("net.ipv4.icmp_ratelimit", "0"), ("net.ipv6.icmp.ratelimit", "0")])?;
        }
        lab.net.settle()?;
        Ok(lab)
    }

    /// The namespace a step runs in.
    pub fn ns(&self, host: Host) -> &Netns {
        match host {
            Host::Client => &self.net.client,
            Host::Attacker => &self.net.attacker,
        }
    }

    /// The gateway's end of the server link: the capture point.
    pub fn capture_iface(&self) -> &str {
        &self.net.server_link.gw.iface
    }

    /// The scenario table's addresses are the gateway's.
    fn check_addresses(&self) -> Result<()> {
        let n = &self.net;
        let have = [
            n.client_link.host.ep.ipv4.to_string(),
            n.attacker_link.host.ep.ipv4.to_string(),
            n.server_link.host.ep.ipv4.to_string(),
        ];
        if have != [CLIENT_V4, ATTACKER_V4, SERVER_V4] {
            bail!(
                "the gateway's addresses {have:?} are not the scenario table's; update corpus/scenarios.rs"
            );
        }
        Ok(())
    }

    /// One more address of the server namespace in its /24, with the gateway's permanent
    /// neighbour entry for it (the links do no ARP).
    fn server_alias(&self, ip: &str) -> Result<()> {
        let link = &self.net.server_link;
        self.net
            .server
            .ip(&["addr", "add", &format!("{ip}/24"), "dev", &link.host.iface])?;
        let mac = mac_string(&link.host.ep.mac);
        self.net.gw.ip(&[
            "neigh",
            "replace",
            ip,
            "lladdr",
            &mac,
            "dev",
            &link.gw.iface,
            "nud",
            "permanent",
        ])?;
        Ok(())
    }

    /// One segment per packet everywhere: without this the veths carry the TCP stack's
    /// 64 KB super-packets (TSO/GSO), which no real wire does, and the capture would show
    /// them.
    fn no_segmentation_offload(&self) -> Result<()> {
        let n = &self.net;
        for (host, link) in [
            (&n.client, &n.client_link),
            (&n.attacker, &n.attacker_link),
            (&n.server, &n.server_link),
        ] {
            for (ns, iface) in [(host, &link.host.iface), (&n.gw, &link.gw.iface)] {
                ns.ip(&["link", "set", "dev", iface, "gso_max_segs", "1"])
                    .with_context(|| format!("turning segmentation offload off on {iface}"))?;
            }
        }
        Ok(())
    }
}
