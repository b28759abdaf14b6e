//! Value parsers and options several subcommands share.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;
use netanom_common::names;

use crate::{
    model::{Bundle, BundleOptions, ExecutionProvider, runtime},
    respond::Cidr,
};

/// Options every control command takes.
#[derive(Debug, Clone, Args)]
pub struct Where {
    /// Directory where the agent pins its blocklist, allowlist and rate limits.
    #[arg(long, value_name = "DIR", default_value = names::PIN_DIR, global = true)]
    pub pin_dir: PathBuf,
}

/// Options shared by `score` and `eval`: the bundle and how it runs.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Model bundle directory (manifest.json, autoencoder.onnx, iforest.onnx, rf.onnx).
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// Intra-op threads per model (inter-op parallelism is always 1).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Execution provider; cuda falls back to the CPU, with a warning, when it is not available.
    #[arg(long, value_enum, default_value_t = ExecutionProvider::Cpu)]
    pub provider: ExecutionProvider,
    /// ONNX Runtime shared library (default: searched, see README).
    #[arg(long, value_name = "PATH", env = runtime::ENV_LIB)]
    pub ort_lib: Option<PathBuf>,
}

impl EngineArgs {
    pub fn options(&self) -> BundleOptions {
        BundleOptions {
            intra_threads: usize::from(self.threads),
            provider: self.provider,
            ort_lib: self.ort_lib.clone(),
            ..BundleOptions::default()
        }
    }
    pub fn load(&self) -> anyhow::Result<Bundle> {
        Ok(Bundle::load_with(&self.bundle, &self.options())?)
    }
}

/// Seconds between 0.001 and 86400: a flow timeout (the range of `datapath.active_timeout`
/// and `datapath.idle_timeout`).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    seconds(s, 0.001, 86_400.0)
}

/// Seconds between 0.05 and 3600: how often something periodic runs.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    seconds(s, 0.05, 3600.0)
}

fn seconds(s: &str, lo: f64, hi: f64) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(lo..=hi).contains(&secs) {
        return Err(format!("{secs} s is out of range ({lo} to {hi})"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `ADDRESS:PORT` of the metrics endpoint.
pub fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("`{s}` is not ADDRESS:PORT (for example 127.0.0.1:9754, 0.0.0.0:9754 or [::1]:9754)")
    })
}

/// A prefix in network form (`198.18.0.0/15`, `2001:db8::1`).
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.parse::<Cidr>().map_err(|e| e.to_string())
}

/// A block's TTL: 1 second to a year, rounded to whole seconds.
pub fn parse_ttl(s: &str) -> Result<u32, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(1.0..=31_536_000.0).contains(&v) {
        return Err(format!("{v} s is out of range (1 to 31536000, a year)"));
    }
    Ok(v.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_validated() {
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("abc").unwrap_err().contains("abc"));
    }

    #[test]
    fn timeouts_and_ttls_are_validated() {
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        assert!(
            parse_timeout("0")
                .unwrap_err()
                .contains("out of range (0.001 to 86400)")
        );
        assert_eq!(parse_ttl("59.6"), Ok(60));
        assert!(parse_ttl("0.2").is_err());
    }
}
