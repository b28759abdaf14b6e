//! Types that cross the kernel boundary between netanom's XDP program and its agent.
//!
//! Everything here is `#[repr(C)]` with explicit padding and compile-time size asserts, so
//! the kernel half (built for `bpfel-unknown-none`) and the user half agree byte for byte.
//! The `user` feature adds `aya::Pod` impls and serde for the agent ([`user`]).
#![no_std]

pub mod agg;
pub mod flow;
pub mod mitigate;
pub mod parse;
pub mod stats;
pub mod time;
#[cfg(feature = "user")]
pub mod user;

pub use stats::{Event, Proto, ProtoCounter};

/// Names shared by the ELF object and the agent. BPF object names are limited to 15 bytes.
pub mod names {
    /// The XDP program (function) name.
    pub const PROG_XDP: &str = "netanom_xdp";
    /// The TC egress classifier: the same accounting for the host's outgoing packets.
    pub const PROG_TC_EGRESS: &str = "netanom_egress";
    /// Benchmark baselines: a bare `XDP_PASS`, and parsing without accounting.
    pub const PROG_BARE: &str = "netanom_bare";
    pub const PROG_PARSE_ONLY: &str = "netanom_parse";
    /// Benchmark program: the XDP program after adding 1 to the frame's source address, so
    /// that every run of the kernel's test loop creates a flow.
    pub const PROG_NEW_FLOW: &str = "netanom_newflow";
    /// Per-CPU array of [`crate::ProtoCounter`], indexed by [`crate::Proto`].
    pub const MAP_PROTO_STATS: &str = "NA_PROTO";
    /// Per-CPU array of `u64`, indexed by [`crate::Event`].
    pub const MAP_EVENTS: &str = "NA_EVENTS";
    /// LRU hash [`crate::flow::FlowKey`] → [`crate::flow::FlowValue`].
    pub const MAP_FLOWS: &str = "NA_FLOWS";
    /// LRU hash [`crate::agg::HostKey`] → [`crate::agg::SrcStats`].
    pub const MAP_SRC: &str = "NA_SRC";
    /// LRU hash [`crate::agg::DstKey`] → [`crate::agg::DstStats`].
    pub const MAP_DST: &str = "NA_DST";
    /// Ring buffer of [`crate::flow::FlowRecord`]: flows that ended.
    pub const MAP_FLOW_EXPORT: &str = "NA_FLOW_RB";
    /// Global (in .rodata) holding [`crate::flow::FlowTimeouts`], set by the agent at load.
    pub const GLOBAL_TIMEOUTS: &str = "NA_TIMEOUTS";
    /// Global (in .rodata) the agent may override before load: aya-log level for the program.
    pub const GLOBAL_LOG_LEVEL: &str = "AYA_LOG_LEVEL";
    /// LPM tries of [`crate::mitigate::BlockEntry`] by source prefix (pinned).
    pub const MAP_BLOCK4: &str = "NA_BLOCK4";
    pub const MAP_BLOCK6: &str = "NA_BLOCK6";
    /// Hashes of [`crate::mitigate::BlockEntry`] by exact host address (a /32 or /128
    /// block), network byte order (pinned): a hash lookup costs a fraction of a full-depth
    /// trie walk, and most blocks are hosts.
    pub const MAP_HOST_BLOCK4: &str = "NA_HBLOCK4";
    pub const MAP_HOST_BLOCK6: &str = "NA_HBLOCK6";
    /// Array of `u64`: the host-block filter bitmap (pinned; see [`crate::mitigate`]).
    pub const MAP_HOST_FILTER: &str = "NA_HFILTER";
    /// LPM tries of [`crate::mitigate::AllowEntry`] by source prefix (pinned).
    pub const MAP_ALLOW4: &str = "NA_ALLOW4";
    pub const MAP_ALLOW6: &str = "NA_ALLOW6";
    /// Hash [`crate::mitigate::PatternKey`] → [`crate::mitigate::RateLimit`] (pinned).
    pub const MAP_RATE_LIMITS: &str = "NA_RATELIM";
    /// Array of `u64` indexed by [`crate::mitigate::Control`] (pinned).
    pub const MAP_CONTROL: &str = "NA_MCTL";
    /// Per-CPU scratch [`crate::flow::FlowValue`]: a new flow is built here and inserted
    /// whole, so that no reader (another CPU, the agent's sweep) sees it half made.
    pub const MAP_SCRATCH: &str = "NA_SCRATCH";
    /// The maps pinned under the pin directory, so that they outlive the agent.
    pub const PINNED_MAPS: [&str; 9] = [
        MAP_BLOCK4,
        MAP_BLOCK6,
        MAP_HOST_BLOCK4,
        MAP_HOST_BLOCK6,
        MAP_HOST_FILTER,
        MAP_ALLOW4,
        MAP_ALLOW6,
        MAP_RATE_LIMITS,
        MAP_CONTROL,
    ];
    /// Directory on bpffs where netanom pins the maps that must outlive the agent.
    pub const PIN_DIR: &str = "/sys/fs/bpf/netanom";

    const fn max_len(names: &[&str]) -> usize {
        let mut i = 0;
        let mut max = 0;
        while i < names.len() {
            if names[i].len() > max {
                max = names[i].len();
            }
            i += 1;
        }
        max
    }
    // The kernel truncates object names to BPF_OBJ_NAME_LEN - 1 = 15 bytes.
    const _: () = assert!(
        max_len(&[
            PROG_XDP,
            PROG_TC_EGRESS,
            PROG_BARE,
            PROG_PARSE_ONLY,
            PROG_NEW_FLOW,
            MAP_PROTO_STATS,
            MAP_EVENTS,
            MAP_FLOWS,
            MAP_SRC,
            MAP_DST,
            MAP_FLOW_EXPORT,
            GLOBAL_TIMEOUTS,
            MAP_BLOCK4,
            MAP_BLOCK6,
            MAP_HOST_BLOCK4,
            MAP_HOST_BLOCK6,
            MAP_HOST_FILTER,
            MAP_ALLOW4,
            MAP_ALLOW6,
            MAP_RATE_LIMITS,
            MAP_CONTROL,
            MAP_SCRATCH,
        ]) <= 15
    );
}
