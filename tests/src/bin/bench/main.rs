//! `cargo xtask bench`: netanom's performance table. Every figure stands next to a baseline
//! measured in the same run, on the same machine; nothing here is a pass/fail test.
//!
//! Sections:
//! 1. XDP per-packet cost with BPF_PROG_TEST_RUN (hot flow, new flow and the drop path, IPv4
//!    and IPv6) beside a bare `XDP_PASS` program, a parse-only program and the hot flow.
//!    1b. The XDP program on 1 and 2 CPUs at once, one shared set of maps.
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
//! 7. Detection on a capture file: `netanom run --pcap` on one core, beside `netanom
//!    features` on the same capture.
//!
//! 8. The fleet: a block's propagation from one gateway to another over NATS JetStream (p50,
//!    p95) and the decisions per second the path sustains, beside JetStream's acknowledgements.
//!
//! `--only NAME[,NAME]` runs only the named sections (xdp, cores, veth, drain, scoring,
//! mitigation, loop, offline, fleet).
mod agent;
mod cores;
mod drain;
mod fleet;
mod flow_rate;
mod mitigation;
mod offline;
mod report;
mod scoring;
mod veth;
mod xdp;

use std::{path::PathBuf, process::ExitCode};

use netanom_lab::require_root;
use report::{Report, Step};

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
    let steps: [(&str, Step); 9] = [
        ("xdp", xdp::xdp_cost),
        ("cores", cores::cores),
        ("veth", veth::veth_throughput),
        ("drain", drain::drain_cost),
        ("scoring", scoring::scoring_throughput),
        ("mitigation", mitigation::mitigation),
        ("loop", flow_rate::flow_rate),
        ("offline", offline::offline),
        ("fleet", fleet::fleet),
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
