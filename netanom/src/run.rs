//! `netanom run`: attach, account, drain, and show what the kernel counts until told to stop.
//!
//! Stages: the kernel accounts every packet; the drain (this module, on a single-threaded
//! async runtime) collects ended flows from the ring buffer, sweeps idle ones out of the flow
//! table, resets the aggregates every interval, and hands feature batches to the consumer
//! thread through the lock-free queue of [`crate::pipeline`]. The same counters that the stats
//! line shows feed the Prometheus metrics ([`crate::metrics`]), served from a thread of their own.
use std::{
    fs::File,
    io::{BufWriter, Write as _},
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use netanom_common::{Event, flow::FlowRecord};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    datapath::{Datapath, LoadOptions, ModePreference},
    drain::{self, ExportReader},
    features,
    metrics::{self, BundleInfo, DrainStage, Metrics},
    model::{self, Bundle, BundleOptions, ExecutionProvider, Scorer},
    offline,
    pipeline::{self, Batch},
    stats::{Format, QueueCounters, ScoreCounters, Snapshot, SweepTotals},
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
    /// Model bundle directory; `None` means the embedded default bundle.
    pub bundle: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per model session.
    pub model_threads: usize,
    pub provider: ExecutionProvider,
    /// Serve Prometheus metrics at this address; `None` serves none.
    pub metrics_addr: Option<SocketAddr>,
}

/// How often the metrics are refreshed from the kernel at least, whatever `stats_interval`.
const METRICS_REFRESH: Duration = Duration::from_secs(1);

/// Counters the scoring thread updates and the stats line reads.
#[derive(Debug, Default)]
struct ScoreStats {
    scored: AtomicU64,
    flagged: [AtomicU64; 3],
    ensemble: AtomicU64,
    rejected: AtomicU64,
}

impl ScoreStats {
    fn snapshot(&self) -> ScoreCounters {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ScoreCounters {
            scored: l(&self.scored),
            anomalies_autoencoder: l(&self.flagged[0]),
            anomalies_iforest: l(&self.flagged[1]),
            anomalies_rf: l(&self.flagged[2]),
            anomalies_ensemble: l(&self.ensemble),
            rejected: l(&self.rejected),
        }
    }
}

/// Loads the bundle (embedded default unless `--bundle`) and binds it to the live flow
/// schema: a bundle wanting a feature the agent does not produce is refused, naming it.
/// Also returns what `netanom_model_bundle_info` says about it.
fn load_scorer(opts: &RunOptions) -> anyhow::Result<(Scorer, BundleInfo)> {
    let environment = model::runtime(opts.ort_lib.as_deref())?;
    let bopts = BundleOptions {
        intra_threads: opts.model_threads,
        provider: opts.provider,
        environment: Some(environment),
        ..BundleOptions::default()
    };
    let bundle = match &opts.bundle {
        Some(dir) => Bundle::load_with(dir, &bopts)?,
        None => model::embedded::load(&bopts)?,
    };
    let names: Vec<&str> = features::FLOW_FEATURES.iter().map(|f| f.name).collect();
    let binding = bundle.bind(&names)?;
    let m = bundle.manifest();
    log::info!(
        "model bundle: {} ({} dataset, {} of the {} flow features, {} execution provider)",
        bundle.origin(),
        m.dataset,
        binding.gather.len(),
        names.len(),
        bundle.provider()
    );
    let info = BundleInfo {
        origin: opts
            .bundle
            .as_ref()
            .map_or_else(|| "embedded".to_owned(), |d| d.display().to_string()),
        dataset: m.dataset.clone(),
        provider: bundle.provider().name().to_owned(),
    };
    Ok((Scorer::with_binding(bundle, binding)?, info))
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
    let (scorer, bundle_info) = load_scorer(&opts)?;
    // Open the output before touching the kernel: a bad path fails fast.
    let flows_out = match &opts.flows_out {
        Some(p) => Some(
            File::create(p).with_context(|| format!("cannot create the flow output file {}", p.display()))?,
        ),
        None => None,
    };
    // Likewise the metrics endpoint: a busy port or a foreign address fails before attaching.
    let listener = opts.metrics_addr.map(metrics::bind).transpose()?;

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
    let metrics = Arc::new(Metrics::new(opts.load.flow_entries, Some(&bundle_info)));
    metrics.set_attachments(dp.attachments());
    let server = match listener {
        Some(l) => {
            let server = metrics::Server::start(l, metrics.clone())
                .context("starting the metrics endpoint's thread")?;
            log::info!(
                "serving Prometheus metrics at http://{}{}",
                server.local_addr(),
                metrics::PATH
            );
            Some(server)
        }
        None => None,
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut state = Drain {
        totals: SweepTotals::default(),
        clock: drain::Clock::now(),
        scores: Default::default(),
        metrics,
        serving: server.is_some(),
    };
    let (tx, worker) = pipeline::start(
        256,
        consumer(
            flows_out,
            state.clock,
            scorer,
            state.scores.clone(),
            state.metrics.clone(),
        ),
    );
    // `watch` closes the queue and joins the consumer, so every vector is scored and written.
    let result = rt.block_on(watch(&mut dp, reader, tx, worker, &mut state, &opts));
    drop(server);
    drop(dp);
    log::info!("detached from {}", ifaces.join(", "));
    result
}

struct Drain {
    totals: SweepTotals,
    clock: drain::Clock,
    scores: Arc<ScoreStats>,
    metrics: Arc<Metrics>,
    /// Whether the metrics endpoint is up (then the metrics are refreshed every second).
    serving: bool,
}

/// The consumer end (the scoring stage): scores every flow vector with the bundle and counts
/// what each model flagged (and how long each batch took); writes flows to `--flows-out` if
/// asked. A write error is logged once and writing stops there; scoring goes on.
fn consumer(
    out: Option<File>,
    clock: drain::Clock,
    mut scorer: Scorer,
    stats: Arc<ScoreStats>,
    metrics: Arc<Metrics>,
) -> impl FnMut(Batch) + Send + 'static {
    let mut sink = out.map(|f| offline::CsvSink::new(BufWriter::new(f), clock_fn(clock)));
    let mut rows: Vec<f32> = Vec::new();
    let mut failed_once = false;
    move |batch| {
        let Batch::Flows {
            records,
            features,
            dim,
        } = &batch
        else {
            return;
        };
        let started = Instant::now();
        rows.clear();
        rows.extend(features.iter().map(|&v| v as f32));
        match scorer.score(&rows, records.len()) {
            Ok(s) => {
                metrics.observe_scoring(started.elapsed());
                stats.scored.fetch_add(records.len() as u64, Ordering::Relaxed);
                for (m, flags) in s.flagged.iter().enumerate().take(3) {
                    let n = flags.iter().filter(|f| **f).count() as u64;
                    stats.flagged[m].fetch_add(n, Ordering::Relaxed);
                }
                let n = s.anomaly.iter().filter(|f| **f).count() as u64;
                stats.ensemble.fetch_add(n, Ordering::Relaxed);
                stats
                    .rejected
                    .fetch_add(s.rejected.len() as u64, Ordering::Relaxed);
            }
            Err(e) if !failed_once => {
                log::error!(
                    "scoring {} flow vectors of width {dim} failed: {e}",
                    records.len()
                );
                failed_once = true;
            }
            Err(_) => {}
        }
        if let Some(s) = sink.as_mut() {
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
}

fn clock_fn(clock: drain::Clock) -> impl Fn(u64) -> u64 + Send + 'static {
    move |mono| clock.unix_ns(mono)
}

async fn watch(
    dp: &mut Datapath,
    reader: ExportReader,
    mut tx: pipeline::Sender,
    worker: pipeline::Worker,
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
    let mut metrics_tick = tokio::time::interval(METRICS_REFRESH.min(opts.stats_interval));
    for t in [&mut stats_tick, &mut sweep_tick, &mut agg_tick, &mut metrics_tick] {
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
                let started = Instant::now();
                let mut recs = Vec::new();
                guard.get_inner_mut().read(&mut recs);
                guard.clear_ready();
                let batch = flow_batch(recs);
                st.metrics.observe_drain(DrainStage::Ring, started.elapsed());
                send(&mut tx, batch).await;
            }
            _ = sweep_tick.tick() => {
                let batch = sweep(dp, st, &opts.load.timeouts, false)?;
                send(&mut tx, batch).await;
            }
            _ = agg_tick.tick() => {
                let started = Instant::now();
                let (mut src, mut dst) = (Vec::new(), Vec::new());
                drain::drain_aggregates(dp, &mut src, &mut dst)?;
                let interval_s = last_agg.elapsed().as_secs_f64();
                last_agg = Instant::now();
                st.metrics.observe_drain(DrainStage::Aggregates, started.elapsed());
                tx.send(Batch::Aggregates { interval_s, src, dst }).await;
            }
            _ = stats_tick.tick() => {
                dp.flush_logs();
                let s = snapshot(dp, st, &tx)?;
                print_snapshot(&s, prev.as_ref(), opts.stats_format);
                prev = Some(s);
            }
            _ = metrics_tick.tick(), if st.serving => {
                snapshot(dp, st, &tx)?;
            }
        }
    }
    // Stop: collect what ended, export what is still live, hand it all to the consumer.
    let started = Instant::now();
    let mut recs = Vec::new();
    ring.get_mut().read(&mut recs);
    let batch = flow_batch(recs);
    st.metrics.observe_drain(DrainStage::Ring, started.elapsed());
    send(&mut tx, batch).await;
    let batch = sweep(dp, st, &opts.load.timeouts, true)?;
    send(&mut tx, batch).await;
    let q = queue_counters(&tx);
    drop(tx);
    // Whatever happened, print what was counted before detaching, once the consumer has
    // scored everything queued.
    let final_snapshot = Snapshot::read(dp).map(|s| s.with_flows(&st.totals, q));
    worker.join();
    if let Ok(mut s) = final_snapshot {
        s.queue.vectors_out = s.queue.vectors_in;
        s.scoring = st.scores.snapshot();
        st.metrics.update(&s, 0);
        print_snapshot(&s, None, opts.stats_format);
    }
    Ok(())
}

/// Reads the counters (kernel, drain, queue, scoring), as the stats line shows them, and
/// refreshes the metrics from them.
fn snapshot(dp: &Datapath, st: &Drain, tx: &pipeline::Sender) -> anyhow::Result<Snapshot> {
    let mut s = Snapshot::read(dp)?.with_flows(&st.totals, queue_counters(tx));
    s.scoring = st.scores.snapshot();
    st.metrics.update(&s, tx.queued());
    Ok(s)
}

/// One sweep of the flow table (a flush when `flush`): idle flows out as a batch, the totals
/// updated, the time it took observed.
fn sweep(
    dp: &Datapath,
    st: &mut Drain,
    timeouts: &netanom_common::flow::FlowTimeouts,
    flush: bool,
) -> anyhow::Result<Option<Batch>> {
    let started = Instant::now();
    // What the sweep will find accounts for the flows created before it started.
    let created = dp
        .event_counters()?
        .iter()
        .find(|(e, _)| *e == Event::FlowCreated)
        .map_or(0, |(_, n)| *n);
    let mut recs = Vec::new();
    let s = drain::sweep_flows_into(dp, drain::mono_now_ns(), timeouts, flush, &mut recs)?;
    s.add_to(&mut st.totals, flush);
    st.totals.created_at_sweep = created;
    let batch = flow_batch(recs);
    st.metrics.observe_drain(DrainStage::Sweep, started.elapsed());
    Ok(batch)
}

fn queue_counters(tx: &pipeline::Sender) -> QueueCounters {
    let s = tx.stats();
    QueueCounters {
        vectors_in: s.vectors_in.load(Ordering::Relaxed),
        vectors_out: s.vectors_out.load(Ordering::Relaxed),
        full_waits: s.full_waits.load(Ordering::Relaxed),
    }
}

/// Computes the feature vectors of `recs`: the batch for the consumer (none if no records).
fn flow_batch(recs: Vec<FlowRecord>) -> Option<Batch> {
    if recs.is_empty() {
        return None;
    }
    let dim = features::FLOW_FEATURES.len();
    let mut feats = vec![0.0; recs.len() * dim];
    for (r, row) in recs.iter().zip(feats.chunks_mut(dim)) {
        features::flow_features_into(&r.key, &r.value, row);
    }
    Some(Batch::Flows {
        records: recs,
        features: feats,
        dim,
    })
}

/// Queues a batch for the consumer (waiting, counted, while the queue is full).
async fn send(tx: &mut pipeline::Sender, batch: Option<Batch>) {
    if let Some(b) = batch {
        tx.send(b).await;
    }
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
