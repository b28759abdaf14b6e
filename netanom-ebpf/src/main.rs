//! netanom's XDP program: classify every frame and account it in per-CPU counters.
//!
//! Kept small and verifier-friendly: the parsing logic lives in `netanom_common::parse`
//! (shared with the agent and unit-tested on the host); this crate only supplies
//! bounds-checked packet access and the maps. Every frame is passed: nothing here drops.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::xdp_action,
        macros::{map, xdp},
        maps::PerCpuArray,
        programs::XdpContext,
    };
    use aya_log_ebpf::debug;
    use netanom_common::{
        Event, Proto, ProtoCounter,
        parse::{self, Packet},
    };

    #[map(name = "NA_PROTO")]
    static NA_PROTO: PerCpuArray<ProtoCounter> = PerCpuArray::with_max_entries(Proto::COUNT, 0);

    #[map(name = "NA_EVENTS")]
    static NA_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Event::COUNT, 0);

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
    }

    #[inline(always)]
    fn bump_event(event: Event) {
        if let Some(v) = NA_EVENTS.get_ptr_mut(event as u32) {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU.
            unsafe { *v += 1 };
        }
    }

    #[xdp]
    pub fn netanom_xdp(ctx: XdpContext) -> u32 {
        let frame = Frame {
            start: ctx.data(),
            end: ctx.data_end(),
        };
        let c = parse::classify(&frame);
        if let Some(slot) = NA_PROTO.get_ptr_mut(c.proto as u32) {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU.
            unsafe {
                (*slot).packets += 1;
                (*slot).bytes += frame.len() as u64;
            }
        }
        if c.vlan {
            bump_event(Event::VlanTagged);
        }
        if let Some(e) = c.event {
            bump_event(e);
            debug!(
                &ctx,
                "netanom: malformed frame ({}), {} bytes",
                e as u32,
                frame.len()
            );
        }
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
