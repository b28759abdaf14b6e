//! Alerts as JSON lines (one EVE object per line) on any writer: a file opened for
//! appending, standard output, or memory. Buffered; dropping the sink flushes it.
use std::{
    fs::OpenOptions,
    io::{BufWriter, Write},
    path::Path,
};

use crate::respond::{Alert, AlertError, AlertSink};

/// Writes each alert as one line to a buffered writer.
pub struct JsonLines {
    out: BufWriter<Box<dyn Write + Send>>,
    target: String,
    written: u64,
    line: Vec<u8>,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines")
            .field("target", &self.target)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl JsonLines {
    /// Lines to `writer`; `target` names it in errors (a path, `standard output`, ...).
    pub fn new(writer: Box<dyn Write + Send>, target: &str) -> JsonLines {
        JsonLines {
            out: BufWriter::new(writer),
            target: target.to_owned(),
            written: 0,
            line: Vec::with_capacity(1024),
        }
    }

    /// Lines appended to the file at `path` (created if missing).
    pub fn append(path: &Path) -> Result<JsonLines, AlertError> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|source| AlertError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(JsonLines::new(Box::new(file), &path.display().to_string()))
    }

    /// Alerts written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Where the alerts go: the path, `"standard output"`, `"memory"` or `"writer"`.
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl AlertSink for JsonLines {
    fn write(&mut self, alert: &Alert) -> Result<(), AlertError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, alert)?;
        self.line.push(b'\n');
        self.out
            .write_all(&self.line)
            .map_err(|source| AlertError::Write {
                target: self.target.clone(),
                source,
            })?;
        self.written += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AlertError> {
        self.out.flush().map_err(|source| AlertError::Write {
            target: self.target.clone(),
            source,
        })
    }
}

impl Drop for JsonLines {
    fn drop(&mut self) {
        let _ = AlertSink::flush(self);
    }
}
