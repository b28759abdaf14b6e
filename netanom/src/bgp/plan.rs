//! What should be announced: the blocks and rate limits in force, as routes, minus what the
//! safety rules exclude.
//!
//! Never announced:
//! - a route overlapping an allowlisted prefix (`allowlist.prefixes`, `netanom allow add`, the
//!   host's addresses and gateways as the allowlist holds them): a blackhole upstream cannot
//!   spare part of its prefix as the local allowlist does;
//! - a route covering a protected address: the host's own addresses and default gateways
//!   (whatever `[allowlist]` says), the speaker's BGP peers, and the speaker itself;
//! - a blackhole wider than `bgp.widest_prefix_v4`/`_v6`;
//! - anything beyond `bgp.max_routes` (routes already announced keep their place).
use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use netanom_common::mitigate::{PatternKey, RateLimit};

use super::{
    config::{BgpConfig, FlowSpecAction},
    route::{FlowAction, FlowMatch, Route, RouteKey, communities},
};
use crate::{
    features::identity::addr,
    respond::{Block, Cidr, Proposal},
};

/// Routes by what identifies them on the speaker.
pub type Routes = BTreeMap<RouteKey, Route>;

/// Why a block or rate limit in force is not announced (indexes
/// `telemetry::bgp::EXCLUSIONS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusion {
    Allowlisted = 0,
    Protected = 1,
    PrefixLength = 2,
    Cap = 3,
}

/// The addresses no route may cover, refreshed by the speaker's thread (host addresses and
/// gateways change, peers are read from the speaker) and read by the planner.
#[derive(Debug, Default)]
pub struct Protected {
    addrs: Mutex<Arc<Vec<IpAddr>>>,
}

impl Protected {
    pub fn new(addrs: Vec<IpAddr>) -> Protected {
        Protected {
            addrs: Mutex::new(Arc::new(addrs)),
        }
    }

    pub fn get(&self) -> Arc<Vec<IpAddr>> {
        self.addrs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, mut addrs: Vec<IpAddr>) {
        addrs.sort_unstable();
        addrs.dedup();
        *self.addrs.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(addrs);
    }
}

/// What a block or rate limit becomes.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Announce(Route),
    Excluded(Exclusion),
    /// Its kind is not announced (`bgp.blackhole` or `bgp.flowspec` off).
    Off,
}

/// Turns blocks and rate limits into routes under the configuration and the safety rules.
pub struct Planner<'a> {
    pub cfg: &'a BgpConfig,
    /// The allowlist's prefixes.
    pub allows: &'a [Cidr],
    /// Addresses no route may cover ([`Protected`]).
    pub protected: &'a [IpAddr],
}

impl Planner<'_> {
    /// The blackhole route for a block of `prefix`.
    pub fn blackhole(&self, prefix: &Cidr) -> Verdict {
        if !self.cfg.blackhole {
            return Verdict::Off;
        }
        let v4 = prefix.is_v4();
        let len = prefix.len().min(self.cfg.blackhole_prefix(v4));
        if len < self.cfg.widest_prefix(v4) {
            return Verdict::Excluded(Exclusion::PrefixLength);
        }
        let prefix = Cidr::covering(prefix.addr(), len);
        if let Some(e) = self.unsafe_prefix(&prefix) {
            return Verdict::Excluded(e);
        }
        let next_hop = if v4 {
            IpAddr::V4(self.cfg.next_hop_v4)
        } else {
            IpAddr::V6(self.cfg.next_hop_v6)
        };
        Verdict::Announce(Route::Blackhole {
            prefix,
            next_hop,
            communities: communities(&self.cfg.communities, true),
        })
    }

    /// The FlowSpec rule for a rate limit on `key`, at `limit`'s rate.
    pub fn flowspec(&self, key: &PatternKey, limit: &RateLimit) -> Verdict {
        if !self.cfg.flowspec {
            return Verdict::Off;
        }
        let rule = flow_match(key);
        if let Some(e) = self.unsafe_prefix(&rule.dst) {
            return Verdict::Excluded(e);
        }
        let rate = match self.cfg.flowspec_action {
            FlowSpecAction::Discard => 0.0,
            FlowSpecAction::Rate => {
                let pps = 1e9 / limit.interval_ns.max(1) as f64;
                (pps * f64::from(self.cfg.flowspec_packet_bytes)) as f32
            }
        };
        Verdict::Announce(Route::FlowSpec {
            rule,
            action: FlowAction::RateBytes(rate),
            communities: communities(&self.cfg.communities, false),
        })
    }

    /// What `p` would be announced as (its rate does not matter for the key).
    pub fn proposal(&self, p: Proposal<'_>) -> Verdict {
        match p {
            Proposal::Block(prefix) => self.blackhole(prefix),
            Proposal::RateLimit(key) => self.flowspec(key, &RateLimit::new(1.0, 1, 0, 0)),
        }
    }

    fn unsafe_prefix(&self, prefix: &Cidr) -> Option<Exclusion> {
        if self.allows.iter().any(|a| a.overlaps(prefix)) {
            Some(Exclusion::Allowlisted)
        } else if self.protected.iter().any(|ip| prefix.contains(*ip)) {
            Some(Exclusion::Protected)
        } else {
            None
        }
    }

    /// The routes for the active `blocks` and `limits` at `now_ns`, each kept if it passes the
    /// rules, at most `bgp.max_routes`: those in `prior` first, then the others in order.
    /// With `may_add` false (the circuit breaker is open), only routes of `prior` are kept.
    /// Returns the routes and how many were excluded, by [`Exclusion`].
    pub fn plan(
        &self,
        blocks: &[Block],
        limits: &[(PatternKey, RateLimit)],
        now_ns: u64,
        prior: &Routes,
        may_add: bool,
    ) -> (Routes, [u64; 4]) {
        let mut excluded = [0u64; 4];
        let mut candidates = Routes::new();
        let verdicts = blocks
            .iter()
            .filter(|b| b.active(now_ns))
            .map(|b| self.blackhole(&b.prefix))
            .chain(
                limits
                    .iter()
                    .filter(|(_, l)| l.active(now_ns))
                    .map(|(k, l)| self.flowspec(k, l)),
            );
        for v in verdicts {
            match v {
                Verdict::Announce(r) => {
                    candidates.insert(r.key(), r);
                }
                Verdict::Excluded(e) => excluded[e as usize] += 1,
                Verdict::Off => {}
            }
        }
        let (old, new): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|(k, _)| prior.contains_key(k));
        let mut out = Routes::new();
        let max = self.cfg.max_routes as usize;
        for (k, r) in old.into_iter().chain(new.into_iter().filter(|_| may_add)) {
            if out.len() < max {
                out.insert(k, r);
            } else {
                excluded[Exclusion::Cap as usize] += 1;
            }
        }
        (out, excluded)
    }
}

/// The FlowSpec match of a kernel pattern key.
pub fn flow_match(key: &PatternKey) -> FlowMatch {
    FlowMatch::new(addr(key.family, &key.addr), key.proto, key.port, key.tcp_flags)
}
