//! Global per-CPU counters kept by the XDP program.

/// Traffic class a packet is counted under: address family × transport protocol.
///
/// The discriminant is the index into the `NA_PROTO` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Ipv4Tcp = 0,
    Ipv4Udp = 1,
    Ipv4Icmp = 2,
    /// Any other IPv4 payload (GRE, ESP, SCTP, ...).
    Ipv4Other = 3,
    Ipv6Tcp = 4,
    Ipv6Udp = 5,
    Ipv6Icmp = 6,
    /// Any other IPv6 payload, including extension-header chains deeper than we walk.
    Ipv6Other = 7,
    Arp = 8,
    /// Every other ethertype (LLDP, MPLS, ...), and frames too short for an Ethernet header.
    OtherL2 = 9,
}

impl Proto {
    pub const COUNT: u32 = 10;
    pub const ALL: [Proto; Self::COUNT as usize] = [
        Proto::Ipv4Tcp,
        Proto::Ipv4Udp,
        Proto::Ipv4Icmp,
        Proto::Ipv4Other,
        Proto::Ipv6Tcp,
        Proto::Ipv6Udp,
        Proto::Ipv6Icmp,
        Proto::Ipv6Other,
        Proto::Arp,
        Proto::OtherL2,
    ];

    /// Address family label: `ipv4`, `ipv6` or `l2`.
    pub const fn family(self) -> &'static str {
        match self {
            Proto::Ipv4Tcp | Proto::Ipv4Udp | Proto::Ipv4Icmp | Proto::Ipv4Other => "ipv4",
            Proto::Ipv6Tcp | Proto::Ipv6Udp | Proto::Ipv6Icmp | Proto::Ipv6Other => "ipv6",
            Proto::Arp | Proto::OtherL2 => "l2",
        }
    }

    /// Transport label: `tcp`, `udp`, `icmp` (ICMPv6 under ipv6), `other`, `arp`.
    pub const fn transport(self) -> &'static str {
        match self {
            Proto::Ipv4Tcp | Proto::Ipv6Tcp => "tcp",
            Proto::Ipv4Udp | Proto::Ipv6Udp => "udp",
            Proto::Ipv4Icmp | Proto::Ipv6Icmp => "icmp",
            Proto::Arp => "arp",
            Proto::Ipv4Other | Proto::Ipv6Other | Proto::OtherL2 => "other",
        }
    }
}

/// Packets and bytes (whole frame, from the Ethernet header on) of one [`Proto`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtoCounter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<ProtoCounter>() == 16);

impl ProtoCounter {
    /// Sum of the per-CPU values of one slot (the agent reads one value per possible CPU).
    pub fn sum<'a>(values: impl IntoIterator<Item = &'a ProtoCounter>) -> ProtoCounter {
        values
            .into_iter()
            .fold(ProtoCounter::default(), |acc, v| ProtoCounter {
                packets: acc.packets.wrapping_add(v.packets),
                bytes: acc.bytes.wrapping_add(v.bytes),
            })
    }
}

/// Events counted by the XDP program; the discriminant indexes the `NA_EVENTS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A header claimed more bytes than the frame holds (truncated or malformed packet).
    Truncated = 0,
    /// An IPv4 header with a bad version or header length.
    BadIpHeader = 1,
    /// IPv6 extension-header chain longer than the parser walks.
    Ipv6ExtTooDeep = 2,
    /// Frames that carried at least one 802.1Q/802.1ad tag.
    VlanTagged = 3,
    /// IP fragments (first and later).
    Fragment = 4,
    /// New flows entered in the flow table.
    FlowCreated = 5,
    /// Flow records handed to the agent through the ring buffer.
    FlowExported = 6,
    /// Flow records lost because the ring buffer was full.
    ExportLost = 7,
    /// Flows that could not be entered in the flow table.
    FlowInsertFailed = 8,
    /// Source/destination aggregates that could not be entered.
    AggInsertFailed = 9,
    /// Packets dropped because their source matched an active blocklist entry.
    DroppedBlocked = 10,
    /// Packets dropped by a flood-pattern rate limit.
    DroppedRateLimited = 11,
    /// Packets that matched a block or rate limit but passed: their source is allowlisted.
    PassedAllowlisted = 12,
}

impl Event {
    pub const COUNT: u32 = 13;
    pub const ALL: [Event; Self::COUNT as usize] = [
        Event::Truncated,
        Event::BadIpHeader,
        Event::Ipv6ExtTooDeep,
        Event::VlanTagged,
        Event::Fragment,
        Event::FlowCreated,
        Event::FlowExported,
        Event::ExportLost,
        Event::FlowInsertFailed,
        Event::AggInsertFailed,
        Event::DroppedBlocked,
        Event::DroppedRateLimited,
        Event::PassedAllowlisted,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Event::Truncated => "truncated",
            Event::BadIpHeader => "bad_ip_header",
            Event::Ipv6ExtTooDeep => "ipv6_ext_too_deep",
            Event::VlanTagged => "vlan_tagged",
            Event::Fragment => "fragment",
            Event::FlowCreated => "flow_created",
            Event::FlowExported => "flow_exported",
            Event::ExportLost => "export_lost",
            Event::FlowInsertFailed => "flow_insert_failed",
            Event::AggInsertFailed => "agg_insert_failed",
            Event::DroppedBlocked => "dropped_blocked",
            Event::DroppedRateLimited => "dropped_rate_limited",
            Event::PassedAllowlisted => "passed_allowlisted",
        }
    }

    /// Parser events (malformed input), as opposed to accounting events.
    pub const fn is_parser_event(self) -> bool {
        matches!(
            self,
            Event::Truncated
                | Event::BadIpHeader
                | Event::Ipv6ExtTooDeep
                | Event::VlanTagged
                | Event::Fragment
        )
    }
}
