//! The agent's EVE JSON alerts, as much of them as the scorecard needs.
use std::{net::IpAddr, str::FromStr as _};

use netanom::respond::prefix::Cidr;
use serde_json::Value;

/// One alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Capture time of the decision, ns since the Unix epoch.
    pub ts_ns: u64,
    /// `src_ip` (the unspecified address for a victim alert).
    pub src: IpAddr,
    /// `dest_ip`.
    pub dest: IpAddr,
    /// `alert.action`: `blocked`, `would-block` or `allowed`.
    pub action: String,
    /// `netanom.kind`.
    pub kind: String,
    /// `netanom.block.prefix`, when the alert installed (or would have installed) a block.
    pub block: Option<Cidr>,
    /// `netanom.rate_limit.dest_ip`, when it installed (or would have) a rate limit.
    pub rate_limit: Option<IpAddr>,
}

impl Alert {
    /// Whether the alert put a block or a rate limit in force (mitigate mode, `blocked`).
    pub fn enforced(&self) -> bool {
        self.action == "blocked"
    }
}

/// What is wrong with an alert line.
#[derive(Debug, thiserror::Error)]
#[error("alert line {line}: {problem}")]
pub struct AlertError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

/// Parses JSON lines (blank lines skipped).
pub fn parse_lines(text: &str) -> Result<Vec<Alert>, AlertError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse(l).map_err(|problem| AlertError { line: i + 1, problem }))
        .collect()
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Result<&'a str, String> {
    field(v, path)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no string `{}`", path.join(".")))
}

fn ip(v: &Value, path: &[&str]) -> Result<IpAddr, String> {
    let s = text(v, path)?;
    IpAddr::from_str(s).map_err(|e| format!("`{}` = {s:?}: {e}", path.join(".")))
}

/// One EVE alert line.
pub fn parse(line: &str) -> Result<Alert, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let block = match field(&v, &["netanom", "block", "prefix"]).and_then(Value::as_str) {
        Some(p) => Some(Cidr::from_str(p).map_err(|e| format!("netanom.block.prefix: {e}"))?),
        None => None,
    };
    let rate_limit = match field(&v, &["netanom", "rate_limit"]) {
        Some(_) => Some(ip(&v, &["netanom", "rate_limit", "dest_ip"])?),
        None => None,
    };
    Ok(Alert {
        ts_ns: eve_time_ns(text(&v, &["timestamp"])?)?,
        src: ip(&v, &["src_ip"])?,
        dest: ip(&v, &["dest_ip"])?,
        action: text(&v, &["alert", "action"])?.to_owned(),
        kind: text(&v, &["netanom", "kind"])?.to_owned(),
        block,
        rate_limit,
    })
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff+0000` (EVE's timestamp, always UTC) as ns since the epoch.
pub fn eve_time_ns(s: &str) -> Result<u64, String> {
    let bad = || format!("timestamp {s:?} is not YYYY-MM-DDTHH:MM:SS.ffffff+0000");
    let b = s.as_bytes();
    if b.len() != 31 || &s[26..] != "+0000" || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'.'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().map_err(|_| bad());
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, us) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    u64::try_from(secs * 1_000_000_000 + us * 1000).map_err(|_| bad())
}
