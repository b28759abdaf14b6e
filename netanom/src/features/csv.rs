//! The CSV form of a flow record: what `netanom features` and `--flows-out` write, one row per
//! exported flow. The offline extractor and the live agent both go through [`write_csv_row`],
//! so the two cannot drift apart.
use std::fmt;

use netanom_common::{flow::FlowRecord, time::CicTime};

use super::{
    flow::{FLOW_FEATURES, N_FLOW_FEATURES, flow_features_into},
    identity::FlowIdentity,
};

/// Identity columns that precede the features in the CSV.
pub const CSV_ID_COLUMNS: [&str; 7] = [
    "Flow ID",
    "Src IP",
    "Src Port",
    "Dst IP",
    "Dst Port",
    "Protocol",
    "Timestamp",
];
/// The last CSV column: why the flow was exported ([`EndReason::name`]).
pub const CSV_REASON_COLUMN: &str = "End Reason";

/// The CSV header line (no newline): identity columns, the features, "End Reason".
pub fn csv_header() -> String {
    let mut s = CSV_ID_COLUMNS.join(",");
    for f in FLOW_FEATURES {
        s.push(',');
        s.push_str(f.name);
    }
    s.push(',');
    s.push_str(CSV_REASON_COLUMN);
    s
}

/// One CSV row (no newline) for an exported flow record whose timestamps are nanoseconds since
/// the Unix epoch (as in captures).
pub fn csv_row(rec: &FlowRecord) -> String {
    let mut s = String::with_capacity(768);
    write_csv_row(&mut s, rec, &|ns| ns).expect("writing to a String cannot fail");
    s
}

/// Appends one CSV row (no newline) for `rec` to `out`; `to_unix_ns` turns the record's
/// timestamps into nanoseconds since the Unix epoch (the live agent's records carry the kernel's
/// monotonic clock). Numbers print in Rust's shortest round-trip form: integers without a
/// decimal point, no exponents.
pub fn write_csv_row<W: fmt::Write>(
    out: &mut W,
    rec: &FlowRecord,
    to_unix_ns: &dyn Fn(u64) -> u64,
) -> fmt::Result {
    let id = FlowIdentity::of_record(rec);
    write!(
        out,
        "{}-{}-{}-{}-{},{},{},{},{},{},{}",
        id.src_ip,
        id.dst_ip,
        id.src_port,
        id.dst_port,
        id.protocol,
        id.src_ip,
        id.src_port,
        id.dst_ip,
        id.dst_port,
        id.protocol,
        CicTime(to_unix_ns(id.first_ts))
    )?;
    let mut feats = [0.0; N_FLOW_FEATURES];
    flow_features_into(&rec.key, &rec.value, &mut feats);
    for x in feats {
        // Most features are whole numbers: integer formatting is faster and prints the same
        // text as f64's Display ("10000", "-1").
        if x.fract() == 0.0 && x.abs() < 9.0e15 && !(x == 0.0 && x.is_sign_negative()) {
            write!(out, ",{}", x as i64)?;
        } else {
            write!(out, ",{x}")?;
        }
    }
    match id.reason {
        Some(r) => write!(out, ",{}", r.name()),
        None => write!(out, ",unknown_{}", rec.reason),
    }
}
