//! The enforcement seam: what the response asks of whatever enforces its decisions. Two
//! implementations: the pinned kernel tables that the XDP program reads ([`super::kernel`]),
//! and an in-memory one that enforces them on a capture file and in unit tests
//! ([`super::memory`]).
use std::net::IpAddr;

use netanom_common::mitigate::{AllowEntry, BlockEntry, Origin, PatternKey, REASON_LEN, RateLimit};
use thiserror::Error;

use super::prefix::Cidr;

/// Blocks, allows and rate limits: the lists the datapath enforces.
///
/// Times are the kernel's monotonic nanoseconds (`Instant::mono_ns`), as in the entries.
pub trait Enforcer: Send {
    /// Every blocklist entry, active or expired, IPv4 first, in prefix order.
    fn blocks(&self) -> Result<Vec<Block>, EnforceError>;
    /// Installs or replaces the block on `prefix`.
    fn put_block(&mut self, prefix: &Cidr, entry: &BlockEntry) -> Result<(), EnforceError>;
    /// Removes the block on exactly `prefix`; returns whether there was one.
    fn del_block(&mut self, prefix: &Cidr) -> Result<bool, EnforceError>;
    /// Every allowlist entry, IPv4 first, in prefix order.
    fn allows(&self) -> Result<Vec<Allow>, EnforceError>;
    /// Adds `prefix` to the allowlist (keeping the hit count of an existing entry).
    fn put_allow(&mut self, prefix: &Cidr, origin: Origin, now_ns: u64) -> Result<(), EnforceError>;
    /// Removes exactly `prefix` from the allowlist; returns whether it was there.
    fn del_allow(&mut self, prefix: &Cidr) -> Result<bool, EnforceError>;
    /// Every rate limit.
    fn rate_limits(&self) -> Result<Vec<(PatternKey, RateLimit)>, EnforceError>;
    /// Installs or replaces a rate limit.
    fn put_rate_limit(&mut self, key: &PatternKey, limit: &RateLimit) -> Result<(), EnforceError>;
    /// Removes a rate limit; returns whether there was one.
    fn del_rate_limit(&mut self, key: &PatternKey) -> Result<bool, EnforceError>;
    /// Removes what has expired at `now_ns`: rate limits at once, block entries `keep_ns` after
    /// their expiry (they remember a source's strikes until then). Returns (blocks, rate
    /// limits) removed.
    fn sweep(&mut self, now_ns: u64, keep_ns: u64) -> Result<(usize, usize), EnforceError>;

    /// The entry for exactly `prefix`, if any (not the longest match).
    fn block_entry(&self, prefix: &Cidr) -> Result<Option<BlockEntry>, EnforceError> {
        Ok(self
            .blocks()?
            .into_iter()
            .find(|b| b.prefix == *prefix)
            .map(|b| b.entry))
    }

    /// The allowlist entry covering `ip` (longest prefix), if any.
    fn allowed_by(&self, ip: IpAddr) -> Result<Option<Cidr>, EnforceError> {
        let covering = self.allows()?.into_iter().filter(|a| a.prefix.contains(ip));
        Ok(covering.max_by_key(|a| a.prefix.len()).map(|a| a.prefix))
    }
}

/// What went wrong reading or changing the lists.
#[derive(Debug, Error)]
pub enum EnforceError {
    #[error(
        "no netanom maps are pinned at {dir}: nothing has been blocked or allowed there yet. \
         They are created by `netanom run` and by `netanom block add` / `netanom allow add`; \
         pass --pin-dir if the agent uses another directory."
    )]
    NotPinned { dir: String },
    #[error(
        "the pinned map {path} has {what} {found}, but this netanom expects {expected}: it was \
         created by an incompatible netanom version. Save its entries with that version \
         (`netanom block list --json`), remove the directory (`rm -r {dir}`), and start again."
    )]
    Incompatible {
        path: String,
        dir: String,
        what: &'static str,
        found: u32,
        expected: u32,
    },
    #[error(
        "cannot use the pin directory {dir}: {detail}. It must be on a mounted BPF filesystem \
         (`mount -t bpf bpf /sys/fs/bpf`), and netanom needs root (CAP_BPF, CAP_SYS_ADMIN)."
    )]
    PinDir { dir: String, detail: String },
    #[error("{op} on the pinned map {map} failed: {detail}")]
    Map {
        op: &'static str,
        map: &'static str,
        detail: String,
    },
    #[error(
        "the blocklist is full ({capacity} entries for {family}); remove entries with \
         `netanom block del CIDR`"
    )]
    Full { capacity: u32, family: &'static str },
}

/// One blocklist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub prefix: Cidr,
    pub entry: BlockEntry,
}

impl Block {
    pub fn origin(&self) -> &'static str {
        Origin::from_u32(self.entry.origin).map_or("unknown", Origin::name)
    }
    pub fn reason(&self) -> String {
        let end = self
            .entry
            .reason
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(REASON_LEN);
        String::from_utf8_lossy(&self.entry.reason[..end]).into_owned()
    }
    pub fn active(&self, now_ns: u64) -> bool {
        self.entry.active(now_ns)
    }
}

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    pub prefix: Cidr,
    pub entry: AllowEntry,
}

impl Allow {
    pub fn origin(&self) -> &'static str {
        Origin::from_u32(self.entry.origin).map_or("unknown", Origin::name)
    }
}

/// `reason` as the fixed-size, zero-padded field (cut at a character boundary).
pub fn reason_bytes(reason: &str) -> [u8; REASON_LEN] {
    let mut out = [0u8; REASON_LEN];
    let mut end = reason.len().min(REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&reason.as_bytes()[..end]);
    out
}

/// What a new block needs: when it is installed, for how long, the how-manieth, by whom, why.
#[derive(Clone, Copy, Debug)]
pub struct NewBlock<'a> {
    pub now_ns: u64,
    /// Zero: never expires.
    pub ttl: std::time::Duration,
    pub strikes: u32,
    pub origin: Origin,
    pub reason: &'a str,
}

impl NewBlock<'_> {
    /// The entry, keeping the drop counts of the entry it replaces (`previous`).
    pub fn entry(&self, previous: Option<BlockEntry>) -> BlockEntry {
        BlockEntry {
            expires_ns: match self.ttl.as_nanos() {
                0 => 0,
                t => self.now_ns.saturating_add(u64::try_from(t).unwrap_or(u64::MAX)),
            },
            added_ns: self.now_ns,
            packets: previous.map_or(0, |e| e.packets),
            bytes: previous.map_or(0, |e| e.bytes),
            ttl_s: u32::try_from(self.ttl.as_secs()).unwrap_or(u32::MAX),
            strikes: self.strikes,
            origin: self.origin as u32,
            _pad: 0,
            reason: reason_bytes(self.reason),
        }
    }
}

/// The kernel's pattern key for a destination service and TCP flags.
pub fn pattern_key(dst: IpAddr, port: u16, proto: u8, tcp_flags: u8) -> PatternKey {
    let (addr, family) = match dst {
        IpAddr::V4(a) => ([u32::from_be_bytes(a.octets()), 0, 0, 0], 4),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], 6)
        }
    };
    PatternKey {
        addr,
        port,
        proto,
        tcp_flags: tcp_flags & netanom_common::mitigate::PATTERN_FLAGS,
        family,
        _pad: [0; 3],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_keys_match_the_kernel_layout() {
        let k = pattern_key("198.18.1.2".parse().unwrap(), 80, 6, 0x12);
        assert_eq!(k.addr[0], u32::from_be_bytes([198, 18, 1, 2]));
        assert_eq!(k.tcp_flags, 0x12 & netanom_common::mitigate::PATTERN_FLAGS);
        assert_eq!(k.family, 4);
        let k = pattern_key("2001:db8::1".parse().unwrap(), 53, 17, 0);
        assert_eq!(k.addr, [0x2001_0db8, 0, 0, 1]);
        assert_eq!(k.family, 6);
    }

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        // 1 + 2 × 30 bytes: byte 48 falls inside a 2-byte character, so 47 are kept.
        let r = reason_bytes(&format!("a{}", "é".repeat(30)));
        assert_eq!(r.iter().position(|&b| b == 0), Some(REASON_LEN - 1));
        assert!(std::str::from_utf8(&r[..REASON_LEN - 1]).is_ok());
        let b = Block {
            prefix: "198.18.0.1".parse().unwrap(),
            entry: BlockEntry {
                expires_ns: 0,
                added_ns: 0,
                packets: 0,
                bytes: 0,
                ttl_s: 0,
                strikes: 1,
                origin: Origin::Manual as u32,
                _pad: 0,
                reason: reason_bytes("operator"),
            },
        };
        assert_eq!((b.reason().as_str(), b.origin()), ("operator", "manual"));
    }
}
