//! The kernel credits aggregate volume in chunks (`agg::CREDIT_PACKETS`); what an idle flow
//! still had pending when the sweep exported it is credited by the agent, to the next drained
//! aggregates, so that per-source and per-destination volume loses nothing.
use std::{collections::HashMap, hash::Hash};

use netanom_common::{
    agg::{DstKey, DstStats, HostKey, SrcStats},
    flow::FlowRecord,
};

/// Aggregate volume the kernel had not credited yet when the sweep exported an idle flow
/// (it credits in chunks, see `agg::CREDIT_PACKETS`): credited by the agent to the next
/// drained aggregates, so that per-source and per-destination volume loses nothing.
#[derive(Debug, Default)]
pub struct Uncredited {
    src: HashMap<HostKey, Volume>,
    dst: HashMap<DstKey, Volume>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Volume {
    packets: u64,
    bytes: u64,
    last_ns: u64,
    /// Of `packets`, those sent in the flow's forward direction (sources only, see
    /// `SrcStats::fwd_packets`).
    fwd_packets: u64,
}

impl Volume {
    fn add(&mut self, packets: u64, bytes: u64, last_ns: u64) {
        self.packets += packets;
        self.bytes += bytes;
        self.last_ns = self.last_ns.max(last_ns);
    }
}

impl Uncredited {
    /// Notes what the exported flow `r` still had pending, per direction.
    pub fn add(&mut self, r: &FlowRecord) {
        let (k, v) = (&r.key, &r.value);
        let lo = (k.addr_lo, k.port_lo);
        let hi = (k.addr_hi, k.port_hi);
        let (initiator, responder) = if v.fwd_is_lo != 0 { (lo, hi) } else { (hi, lo) };
        for (d, sender, forward) in [(&v.fwd, initiator, true), (&v.bwd, responder, false)] {
            if d.agg_pkts == 0 {
                continue;
            }
            let (packets, bytes) = (u64::from(d.agg_pkts), u64::from(d.agg_bytes));
            let host = HostKey {
                addr: sender.0,
                family: k.family,
                _pad: [0; 3],
            };
            let vol = self.src.entry(host).or_default();
            vol.add(packets, bytes, d.last_ns);
            if forward {
                vol.fwd_packets += packets;
            }
            if forward {
                let service = DstKey {
                    addr: responder.0,
                    port: responder.1,
                    proto: k.proto,
                    family: k.family,
                };
                self.dst
                    .entry(service)
                    .or_default()
                    .add(packets, bytes, d.last_ns);
            }
        }
    }

    /// Whether nothing is waiting to be credited.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty() && self.dst.is_empty()
    }

    /// Adds what was noted to freshly drained aggregates (a source or service the kernel has
    /// no entry for gets one), and forgets it.
    pub fn credit(&mut self, src: &mut Vec<(HostKey, SrcStats)>, dst: &mut Vec<(DstKey, DstStats)>) {
        merge(&mut self.src, src, |s, v| {
            add_volume(&mut s.packets, &mut s.bytes, &mut s.first_ns, &mut s.last_ns, v);
            s.fwd_packets += v.fwd_packets;
        });
        merge(&mut self.dst, dst, |d, v| {
            add_volume(&mut d.packets, &mut d.bytes, &mut d.first_ns, &mut d.last_ns, v)
        });
    }
}

fn add_volume(packets: &mut u64, bytes: &mut u64, first_ns: &mut u64, last_ns: &mut u64, v: &Volume) {
    if *packets == 0 {
        *first_ns = v.last_ns;
    }
    *packets += v.packets;
    *bytes += v.bytes;
    *last_ns = (*last_ns).max(v.last_ns);
}

fn merge<K: Hash + Eq + Copy, V: Default>(
    pending: &mut HashMap<K, Volume>,
    drained: &mut Vec<(K, V)>,
    add: impl Fn(&mut V, &Volume),
) {
    if pending.is_empty() {
        return;
    }
    for (k, v) in drained.iter_mut() {
        if let Some(p) = pending.remove(k) {
            add(v, &p);
        }
    }
    for (k, p) in pending.drain() {
        let mut v = V::default();
        add(&mut v, &p);
        drained.push((k, v));
    }
}
