//! SIGHUP: the configuration file re-read (with the command line's flags over it), the
//! allowlist and the model bundle re-made, everything validated before anything changes.
use std::fmt;

use netanom_common::mitigate::Origin;

use super::{
    config::Config,
    scoring::{BundleChoice, load_scorer, load_sequence},
};
use crate::{
    model::{Scorer, SequenceModel},
    respond::{Cidr, allowlist},
    telemetry::BundleInfo,
};

/// Re-reads the configuration: the file, with the flags the agent was started with over it.
pub type ConfigSource = Box<dyn Fn() -> anyhow::Result<Config> + Send>;

/// What SIGHUP hands to the scoring stage: a validated configuration and a freshly loaded
/// model bundle.
pub struct Reload {
    pub config: Config,
    pub scorer: Scorer,
    pub sequence: Option<SequenceModel>,
    pub bundle_label: String,
    pub allow: Vec<(Cidr, Origin)>,
}

impl fmt::Debug for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reload")
            .field("bundle", &self.bundle_label)
            .finish_non_exhaustive()
    }
}

/// Re-reads the configuration from `source` and the model bundle, and validates both; nothing
/// changes unless everything is valid. What only a restart can change is logged.
pub fn reload(source: &ConfigSource, old: &Config) -> anyhow::Result<(Reload, BundleInfo)> {
    let cfg = source()?;
    for (what, same) in [
        ("agent.interfaces", cfg.agent.interfaces == old.agent.interfaces),
        ("agent.pin_dir", cfg.agent.pin_dir == old.agent.pin_dir),
        ("agent.alerts", cfg.agent.alerts == old.agent.alerts),
        ("agent.state_dir", cfg.agent.state_dir == old.agent.state_dir),
        ("metrics", cfg.metrics == old.metrics),
        ("datapath", cfg.datapath == old.datapath),
        ("bgp", cfg.bgp == old.bgp),
        ("fleet", cfg.fleet == old.fleet),
    ] {
        if !same {
            log::warn!("{what} changed in the configuration: it takes effect at the next restart");
        }
    }
    let (scorer, info) = load_scorer(&BundleChoice::of(&cfg))?;
    let sequence = load_sequence(&BundleChoice::of(&cfg))?;
    let allow = allowlist::wanted(&cfg.allowlist);
    Ok((
        Reload {
            config: cfg,
            scorer,
            sequence,
            bundle_label: info.label(),
            allow,
        },
        info,
    ))
}
