//! The agent's configuration file (`netanom run --config FILE`): one TOML file, sections
//! `[agent]`, `[metrics]`, `[datapath]`, `[detection]`, `[mitigation]`, `[allowlist]`, `[bgp]` and
//! `[fleet]`.
//!
//! Every key is optional and defaults to the value in [`Config::default`]; unknown keys
//! (typos) are rejected, naming the file, line and column. The README's Configuration section
//! and `deploy/netanom.toml` document every key; tests keep both in step with this file.
//!
//! Conventions:
//! - durations are seconds, as floats (integers are accepted too); [`secs`] converts them;
//! - optional paths (`agent.bundle`, `agent.ort_lib`, `agent.flows_out`) are `Option<PathBuf>`
//!   here and strings in the file, where `""` means none;
//! - `agent.alerts` is an [`AlertTarget`]: `"-"` for stdout, `""` for none, otherwise a file.
//!
//! Each section's type lives with the component it configures; this file puts them together.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::error::{ConfigError, line_column};
use crate::{
    bgp::BgpConfig,
    datapath::DatapathConfig,
    detect::DetectionConfig,
    fleet::FleetConfig,
    model::ExecutionProvider,
    respond::{AllowlistConfig, MitigationConfig, Mode},
    sinks::{alerts::AlertTarget, metrics::MetricsConfig, stats_line::Format},
};

/// The whole configuration file. `Default` is what an empty file gives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agent: AgentConfig,
    pub metrics: MetricsConfig,
    pub datapath: DatapathConfig,
    pub detection: DetectionConfig,
    pub mitigation: MitigationConfig,
    pub allowlist: AllowlistConfig,
    pub bgp: BgpConfig,
    pub fleet: FleetConfig,
}

/// `[agent]`: what to watch, the models, and where output goes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Interfaces to attach to; empty: the interface of the default route.
    pub interfaces: Vec<String>,
    pub mode: Mode,
    /// Model bundle directory; `None` (`""`): the embedded default bundle.
    #[serde(with = "opt_path")]
    pub bundle: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per model (1 to 256).
    pub model_threads: usize,
    pub provider: ExecutionProvider,
    /// ONNX Runtime shared library; `None` (`""`): searched.
    #[serde(with = "opt_path")]
    pub ort_lib: Option<PathBuf>,
    pub alerts: AlertTarget,
    /// Seconds between counter reports (0.05 to 3600).
    pub stats_interval: f64,
    pub stats_format: Format,
    /// CSV file for every ended flow's features; `None` (`""`): none.
    #[serde(with = "opt_path")]
    pub flows_out: Option<PathBuf>,
    /// Mount point of the BPF filesystem.
    pub bpffs: PathBuf,
    /// Where blocks, allows and rate limits are pinned (under `bpffs`).
    pub pin_dir: PathBuf,
    /// Where the running agent writes its status file for `netanom status`.
    pub state_dir: PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            mode: Mode::Observe,
            bundle: None,
            model_threads: 1,
            provider: ExecutionProvider::Cpu,
            ort_lib: None,
            alerts: AlertTarget::Stdout,
            stats_interval: 2.0,
            stats_format: Format::Table,
            flows_out: None,
            bpffs: PathBuf::from("/sys/fs/bpf"),
            pin_dir: PathBuf::from("/sys/fs/bpf/netanom"),
            state_dir: PathBuf::from("/run/netanom"),
        }
    }
}

/// Seconds from the file as a [`Duration`]; negative or NaN gives zero, too large the
/// maximum. (Validated values are always in range.)
pub fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(if s > 0.0 { Duration::MAX } else { Duration::ZERO })
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` (usually the file's path) prefixes errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e: toml::de::Error| {
            let (line, column) = e.span().map_or((0, 0), |span| line_column(text, span.start));
            ConfigError::Parse {
                origin: origin.to_owned(),
                line,
                column,
                message: e.message().trim_end().to_owned(),
            }
        })?;
        config.validate().map_err(|e| e.with_origin(origin))?;
        Ok(config)
    }

    /// The configuration as a TOML document (every key, with its value).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration is always representable in TOML")
    }
}

/// `Option<PathBuf>` as a string, `""` for `None`.
pub(crate) mod opt_path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_str(""),
            Some(p) => match p.to_str() {
                Some(p) => s.serialize_str(p),
                None => Err(serde::ser::Error::custom(format!(
                    "path {} is not valid UTF-8",
                    p.display()
                ))),
            },
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let s = String::deserialize(d)?;
        Ok((!s.is_empty()).then(|| PathBuf::from(s)))
    }
}
