//! The per-source and per-destination aggregates of a capture: what the XDP program keeps in
//! `NA_SRC` and `NA_DST`, updated with the same `agg::src_account` / `agg::dst_account` and
//! the same [`FlowEvent`] per packet, drained every aggregate interval of capture time.
//!
//! The kernel credits volume in chunks (`agg::CREDIT_PACKETS`) and the live agent credits
//! what an idle flow still had pending with the next drain; both add up to every packet
//! credited to its sender and service. Offline there is no cost to save, so every packet is
//! credited at once: the same totals, without the lag of at most one chunk per flow
//! direction. Offline tables have no LRU capacity either (the kernel's evicts the oldest
//! entries when full).
use std::collections::HashMap;

use netanom_common::{
    agg::{self, DstKey, DstStats, FlowEvent, HostKey, SrcStats},
    parse::PacketMeta,
};

/// Per-source entries of one interval.
pub type SrcEntries = Vec<(HostKey, SrcStats)>;
/// Per-destination-service entries of one interval.
pub type DstEntries = Vec<(DstKey, DstStats)>;

/// The aggregates of the current interval.
#[derive(Debug, Default)]
pub struct AggregateTable {
    src: HashMap<HostKey, SrcStats>,
    dst: HashMap<DstKey, DstStats>,
}

impl AggregateTable {
    pub fn new() -> AggregateTable {
        AggregateTable::default()
    }

    /// Whether nothing was credited since the last drain.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty() && self.dst.is_empty()
    }

    /// Credits packet `m` (its flow's event `ev`) at `now_ns`: to its sender, and in the
    /// flow's forward direction to the destination service; the responder's first answer to a
    /// bare SYN is counted as answered for the service and the initiator, when they have an
    /// entry (as the kernel, which does not create one for it).
    pub fn packet(&mut self, m: &PacketMeta, ev: &FlowEvent, now_ns: u64) {
        let (packets, bytes) = (1, u64::from(m.frame_len));
        let s = self.src.entry(HostKey::src_of(m)).or_default();
        agg::src_account(s, m, packets, bytes, ev.forward, now_ns, ev);
        if ev.forward {
            let d = self.dst.entry(DstKey::to(m)).or_default();
            agg::dst_account(d, m, packets, bytes, now_ns, ev);
        }
        if ev.syn_answered {
            if let Some(d) = self.dst.get_mut(&DstKey::from(m)) {
                d.syn_answered += 1;
            }
            if let Some(s) = self.src.get_mut(&HostKey::dst_of(m)) {
                s.syn_answered += 1;
            }
        }
    }

    /// Takes the interval's entries, in address order (so that findings, and the alerts
    /// they lead to, come in the same order on every run), leaving the table empty.
    pub fn drain(&mut self) -> (SrcEntries, DstEntries) {
        let mut src: Vec<_> = self.src.drain().collect();
        src.sort_unstable_by_key(|(k, _)| (k.family, k.addr));
        let mut dst: Vec<_> = self.dst.drain().collect();
        dst.sort_unstable_by_key(|(k, _)| (k.family, k.addr, k.proto, k.port));
        (src, dst)
    }
}

#[cfg(test)]
mod tests {
    use netanom_common::parse::IPPROTO_TCP;

    use super::*;

    fn tcp(src: u32, dst: u32, sport: u16, dport: u16, len: u16) -> PacketMeta {
        PacketMeta {
            family: 4,
            proto: IPPROTO_TCP,
            src: [src, 0, 0, 0],
            dst: [dst, 0, 0, 0],
            sport,
            dport,
            frame_len: len,
            ..PacketMeta::default()
        }
    }

    #[test]
    fn senders_services_and_answered_syns() {
        let mut t = AggregateTable::new();
        let (client, server) = (0xc612_0002, 0xc612_0101);
        let syn = tcp(client, server, 40_000, 80, 60);
        let start = FlowEvent {
            started: true,
            syn: true,
            syn_answered: false,
            forward: true,
        };
        t.packet(&syn, &start, 1_000);
        let answer = FlowEvent {
            started: false,
            syn: false,
            syn_answered: true,
            forward: false,
        };
        t.packet(&tcp(server, client, 80, 40_000, 60), &answer, 2_000);
        let (src, dst) = t.drain();
        assert!(t.is_empty());
        // Client first (lower address), then the server, which answered.
        assert_eq!(src.len(), 2);
        let (c, s) = (&src[0].1, &src[1].1);
        assert_eq!(
            (c.packets, c.fwd_packets, c.flows, c.syn_flows, c.syn_answered),
            (1, 1, 1, 1, 1)
        );
        assert_eq!((s.packets, s.fwd_packets, s.flows, s.bytes), (1, 0, 0, 60));
        // Only the forward direction reaches a service: the server's port 80.
        assert_eq!(dst.len(), 1);
        assert_eq!(dst[0].0.port, 80);
        let d = &dst[0].1;
        assert_eq!((d.packets, d.flows, d.syn_flows, d.syn_answered), (1, 1, 1, 1));
        assert_eq!((d.first_ns, d.last_ns), (1_000, 1_000));
    }

    #[test]
    fn drained_entries_come_in_address_order() {
        let mut t = AggregateTable::new();
        let ev = FlowEvent {
            forward: true,
            ..FlowEvent::default()
        };
        for a in [9u32, 3, 7, 1, 5] {
            t.packet(&tcp(0xc612_0000 + a, 0xc612_0100 + a, 1, 2, 60), &ev, 1);
        }
        let (src, dst) = t.drain();
        let order: Vec<u32> = src.iter().map(|(k, _)| k.addr[0] & 0xff).collect();
        assert_eq!(order, [1, 3, 5, 7, 9]);
        let order: Vec<u32> = dst.iter().map(|(k, _)| k.addr[0] & 0xff).collect();
        assert_eq!(order, [1, 3, 5, 7, 9]);
    }
}
