//! Section 3: Drain cost per flow: batched syscalls beside aya's per-element iteration.
use std::time::Instant;

use anyhow::bail;
use netanom::{
    datapath::{Datapath, LoadOptions, batch::BatchMap},
    pipeline::clock::mono_now_ns,
    sources::live as drain,
};
use netanom_common::{
    flow::{FlowKey, FlowTimeouts, FlowValue},
    names,
};

use crate::report::Report;

pub(crate) fn synthetic_flows(n: usize, now: u64) -> (Vec<FlowKey>, Vec<FlowValue>) {
    let keys = (0..n as u32)
        .map(|i| FlowKey {
            addr_lo: [0xc612_0000 | (i >> 16), 0, 0, 0],
            addr_hi: [0xc613_0000 | (i & 0xffff), 0, 0, 0],
            port_lo: 1000 + (i % 50_000) as u16,
            port_hi: 53,
            proto: 17,
            family: 4,
            _pad: [0; 2],
        })
        .collect();
    let mut v = FlowValue {
        first_ns: now,
        last_ns: now,
        ..FlowValue::default()
    };
    v.fwd.packets = 1;
    (keys, vec![v; n])
}

pub(crate) fn drain_cost(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    r.section(
        "Drain cost per flow",
        "The flow table filled with N live flows (BPF_MAP_UPDATE_BATCH), then read whole. \
         *batched sweep*: the agent's idle sweep (BPF_MAP_LOOKUP_BATCH, 1,024 per call), \
         nothing idle. *batched export*: every flow idle, so the sweep also builds N flow \
         records and deletes N entries (BPF_MAP_DELETE_BATCH). Baseline in the same run: \
         aya's per-element iteration (one get-next-key and one lookup syscall per flow). \
         Target: at least 1M flow records per second.",
    );
    r.line("| live flows | per-element (aya) ns/flow | batched sweep ns/flow | batched export ns/flow | export flows/s | speed-up (sweep vs aya) |".into());
    r.line("|---:|---:|---:|---:|---:|---:|".into());
    let sizes: &[usize] = if quick {
        &[10_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        let dp = Datapath::load_with(&LoadOptions {
            flow_entries: (2 * n as u32).max(1024),
            ..LoadOptions::default()
        })?;
        let now = mono_now_ns();
        let (keys, values) = synthetic_flows(n, now);
        let data = dp.map_data(names::MAP_FLOWS)?;
        let map: BatchMap<'_, FlowKey, FlowValue> = BatchMap::new(data.fd());
        let inserted = map.update(&keys, &values)?;
        if inserted != n {
            bail!("filled {inserted} of {n} flows");
        }
        // Baseline: aya's iterator, one syscall pair per element.
        let t = Instant::now();
        let m: aya::maps::HashMap<_, FlowKey, FlowValue> =
            aya::maps::HashMap::try_from(dp.map(names::MAP_FLOWS)?)?;
        let counted = m.iter().filter(Result::is_ok).count();
        let per_elem = t.elapsed().as_nanos() as f64 / counted.max(1) as f64;
        // The agent's sweep, nothing idle.
        // The consumer's share is counted elsewhere (the queue); here a record is only looked at.
        let mut got = 0usize;
        let mut consume = |r: &netanom_common::flow::FlowRecord| got += r.value.fwd.packets as usize;
        let t = Instant::now();
        let s = drain::sweep_flows(&dp, mono_now_ns(), &FlowTimeouts::DEFAULT, false, &mut consume)?;
        let sweep = t.elapsed().as_nanos() as f64 / s.entries.max(1) as f64;
        if s.entries != n || s.exported != 0 {
            bail!("sweep saw {} entries, exported {}", s.entries, s.exported);
        }
        // Everything idle: export and delete all.
        let later = now + FlowTimeouts::DEFAULT.idle_ns + 1_000_000_000;
        let t = Instant::now();
        let s = drain::sweep_flows(&dp, later, &FlowTimeouts::DEFAULT, false, &mut consume)?;
        let secs = t.elapsed().as_secs_f64();
        if s.exported != n || got != n || drain::flow_entries(&dp)? != 0 {
            bail!("export sweep exported {} of {n}", s.exported);
        }
        r.line(format!(
            "| {n} | {per_elem:.0} | {sweep:.1} | {:.1} | {:.0} | {:.0}× |",
            secs * 1e9 / n as f64,
            n as f64 / secs,
            per_elem / sweep
        ));
    }
    Ok(())
}
