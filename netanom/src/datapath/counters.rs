//! The program's global counters: packets and bytes per protocol class, and events (parser
//! events, flow accounting, drops), each a per-CPU array summed over CPUs.
use aya::maps::PerCpuArray;
use netanom_common::{Event, Proto, ProtoCounter, names};

use super::{
    error::{DatapathError, map_err},
    program::Datapath,
};

impl Datapath {
    /// Per-protocol packet and byte counters, summed over CPUs, in [`Proto::ALL`] order.
    pub fn proto_counters(&self) -> Result<Vec<(Proto, ProtoCounter)>, DatapathError> {
        let map = self.ebpf.map(names::MAP_PROTO_STATS).ok_or(DatapathError::Map {
            map: names::MAP_PROTO_STATS,
            detail: "not in the program object".into(),
        })?;
        let arr: PerCpuArray<_, ProtoCounter> =
            PerCpuArray::try_from(map).map_err(map_err(names::MAP_PROTO_STATS))?;
        Proto::ALL
            .iter()
            .map(|&p| {
                let v = arr.get(&(p as u32), 0).map_err(map_err(names::MAP_PROTO_STATS))?;
                Ok((p, ProtoCounter::sum(v.iter())))
            })
            .collect()
    }

    /// Parser event counters, summed over CPUs, in [`Event::ALL`] order.
    pub fn event_counters(&self) -> Result<Vec<(Event, u64)>, DatapathError> {
        let map = self.map(names::MAP_EVENTS)?;
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(names::MAP_EVENTS))?;
        Event::ALL
            .iter()
            .map(|&e| {
                let v = arr.get(&(e as u32), 0).map_err(map_err(names::MAP_EVENTS))?;
                Ok((e, v.iter().fold(0u64, |a, b| a.wrapping_add(*b))))
            })
            .collect()
    }
}
