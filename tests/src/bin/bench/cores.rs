//! Section 1b: the XDP program on 1 and 2 CPUs at once (BPF_PROG_TEST_RUN from threads pinned
//! to distinct CPUs, one shared set of maps): what scales with cores and what is shared.
use std::{net::Ipv6Addr, sync::Barrier};

use netanom::datapath::{Datapath, LoadOptions};
use netanom_common::names;
use netanom_lab::{frames, test_endpoints as endpoints};

use crate::report::Report;

/// `bpf_attr` for BPF_PROG_TEST_RUN (the fields up to `duration` are all we use).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// Runs program `fd` `repeat` times over `frame` on the calling CPU; returns ns per run.
fn test_run(fd: i32, frame: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let mut a = TestRunAttr {
        prog_fd: fd as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    // SAFETY: `a` is a valid bpf_attr for this command and outlives the call; the kernel only
    // reads `frame` (no data_out).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut a as *mut TestRunAttr,
            size_of::<TestRunAttr>() as u32,
        )
    };
    anyhow::ensure!(r == 0, "BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
    Ok(f64::from(a.duration))
}

fn pin_to(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call reads it only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        anyhow::ensure!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// A frame for (CPUs in the run, this CPU, trial).
type FrameOf<'a> = &'a (dyn Fn(usize, usize, u32) -> Vec<u8> + Sync);

/// `prog` on `cpus` CPUs at once, each over its own frame from `frame_of`; returns (mean ns
/// per run on each CPU, runs per second of all CPUs together: the sum of each CPU's
/// 1e9 / ns), median of 3 trials.
fn on_cpus(fd: i32, cpus: usize, repeat: u32, frame_of: FrameOf<'_>) -> anyhow::Result<(f64, f64)> {
    let mut trials = Vec::new();
    for t in 0..3u32 {
        let barrier = Barrier::new(cpus);
        let per_cpu: Vec<f64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..cpus)
                .map(|c| {
                    let barrier = &barrier;
                    s.spawn(move || -> anyhow::Result<f64> {
                        pin_to(c)?;
                        let f = frame_of(cpus, c, t);
                        barrier.wait();
                        test_run(fd, &f, repeat)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<anyhow::Result<_>>()
        })?;
        let ns = per_cpu.iter().sum::<f64>() / cpus as f64;
        trials.push((ns, per_cpu.iter().map(|ns| 1e9 / ns).sum()));
    }
    trials.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(trials[1])
}

pub(crate) fn cores(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
    r.section(
        "XDP on 1 and 2 CPUs at once",
        "BPF_PROG_TEST_RUN from threads pinned to distinct CPUs, all on one loaded program \
         and its maps, as NAPI on several receive queues would run it. *Hot flow*: each CPU \
         its own IPv6 UDP flow (no entry shared between CPUs). *New flow*: `netanom_newflow`, \
         each CPU creating flows (and source entries) from its own IPv6 sources. Per-CPU ns is \
         the kernel's time per run on each CPU, runs per second the sum over the CPUs of \
         1e9 / ns (they run side by side, started together). On a shared machine the second \
         CPU also runs everything else.",
    );
    let mut dp = Datapath::load_with(&LoadOptions {
        flow_entries: 1 << 20,
        src_entries: 1 << 18,
        dst_entries: 1 << 18,
        ..LoadOptions::default()
    })?;
    let (a, b) = endpoints();
    let repeat_hot = if quick { 200_000 } else { 2_000_000 };
    let repeat_new = if quick { 5_000 } else { 20_000 };
    r.line("| path | CPUs | ns per run on each CPU | runs per second, all CPUs | vs 1 CPU |".into());
    r.line("|---|---:|---:|---:|---:|".into());
    let hot = |_n: usize, c: usize, _t: u32| frames::udp(&b, &a, true, 41_000 + c as u16, 53, &[0; 64]);
    // Sources 2001:db8:64:<CPUs>:<CPU>:<trial>::/96, each run counting up from its start.
    let new = |n: usize, c: usize, t: u32| {
        let mut src = b;
        src.ipv6 = Ipv6Addr::new(0x2001, 0xdb8, 0x64, n as u16, c as u16, t as u16, 0, 0);
        frames::udp(&src, &a, true, 40_000, 53, &[0; 64])
    };
    let rows: [(&str, &'static str, u32, FrameOf<'_>); 2] = [
        ("hot flow (IPv6)", names::PROG_XDP, repeat_hot, &hot),
        ("new flow (IPv6)", names::PROG_NEW_FLOW, repeat_new, &new),
    ];
    for (path, prog, repeat, f) in rows {
        let fd = dp.program_fd(prog)?;
        let mut one = 0.0;
        for cpus in 1..=n {
            let (ns, rate) = on_cpus(fd, cpus, repeat, f)?;
            if cpus == 1 {
                one = rate;
            }
            r.line(format!(
                "| {path} | {cpus} | {ns:.1} | {rate:.0} | {:.2}× |",
                rate / one
            ));
        }
    }
    drop(dp);
    Ok(())
}
