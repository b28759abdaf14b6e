//! `cargo xtask bench`: netanom's performance table. Every figure stands next to a baseline
//! measured in the same run, on the same machine; nothing here is a pass/fail test.
//!
//! Sections:
//! 1. XDP per-packet cost with BPF_PROG_TEST_RUN (hot flow and new flow, IPv4 and IPv6)
//!    beside a bare `XDP_PASS` program and a parse-only program.
//! 2. Throughput across a lab veth pair without and with the agent attached.
//! 3. Drain cost per flow at 10k, 100k and 1M live flows: batched syscalls beside aya's
//!    per-element iteration.
use std::{
    fmt::Write as _,
    path::PathBuf,
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use netanom::{
    batch::BatchMap,
    datapath::{Datapath, LoadOptions},
    drain,
};
use netanom_common::{
    flow::{FlowKey, FlowTimeouts, FlowValue},
    names,
};
use netanom_lab::{Endpoint, Pair, RawSender, frames, require_root, sweep_leftovers};

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

fn endpoints() -> (Endpoint, Endpoint) {
    let a = Endpoint {
        mac: [0x02, 0, 0, 0, 0, 1],
        ipv4: "198.18.0.1".parse().unwrap(),
        ipv6: "2001:db8::1".parse().unwrap(),
    };
    let b = Endpoint {
        mac: [0x02, 0, 0, 0, 0, 2],
        ipv4: "198.18.0.2".parse().unwrap(),
        ipv6: "2001:db8::2".parse().unwrap(),
    };
    (a, b)
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
         one per-CPU counter (the issue-2 program). Target: hot path at most 80 ns.",
    );
    let mut dp = Datapath::load_with(&LoadOptions {
        flow_entries: 1 << 20,
        src_entries: 1 << 18,
        dst_entries: 1 << 18,
        ..LoadOptions::default()
    })?;
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
    let dur = Duration::from_secs(if quick { 1 } else { 3 });
    let (sent0, rx0) = blast(&lab, dur)?;
    let mut agent = lab
        .a
        .command(agent_bin())
        .args(["run", "--iface", &lab.a_side.iface, "--stats-interval", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", agent_bin().display()))?;
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
        let now = drain::mono_now_ns();
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
        let s = drain::sweep_flows(
            &dp,
            drain::mono_now_ns(),
            &FlowTimeouts::DEFAULT,
            false,
            &mut consume,
        )?;
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
    let steps: [(&str, Step); 3] = [
        ("xdp", xdp_cost),
        ("veth", veth_throughput),
        ("drain", drain_cost),
    ];
    let mut failed = false;
    for (name, step) in steps {
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
