//! Tests of the alert sinks.
use std::{
    io::{self, Write},
    path::Path,
};

use serde_json::Value;

use super::*;
use crate::respond::{Alert, AlertError, AlertSink, alert::sample};

#[test]
fn memory_sink_counts_and_flushes() {
    let (mut sink, buf) = memory();
    let alert = sample();
    sink.write(&alert).unwrap();
    sink.write(&alert).unwrap();
    assert_eq!(sink.written(), 2);
    sink.flush().unwrap();
    let lines = buf.lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], alert.to_json());
}

#[test]
fn discarding_sink_counts() {
    assert_eq!("".parse::<AlertTarget>().unwrap(), AlertTarget::Off);
    let mut sink = Discard::default();
    sink.write(&sample()).unwrap();
    sink.flush().unwrap();
    assert_eq!(sink.dropped(), 1);
    // The configured target opens the same kind of sink.
    AlertTarget::Off.open().unwrap().write(&sample()).unwrap();
}

#[test]
fn sink_is_send() {
    fn send<T: Send>() {}
    send::<JsonLines>();
    send::<Discard>();
    send::<Box<dyn AlertSink>>();
    send::<Alert>();
}

#[test]
fn file_sink_appends() {
    let dir = std::env::temp_dir().join(format!("netanom-alerts-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("eve.json");
    let target = path.to_str().unwrap();
    {
        let mut sink = JsonLines::append(&path).unwrap();
        assert_eq!(sink.target(), target);
        sink.write(&sample()).unwrap();
        sink.write(&sample().with_ports(None, None)).unwrap();
        assert_eq!(sink.written(), 2);
    } // dropped: flushed
    {
        let mut sink = JsonLines::append(&path).unwrap();
        sink.write(&sample()).unwrap();
        sink.flush().unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(text.ends_with('\n'));
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["event_type"], "alert");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unwritable_path_names_it() {
    let err = JsonLines::append(Path::new("/proc/nonexistent/x")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AlertError::Open { .. }));
    assert!(msg.contains("/proc/nonexistent/x"), "{msg}");
    assert!(msg.contains("directory exists"), "{msg}");
}

#[test]
fn write_error_is_returned() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let mut sink = JsonLines::new(Box::new(Broken), "writer");
    // Buffered: the error shows on flush (or on a write that fills the buffer).
    let first = sink.write(&sample());
    let flushed = sink.flush();
    assert!(first.is_err() || flushed.is_err());
    let msg = flushed.unwrap_err().to_string();
    assert!(msg.contains("disk on fire"), "{msg}");
    drop(sink); // must not panic
}
