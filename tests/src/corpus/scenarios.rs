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
//! This table is the one definition: the recorder runs it, and writes the manifest entries
//! from it (so the manifest's command lines are the ones that ran).
use super::manifest::{Expected, Label};

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

const ATTACKER: &[&str] = &[ATTACKER_V4];
const SERVER: &[&str] = &[SERVER_V4];
const CLIENT: &[&str] = &[CLIENT_V4];

/// An attack from the attacker on the server, beside the benign IPv4 client.
const fn attack(
    name: &'static str,
    tool: &'static str,
    expected: Expected,
    steps: &'static [Step],
    description: &'static str,
) -> Scenario {
    Scenario {
        name,
        label: Label::Attack,
        tool,
        expected,
        attackers: ATTACKER,
        victims: SERVER,
        innocents: CLIENT,
        background: Background::V4,
        icmp_unlimited: false,
        steps,
        description,
    }
}

const fn run(argv: &'static [&'static str], timeout_s: u64) -> Step {
    Step::Run {
        host: Host::Attacker,
        argv,
        timeout_s,
    }
}

const fn benign(
    name: &'static str,
    tool: &'static str,
    innocents: &'static [&'static str],
    steps: &'static [Step],
    description: &'static str,
) -> Scenario {
    Scenario {
        name,
        label: Label::Benign,
        tool,
        expected: Expected::None,
        attackers: &[],
        victims: &[],
        innocents,
        background: Background::None,
        icmp_unlimited: false,
        steps,
        description,
    }
}

/// The client's apt-style session: the release file, the package index, then packages, over
/// one kept-alive connection, as `apt-get update && apt-get install` fetches them.
const APT_V4: &[&str] = &[
    "curl",
    "-s",
    "-A",
    "Debian APT-HTTP/1.3 (2.6.1)",
    "-o",
    "/dev/null",
    "http://198.18.3.2/debian/dists/bookworm/InRelease",
    "-o",
    "/dev/null",
    "http://198.18.3.2/debian/dists/bookworm/main/binary-amd64/Packages.xz",
    "-o",
    "/dev/null",
    "http://198.18.3.2/debian/pool/main/libfoo1_1.2-1_amd64.deb",
    "-o",
    "/dev/null",
    "http://198.18.3.2/debian/pool/main/foo-utils_1.2-1_amd64.deb",
];
const APT_V6: &[&str] = &[
    "curl",
    "-s",
    "-g",
    "-A",
    "Debian APT-HTTP/1.3 (2.6.1)",
    "-o",
    "/dev/null",
    "http://[2001:db8:3::2]/debian/dists/bookworm/InRelease",
    "-o",
    "/dev/null",
    "http://[2001:db8:3::2]/debian/dists/bookworm/main/binary-amd64/Packages.xz",
    "-o",
    "/dev/null",
    "http://[2001:db8:3::2]/debian/pool/main/libfoo1_1.2-1_amd64.deb",
];
const SSH_ARGS_V4: &[&str] = &[
    "ssh",
    "-tt",
    "-i",
    "id_lab",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "root@198.18.3.2",
];
const SSH_ARGS_V6: &[&str] = &[
    "ssh",
    "-tt",
    "-i",
    "id_lab",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "root@2001:db8:3::2",
];
const SSH_LINES: &[&str] = &[
    "uptime",
    "ls -l /etc/ssh",
    "df -h /",
    "ps -o pid,comm",
    "cat /etc/os-release",
    "exit",
];
const DIG_V4: &[&[&str]] = &[
    &["dig", "@198.18.3.2", "+tries=1", "www.lab.example", "A"],
    &["dig", "@198.18.3.2", "+tries=1", "mirror.lab.example", "AAAA"],
    &["dig", "@198.18.3.2", "+tries=1", "lab.example", "MX"],
    &["dig", "@198.18.3.2", "+tries=1", "lab.example", "TXT"],
    &["dig", "@198.18.3.2", "+tries=1", "missing.lab.example", "A"],
    &["dig", "@198.18.3.2", "+tries=1", "-x", "198.18.3.2"],
];
const DIG_V6: &[&[&str]] = &[
    &["dig", "@2001:db8:3::2", "+tries=1", "www.lab.example", "AAAA"],
    &["dig", "@2001:db8:3::2", "+tries=1", "mirror.lab.example", "A"],
    &["dig", "@2001:db8:3::2", "+tries=1", "lab.example", "MX"],
];
const BEACON: &[&[&str]] = &[&["curl", "-sk", "-o", "/dev/null", "https://198.18.3.66/beacon"]];

const fn beacon(jitter_ms: u64) -> [Step; 1] {
    [Step::Repeat {
        host: Host::Attacker,
        argvs: BEACON,
        count: 24,
        period_ms: 5000,
        jitter_ms,
    }]
}

const fn beacon_scenario(name: &'static str, steps: &'static [Step], description: &'static str) -> Scenario {
    Scenario {
        attackers: &[ATTACKER_V4, C2],
        victims: &[],
        ..attack(name, "curl", Expected::AlertOnly, steps, description)
    }
}

/// Every recorded scenario, in the manifest's order.
pub const SCENARIOS: &[Scenario] = &[
    attack(
        "nmap-syn-scan",
        "nmap",
        Expected::BlockSource,
        &[run(&["nmap", "-sS", "-T4", "-p", "1-1000", "198.18.3.2"], 120)],
        "TCP SYN scan of 1,000 ports of the server from the attacker, beside the benign client.",
    ),
    attack(
        "nmap-connect-scan",
        "nmap",
        Expected::BlockSource,
        &[run(&["nmap", "-sT", "-T4", "-p", "1-1000", "198.18.3.2"], 120)],
        "TCP connect scan (full handshakes to open ports) of 1,000 ports, beside the benign client.",
    ),
    Scenario {
        icmp_unlimited: true,
        ..attack(
            "nmap-udp-scan",
            "nmap",
            Expected::BlockSource,
            &[run(
                &["nmap", "-sU", "-T4", "--top-ports", "100", "198.18.3.2"],
                180,
            )],
            "UDP scan of the 100 most common ports (the server's port-unreachable errors unlimited, \
             so it takes seconds), beside the benign client.",
        )
    },
    attack(
        "nmap-aggressive",
        "nmap",
        Expected::BlockSource,
        &[run(&["nmap", "-A", "-T4", "198.18.3.2"], 300)],
        "nmap -A: SYN scan of the top 1,000 ports, service and version probes of sshd, vsftpd, \
         HTTP and DNS, OS detection, default scripts and traceroute, beside the benign client.",
    ),
    Scenario {
        victims: &["198.18.3.0/24"],
        ..attack(
            "nmap-ping-sweep",
            "nmap",
            Expected::BlockSource,
            &[run(&["nmap", "-sn", "-T4", "198.18.3.0/24"], 180)],
            "Host discovery over the server's /24 (ICMP echo and timestamp, TCP SYN to 443, ACK \
             to 80 for each address), where five addresses answer, beside the benign client.",
        )
    },
    attack(
        "nmap-slow-scan",
        "nmap",
        Expected::BlockSource,
        &[run(
            &["nmap", "-sS", "-T2", "--top-ports", "100", "198.18.3.2"],
            300,
        )],
        "Polite (-T2) SYN scan of the 100 most common ports: one probe every 0.4 s, under any \
         rate threshold, beside the benign client.",
    ),
    Scenario {
        attackers: &[ATTACKER_V6],
        victims: &[SERVER_V6],
        innocents: &[CLIENT_V6],
        background: Background::V6,
        ..attack(
            "nmap-ipv6-syn-scan",
            "nmap",
            Expected::BlockSource,
            &[run(
                &["nmap", "-6", "-sS", "-T4", "-p", "1-1000", "2001:db8:3::2"],
                120,
            )],
            "IPv6 TCP SYN scan of 1,000 ports, beside the benign client browsing and resolving \
             over IPv6.",
        )
    },
    attack(
        "hydra-ssh",
        "hydra",
        Expected::BlockSource,
        &[run(
            &[
                "hydra",
                "-I",
                "-l",
                "admin",
                "-P",
                "words.txt",
                "-t",
                "4",
                "ssh://198.18.3.2",
            ],
            300,
        )],
        "Password guessing against the server's real OpenSSH with a 50-word list (4 parallel \
         connections), beside the benign client.",
    ),
    attack(
        "hydra-ftp",
        "hydra",
        Expected::BlockSource,
        &[run(
            &[
                "hydra",
                "-I",
                "-l",
                "admin",
                "-P",
                "words.txt",
                "-t",
                "4",
                "ftp://198.18.3.2",
            ],
            300,
        )],
        "Password guessing against the server's real vsftpd with a 50-word list (4 parallel \
         connections), beside the benign client.",
    ),
    attack(
        "hping3-syn-flood",
        "hping3",
        Expected::BlockSource,
        &[run(
            &[
                "hping3",
                "-q",
                "-S",
                "-p",
                "80",
                "-c",
                "2400",
                "-i",
                "u200",
                "198.18.3.2",
            ],
            60,
        )],
        "SYN flood of 2,400 packets at about 4,000 a second from one source to the server's open HTTP port, beside \
         the benign client.",
    ),
    Scenario {
        attackers: &[],
        ..attack(
            "hping3-spoofed-syn-flood",
            "hping3",
            Expected::VictimRateLimit,
            &[
                Step::SpoofInto { prefix: SPOOFED },
                run(
                    &[
                        "hping3",
                        "-q",
                        "-S",
                        "-p",
                        "80",
                        "--rand-source",
                        "-c",
                        "2400",
                        "-i",
                        "u200",
                        "198.18.3.2",
                    ],
                    60,
                ),
            ],
            "SYN flood of 2,400 packets at about 4,000 a second from random sources (rewritten into 198.19.0.0/16) to \
             the server's HTTP port: no source to block, a victim to protect, beside the benign \
             client.",
        )
    },
    attack(
        "hping3-udp-flood",
        "hping3",
        Expected::BlockSource,
        &[run(
            &[
                "hping3",
                "-q",
                "--udp",
                "-p",
                "9999",
                "-d",
                "64",
                "-c",
                "2400",
                "-i",
                "u200",
                "198.18.3.2",
            ],
            60,
        )],
        "UDP flood of 2,400 packets at about 4,000 a second from one source to a closed port of the server, beside \
         the benign client.",
    ),
    beacon_scenario(
        "beacon-https-periodic",
        &beacon(0),
        "An implant on the attacker's host polls its command-and-control server over HTTPS \
         (curl) every 5 s, 24 times, beside the benign client.",
    ),
    beacon_scenario(
        "beacon-https-jittered",
        &beacon(2500),
        "The same beacon with ±2.5 s of random jitter per poll, beside the benign client.",
    ),
    benign(
        "benign-apt-downloads",
        "curl",
        &[CLIENT_V4, SERVER_V4],
        &[Step::Repeat {
            host: Host::Client,
            argvs: &[APT_V4],
            count: 4,
            period_ms: 15_000,
            jitter_ms: 3000,
        }],
        "Four apt-style sessions (release file, package index, two packages of 0.3 and 1 MB \
         over one connection) from the client to the server's HTTP mirror.",
    ),
    benign(
        "benign-ssh-interactive",
        "openssh-client",
        &[CLIENT_V4, SERVER_V4],
        &[Step::Typed {
            host: Host::Client,
            argv: SSH_ARGS_V4,
            lines: SSH_LINES,
        }],
        "An interactive SSH session from the client to the server, typed at human speed.",
    ),
    benign(
        "benign-dns",
        "bind9-dnsutils",
        &[CLIENT_V4, SERVER_V4],
        &[Step::Repeat {
            host: Host::Client,
            argvs: DIG_V4,
            count: 90,
            period_ms: 500,
            jitter_ms: 400,
        }],
        "DNS lookups (A, AAAA, MX, TXT, PTR, a missing name) with dig from the client to the \
         server's dnsmasq.",
    ),
    benign(
        "benign-ipv6-mix",
        "curl",
        &[CLIENT_V6, SERVER_V6],
        &[
            Step::Repeat {
                host: Host::Client,
                argvs: DIG_V6,
                count: 6,
                period_ms: 1000,
                jitter_ms: 500,
            },
            Step::Run {
                host: Host::Client,
                argv: APT_V6,
                timeout_s: 60,
            },
            Step::Typed {
                host: Host::Client,
                argv: SSH_ARGS_V6,
                lines: SSH_LINES,
            },
        ],
        "The client over IPv6 only: DNS lookups, an apt-style download, an interactive SSH \
         session.",
    ),
    Scenario {
        background: Background::V4,
        ..benign(
            "benign-mix",
            "curl",
            &[CLIENT_V4, SERVER_V4],
            &[
                Step::Run {
                    host: Host::Client,
                    argv: APT_V4,
                    timeout_s: 60,
                },
                Step::Sleep { ms: 30_000 },
                Step::Typed {
                    host: Host::Client,
                    argv: SSH_ARGS_V4,
                    lines: SSH_LINES,
                },
                Step::Sleep { ms: 60_000 },
                Step::Run {
                    host: Host::Client,
                    argv: APT_V4,
                    timeout_s: 60,
                },
                Step::Sleep { ms: 30_000 },
            ],
            "Three minutes of an ordinary client: web pages and DNS lookups all along, two apt \
             sessions and an SSH session.",
        )
    },
];

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}
