//! Acting on a destination under a flood: a rate limit on the flood's pattern (destination,
//! port, protocol, SYN flag for SYN floods), so that thousands of spoofed sources are not
//! blocked one by one. A pattern too vague to limit, or one past `max_rate_limits`, is
//! reported only.
use std::net::IpAddr;

use netanom_common::{
    mitigate::{PatternKey, RateLimit},
    time::{Instant, secs_to_ns},
};

use super::{
    alert::{Action, RateLimitInfo},
    config::Mode,
    decision::{Decision, Proposal},
    enforcer::{EnforceError, pattern_key},
    responder::Responder,
    source::unspecified,
};
use crate::{
    detect::{Finding, Subject},
    features::identity::{proto_name, tcp_flags_letters},
    telemetry::ResponseCounters,
};

/// A victim finding's pattern.
struct Pattern {
    dst: IpAddr,
    port: u16,
    proto: u8,
    tcp_flags: u8,
    limitable: bool,
}

impl Responder {
    pub(super) fn on_victim(&mut self, f: &Finding, now: Instant) -> Result<(), EnforceError> {
        let Subject::Victim {
            dst,
            port,
            proto,
            tcp_flags,
            limitable,
        } = f.subject.clone()
        else {
            return Ok(());
        };
        let p = Pattern {
            dst,
            port,
            proto,
            tcp_flags,
            limitable,
        };
        let key = pattern_key(dst, port, proto, tcp_flags);
        let limits = self.enforcer.rate_limits()?;
        let active = |r: &RateLimit| r.active(now.mono_ns);
        if limits.iter().any(|(k, r)| *k == key && active(r)) {
            return Ok(()); // already limited
        }
        let info = RateLimitInfo {
            dest_ip: dst,
            dest_port: (port != 0).then_some(port),
            proto,
            tcp_flags: tcp_flags_letters(tcp_flags),
            pps: self.cfg.rate_limit_pps,
            burst: u64::from(self.cfg.rate_limit_burst),
            ttl_s: self.cfg.rate_limit_ttl as u64,
        };
        let mut mode = self.effective_mode(now);
        let in_force = limits.iter().filter(|(_, r)| active(r)).count() as u32;
        let limiting = mode == Mode::Mitigate && limitable && in_force < self.cfg.max_rate_limits;
        if limiting && let Some(why) = self.sink_rail_hit(Proposal::RateLimit(&key), now) {
            self.trip(&why, now);
            mode = Mode::Observe;
            self.ctx.mode = Mode::Observe;
        }
        if mode == Mode::Observe || !limitable || in_force >= self.cfg.max_rate_limits {
            self.report_victim(f, &p, info, mode, now);
            return Ok(());
        }
        self.limit(f, &p, &key, info, now)
    }

    /// Installs the rate limit on `key` and writes its alert.
    fn limit(
        &mut self,
        f: &Finding,
        p: &Pattern,
        key: &PatternKey,
        info: RateLimitInfo,
        now: Instant,
    ) -> Result<(), EnforceError> {
        let limit = RateLimit::new(
            self.cfg.rate_limit_pps,
            self.cfg.rate_limit_burst,
            now.mono_ns,
            now.mono_ns + secs_to_ns(self.cfg.rate_limit_ttl),
        );
        self.enforcer.put_rate_limit(key, &limit)?;
        self.decided(
            Decision::RateLimit {
                key: *key,
                limit,
                kind: f.kind,
                reason: f.reason.clone(),
            },
            now,
        );
        ResponseCounters::bump(&self.counters.rate_limits_added);
        log::warn!(
            "rate-limited {} packets to {} port {} to {} per second for {} s: {}",
            proto_name(p.proto),
            p.dst,
            p.port,
            self.cfg.rate_limit_pps,
            self.cfg.rate_limit_ttl,
            f.reason
        );
        let a = self
            .base_alert(f, Action::Blocked, unspecified(p.dst), p.dst, p.proto, now)
            .with_ports(None, (p.port != 0).then_some(p.port))
            .with_rate_limit(info);
        self.write(&a);
        Ok(())
    }

    /// The alert for a victim that is not limited: observe mode (`would-block`), or no pattern
    /// to limit, or the cap on rate limits reached (`allowed`, alert only). Reported once per
    /// rate-limit TTL.
    fn report_victim(&mut self, f: &Finding, p: &Pattern, info: RateLimitInfo, mode: Mode, now: Instant) {
        if mode == Mode::Observe {
            ResponseCounters::bump(&self.counters.would_block);
        }
        let key = format!("victim {} {} {} {}", p.dst, p.port, p.proto, p.tcp_flags);
        if self.quiet(key, now, self.cfg.rate_limit_ttl) {
            return;
        }
        let why = if mode == Mode::Observe {
            String::new()
        } else if !p.limitable {
            " (no specific pattern to rate-limit: alert only)".into()
        } else {
            format!(
                " (mitigation.max_rate_limits = {} reached: alert only)",
                self.cfg.max_rate_limits
            )
        };
        let action = if mode == Mode::Observe {
            Action::WouldBlock
        } else {
            Action::Allowed
        };
        let mut a = self
            .base_alert(f, action, unspecified(p.dst), p.dst, p.proto, now)
            .with_ports(None, (p.port != 0).then_some(p.port))
            .with_reason(format!("{}{why}", f.reason));
        if p.limitable {
            a = a.with_rate_limit(info);
        }
        self.write(&a);
    }
}
