//! What the live pipeline was asked to do: the validated configuration, and how to re-read it
//! on SIGHUP.
use std::{path::PathBuf, time::Duration};

use crate::{
    datapath::LoadOptions,
    pipeline::{
        config::{Config, secs},
        reload::ConfigSource,
    },
};

/// The live pipeline's options.
pub struct LiveOptions {
    /// The whole configuration (file and flags).
    pub config: Config,
    /// Re-reads the configuration (SIGHUP); `None`: nothing to reload.
    pub source: Option<ConfigSource>,
    /// The configuration file, as the status file names it.
    pub config_path: Option<PathBuf>,
}

impl LiveOptions {
    /// Options of a validated configuration.
    pub fn of(config: Config) -> LiveOptions {
        LiveOptions {
            config,
            source: None,
            config_path: None,
        }
    }

    /// Kernel map sizes and flow timeouts.
    pub fn load(&self) -> LoadOptions {
        let d = &self.config.datapath;
        LoadOptions {
            flow_entries: d.flow_table_size,
            src_entries: d.src_table_size,
            dst_entries: d.dst_table_size,
            export_ring_bytes: d.export_ring_bytes,
            timeouts: d.timeouts(),
        }
    }

    pub fn stats_interval(&self) -> Duration {
        secs(self.config.agent.stats_interval)
    }

    pub fn sweep_interval(&self) -> Duration {
        secs(self.config.datapath.sweep_interval)
    }

    pub fn aggregate_interval(&self) -> Duration {
        secs(self.config.datapath.aggregate_interval)
    }
}
