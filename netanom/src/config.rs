//! The agent's configuration file (`netanom run --config FILE`): one TOML file, sections
//! `[agent]`, `[metrics]`, `[datapath]`, `[detection]`, `[mitigation]` and `[allowlist]`.
//!
//! Every key is optional and defaults to the value in [`Config::default`]; unknown keys
//! (typos) are rejected, naming the file, line and column. The README's Configuration section
//! and `deploy/netanom.toml` document every key; tests keep both in step with this file.
//!
//! Conventions:
//! - durations are seconds, as floats (integers are accepted too); [`secs`] converts them;
//! - optional paths (`agent.bundle`, `agent.ort_lib`, `agent.flows_out`) are `Option<PathBuf>`
//!   here and strings in the file, where `""` means none;
//! - `agent.alerts` is an [`AlertSink`]: `"-"` for stdout, `""` for none, otherwise a file.
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cidr::Cidr;
use crate::datapath::ModePreference;
use crate::model::ExecutionProvider;
use crate::stats::Format;

/// What the agent does about offenders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Alerts and would-block counts only: nothing is dropped.
    #[default]
    Observe,
    /// Blocks offenders and rate limits floods in the kernel.
    Mitigate,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Mitigate => "mitigate",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where EVE JSON alerts go (`agent.alerts`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AlertSink {
    /// `""`: no alerts are written.
    Off,
    /// `"-"`: one JSON object per line on stdout.
    #[default]
    Stdout,
    /// Any other string: appended to this file.
    File(PathBuf),
}

impl FromStr for AlertSink {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<AlertSink, Self::Err> {
        Ok(match s {
            "" => AlertSink::Off,
            "-" => AlertSink::Stdout,
            path => AlertSink::File(PathBuf::from(path)),
        })
    }
}

impl fmt::Display for AlertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertSink::Off => Ok(()),
            AlertSink::Stdout => f.write_str("-"),
            AlertSink::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Serialize for AlertSink {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AlertSink {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AlertSink, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse().unwrap_or_else(|never| match never {}))
    }
}

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
    pub alerts: AlertSink,
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
            alerts: AlertSink::Stdout,
            stats_interval: 2.0,
            stats_format: Format::Table,
            flows_out: None,
            bpffs: PathBuf::from("/sys/fs/bpf"),
            pin_dir: PathBuf::from("/sys/fs/bpf/netanom"),
            state_dir: PathBuf::from("/run/netanom"),
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Served at `http://ADDR/metrics`.
    #[serde(with = "socket_addr")]
    pub addr: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 9754)),
        }
    }
}

/// `[datapath]`: the XDP program and its maps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatapathConfig {
    pub xdp_mode: ModePreference,
    /// Attach the TC egress classifier too.
    pub egress: bool,
    pub flow_table_size: u32,
    pub src_table_size: u32,
    pub dst_table_size: u32,
    /// A power of two, 4096 to 1 GiB.
    pub export_ring_bytes: u32,
    /// Seconds (0.001 to 86400).
    pub active_timeout: f64,
    /// Seconds (0.001 to 86400).
    pub idle_timeout: f64,
    /// Seconds (0.05 to 3600).
    pub sweep_interval: f64,
    /// Seconds (0.05 to 3600).
    pub aggregate_interval: f64,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        Self {
            xdp_mode: ModePreference::Auto,
            egress: true,
            flow_table_size: 262_144,
            src_table_size: 65_536,
            dst_table_size: 65_536,
            export_ring_bytes: 4 << 20,
            active_timeout: 120.0,
            idle_timeout: 30.0,
            sweep_interval: 1.0,
            aggregate_interval: 0.5,
        }
    }
}

/// `[detection]`: when a source is an offender, and online threshold recalibration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Seconds over which a source's anomalous flows are counted (1 to 3600).
    pub flow_window: f64,
    /// A source is an offender when at least this many of its flows in the window are
    /// anomalous...
    pub min_anomalous_flows: u32,
    /// ...and they are at least this fraction of its flows (0 to 1).
    pub min_anomalous_ratio: f64,
    /// Floor, packets per second from one source.
    pub src_pps: f64,
    /// Floor, unanswered SYNs per second from one source.
    pub src_syn_rate: f64,
    /// Floor, distinct destination ports per second from one source.
    pub src_port_rate: f64,
    /// Floor, distinct sources per second hitting one destination service.
    pub dst_sources: f64,
    /// Floor, packets per second to one destination service.
    pub dst_pps: f64,
    /// An aggregate must exceed its learned normal level times this (>= 1).
    pub learned_margin: f64,
    pub recalibrate: bool,
    /// Quantile of recent normal scores used as the online threshold (0.5 to below 1).
    pub recalibrate_quantile: f64,
    /// Normal flow scores needed before an online threshold replaces the bundle's (>= 100).
    pub recalibrate_min_samples: u64,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            flow_window: 10.0,
            min_anomalous_flows: 10,
            min_anomalous_ratio: 0.5,
            src_pps: 2000.0,
            src_syn_rate: 200.0,
            src_port_rate: 100.0,
            dst_sources: 200.0,
            dst_pps: 5000.0,
            learned_margin: 3.0,
            recalibrate: true,
            recalibrate_quantile: 0.999,
            recalibrate_min_samples: 5000,
        }
    }
}

/// `[mitigation]`: blocks, rate limits and the circuit breaker (mode `mitigate` only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MitigationConfig {
    /// Seconds the first block of a source lasts (1 to 31536000).
    pub block_ttl: f64,
    /// Each repeat block multiplies the TTL by this (>= 1).
    pub ttl_escalation: f64,
    /// Seconds; escalation stops here (>= `block_ttl`).
    pub max_block_ttl: f64,
    /// Seconds without a block after which a source's repeat count resets.
    pub forget_after: f64,
    /// Prefix length blocked around an IPv4 offender (8 to 32).
    pub block_prefix_v4: u8,
    /// Prefix length blocked around an IPv6 offender (32 to 128).
    pub block_prefix_v6: u8,
    /// Cap on active blocklist entries (1 to 65536).
    pub max_blocks: u32,
    pub max_new_blocks_per_minute: u32,
    /// Seconds in observe mode after the circuit breaker trips; 0: until reload.
    pub breaker_cooldown: f64,
    /// Packets per second a flood pattern is limited to (> 0).
    pub rate_limit_pps: f64,
    pub rate_limit_burst: u32,
    /// Seconds a rate limit lasts.
    pub rate_limit_ttl: f64,
    /// Cap on active rate limits (1 to 4096).
    pub max_rate_limits: u32,
}

impl Default for MitigationConfig {
    fn default() -> Self {
        Self {
            block_ttl: 300.0,
            ttl_escalation: 2.0,
            max_block_ttl: 86_400.0,
            forget_after: 86_400.0,
            block_prefix_v4: 32,
            block_prefix_v6: 128,
            max_blocks: 10_000,
            max_new_blocks_per_minute: 120,
            breaker_cooldown: 600.0,
            rate_limit_pps: 1000.0,
            rate_limit_burst: 100,
            rate_limit_ttl: 300.0,
            max_rate_limits: 64,
        }
    }
}

impl MitigationConfig {
    /// How long a block lasts when the source was already blocked `repeats` times before
    /// (within `forget_after`): `block_ttl × ttl_escalation^repeats`, at most `max_block_ttl`.
    pub fn block_ttl_for(&self, repeats: u32) -> Duration {
        let ttl = self.block_ttl * self.ttl_escalation.powi(repeats.min(i32::MAX as u32) as i32);
        secs(ttl.min(self.max_block_ttl))
    }

    /// The prefix length blocked around an offender of this family.
    pub fn block_prefix(&self, v4: bool) -> u8 {
        if v4 {
            self.block_prefix_v4
        } else {
            self.block_prefix_v6
        }
    }
}

/// `[allowlist]`: addresses never blocked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowlistConfig {
    /// Infrastructure prefixes never blocked (management, BGP peers, DNS resolvers).
    pub prefixes: Vec<Cidr>,
    /// Never block the host's own addresses.
    pub host_addresses: bool,
    /// Never block the default gateway(s).
    pub default_gateway: bool,
}

impl Default for AllowlistConfig {
    fn default() -> Self {
        Self {
            prefixes: Vec::new(),
            host_addresses: true,
            default_gateway: true,
        }
    }
}

/// Seconds from the file as a [`Duration`]; negative or NaN gives zero, too large the
/// maximum. (Validated values are always in range.)
pub fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(if s > 0.0 { Duration::MAX } else { Duration::ZERO })
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read the configuration file {}: {error}; check the path given to --config",
        path.display()
    )]
    Read { path: PathBuf, error: std::io::Error },
    /// Bad TOML, an unknown key, a value of the wrong type or a bad prefix. `line` and
    /// `column` count from 1 (`column` in characters); 0 when the parser gave no position.
    #[error("{}: {message}", location(origin, *line, *column))]
    Parse {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value of the right type outside its allowed range.
    #[error("{}{key} = {value} is not allowed: {allowed}", in_origin(origin))]
    Invalid {
        origin: Option<String>,
        /// `section.key`.
        key: String,
        value: String,
        allowed: String,
    },
}

fn location(origin: &str, line: usize, column: usize) -> String {
    if line == 0 {
        origin.to_owned()
    } else {
        format!("{origin}:{line}:{column}")
    }
}

fn in_origin(origin: &Option<String>) -> String {
    origin.as_ref().map(|o| format!("{o}: ")).unwrap_or_default()
}

impl ConfigError {
    fn with_origin(self, o: &str) -> ConfigError {
        match self {
            ConfigError::Invalid {
                origin: None,
                key,
                value,
                allowed,
            } => ConfigError::Invalid {
                origin: Some(o.to_owned()),
                key,
                value,
                allowed,
            },
            e => e,
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
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

    /// Range and consistency checks. Each error names the key as `section.key`, the value
    /// and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.agent;
        for name in &a.interfaces {
            if name.is_empty()
                || name.len() > 15
                || name == "."
                || name == ".."
                || name.contains(['/', ':'])
                || name.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(invalid(
                    "agent.interfaces",
                    format!("{name:?}"),
                    "an interface name is 1 to 15 characters without '/', ':' or spaces",
                ));
            }
        }
        if let Some(dup) = a
            .interfaces
            .iter()
            .enumerate()
            .find_map(|(i, n)| a.interfaces[..i].contains(n).then_some(n))
        {
            return Err(invalid(
                "agent.interfaces",
                format!("{:?}", a.interfaces),
                format!("each interface once; {dup:?} is listed twice"),
            ));
        }
        int_range("agent.model_threads", a.model_threads as u64, 1, 256)?;
        float_range("agent.stats_interval", a.stats_interval, 0.05, 3600.0)?;
        for (key, path) in [
            ("agent.bpffs", &a.bpffs),
            ("agent.pin_dir", &a.pin_dir),
            ("agent.state_dir", &a.state_dir),
        ] {
            if !path.is_absolute() {
                return Err(invalid(
                    key,
                    format!("{:?}", path.display().to_string()),
                    "an absolute path",
                ));
            }
        }
        if !a.pin_dir.starts_with(&a.bpffs) || a.pin_dir == a.bpffs {
            return Err(invalid(
                "agent.pin_dir",
                format!("{:?}", a.pin_dir.display().to_string()),
                format!(
                    "a directory under agent.bpffs ({}), for example {}",
                    a.bpffs.display(),
                    a.bpffs.join("netanom").display()
                ),
            ));
        }
        for (key, path) in [
            ("agent.bundle", &a.bundle),
            ("agent.ort_lib", &a.ort_lib),
            ("agent.flows_out", &a.flows_out),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(invalid(
                    key,
                    "\"\"".into(),
                    "a non-empty path (`\"\"` in the file means none)",
                ));
            }
        }

        let d = &self.datapath;
        for (key, n) in [
            ("datapath.flow_table_size", d.flow_table_size),
            ("datapath.src_table_size", d.src_table_size),
            ("datapath.dst_table_size", d.dst_table_size),
        ] {
            int_range(key, n.into(), 64, 1 << 26)?;
        }
        if !d.export_ring_bytes.is_power_of_two() || !(4096..=1 << 30).contains(&d.export_ring_bytes) {
            return Err(invalid(
                "datapath.export_ring_bytes",
                d.export_ring_bytes.to_string(),
                "a power of two from 4096 to 1073741824 (1 GiB)",
            ));
        }
        float_range("datapath.active_timeout", d.active_timeout, 0.001, 86_400.0)?;
        float_range("datapath.idle_timeout", d.idle_timeout, 0.001, 86_400.0)?;
        float_range("datapath.sweep_interval", d.sweep_interval, 0.05, 3600.0)?;
        float_range("datapath.aggregate_interval", d.aggregate_interval, 0.05, 3600.0)?;

        let t = &self.detection;
        float_range("detection.flow_window", t.flow_window, 1.0, 3600.0)?;
        int_range(
            "detection.min_anomalous_flows",
            t.min_anomalous_flows.into(),
            1,
            u32::MAX.into(),
        )?;
        float_range("detection.min_anomalous_ratio", t.min_anomalous_ratio, 0.0, 1.0)?;
        for (key, v) in [
            ("detection.src_pps", t.src_pps),
            ("detection.src_syn_rate", t.src_syn_rate),
            ("detection.src_port_rate", t.src_port_rate),
            ("detection.dst_sources", t.dst_sources),
            ("detection.dst_pps", t.dst_pps),
        ] {
            positive(key, v)?;
        }
        at_least("detection.learned_margin", t.learned_margin, 1.0)?;
        if !(0.5..1.0).contains(&t.recalibrate_quantile) {
            return Err(invalid(
                "detection.recalibrate_quantile",
                t.recalibrate_quantile.to_string(),
                "from 0.5 to below 1, for example 0.999",
            ));
        }
        int_range(
            "detection.recalibrate_min_samples",
            t.recalibrate_min_samples,
            100,
            u64::MAX,
        )?;

        let m = &self.mitigation;
        const YEAR: f64 = 31_536_000.0;
        float_range("mitigation.block_ttl", m.block_ttl, 1.0, YEAR)?;
        at_least("mitigation.ttl_escalation", m.ttl_escalation, 1.0)?;
        float_range("mitigation.max_block_ttl", m.max_block_ttl, 1.0, YEAR)?;
        if m.max_block_ttl < m.block_ttl {
            return Err(invalid(
                "mitigation.max_block_ttl",
                m.max_block_ttl.to_string(),
                format!("at least mitigation.block_ttl ({})", m.block_ttl),
            ));
        }
        float_range("mitigation.forget_after", m.forget_after, 1.0, YEAR)?;
        int_range("mitigation.block_prefix_v4", m.block_prefix_v4.into(), 8, 32)?;
        int_range("mitigation.block_prefix_v6", m.block_prefix_v6.into(), 32, 128)?;
        int_range("mitigation.max_blocks", m.max_blocks.into(), 1, 65_536)?;
        int_range(
            "mitigation.max_new_blocks_per_minute",
            m.max_new_blocks_per_minute.into(),
            1,
            u32::MAX.into(),
        )?;
        float_range("mitigation.breaker_cooldown", m.breaker_cooldown, 0.0, YEAR)?;
        positive("mitigation.rate_limit_pps", m.rate_limit_pps)?;
        int_range(
            "mitigation.rate_limit_burst",
            m.rate_limit_burst.into(),
            1,
            u32::MAX.into(),
        )?;
        float_range("mitigation.rate_limit_ttl", m.rate_limit_ttl, 1.0, YEAR)?;
        int_range("mitigation.max_rate_limits", m.max_rate_limits.into(), 1, 4096)?;
        Ok(())
    }
}

fn invalid(key: &str, value: String, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: None,
        key: key.to_owned(),
        value,
        allowed: allowed.into(),
    }
}

fn int_range(key: &str, v: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else if hi == u64::MAX || hi == u64::from(u32::MAX) {
        Err(invalid(key, v.to_string(), format!("at least {lo}")))
    } else {
        Err(invalid(key, v.to_string(), format!("from {lo} to {hi}")))
    }
}

fn float_range(key: &str, v: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(invalid(
            key,
            v.to_string(),
            format!("from {lo} to {hi} (seconds where a duration)"),
        ))
    }
}

fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(invalid(key, v.to_string(), "a finite number greater than 0"))
    }
}

fn at_least(key: &str, v: f64, lo: f64) -> Result<(), ConfigError> {
    if v >= lo && v.is_finite() {
        Ok(())
    } else {
        Err(invalid(
            key,
            v.to_string(),
            format!("a finite number of at least {lo}"),
        ))
    }
}

/// `Option<PathBuf>` as a string, `""` for `None`.
mod opt_path {
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

/// `SocketAddr` as `"ADDRESS:PORT"`, with the CLI's error message.
mod socket_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "`{s}` is not ADDRESS:PORT (for example 127.0.0.1:9754, 0.0.0.0:9754 or \
                 [::1]:9754)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const EXAMPLE: &str = include_str!("../../deploy/netanom.toml");
    const README: &str = include_str!("../../README.md");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "/etc/netanom.toml")
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("accepted {text:?}: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// `section.key` for every key of a serialized configuration.
    fn keys(doc: &str) -> BTreeSet<String> {
        let value: toml::Table = toml::from_str(doc).unwrap();
        let mut out = BTreeSet::new();
        for (section, table) in &value {
            let table = table
                .as_table()
                .unwrap_or_else(|| panic!("{section} is not a table"));
            for key in table.keys() {
                out.insert(format!("{section}.{key}"));
            }
        }
        out
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(
            parse("# nothing\n\n[agent]\n[datapath]\n").unwrap(),
            Config::default()
        );
        Config::default().validate().unwrap();
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.agent.mode, Mode::Observe);
        assert_eq!(c.agent.alerts, AlertSink::Stdout);
        assert_eq!(c.agent.bundle, None);
        assert_eq!(c.metrics.addr.to_string(), crate::metrics::DEFAULT_ADDR);
        let load = crate::datapath::LoadOptions::default();
        assert_eq!(c.datapath.flow_table_size, load.flow_entries);
        assert_eq!(c.datapath.src_table_size, load.src_entries);
        assert_eq!(c.datapath.dst_table_size, load.dst_entries);
        assert_eq!(c.datapath.export_ring_bytes, load.export_ring_bytes);
        assert_eq!(secs(c.datapath.active_timeout), Duration::from_secs(120));
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let doc = Config::default().to_toml();
        assert_eq!(parse(&doc).unwrap(), Config::default(), "{doc}");
        assert!(doc.contains("alerts = \"-\""), "{doc}");
        assert!(doc.contains("bundle = \"\""), "{doc}");
        assert!(doc.contains("addr = \"127.0.0.1:9754\""), "{doc}");
        assert!(doc.contains("xdp_mode = \"auto\""), "{doc}");
        assert!(doc.contains("provider = \"cpu\""), "{doc}");
        assert!(doc.contains("stats_format = \"table\""), "{doc}");
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            r#"
            [agent]
            interfaces = ["eth0", "eth1"]
            mode = "mitigate"
            bundle = "/opt/bundle"
            provider = "cuda"
            alerts = "/var/log/netanom/eve.json"
            stats_interval = 60        # an integer is accepted for seconds
            stats_format = "json"
            [metrics]
            enabled = false
            addr = "[::1]:9755"
            [datapath]
            xdp_mode = "skb"
            egress = false
            idle_timeout = 0.25
            [allowlist]
            prefixes = ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]
            [mitigation]
            block_prefix_v4 = 24
            "#,
        )
        .unwrap();
        assert_eq!(c.agent.interfaces, ["eth0", "eth1"]);
        assert_eq!(c.agent.mode, Mode::Mitigate);
        assert_eq!(c.agent.bundle, Some(PathBuf::from("/opt/bundle")));
        assert_eq!(c.agent.provider, ExecutionProvider::Cuda);
        assert_eq!(
            c.agent.alerts,
            AlertSink::File("/var/log/netanom/eve.json".into())
        );
        assert_eq!(c.agent.stats_interval, 60.0);
        assert_eq!(c.agent.stats_format, Format::Json);
        assert!(!c.metrics.enabled);
        assert_eq!(c.metrics.addr, "[::1]:9755".parse().unwrap());
        assert_eq!(c.datapath.xdp_mode, ModePreference::Skb);
        assert!(!c.datapath.egress);
        assert_eq!(secs(c.datapath.idle_timeout), Duration::from_millis(250));
        assert_eq!(c.allowlist.prefixes.len(), 3);
        assert_eq!(c.allowlist.prefixes[2].to_string(), "198.51.100.7/32");
        assert_eq!(c.mitigation.block_prefix(true), 24);
        assert_eq!(c.mitigation.block_prefix(false), 128);
        // Untouched sections keep their defaults.
        assert_eq!(c.detection, DetectionConfig::default());

        let off = parse("[agent]\nalerts = \"\"\n").unwrap();
        assert_eq!(off.agent.alerts, AlertSink::Off);
        assert_eq!(
            off.to_toml().lines().find(|l| l.starts_with("alerts")),
            Some("alerts = \"\"")
        );
    }

    #[test]
    fn the_example_file_is_the_defaults_and_lists_every_key() {
        assert_eq!(
            Config::parse(EXAMPLE, "deploy/netanom.toml").unwrap(),
            Config::default()
        );
        // Uncommenting every `# key = value` line must give the defaults again, and every key.
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| {
                let rest = l.strip_prefix("# ").unwrap_or(l);
                let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                });
                if is_key { rest } else { l }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let full = Config::parse(&uncommented, "deploy/netanom.toml (uncommented)").unwrap();
        assert_eq!(full, Config::default());
        assert_eq!(keys(&uncommented), keys(&Config::default().to_toml()));
    }

    #[test]
    fn readme_documents_every_key() {
        let start = README
            .find("\n### Configuration\n")
            .or_else(|| README.find("\n## Configuration\n"))
            .expect("README.md has a Configuration section");
        let rest = &README[start + 1..];
        let end = rest[1..]
            .find("\n## ")
            .into_iter()
            .chain(rest[1..].find("\n### "))
            .min()
            .map_or(rest.len(), |e| e + 1);
        let section = &rest[..end];
        let missing: Vec<String> = keys(&Config::default().to_toml())
            .into_iter()
            .filter(|k| !section.contains(&format!("`{k}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "README's Configuration section lacks {missing:?}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_line_and_column() {
        let e = err("[agent]\nmode = \"observe\"\n  foo = 1\n");
        assert!(e.starts_with("/etc/netanom.toml:3:3: unknown field `foo`"), "{e}");
        assert!(e.contains("expected one of"), "{e}");
        assert!(e.contains("`interfaces`"), "{e}");

        let e = err("\n[agnet]\n");
        assert!(
            e.starts_with("/etc/netanom.toml:2:2: unknown field `agnet`"),
            "{e}"
        );

        match parse("[datapath]\negres = false\n") {
            Err(ConfigError::Parse { line, column, .. }) => assert_eq!((line, column), (2, 1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_and_type_errors_name_the_place() {
        let e = err("[agent]\nmodel_threads = \"four\"\n");
        assert!(e.starts_with("/etc/netanom.toml:2:17: invalid type"), "{e}");
        let e = err("[agent]\nmode = \"block\"\n");
        assert!(
            e.starts_with("/etc/netanom.toml:2:8: unknown variant `block`"),
            "{e}"
        );
        assert!(e.contains("`observe`") && e.contains("`mitigate`"), "{e}");
        let e = err("[datapath]\nflow_table_size = -1\n");
        assert!(e.starts_with("/etc/netanom.toml:2:"), "{e}");
        let e = err("[mitigation]\nblock_prefix_v4 = 300\n");
        assert!(e.starts_with("/etc/netanom.toml:2:"), "{e}");
        let e = err("[agent\n");
        assert!(e.starts_with("/etc/netanom.toml:1:"), "{e}");
        let e = err("[metrics]\naddr = \"localhost\"\n");
        assert!(e.starts_with("/etc/netanom.toml:2:"), "{e}");
        assert!(
            e.contains("`localhost` is not ADDRESS:PORT (for example 127.0.0.1:9754"),
            "{e}"
        );
        // Non-ASCII before the error: the column counts characters.
        let e = err("[agent]\ninterfaces = [\"é\"]   x = 1\n");
        assert!(e.starts_with("/etc/netanom.toml:2:"), "{e}");
    }

    #[test]
    fn bad_prefix_in_allowlist_is_rejected_with_the_cidr_error() {
        let e = err("[allowlist]\nprefixes = [\"192.0.2.0/24\", \"10.0.0.1/8\"]\n");
        assert!(e.starts_with("/etc/netanom.toml:2:29: "), "{e}");
        assert!(e.contains("did you mean 10.0.0.0/8?"), "{e}");
        let e = err("[allowlist]\nprefixes = [\"10.0.0.0/33\"]\n");
        assert!(e.contains("prefix length must be 0 to 32"), "{e}");
        let e = err("[allowlist]\nprefixes = [\"gateway\"]\n");
        assert!(e.contains("`gateway` is not an IP address"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        for (doc, key, value) in [
            ("[agent]\nmodel_threads = 0", "agent.model_threads", "0"),
            ("[agent]\nmodel_threads = 257", "agent.model_threads", "257"),
            ("[agent]\nstats_interval = 0.01", "agent.stats_interval", "0.01"),
            ("[agent]\ninterfaces = [\"\"]", "agent.interfaces", "\"\""),
            (
                "[agent]\ninterfaces = [\"a-very-long-interface\"]",
                "agent.interfaces",
                "long",
            ),
            (
                "[agent]\ninterfaces = [\"eth0\", \"eth0\"]",
                "agent.interfaces",
                "eth0",
            ),
            ("[agent]\nbpffs = \"bpf\"", "agent.bpffs", "bpf"),
            (
                "[agent]\npin_dir = \"/run/netanom\"",
                "agent.pin_dir",
                "/run/netanom",
            ),
            (
                "[agent]\npin_dir = \"/sys/fs/bpf\"",
                "agent.pin_dir",
                "/sys/fs/bpf",
            ),
            ("[agent]\nstate_dir = \"run\"", "agent.state_dir", "run"),
            (
                "[datapath]\nflow_table_size = 10",
                "datapath.flow_table_size",
                "10",
            ),
            (
                "[datapath]\nsrc_table_size = 67108865",
                "datapath.src_table_size",
                "67108865",
            ),
            ("[datapath]\ndst_table_size = 0", "datapath.dst_table_size", "0"),
            (
                "[datapath]\nexport_ring_bytes = 5000",
                "datapath.export_ring_bytes",
                "5000",
            ),
            (
                "[datapath]\nexport_ring_bytes = 2048",
                "datapath.export_ring_bytes",
                "2048",
            ),
            ("[datapath]\nactive_timeout = 0", "datapath.active_timeout", "0"),
            (
                "[datapath]\nidle_timeout = 86401",
                "datapath.idle_timeout",
                "86401",
            ),
            (
                "[datapath]\nsweep_interval = nan",
                "datapath.sweep_interval",
                "NaN",
            ),
            (
                "[datapath]\naggregate_interval = 3601",
                "datapath.aggregate_interval",
                "3601",
            ),
            ("[detection]\nflow_window = 0.5", "detection.flow_window", "0.5"),
            (
                "[detection]\nmin_anomalous_flows = 0",
                "detection.min_anomalous_flows",
                "0",
            ),
            (
                "[detection]\nmin_anomalous_ratio = 1.5",
                "detection.min_anomalous_ratio",
                "1.5",
            ),
            ("[detection]\nsrc_pps = 0", "detection.src_pps", "0"),
            ("[detection]\nsrc_syn_rate = -1", "detection.src_syn_rate", "-1"),
            (
                "[detection]\nsrc_port_rate = inf",
                "detection.src_port_rate",
                "inf",
            ),
            ("[detection]\ndst_sources = 0", "detection.dst_sources", "0"),
            ("[detection]\ndst_pps = 0", "detection.dst_pps", "0"),
            (
                "[detection]\nlearned_margin = 0.9",
                "detection.learned_margin",
                "0.9",
            ),
            (
                "[detection]\nrecalibrate_quantile = 1",
                "detection.recalibrate_quantile",
                "1",
            ),
            (
                "[detection]\nrecalibrate_quantile = 0.4",
                "detection.recalibrate_quantile",
                "0.4",
            ),
            (
                "[detection]\nrecalibrate_min_samples = 99",
                "detection.recalibrate_min_samples",
                "99",
            ),
            ("[mitigation]\nblock_ttl = 0.5", "mitigation.block_ttl", "0.5"),
            (
                "[mitigation]\nttl_escalation = 0.5",
                "mitigation.ttl_escalation",
                "0.5",
            ),
            (
                "[mitigation]\nmax_block_ttl = 100",
                "mitigation.max_block_ttl",
                "100",
            ),
            ("[mitigation]\nforget_after = 0", "mitigation.forget_after", "0"),
            (
                "[mitigation]\nblock_prefix_v4 = 7",
                "mitigation.block_prefix_v4",
                "7",
            ),
            (
                "[mitigation]\nblock_prefix_v6 = 129",
                "mitigation.block_prefix_v6",
                "129",
            ),
            (
                "[mitigation]\nmax_blocks = 65537",
                "mitigation.max_blocks",
                "65537",
            ),
            (
                "[mitigation]\nmax_new_blocks_per_minute = 0",
                "mitigation.max_new_blocks_per_minute",
                "0",
            ),
            (
                "[mitigation]\nbreaker_cooldown = -1",
                "mitigation.breaker_cooldown",
                "-1",
            ),
            (
                "[mitigation]\nrate_limit_pps = 0",
                "mitigation.rate_limit_pps",
                "0",
            ),
            (
                "[mitigation]\nrate_limit_burst = 0",
                "mitigation.rate_limit_burst",
                "0",
            ),
            (
                "[mitigation]\nrate_limit_ttl = 0",
                "mitigation.rate_limit_ttl",
                "0",
            ),
            (
                "[mitigation]\nmax_rate_limits = 4097",
                "mitigation.max_rate_limits",
                "4097",
            ),
        ] {
            let e = parse(doc).unwrap_err();
            assert!(
                matches!(&e, ConfigError::Invalid { key: k, .. } if k == key),
                "{doc}: {e:?}"
            );
            let e = e.to_string();
            assert!(
                e.starts_with(&format!("/etc/netanom.toml: {key} = ")),
                "{doc}: {e}"
            );
            assert!(e.contains(value), "{doc}: {e}");
            assert!(e.contains("is not allowed: "), "{doc}: {e}");
        }
        let e = err("[mitigation]\nmax_block_ttl = 100\n");
        assert!(e.contains("at least mitigation.block_ttl (300)"), "{e}");
        let e = err("[detection]\nmin_anomalous_ratio = 2\n");
        assert!(e.contains("from 0 to 1"), "{e}");
        // Bounds themselves are allowed.
        parse("[mitigation]\nbreaker_cooldown = 0\nblock_prefix_v4 = 8\nblock_prefix_v6 = 32\n").unwrap();
        parse("[datapath]\nexport_ring_bytes = 4096\nflow_table_size = 64\n").unwrap();
        parse("[detection]\nmin_anomalous_ratio = 0\nrecalibrate_quantile = 0.5\n").unwrap();
        parse("[agent]\npin_dir = \"/sys/fs/bpf/x/y\"\ninterfaces = [\"eth0.100\", \"br-lan\"]\n").unwrap();
    }

    #[test]
    fn validate_without_origin() {
        let mut c = Config::default();
        c.agent.model_threads = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("agent.model_threads = 0 is not allowed: from 1 to 256"),
            "{e}"
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("netanom-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        let e = Config::load(&missing).unwrap_err().to_string();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(e.contains("No such file or directory"), "{e}");
        assert!(e.contains("--config"), "{e}");

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[agent]\n\nbogus = true\n").unwrap();
        let e = Config::load(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:3:1: unknown field `bogus`", bad.display())),
            "{e}"
        );

        let good = dir.join("good.toml");
        std::fs::write(&good, "[agent]\nmode = \"mitigate\"\n").unwrap();
        assert_eq!(Config::load(&good).unwrap().agent.mode, Mode::Mitigate);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn block_ttl_escalates_up_to_the_cap() {
        let m = MitigationConfig::default();
        assert_eq!(m.block_ttl_for(0), Duration::from_secs(300));
        assert_eq!(m.block_ttl_for(1), Duration::from_secs(600));
        assert_eq!(m.block_ttl_for(3), Duration::from_secs(2400));
        assert_eq!(m.block_ttl_for(20), Duration::from_secs(86_400));
        assert_eq!(m.block_ttl_for(u32::MAX), Duration::from_secs(86_400));
    }

    #[test]
    fn secs_saturates() {
        assert_eq!(secs(1.5), Duration::from_millis(1500));
        assert_eq!(secs(-1.0), Duration::ZERO);
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        assert_eq!(secs(f64::INFINITY), Duration::MAX);
    }

    #[test]
    fn mode_and_alert_sink() {
        assert_eq!(Mode::default().to_string(), "observe");
        assert_eq!(Mode::Mitigate.to_string(), "mitigate");
        assert_eq!("-".parse::<AlertSink>().unwrap(), AlertSink::Stdout);
        assert_eq!("".parse::<AlertSink>().unwrap(), AlertSink::Off);
        assert_eq!(AlertSink::File("/x".into()).to_string(), "/x");
    }
}
