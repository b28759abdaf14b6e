//! Section 1: XDP per-packet cost with BPF_PROG_TEST_RUN, beside a bare and a parse-only
//! program and the hot flow of the same run: the hot flow, new flows, and the drop path.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netanom::{
    datapath::{Datapath, LoadOptions},
    pipeline::clock::mono_now_ns,
    respond::{Cidr, Enforcer as _, KernelTables, enforcer::pattern_key, kernel},
};
use netanom_common::{
    mitigate::{Origin, RateLimit},
    names,
};
use netanom_lab::{Endpoint, StateDirs, frames, test_endpoints as endpoints};

use crate::report::{Report, median};

const XDP_DROP: u32 = 1;
const IPPROTO_UDP: u8 = 17;

/// Kernel-measured ns per run of `prog` over `frame`, `repeat` runs in the kernel's loop,
/// median of `trials`.
pub(crate) fn hot_ns(
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
pub(crate) fn each_once_ns(dp: &mut Datapath, prog: &'static str, frames: &[Vec<u8>]) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for f in frames {
        let (_, d) = dp.test_run_program(prog, f, 1)?;
        total += d.as_nanos() as f64;
    }
    Ok(total / frames.len() as f64)
}

/// The same-run baselines of one address family, all timed in the kernel's loop.
struct Base {
    bare: f64,
    parse: f64,
    hot: f64,
}

impl Base {
    fn measure(dp: &mut Datapath, frame: &[u8], repeat: u32) -> anyhow::Result<Base> {
        Ok(Base {
            bare: hot_ns(dp, names::PROG_BARE, frame, repeat, 5)?,
            parse: hot_ns(dp, names::PROG_PARSE_ONLY, frame, repeat, 5)?,
            hot: hot_ns(dp, names::PROG_XDP, frame, repeat, 5)?,
        })
    }
}

/// A source of the lab range, `i` (below 2^17) selecting it: 198.18.0.0/15, 2001:db8:0:n::.
fn source(b: &Endpoint, v4: u32, v6: [u16; 3]) -> Endpoint {
    let mut src = *b;
    src.ipv4 = Ipv4Addr::from(0xc612_0000 | (v4 & 0x1_ffff));
    let mut seg = src.ipv6.segments();
    seg[5..8].copy_from_slice(&v6);
    src.ipv6 = seg.into();
    src
}

pub(crate) fn xdp_cost(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    r.section(
        "XDP per-packet cost (BPF_PROG_TEST_RUN)",
        "Kernel-measured time per program run. Same-run baselines, each timed in the kernel's \
         test loop over the row's own frame: `bare` returns XDP_PASS and nothing else; \
         `parse-only` classifies the frame and bumps one per-CPU counter; `hot flow` is the \
         XDP program over one UDP frame run repeatedly (its flow, source and destination \
         entries exist). *New flow, kernel loop*: `netanom_newflow`, the XDP program after \
         adding 1 to the frame's source address, so that every run of the loop creates a \
         flow and a source entry (the destination entry exists): the cost a spoofed flood \
         puts on the program, timed like the hot flow. *New flow, single runs*: distinct \
         frames (new source port and address each), one run per syscall, as measured before: \
         each run includes the harness's timer and the caches the syscall disturbs, which \
         its own single-run bare baseline (in the bare column) shows. *1,000 blocks*: 1,000 \
         /32 (/128) blocklist entries of the frame's family; *blocked source*: the frame's \
         source is one of them (dropped); *rate-limited*: 64 rate limits (1 packet/s) on the \
         destination's UDP ports, one on the frame's (dropped after the first), with the \
         1,000 blocks in place. Targets: new flow at most 3× the hot flow; the drop path at \
         most 1.5× parse-only.",
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
    let loop_new = if quick { 5_000 } else { 20_000 };
    r.line("| path | family | bare ns | parse-only ns | hot flow ns | netanom ns | netanom / parse-only | netanom / hot flow |".into());
    r.line("|---|---|---:|---:|---:|---:|---:|---:|".into());
    for v6 in [false, true] {
        let fam = if v6 { "IPv6" } else { "IPv4" };
        let frame = frames::udp(&b, &a, v6, 40_000, 53, &[0; 64]);
        let base = Base::measure(&mut dp, &frame, repeat)?;
        r.line(row("hot flow", fam, &base, None, base.hot));
        // Three trials from distinct start addresses: 198.18.1.0 + t × loop_new, or
        // 2001:db8::1:t:0 and up (no flow or source of another row).
        let mut v = Vec::new();
        for t in 0..3u32 {
            let f = frames::udp(
                &source(&b, 0x100 + t * loop_new, [1, t as u16, 0]),
                &a,
                v6,
                40_000,
                53,
                &[0; 64],
            );
            let (_, d) = dp.test_run_program(names::PROG_NEW_FLOW, &f, loop_new)?;
            v.push(d.as_nanos() as f64);
        }
        r.line(row("new flow, kernel loop", fam, &base, None, median(v)));
        // Single runs: 198.19.0.0 + i, 2001:db8::i.
        let news: Vec<Vec<u8>> = (0..n_new)
            .map(|i: u32| {
                let src = source(&b, 0x1_0000 + i, [0, (i >> 16) as u16, i as u16]);
                frames::udp(&src, &a, v6, 1024 + (i % 60_000) as u16, 53, &[0; 64])
            })
            .collect();
        let bare1 = each_once_ns(&mut dp, names::PROG_BARE, &news)?;
        let ours = each_once_ns(&mut dp, names::PROG_XDP, &news)?;
        r.line(row("new flow, single runs", fam, &base, Some(bare1), ours));
    }
    mitigation_rows(r, &mut dp, &dirs, repeat)?;
    drop(dp);
    Ok(())
}

/// The rows with 1,000 blocks (198.19.128.0 + i, 2001:db8:bad::i) and 64 rate limits.
fn mitigation_rows(r: &mut Report, dp: &mut Datapath, dirs: &StateDirs, repeat: u32) -> anyhow::Result<()> {
    let (a, b) = endpoints();
    let mut tables = KernelTables::open(&dirs.pin_dir)?;
    let now = mono_now_ns();
    let entry = netanom::respond::enforcer::NewBlock {
        now_ns: now,
        ttl: std::time::Duration::from_secs(3600),
        strikes: 1,
        origin: Origin::Manual,
        reason: "benchmark",
    }
    .entry(None);
    let blocked = |i: u32| {
        (
            Ipv4Addr::from(0xc613_8000 | i),
            Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, i as u16),
        )
    };
    for i in 0..1_000u32 {
        let (v4, v6) = blocked(i);
        tables.put_block(&Cidr::V4 { addr: v4, len: 32 }, &entry)?;
        tables.put_block(&Cidr::V6 { addr: v6, len: 128 }, &entry)?;
    }
    for v6 in [false, true] {
        let fam = if v6 { "IPv6" } else { "IPv4" };
        let frame = frames::udp(&b, &a, v6, 40_000, 53, &[0; 64]);
        let base = Base::measure(dp, &frame, repeat)?;
        r.line(row("hot flow, 1,000 blocks", fam, &base, None, base.hot));
        let mut src = b;
        (src.ipv4, src.ipv6) = blocked(777);
        let frame = frames::udp(&src, &a, v6, 40_000, 53, &[0; 64]);
        expect_drop(dp, &frame, "the blocked source's frame")?;
        let (dbase, ours) = drop_cost(dp, &frame, base.hot, repeat)?;
        r.line(row("drop: blocked source, 1,000 blocks", fam, &dbase, None, ours));
    }
    let frame_to = |v6: bool| frames::udp(&b, &a, v6, 40_000, 1_007, &[0; 64]);
    // The hot flow to the rate-limited service, before the limits (its flow then exists).
    let hot: Vec<f64> = [false, true]
        .into_iter()
        .map(|v6| hot_ns(dp, names::PROG_XDP, &frame_to(v6), repeat, 5))
        .collect::<anyhow::Result<_>>()?;
    let now = mono_now_ns();
    let limit = RateLimit::new(1.0, 1, now, now + 3_600_000_000_000);
    for dst in [IpAddr::V4(a.ipv4), IpAddr::V6(a.ipv6)] {
        for port in 1_000..1_064u16 {
            tables.put_rate_limit(&pattern_key(dst, port, IPPROTO_UDP, 0), &limit)?;
        }
    }
    for (v6, hot) in [false, true].into_iter().zip(hot) {
        let fam = if v6 { "IPv6" } else { "IPv4" };
        let frame = frame_to(v6);
        // The packets the limit admits (GCRA: the first, and one within the burst).
        for _ in 0..3 {
            let _ = dp.test_run(&frame, 1)?;
        }
        expect_drop(dp, &frame, "the rate-limited frame")?;
        let (dbase, ours) = drop_cost(dp, &frame, hot, repeat)?;
        r.line(row(
            "drop: over a rate limit, 64 limits + 1,000 blocks",
            fam,
            &dbase,
            None,
            ours,
        ));
    }
    Ok(())
}

/// Baselines over the dropped frame itself (with the hot flow `hot` of a passed frame), and
/// the XDP program's cost on it.
fn drop_cost(dp: &mut Datapath, frame: &[u8], hot: f64, repeat: u32) -> anyhow::Result<(Base, f64)> {
    let base = Base::measure(dp, frame, repeat)?;
    let ours = base.hot;
    Ok((Base { hot, ..base }, ours))
}

fn expect_drop(dp: &mut Datapath, frame: &[u8], what: &str) -> anyhow::Result<()> {
    let (action, _) = dp.test_run(frame, 1)?;
    anyhow::ensure!(action == XDP_DROP, "{what} was not dropped (action {action})");
    Ok(())
}

/// One row; `bare1`: the single-run bare baseline, shown instead of the loop's.
fn row(path: &str, fam: &str, b: &Base, bare1: Option<f64>, ours: f64) -> String {
    let bare = match bare1 {
        Some(x) => format!("{x:.1} (single runs)"),
        None => format!("{:.1}", b.bare),
    };
    format!(
        "| {path} | {fam} | {bare} | {:.1} | {:.1} | {ours:.1} | {:.2} | {:.2} |",
        b.parse,
        b.hot,
        ours / b.parse,
        ours / b.hot
    )
}
