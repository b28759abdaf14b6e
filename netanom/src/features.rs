//! Flow features: the schema (the model's input layout), how a [`FlowValue`] becomes a feature
//! vector, and the CSV form of a flow record.
//!
//! The schema is data: [`FLOW_FEATURES`] lists every feature in model-input order with its unit,
//! definition and how it compares to the CIC-IDS2017 ("improved", CICFlowMeter-fixed) column of
//! the same name. `FEATURES.md` holds the same table (a unit test keeps them identical) and the
//! conclusions drawn from the CIC data: sample (n − 1) standard deviations, microsecond times,
//! rates of 0 for flows of zero duration, and the `Flow ID` format.
//!
//! The offline extractor ([`crate::offline`]) and the live agent both turn a [`FlowRecord`] into
//! a row through [`csv_row`] / [`write_csv_row`], so the two cannot drift apart.
use std::{
    fmt::{self, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netanom_common::{
    flow::{DirStats, EndReason, FlowKey, FlowRecord, FlowValue},
    parse::{FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6},
};

/// How one of our features compares to the CIC-IDS2017 (improved) column of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CicMatch {
    /// Same name and same definition as the CIC CSV column (for TCP and UDP flows; see
    /// `FEATURES.md` for ICMP and other protocols).
    Exact,
    /// The CIC column of this name is defined differently; the text says how.
    Differs(&'static str),
    /// Ours only; not a CIC column.
    NotInCic,
}

/// One feature of the flow feature vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureDef {
    /// Column name: the CIC CSV header's spelling for CIC features, snake_case for ours.
    pub name: &'static str,
    pub unit: &'static str,
    pub definition: &'static str,
    pub cic: CicMatch,
}

/// Everything [`flow_features_into`] needs, computed once per flow.
struct Ctx<'a> {
    key: &'a FlowKey,
    v: &'a FlowValue,
    f: &'a DirStats,
    b: &'a DirStats,
    /// Packets, both directions.
    n: u64,
    /// Flow Duration, whole microseconds.
    dur_us: u64,
}

impl Ctx<'_> {
    /// `x` per second of Flow Duration, as CICFlowMeter computes it: `x / (duration_us / 1e6)`;
    /// 0 for a flow of zero duration.
    fn rate(&self, x: u64) -> f64 {
        if self.dur_us == 0 {
            0.0
        } else {
            x as f64 / (self.dur_us as f64 / 1_000_000.0)
        }
    }
    fn is_icmp(&self) -> bool {
        self.key.proto == IPPROTO_ICMP || self.key.proto == IPPROTO_ICMPV6
    }
    fn payload_bytes(&self) -> u64 {
        self.f.payload_bytes + self.b.payload_bytes
    }
    fn flag(&self, i: usize) -> u64 {
        u64::from(self.f.flags[i]) + u64::from(self.b.flags[i])
    }
    /// Smallest / largest payload over the directions that have packets.
    fn payload_min(&self) -> u64 {
        [self.f, self.b]
            .iter()
            .filter(|d| d.packets > 0)
            .map(|d| u64::from(d.payload_min))
            .min()
            .unwrap_or(0)
    }
    fn payload_max(&self) -> u64 {
        [self.f, self.b]
            .iter()
            .filter(|d| d.packets > 0)
            .map(|d| u64::from(d.payload_max))
            .max()
            .unwrap_or(0)
    }
}

/// `sum / n`, 0 when `n` is 0.
fn mean(sum: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { sum as f64 / n as f64 }
}

/// Sample (n − 1) variance of `n` values from their sum and sum of squares; 0 below 2 values.
/// The numerator `n·Σx² − (Σx)²` is computed exactly in integers, so it is never negative.
fn sample_var(sum: u64, sumsq: u64, n: u64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let (sum, sumsq, n) = (u128::from(sum), u128::from(sumsq), u128::from(n));
    let num = (n * sumsq).saturating_sub(sum * sum);
    num as f64 / (n * (n - 1)) as f64
}

fn sample_std(sum: u64, sumsq: u64, n: u64) -> f64 {
    sample_var(sum, sumsq, n).sqrt()
}

/// Number of gaps between `packets` packets.
fn gaps(packets: u64) -> u64 {
    packets.saturating_sub(1)
}

/// Every number type a feature is computed in, as `f64`.
trait IntoF64 {
    fn into_f64(self) -> f64;
}
macro_rules! into_f64 {
    ($($t:ty),*) => { $( impl IntoF64 for $t { fn into_f64(self) -> f64 { self as f64 } } )* };
}
into_f64!(u8, u16, u32, u64, i32);
impl IntoF64 for f64 {
    fn into_f64(self) -> f64 {
        self
    }
}

/// Declares [`FLOW_FEATURES`] and the function filling a feature vector in the same order, from
/// one list, so the schema and the computation cannot get out of step.
macro_rules! features {
    ($( $name:literal, $unit:literal, $cic:expr, $def:literal, |$c:ident| $e:expr; )*) => {
        /// The flow features, in model-input order. The order is part of the model interface:
        /// append new features at the end, never reorder.
        pub const FLOW_FEATURES: &[FeatureDef] = &[
            $( FeatureDef { name: $name, unit: $unit, definition: $def, cic: $cic }, )*
        ];

        fn compute(ctx: &Ctx<'_>, out: &mut [f64]) {
            let mut slots = out.iter_mut();
            $(
                let $c = ctx;
                *slots.next().expect("out has N_FLOW_FEATURES slots") = IntoF64::into_f64($e);
            )*
        }
    };
}

const ACT_DATA_DIFF: &str = "CICFlowMeter does not count the flow's first packet (its firstPacket() \
    skips this counter): in the CIC data the column is Total Fwd Packet − 1 in 6,426 of the 6,433 \
    rows whose forward packets all carry payload. Ours counts every forward packet with payload, so \
    it is CIC's value + 1 when the first packet carries data (most UDP flows), equal otherwise \
    (TCP flows opened by a SYN).";

features! {
    "Flow Duration", "µs", CicMatch::Exact,
        "Time from the flow's first to its last packet, in whole microseconds (truncated).",
        |c| c.dur_us;
    "Total Fwd Packet", "packets", CicMatch::Exact,
        "Packets sent by the initiator (the sender of the flow's first packet).",
        |c| c.f.packets;
    "Total Bwd packets", "packets", CicMatch::Exact,
        "Packets sent by the responder.",
        |c| c.b.packets;
    "Total Length of Fwd Packet", "bytes", CicMatch::Exact,
        "Sum of the forward packets' transport payload lengths (from the IP length fields).",
        |c| c.f.payload_bytes;
    "Total Length of Bwd Packet", "bytes", CicMatch::Exact,
        "Sum of the backward packets' transport payload lengths.",
        |c| c.b.payload_bytes;
    "Fwd Packet Length Max", "bytes", CicMatch::Exact,
        "Largest forward payload length.",
        |c| c.f.payload_max;
    "Fwd Packet Length Min", "bytes", CicMatch::Exact,
        "Smallest forward payload length.",
        |c| c.f.payload_min;
    "Fwd Packet Length Mean", "bytes", CicMatch::Exact,
        "Total Length of Fwd Packet / Total Fwd Packet.",
        |c| mean(c.f.payload_bytes, c.f.packets);
    "Fwd Packet Length Std", "bytes", CicMatch::Exact,
        "Sample (n − 1) standard deviation of the forward payload lengths; 0 below 2 packets.",
        |c| sample_std(c.f.payload_bytes, c.f.payload_sumsq, c.f.packets);
    "Bwd Packet Length Max", "bytes", CicMatch::Exact,
        "Largest backward payload length; 0 without backward packets.",
        |c| c.b.payload_max;
    "Bwd Packet Length Min", "bytes", CicMatch::Exact,
        "Smallest backward payload length; 0 without backward packets.",
        |c| c.b.payload_min;
    "Bwd Packet Length Mean", "bytes", CicMatch::Exact,
        "Total Length of Bwd Packet / Total Bwd packets; 0 without backward packets.",
        |c| mean(c.b.payload_bytes, c.b.packets);
    "Bwd Packet Length Std", "bytes", CicMatch::Exact,
        "Sample (n − 1) standard deviation of the backward payload lengths; 0 below 2 packets.",
        |c| sample_std(c.b.payload_bytes, c.b.payload_sumsq, c.b.packets);
    "Flow Bytes/s", "bytes/s", CicMatch::Exact,
        "(Total Length of Fwd Packet + Total Length of Bwd Packet) / (Flow Duration / 10^6); 0 when Flow Duration is 0.",
        |c| c.rate(c.payload_bytes());
    "Flow Packets/s", "packets/s", CicMatch::Exact,
        "(Total Fwd Packet + Total Bwd packets) / (Flow Duration / 10^6); 0 when Flow Duration is 0.",
        |c| c.rate(c.n);
    "Flow IAT Mean", "µs", CicMatch::Exact,
        "Mean gap between consecutive packets of the flow, both directions: sum of gaps / (packets − 1); 0 for one packet.",
        |c| mean(c.v.iat_sum_us, gaps(c.n));
    "Flow IAT Std", "µs", CicMatch::Exact,
        "Sample (n − 1) standard deviation of those gaps; 0 below 2 gaps.",
        |c| sample_std(c.v.iat_sum_us, c.v.iat_sumsq_us, gaps(c.n));
    "Flow IAT Max", "µs", CicMatch::Exact,
        "Largest gap between consecutive packets; 0 for one packet.",
        |c| c.v.iat_max_us;
    "Flow IAT Min", "µs", CicMatch::Exact,
        "Smallest gap between consecutive packets; 0 for one packet.",
        |c| c.v.iat_min_us;
    "Fwd IAT Total", "µs", CicMatch::Exact,
        "Sum of the gaps between consecutive forward packets (last − first forward packet).",
        |c| c.f.iat_sum_us;
    "Fwd IAT Mean", "µs", CicMatch::Exact,
        "Fwd IAT Total / (Total Fwd Packet − 1); 0 for one forward packet.",
        |c| mean(c.f.iat_sum_us, gaps(c.f.packets));
    "Fwd IAT Std", "µs", CicMatch::Exact,
        "Sample (n − 1) standard deviation of the forward gaps; 0 below 2 gaps.",
        |c| sample_std(c.f.iat_sum_us, c.f.iat_sumsq_us, gaps(c.f.packets));
    "Fwd IAT Max", "µs", CicMatch::Exact,
        "Largest forward gap; 0 for one forward packet.",
        |c| c.f.iat_max_us;
    "Fwd IAT Min", "µs", CicMatch::Exact,
        "Smallest forward gap; 0 for one forward packet.",
        |c| c.f.iat_min_us;
    "Bwd IAT Total", "µs", CicMatch::Exact,
        "Sum of the gaps between consecutive backward packets.",
        |c| c.b.iat_sum_us;
    "Bwd IAT Mean", "µs", CicMatch::Exact,
        "Bwd IAT Total / (Total Bwd packets − 1); 0 below 2 backward packets.",
        |c| mean(c.b.iat_sum_us, gaps(c.b.packets));
    "Bwd IAT Std", "µs", CicMatch::Exact,
        "Sample (n − 1) standard deviation of the backward gaps; 0 below 2 gaps.",
        |c| sample_std(c.b.iat_sum_us, c.b.iat_sumsq_us, gaps(c.b.packets));
    "Bwd IAT Max", "µs", CicMatch::Exact,
        "Largest backward gap; 0 below 2 backward packets.",
        |c| c.b.iat_max_us;
    "Bwd IAT Min", "µs", CicMatch::Exact,
        "Smallest backward gap; 0 below 2 backward packets.",
        |c| c.b.iat_min_us;
    "Fwd PSH Flags", "packets", CicMatch::Exact,
        "Forward packets with TCP PSH set.",
        |c| c.f.flags[3];
    "Bwd PSH Flags", "packets", CicMatch::Exact,
        "Backward packets with TCP PSH set.",
        |c| c.b.flags[3];
    "Fwd URG Flags", "packets", CicMatch::Exact,
        "Forward packets with TCP URG set.",
        |c| c.f.flags[5];
    "Bwd URG Flags", "packets", CicMatch::Exact,
        "Backward packets with TCP URG set.",
        |c| c.b.flags[5];
    "Fwd RST Flags", "packets", CicMatch::Exact,
        "Forward packets with TCP RST set.",
        |c| c.f.flags[2];
    "Bwd RST Flags", "packets", CicMatch::Exact,
        "Backward packets with TCP RST set.",
        |c| c.b.flags[2];
    "Fwd Header Length", "bytes", CicMatch::Exact,
        "Sum of the forward transport header lengths: TCP data offset × 4, 8 for UDP and ICMP, 0 for other protocols and non-first fragments.",
        |c| c.f.header_bytes;
    "Bwd Header Length", "bytes", CicMatch::Exact,
        "Sum of the backward transport header lengths.",
        |c| c.b.header_bytes;
    "Fwd Packets/s", "packets/s", CicMatch::Exact,
        "Total Fwd Packet / (Flow Duration / 10^6); 0 when Flow Duration is 0.",
        |c| c.rate(c.f.packets);
    "Bwd Packets/s", "packets/s", CicMatch::Exact,
        "Total Bwd packets / (Flow Duration / 10^6); 0 when Flow Duration is 0.",
        |c| c.rate(c.b.packets);
    "Packet Length Min", "bytes", CicMatch::Exact,
        "Smallest payload length over both directions.",
        |c| c.payload_min();
    "Packet Length Max", "bytes", CicMatch::Exact,
        "Largest payload length over both directions.",
        |c| c.payload_max();
    "Packet Length Mean", "bytes", CicMatch::Exact,
        "Payload bytes / packets, both directions.",
        |c| mean(c.payload_bytes(), c.n);
    "Packet Length Std", "bytes", CicMatch::Exact,
        "Sample (n − 1) standard deviation of the payload lengths over both directions (from the per-direction sums and sums of squares); 0 below 2 packets.",
        |c| sample_std(c.payload_bytes(), c.f.payload_sumsq + c.b.payload_sumsq, c.n);
    "Packet Length Variance", "bytes²", CicMatch::Exact,
        "Square of Packet Length Std (sample variance).",
        |c| sample_var(c.payload_bytes(), c.f.payload_sumsq + c.b.payload_sumsq, c.n);
    "FIN Flag Count", "packets", CicMatch::Exact,
        "Packets with TCP FIN set, both directions.",
        |c| c.flag(0);
    "SYN Flag Count", "packets", CicMatch::Exact,
        "Packets with TCP SYN set, both directions.",
        |c| c.flag(1);
    "RST Flag Count", "packets", CicMatch::Exact,
        "Packets with TCP RST set, both directions (Fwd RST Flags + Bwd RST Flags).",
        |c| c.flag(2);
    "PSH Flag Count", "packets", CicMatch::Exact,
        "Packets with TCP PSH set, both directions.",
        |c| c.flag(3);
    "ACK Flag Count", "packets", CicMatch::Exact,
        "Packets with TCP ACK set, both directions.",
        |c| c.flag(4);
    "URG Flag Count", "packets", CicMatch::Exact,
        "Packets with TCP URG set, both directions.",
        |c| c.flag(5);
    "CWR Flag Count", "packets", CicMatch::Exact,
        "Packets with TCP CWR set, both directions.",
        |c| c.flag(7);
    "ECE Flag Count", "packets", CicMatch::Exact,
        "Packets with TCP ECE set, both directions.",
        |c| c.flag(6);
    "Down/Up Ratio", "ratio", CicMatch::Exact,
        "Total Bwd packets / Total Fwd Packet (a fraction, not rounded).",
        |c| mean(c.b.packets, c.f.packets);
    "Average Packet Size", "bytes", CicMatch::Exact,
        "Payload bytes / packets, both directions (equal to Packet Length Mean, as in CIC).",
        |c| mean(c.payload_bytes(), c.n);
    "Fwd Segment Size Avg", "bytes", CicMatch::Exact,
        "Total Length of Fwd Packet / Total Fwd Packet.",
        |c| mean(c.f.payload_bytes, c.f.packets);
    "Bwd Segment Size Avg", "bytes", CicMatch::Exact,
        "Total Length of Bwd Packet / Total Bwd packets; 0 without backward packets.",
        |c| mean(c.b.payload_bytes, c.b.packets);
    "FWD Init Win Bytes", "bytes", CicMatch::Exact,
        "TCP window field (unscaled) of the first forward packet; 0 for other protocols.",
        |c| c.f.init_window;
    "Bwd Init Win Bytes", "bytes", CicMatch::Exact,
        "TCP window field (unscaled) of the first backward packet; 0 without backward packets and for other protocols.",
        |c| if c.b.packets > 0 { c.b.init_window } else { 0 };
    "Fwd Act Data Pkts", "packets", CicMatch::Differs(ACT_DATA_DIFF),
        "Forward packets with at least one byte of transport payload.",
        |c| c.f.data_packets;
    "Fwd Seg Size Min", "bytes", CicMatch::Exact,
        "Smallest forward transport header length (non-first fragments, which carry none, are left out after the first packet).",
        |c| c.f.header_min;
    "ICMP Code", "code", CicMatch::Exact,
        "ICMP/ICMPv6 code of the flow's first packet; −1 for other protocols.",
        |c| if c.is_icmp() { i32::from(c.v.icmp_code) } else { -1 };
    "ICMP Type", "type", CicMatch::Exact,
        "ICMP/ICMPv6 type of the flow's first packet; −1 for other protocols.",
        |c| if c.is_icmp() { i32::from(c.v.icmp_type) } else { -1 };
    "protocol", "number", CicMatch::NotInCic,
        "IP protocol number (IPv6: upper-layer next header): 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ... CIC has it only as an identifier column, 0 for protocols other than TCP, UDP and ICMP.",
        |c| c.key.proto;
    "fwd_frame_bytes", "bytes", CicMatch::NotInCic,
        "Sum of the forward packets' whole-frame lengths, Ethernet header included (original length, even when a capture cut the frame).",
        |c| c.f.frame_bytes;
    "bwd_frame_bytes", "bytes", CicMatch::NotInCic,
        "Sum of the backward packets' whole-frame lengths.",
        |c| c.b.frame_bytes;
    "bwd_act_data_pkts", "packets", CicMatch::NotInCic,
        "Backward packets with at least one byte of transport payload.",
        |c| c.b.data_packets;
    "bwd_seg_size_min", "bytes", CicMatch::NotInCic,
        "Smallest backward transport header length; 0 without backward packets.",
        |c| if c.b.packets > 0 { c.b.header_min } else { 0 };
}

/// Number of flow features: the length of every feature vector.
pub const N_FLOW_FEATURES: usize = FLOW_FEATURES.len();

/// Position of the feature called `name` in the feature vector.
pub fn feature_index(name: &str) -> Option<usize> {
    FLOW_FEATURES.iter().position(|f| f.name == name)
}

/// Fills `out` with the features of flow `v` (key `key`), in [`FLOW_FEATURES`] order.
///
/// Allocation-free, for the agent's hot path. Every value is finite: divisions by a zero count
/// or duration give 0.
///
/// # Panics
/// If `out.len() != N_FLOW_FEATURES`.
pub fn flow_features_into(key: &FlowKey, v: &FlowValue, out: &mut [f64]) {
    assert_eq!(out.len(), N_FLOW_FEATURES, "feature vector length");
    let c = Ctx {
        key,
        v,
        f: &v.fwd,
        b: &v.bwd,
        n: v.fwd.packets + v.bwd.packets,
        dur_us: v.last_ns.saturating_sub(v.first_ns) / 1000,
    };
    compute(&c, out);
}

/// The features of flow `v` (key `key`), in [`FLOW_FEATURES`] order.
pub fn flow_features(key: &FlowKey, v: &FlowValue) -> Vec<f64> {
    let mut out = vec![0.0; N_FLOW_FEATURES];
    flow_features_into(key, v, &mut out);
    out
}

/// Who talked to whom in a flow, oriented forward: the source is the initiator (the sender of
/// the flow's first packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowIdentity {
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// Time of the first and last packet, nanoseconds (since the Unix epoch for captures; the
    /// kernel's clock for live flows).
    pub first_ts: u64,
    pub last_ts: u64,
    /// Why the flow was exported; `None` for a reason code this build does not know.
    pub reason: Option<EndReason>,
}

/// The address stored as big-endian words in a [`FlowKey`] (see `PacketMeta`).
fn addr(family: u8, w: &[u32; 4]) -> IpAddr {
    if family == FAMILY_V6 {
        let bits =
            (u128::from(w[0]) << 96) | (u128::from(w[1]) << 64) | (u128::from(w[2]) << 32) | u128::from(w[3]);
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        IpAddr::V4(Ipv4Addr::from(w[0]))
    }
}

impl FlowIdentity {
    /// The identity of flow `v` under `key`, exported for `reason`.
    pub fn new(key: &FlowKey, v: &FlowValue, reason: Option<EndReason>) -> FlowIdentity {
        let lo = (addr(key.family, &key.addr_lo), key.port_lo);
        let hi = (addr(key.family, &key.addr_hi), key.port_hi);
        let ((src_ip, src_port), (dst_ip, dst_port)) = if v.fwd_is_lo != 0 { (lo, hi) } else { (hi, lo) };
        FlowIdentity {
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            protocol: key.proto,
            first_ts: v.first_ns,
            last_ts: v.last_ns,
            reason,
        }
    }

    /// The identity of an exported record.
    pub fn of_record(rec: &FlowRecord) -> FlowIdentity {
        FlowIdentity::new(&rec.key, &rec.value, EndReason::from_u32(rec.reason))
    }
}

/// CIC's "Flow ID": `src-dst-sport-dport-proto`, oriented forward, e.g.
/// `192.168.10.5-192.168.10.3-58181-53-17` (this is the order in 99.8 % of the CIC rows).
pub fn flow_id_string(id: &FlowIdentity) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        id.src_ip, id.dst_ip, id.src_port, id.dst_port, id.protocol
    )
}

/// Formats nanoseconds since the Unix epoch as CIC's "Timestamp" does, in UTC with microseconds:
/// `2017-07-07 18:56:33.850928` (the improved CIC-IDS2017 timestamps are UTC too).
pub fn format_timestamp(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let micros = (ns % 1_000_000_000) / 1000;
    let days = secs / 86_400;
    let tod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Proleptic Gregorian date of day `days` after 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

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
        format_timestamp(to_unix_ns(id.first_ts))
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

/// The schema as a Markdown table, as it appears in `FEATURES.md`.
pub fn schema_markdown() -> String {
    let mut s =
        String::from("| # | Name | Unit | Definition | CIC-IDS2017 column |\n|---|---|---|---|---|\n");
    for (i, f) in FLOW_FEATURES.iter().enumerate() {
        let cic = match f.cic {
            CicMatch::Exact => "same".to_string(),
            CicMatch::Differs(why) => format!("differs: {why}"),
            CicMatch::NotInCic => "ours (not in CIC)".to_string(),
        };
        let _ = writeln!(
            s,
            "| {i} | `{}` | {} | {} | {cic} |",
            f.name, f.unit, f.definition
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use netanom_common::{
        flow::{self, FlowTimeouts, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, Verdict},
        parse::{FAMILY_V4, IPPROTO_TCP, IPPROTO_UDP, PacketMeta},
    };

    use super::*;

    fn tcp(src: u32, sport: u16, dst: u32, dport: u16, flags: u8, payload: u16, hdr: u16) -> PacketMeta {
        PacketMeta {
            family: FAMILY_V4,
            proto: IPPROTO_TCP,
            src: [src, 0, 0, 0],
            dst: [dst, 0, 0, 0],
            sport,
            dport,
            tcp_flags: flags,
            window: if sport == 80 { 29200 } else { 64240 },
            l4_hdr_len: hdr,
            payload_len: payload,
            frame_len: 14 + 20 + hdr + payload,
            ..PacketMeta::default()
        }
    }

    /// Runs packets `(meta, µs)` through the shared flow code, as the kernel would.
    fn run(pkts: &[(PacketMeta, u64)]) -> (FlowKey, FlowValue) {
        let t = FlowTimeouts::DEFAULT;
        let (key, _) = FlowKey::of(&pkts[0].0);
        let mut v = FlowValue::default();
        for (i, (m, us)) in pkts.iter().enumerate() {
            let (k, lo) = FlowKey::of(m);
            assert_eq!(k, key);
            let now = 1_500_000_000_000_000_000 + us * 1000;
            if i == 0 {
                flow::start(&mut v, m, now, lo);
            } else {
                assert_ne!(flow::account(&mut v, m, now, lo, &t), Verdict::Restart);
            }
        }
        (key, v)
    }

    fn get(f: &[f64], name: &str) -> f64 {
        f[feature_index(name).unwrap_or_else(|| panic!("no feature {name}"))]
    }

    // Client 10.0.0.9:40000 (higher address, so the forward side is the key's upper endpoint),
    // server 10.0.0.1:80.
    const C: u32 = 0x0a00_0009;
    const S: u32 = 0x0a00_0001;

    fn handshake_data_fin() -> Vec<(PacketMeta, u64)> {
        vec![
            (tcp(C, 40000, S, 80, TCP_SYN, 0, 40), 0),
            (tcp(S, 80, C, 40000, TCP_SYN | TCP_ACK, 0, 40), 1_000),
            (tcp(C, 40000, S, 80, TCP_ACK, 0, 32), 2_000),
            (tcp(C, 40000, S, 80, TCP_ACK | TCP_PSH, 100, 32), 3_000),
            (tcp(S, 80, C, 40000, TCP_ACK | TCP_PSH, 300, 32), 5_000),
            (tcp(C, 40000, S, 80, TCP_ACK | TCP_FIN, 0, 32), 9_000),
            (tcp(S, 80, C, 40000, TCP_ACK | TCP_FIN, 0, 32), 10_000),
        ]
    }

    #[test]
    fn schema_is_consistent() {
        assert_eq!(N_FLOW_FEATURES, 67);
        let mut names: Vec<_> = FLOW_FEATURES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N_FLOW_FEATURES, "duplicate feature names");
        for f in FLOW_FEATURES {
            assert!(!f.unit.is_empty() && !f.definition.is_empty(), "{}", f.name);
            assert!(
                !f.definition.contains('|'),
                "{}: '|' breaks the Markdown table",
                f.name
            );
            // Our own features are snake_case, CIC ones keep the CIC spelling.
            let ours = f.name.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_');
            assert_eq!(ours, f.cic == CicMatch::NotInCic, "{}", f.name);
        }
        // The NotInCic features come last, after every CIC one.
        let first_ours = FLOW_FEATURES
            .iter()
            .position(|f| f.cic == CicMatch::NotInCic)
            .unwrap();
        assert!(
            FLOW_FEATURES[first_ours..]
                .iter()
                .all(|f| f.cic == CicMatch::NotInCic)
        );
        assert_eq!(FLOW_FEATURES[0].name, "Flow Duration");
    }

    #[test]
    fn hand_computed_tcp_flow() {
        let (key, v) = run(&handshake_data_fin());
        let f = flow_features(&key, &v);
        let expect = [
            ("Flow Duration", 10_000.0),
            ("Total Fwd Packet", 4.0),
            ("Total Bwd packets", 3.0),
            ("Total Length of Fwd Packet", 100.0),
            ("Total Length of Bwd Packet", 300.0),
            ("Fwd Packet Length Max", 100.0),
            ("Fwd Packet Length Min", 0.0),
            ("Fwd Packet Length Mean", 25.0),
            // Values 0, 0, 100, 0: mean 25, Σ(x − 25)² = 7500, / 3.
            ("Fwd Packet Length Std", 2500.0f64.sqrt()),
            ("Bwd Packet Length Max", 300.0),
            ("Bwd Packet Length Min", 0.0),
            ("Bwd Packet Length Mean", 100.0),
            // 0, 300, 0: Σ(x − 100)² = 60000, / 2.
            ("Bwd Packet Length Std", 30_000.0f64.sqrt()),
            ("Flow Bytes/s", 400.0 / 0.01),
            ("Flow Packets/s", 7.0 / 0.01),
            // Gaps 1000, 1000, 1000, 2000, 4000, 1000: mean 10000/6.
            ("Flow IAT Mean", 10_000.0 / 6.0),
            ("Flow IAT Max", 4_000.0),
            ("Flow IAT Min", 1_000.0),
            // Forward at 0, 2000, 3000, 9000: gaps 2000, 1000, 6000.
            ("Fwd IAT Total", 9_000.0),
            ("Fwd IAT Mean", 3_000.0),
            ("Fwd IAT Std", (14_000_000.0f64 / 2.0).sqrt()),
            ("Fwd IAT Max", 6_000.0),
            ("Fwd IAT Min", 1_000.0),
            // Backward at 1000, 5000, 10000: gaps 4000, 5000.
            ("Bwd IAT Total", 9_000.0),
            ("Bwd IAT Mean", 4_500.0),
            ("Bwd IAT Std", 500_000.0f64.sqrt()),
            ("Bwd IAT Max", 5_000.0),
            ("Bwd IAT Min", 4_000.0),
            ("Fwd PSH Flags", 1.0),
            ("Bwd PSH Flags", 1.0),
            ("Fwd URG Flags", 0.0),
            ("Fwd RST Flags", 0.0),
            ("Fwd Header Length", 40.0 + 3.0 * 32.0),
            ("Bwd Header Length", 40.0 + 2.0 * 32.0),
            ("Fwd Packets/s", 400.0),
            ("Bwd Packets/s", 300.0),
            ("Packet Length Min", 0.0),
            ("Packet Length Max", 300.0),
            ("Packet Length Mean", 400.0 / 7.0),
            // Σx² = 100000, n = 7: (7·100000 − 400²) / (7·6).
            ("Packet Length Variance", 540_000.0 / 42.0),
            ("Packet Length Std", (540_000.0f64 / 42.0).sqrt()),
            ("FIN Flag Count", 2.0),
            ("SYN Flag Count", 2.0),
            ("RST Flag Count", 0.0),
            ("PSH Flag Count", 2.0),
            ("ACK Flag Count", 6.0),
            ("CWR Flag Count", 0.0),
            ("Down/Up Ratio", 0.75),
            ("Average Packet Size", 400.0 / 7.0),
            ("Fwd Segment Size Avg", 25.0),
            ("Bwd Segment Size Avg", 100.0),
            ("FWD Init Win Bytes", 64240.0),
            ("Bwd Init Win Bytes", 29200.0),
            ("Fwd Act Data Pkts", 1.0),
            ("Fwd Seg Size Min", 32.0),
            ("ICMP Code", -1.0),
            ("ICMP Type", -1.0),
            ("protocol", 6.0),
            ("fwd_frame_bytes", 4.0 * 34.0 + 40.0 + 3.0 * 32.0 + 100.0),
            ("bwd_frame_bytes", 3.0 * 34.0 + 40.0 + 2.0 * 32.0 + 300.0),
            ("bwd_act_data_pkts", 1.0),
            ("bwd_seg_size_min", 32.0),
        ];
        for (name, want) in expect {
            let got = get(&f, name);
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{name}: got {got}, want {want}"
            );
        }
        // Flow IAT Std: gaps 1000 ×4, 2000, 4000 → Σ = 10000, Σx² = 24e6.
        let want = ((6.0 * 24e6 - 1e8) / 30.0f64).sqrt();
        assert!((get(&f, "Flow IAT Std") - want).abs() < 1e-6);
        assert!(f.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn identity_is_oriented_to_the_initiator() {
        let pkts = handshake_data_fin();
        let (key, v) = run(&pkts);
        // The client has the higher address: the key's lower endpoint is the server.
        assert_eq!(key.addr_lo[0], S);
        assert_eq!(v.fwd_is_lo, 0);
        let id = FlowIdentity::new(&key, &v, Some(EndReason::Fin));
        assert_eq!(id.src_ip, "10.0.0.9".parse::<IpAddr>().unwrap());
        assert_eq!((id.src_port, id.dst_port, id.protocol), (40000, 80, 6));
        assert_eq!(id.dst_ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(flow_id_string(&id), "10.0.0.9-10.0.0.1-40000-80-6");
        assert_eq!(id.last_ts - id.first_ts, 10_000_000);

        // Started by the server side instead: the same key, the other orientation.
        let mut rev = pkts.clone();
        rev.remove(0);
        let (key2, v2) = run(&rev);
        assert_eq!(key2, key);
        let id2 = FlowIdentity::new(&key2, &v2, None);
        assert_eq!(flow_id_string(&id2), "10.0.0.1-10.0.0.9-80-40000-6");
        let f = flow_features(&key2, &v2);
        assert_eq!(get(&f, "Total Fwd Packet"), 3.0);
        assert_eq!(get(&f, "FWD Init Win Bytes"), 29200.0);
    }

    #[test]
    fn one_packet_and_zero_duration_flows_have_finite_zero_rates() {
        let m = PacketMeta {
            family: FAMILY_V4,
            proto: IPPROTO_UDP,
            src: [1, 0, 0, 0],
            dst: [2, 0, 0, 0],
            sport: 5000,
            dport: 53,
            l4_hdr_len: 8,
            payload_len: 40,
            frame_len: 82,
            ..PacketMeta::default()
        };
        let (key, v) = run(&[(m, 0)]);
        let f = flow_features(&key, &v);
        assert!(f.iter().all(|x| x.is_finite()));
        for name in [
            "Flow Duration",
            "Flow Bytes/s",
            "Flow Packets/s",
            "Fwd Packets/s",
            "Flow IAT Mean",
        ] {
            assert_eq!(get(&f, name), 0.0, "{name}");
        }
        assert_eq!(get(&f, "Packet Length Std"), 0.0);
        assert_eq!(get(&f, "Packet Length Mean"), 40.0);
        assert_eq!(get(&f, "Bwd Packet Length Min"), 0.0);
        assert_eq!(get(&f, "Down/Up Ratio"), 0.0);
        assert_eq!(get(&f, "Fwd Header Length"), 8.0);
        // Two packets in the same microsecond: duration 0, rates 0, one gap of 0.
        let (key, v) = run(&[(m, 0), (m, 0)]);
        let f = flow_features(&key, &v);
        assert_eq!(get(&f, "Flow Bytes/s"), 0.0);
        assert_eq!(get(&f, "Total Fwd Packet"), 2.0);
        assert_eq!(get(&f, "Fwd Act Data Pkts"), 2.0);
        // A value of all zeros (nothing accounted) is still safe.
        assert!(
            flow_features(&key, &FlowValue::default())
                .iter()
                .all(|x| x.is_finite())
        );
    }

    #[test]
    fn icmp_type_and_code_and_ipv6_identity() {
        let m = PacketMeta {
            family: FAMILY_V6,
            proto: IPPROTO_ICMPV6,
            src: [0x2001_0db8, 0, 0, 1],
            dst: [0x2001_0db8, 0, 0, 2],
            icmp_type: 128,
            icmp_code: 0,
            l4_hdr_len: 8,
            payload_len: 56,
            frame_len: 118,
            ..PacketMeta::default()
        };
        let (key, v) = run(&[(m, 0)]);
        let f = flow_features(&key, &v);
        assert_eq!((get(&f, "ICMP Type"), get(&f, "ICMP Code")), (128.0, 0.0));
        let id = FlowIdentity::new(&key, &v, Some(EndReason::Flush));
        assert_eq!(flow_id_string(&id), "2001:db8::1-2001:db8::2-0-0-58");
    }

    #[test]
    fn csv_header_and_row_line_up() {
        let (key, value) = run(&handshake_data_fin());
        let rec = FlowRecord {
            key,
            reason: EndReason::Fin as u32,
            value,
            ..FlowRecord::default()
        };
        let header = csv_header();
        let row = csv_row(&rec);
        let h: Vec<_> = header.split(',').collect();
        let r: Vec<_> = row.split(',').collect();
        assert_eq!(h.len(), r.len());
        assert_eq!(h.len(), 7 + N_FLOW_FEATURES + 1);
        assert_eq!(
            &r[..6],
            [
                "10.0.0.9-10.0.0.1-40000-80-6",
                "10.0.0.9",
                "40000",
                "10.0.0.1",
                "80",
                "6"
            ]
        );
        assert_eq!(r[6], "2017-07-14 02:40:00.000000");
        assert_eq!(*r.last().unwrap(), "fin");
        let col = |name: &str| r[h.iter().position(|c| *c == name).unwrap()];
        assert_eq!(
            col("Flow Duration"),
            "10000",
            "integers print without a decimal point"
        );
        assert_eq!(col("Down/Up Ratio"), "0.75");
        assert_eq!(col("ICMP Type"), "-1");
        // Every feature parses back to the value it was written from.
        let f = flow_features(&key, &value);
        for (i, x) in f.iter().enumerate() {
            assert_eq!(r[7 + i].parse::<f64>().unwrap(), *x, "{}", FLOW_FEATURES[i].name);
        }
        let unknown = FlowRecord { reason: 99, ..rec };
        assert!(csv_row(&unknown).ends_with(",unknown_99"));
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000000");
        // 2017-07-07 18:56:33.850928 UTC, the first DDoS flow of the CIC sample.
        assert_eq!(
            format_timestamp(1_499_453_793_850_928_999),
            "2017-07-07 18:56:33.850928"
        );
        assert_eq!(
            format_timestamp(951_782_400_000_000_000),
            "2000-02-29 00:00:00.000000"
        );
        assert_eq!(
            format_timestamp(4_102_444_799_000_000_000),
            "2099-12-31 23:59:59.000000"
        );
    }

    /// `$NETANOM_SHARED`, or `shared/` next to the workspace.
    fn shared_dir() -> PathBuf {
        std::env::var_os("NETANOM_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
    }

    #[test]
    fn cic_named_features_exist_in_the_cic_header() {
        let path = shared_dir().join("datasets/cic-ids2017-improved-sample/data_header_reference.csv");
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!("skipped: {} not found (set NETANOM_SHARED)", path.display());
            return;
        };
        let cols: Vec<&str> = text
            .lines()
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .collect();
        for f in FLOW_FEATURES {
            let present = cols.contains(&f.name);
            match f.cic {
                CicMatch::Exact | CicMatch::Differs(_) => assert!(present, "{} is not a CIC column", f.name),
                CicMatch::NotInCic => assert!(!present, "{} is a CIC column", f.name),
            }
        }
        for c in &CSV_ID_COLUMNS {
            assert!(cols.contains(c), "identity column {c} is not a CIC column");
        }
    }

    fn features_md() -> (PathBuf, String) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("FEATURES.md");
        let text = std::fs::read_to_string(&path).expect("netanom/FEATURES.md exists");
        (path, text)
    }

    const TABLE_BEGIN: &str = "<!-- BEGIN FLOW_FEATURES: generated from netanom/src/features.rs -->\n";
    const TABLE_END: &str = "<!-- END FLOW_FEATURES -->";

    /// FEATURES.md carries exactly [`schema_markdown`]. To refresh it after changing the
    /// schema: `NETANOM_UPDATE_FEATURES_MD=1 cargo test -p netanom --lib features_md`.
    #[test]
    fn features_md_has_the_schema_table() {
        let (path, text) = features_md();
        let (Some(b), Some(e)) = (text.find(TABLE_BEGIN), text.find(TABLE_END)) else {
            panic!(
                "{} lacks the {TABLE_BEGIN:?} / {TABLE_END:?} markers",
                path.display()
            );
        };
        let start = b + TABLE_BEGIN.len();
        let table = schema_markdown();
        if text[start..e] != table {
            if std::env::var_os("NETANOM_UPDATE_FEATURES_MD").is_some() {
                let new = format!("{}{table}{}", &text[..start], &text[e..]);
                std::fs::write(&path, new).unwrap();
            } else {
                panic!(
                    "the table in {} differs from FLOW_FEATURES; regenerate it with \
                     NETANOM_UPDATE_FEATURES_MD=1 cargo test -p netanom --lib features_md",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn features_md_names_every_feature() {
        let (_, text) = features_md();
        for f in FLOW_FEATURES {
            assert!(
                text.contains(&format!("`{}`", f.name)),
                "FEATURES.md does not mention `{}`",
                f.name
            );
        }
    }

    /// Recomputes derived CIC columns from the totals in the real CIC rows, which pins down the
    /// definitions we match (sample std, rates per µs-duration, Down/Up as a fraction, means).
    #[test]
    fn definitions_agree_with_cic_rows() {
        // The CIC rows are gzipped and we have no gzip reader here; the checks over all 45,919
        // rows were made with a script (FEATURES.md, "How the definitions were pinned down").
        // Here: one real 4-packet DNS flow, BENIGN_5000 id 307514, rebuilt packet by packet.
        // fwd payloads 35, 35; bwd 51, 51; fwd gap 4 µs, bwd gap 47 µs, duration 245 µs.
        let q = |sport: u16, dport: u16, payload: u16| PacketMeta {
            family: FAMILY_V4,
            proto: IPPROTO_UDP,
            src: [if sport == 53 { 3 } else { 5 }, 0, 0, 0],
            dst: [if sport == 53 { 5 } else { 3 }, 0, 0, 0],
            sport,
            dport,
            l4_hdr_len: 8,
            payload_len: payload,
            frame_len: 42 + payload,
            ..PacketMeta::default()
        };
        let (key, v) = run(&[
            (q(58181, 53, 35), 0),
            (q(58181, 53, 35), 4),
            (q(53, 58181, 51), 198),
            (q(53, 58181, 51), 245),
        ]);
        let f = flow_features(&key, &v);
        let cic = [
            ("Flow Duration", 245.0),
            ("Flow Bytes/s", 702_040.816_326_530_7),
            ("Flow Packets/s", 16_326.530_612_244_898),
            ("Flow IAT Mean", 81.666_666_666_666_67),
            ("Flow IAT Std", 99.630_985_809_302),
            ("Flow IAT Max", 194.0),
            ("Flow IAT Min", 4.0),
            ("Fwd IAT Total", 4.0),
            ("Bwd IAT Total", 47.0),
            ("Fwd Header Length", 16.0),
            ("Fwd Packets/s", 8_163.265_306_122_449),
            ("Packet Length Min", 35.0),
            ("Packet Length Max", 51.0),
            ("Packet Length Mean", 43.0),
            ("Packet Length Std", 9.237_604_307_034_012),
            ("Packet Length Variance", 85.333_333_333_333_31),
            ("Down/Up Ratio", 1.0),
            ("Average Packet Size", 43.0),
            ("Fwd Segment Size Avg", 35.0),
            ("Bwd Segment Size Avg", 51.0),
            ("FWD Init Win Bytes", 0.0),
            ("Fwd Seg Size Min", 8.0),
            ("ICMP Code", -1.0),
        ];
        for (name, want) in cic {
            let got = get(&f, name);
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{name}: ours {got}, CIC {want}"
            );
        }
        // CIC says Fwd Act Data Pkts = 1 for this row (first packet not counted); ours is 2.
        assert_eq!(get(&f, "Fwd Act Data Pkts"), 2.0);
    }
}
