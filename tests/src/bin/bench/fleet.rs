//! Section 8: the fleet: the time from a decision at gateway A to its block at gateway B
//! over NATS JetStream, and the decisions per second the fleet path sustains, beside
//! JetStream's own acknowledgements (the path without the receiving gateway).
use netanom_lab::{
    fleet::{Member, MemberConfig, measure, quantile},
    nats::Nats,
    sweep_leftovers,
};

use crate::report::Report;

pub(crate) fn fleet(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    let (runs, burst) = if quick { (10, 300) } else { (50, 2000) };
    r.section(
        "Fleet: one gateway's block at another over NATS JetStream",
        &format!(
            "A real `nats-server -js` (Debian's, with a user per gateway) in its own namespace, \
             linked to two gateway labs with the release agent each in mitigate mode and \
             `[fleet]` on. From A's namespace a block decision of gw-a is published (as A's agent \
             publishes its own); the time until the entry is in B's pinned blocklist (polled \
             every 2 ms) is measured {runs} times one at a time, against the time JetStream \
             takes to acknowledge the publish. Then {burst} decisions are published at once; \
             decisions/s is the burst over the time until all are in B's lists, against the \
             rate JetStream acknowledges them."
        ),
    );
    sweep_leftovers()?;
    netanom_lab::sweep_state_leftovers();
    let mut nats = Nats::new("benchf", &["gw-a", "gw-b"])?;
    let mut a = Member::new("gw-a", "benchfa", &mut nats, 11)?;
    let mut b = Member::new("gw-b", "benchfb", &mut nats, 12)?;
    nats.start()?;
    for m in [&a, &b] {
        m.configure(&MemberConfig::default())?;
    }
    a.start();
    b.start();
    let f = measure(&a, &b, runs, burst, 120)?;
    drop(a.agent.take());
    drop(b.agent.take());
    let ms = |v: &[f64], q: f64| quantile(v, q) * 1e3;
    r.line("| measure | fleet path (A to B's lists) | baseline (JetStream's ack) |".into());
    r.line("|---|---|---|".into());
    r.line(format!(
        "| one decision, p50 | {:.2} ms | {:.2} ms |",
        ms(&f.propagation, 0.5),
        ms(&f.ack, 0.5)
    ));
    r.line(format!(
        "| one decision, p95 | {:.2} ms | {:.2} ms |",
        ms(&f.propagation, 0.95),
        ms(&f.ack, 0.95)
    ));
    r.line(format!(
        "| a burst of {}: decisions/s | {:.0} | {:.0} |",
        f.burst, f.applied_per_s, f.published_per_s
    ));
    Ok(())
}
