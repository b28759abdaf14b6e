//! No alerts (`--alerts ""`): they are counted and dropped.
use crate::respond::{Alert, AlertError, AlertSink};

/// Drops every alert, counting them.
#[derive(Debug, Default)]
pub struct Discard {
    dropped: u64,
}

impl Discard {
    /// Alerts dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl AlertSink for Discard {
    fn write(&mut self, _: &Alert) -> Result<(), AlertError> {
        self.dropped += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AlertError> {
        Ok(())
    }
}
