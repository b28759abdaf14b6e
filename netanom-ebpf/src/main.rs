//! netanom's kernel programs: per-packet accounting at XDP (ingress) and TC (egress).
//!
//! Kept small and verifier-friendly: parsing and every accounting rule live in
//! `netanom_common` (shared with the agent's offline extractor and unit-tested on the host);
//! this crate supplies bounds-checked packet access, the maps, and the glue. Every packet is
//! passed: nothing here drops.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::{BPF_NOEXIST, TC_ACT_OK, xdp_action},
        helpers::bpf_ktime_get_ns,
        macros::{classifier, map, xdp},
        maps::{LruHashMap, PerCpuArray, RingBuf},
        programs::{TcContext, XdpContext},
    };
    use aya_log_ebpf::debug;
    use netanom_common::{
        Event, Proto, ProtoCounter,
        agg::{self, DstKey, DstStats, FlowEvent, HostKey, SrcStats},
        flow::{self, EndReason, FlowKey, FlowRecord, FlowTimeouts, FlowValue, ST_SYN_PENDING, Verdict},
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

    #[map(name = "NA_FLOW_RB")]
    static NA_FLOW_RB: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

    /// Flow timeouts; the agent overrides this before load (it lives in .rodata, so the
    /// verifier sees constants).
    #[unsafe(no_mangle)]
    static NA_TIMEOUTS: FlowTimeouts = FlowTimeouts::DEFAULT;

    static ZERO_FLOW: FlowValue = FlowValue {
        fwd: ZERO_DIR,
        bwd: ZERO_DIR,
        first_ns: 0,
        last_ns: 0,
        iat_sum_us: 0,
        iat_sumsq_us: 0,
        iat_min_us: 0,
        iat_max_us: 0,
        fwd_is_lo: 0,
        state: 0,
        icmp_type: 0,
        icmp_code: 0,
        _pad: [0; 4],
    };
    const ZERO_DIR: flow::DirStats = flow::DirStats {
        packets: 0,
        payload_bytes: 0,
        payload_sumsq: 0,
        header_bytes: 0,
        frame_bytes: 0,
        iat_sum_us: 0,
        iat_sumsq_us: 0,
        iat_min_us: 0,
        iat_max_us: 0,
        first_ns: 0,
        last_ns: 0,
        flags: [0; 8],
        data_packets: 0,
        payload_min: 0,
        payload_max: 0,
        header_min: 0,
        init_window: 0,
        _pad: [0; 4],
    };
    static ZERO_SRC: SrcStats = SrcStats {
        packets: 0,
        bytes: 0,
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

    /// Accounts one IP packet: its flow, its sender, its destination service.
    #[inline(always)]
    fn account(m: &PacketMeta) {
        // SAFETY: helper without preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        // SAFETY: a plain read of our own .rodata global (volatile: the loader patches it).
        let t: FlowTimeouts = unsafe { core::ptr::read_volatile(&NA_TIMEOUTS) };
        let (key, lo) = FlowKey::of(m);
        let mut ev = FlowEvent {
            started: false,
            syn: false,
            syn_answered: false,
            forward: true,
        };
        match NA_FLOWS.get_ptr_mut(key) {
            Some(v) => {
                // SAFETY: map value pointer; concurrent updates of one flow from two CPUs may
                // lose an increment (documented), never corrupt memory.
                let v = unsafe { &mut *v };
                let pending = v.state & ST_SYN_PENDING != 0;
                match flow::account(v, m, now, lo, &t) {
                    Verdict::Continue => {}
                    Verdict::Ended(r) => export(&key, v, r),
                    Verdict::Restart => {
                        export(&key, v, EndReason::ActiveTimeout);
                        flow::start(v, m, now, lo);
                        ev.started = true;
                    }
                    Verdict::Reopened => ev.started = true,
                }
                ev.forward = (v.fwd_is_lo != 0) == lo;
                ev.syn = ev.started && v.state & ST_SYN_PENDING != 0;
                ev.syn_answered = pending && !ev.started && v.state & ST_SYN_PENDING == 0;
            }
            None => match entry(&NA_FLOWS, &key, &ZERO_FLOW) {
                Some(v) => {
                    // SAFETY: map value pointer, as above.
                    let v = unsafe { &mut *v };
                    flow::start(v, m, now, lo);
                    bump(Event::FlowCreated);
                    ev.started = true;
                    ev.syn = v.state & ST_SYN_PENDING != 0;
                }
                None => bump(Event::FlowInsertFailed),
            },
        }
        match entry(&NA_SRC, &HostKey::src_of(m), &ZERO_SRC) {
            // SAFETY: map value pointer.
            Some(s) => agg::src_account(unsafe { &mut *s }, m, now, &ev),
            None => bump(Event::AggInsertFailed),
        }
        if ev.forward {
            match entry(&NA_DST, &DstKey::to(m), &ZERO_DST) {
                // SAFETY: map value pointer.
                Some(d) => agg::dst_account(unsafe { &mut *d }, m, now, &ev),
                None => bump(Event::AggInsertFailed),
            }
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
    #[inline(always)]
    fn process(frame: &Frame, len: u64) -> Option<Event> {
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
            account(&m);
        }
        p.class.event
    }

    #[xdp]
    pub fn netanom_xdp(ctx: XdpContext) -> u32 {
        let frame = Frame {
            start: ctx.data(),
            end: ctx.data_end(),
        };
        let len = frame.len() as u64;
        if let Some(e) = process(&frame, len) {
            debug!(&ctx, "netanom: malformed frame ({}), {} bytes", e as u32, len);
        }
        xdp_action::XDP_PASS
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
        process(&frame, u64::from(len));
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
