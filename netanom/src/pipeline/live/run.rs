//! Starting the live agent: every check first (interfaces, privileges, bpffs, pins, the
//! bundle, the outputs, the metrics address), then the program loaded and attached, then the
//! scoring stage on its thread behind the queue, and the event loop. On return the program is
//! detached; blocks, allows and rate limits stay pinned.
use std::{fs::File, io::BufWriter, net::TcpListener, sync::Arc, time::Duration};

use anyhow::Context as _;

use super::{
    Live,
    drain::DrainState,
    interfaces::Interfaces,
    options::LiveOptions,
    report::{Reports, interface_info},
};
use crate::{
    bgp::Announcer,
    datapath::{Datapath, host},
    fleet::{self, Fleet, publisher::Publisher},
    model::Scorer,
    pipeline::{
        clock::{Clock as _, SystemClock},
        config::Config,
        queue,
        scoring::{BundleChoice, load_scorer, load_sequence},
        stage::{ResponseWiring, Stage},
    },
    respond::{AlertContext, AlertSink, Enforcer as _, KernelTables, allowlist, kernel},
    sinks::{CsvSink, alerts::FleetAlerts, metrics, stats_line::StatsLine},
    sources::live::ExportReader,
    telemetry::{BundleInfo, ResponseCounters, ScoreTally, fleet::FleetCounters},
};

/// How long the start-up waits for the fleet's decisions stream to be replayed.
const FLEET_REPLAY_WAIT: Duration = Duration::from_secs(5);

/// Batches the queue holds before the drain waits.
const QUEUE_BATCHES: usize = 256;

/// What was opened before anything touched the kernel: a bad path or a busy port fails fast.
struct Outputs {
    flows_out: Option<File>,
    alerts: Box<dyn crate::respond::AlertSink>,
    listener: Option<TcpListener>,
}

/// Runs the agent until SIGINT or SIGTERM; exports live flows and detaches before returning.
pub fn run(opts: LiveOptions) -> anyhow::Result<()> {
    let cfg = &opts.config;
    let ifaces = checked_interfaces(cfg)?;
    let pin_dir = cfg.agent.pin_dir.clone();
    kernel::check_pins(&pin_dir)?;
    let (scorer, bundle_info) = load_scorer(&BundleChoice::of(cfg))?;
    let sequence = load_sequence(&BundleChoice::of(cfg))?;
    let outputs = open_outputs(cfg)?;
    // Nothing is created on bpffs before every check above has passed.
    kernel::ensure_dir(&pin_dir)?;
    let load = opts.load();
    let mut dp = Datapath::load_pinned(&load, Some(&pin_dir))?;
    log::info!(
        "kernel maps: {} flows, {} sources, {} destinations, {} KiB export ring (about {} MiB); \
         blocks, allows and rate limits pinned in {}",
        load.flow_entries,
        load.src_entries,
        load.dst_entries,
        load.export_ring_bytes / 1024,
        load.memory_estimate() >> 20,
        pin_dir.display()
    );
    let clock = SystemClock::new();
    let tables = open_tables(cfg, &clock)?;
    attach(&mut dp, cfg, &ifaces)?;
    let reader = ExportReader::new(&mut dp)?;
    let mut metrics = metrics::Metrics::new(load.flow_entries, Some(&bundle_info));
    if cfg.bgp.enabled {
        metrics = metrics.with_bgp();
    }
    if cfg.fleet.enabled {
        metrics = metrics.with_fleet();
    }
    let metrics = Arc::new(metrics);
    metrics.set_attachments(&interface_info(&dp));
    let server = match outputs.listener {
        Some(l) => Some(start_server(l, metrics.clone())?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut live = Live::new(opts, clock, metrics, bundle_info.clone(), ifaces.clone());
    let (mut stage, fleet) = build_stage(
        &live,
        scorer,
        tables,
        outputs.alerts,
        &bundle_info,
        &ifaces,
        outputs.flows_out,
    )?;
    stage.sequence = sequence;
    let clock = live.drain.clock;
    let (tx, worker) = queue::start(QUEUE_BATCHES, move |b| stage.consume(b, clock.now()));
    // `watch` closes the queue and joins the consumer, so every vector is scored, every
    // decision taken and every alert written.
    let result = rt.block_on(live.watch(&mut dp, reader, tx, worker));
    // The stage is gone: the fleet's thread publishes what waits (bounded), then stops.
    drop(fleet);
    drop(server);
    live.reports.write_state(&dp, &live.ifaces, None, true);
    drop(dp);
    log::info!(
        "detached from {}; blocks, allows and rate limits stay pinned in {}",
        ifaces.join(", "),
        pin_dir.display()
    );
    result
}

/// The interfaces to watch (the default route's when none is configured), each checked.
fn checked_interfaces(cfg: &Config) -> anyhow::Result<Vec<String>> {
    let ifaces = if cfg.agent.interfaces.is_empty() {
        vec![host::default_route_interface()?]
    } else {
        cfg.agent.interfaces.clone()
    };
    for i in &ifaces {
        host::check_interface(i)?;
    }
    host::check_privileges()?;
    host::check_bpffs(&cfg.agent.bpffs)?;
    Ok(ifaces)
}

fn open_outputs(cfg: &Config) -> anyhow::Result<Outputs> {
    let flows_out = match &cfg.agent.flows_out {
        Some(p) => Some(
            File::create(p).with_context(|| format!("cannot create the flow output file {}", p.display()))?,
        ),
        None => None,
    };
    let alerts = cfg.agent.alerts.open()?;
    // Likewise the metrics endpoint: a busy port or a foreign address fails before attaching.
    let listener = cfg
        .metrics
        .enabled
        .then(|| metrics::bind(cfg.metrics.addr))
        .transpose()?;
    Ok(Outputs {
        flows_out,
        alerts,
        listener,
    })
}

/// The pinned lists, with the agent's allowlist in force.
fn open_tables(cfg: &Config, clock: &SystemClock) -> anyhow::Result<KernelTables> {
    let mut tables = KernelTables::open(&cfg.agent.pin_dir)?;
    let allow = allowlist::wanted(&cfg.allowlist);
    let now = clock.now();
    allowlist::sync(&mut tables, &allow, now.mono_ns)?;
    log::info!(
        "allowlist: {} entries kept by the agent (configured prefixes, host addresses, gateways), {} in all",
        allow.len(),
        tables.allows()?.len()
    );
    let active = tables.blocks()?.iter().filter(|b| b.active(now.mono_ns)).count();
    if active > 0 {
        log::info!("{active} blocks from before this start are in force");
    }
    Ok(tables)
}

fn attach(dp: &mut Datapath, cfg: &Config, ifaces: &[String]) -> anyhow::Result<()> {
    let (mode, egress) = (cfg.datapath.xdp_mode, cfg.datapath.egress);
    for i in ifaces {
        let xdp = dp.attach(i, mode, egress)?;
        let tc = if egress { " + TC egress" } else { "" };
        let what = match cfg.agent.mode {
            crate::respond::Mode::Observe => "observe mode: nothing is dropped by the detector",
            crate::respond::Mode::Mitigate => "mitigate mode: offenders are blocked in the kernel",
        };
        log::info!("attached to {i} in {xdp} XDP mode{tc} ({what})");
    }
    Ok(())
}

fn start_server(l: TcpListener, m: Arc<metrics::Metrics>) -> anyhow::Result<metrics::Server> {
    let server = metrics::Server::start(l, m).context("starting the metrics endpoint's thread")?;
    log::info!(
        "serving Prometheus metrics at http://{}{}",
        server.local_addr(),
        metrics::PATH
    );
    Ok(server)
}

/// The scoring stage: model, detector and responder over the kernel tables, sharing the
/// live reports' counters; with `[bgp]` on, the announcer is told of its decisions; with
/// `[fleet]` on, the fleet is too, its alerts go to the fleet as well, and the fleet's active
/// blocks are applied (the stream replayed) before this returns.
fn build_stage(
    live: &Live,
    scorer: Scorer,
    tables: KernelTables,
    alerts: Box<dyn crate::respond::AlertSink>,
    bundle: &BundleInfo,
    ifaces: &[String],
    flows_out: Option<File>,
) -> anyhow::Result<(Stage, Option<Fleet>)> {
    let cfg = &live.opts.config;
    let clock = live.drain.clock;
    let fleet = match &live.reports.fleet {
        Some(counters) => Some(start_fleet(cfg, counters.clone(), bundle, clock.now().unix_ns)?),
        None => None,
    };
    let alerts: Box<dyn AlertSink> = match &fleet {
        Some(f) if cfg.fleet.publish_alerts => Box::new(FleetAlerts::new(
            alerts,
            f.outbox.clone(),
            f.origin.subjects.alerts(&f.origin.gateway),
            f.origin.gateway.clone(),
            f.origin.boot_ns,
        )),
        _ => alerts,
    };
    let wiring = ResponseWiring {
        enforcer: Box::new(tables),
        alerts,
        ctx: AlertContext {
            in_iface: (ifaces.len() == 1).then(|| ifaces[0].clone()),
            mode: cfg.agent.mode,
            bundle: bundle.label(),
        },
        counters: live.reports.response.clone(),
    };
    let mut stage = Stage::configured(cfg, scorer, wiring, live.reports.tally.clone(), clock.now());
    stage.metrics = Some(live.reports.metrics.clone());
    stage.flows_out = flows_out.map(|f| {
        let w: Box<dyn std::io::Write + Send> = Box::new(BufWriter::new(f));
        CsvSink::new(w, move |mono| clock.unix_ns(mono))
    });
    if let Some(counters) = &live.reports.bgp {
        let announcer = Announcer::start(cfg.bgp.clone(), cfg.agent.mode, counters.clone())
            .context("starting the BGP speaker's thread")?;
        log::info!("BGP: {}", cfg.bgp.describe(cfg.agent.mode));
        stage.responder.add_decision_sink(Box::new(announcer));
    }
    let Some(f) = fleet else {
        return Ok((stage, None));
    };
    let publisher = Publisher::new(f.origin, f.outbox, cfg.fleet.share_blocks, f.mitigating);
    stage.responder.add_decision_sink(Box::new(publisher));
    Ok((stage, Some(f.fleet)))
}

/// The fleet's thread, started, and what the sinks need of it.
struct FleetParts {
    fleet: Fleet,
    outbox: fleet::outbox::Outbox,
    mitigating: Arc<std::sync::atomic::AtomicBool>,
    origin: fleet::publisher::Origin,
}

/// Starts the fleet's thread and waits (bounded) for the replay of the decisions stream.
fn start_fleet(
    cfg: &Config,
    counters: Arc<FleetCounters>,
    bundle: &BundleInfo,
    boot_ns: u64,
) -> anyhow::Result<FleetParts> {
    let f = &cfg.fleet;
    let gateway = f.gateway();
    let (outbox, inbox) = fleet::outbox::outbox(fleet::outbox::CAPACITY, counters.clone());
    let mitigating = Arc::new(std::sync::atomic::AtomicBool::new(
        cfg.agent.mode == crate::respond::Mode::Mitigate,
    ));
    // The stream keeps a decision as long as the longest TTL one can have.
    let m = &cfg.mitigation;
    let max_age = Duration::from_secs_f64(m.max_block_ttl.max(m.rate_limit_ttl).max(m.block_ttl) + 60.0);
    log::info!("fleet: {}", f.describe(&gateway));
    let started = std::time::Instant::now();
    let fleet = Fleet::start(fleet::worker::Setup {
        cfg: f.clone(),
        gateway: gateway.clone(),
        pin_dir: cfg.agent.pin_dir.clone(),
        max_age,
        max_rate_limits: m.max_rate_limits,
        counters,
        mitigating: mitigating.clone(),
        inbox,
    })
    .context("starting the fleet's thread")?;
    if fleet.wait_ready(FLEET_REPLAY_WAIT) {
        log::info!(
            "fleet: the decisions stream is replayed ({:.2} s): the fleet's active blocks are in force",
            started.elapsed().as_secs_f64()
        );
    } else {
        log::warn!(
            "fleet: the decisions stream could not be replayed within {} s (NATS unreachable?): starting \
             without the fleet's blocks; they are applied as soon as NATS answers",
            FLEET_REPLAY_WAIT.as_secs()
        );
    }
    let origin = fleet::publisher::Origin {
        gateway,
        bundle: bundle.label(),
        subjects: f.subjects(),
        boot_ns,
    };
    Ok(FleetParts {
        fleet,
        outbox,
        mitigating,
        origin,
    })
}

impl Live {
    fn new(
        opts: LiveOptions,
        clock: SystemClock,
        metrics: Arc<metrics::Metrics>,
        bundle: BundleInfo,
        ifaces: Vec<String>,
    ) -> Live {
        let cfg = &opts.config;
        let stats = StatsLine::new(cfg.agent.stats_format, cfg.agent.alerts.is_stdout());
        let started = clock.now().unix_ns as f64 / 1e9;
        let mut reports = Reports::new(
            metrics.clone(),
            Arc::new(ScoreTally::default()),
            Arc::new(ResponseCounters::default()),
            stats,
            bundle,
            cfg.agent.state_dir.clone(),
            cfg.agent.pin_dir.display().to_string(),
            opts.config_path.as_ref().map(|p| p.display().to_string()),
            started,
        );
        reports.bgp = cfg.bgp.enabled.then(Default::default);
        reports.fleet = cfg.fleet.enabled.then(Default::default);
        Live {
            drain: DrainState::new(clock, metrics),
            reports,
            ifaces: Interfaces::new(ifaces),
            opts,
        }
    }
}
