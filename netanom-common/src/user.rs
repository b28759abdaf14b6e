//! The user-side half of the shared types, compiled with the `user` feature only: the
//! `aya::Pod` impls that let the agent read and write the kernel's maps, and serde impls for
//! the agent's JSON output. Nothing here is built for the BPF target.
use serde::{Serialize, Serializer, ser::SerializeStruct as _};

use crate::{Event, Proto, ProtoCounter, agg, flow, flow::EndReason, mitigate};

// SAFETY (every impl below): `#[repr(C)]` structs of integers and integer arrays whose padding
// is spelled out as `_pad` fields, so every byte is initialised; each size is asserted where
// the type is defined.
unsafe impl aya::Pod for ProtoCounter {}
unsafe impl aya::Pod for flow::FlowKey {}
unsafe impl aya::Pod for flow::FlowValue {}
unsafe impl aya::Pod for flow::FlowRecord {}
unsafe impl aya::Pod for flow::FlowTimeouts {}
unsafe impl aya::Pod for agg::HostKey {}
unsafe impl aya::Pod for agg::DstKey {}
unsafe impl aya::Pod for agg::SrcStats {}
unsafe impl aya::Pod for agg::DstStats {}
unsafe impl aya::Pod for mitigate::BlockEntry {}
unsafe impl aya::Pod for mitigate::AllowEntry {}
unsafe impl aya::Pod for mitigate::PatternKey {}
unsafe impl aya::Pod for mitigate::RateLimit {}

/// `"ipv4/tcp"`, `"l2/arp"`: the labels the agent shows.
impl Serialize for Proto {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}/{}", self.family(), self.transport()))
    }
}

impl Serialize for ProtoCounter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ProtoCounter", 2)?;
        st.serialize_field("packets", &self.packets)?;
        st.serialize_field("bytes", &self.bytes)?;
        st.end()
    }
}

/// [`Event::name`], e.g. `"dropped_blocked"`.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// [`EndReason::name`], e.g. `"idle_timeout"`.
impl Serialize for EndReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn names_are_what_the_agent_shows() {
        assert_eq!(serde_json::to_string(&Proto::Ipv6Icmp).unwrap(), "\"ipv6/icmp\"");
        assert_eq!(
            serde_json::to_string(&Event::DroppedBlocked).unwrap(),
            "\"dropped_blocked\""
        );
        assert_eq!(
            serde_json::to_string(&EndReason::IdleTimeout).unwrap(),
            "\"idle_timeout\""
        );
        let c = ProtoCounter {
            packets: 2,
            bytes: 120,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            "{\"packets\":2,\"bytes\":120}"
        );
    }
}
