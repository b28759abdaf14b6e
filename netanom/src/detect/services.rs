//! Repeated access to one service: password guessing, credential stuffing. Protocol-agnostic:
//! per (source, destination service), the TCP connections that ended recently, and how many
//! of them look like *attempts*: short (a handshake, a few exchanges and the end, within
//! `detection.brute_short`), small (at most `detection.brute_small_bytes` of payload both
//! ways) and not a download (the server sent at most [`MAX_ANSWER_RATIO`] times what the
//! client sent, or under a kilobyte in all): a login's banner, credentials and refusal.
//!
//! A source is guessing when attempts are at least `brute_min_share` of its connections to
//! the service and, within a window, their count reaches a floor and exceeds
//! `learned_margin` times what normal sources do to services on that port (a learned level per
//! port and window):
//! - a burst of parallel attempts, at least [`MIN_PARALLEL`] at once, as guessing tools make
//!   and people do not: `brute_parallel_connections` within `brute_window`;
//! - one attempt after another, fast: `brute_min_connections` within `brute_window`;
//! - slowly (a tool with one task, waiting between guesses): `brute_slow_min_connections`
//!   within `brute_slow_window`.
//!
//! Users who reconnect are not guessing: an SSH client's multiplexed sessions share one
//! connection, a browser's keep-alive connections last and carry pages, an HTTP client's
//! repeated requests download more than they send, a monitoring probe is learned for its
//! port.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use netanom_common::{
    flow::{EndReason, FlowRecord, TCP_RST, TCP_SYN},
    parse::IPPROTO_TCP,
    time::{Instant, secs_to_ns},
};

use super::{
    detector::Detector,
    finding::{Finding, FlowEvidence, Subject},
    kind::Kind,
    learned::Rate,
};
use crate::features::identity::FlowIdentity;

/// Connections kept per (source, service), newest last: the floors cannot be higher.
pub const MAX_CONNS: usize = 32;
/// At least this many short connections open at once make a burst of parallel attempts.
pub const MIN_PARALLEL: usize = 4;
/// An attempt's server sends at most this many times the client's payload.
pub const MAX_ANSWER_RATIO: u64 = 3;
/// ...or the whole exchange is under this many bytes of payload.
const TINY_EXCHANGE: u64 = 1024;
/// Ports with a learned level of their own (the rest share one).
const MAX_PORTS: usize = 4096;

/// The flag index of TCP flags in `DirStats::flags` (FIN, SYN, RST, ...).
fn flag_index(flag: u8) -> usize {
    flag.trailing_zeros() as usize
}

/// One ended connection, as the window needs it.
#[derive(Clone, Copy, Debug)]
struct Conn {
    first_ns: u64,
    last_ns: u64,
    /// Payload both ways, saturated.
    payload: u32,
    /// Short, small and not a download: what a login attempt looks like.
    short_small: bool,
    /// The server sent a RST.
    server_reset: bool,
}

/// One (source, service)'s recent connections.
#[derive(Debug, Default)]
pub(super) struct Access {
    conns: VecDeque<Conn>,
    /// Until when it has been reported (not again before).
    reported_until_ns: u64,
}

/// Per-port learned levels: short connections per (source, service) in the fast and slow
/// windows.
#[derive(Debug, Default)]
pub(super) struct ServiceLevels {
    ports: HashMap<u16, [Rate; 2]>,
}

impl ServiceLevels {
    fn rates(&mut self, port: u16) -> &mut [Rate; 2] {
        let key = if self.ports.len() < MAX_PORTS || self.ports.contains_key(&port) {
            port
        } else {
            0
        };
        self.ports.entry(key).or_insert_with(|| {
            [
                Rate::new("brute_short_connections", 0.0),
                Rate::new("brute_short_connections_slow", 0.0),
            ]
        })
    }

    /// Every learned level (for decay).
    pub(super) fn all(&mut self) -> impl Iterator<Item = &mut Rate> {
        self.ports.values_mut().flat_map(|r| r.iter_mut())
    }
}

/// What one window of one (source, service) shows.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    conns: usize,
    short_small: usize,
    resets: usize,
    parallel: usize,
    payload_median: u64,
}

fn tally(conns: &VecDeque<Conn>, since_ns: u64) -> Tally {
    let recent: Vec<&Conn> = conns.iter().filter(|c| c.last_ns >= since_ns).collect();
    let mut t = Tally {
        conns: recent.len(),
        ..Tally::default()
    };
    let mut short: Vec<&Conn> = recent.iter().copied().filter(|c| c.short_small).collect();
    t.short_small = short.len();
    t.resets = recent.iter().filter(|c| c.server_reset).count();
    let mut sizes: Vec<u64> = short.iter().map(|c| u64::from(c.payload)).collect();
    sizes.sort_unstable();
    t.payload_median = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
    // Most short connections open at one moment: sweep their starts and ends.
    short.sort_by_key(|c| c.first_ns);
    let mut ends: Vec<u64> = Vec::new();
    for c in short {
        ends.retain(|e| *e >= c.first_ns);
        ends.push(c.last_ns);
        t.parallel = t.parallel.max(ends.len());
    }
    t
}

impl Detector {
    /// Counts the ended TCP connections of `records` per (source, service); returns the
    /// sources guessing at a service.
    pub fn observe_connections(&mut self, records: &[FlowRecord], now: Instant) -> Vec<Finding> {
        let mut out = Vec::new();
        let frozen = self.frozen(now);
        for r in records {
            let Some((id, conn)) = self.connection(r) else {
                continue;
            };
            let key = (id.src_ip, id.dst_ip, id.dst_port);
            if !self.access.contains_key(&key) && self.access.len() >= self.cfg.brute_max_pairs as usize {
                self.forget_idle_access(now);
                if self.access.len() >= self.cfg.brute_max_pairs as usize {
                    continue;
                }
            }
            let a = self.access.entry(key).or_default();
            if a.conns.len() >= MAX_CONNS {
                a.conns.pop_front();
            }
            a.conns.push_back(conn);
            if let Some(f) = self.judge_access(key, &id, now) {
                out.push(f);
            } else if !frozen {
                self.learn_access(key, now);
            }
        }
        if !out.is_empty() {
            self.mark(now);
        }
        out
    }

    /// A TCP connection that got past the handshake, carried data both ways and ended, with
    /// what the window needs. (Half-open floods and connect scans exchange no data.)
    fn connection(&self, r: &FlowRecord) -> Option<(FlowIdentity, Conn)> {
        let id = FlowIdentity::of_record(r);
        let v = &r.value;
        let answered =
            v.fwd.flags[flag_index(TCP_SYN)] > 0 && v.fwd.payload_bytes > 0 && v.bwd.payload_bytes > 0;
        let ended = matches!(id.reason, Some(EndReason::Fin | EndReason::Rst));
        if id.protocol != IPPROTO_TCP || !answered || !ended {
            return None;
        }
        let payload = v.fwd.payload_bytes + v.bwd.payload_bytes;
        let duration_ns = v.last_ns.saturating_sub(v.first_ns);
        let c = &self.cfg;
        let answer_sized =
            v.bwd.payload_bytes <= MAX_ANSWER_RATIO * v.fwd.payload_bytes || payload < TINY_EXCHANGE;
        Some((
            id,
            Conn {
                first_ns: v.first_ns,
                last_ns: v.last_ns,
                short_small: duration_ns <= secs_to_ns(c.brute_short)
                    && payload <= c.brute_small_bytes
                    && answer_sized,
                server_reset: v.bwd.flags[flag_index(TCP_RST)] > 0,
                payload: u32::try_from(payload).unwrap_or(u32::MAX),
            },
        ))
    }

    /// The finding about `key`'s source, the first time one of its windows crosses the limits.
    fn judge_access(
        &mut self,
        key: (IpAddr, IpAddr, u16),
        id: &FlowIdentity,
        now: Instant,
    ) -> Option<Finding> {
        let (fast, slow) = (self.cfg.brute_window, self.cfg.brute_slow_window);
        let margin = self.cfg.learned_margin;
        let last = self.access.get(&key)?.conns.back()?.last_ns;
        let mut hit = None;
        for (w, window_s) in [(0, fast), (1, slow)] {
            let t = tally(
                &self.access[&key].conns,
                last.saturating_sub(secs_to_ns(window_s)),
            );
            let floor = match w {
                0 if t.parallel >= MIN_PARALLEL => self.cfg.brute_parallel_connections,
                0 => self.cfg.brute_min_connections,
                _ => self.cfg.brute_slow_min_connections,
            };
            let threshold = self.services.rates(key.2)[w].threshold_over(f64::from(floor), margin);
            let share = t.short_small as f64 / t.conns.max(1) as f64;
            if t.short_small as f64 >= threshold && share >= self.cfg.brute_min_share {
                hit = Some((t, window_s, threshold, share));
                break;
            }
        }
        let (t, window_s, threshold, share) = hit?;
        let a = self.access.get_mut(&key)?;
        if a.reported_until_ns > now.mono_ns {
            return None;
        }
        a.reported_until_ns = now.mono_ns + secs_to_ns(window_s);
        let limits = (window_s, threshold, share, self.cfg.brute_min_share);
        Some(brute_finding(key, id, t, limits, self.cfg.brute_short))
    }

    /// Learns the fast and slow counts of a (source, service) that is not guessing.
    fn learn_access(&mut self, key: (IpAddr, IpAddr, u16), _now: Instant) {
        let Some(a) = self.access.get(&key) else {
            return;
        };
        let Some(last) = a.conns.back().map(|c| c.last_ns) else {
            return;
        };
        let counts = [self.cfg.brute_window, self.cfg.brute_slow_window]
            .map(|w| tally(&a.conns, last.saturating_sub(secs_to_ns(w))).short_small as f64);
        let rates = self.services.rates(key.2);
        for (r, n) in rates.iter_mut().zip(counts) {
            r.learned.observe(n);
        }
    }

    /// Drops the (source, service) pairs with no connection within the slow window.
    fn forget_idle_access(&mut self, now: Instant) {
        let keep_ns = secs_to_ns(self.cfg.brute_slow_window);
        self.access.retain(|_, a| {
            a.conns
                .back()
                .is_some_and(|c| now.mono_ns.saturating_sub(c.last_ns) < keep_ns)
        });
    }
}

/// The brute-force finding, with its evidence in words and numbers.
fn brute_finding(
    (src, dst, port): (IpAddr, IpAddr, u16),
    id: &FlowIdentity,
    t: Tally,
    (window_s, threshold, share, min_share): (f64, f64, f64, f64),
    short_s: f64,
) -> Finding {
    let service = match dst {
        IpAddr::V6(a) => format!("[{a}]:{port}"),
        IpAddr::V4(a) => format!("{a}:{port}"),
    };
    let reason = format!(
        "{} connections to {service} in {window_s:.0} s, {} of them login-like (ended within \
         {short_s:.0} s after little data, median {:.1} kB, the server answering no more than \
         it was sent), {} reset by the server, up to {} at once",
        t.conns,
        t.short_small,
        t.payload_median as f64 / 1e3,
        t.resets,
        t.parallel
    );
    Finding {
        kind: Kind::BruteForce,
        subject: Subject::Source(src),
        reason,
        rates: vec![
            ("brute_short_connections".into(), t.short_small as f64, threshold),
            ("brute_short_share".into(), share, min_share),
            (
                "brute_parallel_connections".into(),
                t.parallel as f64,
                MIN_PARALLEL as f64,
            ),
        ],
        flow: Some(FlowEvidence {
            src,
            src_port: id.src_port,
            dst,
            dst_port: port,
            proto: IPPROTO_TCP,
            scores: Vec::new(),
            top_features: Vec::new(),
        }),
    }
}
