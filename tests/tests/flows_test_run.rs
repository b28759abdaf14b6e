//! Flow accounting checked exactly with BPF_PROG_TEST_RUN: per-flow counters in both
//! directions, export through the ring buffer, IPv6, fragments, LRU eviction.
use netanom::{
    datapath::{Datapath, LoadOptions},
    features::aggregates,
    pipeline::clock::mono_now_ns,
    sources::live::{self as drain, ExportReader},
};
use netanom_common::{
    Event,
    agg::{DstKey, DstStats, HostKey, SrcStats},
    flow::{EndReason, FlowRecord, FlowTimeouts},
};
use netanom_lab::{
    frames,
    frames::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN},
    require_root, test_endpoints,
};

fn client() -> netanom_lab::Endpoint {
    test_endpoints().1
}

fn server() -> netanom_lab::Endpoint {
    test_endpoints().0
}

fn event(dp: &Datapath, e: Event) -> u64 {
    dp.event_counters()
        .unwrap()
        .into_iter()
        .find(|(q, _)| *q == e)
        .unwrap()
        .1
}

/// All flows still in the table, without removing them.
fn live_flows(dp: &Datapath) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    drain::sweep_flows_into(dp, mono_now_ns(), &FlowTimeouts::DEFAULT, true, &mut out).unwrap();
    out
}

/// A TCP conversation: handshake, `req` bytes up, `resp` bytes down, FIN both ways, last ACK.
fn conversation(v6: bool, req: usize, resp: usize) -> Vec<(Vec<u8>, bool)> {
    let (c, s) = (client(), server());
    let up = |flags, payload: &[u8]| (frames::tcp(&c, &s, v6, 40000, 80, flags, 1, 1, payload), true);
    let down = |flags, payload: &[u8]| (frames::tcp(&s, &c, v6, 80, 40000, flags, 1, 1, payload), false);
    vec![
        up(TCP_SYN, &[]),
        down(TCP_SYN | TCP_ACK, &[]),
        up(TCP_ACK, &[]),
        up(TCP_ACK | TCP_PSH, &vec![b'q'; req]),
        down(TCP_ACK | TCP_PSH, &vec![b'r'; resp]),
        up(TCP_ACK | TCP_FIN, &[]),
        down(TCP_ACK | TCP_FIN, &[]),
        up(TCP_ACK, &[]),
    ]
}

fn check_conversation(v6: bool) {
    let mut dp = Datapath::load().unwrap();
    let mut reader = ExportReader::new(&mut dp).unwrap();
    let pkts = conversation(v6, 120, 900);
    for (f, _) in &pkts {
        dp.test_run(f, 1).unwrap();
    }
    let mut recs = Vec::new();
    reader.read(&mut recs);
    assert_eq!(
        recs.len(),
        1,
        "one record, exported when the second FIN closed the flow"
    );
    let r = recs[0];
    assert_eq!(EndReason::from_u32(r.reason), Some(EndReason::Fin));
    let v = r.value;
    // The record is taken at the second FIN: the final ACK is not in it yet.
    let (fwd, bwd): (Vec<_>, Vec<_>) = pkts[..7].iter().partition(|(_, up)| *up);
    assert_eq!(
        (v.fwd.packets, v.bwd.packets),
        (fwd.len() as u64, bwd.len() as u64)
    );
    assert_eq!((v.fwd.payload_bytes, v.bwd.payload_bytes), (120, 900));
    let frame_bytes = |d: &[&(Vec<u8>, bool)]| d.iter().map(|(f, _)| f.len() as u64).sum::<u64>();
    assert_eq!(v.fwd.frame_bytes, frame_bytes(&fwd));
    assert_eq!(v.bwd.frame_bytes, frame_bytes(&bwd));
    assert_eq!((v.fwd.header_bytes, v.bwd.header_bytes), (4 * 20, 3 * 20));
    // FIN SYN RST PSH ACK URG ECE CWR
    assert_eq!(v.fwd.flags, [1, 1, 0, 1, 3, 0, 0, 0]);
    assert_eq!(v.bwd.flags, [1, 1, 0, 1, 3, 0, 0, 0]);
    assert_eq!((v.fwd.data_packets, v.bwd.data_packets), (1, 1));
    assert_eq!((v.fwd.payload_max, v.bwd.payload_max), (120, 900));
    assert_eq!(r.key.family, if v6 { 6 } else { 4 });
    // The last ACK joined the closed flow, which stays in the table until it lingers out.
    let live = live_flows(&dp);
    assert!(live.is_empty(), "a closed flow is not exported again: {live:?}");
    assert_eq!(drain::flow_entries(&dp).unwrap(), 1);
    assert_eq!(event(&dp, Event::FlowCreated), 1);
    assert_eq!(event(&dp, Event::FlowExported), 1);
}

#[test]
fn tcp_conversation_ipv4_exact_counters_both_directions() {
    if !require_root() {
        eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    check_conversation(false);
}

#[test]
fn tcp_conversation_ipv6_exact_counters_both_directions() {
    if !require_root() {
        eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    check_conversation(true);
}

#[test]
fn vlan_tagged_flow_is_the_same_flow() {
    if !require_root() {
        eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    let mut dp = Datapath::load().unwrap();
    let (c, s) = (client(), server());
    let plain = frames::udp(&c, &s, false, 5000, 53, &[1; 30]);
    dp.test_run(&plain, 1).unwrap();
    dp.test_run(&frames::vlan_tag(&plain, 0x8100, 7), 1).unwrap();
    dp.test_run(
        &frames::vlan_tag(&frames::vlan_tag(&plain, 0x8100, 7), 0x88a8, 9),
        1,
    )
    .unwrap();
    let live = live_flows(&dp);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].value.fwd.packets, 3);
    assert_eq!(live[0].value.fwd.payload_bytes, 90);
    assert_eq!(event(&dp, Event::VlanTagged), 2);
}

#[test]
fn ipv4_fragments_are_counted_and_keyed() {
    if !require_root() {
        eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    let mut dp = Datapath::load().unwrap();
    let (c, s) = (client(), server());
    // A UDP datagram of 8 + 1000 bytes split in two: 8 + 592 in the first fragment (MF set),
    // 408 in the second (offset 600).
    let whole = frames::udp(&c, &s, false, 5353, 53, &[7; 1000]);
    let ip = 14;
    let mut first = whole[..ip + 20 + 600].to_vec();
    first[ip + 2..ip + 4].copy_from_slice(&(20u16 + 600).to_be_bytes());
    first[ip + 6..ip + 8].copy_from_slice(&0x2000u16.to_be_bytes());
    let mut second = whole[..ip + 20].to_vec();
    second.extend_from_slice(&whole[ip + 20 + 600..]);
    second[ip + 2..ip + 4].copy_from_slice(&(20u16 + 408).to_be_bytes());
    second[ip + 6..ip + 8].copy_from_slice(&(600u16 / 8).to_be_bytes());
    dp.test_run(&first, 1).unwrap();
    dp.test_run(&second, 1).unwrap();
    assert_eq!(event(&dp, Event::Fragment), 2);
    let mut live = live_flows(&dp);
    live.sort_by_key(|r| r.key.port_lo);
    assert_eq!(live.len(), 2, "the later fragment has no ports: its own flow");
    let (later, head) = (&live[0], &live[1]);
    assert_eq!((later.key.port_lo, later.key.port_hi), (0, 0));
    assert_eq!(later.value.fwd.payload_bytes, 408);
    assert_eq!((head.key.port_lo, head.key.port_hi), (53, 5353));
    assert_eq!(head.value.fwd.payload_bytes, 592);
}

#[test]
fn full_lru_table_evicts_and_counts_without_failing() {
    if !require_root() {
        eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    let opts = LoadOptions {
        flow_entries: 64,
        ..LoadOptions::default()
    };
    let mut dp = Datapath::load_with(&opts).unwrap();
    let (c, s) = (client(), server());
    let n = 1000u16;
    for port in 0..n {
        let f = frames::udp(&c, &s, false, 10_000 + port, 53, &[0; 10]);
        let (action, _) = dp.test_run(&f, 1).unwrap();
        assert_eq!(action, 2, "XDP_PASS");
    }
    let entries = drain::flow_entries(&dp).unwrap() as u64;
    let created = event(&dp, Event::FlowCreated);
    assert_eq!(created, u64::from(n), "every new flow was created");
    assert!(entries <= 64, "the table stays within its size: {entries}");
    assert_eq!(event(&dp, Event::FlowInsertFailed), 0);
    // Evicted = created - exported - still in the table: what the agent reports.
    let evicted = created - event(&dp, Event::FlowExported) - entries;
    assert!(evicted >= u64::from(n) - 64, "evictions are accounted: {evicted}");
}

/// Aggregate volume is credited in chunks (`agg::CREDIT_PACKETS`); what is pending when the
/// sweep finds a flow idle is credited by the agent. Together: exact per-source and
/// per-service totals, for a long flow in both directions and a conversation that ends.
#[test]
fn aggregate_volume_is_exact_kernel_chunks_plus_agent_credit() {
    if !require_root() {
        eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    let mut dp = Datapath::load().unwrap();
    let (c, s) = (client(), server());
    let up = frames::udp(&c, &s, false, 5000, 53, &[1; 30]);
    let down = frames::udp(&s, &c, false, 53, 5000, &[2; 300]);
    let (n_up, n_down) = (200u64, 70u64);
    dp.test_run(&up, n_up as u32).unwrap();
    dp.test_run(&down, n_down as u32).unwrap();
    // A TCP conversation that ends (FIN both ways): credited in the kernel at its end.
    let conv = conversation(false, 120, 900);
    for (f, _) in &conv {
        dp.test_run(f, 1).unwrap();
    }
    let conv_bytes = |dir: bool| {
        conv.iter()
            .filter(|(_, u)| *u == dir)
            .map(|(f, _)| f.len() as u64)
            .sum::<u64>()
    };
    let conv_count = |dir: bool| conv.iter().filter(|(_, u)| *u == dir).count() as u64;

    let (mut src, mut dst) = (Vec::new(), Vec::new());
    drain::drain_aggregates(&dp, &mut src, &mut dst).unwrap();
    let src_of = |v: &[(HostKey, SrcStats)], ip: std::net::IpAddr| {
        v.iter()
            .find(|(k, _)| aggregates::src_addr(k) == ip)
            .map_or((0, 0), |(_, s)| (s.packets, s.bytes))
    };
    let dst_of = |v: &[(DstKey, DstStats)], ip: std::net::IpAddr, port: u16| {
        v.iter()
            .find(|(k, _)| aggregates::dst_addr(k) == ip && k.port == port)
            .map_or((0, 0), |(_, d)| (d.packets, d.bytes))
    };
    let kernel_client = src_of(&src, c.ipv4.into()).0;
    let want_client = n_up + conv_count(true);
    assert!(kernel_client <= want_client);

    // The sweep finds the UDP flow idle (the conversation is closed: nothing pending there).
    let later = mono_now_ns() + FlowTimeouts::DEFAULT.idle_ns + 1;
    let mut recs = Vec::new();
    drain::sweep_flows_into(&dp, later, &FlowTimeouts::DEFAULT, false, &mut recs).unwrap();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let mut pending = drain::Uncredited::default();
    recs.iter().for_each(|r| pending.add(r));
    assert!(!pending.is_empty());
    pending.credit(&mut src, &mut dst);
    assert!(pending.is_empty());
    eprintln!(
        "client packets credited by the kernel: {kernel_client} of {want_client}, the rest by the agent"
    );

    assert_eq!(
        src_of(&src, c.ipv4.into()),
        (want_client, n_up * up.len() as u64 + conv_bytes(true))
    );
    assert_eq!(
        src_of(&src, s.ipv4.into()),
        (
            n_down + conv_count(false),
            n_down * down.len() as u64 + conv_bytes(false)
        )
    );
    // Of a source's packets, those in flows it started (all of the client's; none of the
    // server's, which only answered) are counted apart, kernel chunks and agent credit alike.
    let fwd_of = |v: &[(HostKey, SrcStats)], ip: std::net::IpAddr| {
        v.iter()
            .find(|(k, _)| aggregates::src_addr(k) == ip)
            .map_or(0, |(_, s)| s.fwd_packets)
    };
    assert_eq!(fwd_of(&src, c.ipv4.into()), want_client);
    assert_eq!(fwd_of(&src, s.ipv4.into()), 0);
    // Services see forward-direction volume only.
    assert_eq!(dst_of(&dst, s.ipv4.into(), 53), (n_up, n_up * up.len() as u64));
    assert_eq!(
        dst_of(&dst, s.ipv4.into(), 80),
        (conv_count(true), conv_bytes(true))
    );
}
