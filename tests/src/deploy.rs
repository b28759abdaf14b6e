//! The deployment files under deploy/ as the tests read them: YAML manifests, the Grafana
//! dashboard's panels and queries, the metric names and variables those queries use.
use std::path::PathBuf;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// `deploy/...` (or any repository path) from the repository root.
pub fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A repository file's text; panics naming the file.
pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Every document of a YAML file.
pub fn yaml_docs(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

/// The one document of a YAML file.
pub fn yaml(rel: &str) -> Yaml {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel}: one document expected");
    docs.remove(0)
}

/// A string field, or a panic naming the file and the key.
pub fn string<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {y:?}"))
}

/// The strings of a YAML list.
pub fn strings(y: &Yaml, what: &str) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("{what}: not a list: {y:?}"))
        .iter()
        .map(|v| match v {
            Yaml::String(s) => s.clone(),
            Yaml::Integer(i) => i.to_string(),
            other => panic!("{what}: not a string: {other:?}"),
        })
        .collect()
}

/// The Grafana dashboard.
pub const DASHBOARD: &str = "deploy/grafana/netanom.json";
/// The Prometheus alerting and recording rules.
pub const RULES: &str = "deploy/prometheus/netanom-rules.yml";

/// The Grafana dashboard's JSON model.
pub fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// One query of a dashboard panel.
#[derive(Clone, Debug)]
pub struct PanelQuery {
    /// The panel's title.
    pub panel: String,
    /// The query's refId (A, B, ...).
    pub ref_id: String,
    /// The PromQL expression, dashboard variables unexpanded.
    pub expr: String,
    /// The legend format (`{{label}}` placeholders).
    pub legend: String,
    /// An instant query (stat and table panels); otherwise a range query.
    pub instant: bool,
}

impl PanelQuery {
    /// How a failure message names the query.
    pub fn name(&self) -> String {
        format!("panel \"{}\" query {}", self.panel, self.ref_id)
    }
}

/// Every panel's queries, rows' nested panels included.
pub fn panel_queries(dash: &Value) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for p in all_panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(PanelQuery {
                panel: p["title"].as_str().unwrap_or_default().to_owned(),
                ref_id: t["refId"].as_str().unwrap_or_default().to_owned(),
                expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                legend: t["legendFormat"].as_str().unwrap_or_default().to_owned(),
                instant: t["instant"].as_bool().unwrap_or(false) && !t["range"].as_bool().unwrap_or(false),
            });
        }
    }
    out
}

/// The dashboard's panels, with those nested in collapsed rows.
pub fn all_panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// The `netanom_*` metric names a PromQL expression (or any text) mentions.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("netanom_") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names.sort();
    names.dedup();
    names
}

/// Grafana's built-in interval variables, and what they stand for in a test whose Prometheus
/// scrapes every second.
pub const BUILTINS: [(&str, &str); 3] = [
    ("__rate_interval", "10s"),
    ("__interval", "1s"),
    ("__range", "5m"),
];

/// `expr` with `$name` and `${name}` replaced by `vars`; an error names any other variable.
pub fn expand(expr: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {expr}"))?;
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("unknown variable ${name} in {expr}"))?;
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `{{label}}` names a legend format uses.
pub fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}").map(|(l, _)| l.trim().to_owned()))
        .collect()
}
