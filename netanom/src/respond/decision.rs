//! The decision seam: what the response decided, for whoever else acts on it. The fleet
//! publishes this gateway's decisions to the other gateways; a BGP speaker announces blocks as
//! blackhole routes and rate limits as FlowSpec rules upstream. Each is a [`DecisionSink`]
//! added to the responder.
//!
//! Sinks are called on the scoring stage's thread, right after the decision is in force in
//! the local lists: a sink must never block there (hand the decision to a queue of its own
//! and count what does not fit). [`DecisionSink::maintain`] is called with the lists in force
//! once a second, for sinks that reconcile state (withdraw what expired, re-announce after a
//! reconnect, pick up blocks an operator added by hand). A sink with a cap of its own (the
//! routes a BGP speaker may announce) is asked first, [`DecisionSink::rail_hit`], and a
//! decision that would break it trips the circuit breaker as the local caps do.
use netanom_common::{
    mitigate::{BlockEntry, PatternKey, RateLimit},
    time::Instant,
};

use super::{config::Mode, enforcer::Enforcer, prefix::Cidr};
use crate::detect::Kind;

/// One decision, as it was put in force.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// `prefix` is blocked until `entry.expires_ns` (0: never).
    Block {
        prefix: Cidr,
        entry: BlockEntry,
        /// What found it.
        kind: Kind,
        /// The finding's explanation.
        reason: String,
    },
    /// Packets of the flood pattern `key` are limited until `limit.expires_ns`.
    RateLimit {
        key: PatternKey,
        limit: RateLimit,
        kind: Kind,
        reason: String,
    },
}

/// What a decision is about to put in force, before it does: a block of this prefix, or a rate
/// limit on this pattern.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Proposal<'a> {
    Block(&'a Cidr),
    RateLimit(&'a PatternKey),
}

/// Whoever acts on the response's decisions beyond the local lists.
pub trait DecisionSink: Send {
    /// `d` was just put in force at `now`. Must not block.
    fn decided(&mut self, d: &Decision, now: Instant);

    /// Once a second, with the lists in force (blocks and rate limits, active or expired but
    /// not yet removed). Must not block.
    fn maintain(&mut self, _lists: &dyn Enforcer, _now: Instant) {}

    /// A safety rail of this sink that putting `p` in force would break (such as its cap), as
    /// the text of the breaker's alert; the responder then trips the circuit breaker instead
    /// of deciding. Asked in mitigate mode with the breaker closed. Must not block.
    fn rail_hit(&mut self, _p: Proposal<'_>, _now: Instant) -> Option<String> {
        None
    }

    /// The mode configured and the mode in force (observe while the circuit breaker is open),
    /// told before every [`DecisionSink::maintain`].
    fn modes(&mut self, _configured: Mode, _effective: Mode) {}
}
