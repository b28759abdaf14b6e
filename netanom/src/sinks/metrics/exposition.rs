//! The two text formats of the exposition: OpenMetrics (what `prometheus-client` encodes, and
//! what Prometheus asks for) and the classic Prometheus text format (version 0.0.4, what
//! `promtool check metrics`, curl users and older scrapers read). The conversion is mechanical:
//! counter families are named with their `_total` suffix, info metrics become gauges named
//! `..._info`, and `# EOF` is dropped.
use std::fmt::Write as _;

/// Content type of the OpenMetrics text format (what `prometheus-client` encodes).
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Converts `prometheus-client`'s OpenMetrics text into the classic text format: counter
/// families take their `_total` name, info families become gauges named `..._info`, `unknown`
/// becomes `untyped`; `# EOF` and `# UNIT` lines are dropped; HELP text is re-escaped (classic
/// HELP knows only `\\` and `\n`). Sample lines are the same in both formats.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (classic, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((_, text)) = help.take().filter(|(n, _)| *n == name) {
                let _ = writeln!(out, "# HELP {classic} {}", classic_help(text));
            }
            let _ = writeln!(out, "# TYPE {classic} {kind}");
        } else if line.starts_with('#') || line.is_empty() {
            // `# EOF`, `# UNIT`: not part of the classic format.
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// OpenMetrics HELP escapes (`\\`, `\n`, `\"`) to classic ones (`\\`, `\n`).
fn classic_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push_str("\\n"),
                Some('"') => out.push('"'),
                Some('\\') | None => out.push_str("\\\\"),
                Some(other) => {
                    out.push_str("\\\\");
                    out.push(other);
                }
            },
            (c, false) => out.push(c),
        }
    }
    out
}
