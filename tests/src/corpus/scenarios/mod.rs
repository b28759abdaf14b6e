//! The recorded scenarios: what runs where, and how each capture is labelled.
//!
//! Every scenario runs in a fresh [`crate::Gateway`]: the benign client `198.18.1.2` /
//! `2001:db8:1::2`, the attacker `198.18.2.2` / `2001:db8:2::2` and the server `198.18.3.2` /
//! `2001:db8:3::2`, with the server's extra live addresses [`SWEEP_HOSTS`] (for the ping
//! sweep) and the C2 address [`C2`] (for the beacons). The server namespace runs sshd
//! (22), vsftpd (21), an HTTP package mirror (80), dnsmasq (53) and, at the C2 address, an
//! HTTPS server (443). Commands run with the scenario's scratch directory as their working
//! directory (`words.txt`, `id_lab`).
//!
//! The table ([`SCENARIOS`], in `table.rs`) is the one definition: the recorder runs it, and
//! writes the manifest entries from it (so the manifest's command lines are the ones that
//! ran). nmap runs with `-n`: the lab has no resolver for the target's reverse name, and
//! waiting for one would put seconds of nothing between the attack's first probe and the scan.
use super::manifest::{Expected, Label};

#[rustfmt::skip]
mod table;

pub use table::SCENARIOS;

/// The benign client.
pub const CLIENT_V4: &str = "198.18.1.2";
/// The benign client, IPv6.
pub const CLIENT_V6: &str = "2001:db8:1::2";
/// The attacker.
pub const ATTACKER_V4: &str = "198.18.2.2";
/// The attacker, IPv6.
pub const ATTACKER_V6: &str = "2001:db8:2::2";
/// The server.
pub const SERVER_V4: &str = "198.18.3.2";
/// The server, IPv6.
pub const SERVER_V6: &str = "2001:db8:3::2";
/// More live hosts in the server's /24, so a ping sweep finds several.
pub const SWEEP_HOSTS: [u8; 3] = [10, 20, 30];
/// The beacons' command-and-control server, an extra address of the server namespace.
pub const C2: &str = "198.18.3.66";
/// Where the spoofed flood's sources are rewritten to (the gateway routes it back to the
/// attacker's namespace, which drops the answers).
pub const SPOOFED: &str = crate::gateway::SPOOFED_V4;

/// Where a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// The benign client's namespace.
    Client,
    /// The attacker's namespace.
    Attacker,
}

/// One step of a scenario. Every step names the [`Host`] it runs on.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// A command, waited for (killed, and the scenario failed, after `timeout_s`).
    Run {
        /// Where it runs.
        host: Host,
        /// The program and its arguments.
        argv: &'static [&'static str],
        /// The longest it may take.
        timeout_s: u64,
    },
    /// `count` runs, started `period_ms` apart, each start moved by up to ±`jitter_ms`
    /// (deterministic per scenario).
    Repeat {
        /// Where they run.
        host: Host,
        /// The commands, used in turn.
        argvs: &'static [&'static [&'static str]],
        /// How many runs.
        count: u32,
        /// From one start to the next.
        period_ms: u64,
        /// Random shift of each start, at most this either way.
        jitter_ms: u64,
    },
    /// An interactive session: `lines` typed into the command's terminal at human speed.
    Typed {
        /// Where it runs.
        host: Host,
        /// The client program and its arguments.
        argv: &'static [&'static str],
        /// What is typed, line by line.
        lines: &'static [&'static str],
    },
    /// Rewrite the attacker's source addresses into `prefix` (nftables, in the attacker's
    /// namespace; anything else leaving it is dropped), for tools that pick random sources.
    SpoofInto {
        /// An IPv4 prefix inside the lab's range.
        prefix: &'static str,
    },
    /// Nothing for a while.
    Sleep {
        /// How long.
        ms: u64,
    },
}

/// Benign traffic from the client beside the scenario's steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Background {
    /// No background traffic.
    None,
    /// Web pages and DNS lookups over IPv4.
    V4,
    /// The same over IPv6.
    V6,
}

/// A recorded scenario.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Also the capture's file name (`NAME.pcap`) and its manifest scenario.
    pub name: &'static str,
    /// Benign or attack.
    pub label: Label,
    /// The Debian package of the tool that makes the traffic.
    pub tool: &'static str,
    /// What the detector should do about it.
    pub expected: Expected,
    /// The manifest's attackers (addresses or prefixes).
    pub attackers: &'static [&'static str],
    /// The manifest's victims.
    pub victims: &'static [&'static str],
    /// The manifest's innocents.
    pub innocents: &'static [&'static str],
    /// The benign client's traffic beside the steps.
    pub background: Background,
    /// Server ICMP errors unlimited (Linux sends one a second by default, which makes a UDP
    /// scan take minutes).
    pub icmp_unlimited: bool,
    /// What runs, in order, after the lead-in.
    pub steps: &'static [Step],
    /// The manifest's description.
    pub description: &'static str,
}

impl Scenario {
    /// The capture's file name in the corpus directory.
    pub fn file(&self) -> String {
        format!("{}.pcap", self.name)
    }

    /// The command lines, as the manifest shows them.
    pub fn command(&self) -> String {
        self.steps
            .iter()
            .filter_map(step_command)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn step_command(s: &Step) -> Option<String> {
    Some(match s {
        Step::Run { argv, .. } => argv.join(" "),
        Step::Repeat {
            argvs,
            count,
            period_ms,
            jitter_ms,
            ..
        } => {
            let every = if *jitter_ms > 0 {
                format!("every {} s ± {} s", secs(*period_ms), secs(*jitter_ms))
            } else {
                format!("every {} s", secs(*period_ms))
            };
            let cmds: Vec<String> = argvs.iter().map(|a| a.join(" ")).collect();
            format!("{count} times, {every}: {}", cmds.join(" | "))
        }
        Step::Typed { argv, lines, .. } => format!("{} (typed: {})", argv.join(" "), lines.join("; ")),
        Step::SpoofInto { prefix } => format!("nft: attacker's source addresses rewritten into {prefix}"),
        Step::Sleep { .. } => return None,
    })
}

fn secs(ms: u64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}
