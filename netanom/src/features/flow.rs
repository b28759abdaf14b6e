//! Flow features: the schema (the model's input layout) and how a [`FlowValue`] becomes a
//! feature vector.
//!
//! The schema is data: [`FLOW_FEATURES`] lists every feature in model-input order with its unit,
//! definition and how it compares to the CIC-IDS2017 ("improved", CICFlowMeter-fixed) column of
//! the same name. `FEATURES.md` holds the same table (a unit test keeps them identical) and the
//! conclusions drawn from the CIC data: sample (n − 1) standard deviations, microsecond times,
//! rates of 0 for flows of zero duration, and the `Flow ID` format.
//!
//! The CSV form of a record is in [`super::csv`], identities (who talked to whom) in
//! [`super::identity`].
use std::fmt::Write as _;

use netanom_common::{
    flow::{DirStats, FlowKey, FlowValue},
    parse::{IPPROTO_ICMP, IPPROTO_ICMPV6},
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
