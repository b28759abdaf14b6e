//! Mitigation state shared by the XDP program and the agent: blocklist and allowlist entries
//! (LPM tries keyed by source prefix) and flood-pattern rate limits (hash keyed by destination
//! service and TCP flags). These maps are pinned under the agent's pin directory, so they
//! outlive the agent: the XDP program enforces every expiry itself, and a restarted or
//! upgraded agent finds its blocks where it left them.
//!
//! A block on a single host (a /32 or /128) lives in an exact-match hash keyed by the address
//! in network byte order; a wider prefix in the LPM trie, walked only while some prefix block
//! exists and the host hash has no entry for the source. A host entry, active or expired,
//! therefore decides for its address exactly as the trie's longest match did.
//!
//! In front of the host hashes, a bitmap (`NA_HFILTER`, [`HOST_FILTER_WORDS`] words) has the
//! bit [`host_filter_bit`] of every host block set: a source whose bit is clear has no host
//! block, which an array read tells for a few ns where a hash lookup that misses costs tens.
//! Every writer sets a new block's bit; the bitmap is rebuilt from the hashes whenever blocks
//! are removed and on every maintenance pass (a bit set for nobody only costs a lookup).
//!
//! LPM keys are aya's `lpm_trie::Key<[u8; 4]>` / `Key<[u8; 16]>`: a `u32` prefix length
//! followed by the address in network byte order (8 and 20 bytes, no padding).
//!
//! Times are `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`), the clock both halves read.

/// Capacity of each blocklist trie (the configured cap on active blocks is lower).
pub const BLOCK_ENTRIES: u32 = 65_536;
/// Words of the host-block filter bitmap (65,536 bits, 8 KiB).
pub const HOST_FILTER_WORDS: u32 = 1024;

/// The host-block filter's bit for a source address (the parser's words: IPv4 in `addr[0]`,
/// IPv6 all four, big-endian values), below `HOST_FILTER_WORDS * 64`.
#[inline(always)]
pub fn host_filter_bit(addr: &[u32; 4]) -> u32 {
    // Each word mixed in with a multiply and a shift (a Fibonacci hash): cheap in BPF, and
    // the top bits of the product depend on every bit of the address.
    let mut h: u32 = 0x9e37_79b9;
    for w in addr {
        h = (h ^ *w).wrapping_mul(0x85eb_ca6b);
        h ^= h >> 15;
    }
    h & (HOST_FILTER_WORDS * 64 - 1)
}

/// Capacity of each allowlist trie.
pub const ALLOW_ENTRIES: u32 = 16_384;
/// Capacity of the rate-limit pattern table.
pub const RATE_LIMIT_ENTRIES: u32 = 4_096;
/// Bytes of the free-text reason kept with a block.
pub const REASON_LEN: usize = 48;

/// Who put a block or an allow entry in place.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `netanom block add` / `netanom allow add`.
    Manual = 1,
    /// The agent's detector (blocks) or its configuration's `allowlist.prefixes`.
    Agent = 2,
    /// One of the host's own addresses (allowlist).
    HostAddress = 3,
    /// A default gateway (allowlist).
    Gateway = 4,
    /// Another gateway of the fleet decided it (blocks and rate limits applied from NATS).
    Fleet = 5,
}

impl Origin {
    pub const fn from_u32(v: u32) -> Option<Origin> {
        match v {
            1 => Some(Origin::Manual),
            2 => Some(Origin::Agent),
            3 => Some(Origin::HostAddress),
            4 => Some(Origin::Gateway),
            5 => Some(Origin::Fleet),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Origin::Manual => "manual",
            Origin::Agent => "agent",
            Origin::HostAddress => "host_address",
            Origin::Gateway => "gateway",
            Origin::Fleet => "fleet",
        }
    }
}

/// A blocklist entry: traffic from the prefix is dropped until `expires_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// Monotonic expiry; 0 means never. The XDP program ignores an expired entry, whether or
    /// not anybody has removed it yet.
    pub expires_ns: u64,
    /// Monotonic time the entry was (last) installed.
    pub added_ns: u64,
    /// Packets and frame bytes dropped because of this entry (concurrent CPUs may lose an
    /// increment now and then; the per-CPU totals in `NA_EVENTS` are exact).
    pub packets: u64,
    pub bytes: u64,
    /// TTL the entry was installed with, in seconds (0: never expires).
    pub ttl_s: u32,
    /// How many times this prefix has been blocked (repeat offenders get longer TTLs).
    pub strikes: u32,
    /// [`Origin`] as `u32`.
    pub origin: u32,
    pub _pad: u32,
    /// Why, as UTF-8, zero-padded.
    pub reason: [u8; REASON_LEN],
}
const _: () = assert!(core::mem::size_of::<BlockEntry>() == 96);

impl BlockEntry {
    /// Whether the entry drops traffic at `now_ns`.
    #[inline(always)]
    pub const fn active(&self, now_ns: u64) -> bool {
        self.expires_ns == 0 || now_ns < self.expires_ns
    }
}

/// An allowlist entry: traffic from the prefix is never dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowEntry {
    pub added_ns: u64,
    /// Packets that matched a block or rate limit but passed because of this entry.
    pub hits: u64,
    /// [`Origin`] as `u32`.
    pub origin: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<AllowEntry>() == 24);

/// A flood pattern: packets to one destination service with one TCP flag combination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PatternKey {
    /// Destination address words as the parser stores them (IPv4 in `addr[0]`).
    pub addr: [u32; 4],
    /// Destination port (0 for ICMP and other port-less protocols).
    pub port: u16,
    pub proto: u8,
    /// `tcp_flags & PATTERN_FLAGS` (0 for other protocols).
    pub tcp_flags: u8,
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<PatternKey>() == 24);

/// TCP flags that distinguish flood patterns: FIN, SYN, RST, ACK.
pub const PATTERN_FLAGS: u8 = 0x01 | 0x02 | 0x04 | 0x10;

/// A rate limit on one pattern: a GCRA token bucket (one timestamp of state).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Nanoseconds between admitted packets at the sustained rate (1e9 / pps).
    pub interval_ns: u64,
    /// Burst tolerance: `burst × interval_ns`.
    pub tolerance_ns: u64,
    /// Theoretical arrival time of the next conforming packet.
    pub tat_ns: u64,
    /// Monotonic expiry; 0 means never.
    pub expires_ns: u64,
    pub added_ns: u64,
    /// Packets admitted and dropped under this limit.
    pub passed: u64,
    pub dropped: u64,
}
const _: () = assert!(core::mem::size_of::<RateLimit>() == 56);

impl RateLimit {
    /// A limit of `pps` packets per second with bursts of `burst` packets.
    pub fn new(pps: f64, burst: u32, now_ns: u64, expires_ns: u64) -> RateLimit {
        let interval_ns = (1e9 / pps.max(1e-3)).clamp(1.0, 1e15) as u64;
        RateLimit {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst.max(1))),
            tat_ns: now_ns,
            expires_ns,
            added_ns: now_ns,
            passed: 0,
            dropped: 0,
        }
    }

    /// Whether the limit still applies at `now_ns`.
    #[inline(always)]
    pub const fn active(&self, now_ns: u64) -> bool {
        self.expires_ns == 0 || now_ns < self.expires_ns
    }

    /// Admits or refuses one packet at `now_ns` (GCRA), counting the outcome.
    #[inline(always)]
    pub fn admit(&mut self, now_ns: u64) -> bool {
        let tat = if self.tat_ns > now_ns { self.tat_ns } else { now_ns };
        if tat - now_ns > self.tolerance_ns {
            self.dropped += 1;
            return false;
        }
        self.tat_ns = tat + self.interval_ns;
        self.passed += 1;
        true
    }
}

/// The pattern a packet belongs to.
#[inline(always)]
pub fn pattern_of(m: &crate::parse::PacketMeta) -> PatternKey {
    PatternKey {
        addr: m.dst,
        port: m.dport,
        proto: m.proto,
        tcp_flags: m.tcp_flags & PATTERN_FLAGS,
        family: m.family,
        _pad: [0; 3],
    }
}

/// ICMPv6 neighbour discovery and router messages (133 router solicitation .. 137 redirect):
/// never dropped, whatever the lists say, so a block can never cut a host off its link.
#[inline(always)]
pub const fn is_neighbor_discovery(m: &crate::parse::PacketMeta) -> bool {
    m.family == 6 && m.proto == 58 && m.icmp_type >= 133 && m.icmp_type <= 137
}

/// Slots of the pinned control array (`NA_MCTL`, `u64` values).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Active rate-limit patterns; 0 lets the XDP program skip the pattern lookup.
    RateLimits = 0,
    /// Blocklist entries (IPv4 and IPv6, active or expired, hosts and prefixes); 0 lets the
    /// XDP program skip the blocklist lookups.
    Blocks = 1,
    /// Of those, the prefix blocks (in the tries, not the host hashes); 0 lets the XDP
    /// program skip the trie walk once the host hash has no entry for the source.
    PrefixBlocks = 2,
}
pub const CONTROL_SLOTS: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_admits_rate_and_burst() {
        // 1000 pps, burst 10: at one instant 11 packets pass (tolerance 10 intervals, the
        // first packet needs none), then one per millisecond.
        let mut r = RateLimit::new(1000.0, 10, 1_000_000_000, 0);
        let now = 1_000_000_000;
        let passed = (0..100).filter(|_| r.admit(now)).count();
        assert_eq!(passed, 11);
        assert_eq!(r.dropped, 89);
        assert!(!r.admit(now + 500_000));
        assert!(r.admit(now + 1_000_000));
        // After a long pause the bucket is full again, not more.
        let later = now + 10_000_000_000;
        assert_eq!((0..100).filter(|_| r.admit(later)).count(), 11);
    }

    #[test]
    fn expiry() {
        let e = BlockEntry {
            expires_ns: 100,
            added_ns: 0,
            packets: 0,
            bytes: 0,
            ttl_s: 1,
            strikes: 1,
            origin: Origin::Manual as u32,
            _pad: 0,
            reason: [0; REASON_LEN],
        };
        assert!(e.active(99));
        assert!(!e.active(100));
        assert!(BlockEntry { expires_ns: 0, ..e }.active(u64::MAX));
        let r = RateLimit::new(10.0, 1, 0, 50);
        assert!(r.active(49) && !r.active(50));
    }

    #[test]
    fn host_filter_bits_are_in_range_and_spread() {
        let mut seen = [0u64; HOST_FILTER_WORDS as usize];
        for i in 0..10_000u32 {
            for addr in [[0xc613_0000 | i, 0, 0, 0], [0x2001_0db8, 0, 0xbad, i]] {
                let b = host_filter_bit(&addr);
                assert!(b < HOST_FILTER_WORDS * 64);
                seen[(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        // 20,000 addresses over 65,536 bits: linear probing expectation ≈ 17,600 distinct.
        let set: u32 = seen.iter().map(|w| w.count_ones()).sum();
        assert!(set > 16_000, "{set} distinct bits");
    }

    #[test]
    fn origins_round_trip() {
        for o in [
            Origin::Manual,
            Origin::Agent,
            Origin::HostAddress,
            Origin::Gateway,
        ] {
            assert_eq!(Origin::from_u32(o as u32), Some(o));
        }
        assert_eq!(Origin::from_u32(0), None);
    }
}
