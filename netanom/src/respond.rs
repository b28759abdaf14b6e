//! Response: what the agent does about each finding, and the alert it writes for it.
//!
//! In order: an entity already handled (blocked, or reported and still within its would-be
//! TTL) is skipped; an allowlisted source gets an `allowed` alert and is never blocked; in
//! observe mode, or while the circuit breaker is open, a `would-block` alert; in mitigate mode
//! a block of the offender's prefix (escalating TTL for repeat offenders) or, for a flood from
//! many sources, a rate limit on the flood's pattern. Safety rails: at most
//! `mitigation.max_blocks` active blocks and `max_new_blocks_per_minute` new ones; hitting
//! either trips the circuit breaker, which falls back to observe mode (with an alert) for
//! `breaker_cooldown` seconds.
use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use netanom_common::mitigate::{Origin, PatternKey, RateLimit};

use crate::{
    alerts::{self, Action, AlertContext, AlertSink, BlockInfo, FeatureContribution, Kind, RateLimitInfo},
    cidr::Cidr,
    config::{MitigationConfig, Mode},
    detect::{Finding, Subject},
    drain,
    tables::{Tables, TablesError, reason_bytes},
};

/// Counters the metrics and the status file read.
#[derive(Debug, Default)]
pub struct MitigationCounters {
    pub blocks_added: AtomicU64,
    pub blocks_expired: AtomicU64,
    pub blocks_active: AtomicU64,
    pub would_block: AtomicU64,
    pub allowlisted: AtomicU64,
    pub rate_limits_added: AtomicU64,
    pub rate_limits_active: AtomicU64,
    pub breaker_trips: AtomicU64,
    pub breaker_open: AtomicBool,
    pub alerts: AtomicU64,
    pub alert_errors: AtomicU64,
    /// Findings handled, by kind (index in [`Kind::ALL`]).
    pub findings: [AtomicU64; Kind::ALL.len()],
}

impl MitigationCounters {
    /// Findings handled, all kinds.
    pub fn findings_total(&self) -> u64 {
        self.findings.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// The agent's response state.
pub struct Responder {
    mode: Mode,
    cfg: MitigationConfig,
    tables: Tables,
    sink: AlertSink,
    ctx: AlertContext,
    counters: Arc<MitigationCounters>,
    /// The circuit breaker: `None` closed; `Some(Some(t))` open until `t`; `Some(None)` open
    /// until the configuration is reloaded (`mitigation.breaker_cooldown = 0`).
    breaker_until: Option<Option<Instant>>,
    recent_blocks: VecDeque<Instant>,
    /// Entities reported without a block (observe mode, allowlisted, breaker): not reported
    /// again until this time.
    quiet_until: HashMap<String, Instant>,
    last_sweep: Instant,
    last_sweep_mono: u64,
    write_failed: bool,
}

fn mono_ns() -> u64 {
    drain::mono_now_ns()
}

impl Responder {
    pub fn new(
        mode: Mode,
        cfg: MitigationConfig,
        tables: Tables,
        sink: AlertSink,
        ctx: AlertContext,
        counters: Arc<MitigationCounters>,
    ) -> Responder {
        Responder {
            mode,
            cfg,
            tables,
            sink,
            ctx,
            counters,
            breaker_until: None,
            recent_blocks: VecDeque::new(),
            quiet_until: HashMap::new(),
            last_sweep: Instant::now(),
            last_sweep_mono: mono_ns(),
            write_failed: false,
        }
    }

    /// Applies a reloaded configuration (the circuit breaker is reset).
    pub fn reconfigure(&mut self, mode: Mode, cfg: MitigationConfig, bundle: String) {
        self.mode = mode;
        self.cfg = cfg;
        self.ctx.bundle = bundle;
        self.breaker_until = None;
        self.counters.breaker_open.store(false, Ordering::Relaxed);
    }

    pub fn tables(&mut self) -> &mut Tables {
        &mut self.tables
    }

    /// The mode in force: the configured one, unless the circuit breaker is open.
    pub fn effective_mode(&mut self, now: Instant) -> Mode {
        if let Some(until) = self.breaker_until {
            match until {
                Some(t) if now >= t => {
                    log::info!(
                        "circuit breaker closed after its cooldown: back to {} mode",
                        self.mode.name()
                    );
                    self.breaker_until = None;
                    self.counters.breaker_open.store(false, Ordering::Relaxed);
                }
                _ => return Mode::Observe,
            }
        }
        self.mode
    }

    fn write(&mut self, a: &alerts::Alert) {
        match self.sink.write(a) {
            Ok(()) => {
                self.counters.alerts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.alert_errors.fetch_add(1, Ordering::Relaxed);
                if !self.write_failed {
                    log::error!("writing an alert failed: {e}; alerts are still counted");
                    self.write_failed = true;
                }
            }
        }
    }

    /// Flushes written alerts (called every tick and before exit).
    pub fn flush(&mut self) {
        if let (Err(e), false) = (self.sink.flush(), self.write_failed) {
            log::error!("flushing alerts failed: {e}");
            self.write_failed = true;
        }
    }

    fn quiet(&mut self, key: String, now: Instant, secs: f64) -> bool {
        if self.quiet_until.get(&key).is_some_and(|t| now < *t) {
            return true;
        }
        if self.quiet_until.len() > 100_000 {
            self.quiet_until.retain(|_, t| now < *t);
        }
        self.quiet_until
            .insert(key, now + Duration::from_secs_f64(secs.max(1.0)));
        false
    }

    /// Handles findings: decides, acts, writes one alert per decision.
    pub fn handle(&mut self, findings: Vec<Finding>, now: Instant) {
        for f in findings {
            let kind = Kind::ALL.iter().position(|k| *k == f.kind).unwrap_or(0);
            self.counters.findings[kind].fetch_add(1, Ordering::Relaxed);
            self.ctx.mode = match self.effective_mode(now) {
                Mode::Observe => alerts::Mode::Observe,
                Mode::Mitigate => alerts::Mode::Mitigate,
            };
            let r = match &f.subject {
                Subject::Source(ip) => self.on_source(*ip, &f, now),
                Subject::Victim { .. } => self.on_victim(&f, now),
            };
            if let Err(e) = r {
                log::error!("acting on \"{}\" failed: {e}", f.reason);
            }
        }
    }

    fn base_alert(&self, f: &Finding, action: Action, src: IpAddr, dst: IpAddr, proto: u8) -> alerts::Alert {
        let mut a = self
            .ctx
            .alert(f.kind, action, alerts::now_ns(), src, dst, proto)
            .with_reason(&f.reason);
        if !f.rates.is_empty() {
            a = a.with_aggregate(f.rates.iter().map(|(n, v, _)| (n.clone(), *v)));
            for (n, _, t) in &f.rates {
                a = a.with_threshold(n.clone(), *t);
            }
            a = a.with_top_features(f.rates.iter().map(|(n, v, t)| {
                FeatureContribution::new(n.clone(), *v, if *t > 0.0 { v / t } else { 0.0 })
            }));
        }
        if let Some(e) = &f.flow {
            a = a.with_ports(Some(e.src_port), Some(e.dst_port));
            for (m, s, t) in &e.scores {
                a = a.with_score(m.clone(), *s).with_threshold(m.clone(), *t);
            }
            a = a.with_top_features(
                e.top_features
                    .iter()
                    .map(|(n, v, z)| FeatureContribution::new(n.clone(), *v, *z)),
            );
        }
        a
    }

    fn on_source(&mut self, ip: IpAddr, f: &Finding, now: Instant) -> Result<(), TablesError> {
        let (dst, proto) = f.flow.as_ref().map_or((unspecified(ip), 0), |e| (e.dst, e.proto));
        let prefix = Cidr::covering(ip, self.cfg.block_prefix(ip.is_ipv4()));
        let now_mono = mono_ns();
        let existing = self.tables.block_entry(&prefix)?;
        if existing.is_some_and(|e| e.active(now_mono)) {
            return Ok(()); // already blocked
        }
        if let Some(allow) = self.tables.allowed_by(ip)? {
            self.counters.allowlisted.fetch_add(1, Ordering::Relaxed);
            if !self.quiet(format!("allow {prefix}"), now, self.cfg.block_ttl) {
                let a = self
                    .base_alert(f, Action::Allowed, ip, dst, proto)
                    .with_reason(format!("{} (allowlisted by {allow}: never blocked)", f.reason));
                self.write(&a);
            }
            return Ok(());
        }
        // Repeat offenders: strikes within `forget_after` of the last block's expiry count.
        let forget_ns = (self.cfg.forget_after * 1e9) as u64;
        let repeats = existing
            .filter(|e| e.expires_ns.saturating_add(forget_ns) > now_mono)
            .map_or(0, |e| e.strikes);
        let ttl = self.cfg.block_ttl_for(repeats);
        let mut mode = self.effective_mode(now);
        if mode == Mode::Mitigate
            && let Some(why) = self.rail_hit(now)?
        {
            self.trip(&why, now);
            mode = Mode::Observe;
            // This finding's alert too: the breaker just put the agent in observe mode.
            self.ctx.mode = alerts::Mode::Observe;
        }
        if mode == Mode::Observe {
            self.counters.would_block.fetch_add(1, Ordering::Relaxed);
            if !self.quiet(format!("would {prefix}"), now, ttl.as_secs_f64()) {
                let a = self
                    .base_alert(f, Action::WouldBlock, ip, dst, proto)
                    .with_block(block_info(&prefix, ttl, repeats + 1));
                self.write(&a);
            }
            return Ok(());
        }
        let entry = netanom_common::mitigate::BlockEntry {
            expires_ns: now_mono + ttl.as_nanos() as u64,
            added_ns: now_mono,
            packets: existing.map_or(0, |e| e.packets),
            bytes: existing.map_or(0, |e| e.bytes),
            ttl_s: ttl.as_secs() as u32,
            strikes: repeats + 1,
            origin: Origin::Agent as u32,
            _pad: 0,
            reason: reason_bytes(f.kind.as_str()),
        };
        self.tables.put_block(&prefix, &entry)?;
        self.recent_blocks.push_back(now);
        self.counters.blocks_added.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "blocked {prefix} for {} s (strike {}): {}",
            ttl.as_secs(),
            repeats + 1,
            f.reason
        );
        let a = self
            .base_alert(f, Action::Blocked, ip, dst, proto)
            .with_block(block_info(&prefix, ttl, repeats + 1));
        self.write(&a);
        Ok(())
    }

    /// Which safety rail a new block would break, if any.
    fn rail_hit(&mut self, now: Instant) -> Result<Option<String>, TablesError> {
        while self
            .recent_blocks
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
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
        let now_mono = mono_ns();
        let active = self
            .tables
            .blocks()?
            .iter()
            .filter(|b| b.active(now_mono))
            .count() as u32;
        if active >= self.cfg.max_blocks {
            return Ok(Some(format!(
                "{active} active blocks (mitigation.max_blocks = {})",
                self.cfg.max_blocks
            )));
        }
        Ok(None)
    }

    fn trip(&mut self, why: &str, now: Instant) {
        let until = (self.cfg.breaker_cooldown > 0.0)
            .then(|| now + Duration::from_secs_f64(self.cfg.breaker_cooldown));
        self.breaker_until = Some(until);
        self.counters.breaker_trips.fetch_add(1, Ordering::Relaxed);
        self.counters.breaker_open.store(true, Ordering::Relaxed);
        let how_long = match until {
            Some(_) => format!("for {:.0} s", self.cfg.breaker_cooldown),
            None => "until the configuration is reloaded (SIGHUP)".into(),
        };
        let reason = format!("circuit breaker tripped: {why}; falling back to observe mode {how_long}");
        log::error!("{reason}");
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let a = self
            .ctx
            .alert(
                Kind::CircuitBreaker,
                Action::WouldBlock,
                alerts::now_ns(),
                any,
                any,
                0,
            )
            .with_mode(alerts::Mode::Observe)
            .with_reason(reason);
        self.write(&a);
    }

    fn on_victim(&mut self, f: &Finding, now: Instant) -> Result<(), TablesError> {
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
        let key = pattern_key(dst, port, proto, tcp_flags);
        let now_mono = mono_ns();
        if self
            .tables
            .rate_limits()?
            .iter()
            .any(|(k, r)| *k == key && r.active(now_mono))
        {
            return Ok(()); // already limited
        }
        let info = RateLimitInfo {
            dest_ip: dst,
            dest_port: (port != 0).then_some(port),
            proto,
            tcp_flags: alerts::tcp_flags_letters(tcp_flags),
            pps: self.cfg.rate_limit_pps,
            burst: u64::from(self.cfg.rate_limit_burst),
            ttl_s: self.cfg.rate_limit_ttl as u64,
        };
        let any = unspecified(dst);
        let mode = self.effective_mode(now);
        let active = self
            .tables
            .rate_limits()?
            .iter()
            .filter(|(_, r)| r.active(now_mono))
            .count() as u32;
        let can_limit = limitable && active < self.cfg.max_rate_limits;
        if mode == Mode::Observe || !can_limit {
            if mode == Mode::Observe {
                self.counters.would_block.fetch_add(1, Ordering::Relaxed);
            }
            if !self.quiet(
                format!("victim {dst} {port} {proto} {tcp_flags}"),
                now,
                self.cfg.rate_limit_ttl,
            ) {
                let why = if mode == Mode::Observe {
                    String::new()
                } else if !limitable {
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
                    .base_alert(f, action, any, dst, proto)
                    .with_ports(None, (port != 0).then_some(port))
                    .with_reason(format!("{}{why}", f.reason));
                if limitable {
                    a = a.with_rate_limit(info);
                }
                self.write(&a);
            }
            return Ok(());
        }
        let ttl_ns = (self.cfg.rate_limit_ttl * 1e9) as u64;
        let limit = RateLimit::new(
            self.cfg.rate_limit_pps,
            self.cfg.rate_limit_burst,
            now_mono,
            now_mono + ttl_ns,
        );
        self.tables.put_rate_limit(&key, &limit)?;
        self.counters.rate_limits_added.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "rate-limited {} packets to {dst} port {port} to {} per second for {} s: {}",
            alerts::proto_name(proto),
            self.cfg.rate_limit_pps,
            self.cfg.rate_limit_ttl,
            f.reason
        );
        let a = self
            .base_alert(f, Action::Blocked, any, dst, proto)
            .with_ports(None, (port != 0).then_some(port))
            .with_rate_limit(info);
        self.write(&a);
        Ok(())
    }

    /// Removes expired rate limits and long-expired blocks, counts blocks that expired since
    /// the last call, refreshes the gauges. Cheap enough to call every aggregate tick; runs at
    /// most once a second.
    pub fn maintain(&mut self, now: Instant) -> Result<(), TablesError> {
        if now.duration_since(self.last_sweep) < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_sweep = now;
        let now_mono = mono_ns();
        let blocks = self.tables.blocks()?;
        let expired = blocks
            .iter()
            .filter(|b| {
                b.entry.expires_ns != 0
                    && b.entry.expires_ns > self.last_sweep_mono
                    && b.entry.expires_ns <= now_mono
            })
            .count() as u64;
        self.last_sweep_mono = now_mono;
        self.counters.blocks_expired.fetch_add(expired, Ordering::Relaxed);
        let forget_ns = (self.cfg.forget_after * 1e9) as u64;
        self.tables.sweep(now_mono, forget_ns)?;
        // The sweep removed only expired entries: count the active ones from the same listing.
        let active = blocks.iter().filter(|b| b.active(now_mono)).count();
        self.counters
            .blocks_active
            .store(active as u64, Ordering::Relaxed);
        let limits = self
            .tables
            .rate_limits()?
            .iter()
            .filter(|(_, r)| r.active(now_mono))
            .count();
        self.counters
            .rate_limits_active
            .store(limits as u64, Ordering::Relaxed);
        self.effective_mode(now);
        Ok(())
    }
}

/// The alert's `netanom.block` for a block (or would-be block) of `prefix`, added now.
fn block_info(prefix: &Cidr, ttl: Duration, strikes: u32) -> BlockInfo {
    BlockInfo::new(prefix.to_string(), ttl.as_secs(), strikes, alerts::now_ns())
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// The kernel's pattern key for a destination service and TCP flags.
pub fn pattern_key(dst: IpAddr, port: u16, proto: u8, tcp_flags: u8) -> PatternKey {
    let (addr, family) = match dst {
        IpAddr::V4(a) => ([u32::from_be_bytes(a.octets()), 0, 0, 0], 4),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], 6)
        }
    };
    PatternKey {
        addr,
        port,
        proto,
        tcp_flags: tcp_flags & netanom_common::mitigate::PATTERN_FLAGS,
        family,
        _pad: [0; 3],
    }
}

/// Puts the agent's allowlist in the kernel: `prefixes` (from the configuration) with origin
/// `Agent`, the host's addresses and gateways with theirs. Entries of those origins no longer
/// wanted are removed; manual entries are left alone. Returns how many entries it wrote.
pub fn sync_allowlist(tables: &mut Tables, wanted: &[(Cidr, Origin)]) -> Result<usize, TablesError> {
    let now = mono_ns();
    let current = tables.allows()?;
    for a in &current {
        let managed = matches!(
            Origin::from_u32(a.entry.origin),
            Some(Origin::Agent | Origin::HostAddress | Origin::Gateway)
        );
        if managed && !wanted.iter().any(|(c, _)| *c == a.prefix) {
            tables.del_allow(&a.prefix)?;
        }
    }
    for (c, o) in wanted {
        let same = current
            .iter()
            .any(|a| a.prefix == *c && a.entry.origin == *o as u32);
        let manual = current
            .iter()
            .any(|a| a.prefix == *c && a.entry.origin == Origin::Manual as u32);
        if !same && !manual {
            tables.put_allow(c, *o, now)?;
        }
    }
    Ok(wanted.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_keys_match_the_kernel_layout() {
        let k = pattern_key("198.18.1.2".parse().unwrap(), 80, 6, 0x12);
        assert_eq!(k.addr[0], u32::from_be_bytes([198, 18, 1, 2]));
        assert_eq!(k.tcp_flags, 0x12 & netanom_common::mitigate::PATTERN_FLAGS);
        assert_eq!(k.family, 4);
        let k = pattern_key("2001:db8::1".parse().unwrap(), 53, 17, 0);
        assert_eq!(k.addr, [0x2001_0db8, 0, 0, 1]);
        assert_eq!(k.family, 6);
    }
}
