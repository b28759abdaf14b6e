//! Section 2: Throughput across a lab veth pair without and with the agent attached.
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use netanom_lab::{Pair, RawSender, frames, sweep_leftovers};

use crate::{agent::spawn_agent, report::Report};

/// Sends UDP frames over 1,024 flows from b to a as fast as one sender can for `dur`;
/// returns (sent per s, received at a per s).
pub(crate) fn blast(lab: &Pair, dur: Duration) -> anyhow::Result<(f64, f64)> {
    let tx = RawSender::open(&lab.b, &lab.b_side.iface)?;
    let (src, dst) = (lab.b_side.ep, lab.a_side.ep);
    let frames: Vec<Vec<u8>> = (0..1024u16)
        .map(|i| frames::udp(&src, &dst, false, 20_000 + i, 9, &[0; 64]))
        .collect();
    let before = lab.a.iface_stats(&lab.a_side.iface)?;
    let t0 = Instant::now();
    let mut sent = 0u64;
    'outer: loop {
        for f in &frames {
            if tx.try_send(f).is_ok() {
                sent += 1;
            }
        }
        if t0.elapsed() >= dur {
            break 'outer;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(100));
    let after = lab.a.iface_stats(&lab.a_side.iface)?;
    Ok((
        sent as f64 / secs,
        (after.rx_packets - before.rx_packets) as f64 / secs,
    ))
}

pub(crate) fn veth_throughput(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    r.section(
        "Throughput across a veth pair",
        "One AF_PACKET sender in namespace b sends 64-byte-payload UDP frames over 1,024 flows \
         to namespace a as fast as it can; the rate is what a's veth received. Baseline: the \
         same run with nothing attached. With: the real agent (`netanom run`, native XDP, TC \
         egress, drain loop). On a 2-core machine the sender, the receiving softirq and the \
         agent share two cores, so this measures the whole host, not the XDP program alone.",
    );
    sweep_leftovers()?;
    let lab = Pair::new("bench")?;
    let dirs = netanom_lab::StateDirs::new("bench");
    let dur = Duration::from_secs(if quick { 1 } else { 3 });
    let (sent0, rx0) = blast(&lab, dur)?;
    let agent = spawn_agent(&lab, &dirs, &["--stats-interval", "60"], Stdio::null())?;
    std::thread::sleep(Duration::from_millis(1500));
    let mode = lab.a.ip(&["-d", "link", "show", "dev", &lab.a_side.iface])?;
    let mode = if mode.contains("xdpgeneric") {
        "skb"
    } else if mode.contains("xdp") {
        "native"
    } else {
        "not attached"
    };
    let res = blast(&lab, dur);
    crate::agent::stop(agent);
    let (sent1, rx1) = res?;
    r.line("| setup | sent pkt/s | received pkt/s | received / baseline |".into());
    r.line("|---|---:|---:|---:|".into());
    r.line(format!(
        "| nothing attached (baseline) | {sent0:.0} | {rx0:.0} | 1.00 |"
    ));
    r.line(format!(
        "| netanom agent (XDP {mode}) | {sent1:.0} | {rx1:.0} | {:.2} |",
        rx1 / rx0
    ));
    Ok(())
}
