//! Helpers for the tests that read captures: frames built by hand, pcap and pcapng files
//! written from them, and the shared data directory.
use std::borrow::Cow;

use netanom_common::flow::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN};
use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        PcapNgBlock as _, PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::Duration,
};

use netanom_common::flow::FlowRecord;
use pcap_file::{DataLink, Endianness};

use super::{ExtractOptions, ExtractSummary, extract_file};
use crate::features::{feature_index, flow_features};

/// A directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("netanom-offline-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub(crate) fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn eth_ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8], payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    let total = (20 + l4.len() + payload) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[22] = 64;
    f[23] = proto;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f.extend_from_slice(l4);
    f.resize(f.len() + payload, 0xab);
    f
}

pub(crate) fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&(if sport == 80 { 29200u16 } else { 64240 }).to_be_bytes());
    eth_ipv4(6, src, dst, &h, payload)
}

pub(crate) fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: usize) -> Vec<u8> {
    let mut h = [0u8; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    eth_ipv4(17, src, dst, &h, payload)
}

pub(crate) const CLI: [u8; 4] = [192, 168, 1, 20];
pub(crate) const SRV: [u8; 4] = [192, 168, 1, 10];
pub(crate) const T0: u64 = 1_700_000_000;

/// Handshake, request, response, FIN both ways, last ACK: (µs after T0, frame).
pub(crate) fn tcp_exchange() -> Vec<(u64, Vec<u8>)> {
    vec![
        (0, tcp(CLI, 40000, SRV, 80, TCP_SYN, 0)),
        (1_000, tcp(SRV, 80, CLI, 40000, TCP_SYN | TCP_ACK, 0)),
        (2_000, tcp(CLI, 40000, SRV, 80, TCP_ACK, 0)),
        (3_000, tcp(CLI, 40000, SRV, 80, TCP_ACK | TCP_PSH, 100)),
        (5_000, tcp(SRV, 80, CLI, 40000, TCP_ACK | TCP_PSH, 300)),
        (9_000, tcp(CLI, 40000, SRV, 80, TCP_ACK | TCP_FIN, 0)),
        (10_000, tcp(SRV, 80, CLI, 40000, TCP_ACK | TCP_FIN, 0)),
        (11_000, tcp(CLI, 40000, SRV, 80, TCP_ACK, 0)),
    ]
}

pub(crate) fn write_pcap(path: &Path, datalink: DataLink, frames: &[(u64, Vec<u8>)]) {
    let header = PcapHeader {
        datalink,
        endianness: Endianness::Little,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
    for (us, f) in frames {
        let ts = Duration::from_micros(T0 * 1_000_000 + us);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f)).unwrap();
    }
}

pub(crate) fn run(path: &Path, opts: &ExtractOptions) -> (ExtractSummary, Vec<FlowRecord>) {
    let mut recs = Vec::new();
    let s = extract_file(path, opts, &mut recs).unwrap_or_else(|e| panic!("{e}"));
    (s, recs)
}

pub(crate) fn feat(rec: &FlowRecord, name: &str) -> f64 {
    flow_features(&rec.key, &rec.value)[feature_index(name).unwrap()]
}

pub(crate) fn packets(recs: &[FlowRecord]) -> u64 {
    recs.iter()
        .map(|r| r.value.fwd.packets + r.value.bwd.packets)
        .sum()
}

pub(crate) fn write_pcapng(path: &Path, tsresol: Option<u8>, linktype: DataLink, frames: &[(u64, Vec<u8>)]) {
    let mut w = PcapNgWriter::with_endianness(File::create(path).unwrap(), Endianness::Little).unwrap();
    let options = tsresol
        .map(InterfaceDescriptionOption::IfTsResol)
        .into_iter()
        .collect();
    let idb = InterfaceDescriptionBlock {
        linktype,
        snaplen: 65535,
        options,
    };
    w.write_block(&idb.into_block()).unwrap();
    for (us, f) in frames {
        let us = T0 * 1_000_000 + us;
        // pcap-file writes the Duration's nanoseconds as the raw tick count.
        let ticks = if tsresol == Some(9) { us * 1000 } else { us };
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(ticks),
            original_len: f.len() as u32,
            data: Cow::Borrowed(f),
            options: vec![],
        };
        w.write_block(&epb.into_block()).unwrap();
    }
}

/// `$NETANOM_SHARED`, or `shared/` next to the workspace.
pub(crate) fn shared_dir() -> PathBuf {
    std::env::var_os("NETANOM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}
