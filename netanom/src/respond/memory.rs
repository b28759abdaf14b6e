//! The in-memory enforcer: the same lists as the pinned kernel maps, held by the agent itself,
//! and what the XDP program would do with a packet given them ([`MemoryTables::verdict`]).
//! Detection on a capture file enforces its simulated mitigation here (the responder writes
//! through a [`SharedTables`] handle, the capture's datapath reads through another), and the
//! response's unit tests run on it without privileges. A privileged test proves that the
//! kernel tables behave the same.
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use netanom_common::{
    mitigate::{self, AllowEntry, BlockEntry, Origin, PatternKey, RateLimit},
    parse::PacketMeta,
};

use super::{
    enforcer::{Allow, Block, EnforceError, Enforcer},
    prefix::Cidr,
};
use crate::features::identity::addr;

/// What the XDP program does with a packet (the events it counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameVerdict {
    /// Nothing applies: accounted as usual.
    Pass,
    /// A block or rate limit applied, but the source is allowlisted.
    PassedAllowlisted,
    /// Its source is blocked: dropped before flow accounting.
    DroppedBlocked,
    /// Over the rate limit of its pattern: dropped before flow accounting.
    DroppedRateLimited,
}

/// Blocks, allows and rate limits in memory, with the kernel maps' capacities.
#[derive(Clone, Debug, Default)]
pub struct MemoryTables {
    blocks: BTreeMap<Cidr, BlockEntry>,
    /// Blocks per (IPv4?, prefix length): the lengths the longest-prefix lookup tries.
    block_lens: BTreeMap<(bool, u8), usize>,
    allows: BTreeMap<Cidr, AllowEntry>,
    rate_limits: HashMap<PatternKey, RateLimit>,
}

impl MemoryTables {
    pub fn new() -> MemoryTables {
        MemoryTables::default()
    }

    /// No blocks and no rate limits (allows do not count: they drop nothing).
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.rate_limits.is_empty()
    }

    /// What the XDP program's enforcement does with packet `m` at `now_ns`, with the same
    /// side effects on the lists: a dropped packet is counted on its block, a rate limit's
    /// bucket is spent, an allowlist entry that saved a packet counts a hit. Neighbour
    /// discovery always passes; the allowlist is consulted only when something would drop.
    pub fn verdict(&mut self, m: &PacketMeta, now_ns: u64) -> FrameVerdict {
        if mitigate::is_neighbor_discovery(m) || (self.blocks.is_empty() && self.rate_limits.is_empty()) {
            return FrameVerdict::Pass;
        }
        let src = addr(m.family, &m.src);
        // The kernel's trie answers with the longest prefix, active or not.
        if let Some(b) = self.longest_block(src)
            && b.active(now_ns)
        {
            if self.allow_hit(src) {
                return FrameVerdict::PassedAllowlisted;
            }
            let b = self.blocks.get_mut(&b.prefix).expect("found above");
            b.packets += 1;
            b.bytes += u64::from(m.frame_len);
            return FrameVerdict::DroppedBlocked;
        }
        let Some(r) = self.rate_limits.get(&mitigate::pattern_of(m)) else {
            return FrameVerdict::Pass;
        };
        if !r.active(now_ns) {
            return FrameVerdict::Pass;
        }
        if self.allow_hit(src) {
            return FrameVerdict::PassedAllowlisted;
        }
        let r = self
            .rate_limits
            .get_mut(&mitigate::pattern_of(m))
            .expect("found above");
        if r.admit(now_ns) {
            FrameVerdict::Pass
        } else {
            FrameVerdict::DroppedRateLimited
        }
    }

    /// Whether the block with the longest prefix covering `ip` is in force at `now_ns`.
    pub fn blocks_ip(&self, ip: IpAddr, now_ns: u64) -> bool {
        self.longest_block(ip).is_some_and(|b| b.active(now_ns))
    }

    /// Whether a rate limit in force protects the service `addr`:`port` (`proto`, `family`,
    /// addresses as the parser stores them), whatever its TCP flags.
    pub fn limits_service(&self, (family, addr, port, proto): (u8, [u32; 4], u16, u8), now_ns: u64) -> bool {
        self.rate_limits.iter().any(|(k, r)| {
            k.family == family && k.addr == addr && k.port == port && k.proto == proto && r.active(now_ns)
        })
    }

    /// The block with the longest prefix covering `ip`.
    fn longest_block(&self, ip: IpAddr) -> Option<Block> {
        let v4 = ip.is_ipv4();
        self.block_lens
            .keys()
            .rev()
            .filter(|(fam, _)| *fam == v4)
            .find_map(|&(_, len)| {
                let prefix = Cidr::covering(ip, len);
                self.blocks.get(&prefix).map(|entry| Block {
                    prefix,
                    entry: *entry,
                })
            })
    }

    /// Whether an allowlist entry covers `ip`, counting the hit on the longest one.
    fn allow_hit(&mut self, ip: IpAddr) -> bool {
        let best = self
            .allows
            .keys()
            .filter(|p| p.contains(ip))
            .max_by_key(|p| p.len())
            .copied();
        match best.and_then(|p| self.allows.get_mut(&p)) {
            Some(a) => {
                a.hits += 1;
                true
            }
            None => false,
        }
    }

    fn count_len(&mut self, prefix: &Cidr, delta: isize) {
        let k = (prefix.is_v4(), prefix.len());
        let n = self.block_lens.entry(k).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.block_lens.remove(&k);
        }
    }
}

/// [`MemoryTables`] behind a lock, for two owners on one capture: the responder (through
/// [`Enforcer`]) and the capture's datapath ([`SharedTables::lock`] then
/// [`MemoryTables::verdict`]).
#[derive(Clone, Debug, Default)]
pub struct SharedTables(Arc<Mutex<MemoryTables>>);

impl SharedTables {
    pub fn new() -> SharedTables {
        SharedTables::default()
    }

    /// The tables (a panic elsewhere while holding them leaves them usable).
    pub fn lock(&self) -> MutexGuard<'_, MemoryTables> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Enforcer for SharedTables {
    fn blocks(&self) -> Result<Vec<Block>, EnforceError> {
        self.lock().blocks()
    }
    fn put_block(&mut self, prefix: &Cidr, entry: &BlockEntry) -> Result<(), EnforceError> {
        self.lock().put_block(prefix, entry)
    }
    fn del_block(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        self.lock().del_block(prefix)
    }
    fn allows(&self) -> Result<Vec<Allow>, EnforceError> {
        self.lock().allows()
    }
    fn put_allow(&mut self, prefix: &Cidr, origin: Origin, now_ns: u64) -> Result<(), EnforceError> {
        self.lock().put_allow(prefix, origin, now_ns)
    }
    fn del_allow(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        self.lock().del_allow(prefix)
    }
    fn rate_limits(&self) -> Result<Vec<(PatternKey, RateLimit)>, EnforceError> {
        self.lock().rate_limits()
    }
    fn put_rate_limit(&mut self, key: &PatternKey, limit: &RateLimit) -> Result<(), EnforceError> {
        self.lock().put_rate_limit(key, limit)
    }
    fn del_rate_limit(&mut self, key: &PatternKey) -> Result<bool, EnforceError> {
        self.lock().del_rate_limit(key)
    }
    fn sweep(&mut self, now_ns: u64, keep_ns: u64) -> Result<(usize, usize), EnforceError> {
        self.lock().sweep(now_ns, keep_ns)
    }
}

impl Enforcer for MemoryTables {
    fn blocks(&self) -> Result<Vec<Block>, EnforceError> {
        Ok(self
            .blocks
            .iter()
            .map(|(prefix, entry)| Block {
                prefix: *prefix,
                entry: *entry,
            })
            .collect())
    }

    fn put_block(&mut self, prefix: &Cidr, entry: &BlockEntry) -> Result<(), EnforceError> {
        let family = |c: &Cidr| c.is_v4();
        let same_family = self.blocks.keys().filter(|c| family(c) == prefix.is_v4()).count();
        if !self.blocks.contains_key(prefix) && same_family >= mitigate::BLOCK_ENTRIES as usize {
            return Err(EnforceError::Full {
                capacity: mitigate::BLOCK_ENTRIES,
                family: if prefix.is_v4() { "IPv4" } else { "IPv6" },
            });
        }
        if self.blocks.insert(*prefix, *entry).is_none() {
            self.count_len(prefix, 1);
        }
        Ok(())
    }

    fn del_block(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        let removed = self.blocks.remove(prefix).is_some();
        if removed {
            self.count_len(prefix, -1);
        }
        Ok(removed)
    }

    fn allows(&self) -> Result<Vec<Allow>, EnforceError> {
        Ok(self
            .allows
            .iter()
            .map(|(prefix, entry)| Allow {
                prefix: *prefix,
                entry: *entry,
            })
            .collect())
    }

    fn put_allow(&mut self, prefix: &Cidr, origin: Origin, now_ns: u64) -> Result<(), EnforceError> {
        let hits = self.allows.get(prefix).map_or(0, |a| a.hits);
        self.allows.insert(
            *prefix,
            AllowEntry {
                added_ns: now_ns,
                hits,
                origin: origin as u32,
                _pad: 0,
            },
        );
        Ok(())
    }

    fn del_allow(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        Ok(self.allows.remove(prefix).is_some())
    }

    /// In pattern order, so that whatever reads them does the same on every run.
    fn rate_limits(&self) -> Result<Vec<(PatternKey, RateLimit)>, EnforceError> {
        let mut out: Vec<_> = self.rate_limits.iter().map(|(k, v)| (*k, *v)).collect();
        out.sort_unstable_by_key(|(k, _)| (k.family, k.addr, k.proto, k.port, k.tcp_flags));
        Ok(out)
    }

    fn put_rate_limit(&mut self, key: &PatternKey, limit: &RateLimit) -> Result<(), EnforceError> {
        self.rate_limits.insert(*key, *limit);
        Ok(())
    }

    fn del_rate_limit(&mut self, key: &PatternKey) -> Result<bool, EnforceError> {
        Ok(self.rate_limits.remove(key).is_some())
    }

    fn sweep(&mut self, now_ns: u64, keep_ns: u64) -> Result<(usize, usize), EnforceError> {
        let before = (self.blocks.len(), self.rate_limits.len());
        self.blocks
            .retain(|_, e| e.expires_ns == 0 || e.expires_ns.saturating_add(keep_ns) > now_ns);
        self.block_lens.clear();
        for prefix in self.blocks.keys() {
            *self.block_lens.entry((prefix.is_v4(), prefix.len())).or_default() += 1;
        }
        self.rate_limits.retain(|_, r| r.active(now_ns));
        Ok((before.0 - self.blocks.len(), before.1 - self.rate_limits.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::enforcer::reason_bytes;

    fn entry(expires_ns: u64) -> BlockEntry {
        BlockEntry {
            expires_ns,
            added_ns: 0,
            packets: 0,
            bytes: 0,
            ttl_s: 1,
            strikes: 1,
            origin: Origin::Agent as u32,
            _pad: 0,
            reason: reason_bytes("test"),
        }
    }

    #[test]
    fn lists_behave_like_the_kernel_maps() {
        let mut t = MemoryTables::new();
        let v6: Cidr = "2001:db8::1".parse().unwrap();
        let v4: Cidr = "198.18.0.9".parse().unwrap();
        t.put_block(&v6, &entry(100)).unwrap();
        t.put_block(&v4, &entry(0)).unwrap();
        let order: Vec<Cidr> = t.blocks().unwrap().iter().map(|b| b.prefix).collect();
        assert_eq!(order, [v4, v6], "IPv4 first");
        assert_eq!(t.block_entry(&v6).unwrap(), Some(entry(100)));
        // Expired blocks are kept `keep_ns` longer (they remember strikes); never-expiring
        // ones stay.
        assert_eq!(t.sweep(150, 100).unwrap(), (0, 0));
        assert_eq!(t.sweep(200, 100).unwrap(), (1, 0));
        assert!(t.del_block(&v4).unwrap() && !t.del_block(&v4).unwrap());
        let net: Cidr = "198.18.0.0/15".parse().unwrap();
        t.put_allow(&net, Origin::Manual, 5).unwrap();
        t.put_allow(&v4, Origin::Agent, 6).unwrap();
        assert_eq!(t.allowed_by("198.18.0.9".parse().unwrap()).unwrap(), Some(v4));
        assert_eq!(t.allowed_by("198.19.1.1".parse().unwrap()).unwrap(), Some(net));
        assert_eq!(t.allowed_by("2001:db8::1".parse().unwrap()).unwrap(), None);
    }

    fn udp_from(src: [u8; 4], dst: [u8; 4], dport: u16) -> PacketMeta {
        PacketMeta {
            family: 4,
            proto: 17,
            src: [u32::from_be_bytes(src), 0, 0, 0],
            dst: [u32::from_be_bytes(dst), 0, 0, 0],
            sport: 40_000,
            dport,
            frame_len: 100,
            ..PacketMeta::default()
        }
    }

    #[test]
    fn verdicts_follow_the_xdp_programs_rules() {
        let mut t = MemoryTables::new();
        let flood = udp_from([198, 18, 0, 9], [198, 18, 1, 1], 53);
        assert_eq!(t.verdict(&flood, 10), FrameVerdict::Pass, "empty lists");
        // The longest prefix decides, active or not: an expired /32 inside an active /24 passes.
        t.put_block(&"198.18.0.0/24".parse().unwrap(), &entry(1_000))
            .unwrap();
        assert_eq!(t.verdict(&flood, 10), FrameVerdict::DroppedBlocked);
        t.put_block(&"198.18.0.9/32".parse().unwrap(), &entry(5)).unwrap();
        assert_eq!(t.verdict(&flood, 10), FrameVerdict::Pass);
        let other = udp_from([198, 18, 0, 10], [198, 18, 1, 1], 53);
        assert_eq!(t.verdict(&other, 10), FrameVerdict::DroppedBlocked);
        assert_eq!(t.verdict(&other, 1_000), FrameVerdict::Pass, "expired");
        let b = t.block_entry(&"198.18.0.0/24".parse().unwrap()).unwrap().unwrap();
        assert_eq!((b.packets, b.bytes), (2, 200), "drops are counted on the block");
        // An allowlisted source passes, counting a hit.
        t.put_allow(&"198.18.0.10".parse().unwrap(), Origin::Manual, 0)
            .unwrap();
        assert_eq!(t.verdict(&other, 10), FrameVerdict::PassedAllowlisted);
        assert_eq!(t.allows().unwrap()[0].entry.hits, 1);
        assert!(t.del_block(&"198.18.0.0/24".parse().unwrap()).unwrap());
        assert!(t.del_block(&"198.18.0.9/32".parse().unwrap()).unwrap());
        assert!(t.block_lens.is_empty());
    }

    #[test]
    fn rate_limits_admit_their_burst_then_drop() {
        let mut t = MemoryTables::new();
        let p = udp_from([198, 19, 0, 1], [198, 18, 1, 1], 53);
        // 10 packets/s with a burst of 3, from time 0 until 1 s.
        t.put_rate_limit(
            &mitigate::pattern_of(&p),
            &RateLimit::new(10.0, 3, 0, 1_000_000_000),
        )
        .unwrap();
        let v: Vec<_> = (0..6).map(|_| t.verdict(&p, 0)).collect();
        let dropped = v
            .iter()
            .filter(|v| **v == FrameVerdict::DroppedRateLimited)
            .count();
        assert_eq!(dropped, 2, "{v:?}");
        assert_eq!(t.verdict(&p, 1_000_000_000), FrameVerdict::Pass, "expired");
        // Another destination port is another pattern.
        assert_eq!(
            t.verdict(&udp_from([198, 19, 0, 1], [198, 18, 1, 1], 54), 0),
            FrameVerdict::Pass
        );
    }

    #[test]
    fn neighbour_discovery_always_passes() {
        let mut t = MemoryTables::new();
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        t.put_block(&v6, &entry(0)).unwrap();
        let mut m = PacketMeta {
            family: 6,
            proto: 58,
            src: [0x2001_0db8, 0, 0, 1],
            icmp_type: 135,
            ..PacketMeta::default()
        };
        assert_eq!(t.verdict(&m, 1), FrameVerdict::Pass);
        m.icmp_type = 128;
        assert_eq!(t.verdict(&m, 1), FrameVerdict::DroppedBlocked);
    }
}
