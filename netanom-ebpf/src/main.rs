//! netanom's kernel programs: per-packet accounting at XDP (ingress) and TC (egress).
//!
//! Kept small and verifier-friendly: parsing and every accounting rule live in
//! `netanom_common` (shared with the agent's offline extractor and unit-tested on the host);
//! this crate supplies bounds-checked packet access, the maps, and the glue. The only packets
//! dropped are those the pinned blocklist or a flood-pattern rate limit says to drop, never
//! from an allowlisted source, never ARP or IPv6 neighbour discovery, and never on egress.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST, TC_ACT_OK, xdp_action},
        helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
        macros::{classifier, map, xdp},
        maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
        programs::{TcContext, XdpContext},
    };
    use aya_log_ebpf::debug;
    use netanom_common::{
        Event, Proto, ProtoCounter,
        agg::{self, DstKey, DstStats, FlowEvent, HostKey, SrcStats},
        flow::{
            self, EndReason, FlowKey, FlowRecord, FlowTimeouts, FlowValue, ST_CLOSED, ST_SYN_PENDING, Verdict,
        },
        mitigate::{self, AllowEntry, BlockEntry, Control, RateLimit},
        parse::{self, FRAG_NONE, Packet, PacketMeta},
    };

    #[map(name = "NA_PROTO")]
    static NA_PROTO: PerCpuArray<ProtoCounter> = PerCpuArray::with_max_entries(Proto::COUNT, 0);

    #[map(name = "NA_EVENTS")]
    static NA_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Event::COUNT, 0);

    // Sizes are defaults; the agent sets them at load time.
    #[map(name = "NA_FLOWS")]
    static NA_FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(262_144, 0);

    #[map(name = "NA_SRC")]
    static NA_SRC: LruHashMap<HostKey, SrcStats> = LruHashMap::with_max_entries(65_536, 0);

    #[map(name = "NA_DST")]
    static NA_DST: LruHashMap<DstKey, DstStats> = LruHashMap::with_max_entries(65_536, 0);

    #[map(name = "NA_SCRATCH")]
    static NA_SCRATCH: PerCpuArray<FlowValue> = PerCpuArray::with_max_entries(1, 0);

    #[map(name = "NA_FLOW_RB")]
    static NA_FLOW_RB: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

    // Mitigation state, pinned by the agent so that it outlives the agent.
    #[map(name = "NA_BLOCK4")]
    static NA_BLOCK4: LpmTrie<[u8; 4], BlockEntry> = LpmTrie::with_max_entries(mitigate::BLOCK_ENTRIES, 0);

    #[map(name = "NA_BLOCK6")]
    static NA_BLOCK6: LpmTrie<[u8; 16], BlockEntry> = LpmTrie::with_max_entries(mitigate::BLOCK_ENTRIES, 0);

    // Host blocks: allocated as they are added (most gateways hold none).
    #[map(name = "NA_HBLOCK4")]
    static NA_HBLOCK4: HashMap<[u8; 4], BlockEntry> =
        HashMap::with_max_entries(mitigate::BLOCK_ENTRIES, BPF_F_NO_PREALLOC);

    #[map(name = "NA_HBLOCK6")]
    static NA_HBLOCK6: HashMap<[u8; 16], BlockEntry> =
        HashMap::with_max_entries(mitigate::BLOCK_ENTRIES, BPF_F_NO_PREALLOC);

    #[map(name = "NA_HFILTER")]
    static NA_HFILTER: Array<u64> = Array::with_max_entries(mitigate::HOST_FILTER_WORDS, 0);

    #[map(name = "NA_ALLOW4")]
    static NA_ALLOW4: LpmTrie<[u8; 4], AllowEntry> = LpmTrie::with_max_entries(mitigate::ALLOW_ENTRIES, 0);

    #[map(name = "NA_ALLOW6")]
    static NA_ALLOW6: LpmTrie<[u8; 16], AllowEntry> = LpmTrie::with_max_entries(mitigate::ALLOW_ENTRIES, 0);

    #[map(name = "NA_RATELIM")]
    static NA_RATELIM: HashMap<mitigate::PatternKey, RateLimit> =
        HashMap::with_max_entries(mitigate::RATE_LIMIT_ENTRIES, 0);

    #[map(name = "NA_MCTL")]
    static NA_MCTL: Array<u64> = Array::with_max_entries(mitigate::CONTROL_SLOTS, 0);

    /// Flow timeouts; the agent overrides this before load (it lives in .rodata, so the
    /// verifier sees constants).
    #[unsafe(no_mangle)]
    static NA_TIMEOUTS: FlowTimeouts = FlowTimeouts::DEFAULT;

    static ZERO_SRC: SrcStats = SrcStats {
        packets: 0,
        bytes: 0,
        fwd_packets: 0,
        flows: 0,
        syn_flows: 0,
        syn_answered: 0,
        first_ns: 0,
        last_ns: 0,
        port_sketch: [0; agg::SKETCH_WORDS],
        host_sketch: [0; agg::SKETCH_WORDS],
    };
    static ZERO_DST: DstStats = DstStats {
        packets: 0,
        bytes: 0,
        flows: 0,
        syn_flows: 0,
        syn_answered: 0,
        first_ns: 0,
        last_ns: 0,
        src_sketch: [0; agg::SKETCH_WORDS],
    };

    /// Bounds-checked view of the frame between `data` and `data_end`.
    struct Frame {
        start: usize,
        end: usize,
    }

    impl Packet for Frame {
        #[inline(always)]
        fn len(&self) -> usize {
            self.end - self.start
        }
        #[inline(always)]
        fn be16_at(&self, off: usize) -> Option<u16> {
            // The constant bound lets the verifier prove `off` small before the packet check.
            if off > parse::MAX_HDR_OFFSET {
                return None;
            }
            let p = self.start + off;
            if p + 2 > self.end {
                return None;
            }
            // SAFETY: both bytes are inside [data, data_end), checked just above.
            let (a, b) = unsafe { (*(p as *const u8), *((p + 1) as *const u8)) };
            Some(u16::from_be_bytes([a, b]))
        }
        #[inline(always)]
        fn be32_at(&self, off: usize) -> Option<u32> {
            if off > parse::MAX_HDR_OFFSET {
                return None;
            }
            let p = self.start + off;
            if p + 4 > self.end {
                return None;
            }
            // SAFETY: the four bytes are inside [data, data_end), checked just above.
            let b = unsafe { core::ptr::read_unaligned(p as *const [u8; 4]) };
            Some(u32::from_be_bytes(b))
        }
    }

    #[inline(always)]
    fn bump(event: Event) {
        if let Some(v) = NA_EVENTS.get_ptr_mut(event as u32) {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU.
            unsafe { *v += 1 };
        }
    }

    #[inline(always)]
    fn count_proto(proto: Proto, len: u64) {
        if let Some(slot) = NA_PROTO.get_ptr_mut(proto as u32) {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU.
            unsafe {
                (*slot).packets += 1;
                (*slot).bytes += len;
            }
        }
    }

    /// Hands an ended flow to the agent; counts it lost if the ring buffer is full.
    #[inline(always)]
    fn export(key: &FlowKey, v: &FlowValue, reason: EndReason) {
        match NA_FLOW_RB.reserve::<FlowRecord>(0) {
            Some(mut e) => {
                let r = e.as_mut_ptr();
                // SAFETY: the reservation is exactly one FlowRecord.
                unsafe {
                    (*r).key = *key;
                    (*r).reason = reason as u32;
                    (*r)._pad = 0;
                    (*r).value = *v;
                }
                e.submit(0);
                bump(Event::FlowExported);
            }
            None => bump(Event::ExportLost),
        }
    }

    /// The entry for `key`, created from `zero` if missing (another CPU may win the race to
    /// create it; that is fine).
    #[inline(always)]
    fn entry<K, V>(map: &LruHashMap<K, V>, key: &K, zero: &V) -> Option<*mut V> {
        if let Some(v) = map.get_ptr_mut(key) {
            return Some(v);
        }
        let _ = map.insert(key, zero, u64::from(BPF_NOEXIST));
        map.get_ptr_mut(key)
    }

    #[inline(always)]
    fn v6_bytes(w: &[u32; 4]) -> [u8; 16] {
        let (a, b, c, d) = (
            w[0].to_be_bytes(),
            w[1].to_be_bytes(),
            w[2].to_be_bytes(),
            w[3].to_be_bytes(),
        );
        [
            a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2], d[3],
        ]
    }

    /// Whether the packet's source is allowlisted (counting the hit when it is).
    #[inline(always)]
    fn allowlisted(m: &PacketMeta) -> bool {
        let hit = if m.family == 4 {
            NA_ALLOW4.get(Key::new(32, m.src[0].to_be_bytes()))
        } else {
            NA_ALLOW6.get(Key::new(128, v6_bytes(&m.src)))
        };
        match hit {
            Some(a) => {
                // SAFETY: a map value (writable by programs); a lost increment is harmless.
                unsafe { (*(a as *const AllowEntry as *mut AllowEntry)).hits += 1 };
                bump(Event::PassedAllowlisted);
                true
            }
            None => false,
        }
    }

    /// The block deciding for `m`'s source: its host entry if it has one (the longest match),
    /// else, while prefix blocks exist, the trie's longest match.
    #[inline(always)]
    fn block_of(m: &PacketMeta) -> Option<*mut BlockEntry> {
        let bit = mitigate::host_filter_bit(&m.src);
        let maybe_host = NA_HFILTER
            .get(bit / 64)
            .is_none_or(|w| w & (1u64 << (bit % 64)) != 0);
        let host = if !maybe_host {
            None
        } else if m.family == 4 {
            NA_HBLOCK4.get_ptr_mut(m.src[0].to_be_bytes())
        } else {
            NA_HBLOCK6.get_ptr_mut(v6_bytes(&m.src))
        };
        let prefixes = NA_MCTL.get(Control::PrefixBlocks as u32).copied().unwrap_or(1);
        if host.is_some() || prefixes == 0 {
            return host;
        }
        let hit = if m.family == 4 {
            NA_BLOCK4.get(Key::new(32, m.src[0].to_be_bytes()))
        } else {
            NA_BLOCK6.get(Key::new(128, v6_bytes(&m.src)))
        };
        hit.map(|b| b as *const BlockEntry as *mut BlockEntry)
    }

    /// The coarse clock: the last tick's CLOCK_MONOTONIC, a few ns where the precise one
    /// costs tens in a VM. An expiry or a rate limit's arrival time judged by it may be up to
    /// one tick (1-10 ms) late, which no TTL or burst tolerance notices.
    #[inline(always)]
    fn coarse_now() -> u64 {
        // SAFETY: helper without preconditions.
        unsafe { bpf_ktime_get_coarse_ns() }
    }

    /// Whether to drop the packet: its source is blocked, or its pattern is over a rate limit,
    /// and the source is not allowlisted. Neighbour discovery always passes. (The allowlist
    /// takes precedence over everything; it is consulted only when something would drop, so
    /// the common path costs one lookup per list in force.) Runs before any flow or
    /// aggregate map is touched, and reads a clock only when the packet has a block or a
    /// rate limit.
    #[inline(always)]
    fn enforce(m: &PacketMeta, len: u64) -> bool {
        if mitigate::is_neighbor_discovery(m) {
            return false;
        }
        // Each lookup only runs while the lists it reads are not empty.
        let blocks = NA_MCTL.get(Control::Blocks as u32).copied().unwrap_or(1);
        let block = if blocks == 0 { None } else { block_of(m) };
        // SAFETY: a map value (writable by programs); lost increments are documented.
        if let Some(b) = block.map(|b| unsafe { &mut *b })
            && b.active(coarse_now())
        {
            if allowlisted(m) {
                return false;
            }
            b.packets += 1;
            b.bytes += len;
            bump(Event::DroppedBlocked);
            return true;
        }
        let limits = NA_MCTL.get(Control::RateLimits as u32).copied().unwrap_or(0);
        if limits != 0
            && let Some(r) = NA_RATELIM.get_ptr_mut(mitigate::pattern_of(m))
        {
            // SAFETY: map value pointer; racing CPUs may admit a packet too many.
            let r = unsafe { &mut *r };
            let now = coarse_now();
            if r.active(now) && !allowlisted(m) && !r.admit(now) {
                bump(Event::DroppedRateLimited);
                return true;
            }
        }
        false
    }

    /// No flow event: for crediting volume only.
    const NO_EVENT: FlowEvent = FlowEvent {
        started: false,
        syn: false,
        syn_answered: false,
        forward: false,
    };

    /// Credits `packets`/`bytes` to the aggregates: the sender's, and for the forward
    /// direction the destination service's. `own`: sent by `m`'s sender (otherwise by its
    /// receiver, the flow's other direction).
    #[inline(always)]
    fn credit(m: &PacketMeta, own: bool, forward: bool, packets: u64, bytes: u64, now: u64, ev: &FlowEvent) {
        let sender = if own {
            HostKey::src_of(m)
        } else {
            HostKey::dst_of(m)
        };
        match entry(&NA_SRC, &sender, &ZERO_SRC) {
            // SAFETY: map value pointer.
            Some(s) => agg::src_account(unsafe { &mut *s }, m, packets, bytes, forward, now, ev),
            None => bump(Event::AggInsertFailed),
        }
        if forward {
            let service = if own { DstKey::to(m) } else { DstKey::from(m) };
            match entry(&NA_DST, &service, &ZERO_DST) {
                // SAFETY: map value pointer.
                Some(d) => agg::dst_account(unsafe { &mut *d }, m, packets, bytes, now, ev),
                None => bump(Event::AggInsertFailed),
            }
        }
    }

    /// Credits a flow direction's pending volume (see [`agg::CREDIT_PACKETS`]).
    #[inline(always)]
    fn credit_pending(
        m: &PacketMeta,
        d: &mut flow::DirStats,
        own: bool,
        forward: bool,
        now: u64,
        ev: &FlowEvent,
    ) {
        if d.agg_pkts != 0 || ev.started {
            let (packets, bytes) = agg::take(d, now);
            credit(m, own, forward, packets, bytes, now, ev);
        }
    }

    /// Where a packet's flow lives.
    enum Slot {
        /// The flow existed (possibly created just now by another CPU).
        Existing(*mut FlowValue),
        /// This packet created it.
        Created(*mut FlowValue),
        /// The table refused the insert.
        Failed,
    }

    /// Creates the flow `key` started by packet `m`. The value is built in per-CPU scratch
    /// and inserted whole, so no reader ever sees a half-made flow (the agent's sweep would
    /// take an all-zero one for idle, and another CPU would account into it).
    #[inline(always)]
    fn create_flow(key: &FlowKey, m: &PacketMeta, now: u64, lo: bool) -> Slot {
        let Some(scratch) = NA_SCRATCH.get_ptr_mut(0) else {
            return Slot::Failed;
        };
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        let s = unsafe { &mut *scratch };
        // Only this function writes the scratch, and only through `start_scratch`.
        flow::start_scratch(s, m, now, lo);
        let inserted = NA_FLOWS.insert(key, s, u64::from(BPF_NOEXIST)).is_ok();
        match NA_FLOWS.get_ptr_mut(key) {
            Some(v) if inserted => Slot::Created(v),
            // Another CPU created the same flow first: the packet belongs to it.
            Some(v) => Slot::Existing(v),
            None => Slot::Failed,
        }
    }

    /// Accounts one IP packet: its flow, and (in chunks, see [`agg::CREDIT_PACKETS`]) its
    /// sender and its destination service.
    #[inline(always)]
    fn account(m: &PacketMeta, now: u64) {
        // SAFETY: a plain read of our own .rodata global (volatile: the loader patches it).
        let t: FlowTimeouts = unsafe { core::ptr::read_volatile(&NA_TIMEOUTS) };
        let (key, lo) = FlowKey::of(m);
        let mut ev = FlowEvent {
            started: false,
            syn: false,
            syn_answered: false,
            forward: true,
        };
        let mut ended = None;
        let slot = match NA_FLOWS.get_ptr_mut(key) {
            Some(v) => Slot::Existing(v),
            None => create_flow(&key, m, now, lo),
        };
        let v = match slot {
            Slot::Existing(v) => {
                // SAFETY: map value pointer; concurrent updates of one flow from two CPUs may
                // lose an increment (documented), never corrupt memory.
                let v = unsafe { &mut *v };
                let pending = v.state & ST_SYN_PENDING != 0;
                match flow::account(v, m, now, lo, &t) {
                    Verdict::Continue => {}
                    Verdict::Ended(r) => ended = Some(r),
                    Verdict::Restart => {
                        // The old flow ends before this packet: credit and export it whole.
                        let own_fwd = (v.fwd_is_lo != 0) == lo;
                        credit_pending(m, &mut v.fwd, own_fwd, true, now, &NO_EVENT);
                        credit_pending(m, &mut v.bwd, !own_fwd, false, now, &NO_EVENT);
                        export(&key, v, EndReason::ActiveTimeout);
                        flow::start(v, m, now, lo);
                        ev.started = true;
                    }
                    Verdict::Reopened => ev.started = true,
                }
                ev.forward = (v.fwd_is_lo != 0) == lo;
                ev.syn = ev.started && v.state & ST_SYN_PENDING != 0;
                ev.syn_answered = pending && !ev.started && v.state & ST_SYN_PENDING == 0;
                v
            }
            Slot::Created(v) => {
                // SAFETY: map value pointer, as above.
                let v = unsafe { &mut *v };
                bump(Event::FlowCreated);
                ev.started = true;
                ev.syn = v.state & ST_SYN_PENDING != 0;
                v
            }
            Slot::Failed => {
                // No flow to hold the pending volume: credit the packet at once.
                bump(Event::FlowInsertFailed);
                credit(m, true, true, 1, u64::from(m.frame_len), now, &ev);
                return;
            }
        };
        // A closed flow's stragglers, and the last packets of one that just ended, are
        // credited at once: nothing stays pending in a flow that will not be exported again.
        let closed = v.state & ST_CLOSED != 0;
        let (own, other) = if ev.forward {
            (&mut v.fwd, &mut v.bwd)
        } else {
            (&mut v.bwd, &mut v.fwd)
        };
        if agg::pend(own, m.frame_len, now) || ev.started || closed {
            credit_pending(m, own, true, ev.forward, now, &ev);
        }
        if closed {
            credit_pending(m, other, false, !ev.forward, now, &NO_EVENT);
        }
        if let Some(r) = ended {
            export(&key, v, r);
        }
        if ev.syn_answered {
            // The responder answered a bare SYN: credit the service and the initiator.
            if let Some(d) = NA_DST.get_ptr_mut(DstKey::from(m)) {
                // SAFETY: map value pointer.
                unsafe { (*d).syn_answered += 1 };
            }
            if let Some(s) = NA_SRC.get_ptr_mut(HostKey::dst_of(m)) {
                // SAFETY: map value pointer.
                unsafe { (*s).syn_answered += 1 };
            }
        }
    }

    /// Everything done for one frame; `len` is its full length (an skb may be non-linear).
    /// Returns the parser event, if any, and whether to drop the frame (only when `enforcing`).
    #[inline(always)]
    fn process(frame: &Frame, len: u64, enforcing: bool) -> (Option<Event>, bool) {
        let p = parse::parse(frame);
        count_proto(p.class.proto, len);
        if p.class.vlan {
            bump(Event::VlanTagged);
        }
        if let Some(e) = p.class.event {
            bump(e);
        }
        if let Some(mut m) = p.meta {
            m.frame_len = len as u16;
            if m.fragment != FRAG_NONE {
                bump(Event::Fragment);
            }
            // Dropped packets cost no clock read and touch no flow or aggregate map.
            if enforcing && enforce(&m, len) {
                return (p.class.event, true);
            }
            // SAFETY: helper without preconditions.
            let now = unsafe { bpf_ktime_get_ns() };
            account(&m, now);
        }
        (p.class.event, false)
    }

    #[xdp]
    pub fn netanom_xdp(ctx: XdpContext) -> u32 {
        xdp_main(&ctx)
    }

    #[inline(always)]
    fn xdp_main(ctx: &XdpContext) -> u32 {
        let frame = Frame {
            start: ctx.data(),
            end: ctx.data_end(),
        };
        let len = frame.len() as u64;
        let (event, drop) = process(&frame, len, true);
        if let Some(e) = event {
            debug!(ctx, "netanom: malformed frame ({}), {} bytes", e as u32, len);
        }
        if drop {
            xdp_action::XDP_DROP
        } else {
            xdp_action::XDP_PASS
        }
    }

    /// Egress: XDP sees only what arrives, so the host's own outgoing packets are accounted
    /// here, in the same maps.
    #[classifier]
    pub fn netanom_egress(ctx: TcContext) -> i32 {
        let len = ctx.len();
        // Headers may sit in the non-linear part of the skb; pull what the parser can reach.
        let _ = ctx.pull_data(len.min(parse::MAX_HDR_OFFSET as u32 + 64));
        let frame = Frame {
            start: ctx.data(),
            end: ctx.data_end(),
        };
        // Egress is accounted, never filtered: the host's own traffic is not what we block.
        process(&frame, u64::from(len), false);
        TC_ACT_OK
    }

    /// Benchmark baseline: the cheapest possible XDP program.
    #[xdp]
    pub fn netanom_bare(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    /// Benchmark baseline: parse and count per protocol, no flow accounting.
    #[xdp]
    pub fn netanom_parse(ctx: XdpContext) -> u32 {
        let frame = Frame {
            start: ctx.data(),
            end: ctx.data_end(),
        };
        let c = parse::classify(&frame);
        count_proto(c.proto, frame.len() as u64);
        xdp_action::XDP_PASS
    }

    /// Benchmark program: the XDP program over a frame whose source address it first adds 1
    /// to. The kernel's test loop reruns it on the same (rewritten) buffer, so every run
    /// creates a flow and a source entry, timed in the same loop as the hot flow (a single
    /// run per frame is dominated by the harness: see the benchmark's notes).
    #[xdp]
    pub fn netanom_newflow(ctx: XdpContext) -> u32 {
        let (start, end) = (ctx.data(), ctx.data_end());
        if start + 54 <= end {
            // SAFETY: bytes 12..14 and 26..30 or 34..38 lie inside [data, data_end): the frame
            // is at least 54 bytes long, checked just above.
            unsafe {
                let ethertype = core::ptr::read_unaligned((start + 12) as *const [u8; 2]);
                // The last word of the source address: IPv4's whole address, IPv6's low word.
                let off = if ethertype == [0x08, 0x00] { 26 } else { 34 };
                let p = (start + off) as *mut [u8; 4];
                let a = u32::from_be_bytes(core::ptr::read_unaligned(p)).wrapping_add(1);
                core::ptr::write_unaligned(p, a.to_be_bytes());
            }
        }
        xdp_main(&ctx)
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

// On the host the crate builds as an empty binary so `cargo clippy --workspace` works.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
