//! The counter report `netanom run` prints every `--stats-interval`: an aligned table for
//! people, or one JSON object per line for scripts.
use std::{fmt::Write as _, io::Write as _};

use netanom_common::Event;
use serde::{Deserialize, Serialize};

use crate::telemetry::Snapshot;

/// How counters are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// An aligned table for people, with rates since the previous one.
    #[default]
    Table,
    /// One JSON object per line, for scripts and tests.
    Json,
}

/// Prints snapshots, remembering the previous one for the table's rates.
#[derive(Debug)]
pub struct StatsLine {
    format: Format,
    /// Stdout carries the alerts: print on stderr instead.
    to_stderr: bool,
    prev: Option<Snapshot>,
}

impl StatsLine {
    pub fn new(format: Format, to_stderr: bool) -> StatsLine {
        StatsLine {
            format,
            to_stderr,
            prev: None,
        }
    }

    /// Prints `s` (rates against the previous snapshot printed).
    pub fn print(&mut self, s: &Snapshot) {
        let text = render(s, self.prev.as_ref(), self.format);
        self.emit(&text);
        self.prev = Some(s.clone());
    }

    /// Prints the final counters, with no rates.
    pub fn print_final(&mut self, s: &Snapshot) {
        self.emit(&render(s, None, self.format));
    }

    fn emit(&self, text: &str) {
        // A closed stdout (e.g. `| head`) must not kill the agent.
        if self.to_stderr {
            let mut out = std::io::stderr().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
    }
}

fn render(s: &Snapshot, prev: Option<&Snapshot>, format: Format) -> String {
    match format {
        Format::Table => to_table(s, prev),
        Format::Json => s.to_json() + "\n",
    }
}

/// The aligned table; rates are computed against `prev` when given.
pub fn to_table(s: &Snapshot, prev: Option<&Snapshot>) -> String {
    let mut out = String::new();
    let ifaces: Vec<String> = s
        .interfaces
        .iter()
        .map(|a| format!("{} (xdp {})", a.iface, a.mode))
        .collect();
    let _ = writeln!(out, "netanom observing {}", ifaces.join(", "));
    protocol_rows(&mut out, s, prev);
    counter_lines(&mut out, s);
    out
}

fn protocol_rows(out: &mut String, s: &Snapshot, prev: Option<&Snapshot>) {
    let elapsed = prev.map(|p| s.timestamp - p.timestamp).filter(|d| *d > 0.0);
    let _ = writeln!(
        out,
        "{:<6} {:<6} {:>14} {:>16} {:>12} {:>14}",
        "family", "proto", "packets", "bytes", "pkt/s", "bit/s"
    );
    for row in &s.protocols {
        let (pps, bps) = match (elapsed, prev.and_then(|p| p.get(row.family, row.transport))) {
            (Some(d), Some(p)) => (
                row.packets.saturating_sub(p.packets) as f64 / d,
                row.bytes.saturating_sub(p.bytes) as f64 * 8.0 / d,
            ),
            _ => (0.0, 0.0),
        };
        let _ = writeln!(
            out,
            "{:<6} {:<6} {:>14} {:>16} {:>12.1} {:>14}",
            row.family,
            row.transport,
            row.packets,
            row.bytes,
            pps,
            human_bits(bps)
        );
    }
    let _ = writeln!(
        out,
        "{:<13} {:>14} {:>16}",
        "total", s.total_packets, s.total_bytes
    );
}

fn counter_lines(out: &mut String, s: &Snapshot) {
    let events: Vec<String> = s
        .events
        .iter()
        .filter(|(n, _)| Event::ALL.iter().any(|e| e.name() == *n && e.is_parser_event()))
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let _ = writeln!(out, "parser events: {}", events.join(" "));
    let _ = writeln!(
        out,
        "dropped: blocklist={} rate_limit={} passed_allowlisted={}",
        s.event(Event::DroppedBlocked),
        s.event(Event::DroppedRateLimited),
        s.event(Event::PassedAllowlisted)
    );
    let f = &s.flows;
    let _ = writeln!(
        out,
        "flows: live={} in_table={} created={} exported: ring={} idle={} flush={} lost={} evicted={} insert_failed={}",
        f.live,
        f.in_table,
        f.created,
        f.exported_ring,
        f.exported_idle,
        f.exported_flush,
        f.export_lost,
        f.evicted,
        f.insert_failed
    );
    let m = &s.scoring;
    let anomalies: Vec<String> = m.anomalies.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let _ = writeln!(
        out,
        "scoring: flows={} anomalies: {} rejected={}",
        m.scored,
        anomalies.join(" "),
        m.rejected
    );
    let q = &s.queue;
    let _ = writeln!(
        out,
        "queue: vectors in={} out={} full_waits={}",
        q.vectors_in, q.vectors_out, q.full_waits
    );
}

fn human_bits(bps: f64) -> String {
    const UNITS: [&str; 5] = ["", "k", "M", "G", "T"];
    let mut v = bps;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::snapshot::sample as snap;

    #[test]
    fn table_shows_rates_since_previous_snapshot() {
        let a = snap(100, (10, 1000));
        let b = snap(102, (30, 5000));
        let t = to_table(&b, Some(&a));
        let udp = t.lines().find(|l| l.starts_with("ipv4   udp")).unwrap();
        // 20 packets and 4000 bytes over 2 s: 10 pkt/s, 16 kbit/s.
        assert!(udp.contains("10.0") && udp.contains("16.0k"), "{udp}");
        assert!(t.contains("veth0 (xdp skb)") && t.contains("truncated=3"), "{t}");
        assert!(
            t.contains("dropped: blocklist=4 rate_limit=0 passed_allowlisted=0"),
            "{t}"
        );
        assert!(!t.contains("dropped_blocked"), "not a parser event: {t}");
    }

    #[test]
    fn scoring_line_names_the_bundles_models() {
        let mut s = snap(1, (0, 0));
        s.scoring.scored = 9;
        s.scoring.anomalies = vec![("autoencoder".into(), 3), ("ensemble".into(), 4)];
        let t = to_table(&s, None);
        assert!(
            t.contains("scoring: flows=9 anomalies: autoencoder=3 ensemble=4 rejected=0"),
            "{t}"
        );
    }
}
