//! Where the response's alerts go: the alert-sink trait. The implementations (JSON lines to a
//! file or standard output, memory, none) are in `crate::sinks::alerts`; a new destination is
//! a new implementation there, and nothing here or in detection changes.
use std::{io, path::PathBuf};

use thiserror::Error;

use super::alert::Alert;

/// A destination for alerts. Writes may be buffered: [`AlertSink::flush`] pushes them out,
/// and the response flushes after every batch of decisions and before the agent exits.
pub trait AlertSink: Send {
    /// Writes one alert. On error nothing is counted, and the sink stays usable (later writes
    /// try again).
    fn write(&mut self, alert: &Alert) -> Result<(), AlertError>;
    /// Pushes buffered alerts to their destination.
    fn flush(&mut self) -> Result<(), AlertError>;
}

/// Opening or writing an alert destination failed.
#[derive(Debug, Error)]
pub enum AlertError {
    #[error(
        "cannot open the alert log {} for appending: {source}; check that its directory exists and that this user may write there, or use \"-\" for standard output",
        path.display()
    )]
    Open { path: PathBuf, source: io::Error },
    #[error("writing alerts to {target} failed: {source}; check free space and permissions on it")]
    Write { target: String, source: io::Error },
    #[error("encoding an alert as JSON failed: {0}")]
    Encode(#[from] serde_json::Error),
}
