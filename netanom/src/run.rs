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
use netanom_common::{Event, flow::FlowRecord, mitigate::Origin};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    alerts::{self, AlertContext},
    cidr::Cidr,
    cli::RunArgs,
    config::{self, Config, Mode},
    control::{AgentState, InterfaceState},
    datapath::{Datapath, LoadOptions, ModePreference},
    detect::{self, Detector, ScoredFlow},
    drain::{self, ExportReader},
    features::{self, FlowIdentity},
    metrics::{self, BundleInfo, DrainStage, Metrics},
    model::{self, Bundle, BundleOptions, ExecutionProvider, Scorer},
    offline,
    pipeline::{self, Batch},
    respond::{self, MitigationCounters, Responder},
    stats::{Format, QueueCounters, ScoreCounters, Snapshot, SweepTotals},
    sys,
    tables::{self, Tables},
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
    /// The whole configuration (file and flags), and the flags (re-applied on reload).
    pub config: Config,
    pub args: Option<RunArgs>,
}

impl RunOptions {
    /// The options of a validated configuration; `args` are the flags that overrode the file.
    pub fn new(cfg: Config, args: RunArgs) -> RunOptions {
        let mut o = RunOptions::from_config(&cfg);
        o.config = cfg;
        o.args = Some(args);
        o
    }

    pub fn from_config(cfg: &Config) -> RunOptions {
        let d = &cfg.datapath;
        let mut load = LoadOptions {
            flow_entries: d.flow_table_size,
            src_entries: d.src_table_size,
            dst_entries: d.dst_table_size,
            export_ring_bytes: d.export_ring_bytes,
            ..LoadOptions::default()
        };
        load.timeouts.active_ns = config::secs(d.active_timeout).as_nanos() as u64;
        load.timeouts.idle_ns = config::secs(d.idle_timeout).as_nanos() as u64;
        let a = &cfg.agent;
        RunOptions {
            ifaces: a.interfaces.clone(),
            xdp_mode: d.xdp_mode,
            egress: d.egress,
            stats_interval: config::secs(a.stats_interval),
            stats_format: a.stats_format,
            ort_lib: a.ort_lib.clone(),
            bpffs: a.bpffs.clone(),
            load,
            sweep_interval: config::secs(d.sweep_interval),
            aggregate_interval: config::secs(d.aggregate_interval),
            flows_out: a.flows_out.clone(),
            bundle: a.bundle.clone(),
            model_threads: a.model_threads.max(1),
            provider: a.provider,
            metrics_addr: cfg.metrics.enabled.then_some(cfg.metrics.addr),
            config: cfg.clone(),
            args: None,
        }
    }
}

/// What SIGHUP hands to the scoring stage: a validated configuration and a freshly loaded
/// model bundle.
pub struct Reload {
    pub config: Config,
    pub scorer: Scorer,
    pub bundle_label: String,
    pub allow: Vec<(Cidr, Origin)>,
}

impl std::fmt::Debug for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reload")
            .field("bundle", &self.bundle_label)
            .finish_non_exhaustive()
    }
}

/// The allowlist the agent maintains: configured prefixes, the host's addresses, its
/// default gateways.
fn wanted_allowlist(cfg: &Config) -> Vec<(Cidr, Origin)> {
    let mut out: Vec<(Cidr, Origin)> = cfg
        .allowlist
        .prefixes
        .iter()
        .map(|c| (*c, Origin::Agent))
        .collect();
    if cfg.allowlist.host_addresses {
        out.extend(
            sys::host_addresses()
                .into_iter()
                .map(|ip| (Cidr::host(ip), Origin::HostAddress)),
        );
    }
    if cfg.allowlist.default_gateway {
        out.extend(
            sys::default_gateways()
                .into_iter()
                .map(|ip| (Cidr::host(ip), Origin::Gateway)),
        );
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|(c, _)| seen.insert(*c));
    out
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
pub fn load_scorer(opts: &RunOptions) -> anyhow::Result<(Scorer, BundleInfo)> {
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
    let binding = bundle.bind(&names).map_err(|e| {
        anyhow::anyhow!(
            "{e}. The live agent produces only the flow features listed in netanom/FEATURES.md, \
             so `netanom run` needs a bundle trained on them: the embedded default (omit \
             --bundle), or one made by `cargo xtask train -- --dataset cic-ids2017`"
        )
    })?;
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
/// Blocks, allows and rate limits stay pinned.
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
    let cfg = &opts.config;
    let pin_dir = cfg.agent.pin_dir.clone();
    tables::check_pins(&pin_dir)?;
    let (scorer, bundle_info) = load_scorer(&opts)?;
    // Open the outputs before touching the kernel: a bad path fails fast.
    let flows_out = match &opts.flows_out {
        Some(p) => Some(
            File::create(p).with_context(|| format!("cannot create the flow output file {}", p.display()))?,
        ),
        None => None,
    };
    let alert_target = cfg.agent.alerts.to_string();
    let sink = alerts::AlertSink::open(&alert_target)?;
    let stats_to_stderr = alert_target == "-";
    // Likewise the metrics endpoint: a busy port or a foreign address fails before attaching.
    let listener = opts.metrics_addr.map(metrics::bind).transpose()?;

    // Nothing is created on bpffs before every check above has passed.
    tables::ensure_dir(&pin_dir)?;
    let mut dp = Datapath::load_pinned(&opts.load, Some(&pin_dir))?;
    log::info!(
        "kernel maps: {} flows, {} sources, {} destinations, {} KiB export ring (about {} MiB); \
         blocks, allows and rate limits pinned in {}",
        opts.load.flow_entries,
        opts.load.src_entries,
        opts.load.dst_entries,
        opts.load.export_ring_bytes / 1024,
        opts.load.memory_estimate() >> 20,
        pin_dir.display()
    );
    let mut tables = Tables::open(&pin_dir)?;
    let allow = wanted_allowlist(cfg);
    respond::sync_allowlist(&mut tables, &allow)?;
    log::info!(
        "allowlist: {} entries kept by the agent (configured prefixes, host addresses, gateways), {} in all",
        allow.len(),
        tables.allows()?.len()
    );
    let active_blocks = tables
        .blocks()?
        .iter()
        .filter(|b| b.active(drain::mono_now_ns()))
        .count();
    if active_blocks > 0 {
        log::info!("{active_blocks} blocks from before this start are in force");
    }
    let mode = cfg.agent.mode;
    for i in &ifaces {
        let xdp = dp.attach(i, opts.xdp_mode, opts.egress)?;
        let egress = if opts.egress { " + TC egress" } else { "" };
        let what = match mode {
            Mode::Observe => "observe mode: nothing is dropped by the detector",
            Mode::Mitigate => "mitigate mode: offenders are blocked in the kernel",
        };
        log::info!("attached to {i} in {xdp} XDP mode{egress} ({what})");
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
    let counters = Arc::new(MitigationCounters::default());
    let label = bundle_label(&bundle_info);
    let ctx = AlertContext {
        in_iface: (ifaces.len() == 1).then(|| ifaces[0].clone()),
        mode: alerts::Mode::Observe,
        bundle: label,
    };
    let responder = Responder::new(mode, cfg.mitigation.clone(), tables, sink, ctx, counters.clone());
    let detector = Detector::new(cfg.detection.clone(), scorer.model_names().len());
    let mut state = Drain {
        totals: SweepTotals::default(),
        uncredited: drain::Uncredited::default(),
        clock: drain::Clock::now(),
        scores: Default::default(),
        metrics,
        counters,
        effective: Arc::new(std::sync::atomic::AtomicU8::new(mode as u8)),
        ifaces: ifaces.clone(),
        down: Vec::new(),
        ifindex: ifaces
            .iter()
            .filter_map(|i| Some((i.clone(), sys::check_interface(i).ok()?)))
            .collect(),
        started: alerts::now_ns() as f64 / 1e9,
        bundle: bundle_info,
        stats_to_stderr,
    };
    let stage = Stage {
        sink: flows_out.map(|f| offline::CsvSink::new(BufWriter::new(f), clock_fn(state.clock))),
        bundle_thresholds: scorer.thresholds().to_vec(),
        scorer,
        detector,
        responder,
        stats: state.scores.clone(),
        metrics: state.metrics.clone(),
        rows: Vec::new(),
        failed_once: false,
        recalibrate: cfg.detection.recalibrate,
        effective: state.effective.clone(),
        mode,
    };
    let (tx, worker) = pipeline::start(256, consumer(stage));
    // `watch` closes the queue and joins the consumer, so every vector is scored, every
    // decision taken and every alert written.
    let result = rt.block_on(watch(&mut dp, reader, tx, worker, &mut state, &opts));
    drop(server);
    let mut final_state = agent_state(&dp, &state, &opts, None);
    final_state.stopped = true;
    let _ = final_state.write(&opts.config.agent.state_dir);
    drop(dp);
    log::info!(
        "detached from {}; blocks, allows and rate limits stay pinned in {}",
        ifaces.join(", "),
        pin_dir.display()
    );
    result
}

fn bundle_label(b: &BundleInfo) -> String {
    format!("{} ({})", b.origin, b.dataset)
}

struct Drain {
    totals: SweepTotals,
    /// Aggregate volume of idle-swept flows, credited with the next aggregate drain.
    uncredited: drain::Uncredited,
    clock: drain::Clock,
    scores: Arc<ScoreStats>,
    metrics: Arc<Metrics>,
    counters: Arc<MitigationCounters>,
    /// The mode in force (`Mode as u8`), as the scoring stage last saw it.
    effective: Arc<std::sync::atomic::AtomicU8>,
    ifaces: Vec<String>,
    /// Interfaces that disappeared (reattached when they return).
    down: Vec<String>,
    /// The index of each interface the program is attached to: an interface deleted and
    /// recreated under the same name between two checks has a new one.
    ifindex: Vec<(String, u32)>,
    started: f64,
    bundle: BundleInfo,
    stats_to_stderr: bool,
}

/// The scoring stage: model, detector, responder, and what they report.
struct Stage {
    sink: Option<offline::CsvSink<BufWriter<File>>>,
    scorer: Scorer,
    bundle_thresholds: Vec<f64>,
    detector: Detector,
    responder: Responder,
    stats: Arc<ScoreStats>,
    metrics: Arc<Metrics>,
    rows: Vec<f32>,
    failed_once: bool,
    recalibrate: bool,
    effective: Arc<std::sync::atomic::AtomicU8>,
    mode: Mode,
}

fn mode_of(v: u8) -> Mode {
    if v == Mode::Mitigate as u8 {
        Mode::Mitigate
    } else {
        Mode::Observe
    }
}

/// The consumer end (the scoring stage): scores every flow vector with the bundle, counts
/// what each model flagged, feeds flows and aggregates to the detector and findings to the
/// responder (blocks, rate limits, alerts); writes flows to `--flows-out` if asked. A write
/// error is logged once and writing stops there; scoring goes on.
fn consumer(mut st: Stage) -> impl FnMut(Batch) + Send + 'static {
    let names: Vec<&'static str> = features::FLOW_FEATURES.iter().map(|f| f.name).collect();
    move |batch| {
        let now = Instant::now();
        match batch {
            Batch::Flows {
                records,
                features,
                dim,
            } => {
                score_flows(&mut st, &records, &features, dim, &names, now);
                if let Some(s) = st.sink.as_mut() {
                    let written = records
                        .iter()
                        .try_for_each(|r| s.record(r))
                        .and_then(|()| s.flush());
                    if let Err(e) = written {
                        log::error!("writing the flow output failed: {e}; no further flows are written");
                        st.sink = None;
                    }
                }
            }
            Batch::Aggregates { interval_s, src, dst } => {
                let findings = st.detector.observe_aggregates(interval_s, &src, &dst, now);
                st.responder.handle(findings, now);
                if let Err(e) = st.responder.maintain(now) {
                    log::error!("maintaining the pinned blocklist failed: {e}");
                }
                recalibrate(&mut st);
                let eff = st.responder.effective_mode(now);
                st.effective.store(eff as u8, Ordering::Relaxed);
                st.responder.flush();
            }
            Batch::Reload(r) => {
                let Reload {
                    config,
                    scorer,
                    bundle_label,
                    allow,
                } = *r;
                st.bundle_thresholds = scorer.thresholds().to_vec();
                st.scorer = scorer;
                st.detector.set_config(config.detection.clone());
                st.recalibrate = config.detection.recalibrate;
                st.mode = config.agent.mode;
                st.responder
                    .reconfigure(config.agent.mode, config.mitigation.clone(), bundle_label);
                if let Err(e) = respond::sync_allowlist(st.responder.tables(), &allow) {
                    log::error!("updating the allowlist failed: {e}");
                }
                recalibrate(&mut st);
                log::info!(
                    "configuration, allowlist and model bundle reloaded ({} mode)",
                    st.mode.name()
                );
            }
        }
    }
}

/// Applies the online thresholds (or the bundle's, when recalibration is off or has not seen
/// enough normal flows).
fn recalibrate(st: &mut Stage) {
    let learned = if st.recalibrate {
        st.detector.recalibrated()
    } else {
        vec![None; st.bundle_thresholds.len()]
    };
    let wanted: Vec<f64> = st
        .bundle_thresholds
        .iter()
        .zip(learned.iter().chain(std::iter::repeat(&None)))
        .map(|(b, l)| l.unwrap_or(*b))
        .collect();
    let names = st.scorer.model_names();
    for ((cur, new), name) in st.scorer.thresholds().iter().zip(&wanted).zip(&names) {
        if (new / cur - 1.0).abs() > 0.1 {
            log::info!(
                "{name} threshold {cur:.6} -> {new:.6} ({})",
                if learned.iter().any(Option::is_some) {
                    "recalibrated on recent normal traffic"
                } else {
                    "the bundle's"
                }
            );
        }
    }
    st.scorer.set_thresholds(&wanted);
}

fn score_flows(
    st: &mut Stage,
    records: &[FlowRecord],
    features: &[f64],
    dim: usize,
    names: &[&str],
    now: Instant,
) {
    let started = Instant::now();
    st.rows.clear();
    st.rows.extend(features.iter().map(|&v| v as f32));
    // (name, threshold in force) per model, then the ensemble: once per batch.
    let mut labels: Vec<(String, f64)> = st
        .scorer
        .model_names()
        .into_iter()
        .zip(st.scorer.thresholds().iter().copied())
        .collect();
    labels.push((
        "ensemble".into(),
        st.scorer.bundle().manifest().ensemble_threshold,
    ));
    let s = match st.scorer.score(&st.rows, records.len()) {
        Ok(s) => s,
        Err(e) => {
            if !st.failed_once {
                log::error!(
                    "scoring {} flow vectors of width {dim} failed: {e}",
                    records.len()
                );
                st.failed_once = true;
            }
            return;
        }
    };
    st.metrics.observe_scoring(started.elapsed());
    st.stats.scored.fetch_add(records.len() as u64, Ordering::Relaxed);
    for (m, flags) in s.flagged.iter().enumerate().take(3) {
        let n = flags.iter().filter(|f| **f).count() as u64;
        st.stats.flagged[m].fetch_add(n, Ordering::Relaxed);
    }
    let n = s.anomaly.iter().filter(|f| **f).count() as u64;
    st.stats.ensemble.fetch_add(n, Ordering::Relaxed);
    st.stats
        .rejected
        .fetch_add(s.rejected.len() as u64, Ordering::Relaxed);
    let mut flows = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        if !s.is_scored(i) {
            continue;
        }
        let id = FlowIdentity::new(&r.key, &r.value, None);
        let mut scores: Vec<f64> = s.model.iter().map(|m| f64::from(m[i])).collect();
        scores.push(s.ensemble[i]);
        flows.push(ScoredFlow {
            src: id.src_ip,
            src_port: id.src_port,
            dst: id.dst_ip,
            dst_port: id.dst_port,
            proto: id.protocol,
            features: &features[i * dim..(i + 1) * dim],
            scores,
            ensemble: s.ensemble[i],
            anomaly: s.anomaly[i],
            icmp_error: detect::is_icmp_error(id.protocol, r.value.icmp_type),
        });
    }
    let findings = st.detector.observe_flows(&flows, &labels, names, now);
    if !findings.is_empty() {
        st.responder.handle(findings, now);
        st.responder.flush();
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
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut iface_tick = tokio::time::interval(IFACE_CHECK);
    iface_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
    // The first tick of an interval fires at once; aggregates are first drained one interval
    // after the start, so that their rates cover a whole interval.
    agg_tick.tick().await;
    let mut last_agg = Instant::now();
    // Tells whoever started us (people, scripts, tests) that the program is attached.
    eprintln!("netanom: ready");
    loop {
        tokio::select! {
            _ = sigint.recv() => { log::info!("SIGINT: stopping"); break; }
            _ = sigterm.recv() => { log::info!("SIGTERM: stopping"); break; }
            _ = sighup.recv() => {
                log::info!("SIGHUP: reloading the configuration, the allowlist and the model bundle");
                match reload(opts) {
                    Ok((r, info)) => {
                        st.metrics.set_bundle(&info);
                        st.bundle = info;
                        tx.send(Batch::Reload(Box::new(r))).await;
                    }
                    Err(e) => log::error!(
                        "reload failed, the running configuration, allowlist and bundle stay in force: {e:#}"
                    ),
                }
            }
            _ = iface_tick.tick() => {
                watch_interfaces(dp, st, opts);
            }
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
                st.uncredited.credit(&mut src, &mut dst);
                let interval_s = last_agg.elapsed().as_secs_f64();
                last_agg = Instant::now();
                st.metrics.observe_drain(DrainStage::Aggregates, started.elapsed());
                tx.send(Batch::Aggregates { interval_s, src, dst }).await;
            }
            _ = stats_tick.tick() => {
                dp.flush_logs();
                let s = snapshot(dp, st, &tx)?;
                print_snapshot(&s, prev.as_ref(), opts.stats_format, st.stats_to_stderr);
                write_state(dp, st, opts, Some(&s));
                prev = Some(s);
            }
            _ = metrics_tick.tick() => {
                let s = snapshot(dp, st, &tx)?;
                write_state(dp, st, opts, Some(&s));
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
        print_snapshot(&s, None, opts.stats_format, st.stats_to_stderr);
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
    if !flush {
        recs.iter().for_each(|r| st.uncredited.add(r));
    }
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

/// Prints the counters on stdout, or on stderr when stdout carries the alerts.
fn print_snapshot(s: &Snapshot, prev: Option<&Snapshot>, format: Format, to_stderr: bool) {
    let text = match format {
        Format::Table => s.to_table(prev),
        Format::Json => s.to_json() + "\n",
    };
    // A closed stdout (e.g. `| head`) must not kill the agent.
    if to_stderr {
        let mut out = std::io::stderr().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
}

/// How often the agent checks that its interfaces still exist.
const IFACE_CHECK: Duration = Duration::from_secs(1);

/// Notices interfaces that disappeared (logged; blocks stay pinned and in force elsewhere)
/// and reattaches to those that came back. An interface deleted and recreated under the same
/// name between two checks is a new interface (a new index) without the program: it is
/// treated as gone and back at once.
fn watch_interfaces(dp: &mut Datapath, st: &mut Drain, opts: &RunOptions) {
    let mut changed = false;
    for i in st.ifaces.clone() {
        let index = sys::check_interface(&i).ok();
        let known = st.ifindex.iter().find(|(n, _)| *n == i).map(|(_, k)| *k);
        if !st.down.contains(&i) {
            match (index, known) {
                (None, _) => log::warn!(
                    "interface {i} disappeared: its traffic is no longer watched; blocks stay pinned \
                     and in force, and netanom reattaches when {i} returns"
                ),
                (Some(new), Some(old)) if new != old => log::warn!(
                    "interface {i} was replaced by a new interface of the same name (index {old}, now \
                     {new}), which has no XDP program: reattaching"
                ),
                _ => continue,
            }
            dp.detach(&i);
            st.down.push(i.clone());
            changed = true;
        }
        if let Some(new) = index {
            match dp.attach(&i, opts.xdp_mode, opts.egress) {
                Ok(mode) => {
                    log::info!("interface {i} is back: reattached in {mode} XDP mode");
                    st.down.retain(|d| *d != i);
                    st.ifindex.retain(|(n, _)| *n != i);
                    st.ifindex.push((i, new));
                    changed = true;
                }
                Err(e) => log::warn!("interface {i} is back but reattaching failed (retrying): {e}"),
            }
        }
    }
    if changed {
        st.metrics.set_attachments(dp.attachments());
    }
}

/// Re-reads the configuration file (with the command line's flags over it) and the model
/// bundle, and validates both; nothing changes unless everything is valid.
fn reload(opts: &RunOptions) -> anyhow::Result<(Reload, BundleInfo)> {
    let Some(args) = &opts.args else {
        anyhow::bail!("no configuration to reload");
    };
    let cfg = args.config()?;
    let old = &opts.config;
    for (what, same) in [
        ("agent.interfaces", cfg.agent.interfaces == old.agent.interfaces),
        ("agent.pin_dir", cfg.agent.pin_dir == old.agent.pin_dir),
        ("agent.alerts", cfg.agent.alerts == old.agent.alerts),
        ("agent.state_dir", cfg.agent.state_dir == old.agent.state_dir),
        ("metrics", cfg.metrics == old.metrics),
        ("datapath", cfg.datapath == old.datapath),
    ] {
        if !same {
            log::warn!("{what} changed in the configuration: it takes effect at the next restart");
        }
    }
    let new_opts = RunOptions::from_config(&cfg);
    let (scorer, info) = load_scorer(&new_opts)?;
    let allow = wanted_allowlist(&cfg);
    Ok((
        Reload {
            config: cfg,
            scorer,
            bundle_label: bundle_label(&info),
            allow,
        },
        info,
    ))
}

fn mitigation_json(c: &MitigationCounters) -> serde_json::Value {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    serde_json::json!({
        "blocks_active": l(&c.blocks_active),
        "blocks_added": l(&c.blocks_added),
        "blocks_expired": l(&c.blocks_expired),
        "would_block": l(&c.would_block),
        "allowlisted": l(&c.allowlisted),
        "rate_limits_active": l(&c.rate_limits_active),
        "rate_limits_added": l(&c.rate_limits_added),
        "breaker_trips": l(&c.breaker_trips),
        "breaker_open": c.breaker_open.load(Ordering::Relaxed),
        "findings": c.findings_total(),
        "alerts": l(&c.alerts),
    })
}

fn agent_state(dp: &Datapath, st: &Drain, opts: &RunOptions, s: Option<&Snapshot>) -> AgentState {
    let mut interfaces: Vec<InterfaceState> = dp
        .attachments()
        .iter()
        .map(|a| InterfaceState {
            iface: a.iface.clone(),
            xdp_mode: a.mode.to_string(),
            egress: a.egress,
        })
        .collect();
    interfaces.extend(st.down.iter().map(|i| InterfaceState {
        iface: i.clone(),
        xdp_mode: "down".into(),
        egress: false,
    }));
    AgentState {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_unix: st.started,
        updated_unix: alerts::now_ns() as f64 / 1e9,
        mode: opts.config.agent.mode.name().into(),
        effective_mode: mode_of(st.effective.load(Ordering::Relaxed)).name().into(),
        config: opts
            .args
            .as_ref()
            .and_then(|a| a.config.as_ref())
            .map(|p| p.display().to_string()),
        interfaces,
        bundle: bundle_label(&st.bundle),
        pin_dir: opts.config.agent.pin_dir.display().to_string(),
        counters: s
            .and_then(|s| serde_json::from_str(&s.to_json()).ok())
            .unwrap_or_default(),
        mitigation: mitigation_json(&st.counters),
        stopped: false,
    }
}

/// Writes the status file `netanom status` reads (errors are logged once).
fn write_state(dp: &Datapath, st: &Drain, opts: &RunOptions, s: Option<&Snapshot>) {
    static FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let eff = mode_of(st.effective.load(Ordering::Relaxed));
    st.metrics
        .update_mitigation(&st.counters, opts.config.agent.mode, eff);
    if let Err(e) = agent_state(dp, st, opts, s).write(&opts.config.agent.state_dir)
        && !FAILED.swap(true, Ordering::Relaxed)
    {
        {
            log::warn!(
                "cannot write the status file in {}: {e}; `netanom status` will not see this agent",
                opts.config.agent.state_dir.display()
            );
        }
    }
}
