//! Applying another gateway's decision here, through this gateway's own rails:
//!
//! - its own decisions coming back, and those of gateways outside `fleet.trust`, are ignored
//!   (counted); with `fleet.apply_remote` off, or in observe mode (the circuit breaker open
//!   included), nothing is applied;
//! - the allowlist wins (a block overlapping any allowlist entry is not applied), and so do the
//!   host's addresses and default gateways, whatever the allowlist says;
//! - prefixes wider than /8 (IPv4) or /16 (IPv6) are never applied, as `netanom block add`
//!   refuses them;
//! - at most `fleet.max_remote_blocks` active blocks from the fleet, and
//!   `mitigation.max_rate_limits` rate limits in all;
//! - expired decisions are not applied. Expiries are absolute (the deciding gateway's Unix
//!   clock), so a block lasts as long everywhere whatever the delivery delay. Clocks may differ
//!   by up to [`SKEW_S`]: a block never lasts more than its TTL plus that here, and a decision
//!   dated more than that ahead of this clock is rejected (`skew`);
//! - idempotent: a decision that changes nothing here (the same block, or a longer one, is in
//!   force) is a `duplicate`, so delivering it twice, or replaying the stream, changes nothing.
use std::{net::IpAddr, time::Duration};

use netanom_common::{
    mitigate::{BlockEntry, Origin, PatternKey, RateLimit},
    time::{Instant, NS_PER_S},
};

use super::{
    config::FleetConfig,
    message::{Action, DecisionMsg},
};
use crate::respond::{
    Cidr, EnforceError, Enforcer,
    enforcer::{NewBlock, pattern_key},
};

/// Clock skew tolerated between gateways, seconds.
pub const SKEW_S: f64 = 30.0;
/// Expiries within this of each other are the same (the clocks' conversions differ by less).
const SAME_EXPIRY_NS: u64 = NS_PER_S;
/// The widest prefixes applied (as `netanom block add`).
const WIDEST_V4: u8 = 8;
const WIDEST_V6: u8 = 16;

/// Why a decision was not applied (indexes `telemetry::fleet::IGNORED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    Own = 0,
    Untrusted = 1,
    Expired = 2,
    Duplicate = 3,
    Allowlisted = 4,
    Protected = 5,
    TooWide = 6,
    Cap = 7,
    Observe = 8,
    ApplyOff = 9,
}

impl Ignored {
    pub fn name(self) -> &'static str {
        crate::telemetry::fleet::IGNORED[self as usize]
    }
}

/// What became of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Ignored(Ignored),
    /// Dated more than [`SKEW_S`] ahead of this clock.
    Skewed,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Ignored(i) => i.name(),
            Outcome::Skewed => "skew",
        }
    }
}

/// What the rules read and change of this gateway's lists. Every [`Enforcer`] is one; the
/// fleet's thread uses a cached view ([`super::lists::Cached`]) so that a burst of decisions
/// does not read the whole blocklist for each.
pub trait Lists {
    /// The entry on exactly `prefix`.
    fn block_on(&mut self, prefix: &Cidr) -> Result<Option<BlockEntry>, EnforceError>;
    /// Active blocks applied from the fleet, other than on `except`.
    fn fleet_blocks(&mut self, except: &Cidr, now_ns: u64) -> Result<usize, EnforceError>;
    /// The allowlist's prefixes.
    fn allowed(&mut self) -> Result<Vec<Cidr>, EnforceError>;
    fn set_block(&mut self, prefix: &Cidr, entry: &BlockEntry) -> Result<(), EnforceError>;
    fn remove_block(&mut self, prefix: &Cidr) -> Result<bool, EnforceError>;
    fn limits(&mut self) -> Result<Vec<(PatternKey, RateLimit)>, EnforceError>;
    fn set_limit(&mut self, key: &PatternKey, limit: &RateLimit) -> Result<(), EnforceError>;
}

impl<E: Enforcer + ?Sized> Lists for E {
    fn block_on(&mut self, prefix: &Cidr) -> Result<Option<BlockEntry>, EnforceError> {
        self.block_entry(prefix)
    }
    fn fleet_blocks(&mut self, except: &Cidr, now_ns: u64) -> Result<usize, EnforceError> {
        let fleet = Origin::Fleet as u32;
        Ok(self
            .blocks()?
            .iter()
            .filter(|b| b.prefix != *except && b.active(now_ns) && b.entry.origin == fleet)
            .count())
    }
    fn allowed(&mut self) -> Result<Vec<Cidr>, EnforceError> {
        Ok(self.allows()?.into_iter().map(|a| a.prefix).collect())
    }
    fn set_block(&mut self, prefix: &Cidr, entry: &BlockEntry) -> Result<(), EnforceError> {
        self.put_block(prefix, entry)
    }
    fn remove_block(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        self.del_block(prefix)
    }
    fn limits(&mut self) -> Result<Vec<(PatternKey, RateLimit)>, EnforceError> {
        self.rate_limits()
    }
    fn set_limit(&mut self, key: &PatternKey, limit: &RateLimit) -> Result<(), EnforceError> {
        self.put_rate_limit(key, limit)
    }
}

/// What the rules need to know of this gateway.
pub struct Rules<'a> {
    pub cfg: &'a FleetConfig,
    /// This gateway's id.
    pub me: &'a str,
    /// Host addresses and default gateways: never blocked.
    pub protected: &'a [IpAddr],
    /// Mitigate mode, with the circuit breaker closed.
    pub mitigating: bool,
    pub max_rate_limits: u32,
}

/// The reason text of a block applied from `gateway` (`block list` shows it, and reads the
/// gateway back from it).
pub fn fleet_reason(gateway: &str, reason: &str) -> String {
    format!("{gateway}: {reason}")
}

/// The gateway a fleet block came from, out of its reason text.
pub fn gateway_of_reason(reason: &str) -> Option<&str> {
    reason.split_once(": ").map(|(g, _)| g)
}

impl Rules<'_> {
    /// Applies `m` to `lists` at `now`, or says why not.
    pub fn apply(
        &self,
        lists: &mut dyn Lists,
        m: &DecisionMsg,
        now: Instant,
    ) -> Result<Outcome, EnforceError> {
        if let Some(i) = self.gate(m) {
            return Ok(Outcome::Ignored(i));
        }
        let now_s = now.unix_ns as f64 / 1e9;
        if m.decided_at > now_s + SKEW_S {
            return Ok(Outcome::Skewed);
        }
        let Some(expires_ns) = self.expiry(m, now) else {
            return Ok(Outcome::Ignored(Ignored::Expired));
        };
        let out = match m.action {
            Action::Block => self.block(lists, m, expires_ns, now)?,
            Action::Unblock => unblock(lists, m)?,
            Action::RateLimit => self.rate_limit(lists, m, expires_ns, now)?,
        };
        Ok(out.map_or(Outcome::Applied, Outcome::Ignored))
    }

    /// The rules about who sent it and whether anything is applied at all.
    fn gate(&self, m: &DecisionMsg) -> Option<Ignored> {
        if m.gateway == self.me {
            Some(Ignored::Own)
        } else if !self.cfg.trusts(&m.gateway) {
            Some(Ignored::Untrusted)
        } else if !self.cfg.apply_remote {
            Some(Ignored::ApplyOff)
        } else if !self.mitigating {
            Some(Ignored::Observe)
        } else {
            None
        }
    }

    /// The local (monotonic) expiry of `m`: `Some(0)` never, `None` already expired. Capped at
    /// its TTL plus the skew tolerance from now.
    fn expiry(&self, m: &DecisionMsg, now: Instant) -> Option<u64> {
        if m.action == Action::Unblock {
            return Some(0);
        }
        let Some(at) = m.expires_at else {
            return Some(0);
        };
        let left_s = at - now.unix_ns as f64 / 1e9;
        if left_s <= 0.0 {
            return None;
        }
        let left_s = left_s.min(f64::from(m.ttl_s) + SKEW_S);
        Some(now.mono_ns + (left_s * 1e9) as u64)
    }

    fn block(
        &self,
        lists: &mut dyn Lists,
        m: &DecisionMsg,
        expires_ns: u64,
        now: Instant,
    ) -> Result<Option<Ignored>, EnforceError> {
        let Some(prefix) = m.prefix else {
            return Ok(Some(Ignored::Duplicate));
        };
        if let Some(i) = self.refused(lists, &prefix)? {
            return Ok(Some(i));
        }
        let old = lists.block_on(&prefix)?;
        if let Some(o) = old
            && o.active(now.mono_ns)
            && covers_until(o.expires_ns, expires_ns)
        {
            return Ok(Some(Ignored::Duplicate));
        }
        if lists.fleet_blocks(&prefix, now.mono_ns)? >= self.cfg.max_remote_blocks as usize {
            return Ok(Some(Ignored::Cap));
        }
        let reason = fleet_reason(&m.gateway, &m.reason);
        let entry = BlockEntry {
            // The origin's absolute expiry (mapped to this clock), not now + TTL.
            expires_ns,
            ..NewBlock {
                now_ns: now.mono_ns,
                ttl: Duration::from_secs(u64::from(m.ttl_s)),
                strikes: m.strikes.max(old.map_or(1, |e| e.strikes)).max(1),
                origin: Origin::Fleet,
                reason: &reason,
            }
            .entry(old)
        };
        lists.set_block(&prefix, &entry)?;
        Ok(None)
    }

    /// Why a block of `prefix` may never be applied here, if it may not.
    fn refused(&self, lists: &mut dyn Lists, prefix: &Cidr) -> Result<Option<Ignored>, EnforceError> {
        let widest = if prefix.is_v4() { WIDEST_V4 } else { WIDEST_V6 };
        if prefix.len() < widest {
            return Ok(Some(Ignored::TooWide));
        }
        if self.protected.iter().any(|ip| prefix.contains(*ip)) {
            return Ok(Some(Ignored::Protected));
        }
        if lists.allowed()?.iter().any(|a| a.overlaps(prefix)) {
            return Ok(Some(Ignored::Allowlisted));
        }
        Ok(None)
    }

    fn rate_limit(
        &self,
        lists: &mut dyn Lists,
        m: &DecisionMsg,
        expires_ns: u64,
        now: Instant,
    ) -> Result<Option<Ignored>, EnforceError> {
        let Some(p) = &m.rate_limit else {
            return Ok(Some(Ignored::Duplicate));
        };
        let key = pattern_key(p.dst, p.port, p.proto, p.tcp_flags);
        let limits = lists.limits()?;
        if let Some((_, l)) = limits.iter().find(|(k, _)| *k == key)
            && l.active(now.mono_ns)
            && covers_until(l.expires_ns, expires_ns)
        {
            return Ok(Some(Ignored::Duplicate));
        }
        let active = limits
            .iter()
            .filter(|(k, l)| *k != key && l.active(now.mono_ns))
            .count();
        if active >= self.max_rate_limits as usize {
            return Ok(Some(Ignored::Cap));
        }
        let limit = RateLimit::new(p.pps, p.burst, now.mono_ns, expires_ns);
        lists.set_limit(&key, &limit)?;
        Ok(None)
    }
}

/// An unblock removes a block the fleet put here, never one of this gateway's own.
fn unblock(lists: &mut dyn Lists, m: &DecisionMsg) -> Result<Option<Ignored>, EnforceError> {
    let Some(prefix) = m.prefix else {
        return Ok(Some(Ignored::Duplicate));
    };
    match lists.block_on(&prefix)? {
        Some(e) if e.origin == Origin::Fleet as u32 => {
            lists.remove_block(&prefix)?;
            Ok(None)
        }
        Some(_) => Ok(Some(Ignored::Protected)),
        None => Ok(Some(Ignored::Duplicate)),
    }
}

/// Whether an entry expiring at `have` (0: never) already lasts until `want` (0: never).
fn covers_until(have: u64, want: u64) -> bool {
    have == 0 || (want != 0 && have + SAME_EXPIRY_NS >= want)
}
