//! Files tests read and write: scratch directories, the agent's CSV and alert outputs.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::netns::{next_serial, sanitize_tag};

/// A scratch directory `/tmp/nalab-<pid>-<n>-tmp-<tag>`, removed on drop (and by
/// [`crate::sweep_state_leftovers`] after a crashed run).
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates the directory (replacing a leftover of the same name).
    pub fn new(tag: &str) -> TempDir {
        let name = format!(
            "{}-{}-{}-tmp-{}",
            crate::PREFIX,
            std::process::id(),
            next_serial(),
            sanitize_tag(tag)
        );
        let p = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        TempDir(p)
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One CSV row, by column name.
pub type Row = BTreeMap<String, String>;

/// The rows of a CSV file with a header line (plain comma-separated fields, as netanom's flow
/// CSV writes them).
pub fn read_csv(path: &Path) -> Vec<Row> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_else(|| panic!("{}: no header line", path.display()))
        .split(',')
        .map(str::to_owned)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_owned))
                .collect()
        })
        .collect()
}

/// The EVE alerts written to `path` so far (one JSON object per line).
pub fn read_alerts(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("alert line is not JSON ({e}): {l}")))
        .collect()
}
