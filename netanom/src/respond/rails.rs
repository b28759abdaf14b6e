//! The safety rails: at most `mitigation.max_blocks` active blocks (besides those applied from
//! the fleet, capped by `fleet.max_remote_blocks`) and
//! `max_new_blocks_per_minute` new ones, and the caps of the decision sinks (the routes a BGP
//! speaker announces, `bgp.max_routes`). Hitting any trips the circuit breaker, which writes
//! an alert and falls back to observe mode for `breaker_cooldown` seconds. The caps still apply
//! when it closes: a new block that would again exceed one trips it again.
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::Ordering,
};

use netanom_common::time::{Instant, NS_PER_S, secs_to_ns};

use super::{
    alert::Action, config::Mode, decision::Proposal, enforcer::EnforceError, prefix::Cidr,
    responder::Responder,
};
use crate::{detect::Kind, telemetry::ResponseCounters};

/// The window of `max_new_blocks_per_minute`, nanoseconds.
const MINUTE_NS: u64 = 60 * NS_PER_S;

impl Responder {
    /// Which safety rail a new block of `prefix` would break, if any.
    pub(super) fn rail_hit(&mut self, prefix: &Cidr, now: Instant) -> Result<Option<String>, EnforceError> {
        while self
            .recent_blocks
            .front()
            .is_some_and(|t| now.since_ns(*t) >= MINUTE_NS)
        {
            self.recent_blocks.pop_front();
        }
        if self.recent_blocks.len() as u32 >= self.cfg.max_new_blocks_per_minute {
            return Ok(Some(format!(
                "{} new blocks within a minute (mitigation.max_new_blocks_per_minute = {})",
                self.recent_blocks.len(),
                self.cfg.max_new_blocks_per_minute
            )));
        }
        // Blocks applied from the fleet have their own cap (`fleet.max_remote_blocks`): a
        // fleet-wide incident must not trip this gateway's breaker.
        let fleet = netanom_common::mitigate::Origin::Fleet as u32;
        let active = self
            .enforcer
            .blocks()?
            .iter()
            .filter(|b| b.active(now.mono_ns) && b.entry.origin != fleet)
            .count() as u32;
        if active >= self.cfg.max_blocks {
            return Ok(Some(format!(
                "{active} active blocks (mitigation.max_blocks = {})",
                self.cfg.max_blocks
            )));
        }
        Ok(self.sink_rail_hit(Proposal::Block(prefix), now))
    }

    /// Opens the circuit breaker because of `why`, and says so in an alert.
    pub(super) fn trip(&mut self, why: &str, now: Instant) {
        let until =
            (self.cfg.breaker_cooldown > 0.0).then(|| now.plus_ns(secs_to_ns(self.cfg.breaker_cooldown)));
        self.breaker_until = Some(until);
        ResponseCounters::bump(&self.counters.breaker_trips);
        self.counters.breaker_open.store(true, Ordering::Relaxed);
        self.counters.effective_mitigate.store(false, Ordering::Relaxed);
        let how_long = match until {
            Some(_) => format!("for {:.0} s", self.cfg.breaker_cooldown),
            None => "until the configuration is reloaded (SIGHUP)".into(),
        };
        let reason = format!("circuit breaker tripped: {why}; falling back to observe mode {how_long}");
        log::error!("{reason}");
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let a = self
            .ctx
            .alert(Kind::CircuitBreaker, Action::WouldBlock, now.unix_ns, any, any, 0)
            .with_mode(Mode::Observe)
            .with_reason(reason);
        self.write(&a);
    }
}
