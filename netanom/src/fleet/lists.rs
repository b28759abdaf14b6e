//! The fleet thread's view of the pinned lists: the blocklist and allowlist read once and
//! kept in step with its own writes, re-read every [`REFRESH`] (the responder and the operator
//! change them too), so that applying a decision costs a few map operations, not a read of
//! every entry (reading an LPM trie's keys costs the square of its size). The entry on a
//! prefix is always asked of the kernel (one lookup: the longest match, which is the entry on
//! exactly that prefix when there is one), so a block made or changed since the last read is
//! never overwritten unseen; the cache only counts the fleet's blocks and holds the allowlist.
//!
//! The kernel's entry counts (a zero lets the XDP program skip the lookup) are stored after
//! the first block this thread adds; the responder stores them again every second.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use netanom_common::mitigate::{BlockEntry, Origin, PatternKey, RateLimit};

use super::apply::Lists;
use crate::respond::{Cidr, EnforceError, Enforcer as _, KernelTables};

/// How long the cached lists are trusted.
const REFRESH: Duration = Duration::from_secs(5);

/// The cached view (see the module documentation).
pub struct Cached {
    pub tables: KernelTables,
    blocks: HashMap<Cidr, BlockEntry>,
    allows: Vec<Cidr>,
    loaded: Option<Instant>,
    /// The kernel's block count is known not to be 0 (so the XDP program looks blocks up).
    counted: bool,
}

impl Cached {
    pub fn new(tables: KernelTables) -> Cached {
        Cached {
            tables,
            blocks: HashMap::new(),
            allows: Vec::new(),
            loaded: None,
            counted: false,
        }
    }

    fn fresh(&mut self) -> Result<(), EnforceError> {
        if self.loaded.is_some_and(|t| t.elapsed() < REFRESH) {
            return Ok(());
        }
        self.reload()
    }

    fn reload(&mut self) -> Result<(), EnforceError> {
        self.blocks = self
            .tables
            .blocks()?
            .into_iter()
            .map(|b| (b.prefix, b.entry))
            .collect();
        self.allows = self.tables.allows()?.into_iter().map(|a| a.prefix).collect();
        self.loaded = Some(Instant::now());
        Ok(())
    }

    /// Active blocks applied from the fleet (as of the cache).
    pub fn fleet_count(&mut self, now_ns: u64) -> usize {
        let _ = self.fresh();
        let fleet = Origin::Fleet as u32;
        self.blocks
            .values()
            .filter(|e| e.origin == fleet && e.active(now_ns))
            .count()
    }

    /// After a write: the first makes the counts non-zero at once (the XDP program skips an
    /// empty list); the responder keeps them right from then on.
    fn counts_changed(&mut self) -> Result<(), EnforceError> {
        if !self.counted {
            self.tables.sync_counts()?;
            self.counted = true;
        }
        Ok(())
    }
}

impl Lists for Cached {
    fn block_on(&mut self, prefix: &Cidr) -> Result<Option<BlockEntry>, EnforceError> {
        self.fresh()?;
        let Some(found) = self.tables.block_covering(prefix)? else {
            self.blocks.remove(prefix);
            return Ok(None);
        };
        if self.blocks.contains_key(prefix) {
            // Known to be on exactly this prefix: the longest match is it, as it is now.
            self.blocks.insert(*prefix, found);
            return Ok(Some(found));
        }
        // A wider entry, or one on this prefix made since the last read.
        self.reload()?;
        Ok(self.blocks.get(prefix).copied())
    }

    fn fleet_blocks(&mut self, except: &Cidr, now_ns: u64) -> Result<usize, EnforceError> {
        self.fresh()?;
        let fleet = Origin::Fleet as u32;
        Ok(self
            .blocks
            .iter()
            .filter(|(p, e)| *p != except && e.origin == fleet && e.active(now_ns))
            .count())
    }

    fn allowed(&mut self) -> Result<Vec<Cidr>, EnforceError> {
        self.fresh()?;
        Ok(self.allows.clone())
    }

    fn set_block(&mut self, prefix: &Cidr, entry: &BlockEntry) -> Result<(), EnforceError> {
        self.tables.put_block(prefix, entry)?;
        self.blocks.insert(*prefix, *entry);
        self.counts_changed()
    }

    fn remove_block(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        self.blocks.remove(prefix);
        self.tables.del_block(prefix)
    }

    fn limits(&mut self) -> Result<Vec<(PatternKey, RateLimit)>, EnforceError> {
        self.tables.rate_limits()
    }

    fn set_limit(&mut self, key: &PatternKey, limit: &RateLimit) -> Result<(), EnforceError> {
        self.tables.put_rate_limit(key, limit)?;
        self.tables.sync_counts()
    }
}
