//! The pinned mitigation maps: blocklist, allowlist and rate limits under the pin directory
//! (default `/sys/fs/bpf/netanom`), read and written by the agent and by the
//! `netanom block|allow|status` commands, with or without a running agent.
//!
//! The maps are created from the same program object the agent loads (so their definitions
//! cannot drift), pinned on first use, and reused by every later agent and command. A pinned
//! map whose layout does not match this binary's is refused with what to do about it.
use std::{
    fs, io,
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, lpm_trie::Key};
use netanom_common::{
    mitigate::{AllowEntry, BlockEntry, Control, Origin, PatternKey, REASON_LEN, RateLimit},
    names,
};
use thiserror::Error;

use crate::cidr::Cidr;

#[derive(Debug, Error)]
pub enum TablesError {
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

fn map_err(op: &'static str, map: &'static str) -> impl Fn(MapError) -> TablesError {
    move |e| TablesError::Map {
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
pub fn check_pins(dir: &Path) -> Result<bool, TablesError> {
    let mut all = true;
    for name in names::PINNED_MAPS {
        let path = dir.join(name);
        if !path.exists() {
            all = false;
            continue;
        }
        let info = aya::maps::MapInfo::from_pin(&path).map_err(|e| TablesError::PinDir {
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
                return Err(TablesError::Incompatible {
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
pub fn ensure_dir(dir: &Path) -> Result<(), TablesError> {
    fs::create_dir_all(dir).map_err(|e| TablesError::PinDir {
        dir: dir.display().to_string(),
        detail: e.to_string(),
    })
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

/// Handles on the pinned maps.
pub struct Tables {
    dir: PathBuf,
    block4: LpmTrie<MapData, [u8; 4], BlockEntry>,
    block6: LpmTrie<MapData, [u8; 16], BlockEntry>,
    allow4: LpmTrie<MapData, [u8; 4], AllowEntry>,
    allow6: LpmTrie<MapData, [u8; 16], AllowEntry>,
    rate: HashMap<MapData, PatternKey, RateLimit>,
    control: Array<MapData, u64>,
}

fn open_pin(dir: &Path, name: &'static str) -> Result<MapData, TablesError> {
    MapData::from_pin(dir.join(name)).map_err(map_err("opening", name))
}

impl Tables {
    /// Opens the maps pinned in `dir`; fails if they are not there.
    pub fn open(dir: &Path) -> Result<Tables, TablesError> {
        if !check_pins(dir)? {
            return Err(TablesError::NotPinned {
                dir: dir.display().to_string(),
            });
        }
        let lpm = |name| -> Result<Map, TablesError> { Ok(Map::LpmTrie(open_pin(dir, name)?)) };
        let mut t = Tables {
            dir: dir.to_owned(),
            block4: LpmTrie::try_from(lpm(names::MAP_BLOCK4)?)
                .map_err(map_err("opening", names::MAP_BLOCK4))?,
            block6: LpmTrie::try_from(lpm(names::MAP_BLOCK6)?)
                .map_err(map_err("opening", names::MAP_BLOCK6))?,
            allow4: LpmTrie::try_from(lpm(names::MAP_ALLOW4)?)
                .map_err(map_err("opening", names::MAP_ALLOW4))?,
            allow6: LpmTrie::try_from(lpm(names::MAP_ALLOW6)?)
                .map_err(map_err("opening", names::MAP_ALLOW6))?,
            rate: HashMap::try_from(Map::HashMap(open_pin(dir, names::MAP_RATE_LIMITS)?))
                .map_err(map_err("opening", names::MAP_RATE_LIMITS))?,
            control: Array::try_from(Map::Array(open_pin(dir, names::MAP_CONTROL)?))
                .map_err(map_err("opening", names::MAP_CONTROL))?,
        };
        // Lists pinned by an older agent may lack the counts: store them now.
        t.sync_counts()?;
        Ok(t)
    }

    /// Opens the maps pinned in `dir`, creating and pinning them first if they are missing.
    pub fn open_or_create(dir: &Path) -> Result<Tables, TablesError> {
        ensure_dir(dir)?;
        if !check_pins(dir)? {
            crate::datapath::create_pins(dir).map_err(|e| TablesError::PinDir {
                dir: dir.display().to_string(),
                detail: e.to_string(),
            })?;
        }
        Tables::open(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every blocklist entry, active or expired, IPv4 first.
    pub fn blocks(&self) -> Result<Vec<Block>, TablesError> {
        let mut out: Vec<Block> = entries(&self.block4, &self.block6, names::MAP_BLOCK4)?
            .into_iter()
            .map(|(prefix, entry)| Block { prefix, entry })
            .collect();
        out.sort_by_key(|a| a.prefix);
        Ok(out)
    }

    /// The entry for exactly `prefix`, if any (not the longest match).
    pub fn block_entry(&self, prefix: &Cidr) -> Result<Option<BlockEntry>, TablesError> {
        Ok(self
            .blocks()?
            .into_iter()
            .find(|b| b.prefix == *prefix)
            .map(|b| b.entry))
    }

    /// Installs or replaces the block on `prefix`.
    pub fn put_block(&mut self, prefix: &Cidr, entry: &BlockEntry) -> Result<(), TablesError> {
        let r = match prefix {
            Cidr::V4 { addr, len } => self
                .block4
                .insert(&Key::new(u32::from(*len), addr.octets()), entry, 0),
            Cidr::V6 { addr, len } => self
                .block6
                .insert(&Key::new(u32::from(*len), addr.octets()), entry, 0),
        };
        r.map_err(|e| match &e {
            MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOSPC) => {
                TablesError::Full {
                    capacity: netanom_common::mitigate::BLOCK_ENTRIES,
                    family: if prefix.is_v4() { "IPv4" } else { "IPv6" },
                }
            }
            _ => map_err("adding to", names::MAP_BLOCK4)(e),
        })?;
        self.sync_counts()
    }

    /// Removes the block on exactly `prefix`; returns whether there was one.
    pub fn del_block(&mut self, prefix: &Cidr) -> Result<bool, TablesError> {
        let r = self.remove_block(prefix)?;
        self.sync_counts()?;
        Ok(r)
    }

    fn remove_block(&mut self, prefix: &Cidr) -> Result<bool, TablesError> {
        let r = match prefix {
            Cidr::V4 { addr, len } => self.block4.remove(&Key::new(u32::from(*len), addr.octets())),
            Cidr::V6 { addr, len } => self.block6.remove(&Key::new(u32::from(*len), addr.octets())),
        };
        not_found_is_false(r, names::MAP_BLOCK4)
    }

    /// Every allowlist entry, IPv4 first.
    pub fn allows(&self) -> Result<Vec<Allow>, TablesError> {
        let mut out: Vec<Allow> = entries(&self.allow4, &self.allow6, names::MAP_ALLOW4)?
            .into_iter()
            .map(|(prefix, entry)| Allow { prefix, entry })
            .collect();
        out.sort_by_key(|a| a.prefix);
        Ok(out)
    }

    /// Adds `prefix` to the allowlist (keeping the hit count of an existing entry).
    pub fn put_allow(&mut self, prefix: &Cidr, origin: Origin, now_ns: u64) -> Result<(), TablesError> {
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
    pub fn del_allow(&mut self, prefix: &Cidr) -> Result<bool, TablesError> {
        let r = match prefix {
            Cidr::V4 { addr, len } => self.allow4.remove(&Key::new(u32::from(*len), addr.octets())),
            Cidr::V6 { addr, len } => self.allow6.remove(&Key::new(u32::from(*len), addr.octets())),
        };
        not_found_is_false(r, names::MAP_ALLOW4)
    }

    /// The allowlist entry covering `ip` (longest prefix), if any.
    pub fn allowed_by(&self, ip: IpAddr) -> Result<Option<Cidr>, TablesError> {
        let covering = self.allows()?.into_iter().filter(|a| a.prefix.contains(ip));
        Ok(covering.max_by_key(|a| a.prefix.len()).map(|a| a.prefix))
    }

    /// Every rate limit.
    pub fn rate_limits(&self) -> Result<Vec<(PatternKey, RateLimit)>, TablesError> {
        self.rate
            .iter()
            .map(|r| r.map_err(map_err("listing", names::MAP_RATE_LIMITS)))
            .collect()
    }

    /// Installs or replaces a rate limit, and tells the XDP program that limits are in force.
    pub fn put_rate_limit(&mut self, key: &PatternKey, limit: &RateLimit) -> Result<(), TablesError> {
        self.rate
            .insert(key, limit, 0)
            .map_err(map_err("adding to", names::MAP_RATE_LIMITS))?;
        self.sync_counts()
    }

    pub fn del_rate_limit(&mut self, key: &PatternKey) -> Result<bool, TablesError> {
        let r = not_found_is_false(self.rate.remove(key), names::MAP_RATE_LIMITS)?;
        self.sync_counts()?;
        Ok(r)
    }

    /// Stores the number of blocklist entries and of rate limits in the control array; a
    /// zero lets the XDP program skip that lookup. Every writer stores the counts after its
    /// change, and the agent again on every maintenance pass, so that a count two writers
    /// raced on is corrected within a pass.
    pub fn sync_counts(&mut self) -> Result<(), TablesError> {
        let blocks = (self.block4.keys().count() + self.block6.keys().count()) as u64;
        let limits = self.rate.keys().count() as u64;
        for (slot, n) in [(Control::Blocks, blocks), (Control::RateLimits, limits)] {
            self.control
                .set(slot as u32, n, 0)
                .map_err(map_err("updating", names::MAP_CONTROL))?;
        }
        Ok(())
    }

    /// Removes what has expired: rate limits at once, block entries `keep_ns` after their
    /// expiry (they remember a source's strikes until then). Returns (blocks, rate limits)
    /// removed.
    pub fn sweep(&mut self, now_ns: u64, keep_ns: u64) -> Result<(usize, usize), TablesError> {
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

/// Every (prefix, value) of an IPv4 and an IPv6 trie holding the same kind of value.
fn entries<V: aya::Pod>(
    v4: &LpmTrie<MapData, [u8; 4], V>,
    v6: &LpmTrie<MapData, [u8; 16], V>,
    map: &'static str,
) -> Result<Vec<(Cidr, V)>, TablesError> {
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

fn not_found_is_false(r: Result<(), MapError>, map: &'static str) -> Result<bool, TablesError> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(s)) if s.io_error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(map_err("removing from", map)(e)),
    }
}
