//! Alerts kept in memory: for tests, and for tools that read the alerts they just caused.
use std::{
    io::{self, Write},
    sync::{Arc, Mutex},
};

use super::jsonl::JsonLines;

/// The shared buffer behind [`memory`]: what the sink wrote, readable while it writes.
#[derive(Debug, Clone, Default)]
pub struct MemoryBuffer(Arc<Mutex<Vec<u8>>>);

/// A sink writing JSON lines to memory, and a handle to read what it wrote (after a flush).
pub fn memory() -> (JsonLines, MemoryBuffer) {
    let buf = MemoryBuffer::default();
    (JsonLines::new(Box::new(buf.clone()), "memory"), buf)
}

impl MemoryBuffer {
    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Each line written so far.
    pub fn lines(&self) -> Vec<String> {
        self.contents().lines().map(str::to_owned).collect()
    }
}

impl Write for MemoryBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
