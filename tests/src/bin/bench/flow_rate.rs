//! Section 6: The whole loop: the highest new-flow rate the agent sustains without back-pressure.
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use netanom_lab::{Pair, RawSender, frames, sweep_leftovers};

use crate::{agent::spawn_agent, report::Report};

/// The counters of the agent's latest `--stats-format json` line that the flow-rate step
/// reads.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LoopCounters {
    pub(crate) created: u64,
    pub(crate) exported: u64,
    pub(crate) export_lost: u64,
    pub(crate) evicted: u64,
    pub(crate) vectors_in: u64,
    pub(crate) vectors_out: u64,
    pub(crate) full_waits: u64,
    pub(crate) scored: u64,
}

impl LoopCounters {
    pub(crate) fn from_json(v: &serde_json::Value) -> Option<LoopCounters> {
        let n = |a: &str, b: &str| v[a][b].as_u64();
        Some(LoopCounters {
            created: n("flows", "created")?,
            exported: n("flows", "exported_ring")? + n("flows", "exported_idle")?,
            export_lost: n("flows", "export_lost")?,
            evicted: n("flows", "evicted")?,
            vectors_in: n("queue", "vectors_in")?,
            vectors_out: n("queue", "vectors_out")?,
            full_waits: n("queue", "full_waits")?,
            scored: n("scoring", "scored")?,
        })
    }
}

/// The rates tried, in order, until one is not sustained.
const RATES: [u32; 8] = [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000];

/// The latest counters the agent printed, read by a thread all along.
type Latest = std::sync::Arc<std::sync::Mutex<Option<LoopCounters>>>;

/// The `i`th distinct one-packet flow of the steps.
fn flow_frame(lab: &Pair, f: u64) -> Vec<u8> {
    let (src, dst) = (lab.b_side.ep, lab.a_side.ep);
    frames::udp(
        &src,
        &dst,
        false,
        1024 + (f % 60_000) as u16,
        10_000 + ((f / 60_000) % 50_000) as u16,
        &[0; 16],
    )
}

/// Reads the agent's JSON statistics lines on a thread; returns where the latest lands.
fn read_stats(agent: &mut std::process::Child) -> anyhow::Result<Latest> {
    let latest: Latest = Default::default();
    let stdout = agent.stdout.take().context("the agent's stdout")?;
    let sink = latest.clone();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(c) = serde_json::from_str(&line)
                .ok()
                .as_ref()
                .and_then(LoopCounters::from_json)
            {
                *sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
            }
        }
    });
    Ok(latest)
}

fn latest(l: &Latest) -> Option<LoopCounters> {
    *l.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one step did.
struct StepOutcome {
    sent_rate: f64,
    /// Nothing lost, evicted or waited for, every flow exported.
    sustained: bool,
    /// The sender reached the target rate.
    reached: bool,
}

/// One step at `rate` flows/s for `step_s` seconds from flow `start`: sends, waits until the
/// agent has exported and scored everything (at most 10 s), writes the table row.
fn step(
    r: &mut Report,
    lab: &Pair,
    tx: &RawSender,
    stats: &Latest,
    (rate, step_s, start): (u32, u64, u64),
) -> anyhow::Result<(StepOutcome, u64)> {
    let before = latest(stats).unwrap_or_default();
    let pace = netanom_lab::Pace::rate(rate, Duration::from_secs(step_s + 2));
    let t = Instant::now();
    let sent = tx.send_generated(u64::from(rate) * step_s, &pace, |k| flow_frame(lab, start + k))?;
    let sent_rate = sent as f64 / t.elapsed().as_secs_f64();
    // Settle: everything created in the step exported, and the queue empty.
    let t = Instant::now();
    let mut after = latest(stats).unwrap_or_default();
    while t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(250));
        after = latest(stats).unwrap_or_default();
        let created = after.created - before.created;
        if created >= sent
            && after.exported - before.exported >= created
            && after.vectors_out == after.vectors_in
        {
            break;
        }
    }
    let settled = t.elapsed().as_secs_f64();
    let d = |f: fn(&LoopCounters) -> u64| f(&after).saturating_sub(f(&before));
    let (created, exported) = (d(|c| c.created), d(|c| c.exported));
    let (waits, lost, evicted) = (d(|c| c.full_waits), d(|c| c.export_lost), d(|c| c.evicted));
    let sustained = waits == 0 && lost == 0 && evicted == 0 && created >= sent && exported >= created;
    // The sender itself may not reach the target: say so rather than claim the rate.
    let reached = sent_rate >= 0.95 * f64::from(rate);
    r.line(format!(
        "| {rate} | {sent_rate:.0} | {created} | {exported} | {} | {waits} | {lost} | \
         {evicted} | {settled:.1} | {} |",
        d(|c| c.scored),
        match (sustained, reached) {
            (true, true) => "yes",
            (true, false) => "yes (sender below target)",
            (false, _) => "**no**",
        }
    ));
    Ok((
        StepOutcome {
            sent_rate,
            sustained,
            reached,
        },
        sent,
    ))
}

/// The highest rate of new flows the whole loop (XDP accounting, ring buffer and sweep,
/// feature vectors, queue, ONNX scoring, detection) sustains without back-pressure.
pub(crate) fn flow_rate(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    r.section(
        "Whole loop: highest new-flow rate without back-pressure",
        "The real agent (release build, observe mode, `--idle-timeout 1`, `--sweep-interval \
         0.25`, default bundle, scoring on one thread) watches a lab veth. Each step sends \
         single-packet UDP flows (distinct ports) at a fixed rate from namespace b, then waits \
         until every flow created in the step has been exported and every queued vector scored \
         (at most 10 s). A step is *sustained* when nothing was lost or waited for: no \
         ring-buffer loss, no LRU eviction, no wait on a full drain-to-scoring queue \
         (back-pressure), and every flow exported. The sender, the kernel and the agent share \
         the machine's cores, so this is the whole host's figure. Steps stop at the first \
         that is not sustained.",
    );
    sweep_leftovers()?;
    netanom_lab::sweep_state_leftovers();
    let lab = Pair::new("benchl")?;
    let dirs = netanom_lab::StateDirs::new("benchl");
    let step_s = if quick { 2 } else { 4 };
    // Baseline: the same generator flat out with nothing attached.
    let tx = RawSender::open(&lab.b, &lab.b_side.iface)?;
    let t = Instant::now();
    let unpaced = netanom_lab::Pace {
        pps: None,
        max_duration: Duration::from_secs(step_s),
    };
    let base = tx.send_generated(50_000_000, &unpaced, |k| flow_frame(&lab, k + 3_000_000_000))? as f64
        / t.elapsed().as_secs_f64();
    let mut agent = spawn_agent(
        &lab,
        &dirs,
        &[
            "--no-metrics",
            "--idle-timeout",
            "1",
            "--sweep-interval",
            "0.25",
            "--stats-format",
            "json",
            "--stats-interval",
            "0.25",
        ],
        Stdio::piped(),
    )?;
    let result = read_stats(&mut agent).and_then(|stats| steps(r, &lab, &tx, &stats, base, step_s));
    crate::agent::stop(agent);
    result
}

/// Every step until one is not sustained, then the verdict.
fn steps(
    r: &mut Report,
    lab: &Pair,
    tx: &RawSender,
    stats: &Latest,
    base: f64,
    step_s: u64,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while latest(stats).is_none() {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("the agent printed no statistics within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    r.line(
        "| target flows/s | sent flows/s | flows created | exported | vectors scored | \
         queue waits (back-pressure) | ring losses | evictions | settled in s | sustained |"
            .into(),
    );
    r.line("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|".into());
    r.line(format!(
        "| baseline: sender flat out, nothing attached | {base:.0} | | | | | | | | |"
    ));
    let (mut next_flow, mut best, mut sender_bound) = (0u64, None, false);
    for rate in RATES {
        let (o, sent) = step(r, lab, tx, stats, (rate, step_s, next_flow))?;
        next_flow += sent;
        if !o.sustained {
            break;
        }
        best = Some(o.sent_rate);
        if !o.reached {
            sender_bound = true;
            break;
        }
    }
    r.line(String::new());
    r.line(match (best, sender_bound) {
        (Some(b), false) => {
            format!("Highest sustained: **{b:.0} new flows/s** (each flow one packet, so also packets/s).")
        }
        (Some(b), true) => format!(
            "Highest sustained: **at least {b:.0} new flows/s** (each flow one packet): every \
             step was sustained, up to the fastest the sender managed while sharing the cores \
             with the agent; the loop's own limit is higher."
        ),
        (None, _) => "No step was sustained.".into(),
    });
    Ok(())
}
