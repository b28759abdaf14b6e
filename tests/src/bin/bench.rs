//! `cargo xtask bench`: netanom's performance table. Every figure stands next to a baseline
//! measured in the same run, on the same machine; nothing here is a pass/fail test.
//!
//! Sections:
//! 1. XDP per-packet cost with BPF_PROG_TEST_RUN (hot flow and new flow, IPv4 and IPv6)
//!    beside a bare `XDP_PASS` program and a parse-only program.
//! 2. Throughput across a lab veth pair without and with the agent attached.
//! 3. Drain cost per flow at 10k, 100k and 1M live flows: batched syscalls beside aya's
//!    per-element iteration.
//! 4. Scoring throughput with ONNX Runtime (CPU, one thread): per model and for the whole
//!    ensemble at batch 1, 64 and 1,024, beside the Rust-side preprocessing alone.
//!
//! 5. Mitigation: time from an attack's start to its first dropped packet (p50, p95 over
//!    repeated lab runs), and the agent's CPU and memory at 10k and 100k active flows beside
//!    the same agent idle.
//!
//! 6. The whole loop: the highest rate of new flows the agent sustains without back-pressure
//!    (no ring-buffer loss, no eviction, no wait on the drain-to-scoring queue), beside the
//!    sender's own rate with nothing attached.
//!
//! `--only NAME[,NAME]` runs only the named sections (xdp, veth, drain, scoring, mitigation,
//! loop).
use std::{
    fmt::Write as _,
    path::PathBuf,
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use netanom::{
    datapath::{Datapath, LoadOptions, batch::BatchMap},
    pipeline::clock::mono_now_ns,
    respond::{Cidr, Enforcer as _, KernelTables, kernel},
    sources::live as drain,
};
use netanom_common::{
    flow::{FlowKey, FlowTimeouts, FlowValue},
    mitigate::{BlockEntry, Origin},
    names,
};
use netanom_lab::{
    Pair, RawSender, StateDirs, frames, require_root, sweep_leftovers, test_endpoints as endpoints,
};

/// One benchmark section: appends its table to the report.
type Step = fn(&mut Report, bool) -> anyhow::Result<()>;

struct Report {
    text: String,
}

impl Report {
    fn section(&mut self, title: &str, note: &str) {
        let _ = write!(self.text, "\n## {title}\n\n{note}\n\n");
        println!("\n## {title}\n\n{note}\n");
    }
    fn line(&mut self, l: String) {
        println!("{l}");
        self.text.push_str(&l);
        self.text.push('\n');
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Kernel-measured ns per run of `prog` over `frame`, `repeat` runs in the kernel's loop,
/// median of `trials`.
fn hot_ns(
    dp: &mut Datapath,
    prog: &'static str,
    frame: &[u8],
    repeat: u32,
    trials: usize,
) -> anyhow::Result<f64> {
    let mut v = Vec::new();
    for _ in 0..trials {
        let (_, d) = dp.test_run_program(prog, frame, repeat)?;
        v.push(d.as_nanos() as f64);
    }
    Ok(median(v))
}

/// Mean kernel-measured ns of one run of `prog` over each of `frames` (each once).
fn each_once_ns(dp: &mut Datapath, prog: &'static str, frames: &[Vec<u8>]) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for f in frames {
        let (_, d) = dp.test_run_program(prog, f, 1)?;
        total += d.as_nanos() as f64;
    }
    Ok(total / frames.len() as f64)
}

fn xdp_cost(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    r.section(
        "XDP per-packet cost (BPF_PROG_TEST_RUN)",
        "Kernel-measured time per program run. *Hot flow*: one UDP frame run repeatedly in the \
         kernel's test loop (the flow, source and destination entries exist). *New flow*: \
         distinct frames (new source port and address each), each run once, so every run \
         inserts a flow, a source and a destination entry; single runs include the test \
         harness's timer overhead, which the bare baseline shows. Baselines in the same run: \
         `bare` returns XDP_PASS and nothing else; `parse-only` classifies the frame and bumps \
         one per-CPU counter (the issue-2 program). *Hot flow, 1,000 blocks*: the same with \
         1,000 /32 blocklist entries of other sources of the frame's family (the blocklist \
         lookup runs only while the list is not empty). Target: hot path at most 80 ns.",
    );
    // Mitigation lists pinned in a lab directory (removed on drop), so blocks can be added.
    let dirs = StateDirs::new("bench-xdp");
    kernel::ensure_dir(&dirs.pin_dir)?;
    let mut dp = Datapath::load_pinned(
        &LoadOptions {
            flow_entries: 1 << 20,
            src_entries: 1 << 18,
            dst_entries: 1 << 18,
            ..LoadOptions::default()
        },
        Some(&dirs.pin_dir),
    )?;
    let (a, b) = endpoints();
    let repeat = if quick { 100_000 } else { 1_000_000 };
    let n_new = if quick { 2_000 } else { 20_000 };
    r.line("| path | family | bare ns | parse-only ns | netanom ns | netanom − bare ns | netanom / bare | netanom / parse-only |".into());
    r.line("|---|---|---:|---:|---:|---:|---:|---:|".into());
    for v6 in [false, true] {
        let fam = if v6 { "IPv6" } else { "IPv4" };
        let frame = frames::udp(&b, &a, v6, 40_000, 53, &[0; 64]);
        let bare = hot_ns(&mut dp, names::PROG_BARE, &frame, repeat, 5)?;
        let parse = hot_ns(&mut dp, names::PROG_PARSE_ONLY, &frame, repeat, 5)?;
        let ours = hot_ns(&mut dp, names::PROG_XDP, &frame, repeat, 5)?;
        r.line(row("hot flow", fam, bare, parse, ours));
        let news: Vec<Vec<u8>> = (0..n_new)
            .map(|i: u32| {
                let mut src = b;
                src.ipv4 = std::net::Ipv4Addr::from(0xc613_0000 | (i & 0xffff));
                let mut seg = src.ipv6.segments();
                seg[6] = (i >> 16) as u16;
                seg[7] = i as u16;
                src.ipv6 = seg.into();
                frames::udp(&src, &a, v6, 1024 + (i % 60_000) as u16, 53, &[0; 64])
            })
            .collect();
        let bare = each_once_ns(&mut dp, names::PROG_BARE, &news)?;
        let parse = each_once_ns(&mut dp, names::PROG_PARSE_ONLY, &news)?;
        let ours = each_once_ns(&mut dp, names::PROG_XDP, &news)?;
        r.line(row("new flow", fam, bare, parse, ours));
    }
    let mut tables = KernelTables::open(&dirs.pin_dir)?;
    let now = mono_now_ns();
    let entry = BlockEntry {
        expires_ns: now + 3_600_000_000_000,
        added_ns: now,
        packets: 0,
        bytes: 0,
        ttl_s: 3600,
        strikes: 1,
        origin: Origin::Manual as u32,
        _pad: 0,
        reason: netanom::respond::enforcer::reason_bytes("benchmark"),
    };
    for i in 0..1_000u32 {
        let v4 = std::net::Ipv4Addr::from(0xc613_8000 | i);
        let v6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, i as u16);
        tables.put_block(&Cidr::V4 { addr: v4, len: 32 }, &entry)?;
        tables.put_block(&Cidr::V6 { addr: v6, len: 128 }, &entry)?;
    }
    for v6 in [false, true] {
        let fam = if v6 { "IPv6" } else { "IPv4" };
        let frame = frames::udp(&b, &a, v6, 40_000, 53, &[0; 64]);
        let bare = hot_ns(&mut dp, names::PROG_BARE, &frame, repeat, 5)?;
        let parse = hot_ns(&mut dp, names::PROG_PARSE_ONLY, &frame, repeat, 5)?;
        let ours = hot_ns(&mut dp, names::PROG_XDP, &frame, repeat, 5)?;
        r.line(row("hot flow, 1,000 blocks", fam, bare, parse, ours));
    }
    drop(dp);
    Ok(())
}

fn row(path: &str, fam: &str, bare: f64, parse: f64, ours: f64) -> String {
    format!(
        "| {path} | {fam} | {bare:.1} | {parse:.1} | {ours:.1} | {:.1} | {:.2} | {:.2} |",
        ours - bare,
        ours / bare,
        ours / parse
    )
}

/// Sends UDP frames over 1,024 flows from b to a as fast as one sender can for `dur`;
/// returns (sent per s, received at a per s).
fn blast(lab: &Pair, dur: Duration) -> anyhow::Result<(f64, f64)> {
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

fn agent_bin() -> PathBuf {
    std::env::var_os("NETANOM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/netanom"))
}

/// `netanom run` on a's interface with `dirs`, no alerts, then `extra`; stdout to `stdout`.
fn spawn_agent(
    lab: &Pair,
    dirs: &StateDirs,
    extra: &[&str],
    stdout: Stdio,
) -> anyhow::Result<std::process::Child> {
    lab.a
        .command(agent_bin())
        .args(["run", "--iface", &lab.a_side.iface, "--alerts", ""])
        .args(["--pin-dir", dirs.pin(), "--state-dir", dirs.state()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", agent_bin().display()))
}

fn veth_throughput(r: &mut Report, quick: bool) -> anyhow::Result<()> {
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
    let mut agent = spawn_agent(&lab, &dirs, &["--stats-interval", "60"], Stdio::null())?;
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
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
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

/// CPU seconds (user + system) and resident memory (bytes) of process `pid`.
fn cpu_and_rss(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is 0, utime 11, stime 12 (in clock ticks).
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf without side effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((ticks / hz.max(1.0), rss_kb * 1024))
}

/// The agent's CPU use (in % of one core) over `window`, and its resident memory at the end.
fn agent_load(pid: u32, window: Duration) -> anyhow::Result<(f64, f64)> {
    let (c0, _) = cpu_and_rss(pid).context("reading the agent's /proc entries")?;
    std::thread::sleep(window);
    let (c1, rss) = cpu_and_rss(pid).context("reading the agent's /proc entries")?;
    Ok((
        100.0 * (c1 - c0) / window.as_secs_f64(),
        rss as f64 / (1 << 20) as f64,
    ))
}

fn mitigation(r: &mut Report, quick: bool) -> anyhow::Result<()> {
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
    let mut agent = spawn_agent(
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
    let result = (|| -> anyhow::Result<()> {
        let t0 = Instant::now();
        let tables = loop {
            match KernelTables::open(&dirs.pin_dir) {
                Ok(t)
                    if lab
                        .a
                        .ip(&["-d", "link", "show", "dev", &lab.a_side.iface])?
                        .contains("xdp") =>
                {
                    break t;
                }
                _ if t0.elapsed() > Duration::from_secs(20) => bail!("the agent did not attach within 20 s"),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        std::thread::sleep(Duration::from_millis(1000));
        let runs = if quick { 3 } else { 10 };
        let mut lat = Vec::new();
        let tx = RawSender::open(&lab.b, &lab.b_side.iface)?;
        for i in 0..runs {
            let mut src = lab.b_side.ep;
            src.ipv4 = std::net::Ipv4Addr::new(198, 18, 0, 100 + i as u8);
            let prefix = Cidr::host(src.ipv4.into());
            let dst = lab.a_side.ep;
            let got = std::thread::scope(|s| {
                let t0 = Instant::now();
                let tx = &tx;
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
        let pid = agent.id();
        let (cpu0, rss0) = agent_load(pid, Duration::from_secs(if quick { 2 } else { 5 }))?;
        r.line("| active flows | agent CPU % of one core | agent RSS MiB |".into());
        r.line("|---:|---:|---:|".into());
        r.line(format!("| 0 (idle, baseline) | {cpu0:.1} | {rss0:.1} |"));
        let sizes: &[u32] = if quick { &[10_000] } else { &[10_000, 100_000] };
        let mut opened = 0u32;
        for &n in sizes {
            let src = lab.b_side.ep;
            let dst = lab.a_side.ep;
            let pace = netanom_lab::Pace::rate(50_000, Duration::from_secs(10));
            let start = opened;
            tx.send_generated(u64::from(n - opened), &pace, |k| {
                netanom_lab::traffic::distinct_flow(&src, &dst, u64::from(start) + k)
            })?;
            opened = n;
            let (cpu, rss) = agent_load(pid, Duration::from_secs(if quick { 2 } else { 5 }))?;
            r.line(format!("| {n} | {cpu:.1} | {rss:.1} |"));
        }
        Ok(())
    })();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    result
}

/// The counters of the agent's latest `--stats-format json` line that the flow-rate step
/// reads.
#[derive(Clone, Copy, Debug, Default)]
struct LoopCounters {
    created: u64,
    exported: u64,
    export_lost: u64,
    evicted: u64,
    vectors_in: u64,
    vectors_out: u64,
    full_waits: u64,
    scored: u64,
}

impl LoopCounters {
    fn from_json(v: &serde_json::Value) -> Option<LoopCounters> {
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

/// The highest rate of new flows the whole loop (XDP accounting, ring buffer and sweep,
/// feature vectors, queue, ONNX scoring, detection) sustains without back-pressure.
fn flow_rate(r: &mut Report, quick: bool) -> anyhow::Result<()> {
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
    let (src, dst) = (lab.b_side.ep, lab.a_side.ep);
    let flow_frame = |f: u64| {
        frames::udp(
            &src,
            &dst,
            false,
            1024 + (f % 60_000) as u16,
            10_000 + ((f / 60_000) % 50_000) as u16,
            &[0; 16],
        )
    };
    // Baseline: the same generator flat out with nothing attached.
    let tx = RawSender::open(&lab.b, &lab.b_side.iface)?;
    let t = Instant::now();
    let unpaced = netanom_lab::Pace {
        pps: None,
        max_duration: Duration::from_secs(step_s),
    };
    let base = tx.send_generated(50_000_000, &unpaced, |k| flow_frame(k + 3_000_000_000))? as f64
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
    let latest = std::sync::Arc::new(std::sync::Mutex::new(None::<LoopCounters>));
    let stdout = agent.stdout.take().context("the agent's stdout")?;
    {
        let latest = latest.clone();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(c) = serde_json::from_str(&line)
                    .ok()
                    .as_ref()
                    .and_then(LoopCounters::from_json)
                {
                    *latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
                }
            }
        });
    }
    let now = || *latest.lock().unwrap_or_else(|e| e.into_inner());
    let result = (|| -> anyhow::Result<()> {
        let t0 = Instant::now();
        while now().is_none() {
            if t0.elapsed() > Duration::from_secs(20) {
                bail!("the agent printed no statistics within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let rates: &[u32] = &[5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000];
        r.line(
            "| target flows/s | sent flows/s | flows created | exported | vectors scored | \
             queue waits (back-pressure) | ring losses | evictions | settled in s | sustained |"
                .into(),
        );
        r.line("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|".into());
        r.line(format!(
            "| baseline: sender flat out, nothing attached | {base:.0} | | | | | | | | |"
        ));
        let mut next_flow = 0u64;
        let mut best = None;
        let mut sender_bound = false;
        for &rate in rates {
            let before = now().unwrap_or_default();
            let pace = netanom_lab::Pace::rate(rate, Duration::from_secs(step_s + 2));
            let start = next_flow;
            let t = Instant::now();
            let sent = tx.send_generated(u64::from(rate) * step_s, &pace, |k| flow_frame(start + k))?;
            let sent_rate = sent as f64 / t.elapsed().as_secs_f64();
            next_flow += sent;
            // Settle: everything created in the step exported, and the queue empty.
            let t = Instant::now();
            let mut after = now().unwrap_or_default();
            while t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(250));
                after = now().unwrap_or_default();
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
            let ok = waits == 0 && lost == 0 && evicted == 0 && created >= sent && exported >= created;
            // The sender itself may not reach the target: say so rather than claim the rate.
            let reached = sent_rate >= 0.95 * f64::from(rate);
            r.line(format!(
                "| {rate} | {sent_rate:.0} | {created} | {exported} | {} | {waits} | {lost} | \
                 {evicted} | {settled:.1} | {} |",
                d(|c| c.scored),
                match (ok, reached) {
                    (true, true) => "yes",
                    (true, false) => "yes (sender below target)",
                    (false, _) => "**no**",
                }
            ));
            if !ok {
                break;
            }
            best = Some(sent_rate);
            if !reached {
                sender_bound = true;
                break;
            }
        }
        r.line(String::new());
        match (best, sender_bound) {
            (Some(b), false) => r.line(format!(
                "Highest sustained: **{b:.0} new flows/s** (each flow one packet, so also \
                 packets/s)."
            )),
            (Some(b), true) => r.line(format!(
                "Highest sustained: **at least {b:.0} new flows/s** (each flow one packet): \
                 every step was sustained, up to the fastest the sender managed while sharing \
                 the cores with the agent; the loop's own limit is higher."
            )),
            (None, _) => r.line("No step was sustained.".into()),
        }
        Ok(())
    })();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    result
}

fn synthetic_flows(n: usize, now: u64) -> (Vec<FlowKey>, Vec<FlowValue>) {
    let keys = (0..n as u32)
        .map(|i| FlowKey {
            addr_lo: [0xc612_0000 | (i >> 16), 0, 0, 0],
            addr_hi: [0xc613_0000 | (i & 0xffff), 0, 0, 0],
            port_lo: 1000 + (i % 50_000) as u16,
            port_hi: 53,
            proto: 17,
            family: 4,
            _pad: [0; 2],
        })
        .collect();
    let mut v = FlowValue {
        first_ns: now,
        last_ns: now,
        ..FlowValue::default()
    };
    v.fwd.packets = 1;
    (keys, vec![v; n])
}

fn drain_cost(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    r.section(
        "Drain cost per flow",
        "The flow table filled with N live flows (BPF_MAP_UPDATE_BATCH), then read whole. \
         *batched sweep*: the agent's idle sweep (BPF_MAP_LOOKUP_BATCH, 1,024 per call), \
         nothing idle. *batched export*: every flow idle, so the sweep also builds N flow \
         records and deletes N entries (BPF_MAP_DELETE_BATCH). Baseline in the same run: \
         aya's per-element iteration (one get-next-key and one lookup syscall per flow). \
         Target: at least 1M flow records per second.",
    );
    r.line("| live flows | per-element (aya) ns/flow | batched sweep ns/flow | batched export ns/flow | export flows/s | speed-up (sweep vs aya) |".into());
    r.line("|---:|---:|---:|---:|---:|---:|".into());
    let sizes: &[usize] = if quick {
        &[10_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        let dp = Datapath::load_with(&LoadOptions {
            flow_entries: (2 * n as u32).max(1024),
            ..LoadOptions::default()
        })?;
        let now = mono_now_ns();
        let (keys, values) = synthetic_flows(n, now);
        let data = dp.map_data(names::MAP_FLOWS)?;
        let map: BatchMap<'_, FlowKey, FlowValue> = BatchMap::new(data.fd());
        let inserted = map.update(&keys, &values)?;
        if inserted != n {
            bail!("filled {inserted} of {n} flows");
        }
        // Baseline: aya's iterator, one syscall pair per element.
        let t = Instant::now();
        let m: aya::maps::HashMap<_, FlowKey, FlowValue> =
            aya::maps::HashMap::try_from(dp.map(names::MAP_FLOWS)?)?;
        let counted = m.iter().filter(Result::is_ok).count();
        let per_elem = t.elapsed().as_nanos() as f64 / counted.max(1) as f64;
        // The agent's sweep, nothing idle.
        // The consumer's share is counted elsewhere (the queue); here a record is only looked at.
        let mut got = 0usize;
        let mut consume = |r: &netanom_common::flow::FlowRecord| got += r.value.fwd.packets as usize;
        let t = Instant::now();
        let s = drain::sweep_flows(&dp, mono_now_ns(), &FlowTimeouts::DEFAULT, false, &mut consume)?;
        let sweep = t.elapsed().as_nanos() as f64 / s.entries.max(1) as f64;
        if s.entries != n || s.exported != 0 {
            bail!("sweep saw {} entries, exported {}", s.entries, s.exported);
        }
        // Everything idle: export and delete all.
        let later = now + FlowTimeouts::DEFAULT.idle_ns + 1_000_000_000;
        let t = Instant::now();
        let s = drain::sweep_flows(&dp, later, &FlowTimeouts::DEFAULT, false, &mut consume)?;
        let secs = t.elapsed().as_secs_f64();
        if s.exported != n || got != n || drain::flow_entries(&dp)? != 0 {
            bail!("export sweep exported {} of {n}", s.exported);
        }
        r.line(format!(
            "| {n} | {per_elem:.0} | {sweep:.1} | {:.1} | {:.0} | {:.0}× |",
            secs * 1e9 / n as f64,
            n as f64 / secs,
            per_elem / sweep
        ));
    }
    Ok(())
}

// ---- 4. scoring --------------------------------------------------------------------------

/// Pins the calling thread to the CPU it runs on; restores the previous mask on drop.
struct PinnedThread(Option<libc::cpu_set_t>);

impl PinnedThread {
    fn pin() -> PinnedThread {
        // SAFETY: plain sched_{get,set}affinity(2) on the calling thread with a zeroed set.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
                return PinnedThread(None);
            }
            let cpu = libc::sched_getcpu().max(0) as usize;
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
                return PinnedThread(None);
            }
            PinnedThread(Some(old))
        }
    }
}

impl Drop for PinnedThread {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: restores the mask read in `pin`.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), old) };
        }
    }
}

/// Throughput and per-call latency of `f`, which handles `batch` vectors per call.
struct CallStats {
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

fn time_calls(
    budget: Duration,
    batch: usize,
    f: &mut dyn FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<CallStats> {
    for i in 0..20 {
        f(i)?;
    }
    let mut lat: Vec<f64> = Vec::with_capacity(1 << 16);
    let t0 = Instant::now();
    let mut i = 0;
    while (t0.elapsed() < budget || lat.len() < 50) && lat.len() < 2_000_000 {
        let t = Instant::now();
        f(i)?;
        lat.push(t.elapsed().as_nanos() as f64);
        i += 1;
    }
    let total = t0.elapsed().as_secs_f64();
    let calls = lat.len();
    lat.sort_by(f64::total_cmp);
    Ok(CallStats {
        per_s: (calls * batch) as f64 / total,
        p50_us: lat[calls / 2] / 1e3,
        p99_us: lat[(calls * 99 / 100).min(calls - 1)] / 1e3,
    })
}

/// The raw rows of a bundle's parity.csv (its fixed test rows), in the bundle's column order.
fn parity_rows(bundle: &netanom::model::Bundle, path: &std::path::Path) -> anyhow::Result<Vec<f32>> {
    use netanom::model::csv::{Reader, Record};
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rd = Reader::new(std::io::BufReader::new(f));
    let mut rec = Record::default();
    if !rd.read(&mut rec)? {
        bail!("{} is empty", path.display());
    }
    let header: Vec<String> = rec.iter().map(str::to_owned).collect();
    let binding = bundle.bind(&header)?;
    let pre = bundle.preprocessor();
    let mut rows = Vec::new();
    while rd.read(&mut rec)? {
        for (c, &h) in binding.gather.iter().enumerate() {
            rows.push(
                pre.encode(c, rec.get(h))
                    .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", path.display(), rec.line))?,
            );
        }
    }
    Ok(rows)
}

fn scoring_throughput(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    use netanom::model::{Bundle, BundleOptions, MODEL_NAMES};
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    // $NETANOM_BENCH_BUNDLE names another bundle directory.
    let dir = std::env::var_os("NETANOM_BENCH_BUNDLE")
        .map(PathBuf::from)
        .into_iter()
        .chain([models.join("default"), models.join("bundles/nsl-kdd")])
        .find(|d| d.join("manifest.json").is_file())
        .context("no model bundle (models/default or models/bundles/nsl-kdd)")?;
    r.section(
        "Scoring throughput (ONNX Runtime, CPU, 1 thread)",
        "`netanom::model::Scorer` on the bundle below: ONNX Runtime's CPU provider, one intra-op \
         and one inter-op thread, the benchmark thread pinned to one CPU. Input: the bundle's \
         parity.csv rows (real test rows), repeated; each call scores the next `batch` rows. \
         *vectors/s* = rows scored per second of wall time over many calls; p50/p99 are per \
         call (per batch). Rows per model include the Rust-side preprocessing; *ensemble* is \
         all three models, the ratios, the rule and the decision. Baseline in the same run: the \
         Rust-side preprocessing alone (raw row → model-input vector). Targets: autoencoder \
         ≥ 1M vectors/s at batch 1,024; ensemble ≥ 250k vectors/s. Bundle: models/default, \
         else models/bundles/nsl-kdd, or $NETANOM_BENCH_BUNDLE.",
    );
    let _pin = PinnedThread::pin();
    let t0 = Instant::now();
    let opts = BundleOptions::default();
    let bundle = Bundle::load_with(&dir, &opts)?;
    let load = t0.elapsed();
    let m = bundle.manifest();
    r.line(format!(
        "Bundle `{}` (dataset {}, {} raw columns → {} model inputs, ensemble rule {}), loaded in {:.2} s \
         (three sessions created once); provider {}.",
        dir.strip_prefix(models.parent().unwrap_or(&models))
            .unwrap_or(&dir)
            .display(),
        m.dataset,
        bundle.preprocessor().n_inputs(),
        m.n_features,
        m.rule.name(),
        load.as_secs_f64(),
        bundle.provider()
    ));
    r.line(String::new());
    let mut rows = parity_rows(&bundle, &dir.join("parity.csv"))?;
    let width = bundle.preprocessor().n_inputs();
    let n0 = rows.len() / width;
    if n0 == 0 {
        bail!("{}/parity.csv has no rows", dir.display());
    }
    let max_batch = 1024;
    let pool = 4 * max_batch;
    while rows.len() < pool * width {
        let k = rows.len().min(pool * width - rows.len());
        rows.extend_from_within(..k);
    }
    let manifest_text = std::fs::read_to_string(dir.join("manifest.json"))?;
    let mut scorer = bundle.scorer();
    let budget = Duration::from_millis(if quick { 300 } else { 1500 });
    r.line("| scorer | batch | vectors/s | p50 µs/batch | p99 µs/batch | vs preprocessing |".into());
    r.line("|---|---:|---:|---:|---:|---:|".into());
    let mut ae_1024 = 0.0;
    let mut ens_1024 = 0.0;
    for batch in [1usize, 64, 1024] {
        let slice = |i: usize| {
            let start = (i * batch) % (pool - batch + 1);
            start * width..(start + batch) * width
        };
        let base = time_calls(budget, batch, &mut |i| {
            scorer.preprocess(&rows[slice(i)], batch)?;
            Ok(())
        })?;
        let mut line = |name: &str, s: &CallStats| {
            r.line(format!(
                "| {name} | {batch} | {:.0} | {:.2} | {:.2} | {:.1}× slower |",
                s.per_s,
                s.p50_us,
                s.p99_us,
                base.per_s / s.per_s
            ));
        };
        line("preprocessing only (baseline)", &base);
        for (mi, name) in MODEL_NAMES.iter().enumerate() {
            let s = time_calls(budget, batch, &mut |i| {
                scorer.score_model(mi, &rows[slice(i)], batch)?;
                Ok(())
            })?;
            if batch == 1024 && mi == 0 {
                ae_1024 = s.per_s;
            }
            line(name, &s);
        }
        let s = time_calls(budget, batch, &mut |i| {
            scorer.score(&rows[slice(i)], batch)?;
            Ok(())
        })?;
        if batch == 1024 {
            ens_1024 = s.per_s;
        }
        line(
            &format!("ensemble ({}): 3 models + decision", m_rule(&scorer)),
            &s,
        );
    }
    r.line(String::new());
    let verdict = |x: f64, t: f64| if x >= t { "met" } else { "NOT met" };
    r.line(format!(
        "Targets at batch 1,024: autoencoder {ae_1024:.0} vectors/s (≥ 1,000,000: {}); ensemble \
         {ens_1024:.0} vectors/s (≥ 250,000: {}).",
        verdict(ae_1024, 1e6),
        verdict(ens_1024, 2.5e5)
    ));

    // RF size against speed: the bundle's RF above; other graphs from
    // $NETANOM_BENCH_EXTRA_MODELS (files `<model>-<anything>.onnx`, e.g. rf-10-8.onnx, exported
    // for this bundle's input width), if given: each replaces that model of the bundle.
    r.line(String::new());
    r.line(format!(
        "Random Forest size vs speed: the bundle's RF ({}) is the `rf` row above; accuracy for \
         other sizes: models/reports/{}-rf-sweep.md (validation split).",
        m_spec_bytes(&scorer),
        scorer.bundle().manifest().dataset
    ));
    let Some(extra) = std::env::var_os("NETANOM_BENCH_EXTRA_MODELS").map(PathBuf::from) else {
        return Ok(());
    };
    let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(&extra)
        .with_context(|| format!("reading {}", extra.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_owned();
            let mi = MODEL_NAMES
                .iter()
                .position(|m| stem.starts_with(&format!("{m}-")))?;
            Some((mi, p))
        })
        .collect();
    files.sort_by_key(|(mi, p)| (*mi, std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    r.line(String::new());
    r.line(format!(
        "Other graphs (from {}), each in place of the bundle's model of the same name:",
        extra.display()
    ));
    r.line(String::new());
    r.line(
        "| graph | size | alone: vectors/s at 1,024 | alone: p50 µs at batch 1 | ensemble with it: vectors/s at 1,024 |"
            .into(),
    );
    r.line("|---|---:|---:|---:|---:|".into());
    let originals: Vec<(String, Vec<u8>)> = scorer
        .bundle()
        .manifest()
        .models
        .iter()
        .map(|spec| Ok((spec.file.clone(), std::fs::read(dir.join(&spec.file))?)))
        .collect::<anyhow::Result<_>>()?;
    let no_check = BundleOptions {
        verify_checksums: false,
        ..BundleOptions::default()
    };
    for (mi, f) in files {
        let bytes = std::fs::read(&f)?;
        let parts: Vec<(&str, &[u8])> = originals
            .iter()
            .enumerate()
            .map(|(i, (n, b))| (n.as_str(), if i == mi { bytes.as_slice() } else { b.as_slice() }))
            .collect();
        let name = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let b = match Bundle::from_memory(&name, &manifest_text, &parts, &no_check) {
            Ok(b) => b,
            Err(netanom::model::ModelError::Interface { .. }) => {
                r.line(format!(
                    "| {name} | skipped: not exported for this bundle's input | | | |"
                ));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut s = b.scorer();
        let at = |i: usize, batch: usize| {
            let start = (i * batch) % (pool - batch + 1);
            start * width..(start + batch) * width
        };
        let one = time_calls(budget, 1, &mut |i| {
            s.score_model(mi, &rows[at(i, 1)], 1)?;
            Ok(())
        })?;
        let big = time_calls(budget, 1024, &mut |i| {
            s.score_model(mi, &rows[at(i, 1024)], 1024)?;
            Ok(())
        })?;
        let ens = time_calls(budget, 1024, &mut |i| {
            s.score(&rows[at(i, 1024)], 1024)?;
            Ok(())
        })?;
        r.line(format!(
            "| {name} | {:.2} MB | {:.0} | {:.2} | {:.0} |",
            bytes.len() as f64 / 1e6,
            big.per_s,
            one.p50_us,
            ens.per_s
        ));
    }
    Ok(())
}

fn m_rule(s: &netanom::model::Scorer) -> &'static str {
    s.bundle().manifest().rule.name()
}

/// "50 trees, depth 14, 1.22 MB" from the bundle's manifest.
fn m_spec_bytes(s: &netanom::model::Scorer) -> String {
    let json = &s.bundle().manifest().json;
    let rf = &json["models"]["rf"];
    let hp = &rf["hyperparameters"];
    let depth = hp["max_depth"]
        .as_u64()
        .map_or("unlimited".to_owned(), |d| d.to_string());
    format!(
        "{} trees, max depth {depth}, {:.2} MB",
        hp["n_estimators"].as_u64().unwrap_or(0),
        rf["bytes"].as_u64().unwrap_or(0) as f64 / 1e6
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/report.md"));
    if !require_root() {
        eprintln!(
            "netanom-bench: needs root (BPF_PROG_TEST_RUN, namespaces): run `sudo -E cargo xtask bench`"
        );
        return ExitCode::FAILURE;
    }
    let mut r = Report {
        text: String::from("# netanom benchmark\n"),
    };
    let host = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    r.line(format!(
        "\nMachine: {host}, {} CPUs, kernel {}. Release build.{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim(),
        if quick { " Quick mode (smaller sizes)." } else { "" }
    ));
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_owned).collect());
    let steps: [(&str, Step); 6] = [
        ("xdp", xdp_cost),
        ("veth", veth_throughput),
        ("drain", drain_cost),
        ("scoring", scoring_throughput),
        ("mitigation", mitigation),
        ("loop", flow_rate),
    ];
    let mut failed = false;
    for (name, step) in steps {
        if let Some(only) = &only
            && !only.iter().any(|o| o == name)
        {
            continue;
        }
        if let Err(e) = step(&mut r, quick) {
            eprintln!("netanom-bench: the {name} benchmark failed: {e:#}");
            r.line(format!("\n(the {name} benchmark failed: {e:#})"));
            failed = true;
        }
    }
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&out, &r.text) {
        Ok(()) => println!("\nwritten to {}", out.display()),
        Err(e) => {
            eprintln!("netanom-bench: cannot write {}: {e}", out.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
