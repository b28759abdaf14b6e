//! Section 5: Mitigation: attack start to first drop, and the agent's load at 10k and 100k flows.
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::bail;
use netanom::respond::{Cidr, Enforcer as _, KernelTables};
use netanom_lab::{Pair, RawSender, sweep_leftovers};

use crate::{
    agent::{agent_load, spawn_agent},
    report::Report,
};

pub(crate) fn mitigation(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    r.section(
        "Mitigation: attack start to first drop, and the agent's load",
        "The real agent in mitigate mode (release build, `--aggregate-interval 0.5`) watches a \
         lab veth. Each run starts a UDP flood (20,000 packets/s, 64-byte payload) from a new \
         attacker address and polls the pinned blocklist every 2 ms until the attacker's entry \
         has dropped a packet. Then a benign allowlisted host opens N distinct UDP flows (one \
         packet each, 50,000 packets/s) that stay live in the flow table (idle timeout 30 s), \
         and the agent's CPU (user + system, % of one core, over 5 s) and resident memory are \
         read from /proc, beside the same agent idle before.",
    );
    sweep_leftovers()?;
    netanom_lab::sweep_state_leftovers();
    let lab = Pair::new("benchm")?;
    let dirs = netanom_lab::StateDirs::new("benchm");
    std::fs::create_dir_all(&dirs.state_dir)?;
    let cfg = dirs.state_dir.join("netanom.toml");
    std::fs::write(&cfg, "[allowlist]\nprefixes = [\"198.18.0.2/32\"]\n")?;
    let agent = spawn_agent(
        &lab,
        &dirs,
        &[
            "--mode",
            "mitigate",
            "--config",
            cfg.to_str().unwrap_or_default(),
            "--no-metrics",
            "--stats-interval",
            "60",
        ],
        Stdio::null(),
    )?;
    let pid = agent.id();
    let result = (|| -> anyhow::Result<()> {
        let tables = attached(&lab, &dirs)?;
        std::thread::sleep(Duration::from_millis(1000));
        let tx = RawSender::open(&lab.b, &lab.b_side.iface)?;
        block_latency(r, &lab, &tables, &tx, if quick { 3 } else { 10 })?;
        load(r, &lab, &tx, pid, quick)
    })();
    crate::agent::stop(agent);
    result
}

/// The pinned lists, once the agent has attached its program (at most 20 s).
fn attached(lab: &Pair, dirs: &netanom_lab::StateDirs) -> anyhow::Result<KernelTables> {
    let t0 = Instant::now();
    loop {
        let xdp = lab
            .a
            .ip(&["-d", "link", "show", "dev", &lab.a_side.iface])?
            .contains("xdp");
        match KernelTables::open(&dirs.pin_dir) {
            Ok(t) if xdp => return Ok(t),
            _ if t0.elapsed() > Duration::from_secs(20) => bail!("the agent did not attach within 20 s"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `runs` floods from new attackers: time from the flood's start to its block's first drop.
fn block_latency(
    r: &mut Report,
    lab: &Pair,
    tables: &KernelTables,
    tx: &RawSender,
    runs: usize,
) -> anyhow::Result<()> {
    let mut lat = Vec::new();
    for i in 0..runs {
        let mut src = lab.b_side.ep;
        src.ipv4 = std::net::Ipv4Addr::new(198, 18, 0, 100 + i as u8);
        let prefix = Cidr::host(src.ipv4.into());
        let dst = lab.a_side.ep;
        let got = std::thread::scope(|s| {
            let t0 = Instant::now();
            s.spawn(move || {
                let pace = netanom_lab::Pace::rate(20_000, Duration::from_secs(3));
                netanom_lab::traffic::udp_burst(tx, &src, &dst, false, 60_000, 64, &pace)
            });
            while t0.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(e)) = tables.block_entry(&prefix)
                    && e.packets > 0
                {
                    return Some(t0.elapsed());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            None
        });
        match got {
            Some(t) => lat.push(t.as_secs_f64() * 1e3),
            None => bail!("run {i}: the attacker was not blocked within 3 s"),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    r.line("| runs | p50 ms | p95 ms | min ms | max ms | target p95 |".into());
    r.line("|---:|---:|---:|---:|---:|---:|".into());
    r.line(format!(
        "| {} | {:.0} | {:.0} | {:.0} | {:.0} | < 1000 |",
        lat.len(),
        pct(0.5),
        pct(0.95),
        lat[0],
        lat[lat.len() - 1]
    ));
    r.line(String::new());
    Ok(())
}

/// The agent's CPU and memory idle, then with 10k (and 100k) live flows.
fn load(r: &mut Report, lab: &Pair, tx: &RawSender, pid: u32, quick: bool) -> anyhow::Result<()> {
    let window = Duration::from_secs(if quick { 2 } else { 5 });
    let (cpu0, rss0) = agent_load(pid, window)?;
    r.line("| active flows | agent CPU % of one core | agent RSS MiB |".into());
    r.line("|---:|---:|---:|".into());
    r.line(format!("| 0 (idle, baseline) | {cpu0:.1} | {rss0:.1} |"));
    let sizes: &[u32] = if quick { &[10_000] } else { &[10_000, 100_000] };
    let mut opened = 0u32;
    for &n in sizes {
        let (src, dst) = (lab.b_side.ep, lab.a_side.ep);
        let pace = netanom_lab::Pace::rate(50_000, Duration::from_secs(10));
        let start = opened;
        tx.send_generated(u64::from(n - opened), &pace, |k| {
            netanom_lab::traffic::distinct_flow(&src, &dst, u64::from(start) + k)
        })?;
        opened = n;
        let (cpu, rss) = agent_load(pid, window)?;
        r.line(format!("| {n} | {cpu:.1} | {rss:.1} |"));
    }
    Ok(())
}
