//! The scenario table (kept as a table: one line per command, not formatted by rustfmt).
use super::{
    ATTACKER_V4, ATTACKER_V6, Background, C2, CLIENT_V4, CLIENT_V6, Host, SERVER_V4, SERVER_V6, SPOOFED, Scenario,
    Step,
};
use crate::corpus::manifest::{Expected, Label};

const ATTACKER: &[&str] = &[ATTACKER_V4];
const SERVER: &[&str] = &[SERVER_V4];
const CLIENT: &[&str] = &[CLIENT_V4];

/// An attack from the attacker on the server, beside the benign IPv4 client.
const fn attack(name: &'static str, tool: &'static str, expected: Expected, steps: &'static [Step], description: &'static str) -> Scenario {
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

/// The client alone; every host is innocent.
const fn benign(name: &'static str, tool: &'static str, innocents: &'static [&'static str], steps: &'static [Step], description: &'static str) -> Scenario {
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

/// A command on the attacker's host.
const fn run(argv: &'static [&'static str], timeout_s: u64) -> Step {
    Step::Run { host: Host::Attacker, argv, timeout_s }
}

/// A command on the client's host.
const fn on_client(argv: &'static [&'static str], timeout_s: u64) -> Step {
    Step::Run { host: Host::Client, argv, timeout_s }
}

/// The client's apt-style session: the release file, the package index, then packages, over
/// one kept-alive connection, as `apt-get update && apt-get install` fetches them.
const APT_V4: &[&str] = &[
    "curl", "-s", "-A", "Debian APT-HTTP/1.3 (2.6.1)",
    "-o", "/dev/null", "http://198.18.3.2/debian/dists/bookworm/InRelease",
    "-o", "/dev/null", "http://198.18.3.2/debian/dists/bookworm/main/binary-amd64/Packages.xz",
    "-o", "/dev/null", "http://198.18.3.2/debian/pool/main/libfoo1_1.2-1_amd64.deb",
    "-o", "/dev/null", "http://198.18.3.2/debian/pool/main/foo-utils_1.2-1_amd64.deb",
];
const APT_V6: &[&str] = &[
    "curl", "-s", "-g", "-A", "Debian APT-HTTP/1.3 (2.6.1)",
    "-o", "/dev/null", "http://[2001:db8:3::2]/debian/dists/bookworm/InRelease",
    "-o", "/dev/null", "http://[2001:db8:3::2]/debian/dists/bookworm/main/binary-amd64/Packages.xz",
    "-o", "/dev/null", "http://[2001:db8:3::2]/debian/pool/main/libfoo1_1.2-1_amd64.deb",
];
const SSH_V4: &[&str] = &["ssh", "-tt", "-i", "id_lab", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@198.18.3.2"];
const SSH_V6: &[&str] = &["ssh", "-tt", "-i", "id_lab", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@2001:db8:3::2"];
const SSH_LINES: &[&str] = &["uptime", "ls -l /etc/ssh", "df -h /", "ps -o pid,comm", "cat /etc/os-release", "exit"];
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

/// The implant on the attacker's host polling the C2 server.
const fn beacon(name: &'static str, steps: &'static [Step], description: &'static str) -> Scenario {
    Scenario {
        attackers: &[ATTACKER_V4, C2],
        victims: &[],
        ..attack(name, "curl", Expected::AlertOnly, steps, description)
    }
}
/// `count` polls, `period_ms` ± `jitter_ms` apart.
const fn polls(count: u32, period_ms: u64, jitter_ms: u64) -> [Step; 1] {
    [Step::Repeat { host: Host::Attacker, argvs: BEACON, count, period_ms, jitter_ms }]
}

/// Every recorded scenario, in the manifest's order.
pub const SCENARIOS: &[Scenario] = &[
    attack(
        "nmap-syn-scan", "nmap", Expected::BlockSource,
        &[run(&["nmap", "-n", "-sS", "-T4", "-p", "1-1000", "198.18.3.2"], 120)],
        "TCP SYN scan of 1,000 ports of the server from the attacker, beside the benign client.",
    ),
    attack(
        "nmap-connect-scan", "nmap", Expected::BlockSource,
        &[run(&["nmap", "-n", "-sT", "-T4", "-p", "1-1000", "198.18.3.2"], 120)],
        "TCP connect scan (full handshakes to open ports) of 1,000 ports, beside the benign client.",
    ),
    Scenario {
        icmp_unlimited: true,
        ..attack(
            "nmap-udp-scan", "nmap", Expected::BlockSource,
            &[run(&["nmap", "-n", "-sU", "-T4", "--top-ports", "100", "198.18.3.2"], 180)],
            "UDP scan of the 100 most common ports (the server's port-unreachable errors unlimited, \
             so it takes seconds), beside the benign client.",
        )
    },
    attack(
        "nmap-aggressive", "nmap", Expected::BlockSource,
        &[run(&["nmap", "-n", "-A", "-T4", "198.18.3.2"], 300)],
        "nmap -A: SYN scan of the top 1,000 ports, service and version probes of sshd, vsftpd, \
         HTTP and DNS, OS detection, default scripts and traceroute, beside the benign client.",
    ),
    Scenario {
        victims: &["198.18.3.0/24"],
        ..attack(
            "nmap-ping-sweep", "nmap", Expected::BlockSource,
            &[run(&["nmap", "-n", "-sn", "-T4", "198.18.3.0/24"], 180)],
            "Host discovery over the server's /24 (ICMP echo and timestamp, TCP SYN to 443, ACK \
             to 80 for each address), where five addresses answer, beside the benign client.",
        )
    },
    attack(
        "nmap-slow-scan", "nmap", Expected::BlockSource,
        &[run(&["nmap", "-n", "-sS", "-T2", "--top-ports", "100", "198.18.3.2"], 300)],
        "Polite (-T2) SYN scan of the 100 most common ports: one probe every 0.4 s, under any \
         rate threshold, beside the benign client.",
    ),
    Scenario {
        attackers: &[ATTACKER_V6],
        victims: &[SERVER_V6],
        innocents: &[CLIENT_V6],
        background: Background::V6,
        ..attack(
            "nmap-ipv6-syn-scan", "nmap", Expected::BlockSource,
            &[run(&["nmap", "-n", "-6", "-sS", "-T4", "-p", "1-1000", "2001:db8:3::2"], 120)],
            "IPv6 TCP SYN scan of 1,000 ports, beside the benign client browsing and resolving \
             over IPv6.",
        )
    },
    attack(
        "hydra-ssh", "hydra", Expected::BlockSource,
        &[run(&["hydra", "-I", "-l", "admin", "-P", "words.txt", "-t", "4", "ssh://198.18.3.2"], 300)],
        "Password guessing against the server's real OpenSSH with a 50-word list (4 parallel \
         connections), beside the benign client.",
    ),
    attack(
        "hydra-ssh-default", "hydra", Expected::BlockSource,
        &[run(&["hydra", "-I", "-l", "admin", "-P", "words.txt", "ssh://198.18.3.2"], 300)],
        "Password guessing against the server's real OpenSSH at hydra's default speed (16 parallel \
         tasks) with a 50-word list, beside the benign client.",
    ),
    attack(
        "hydra-ssh-slow", "hydra", Expected::BlockSource,
        &[run(&["hydra", "-I", "-l", "admin", "-P", "words.txt", "-c", "3", "ssh://198.18.3.2"], 600)],
        "Password guessing against the server's real OpenSSH at its slowest: one task, one guess \
         every 3 s (-c 3 enforces -t 1), with a 50-word list, beside the benign client.",
    ),
    attack(
        "hydra-ftp", "hydra", Expected::BlockSource,
        &[run(&["hydra", "-I", "-l", "admin", "-P", "words.txt", "-t", "4", "ftp://198.18.3.2"], 300)],
        "Password guessing against the server's real vsftpd with a 50-word list (4 parallel \
         connections), beside the benign client.",
    ),
    attack(
        "hydra-http-basic", "hydra", Expected::BlockSource,
        &[run(&["hydra", "-I", "-l", "admin", "-P", "words.txt", "-t", "4", "-s", "8080", "198.18.3.2", "http-get", "/admin"], 300)],
        "Password guessing against an HTTP admin page behind basic authentication (HTTP/1.1 \
         keep-alive) with a 50-word list (4 parallel tasks), beside the benign client.",
    ),
    attack(
        "hping3-syn-flood", "hping3", Expected::BlockSource,
        &[run(&["hping3", "-q", "-S", "-p", "80", "-c", "2400", "-i", "u200", "198.18.3.2"], 60)],
        "SYN flood of 2,400 packets at about 4,000 a second from one source to the server's open HTTP port, beside \
         the benign client.",
    ),
    Scenario {
        attackers: &[],
        ..attack(
            "hping3-spoofed-syn-flood", "hping3", Expected::VictimRateLimit,
            &[
                Step::SpoofInto { prefix: SPOOFED },
                run(&["hping3", "-q", "-S", "-p", "80", "--rand-source", "-c", "2400", "-i", "u200", "198.18.3.2"], 60),
            ],
            "SYN flood of 2,400 packets at about 4,000 a second from random sources (rewritten into 198.19.0.0/16) to \
             the server's HTTP port: no source to block, a victim to protect, beside the benign \
             client.",
        )
    },
    attack(
        "hping3-udp-flood", "hping3", Expected::BlockSource,
        &[run(&["hping3", "-q", "--udp", "-p", "9999", "-d", "64", "-c", "2400", "-i", "u200", "198.18.3.2"], 60)],
        "UDP flood of 2,400 packets at about 4,000 a second from one source to a closed port of the server, beside \
         the benign client.",
    ),
    beacon(
        "beacon-https-periodic", &polls(24, 5000, 0),
        "An implant on the attacker's host polls its command-and-control server over HTTPS \
         (curl) every 5 s, 24 times, beside the benign client.",
    ),
    beacon(
        "beacon-https-jittered", &polls(24, 5000, 2500),
        "The same beacon with ±2.5 s of random jitter per poll, beside the benign client.",
    ),
    beacon(
        "beacon-https-2s", &polls(30, 2000, 0),
        "The implant polls its command-and-control server over HTTPS (curl) every 2 s, 30 \
         times, beside the benign client.",
    ),
    beacon(
        "beacon-https-2to3s", &polls(30, 2500, 500),
        "The implant polls every 2 to 3 s (2.5 s ± 0.5 s of random jitter), 30 times, beside \
         the benign client.",
    ),
    benign(
        "benign-apt-downloads", "curl", &[CLIENT_V4, SERVER_V4],
        &[Step::Repeat { host: Host::Client, argvs: &[APT_V4], count: 3, period_ms: 12_000, jitter_ms: 3000 }],
        "Three apt-style sessions (release file, package index, two packages of 0.3 and 0.4 MB \
         over one connection) from the client to the server's HTTP mirror.",
    ),
    benign(
        "benign-ssh-interactive", "openssh-client", &[CLIENT_V4, SERVER_V4],
        &[Step::Typed { host: Host::Client, argv: SSH_V4, lines: SSH_LINES }],
        "An interactive SSH session from the client to the server, typed at human speed.",
    ),
    benign(
        "benign-dns", "bind9-dnsutils", &[CLIENT_V4, SERVER_V4],
        &[Step::Repeat { host: Host::Client, argvs: DIG_V4, count: 90, period_ms: 500, jitter_ms: 400 }],
        "DNS lookups (A, AAAA, MX, TXT, PTR, a missing name) with dig from the client to the \
         server's dnsmasq.",
    ),
    benign(
        "benign-ipv6-mix", "curl", &[CLIENT_V6, SERVER_V6],
        &[
            Step::Repeat { host: Host::Client, argvs: DIG_V6, count: 6, period_ms: 1000, jitter_ms: 500 },
            on_client(APT_V6, 60),
            Step::Typed { host: Host::Client, argv: SSH_V6, lines: SSH_LINES },
        ],
        "The client over IPv6 only: DNS lookups, an apt-style download, an interactive SSH \
         session.",
    ),
    Scenario {
        background: Background::V4,
        ..benign(
            "benign-mix", "curl", &[CLIENT_V4, SERVER_V4],
            &[
                on_client(APT_V4, 60),
                Step::Sleep { ms: 30_000 },
                Step::Typed { host: Host::Client, argv: SSH_V4, lines: SSH_LINES },
                Step::Sleep { ms: 60_000 },
                on_client(APT_V4, 60),
                Step::Sleep { ms: 30_000 },
            ],
            "Two and a half minutes of an ordinary client: web pages and DNS lookups all along, two apt \
             sessions and an SSH session.",
        )
    },
];
