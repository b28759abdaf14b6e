//! Writing manifest entries: a recorded scenario's entry from the scenario table, and its
//! `[[capture]]` table put into the manifest's text in place (other entries, the shared
//! captures' hand-written ones, and comments between tables are kept as they are).
use std::str::FromStr as _;

use netanom::respond::prefix::Cidr;

use super::{manifest::Entry, scenarios::Scenario};

/// The manifest entry of a recording of `s` with this sha256, made with `tool` (the package
/// and its version).
pub fn entry(s: &Scenario, sha256: &str, tool: &str) -> Entry {
    let cidrs = |v: &[&str]| -> Vec<Cidr> {
        v.iter()
            .map(|a| Cidr::from_str(a).unwrap_or_else(|e| panic!("scenario {}: {e}", s.name)))
            .collect()
    };
    Entry {
        file: s.file(),
        scenario: s.name.to_owned(),
        label: s.label,
        tool: tool.to_owned(),
        command: s.command(),
        attackers: cidrs(s.attackers),
        victims: cidrs(s.victims),
        innocents: cidrs(s.innocents),
        expected: s.expected,
        sha256: sha256.to_owned(),
        description: s.description.to_owned(),
    }
}

fn string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn list(v: &[Cidr]) -> String {
    let items: Vec<String> = v.iter().map(|c| string(&c.to_string())).collect();
    format!("[{}]", items.join(", "))
}

/// The `[[capture]]` table of `e`, without a trailing newline.
pub fn table(e: &Entry) -> String {
    [
        "[[capture]]".to_owned(),
        format!("file = {}", string(&e.file)),
        format!("scenario = {}", string(&e.scenario)),
        format!("label = {}", string(&e.label.to_string())),
        format!("tool = {}", string(&e.tool)),
        format!("command = {}", string(&e.command)),
        format!("attackers = {}", list(&e.attackers)),
        format!("victims = {}", list(&e.victims)),
        format!("innocents = {}", list(&e.innocents)),
        format!("expected = {}", string(e.expected.name())),
        format!("sha256 = {}", string(&e.sha256)),
        format!("description = {}", string(&e.description)),
    ]
    .join("\n")
}

/// `text` with the table of `e.scenario` replaced by `e`'s; when it has none, `e`'s goes after
/// the table of the scenario before it in `order` (the scenario table's order), else before
/// the first recorded capture's, else before the shared captures and the comment above them.
pub fn upsert(text: &str, e: &Entry, order: &[&str]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim() == "[[capture]]")
        .collect();
    let tables: Vec<(usize, usize)> = starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            (
                s,
                table_end(&lines, s, starts.get(k + 1).copied().unwrap_or(lines.len())),
            )
        })
        .collect();
    let has = |(s, end): &(usize, usize), name: &str| {
        let key = format!("scenario = {}", string(name));
        lines[*s..*end].iter().any(|l| l.trim() == key)
    };
    let mine = tables.iter().find(|t| has(t, &e.scenario));
    let new = table(e);
    let (at, until, pad) = match mine {
        Some(&(s, end)) => (s, end, false),
        None => {
            let before = order.iter().take_while(|n| **n != e.scenario);
            let prev = before.filter_map(|n| tables.iter().find(|t| has(t, n))).last();
            let at = prev.map_or_else(|| insertion_point(&lines, &tables), |&(_, end)| end);
            (at, at, true)
        }
    };
    let mut out: Vec<String> = lines[..at].iter().map(|l| l.to_string()).collect();
    if pad && out.last().is_some_and(|l| !l.trim().is_empty()) {
        out.push(String::new());
    }
    out.push(new);
    if pad && lines.get(until).is_some_and(|l| !l.trim().is_empty()) {
        out.push(String::new());
    }
    out.extend(lines[until..].iter().map(|l| l.to_string()));
    let mut joined = out.join("\n");
    joined.push('\n');
    joined
}

/// Where a recorded capture's table goes when no scenario before it has one: before the first
/// recorded capture's table; without one, before the first table, the comment block above it
/// and the blank lines between; in an empty manifest, at the end.
fn insertion_point(lines: &[&str], tables: &[(usize, usize)]) -> usize {
    let recorded = |&&(s, end): &&(usize, usize)| {
        lines[s..end]
            .iter()
            .any(|l| l.starts_with("file = ") && !l.contains("\"shared:"))
    };
    if let Some(&(start, _)) = tables.iter().find(recorded) {
        return start;
    }
    let Some(&(first, _)) = tables.first() else {
        return lines.len();
    };
    let mut at = first;
    while at > 0 && lines[at - 1].trim().is_empty() {
        at -= 1;
    }
    while at > 0 && lines[at - 1].trim().starts_with('#') {
        at -= 1;
    }
    at
}

/// The end of the table starting at `start` (before `next`): trailing blank and comment lines
/// belong to whatever follows.
fn table_end(lines: &[&str], start: usize, next: usize) -> usize {
    let mut end = next;
    while end > start + 1 && {
        let l = lines[end - 1].trim();
        l.is_empty() || l.starts_with('#')
    } {
        end -= 1;
    }
    end
}
