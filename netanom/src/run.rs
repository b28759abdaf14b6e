//! `netanom run`: attach, account, drain, and show what the kernel counts until told to stop.
//!
//! Stages: the kernel accounts every packet; the drain (this module, on a single-threaded
//! async runtime) collects ended flows from the ring buffer, sweeps idle ones out of the flow
//! table, resets the aggregates every interval, and hands feature batches to the consumer
//! thread through the lock-free queue of [`crate::pipeline`].
use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use netanom_common::flow::FlowRecord;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    datapath::{Datapath, LoadOptions, ModePreference},
    drain::{self, ExportReader},
    features, offline, onnx,
    pipeline::{self, Batch},
    stats::{Format, QueueCounters, Snapshot, SweepTotals},
    sys,
};

/// What `netanom run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Interfaces to attach to; empty means the interface of the default route.
    pub ifaces: Vec<String>,
    pub xdp_mode: ModePreference,
    /// Also account outgoing packets with the TC egress classifier.
    pub egress: bool,
    pub stats_interval: Duration,
    pub stats_format: Format,
    pub ort_lib: Option<PathBuf>,
    pub bpffs: PathBuf,
    pub load: LoadOptions,
    /// How often the flow table is swept for idle flows.
    pub sweep_interval: Duration,
    /// How often per-source/per-destination aggregates are drained (one vector each).
    pub aggregate_interval: Duration,
    /// Write every ended flow's feature vector here (CSV, same format as `netanom features`).
    pub flows_out: Option<PathBuf>,
}

/// Runs the agent until SIGINT or SIGTERM; exports live flows and detaches before returning.
pub fn run(opts: RunOptions) -> anyhow::Result<()> {
    let ifaces = if opts.ifaces.is_empty() {
        vec![sys::default_route_interface()?]
    } else {
        opts.ifaces.clone()
    };
    for i in &ifaces {
        sys::check_interface(i)?;
    }
    sys::check_privileges()?;
    sys::check_bpffs(&opts.bpffs)?;
    let ort = onnx::load(opts.ort_lib.as_deref())?;
    log::info!(
        "ONNX Runtime {} loaded from {}",
        onnx::ORT_VERSION,
        ort.path.display()
    );
    // Open the output before touching the kernel: a bad path fails fast.
    let flows_out = match &opts.flows_out {
        Some(p) => Some(
            File::create(p).with_context(|| format!("cannot create the flow output file {}", p.display()))?,
        ),
        None => None,
    };

    let mut dp = Datapath::load_with(&opts.load)?;
    log::info!(
        "kernel maps: {} flows, {} sources, {} destinations, {} KiB export ring (about {} MiB)",
        opts.load.flow_entries,
        opts.load.src_entries,
        opts.load.dst_entries,
        opts.load.export_ring_bytes / 1024,
        opts.load.memory_estimate() >> 20
    );
    for i in &ifaces {
        let mode = dp.attach(i, opts.xdp_mode, opts.egress)?;
        let egress = if opts.egress { " + TC egress" } else { "" };
        log::info!("attached to {i} in {mode} XDP mode{egress} (observe mode: nothing is dropped)");
    }
    let reader = ExportReader::new(&mut dp)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut state = Drain {
        totals: SweepTotals::default(),
        clock: drain::Clock::now(),
    };
    let (tx, worker) = pipeline::start(256, consumer(flows_out, state.clock));
    let result = rt.block_on(watch(&mut dp, reader, tx, &mut state, &opts));
    // The queue is closed (its sender dropped): wait until every decided vector is written.
    worker.join();
    drop(dp);
    log::info!("detached from {}", ifaces.join(", "));
    result
}

struct Drain {
    totals: SweepTotals,
    clock: drain::Clock,
}

/// The consumer end: until the scoring stage exists, it writes flow vectors if asked to.
/// A write error is logged once; writing stops there (the agent keeps accounting).
fn consumer(out: Option<File>, clock: drain::Clock) -> impl FnMut(Batch) + Send + 'static {
    let mut sink = out.map(|f| offline::CsvSink::new(BufWriter::new(f), clock_fn(clock)));
    move |batch| {
        let (Batch::Flows { records, .. }, Some(s)) = (&batch, sink.as_mut()) else {
            return;
        };
        let written = records
            .iter()
            .try_for_each(|r| s.record(r))
            .and_then(|()| s.flush());
        if let Err(e) = written {
            log::error!("writing the flow output failed: {e}; no further flows are written");
            sink = None;
        }
    }
}

fn clock_fn(clock: drain::Clock) -> impl Fn(u64) -> u64 + Send + 'static {
    move |mono| clock.unix_ns(mono)
}

async fn watch(
    dp: &mut Datapath,
    reader: ExportReader,
    mut tx: pipeline::Sender,
    st: &mut Drain,
    opts: &RunOptions,
) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // SAFETY: the reader owns the ring buffer's map fd, which stays open and unchanged for as
    // long as the AsyncFd (which owns the reader) lives.
    let mut ring = unsafe { AsyncFd::register_with_interest(reader, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watching the flow export ring buffer: {e}"))?;
    let mut stats_tick = tokio::time::interval(opts.stats_interval);
    let mut sweep_tick = tokio::time::interval(opts.sweep_interval);
    let mut agg_tick = tokio::time::interval(opts.aggregate_interval);
    for t in [&mut stats_tick, &mut sweep_tick, &mut agg_tick] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut prev: Option<Snapshot> = None;
    let mut last_agg = Instant::now();
    // Tells whoever started us (people, scripts, tests) that the program is attached.
    eprintln!("netanom: ready");
    loop {
        tokio::select! {
            _ = sigint.recv() => { log::info!("SIGINT: stopping"); break; }
            _ = sigterm.recv() => { log::info!("SIGTERM: stopping"); break; }
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the flow export ring buffer")?;
                let mut recs = Vec::new();
                guard.get_inner_mut().read(&mut recs);
                guard.clear_ready();
                send_flows(&mut tx, recs).await;
            }
            _ = sweep_tick.tick() => {
                let mut recs = Vec::new();
                let s = drain::sweep_flows_into(dp, drain::mono_now_ns(), &opts.load.timeouts, false, &mut recs)?;
                s.add_to(&mut st.totals, false);
                send_flows(&mut tx, recs).await;
            }
            _ = agg_tick.tick() => {
                let (mut src, mut dst) = (Vec::new(), Vec::new());
                drain::drain_aggregates(dp, &mut src, &mut dst)?;
                let interval_s = last_agg.elapsed().as_secs_f64();
                last_agg = Instant::now();
                tx.send(Batch::Aggregates { interval_s, src, dst }).await;
            }
            _ = stats_tick.tick() => {
                dp.flush_logs();
                let s = Snapshot::read(dp)?.with_flows(&st.totals, queue_counters(&tx));
                print_snapshot(&s, prev.as_ref(), opts.stats_format);
                prev = Some(s);
            }
        }
    }
    // Stop: collect what ended, export what is still live, hand it all to the consumer.
    let mut recs = Vec::new();
    ring.get_mut().read(&mut recs);
    send_flows(&mut tx, recs).await;
    let mut recs = Vec::new();
    let s = drain::sweep_flows_into(dp, drain::mono_now_ns(), &opts.load.timeouts, true, &mut recs)?;
    s.add_to(&mut st.totals, true);
    send_flows(&mut tx, recs).await;
    let q = queue_counters(&tx);
    drop(tx);
    // Whatever happened, print what was counted before detaching.
    if let Ok(s) = Snapshot::read(dp) {
        let mut s = s.with_flows(&st.totals, q);
        s.queue.vectors_out = s.queue.vectors_in; // the consumer drains everything before exit
        print_snapshot(&s, None, opts.stats_format);
    }
    Ok(())
}

fn queue_counters(tx: &pipeline::Sender) -> QueueCounters {
    let s = tx.stats();
    QueueCounters {
        vectors_in: s.vectors_in.load(Ordering::Relaxed),
        vectors_out: s.vectors_out.load(Ordering::Relaxed),
        full_waits: s.full_waits.load(Ordering::Relaxed),
    }
}

/// Computes the feature vectors of `recs` and queues them for the consumer.
async fn send_flows(tx: &mut pipeline::Sender, recs: Vec<FlowRecord>) {
    if recs.is_empty() {
        return;
    }
    let dim = features::FLOW_FEATURES.len();
    let mut feats = vec![0.0; recs.len() * dim];
    for (r, row) in recs.iter().zip(feats.chunks_mut(dim)) {
        features::flow_features_into(&r.key, &r.value, row);
    }
    tx.send(Batch::Flows {
        records: recs,
        features: feats,
        dim,
    })
    .await;
}

fn print_snapshot(s: &Snapshot, prev: Option<&Snapshot>, format: Format) {
    let text = match format {
        Format::Table => s.to_table(prev),
        Format::Json => s.to_json() + "\n",
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) must not kill the agent.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
