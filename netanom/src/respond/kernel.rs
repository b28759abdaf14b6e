//! The kernel enforcer: the pinned mitigation maps (blocklist, allowlist and rate limits) under
//! the pin directory
//! (default `/sys/fs/bpf/netanom`), read and written by the agent and by the
//! `netanom block|allow|status` commands, with or without a running agent.
//!
//! The maps are created from the same program object the agent loads (so their definitions
//! cannot drift), pinned on first use, and reused by every later agent and command. A pinned
//! map whose layout does not match this binary's is refused with what to do about it.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, IterableMap as _, LpmTrie, Map, MapData, MapError, lpm_trie::Key};
use netanom_common::{
    mitigate::{AllowEntry, BlockEntry, Control, Origin, PatternKey, RateLimit},
    names,
};

use super::{
    enforcer::{Allow, Block, EnforceError, Enforcer},
    prefix::Cidr,
};

fn map_err(op: &'static str, map: &'static str) -> impl Fn(MapError) -> EnforceError {
    move |e| EnforceError::Map {
        op,
        map,
        detail: match &e {
            MapError::SyscallError(s) => format!("{} ({})", s.call, s.io_error),
            other => other.to_string(),
        },
    }
}

/// Expected (key size, value size, max entries) of each pinned map.
fn layout(name: &str) -> (u32, u32, u32) {
    use netanom_common::mitigate as m;
    let lpm = |n: usize| (4 + n) as u32;
    match name {
        names::MAP_BLOCK4 => (lpm(4), size_of::<BlockEntry>() as u32, m::BLOCK_ENTRIES),
        names::MAP_BLOCK6 => (lpm(16), size_of::<BlockEntry>() as u32, m::BLOCK_ENTRIES),
        names::MAP_HOST_BLOCK4 => (4, size_of::<BlockEntry>() as u32, m::BLOCK_ENTRIES),
        names::MAP_HOST_BLOCK6 => (16, size_of::<BlockEntry>() as u32, m::BLOCK_ENTRIES),
        names::MAP_HOST_FILTER => (4, 8, m::HOST_FILTER_WORDS),
        names::MAP_ALLOW4 => (lpm(4), size_of::<AllowEntry>() as u32, m::ALLOW_ENTRIES),
        names::MAP_ALLOW6 => (lpm(16), size_of::<AllowEntry>() as u32, m::ALLOW_ENTRIES),
        names::MAP_RATE_LIMITS => (
            size_of::<PatternKey>() as u32,
            size_of::<RateLimit>() as u32,
            m::RATE_LIMIT_ENTRIES,
        ),
        _ => (4, 8, m::CONTROL_SLOTS),
    }
}

/// Checks the maps already pinned in `dir` against this binary's layout; returns whether all
/// of them are there.
pub fn check_pins(dir: &Path) -> Result<bool, EnforceError> {
    let mut all = true;
    for name in names::PINNED_MAPS {
        let path = dir.join(name);
        if !path.exists() {
            all = false;
            continue;
        }
        let info = aya::maps::MapInfo::from_pin(&path).map_err(|e| EnforceError::PinDir {
            dir: dir.display().to_string(),
            detail: format!("reading {}: {e}", path.display()),
        })?;
        let (k, v, n) = layout(name);
        for (what, found, expected) in [
            ("key size", info.key_size(), k),
            ("value size", info.value_size(), v),
            ("capacity", info.max_entries(), n),
        ] {
            if found != expected {
                return Err(EnforceError::Incompatible {
                    path: path.display().to_string(),
                    dir: dir.display().to_string(),
                    what,
                    found,
                    expected,
                });
            }
        }
    }
    Ok(all)
}

/// Creates the pin directory (on bpffs) if needed.
pub fn ensure_dir(dir: &Path) -> Result<(), EnforceError> {
    fs::create_dir_all(dir).map_err(|e| EnforceError::PinDir {
        dir: dir.display().to_string(),
        detail: e.to_string(),
    })
}

/// Handles on the pinned maps.
pub struct KernelTables {
    dir: PathBuf,
    block4: LpmTrie<MapData, [u8; 4], BlockEntry>,
    block6: LpmTrie<MapData, [u8; 16], BlockEntry>,
    /// Host blocks (/32, /128), by exact address: see `netanom_common::mitigate`.
    host4: HashMap<MapData, [u8; 4], BlockEntry>,
    host6: HashMap<MapData, [u8; 16], BlockEntry>,
    /// The host-block filter bitmap.
    filter: Array<MapData, u64>,
    allow4: LpmTrie<MapData, [u8; 4], AllowEntry>,
    allow6: LpmTrie<MapData, [u8; 16], AllowEntry>,
    rate: HashMap<MapData, PatternKey, RateLimit>,
    control: Array<MapData, u64>,
}

fn open_pin(dir: &Path, name: &'static str) -> Result<MapData, EnforceError> {
    MapData::from_pin(dir.join(name)).map_err(map_err("opening", name))
}

impl KernelTables {
    /// Opens the maps pinned in `dir`; fails if they are not there.
    pub fn open(dir: &Path) -> Result<KernelTables, EnforceError> {
        if !check_pins(dir)? {
            return Err(EnforceError::NotPinned {
                dir: dir.display().to_string(),
            });
        }
        let lpm = |name| -> Result<Map, EnforceError> { Ok(Map::LpmTrie(open_pin(dir, name)?)) };
        let mut t = KernelTables {
            dir: dir.to_owned(),
            block4: LpmTrie::try_from(lpm(names::MAP_BLOCK4)?)
                .map_err(map_err("opening", names::MAP_BLOCK4))?,
            block6: LpmTrie::try_from(lpm(names::MAP_BLOCK6)?)
                .map_err(map_err("opening", names::MAP_BLOCK6))?,
            host4: HashMap::try_from(Map::HashMap(open_pin(dir, names::MAP_HOST_BLOCK4)?))
                .map_err(map_err("opening", names::MAP_HOST_BLOCK4))?,
            host6: HashMap::try_from(Map::HashMap(open_pin(dir, names::MAP_HOST_BLOCK6)?))
                .map_err(map_err("opening", names::MAP_HOST_BLOCK6))?,
            filter: Array::try_from(Map::Array(open_pin(dir, names::MAP_HOST_FILTER)?))
                .map_err(map_err("opening", names::MAP_HOST_FILTER))?,
            allow4: LpmTrie::try_from(lpm(names::MAP_ALLOW4)?)
                .map_err(map_err("opening", names::MAP_ALLOW4))?,
            allow6: LpmTrie::try_from(lpm(names::MAP_ALLOW6)?)
                .map_err(map_err("opening", names::MAP_ALLOW6))?,
            rate: HashMap::try_from(Map::HashMap(open_pin(dir, names::MAP_RATE_LIMITS)?))
                .map_err(map_err("opening", names::MAP_RATE_LIMITS))?,
            control: Array::try_from(Map::Array(open_pin(dir, names::MAP_CONTROL)?))
                .map_err(map_err("opening", names::MAP_CONTROL))?,
        };
        // Lists pinned by an older agent may hold host blocks in the tries and lack the counts.
        t.migrate_host_blocks()?;
        t.sync_counts()?;
        Ok(t)
    }

    /// Opens the maps pinned in `dir`, creating and pinning them first if they are missing.
    pub fn open_or_create(dir: &Path) -> Result<KernelTables, EnforceError> {
        ensure_dir(dir)?;
        if !check_pins(dir)? {
            crate::datapath::create_pins(dir).map_err(|e| EnforceError::PinDir {
                dir: dir.display().to_string(),
                detail: e.to_string(),
            })?;
        }
        KernelTables::open(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn remove_block(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        let r = match prefix {
            Cidr::V4 { addr, len: 32 } => self.host4.remove(&addr.octets()),
            Cidr::V6 { addr, len: 128 } => self.host6.remove(&addr.octets()),
            Cidr::V4 { addr, len } => self.block4.remove(&Key::new(u32::from(*len), addr.octets())),
            Cidr::V6 { addr, len } => self.block6.remove(&Key::new(u32::from(*len), addr.octets())),
        };
        not_found_is_false(r, names::MAP_BLOCK4)
    }

    /// The block entry the kernel would match for `prefix` (the longest prefix covering it):
    /// for a host, its entry in the host hash, else the tries' longest match, one lookup
    /// each. `None` means no entry on it nor on anything wider.
    pub fn block_covering(&self, prefix: &Cidr) -> Result<Option<BlockEntry>, EnforceError> {
        let host = match prefix {
            Cidr::V4 { addr, len: 32 } => Some(self.host4.get(&addr.octets(), 0)),
            Cidr::V6 { addr, len: 128 } => Some(self.host6.get(&addr.octets(), 0)),
            _ => None,
        };
        match host {
            Some(Ok(e)) => return Ok(Some(e)),
            Some(Err(MapError::KeyNotFound)) | None => {}
            Some(Err(e)) => return Err(map_err("looking up", names::MAP_HOST_BLOCK4)(e)),
        }
        let r = match prefix {
            Cidr::V4 { addr, len } => self.block4.get(&Key::new(u32::from(*len), addr.octets()), 0),
            Cidr::V6 { addr, len } => self.block6.get(&Key::new(u32::from(*len), addr.octets()), 0),
        };
        match r {
            Ok(e) => Ok(Some(e)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err("looking up", names::MAP_BLOCK4)(e)),
        }
    }

    /// Moves host blocks (/32, /128) that an older agent left in the tries to the host hashes,
    /// where the XDP program, `put_block` and `del_block` look for them.
    fn migrate_host_blocks(&mut self) -> Result<(), EnforceError> {
        let old: Vec<Block> = entries(&self.block4, &self.block6, names::MAP_BLOCK4)?
            .into_iter()
            .filter(|(p, _)| p.len() == if p.is_v4() { 32 } else { 128 })
            .map(|(prefix, entry)| Block { prefix, entry })
            .collect();
        for b in old {
            self.put_block(&b.prefix, &b.entry)?;
            let r = match b.prefix {
                Cidr::V4 { addr, len } => self.block4.remove(&Key::new(u32::from(len), addr.octets())),
                Cidr::V6 { addr, len } => self.block6.remove(&Key::new(u32::from(len), addr.octets())),
            };
            not_found_is_false(r, names::MAP_BLOCK4)?;
        }
        Ok(())
    }

    /// Host blocks, IPv4 then IPv6.
    fn host_blocks(&self) -> Result<Vec<Block>, EnforceError> {
        let mut out = Vec::new();
        for r in self.host4.iter() {
            let (a, entry) = r.map_err(map_err("listing", names::MAP_HOST_BLOCK4))?;
            out.push(Block {
                prefix: Cidr::V4 {
                    addr: a.into(),
                    len: 32,
                },
                entry,
            });
        }
        for r in self.host6.iter() {
            let (a, entry) = r.map_err(map_err("listing", names::MAP_HOST_BLOCK6))?;
            out.push(Block {
                prefix: Cidr::V6 {
                    addr: a.into(),
                    len: 128,
                },
                entry,
            });
        }
        Ok(out)
    }

    /// Sets the filter bit of a host block (a no-op for a prefix).
    fn set_filter_bit(&mut self, prefix: &Cidr) -> Result<(), EnforceError> {
        let Some(bit) = filter_bit(prefix) else {
            return Ok(());
        };
        let err = map_err("updating", names::MAP_HOST_FILTER);
        let w = self.filter.get(&(bit / 64), 0).map_err(&err)?;
        self.filter.set(bit / 64, w | 1 << (bit % 64), 0).map_err(&err)
    }

    /// Rebuilds the filter bitmap from the host hashes, in one batched update (every word:
    /// each keeps its value or takes the new one, none is cleared on the way).
    fn sync_filter(&mut self) -> Result<(), EnforceError> {
        use std::os::fd::AsFd as _;
        let mut words = vec![0u64; netanom_common::mitigate::HOST_FILTER_WORDS as usize];
        for b in self.host_blocks()? {
            if let Some(bit) = filter_bit(&b.prefix) {
                words[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        let keys: Vec<u32> = (0..words.len() as u32).collect();
        crate::datapath::batch::update(self.filter.map().fd().as_fd(), &keys, &words).map_err(|e| {
            EnforceError::Map {
                op: "updating",
                map: names::MAP_HOST_FILTER,
                detail: e.to_string(),
            }
        })?;
        Ok(())
    }

    /// Stores the counts (see [`KernelTables::store_counts`]) and rebuilds the host-block
    /// filter. Every writer calls it after removing entries, and the agent on every
    /// maintenance pass, so that what two writers raced on is corrected within a pass.
    pub fn sync_counts(&mut self) -> Result<(), EnforceError> {
        self.store_counts()?;
        self.sync_filter()
    }

    /// Stores the number of blocklist entries and of rate limits in the control array; a
    /// zero lets the XDP program skip that lookup. Every writer stores the counts after its
    /// change.
    fn store_counts(&mut self) -> Result<(), EnforceError> {
        let prefixes = (self.block4.keys().count() + self.block6.keys().count()) as u64;
        let hosts = (self.host4.keys().count() + self.host6.keys().count()) as u64;
        let limits = self.rate.keys().count() as u64;
        for (slot, n) in [
            (Control::Blocks, prefixes + hosts),
            (Control::PrefixBlocks, prefixes),
            (Control::RateLimits, limits),
        ] {
            self.control
                .set(slot as u32, n, 0)
                .map_err(map_err("updating", names::MAP_CONTROL))?;
        }
        Ok(())
    }
}

impl Enforcer for KernelTables {
    /// Every blocklist entry, active or expired, IPv4 first.
    fn blocks(&self) -> Result<Vec<Block>, EnforceError> {
        let mut out: Vec<Block> = entries(&self.block4, &self.block6, names::MAP_BLOCK4)?
            .into_iter()
            .map(|(prefix, entry)| Block { prefix, entry })
            .chain(self.host_blocks()?)
            .collect();
        out.sort_by_key(|a| a.prefix);
        Ok(out)
    }

    /// Installs or replaces the block on `prefix`.
    fn put_block(&mut self, prefix: &Cidr, entry: &BlockEntry) -> Result<(), EnforceError> {
        let r = match prefix {
            Cidr::V4 { addr, len: 32 } => self.host4.insert(addr.octets(), entry, 0),
            Cidr::V6 { addr, len: 128 } => self.host6.insert(addr.octets(), entry, 0),
            Cidr::V4 { addr, len } => self
                .block4
                .insert(&Key::new(u32::from(*len), addr.octets()), entry, 0),
            Cidr::V6 { addr, len } => self
                .block6
                .insert(&Key::new(u32::from(*len), addr.octets()), entry, 0),
        };
        r.map_err(|e| match &e {
            // A full trie says ENOSPC, a full hash E2BIG.
            MapError::SyscallError(s)
                if matches!(s.io_error.raw_os_error(), Some(libc::ENOSPC | libc::E2BIG)) =>
            {
                EnforceError::Full {
                    capacity: netanom_common::mitigate::BLOCK_ENTRIES,
                    family: if prefix.is_v4() { "IPv4" } else { "IPv6" },
                }
            }
            _ => map_err("adding to", names::MAP_BLOCK4)(e),
        })?;
        // The bit before the counts: the XDP program looks at neither until blocks exist.
        self.set_filter_bit(prefix)?;
        self.store_counts()
    }

    /// Removes the block on exactly `prefix`; returns whether there was one.
    fn del_block(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        let r = self.remove_block(prefix)?;
        self.sync_counts()?;
        Ok(r)
    }

    /// Every allowlist entry, IPv4 first.
    fn allows(&self) -> Result<Vec<Allow>, EnforceError> {
        let mut out: Vec<Allow> = entries(&self.allow4, &self.allow6, names::MAP_ALLOW4)?
            .into_iter()
            .map(|(prefix, entry)| Allow { prefix, entry })
            .collect();
        out.sort_by_key(|a| a.prefix);
        Ok(out)
    }

    /// Adds `prefix` to the allowlist (keeping the hit count of an existing entry).
    fn put_allow(&mut self, prefix: &Cidr, origin: Origin, now_ns: u64) -> Result<(), EnforceError> {
        let hits = self
            .allows()?
            .into_iter()
            .find(|a| a.prefix == *prefix)
            .map_or(0, |a| a.entry.hits);
        let entry = AllowEntry {
            added_ns: now_ns,
            hits,
            origin: origin as u32,
            _pad: 0,
        };
        let r = match prefix {
            Cidr::V4 { addr, len } => self
                .allow4
                .insert(&Key::new(u32::from(*len), addr.octets()), entry, 0),
            Cidr::V6 { addr, len } => self
                .allow6
                .insert(&Key::new(u32::from(*len), addr.octets()), entry, 0),
        };
        r.map_err(map_err("adding to", names::MAP_ALLOW4))
    }

    /// Removes exactly `prefix` from the allowlist; returns whether it was there.
    fn del_allow(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        let r = match prefix {
            Cidr::V4 { addr, len } => self.allow4.remove(&Key::new(u32::from(*len), addr.octets())),
            Cidr::V6 { addr, len } => self.allow6.remove(&Key::new(u32::from(*len), addr.octets())),
        };
        not_found_is_false(r, names::MAP_ALLOW4)
    }

    /// Every rate limit.
    fn rate_limits(&self) -> Result<Vec<(PatternKey, RateLimit)>, EnforceError> {
        self.rate
            .iter()
            .map(|r| r.map_err(map_err("listing", names::MAP_RATE_LIMITS)))
            .collect()
    }

    /// Installs or replaces a rate limit, and tells the XDP program that limits are in force.
    fn put_rate_limit(&mut self, key: &PatternKey, limit: &RateLimit) -> Result<(), EnforceError> {
        self.rate
            .insert(key, limit, 0)
            .map_err(map_err("adding to", names::MAP_RATE_LIMITS))?;
        self.sync_counts()
    }

    fn del_rate_limit(&mut self, key: &PatternKey) -> Result<bool, EnforceError> {
        let r = not_found_is_false(self.rate.remove(key), names::MAP_RATE_LIMITS)?;
        self.sync_counts()?;
        Ok(r)
    }

    /// Removes what has expired: rate limits at once, block entries `keep_ns` after their
    /// expiry (they remember a source's strikes until then). Returns (blocks, rate limits)
    /// removed.
    fn sweep(&mut self, now_ns: u64, keep_ns: u64) -> Result<(usize, usize), EnforceError> {
        let stale: Vec<Cidr> = self
            .blocks()?
            .into_iter()
            .filter(|b| b.entry.expires_ns != 0 && b.entry.expires_ns.saturating_add(keep_ns) <= now_ns)
            .map(|b| b.prefix)
            .collect();
        for p in &stale {
            self.remove_block(p)?;
        }
        let expired: Vec<PatternKey> = self
            .rate_limits()?
            .into_iter()
            .filter(|(_, r)| !r.active(now_ns))
            .map(|(k, _)| k)
            .collect();
        for k in &expired {
            let _ = not_found_is_false(self.rate.remove(k), names::MAP_RATE_LIMITS)?;
        }
        self.sync_counts()?;
        Ok((stale.len(), expired.len()))
    }
}

/// The host-block filter bit of a /32 or /128, `None` for a wider prefix.
fn filter_bit(prefix: &Cidr) -> Option<u32> {
    let addr = match *prefix {
        Cidr::V4 { addr, len: 32 } => [u32::from_be_bytes(addr.octets()), 0, 0, 0],
        Cidr::V6 { addr, len: 128 } => {
            let o = addr.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
        _ => return None,
    };
    Some(netanom_common::mitigate::host_filter_bit(&addr))
}

/// Every (prefix, value) of an IPv4 and an IPv6 trie holding the same kind of value.
fn entries<V: aya::Pod>(
    v4: &LpmTrie<MapData, [u8; 4], V>,
    v6: &LpmTrie<MapData, [u8; 16], V>,
    map: &'static str,
) -> Result<Vec<(Cidr, V)>, EnforceError> {
    let mut out = Vec::new();
    for r in v4.iter() {
        let (k, v) = r.map_err(map_err("listing", map))?;
        out.push((
            Cidr::V4 {
                addr: k.data().into(),
                len: k.prefix_len() as u8,
            },
            v,
        ));
    }
    for r in v6.iter() {
        let (k, v) = r.map_err(map_err("listing", map))?;
        out.push((
            Cidr::V6 {
                addr: k.data().into(),
                len: k.prefix_len() as u8,
            },
            v,
        ));
    }
    Ok(out)
}

fn not_found_is_false(r: Result<(), MapError>, map: &'static str) -> Result<bool, EnforceError> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(s)) if s.io_error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(map_err("removing from", map)(e)),
    }
}
