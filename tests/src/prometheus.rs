//! A real Prometheus server (Debian's `prometheus` package, installed by `cargo xtask setup`)
//! in a lab namespace, and its HTTP API.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
};

use serde_json::Value;

use crate::{Netns, files::TempDir, http::http_get, servers::KillOnDrop};

/// Percent-encodes a query-string value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /api/v1/PATH` of the Prometheus on 127.0.0.1:`port` in `ns`: its `data`, or the
/// error it answered (a query that does not parse is a 400 with the reason).
pub fn api(ns: &Netns, port: u16, path: &str) -> Result<Value, String> {
    let (status, _, body) = http_get(ns, port, &format!("/api/v1/{path}"), None)?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("HTTP {status}, {e}: {body}"))?;
    if status != 200 || v["status"] != "success" {
        return Err(format!("HTTP {status}: {} {}", v["errorType"], v["error"]));
    }
    Ok(v["data"].clone())
}

/// The value of an instant query's single result, if it has one.
pub fn query(ns: &Netns, port: u16, promql: &str) -> Result<Option<f64>, String> {
    let data = api(ns, port, &format!("query?query={}", urlencode(promql)))?;
    let result = data["result"]
        .as_array()
        .ok_or_else(|| format!("no result in {data}"))?;
    Ok(result
        .first()
        .and_then(|r| r["value"][1].as_str())
        .and_then(|s| s.parse().ok()))
}

/// A real Prometheus server in `ns`, listening on 127.0.0.1:`port`, scraping `target` (as
/// job `netanom`) and evaluating `rule_files` every second, its data and log in `dir`;
/// killed on drop.
pub fn start_prometheus(
    ns: &Netns,
    prometheus: &Path,
    dir: &TempDir,
    target: &str,
    port: u16,
    rule_files: &[PathBuf],
) -> KillOnDrop {
    let config = dir.0.join("prometheus.yml");
    let rules: String = rule_files
        .iter()
        .map(|f| format!("  - {}\n", f.display()))
        .collect();
    let rules = if rules.is_empty() {
        String::new()
    } else {
        format!("rule_files:\n{rules}")
    };
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             {rules}scrape_configs:\n  - job_name: netanom\n    static_configs:\n      \
             - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let log = fs::File::create(dir.0.join("prometheus.log")).unwrap();
    KillOnDrop(
        ns.command(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}
