//! `netanom run`: attach, then show what the kernel counts until told to stop.
use std::{io::Write as _, path::PathBuf, time::Duration};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    datapath::{Datapath, ModePreference},
    onnx,
    stats::{Format, Snapshot},
    sys,
};

/// What `netanom run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Interfaces to attach to; empty means the interface of the default route.
    pub ifaces: Vec<String>,
    pub xdp_mode: ModePreference,
    pub stats_interval: Duration,
    pub stats_format: Format,
    pub ort_lib: Option<PathBuf>,
    pub bpffs: PathBuf,
}

/// Runs the agent until SIGINT or SIGTERM; detaches everything before returning.
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

    let mut dp = Datapath::load()?;
    for i in &ifaces {
        let mode = dp.attach(i, opts.xdp_mode)?;
        log::info!("attached to {i} in {mode} XDP mode (observe mode: nothing is dropped)");
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(watch(&mut dp, &opts));
    // Whatever happened, print what was counted before detaching.
    if let Ok(s) = Snapshot::read(&dp) {
        print_snapshot(&s, None, opts.stats_format);
    }
    drop(dp);
    log::info!("detached from {}", ifaces.join(", "));
    result
}

async fn watch(dp: &mut Datapath, opts: &RunOptions) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut tick = tokio::time::interval(opts.stats_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prev: Option<Snapshot> = None;
    // Tells whoever started us (people, scripts, tests) that the program is attached.
    eprintln!("netanom: ready");
    loop {
        tokio::select! {
            _ = sigint.recv() => { log::info!("SIGINT: stopping"); return Ok(()); }
            _ = sigterm.recv() => { log::info!("SIGTERM: stopping"); return Ok(()); }
            _ = tick.tick() => {
                dp.flush_logs();
                let s = Snapshot::read(dp)?;
                print_snapshot(&s, prev.as_ref(), opts.stats_format);
                prev = Some(s);
            }
        }
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
