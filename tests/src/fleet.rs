//! The fleet lab: gateway labs ([`Gateway`]) with an agent each in mitigate mode, `[fleet]`
//! pointing at one [`Nats`] server linked to every gateway namespace; and the fleet path's
//! measurements (propagation from one gateway's block to another's, decisions per second),
//! shared by `tests/tests/fleet_lab.rs` and `cargo xtask bench`.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use netanom::{
    fleet::{
        FleetConfig,
        client::publish_all,
        message::{Action, DecisionMsg, VERSION},
    },
    respond::{Cidr, Enforcer as _, KernelTables},
};

use crate::{
    Agent, Gateway, StateDirs,
    agent::start_agent,
    nats::{Nats, password},
};

/// Where each agent serves its metrics, in its gateway's namespace.
pub const METRICS_PORT: u16 = 9754;

/// One gateway of the fleet: its lab, directories, configuration and agent.
pub struct Member {
    /// Its `fleet.gateway_id` (also its NATS user).
    pub id: String,
    /// Its gateway lab; the agent runs in `gw.gw`.
    pub gw: Gateway,
    /// The agent's pin and state directories.
    pub dirs: StateDirs,
    /// The agent's configuration file.
    pub config: PathBuf,
    /// The NATS servers' URLs from the gateway's namespace.
    pub urls: Vec<String>,
    /// The running agent, if started.
    pub agent: Option<Agent>,
}

/// What a member's `[fleet]` and the rest of its configuration say.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    /// `fleet.trust`.
    pub trust: Vec<String>,
    /// `allowlist.prefixes`.
    pub allow: Vec<String>,
    /// `mitigation.block_ttl`.
    pub block_ttl: f64,
}

impl Default for MemberConfig {
    fn default() -> Self {
        MemberConfig {
            trust: Vec::new(),
            allow: Vec::new(),
            block_ttl: 60.0,
        }
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The `[fleet]` section for gateway `id` reaching the servers at `urls`.
pub fn fleet_section(id: &str, urls: &[String], trust: &[String]) -> String {
    format!(
        "[fleet]\nenabled = true\nservers = {}\ngateway_id = \"{id}\"\nuser = \"{id}\"\n\
         password = \"{}\"\ntrust = {}\n",
        list(urls),
        password(id),
        list(trust)
    )
}

impl Member {
    /// A gateway lab `tag`, linked to `nats` over link `n`.
    pub fn new(id: &str, tag: &str, nats: &mut Nats, n: u8) -> Result<Member> {
        let gw = Gateway::new(tag)?;
        let urls = nats.link(&gw.gw, n)?;
        gw.settle()?;
        let dirs = StateDirs::new(tag);
        std::fs::create_dir_all(&dirs.state_dir)?;
        let config = dirs.state_dir.join("netanom.toml");
        Ok(Member {
            id: id.into(),
            gw,
            dirs,
            config,
            urls,
            agent: None,
        })
    }

    /// Writes the agent's configuration: mitigate mode, `[fleet]` on.
    pub fn configure(&self, c: &MemberConfig) -> Result<()> {
        let text = format!(
            "[agent]\nmode = \"mitigate\"\n[mitigation]\nblock_ttl = {:.1}\n[allowlist]\nprefixes = {}\n{}",
            c.block_ttl,
            list(&c.allow),
            fleet_section(&self.id, &self.urls, &c.trust)
        );
        std::fs::write(&self.config, text).context("writing the agent's configuration")
    }

    /// Starts the agent (returns once it is ready).
    pub fn start(&mut self) {
        let config = self.config.to_str().unwrap_or_default().to_owned();
        let metrics = format!("127.0.0.1:{METRICS_PORT}");
        self.agent = Some(start_agent(
            &self.gw,
            &self.dirs,
            &["--config", &config, "--metrics-addr", &metrics],
        ));
    }

    /// The fleet's `[fleet]` as this member's configuration gives it.
    pub fn fleet_config(&self) -> Result<FleetConfig> {
        let text = std::fs::read_to_string(&self.config)?;
        Ok(netanom::pipeline::config::Config::parse(&text, "lab")?.fleet)
    }

    /// Whether this member's pinned blocklist has an active entry on exactly `prefix`.
    pub fn blocks(&self, prefix: &str) -> bool {
        let Ok(p) = prefix.parse::<Cidr>() else {
            return false;
        };
        let now = netanom::pipeline::clock::mono_now_ns();
        KernelTables::open(&self.dirs.pin_dir)
            .ok()
            .and_then(|t| t.block_entry(&p).ok().flatten())
            .is_some_and(|e| e.active(now))
    }

    /// Active entries of this member's pinned blocklist.
    pub fn active_blocks(&self) -> usize {
        let now = netanom::pipeline::clock::mono_now_ns();
        KernelTables::open(&self.dirs.pin_dir)
            .ok()
            .and_then(|t| t.blocks().ok())
            .map_or(0, |b| b.iter().filter(|b| b.active(now)).count())
    }
}

/// A block decision of `gateway` on `prefix`, lasting `ttl` seconds from now.
pub fn block_decision(gateway: &str, prefix: &str, ttl: u32, id: &str) -> DecisionMsg {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    DecisionMsg {
        v: VERSION,
        id: id.into(),
        gateway: gateway.into(),
        action: Action::Block,
        decided_at: now,
        prefix: prefix.parse().ok(),
        rate_limit: None,
        expires_at: Some(now + f64::from(ttl)),
        ttl_s: ttl,
        reason: "fleet benchmark".into(),
        signature: "netanom: operator block".into(),
        strikes: 1,
        bundle: String::new(),
    }
}

/// The fleet path's figures.
#[derive(Clone, Debug, Default)]
pub struct FleetBench {
    /// Seconds from publishing a block at A to its entry in B's pinned blocklist, sorted.
    pub propagation: Vec<f64>,
    /// Baseline: seconds from publishing to JetStream's acknowledgement, sorted.
    pub ack: Vec<f64>,
    /// Decisions per second: published and acknowledged (baseline), and applied at B.
    pub published_per_s: f64,
    /// Decisions per second applied at B.
    pub applied_per_s: f64,
    /// The burst's size.
    pub burst: usize,
}

/// The `q` quantile of sorted `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Measures, from `a`'s namespace, `runs` blocks one at a time (each until it is in `b`'s
/// lists), then a burst of `burst` decisions (until all are in `b`'s lists). Prefixes come
/// from 198.19.0.0/16 (`first` onwards); every decision lasts `ttl` seconds.
pub fn measure(a: &Member, b: &Member, runs: usize, burst: usize, ttl: u32) -> Result<FleetBench> {
    let cfg = a.fleet_config()?;
    let max_age = Duration::from_secs(3600);
    let mut out = FleetBench {
        burst,
        ..FleetBench::default()
    };
    let prefix = |i: usize| format!("198.19.{}.{}/32", 1 + i / 250, 1 + i % 250);
    let tag = std::process::id();
    for i in 0..runs {
        let m = block_decision(&a.id, &prefix(i), ttl, &format!("bench-{tag}-{i}"));
        let (t0, acked) =
            a.gw.gw
                .run(|| publish_all(&cfg, max_age, std::slice::from_ref(&m)))??;
        let seen = wait_until_fast(Duration::from_secs(5), Duration::from_millis(2), || {
            b.blocks(&prefix(i))
        })
        .with_context(|| format!("{} never reached {}", prefix(i), b.id))?;
        out.propagation.push((seen - t0).as_secs_f64());
        out.ack.push(acked[0].as_secs_f64());
    }
    let before = b.active_blocks();
    let msgs: Vec<DecisionMsg> = (runs..runs + burst)
        .map(|i| block_decision(&a.id, &prefix(i), ttl, &format!("bench-{tag}-{i}")))
        .collect();
    let (t0, acked) = a.gw.gw.run(|| publish_all(&cfg, max_age, &msgs))??;
    // B applies the stream in order: once the last is in its lists, all are (checked after);
    // one lookup a poll, where counting every entry would load the machine.
    let last = prefix(runs + burst - 1);
    let all = wait_until_fast(Duration::from_secs(30), Duration::from_millis(2), || {
        b.blocks(&last)
    })
    .map(|t| t - t0)
    .with_context(|| format!("{burst} decisions did not all reach {}", b.id))?;
    let applied = b.active_blocks().saturating_sub(before);
    anyhow::ensure!(
        applied >= burst,
        "{} has {applied} of the burst's {burst} blocks",
        b.id
    );
    let published = acked.last().copied().unwrap_or_default();
    out.published_per_s = burst as f64 / published.as_secs_f64().max(1e-9);
    out.applied_per_s = burst as f64 / all.as_secs_f64().max(1e-9);
    out.propagation.sort_by(f64::total_cmp);
    out.ack.sort_by(f64::total_cmp);
    Ok(out)
}

/// Polls `f` every `every` (for at most `limit`); the moment it first held.
fn wait_until_fast(limit: Duration, every: Duration, mut f: impl FnMut() -> bool) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return Some(Instant::now());
        }
        std::thread::sleep(every);
    }
    None
}
