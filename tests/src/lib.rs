//! # netanom-lab: a throwaway network lab for privileged tests and benchmarks
//!
//! The lab creates network namespaces joined by veth pairs, configures them so that no
//! unsolicited traffic appears on the wire, and generates traffic inside them: hand-built
//! Ethernet frames sent through `AF_PACKET` sockets ([`traffic`]), real kernel TCP connections
//! ([`traffic::tcp_exchange`]) and rewritten real captures ([`replay`]). Two topologies:
//! [`Pair`] (two namespaces, one veth) and [`Gateway`] (client, attacker and server routed
//! through a gateway namespace, see [`gateway`]). The agent under test runs in either
//! ([`agent`], over the [`Topology`] trait), and [`timing`], [`files`], [`http`] and
//! [`probes`] hold what the tests check it with; [`servers`], [`prometheus`] and [`bgp`] (BIRD
//! as the upstream router, gobgpd beside the agent) run real servers beside it, and
//! [`deploy`] reads the deployment files.
//!
//! ## Rules the lab follows
//!
//! - Addresses come only from the benchmarking range `198.18.0.0/15` (RFC 2544) and the
//!   documentation range `2001:db8::/32` (RFC 3849). Namespaces have no default route, so
//!   nothing can be routed out of the lab.
//! - Every namespace and interface name starts with [`PREFIX`]. Namespaces are named
//!   `nalab-<pid>-<n>-<tag>`, unique per process and test. Veth interfaces are created
//!   *directly inside* the lab's namespaces, so they never appear in the host's namespace.
//! - Teardown is guaranteed by `Drop` guards ([`Netns`] deletes its namespace, which destroys
//!   the veths inside it); [`sweep_leftovers`] removes what a crashed run left behind.
//! - Every loop is bounded in iterations and in time.
//! - Programs are moved into a namespace with `setns(fd, CLONE_NEWNET)` (on a scoped thread,
//!   [`Netns::run`], or in `pre_exec`, [`Netns::command`]), never with `ip netns exec`, which
//!   remounts `/sys` and would hide `/sys/fs/bpf`.
//!
//! ## Example
//!
//! ```no_run
//! use netanom_lab::{Pair, traffic::{self, Pace, RawSender}};
//!
//! # fn main() -> anyhow::Result<()> {
//! if !netanom_lab::require_root() {
//!     return Ok(());
//! }
//! netanom_lab::sweep_leftovers()?;
//! let pair = Pair::new("example")?;
//! pair.settle()?;
//! let tx = RawSender::open(&pair.b, &pair.b_side.iface)?;
//! let sent = traffic::udp_burst(&tx, &pair.b_side.ep, &pair.a_side.ep, false, 100, 64, &Pace::default())?;
//! assert_eq!(sent, 100);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod agent;
pub mod bgp;
pub mod corpus;
pub mod deploy;
pub mod files;
pub mod fleet;
pub mod frames;
pub mod gateway;
pub mod http;
pub mod nats;
mod netns;
pub mod probes;
pub mod prometheus;
pub mod recorder;
pub mod replay;
pub mod scorecard;
pub mod servers;
pub mod synthetic;
mod sys;
pub mod timing;
pub mod topology;
pub mod traffic;

use std::path::PathBuf;

pub use agent::{Agent, agent_bin, lab_setup, run_to_end, start_agent};
pub use files::{TempDir, read_alerts, read_csv};
pub use gateway::{Gateway, Link};
pub use netns::{Endpoint, IfaceStats, Netns, Pair, Side, StateDirs, sweep_leftovers, sweep_state_leftovers};
pub use timing::{time_to_block, time_until, wait_until};
pub use topology::Topology;
pub use traffic::{Pace, RawReceiver, RawSender};

/// Endpoints with the lab's addresses (a: 198.18.0.1, 2001:db8::1; b: .2, ::2) and fixed
/// locally administered MACs, for tests and benchmarks that build frames without a
/// namespace (BPF_PROG_TEST_RUN). Returns (a, b).
pub fn test_endpoints() -> (Endpoint, Endpoint) {
    let a = Endpoint {
        mac: [0x02, 0, 0, 0, 0, 1],
        ipv4: std::net::Ipv4Addr::new(198, 18, 0, 1),
        ipv6: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    };
    let b = Endpoint {
        mac: [0x02, 0, 0, 0, 0, 2],
        ipv4: std::net::Ipv4Addr::new(198, 18, 0, 2),
        ipv6: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    };
    (a, b)
}

/// Prefix of every namespace and interface name the lab creates.
pub const PREFIX: &str = "nalab";

/// True when the effective user id is 0. Privileged tests call this first and skip with a
/// clear `eprintln!` when it returns false.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The shared data directory (datasets, captures): `$NETANOM_SHARED` when set, otherwise
/// `<workspace root>/../shared`. `None` when the directory does not exist.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("NETANOM_SHARED") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("..")
            .join("shared"),
    };
    dir.is_dir().then_some(dir)
}

/// Path of a capture below `<shared>/datasets/pcaps/`, e.g.
/// `pcap_path("benign-misc/tcpreplay_test.pcap")`. `None` when it does not exist.
pub fn pcap_path(relative: &str) -> Option<PathBuf> {
    let path = shared_dir()?.join("datasets").join("pcaps").join(relative);
    path.is_file().then_some(path)
}
