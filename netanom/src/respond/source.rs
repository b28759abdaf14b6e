//! Acting on an offending source: skip it when already blocked, spare it when allowlisted,
//! report it in observe mode (or with the breaker open), else block its prefix, with a longer
//! TTL for a repeat offender.
use std::{net::IpAddr, time::Duration};

use netanom_common::{
    mitigate::{BlockEntry, Origin},
    time::{Instant, secs_to_ns},
};

use super::{
    alert::{Action, BlockInfo},
    config::Mode,
    decision::Decision,
    enforcer::{EnforceError, NewBlock},
    prefix::Cidr,
    responder::Responder,
};
use crate::{
    detect::{Finding, Subject},
    telemetry::ResponseCounters,
};

impl Responder {
    pub(super) fn on_source(&mut self, ip: IpAddr, f: &Finding, now: Instant) -> Result<(), EnforceError> {
        let (dst, proto) = f.flow.as_ref().map_or((unspecified(ip), 0), |e| (e.dst, e.proto));
        // A beacon's alert names the channel (inside host → peer) even when the peer is what
        // gets blocked.
        let (src, dst) = match f.subject {
            Subject::Channel { inside, peer, .. } => (inside, peer),
            _ => (ip, dst),
        };
        let prefix = Cidr::covering(ip, self.cfg.block_prefix(ip.is_ipv4()));
        let existing = self.enforcer.block_entry(&prefix)?;
        if existing.is_some_and(|e| e.active(now.mono_ns)) {
            return Ok(()); // already blocked
        }
        if let Some(allow) = self.enforcer.allowed_by(ip)? {
            ResponseCounters::bump(&self.counters.allowlisted);
            if !self.quiet(format!("allow {prefix}"), now, self.cfg.block_ttl) {
                let a = self
                    .base_alert(f, Action::Allowed, src, dst, proto, now)
                    .with_reason(format!("{} (allowlisted by {allow}: never blocked)", f.reason));
                self.write(&a);
            }
            return Ok(());
        }
        // Repeat offenders: strikes within `forget_after` of the last block's expiry count.
        let forget_ns = secs_to_ns(self.cfg.forget_after);
        let repeats = existing
            .filter(|e| e.expires_ns.saturating_add(forget_ns) > now.mono_ns)
            .map_or(0, |e| e.strikes);
        let ttl = self.cfg.block_ttl_for(repeats);
        let mut mode = self.effective_mode(now);
        if mode == Mode::Mitigate
            && let Some(why) = self.rail_hit(&prefix, now)?
        {
            self.trip(&why, now);
            mode = Mode::Observe;
            // This finding's alert too: the breaker just put the agent in observe mode.
            self.ctx.mode = Mode::Observe;
        }
        let info = BlockInfo::new(prefix.to_string(), ttl.as_secs(), repeats + 1, now.unix_ns);
        if mode == Mode::Observe {
            ResponseCounters::bump(&self.counters.would_block);
            if !self.quiet(format!("would {prefix}"), now, ttl.as_secs_f64()) {
                let a = self
                    .base_alert(f, Action::WouldBlock, src, dst, proto, now)
                    .with_block(info);
                self.write(&a);
            }
            return Ok(());
        }
        self.block(&prefix, ttl, repeats + 1, existing, f, now)?;
        let a = self
            .base_alert(f, Action::Blocked, src, dst, proto, now)
            .with_block(info);
        self.write(&a);
        Ok(())
    }

    /// Installs the block of `prefix` for `ttl` (strike `strikes`), keeping the drop counts of
    /// an earlier entry.
    fn block(
        &mut self,
        prefix: &Cidr,
        ttl: Duration,
        strikes: u32,
        existing: Option<BlockEntry>,
        f: &Finding,
        now: Instant,
    ) -> Result<(), EnforceError> {
        let entry = NewBlock {
            now_ns: now.mono_ns,
            ttl,
            strikes,
            origin: Origin::Agent,
            reason: f.kind.as_str(),
        }
        .entry(existing);
        self.enforcer.put_block(prefix, &entry)?;
        self.decided(
            Decision::Block {
                prefix: *prefix,
                entry,
                kind: f.kind,
                reason: f.reason.clone(),
            },
            now,
        );
        self.recent_blocks.push_back(now);
        ResponseCounters::bump(&self.counters.blocks_added);
        log::warn!(
            "blocked {prefix} for {} s (strike {strikes}): {}",
            ttl.as_secs(),
            f.reason
        );
        Ok(())
    }
}

/// The unspecified address of `like`'s family (an alert's address when no single one is to
/// blame).
pub(super) fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}
