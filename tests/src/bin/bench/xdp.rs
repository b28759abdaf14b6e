//! Section 1: XDP per-packet cost with BPF_PROG_TEST_RUN, beside a bare and a parse-only program.
use netanom::{
    datapath::{Datapath, LoadOptions},
    pipeline::clock::mono_now_ns,
    respond::{Cidr, Enforcer as _, KernelTables, kernel},
};
use netanom_common::{
    mitigate::{BlockEntry, Origin},
    names,
};
use netanom_lab::{StateDirs, frames, test_endpoints as endpoints};

use crate::report::{Report, median};

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

pub(crate) fn xdp_cost(r: &mut Report, quick: bool) -> anyhow::Result<()> {
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

pub(crate) fn row(path: &str, fam: &str, bare: f64, parse: f64, ours: f64) -> String {
    format!(
        "| {path} | {fam} | {bare:.1} | {parse:.1} | {ours:.1} | {:.1} | {:.2} | {:.2} |",
        ours - bare,
        ours / bare,
        ours / parse
    )
}
