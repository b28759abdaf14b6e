//! Replay of real captures (pcap or pcapng, Ethernet link type) into the lab.
//!
//! Every frame is rewritten so that it belongs to the lab ([`rewrite_frame`]):
//!
//! - source MAC := `src.mac`, destination MAC := `dst.mac`;
//! - IPv4: the capture's most frequent destination address (the "victim") becomes
//!   `dst.ipv4`; every other address maps deterministically into 198.19.0.0/16 (both in
//!   the source and the destination field). [`AddressMap::from_capture`] gives the addresses
//!   seen in the capture distinct lab addresses as far as 16 bits allow (65,534 slots,
//!   198.19.0.0 and 198.19.255.255 are not used); addresses it did not see fall back to a
//!   pure hash;
//! - IPv6 likewise: victim → `dst.ipv6`, others → 2001:db8:ffff::/48 (hash);
//! - the IPv4 header checksum is recomputed; TCP and UDP (and ICMPv6) checksums are
//!   recomputed when the packet is complete in the capture and not a fragment, otherwise
//!   left as they are; a zero (absent) UDP checksum over IPv4 stays zero;
//! - VLAN-tagged frames keep their tags and are rewritten inside them;
//! - non-IP frames (ARP, MPLS, LLDP, ...) and unparseable ones are skipped.
//!
//! Headers embedded in ICMP error messages are not rewritten.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};

use crate::Endpoint;
use crate::frames::{self, ETHERTYPE_IPV4, IPPROTO_ICMPV6, IPPROTO_UDP};
use crate::traffic::{Pace, Pacer, RawSender};

/// Most frames [`read_frames`] loads from one file.
pub const MAX_FRAMES: usize = 5_000_000;

/// Replay settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayOptions {
    /// Rate limit and overall time limit (`max_duration`).
    pub pace: Pace,
    /// Replay at most this many frames of the capture (counting skipped ones).
    pub max_packets: Option<u64>,
    /// Honour the capture's inter-packet gaps (still capped by `pace.max_duration`; with
    /// `pace.pps` set, frames are also never sent faster than that rate).
    pub original_timing: bool,
    /// With `original_timing`, play the capture this many times faster (gaps divided by it);
    /// 0 or 1: as recorded.
    pub speedup: f64,
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Frames taken from the capture.
    pub read: u64,
    /// Frames sent.
    pub sent: u64,
    /// Frames not sent: not Ethernet/IP, unparseable, or larger than the interface's MTU.
    pub skipped: u64,
}

/// Reads every frame of a pcap or pcapng file, with its capture timestamp (time since the
/// Unix epoch, as recorded; pcapng `if_tsresol` is honoured). The format is detected from
/// the file's magic number, not its name. Only the Ethernet link type is accepted; anything
/// else is an error naming the link type. At most [`MAX_FRAMES`] frames are read.
pub fn read_frames(path: &Path) -> Result<Vec<(Duration, Vec<u8>)>> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .with_context(|| format!("{}: too short for a capture", path.display()))?;
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = BufReader::new(file);
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        read_pcapng(reader, path)
    } else {
        read_pcap(reader, path)
    }
}

fn read_pcap(reader: impl Read, path: &Path) -> Result<Vec<(Duration, Vec<u8>)>> {
    let mut pcap = PcapReader::new(reader).with_context(|| format!("{}: not a pcap file", path.display()))?;
    let datalink = pcap.header().datalink;
    if datalink != DataLink::ETHERNET {
        bail!(
            "{}: link type {datalink:?} is not supported (Ethernet only)",
            path.display()
        );
    }
    let mut frames = Vec::new();
    while let Some(packet) = pcap.next_packet() {
        let packet = packet.with_context(|| format!("{}: frame {}", path.display(), frames.len() + 1))?;
        frames.push((packet.timestamp, packet.data.into_owned()));
        if frames.len() >= MAX_FRAMES {
            break;
        }
    }
    Ok(frames)
}

fn read_pcapng(reader: impl Read, path: &Path) -> Result<Vec<(Duration, Vec<u8>)>> {
    let mut pcapng =
        PcapNgReader::new(reader).with_context(|| format!("{}: not a pcapng file", path.display()))?;
    let mut frames = Vec::new();
    let check = |link: Option<DataLink>| -> Result<()> {
        match link {
            Some(DataLink::ETHERNET) => Ok(()),
            Some(other) => bail!(
                "{}: link type {other:?} is not supported (Ethernet only)",
                path.display()
            ),
            None => bail!("{}: packet refers to an undeclared interface", path.display()),
        }
    };
    // Link type and timestamp resolution of the current section's interfaces, in
    // declaration order.
    let mut interfaces: Vec<(DataLink, u8)> = Vec::new();
    let interface_tsresol = |id: usize, interfaces: &[(DataLink, u8)]| -> Result<u8> {
        let (link, tsresol) = interfaces.get(id).copied().unzip();
        check(link)?;
        Ok(tsresol.unwrap_or(DEFAULT_TSRESOL))
    };
    while let Some(block) = pcapng.next_block() {
        let block =
            block.with_context(|| format!("{}: block after frame {}", path.display(), frames.len()))?;
        match block {
            Block::SectionHeader(_) => interfaces.clear(),
            Block::InterfaceDescription(idb) => {
                let tsresol = idb
                    .options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                        _ => None,
                    })
                    .unwrap_or(DEFAULT_TSRESOL);
                interfaces.push((idb.linktype, tsresol));
            }
            Block::EnhancedPacket(epb) => {
                let tsresol = interface_tsresol(epb.interface_id as usize, &interfaces)?;
                // pcap-file 2.0.0 stores the raw tick count as nanoseconds, whatever the
                // interface's resolution: convert the ticks here.
                let ticks = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                frames.push((ticks_to_duration(ticks, tsresol), epb.data.into_owned()));
            }
            Block::SimplePacket(spb) => {
                interface_tsresol(0, &interfaces)?;
                frames.push((Duration::ZERO, spb.data.into_owned()));
            }
            Block::Packet(pb) => {
                let tsresol = interface_tsresol(usize::from(pb.interface_id), &interfaces)?;
                frames.push((ticks_to_duration(pb.timestamp, tsresol), pb.data.into_owned()));
            }
            _ => {}
        }
        if frames.len() >= MAX_FRAMES {
            break;
        }
    }
    Ok(frames)
}

/// pcapng's default timestamp resolution (`if_tsresol` absent): microseconds.
const DEFAULT_TSRESOL: u8 = 6;

/// Converts a pcapng timestamp in units of `if_tsresol` (10^-n s, or 2^-n s when the high
/// bit is set) into a duration.
fn ticks_to_duration(ticks: u64, tsresol: u8) -> Duration {
    let scaled = u128::from(ticks) * 1_000_000_000;
    let nanos = if tsresol & 0x80 == 0 {
        10u128
            .checked_pow(u32::from(tsresol))
            .map_or(0, |div| scaled / div)
    } else {
        scaled.checked_shr(u32::from(tsresol & 0x7f)).unwrap_or(0)
    };
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// 64-bit FNV-1a, a small stable hash (the standard library's hasher is not stable
/// across releases).
fn fnv1a(data: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Host part (16 bits) of the lab address that `addr` hashes to; never 0 or 0xffff.
fn v4_slot(addr: Ipv4Addr) -> u16 {
    let h = fnv1a(&addr.octets(), 0);
    let slot = ((h >> 16) ^ h) as u16;
    slot.clamp(1, 0xfffe)
}

fn v4_from_slot(slot: u16) -> Ipv4Addr {
    let [hi, lo] = slot.to_be_bytes();
    Ipv4Addr::new(198, 19, hi, lo)
}

/// 2001:db8:ffff::/48 + 80 hashed bits.
fn v6_hashed(addr: Ipv6Addr) -> Ipv6Addr {
    let octets = addr.octets();
    let low = fnv1a(&octets, 0);
    let subnet = fnv1a(&octets, 0x5bd1_e995) as u16;
    let low = if low == 0 { 1 } else { low };
    let mut out = [0u8; 16];
    out[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff]);
    out[6..8].copy_from_slice(&subnet.to_be_bytes());
    out[8..].copy_from_slice(&low.to_be_bytes());
    Ipv6Addr::from(out)
}

/// How a capture's addresses map into the lab: the victims (most frequent destinations) and
/// the collision-free assignment of every other IPv4 address seen.
#[derive(Clone, Debug, Default)]
pub struct AddressMap {
    victim_v4: Option<Ipv4Addr>,
    victim_v6: Option<Ipv6Addr>,
    v4: HashMap<Ipv4Addr, Ipv4Addr>,
    v6: HashMap<Ipv6Addr, Ipv6Addr>,
}

impl AddressMap {
    /// Builds the map from a capture's frames. Deterministic: it depends only on the set of
    /// addresses and their destination counts, not on frame order. Victim ties go to the
    /// numerically smallest address.
    pub fn from_capture<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> AddressMap {
        let mut dst_v4: HashMap<Ipv4Addr, u64> = HashMap::new();
        let mut dst_v6: HashMap<Ipv6Addr, u64> = HashMap::new();
        let mut seen_v4 = BTreeSet::new();
        let mut seen_v6 = BTreeSet::new();
        for frame in frames {
            let Some(info) = frames::parse(frame) else {
                continue;
            };
            match (info.src, info.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    *dst_v4.entry(d).or_default() += 1;
                    seen_v4.extend([s, d]);
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    *dst_v6.entry(d).or_default() += 1;
                    seen_v6.extend([s, d]);
                }
                _ => {}
            }
        }
        // Highest count, then smallest address.
        let victim_v4 = dst_v4
            .iter()
            .max_by_key(|(a, n)| (**n, std::cmp::Reverse(**a)))
            .map(|(a, _)| *a);
        let victim_v6 = dst_v6
            .iter()
            .max_by_key(|(a, n)| (**n, std::cmp::Reverse(**a)))
            .map(|(a, _)| *a);

        // Linear probing over the 65,534 usable slots, in address order (deterministic).
        let mut used = vec![false; 1 << 16];
        used[0] = true;
        used[0xffff] = true;
        let mut free = 0xfffe_usize;
        let mut v4 = HashMap::new();
        for addr in seen_v4.into_iter().filter(|a| Some(*a) != victim_v4) {
            let mut slot = usize::from(v4_slot(addr));
            if free > 0 {
                // Bounded: at least one slot is free.
                while used[slot] {
                    slot = (slot + 1) & 0xffff;
                }
                used[slot] = true;
                free -= 1;
            }
            v4.insert(addr, v4_from_slot(slot as u16));
        }
        let mut taken = std::collections::HashSet::new();
        let mut v6 = HashMap::new();
        for addr in seen_v6.into_iter().filter(|a| Some(*a) != victim_v6) {
            let mut mapped = v6_hashed(addr);
            // 80 bits make collisions practically impossible; still keep them distinct.
            for salt in 1..16u64 {
                if taken.insert(mapped) {
                    break;
                }
                let mut o = mapped.octets();
                let low = fnv1a(&o, salt);
                o[8..].copy_from_slice(&low.to_be_bytes());
                mapped = Ipv6Addr::from(o);
            }
            v6.insert(addr, mapped);
        }
        AddressMap {
            victim_v4,
            victim_v6,
            v4,
            v6,
        }
    }

    /// The capture's most frequent IPv4 destination.
    pub fn victim_v4(&self) -> Option<Ipv4Addr> {
        self.victim_v4
    }

    /// The capture's most frequent IPv6 destination.
    pub fn victim_v6(&self) -> Option<Ipv6Addr> {
        self.victim_v6
    }

    /// The lab address for `addr`: `victim_to` for the victim, 198.19.0.0/16 otherwise.
    pub fn map_v4(&self, addr: Ipv4Addr, victim_to: Ipv4Addr) -> Ipv4Addr {
        if Some(addr) == self.victim_v4 {
            return victim_to;
        }
        self.v4
            .get(&addr)
            .copied()
            .unwrap_or_else(|| v4_from_slot(v4_slot(addr)))
    }

    /// The lab address for `addr`: `victim_to` for the victim, 2001:db8:ffff::/48 otherwise.
    pub fn map_v6(&self, addr: Ipv6Addr, victim_to: Ipv6Addr) -> Ipv6Addr {
        if Some(addr) == self.victim_v6 {
            return victim_to;
        }
        self.v6.get(&addr).copied().unwrap_or_else(|| v6_hashed(addr))
    }
}

/// Rewrites one captured frame into the lab (see the module documentation). `None` for
/// frames that are skipped: non-IP, or too short to hold their IP header.
pub fn rewrite_frame(frame: &[u8], map: &AddressMap, src: &Endpoint, dst: &Endpoint) -> Option<Vec<u8>> {
    let info = frames::parse(frame)?;
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&dst.mac);
    out[6..12].copy_from_slice(&src.mac);
    let l3 = info.l3_offset;
    let (new_src, new_dst): (IpAddr, IpAddr) = match (info.src, info.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (s, d) = (map.map_v4(s, dst.ipv4), map.map_v4(d, dst.ipv4));
            out[l3 + 12..l3 + 16].copy_from_slice(&s.octets());
            out[l3 + 16..l3 + 20].copy_from_slice(&d.octets());
            let ihl = info.l4_offset - l3;
            out[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let sum = frames::checksum(&[&out[l3..l3 + ihl]]);
            out[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
            (s.into(), d.into())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let (s, d) = (map.map_v6(s, dst.ipv6), map.map_v6(d, dst.ipv6));
            out[l3 + 8..l3 + 24].copy_from_slice(&s.octets());
            out[l3 + 24..l3 + 40].copy_from_slice(&d.octets());
            (s.into(), d.into())
        }
        _ => return None,
    };
    let recompute = info.l4_checksum_computable()
        && match info.proto {
            frames::IPPROTO_TCP => true,
            IPPROTO_UDP => {
                // Over IPv4 a zero UDP checksum means "none": keep it that way.
                let field = info.l4_offset + 6;
                info.ethertype != ETHERTYPE_IPV4 || out[field..field + 2] != [0, 0]
            }
            IPPROTO_ICMPV6 => info.ethertype != ETHERTYPE_IPV4,
            _ => false,
        };
    if recompute {
        let l4 = &mut out[info.l4_offset..info.l4_offset + info.l4_len];
        frames::fill_l4_checksum(new_src, new_dst, info.proto, l4);
    }
    Some(out)
}

/// Replays the capture at `path` through `sender`, rewritten from `src` to `dst` (see the
/// module documentation). Frames larger than the interface accepts (EMSGSIZE) are skipped.
/// Stops after `opts.max_packets` frames or `opts.pace.max_duration`, whichever comes first.
pub fn replay(
    path: &Path,
    sender: &RawSender,
    src: &Endpoint,
    dst: &Endpoint,
    opts: &ReplayOptions,
) -> Result<ReplayStats> {
    let frames = read_frames(path)?;
    let map = AddressMap::from_capture(frames.iter().map(|(_, f)| f.as_slice()));
    let limit = opts.max_packets.map_or(frames.len(), |m| {
        frames.len().min(m.try_into().unwrap_or(usize::MAX))
    });
    let first_ts = frames.first().map_or(Duration::ZERO, |(ts, _)| *ts);
    let pacer = Pacer::new(&opts.pace)?;
    let mut stats = ReplayStats::default();
    for (ts, frame) in &frames[..limit] {
        let offset = if opts.original_timing {
            ts.saturating_sub(first_ts).div_f64(opts.speedup.max(1.0))
        } else {
            Duration::ZERO
        };
        if !pacer.wait(stats.sent, offset) {
            break;
        }
        stats.read += 1;
        let Some(out) = rewrite_frame(frame, &map, src, dst) else {
            stats.skipped += 1;
            continue;
        };
        match sender.try_send(&out) {
            Ok(()) => stats.sent += 1,
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => stats.skipped += 1,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "{}: cannot send frame {} on {}",
                        path.display(),
                        stats.read,
                        sender.iface()
                    )
                });
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{TCP_SYN, TPID_8021Q, tcp, udp, verify_checksums, vlan_tag};

    fn ep(mac_last: u8, v4: [u8; 4], v6: &str) -> Endpoint {
        Endpoint {
            mac: [2, 0, 0, 0, 0, mac_last],
            ipv4: Ipv4Addr::from(v4),
            ipv6: v6.parse().expect("v6"),
        }
    }

    fn lab() -> (Endpoint, Endpoint) {
        (
            ep(0x0b, [198, 18, 0, 2], "2001:db8::2"),
            ep(0x0a, [198, 18, 0, 1], "2001:db8::1"),
        )
    }

    /// A synthetic "capture": many sources attacking 203.0.113.7 / 2001:678::7, some
    /// background traffic, an ARP frame and a VLAN-tagged frame.
    fn capture() -> Vec<Vec<u8>> {
        let victim = ep(1, [203, 0, 113, 7], "2001:678::7");
        let mut frames = Vec::new();
        for i in 0..3000u32 {
            let attacker = ep(
                2,
                [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                &format!("2a00::{:x}", i + 1),
            );
            frames.push(tcp(
                &attacker,
                &victim,
                i % 3 == 0,
                1000 + i as u16,
                80,
                TCP_SYN,
                i,
                0,
                &[],
            ));
        }
        let other = ep(3, [192, 0, 2, 50], "2a00:1::50");
        let client = ep(4, [192, 0, 2, 60], "2a00:1::60");
        for _ in 0..10 {
            frames.push(udp(&client, &other, false, 5353, 53, b"query"));
            frames.push(udp(&client, &other, true, 5353, 53, b"query"));
        }
        let mut arp = vec![0xffu8; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        frames.push(arp);
        frames.push(vlan_tag(
            &udp(&client, &victim, false, 1, 2, b"tagged"),
            TPID_8021Q,
            42,
        ));
        frames
    }

    fn in_lab(addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => a.octets()[0] == 198 && (a.octets()[1] & 0xfe) == 18,
            IpAddr::V6(a) => a.segments()[0] == 0x2001 && a.segments()[1] == 0x0db8,
        }
    }

    #[test]
    fn victim_is_most_frequent_destination() {
        let frames = capture();
        let map = AddressMap::from_capture(frames.iter().map(Vec::as_slice));
        assert_eq!(map.victim_v4(), Some(Ipv4Addr::new(203, 0, 113, 7)));
        assert_eq!(map.victim_v6(), Some("2001:678::7".parse().expect("v6")));
        let (src, dst) = lab();
        assert_eq!(map.map_v4(Ipv4Addr::new(203, 0, 113, 7), dst.ipv4), dst.ipv4);
        // Ties go to the smallest address.
        let a = ep(1, [192, 0, 2, 1], "2001:db8::a");
        let b = ep(1, [192, 0, 2, 2], "2001:db8::b");
        let tie = [udp(&a, &b, false, 1, 2, &[]), udp(&b, &a, false, 1, 2, &[])];
        let map = AddressMap::from_capture(tie.iter().map(Vec::as_slice));
        assert_eq!(map.victim_v4(), Some(Ipv4Addr::new(192, 0, 2, 1)));
        let _ = src;
    }

    #[test]
    fn rewrite_is_deterministic_and_stays_in_lab() {
        let frames = capture();
        let (src, dst) = lab();
        let map1 = AddressMap::from_capture(frames.iter().map(Vec::as_slice));
        let mut reversed = frames.clone();
        reversed.reverse();
        let map2 = AddressMap::from_capture(reversed.iter().map(Vec::as_slice));
        let mut sources = std::collections::HashSet::new();
        let mut skipped = 0;
        for frame in &frames {
            let a = rewrite_frame(frame, &map1, &src, &dst);
            let b = rewrite_frame(frame, &map2, &src, &dst);
            assert_eq!(a, b, "deterministic, independent of frame order");
            let Some(out) = a else {
                skipped += 1;
                continue;
            };
            assert_eq!(out.len(), frame.len());
            assert_eq!(&out[0..6], &dst.mac);
            assert_eq!(&out[6..12], &src.mac);
            let info = frames::parse(&out).expect("still IP");
            assert!(in_lab(info.src) && in_lab(info.dst), "{info:?}");
            assert!(verify_checksums(&out), "checksums valid after rewrite");
            if info.proto == frames::IPPROTO_TCP {
                assert!(info.dst == IpAddr::from(dst.ipv4) || info.dst == IpAddr::from(dst.ipv6));
                sources.insert(info.src);
            }
        }
        assert_eq!(skipped, 1, "only the ARP frame is skipped");
        assert_eq!(sources.len(), 3000, "distinct attackers stay distinct");
    }

    #[test]
    fn vlan_frames_are_rewritten_inside_the_tag() {
        let frames = capture();
        let (src, dst) = lab();
        let map = AddressMap::from_capture(frames.iter().map(Vec::as_slice));
        let tagged = frames.last().expect("frame");
        let out = rewrite_frame(tagged, &map, &src, &dst).expect("rewritten");
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 42]);
        let info = frames::parse(&out).expect("parse");
        assert_eq!(info.dst, IpAddr::from(dst.ipv4));
        assert!(verify_checksums(&out));
    }

    #[test]
    fn collision_free_up_to_16_bits() {
        // 20,000 distinct sources: every one gets its own 198.19.x.y.
        let victim = ep(1, [203, 0, 113, 7], "2001:db8::7");
        let frames: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| {
                let s = ep(2, (0x0a00_0000 + i * 7919).to_be_bytes(), "2001:db8::1");
                udp(&s, &victim, false, 1, 2, &[])
            })
            .collect();
        let map = AddressMap::from_capture(frames.iter().map(Vec::as_slice));
        let (src, dst) = lab();
        let mapped: std::collections::HashSet<_> = frames
            .iter()
            .map(|f| {
                frames::parse(&rewrite_frame(f, &map, &src, &dst).expect("ip"))
                    .expect("ip")
                    .src
            })
            .collect();
        assert_eq!(mapped.len(), 20_000);
        for a in &mapped {
            let IpAddr::V4(a) = a else { panic!("v4 expected") };
            assert_eq!(&a.octets()[..2], &[198, 19]);
            assert!(a.octets()[2..] != [0, 0] && a.octets()[2..] != [255, 255]);
        }
        // Unseen addresses fall back to the hash and stay in range too.
        let unseen = map.map_v4(Ipv4Addr::new(8, 8, 8, 8), dst.ipv4);
        assert_eq!(unseen, map.map_v4(Ipv4Addr::new(8, 8, 8, 8), dst.ipv4));
        assert_eq!(&unseen.octets()[..2], &[198, 19]);
        let unseen6 = map.map_v6("2a00::1".parse().expect("v6"), dst.ipv6);
        assert_eq!(&unseen6.segments()[..3], &[0x2001, 0x0db8, 0xffff]);
    }

    #[test]
    fn fragments_keep_their_l4_checksum() {
        let (src, dst) = lab();
        let a = ep(1, [192, 0, 2, 1], "2001:db8::a");
        let b = ep(1, [192, 0, 2, 2], "2001:db8::b");
        let mut f = udp(&a, &b, false, 1, 2, b"fragment");
        // Set MF and recompute the IPv4 header checksum.
        f[14 + 6] = 0x20;
        f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let sum = frames::checksum(&[&f[14..34]]);
        f[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
        let map = AddressMap::from_capture([f.as_slice()]);
        let out = rewrite_frame(&f, &map, &src, &dst).expect("rewritten");
        assert_eq!(&out[34 + 6..34 + 8], &f[34 + 6..34 + 8], "UDP checksum untouched");
        assert_eq!(
            frames::ones_complement_sum(&[&out[14..34]]),
            0xffff,
            "IPv4 header checksum valid"
        );
        // A zero UDP checksum (none) stays zero.
        let mut z = udp(&a, &b, false, 1, 2, b"nocsum");
        z[34 + 6..34 + 8].copy_from_slice(&[0, 0]);
        let out = rewrite_frame(&z, &map, &src, &dst).expect("rewritten");
        assert_eq!(&out[34 + 6..34 + 8], &[0, 0]);
        // Truncated capture: L4 left as is, addresses still rewritten.
        let t = tcp(&a, &b, true, 1, 2, TCP_SYN, 1, 0, b"0123456789");
        let cut = &t[..t.len() - 4];
        let out = rewrite_frame(cut, &map, &src, &dst).expect("rewritten");
        assert_eq!(&out[54 + 16..54 + 18], &cut[54 + 16..54 + 18]);
        assert!(in_lab(frames::parse(&out).expect("ip").src));
    }

    #[test]
    fn shared_captures_read_when_present() {
        let Some(path) = crate::pcap_path("benign-misc/tcpreplay_test.pcap") else {
            eprintln!("skipping: shared captures not found (set NETANOM_SHARED)");
            return;
        };
        let frames = read_frames(&path).expect("read");
        assert_eq!(frames.len(), 179);
        assert!(frames.windows(2).all(|w| w[0].0 <= w[1].0), "timestamps ordered");
        let map = AddressMap::from_capture(frames.iter().map(|(_, f)| f.as_slice()));
        let (src, dst) = lab();
        let rewritten: Vec<_> = frames
            .iter()
            .filter_map(|(_, f)| rewrite_frame(f, &map, &src, &dst))
            .collect();
        // manifest.csv: 16 MPLS frames, a few other non-IP ones.
        assert!(
            rewritten.len() >= 150 && rewritten.len() <= 179 - 16,
            "{}",
            rewritten.len()
        );
        for f in &rewritten {
            let info = frames::parse(f).expect("ip");
            assert!(in_lab(info.src) && in_lab(info.dst));
        }
        // Named .pcapng but a classic pcap inside: detected by content.
        if let Some(path) =
            crate::pcap_path("attacks/ddos-stopddos/amp.TCP.syn.optionallyACK.optionallysamePort.pcapng")
        {
            assert_eq!(read_frames(&path).expect("read").len(), 896);
        }
    }

    /// A minimal little-endian pcapng: one section, one interface (`tsresol` option when
    /// given), one enhanced packet block per (ticks, frame).
    fn pcapng(linktype: u16, tsresol: Option<u8>, packets: &[(u64, &[u8])]) -> Vec<u8> {
        fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
            let len = (12 + body.len()) as u32;
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(&len.to_le_bytes());
        }
        let mut out = Vec::new();
        let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        block(&mut out, 0x0a0d_0d0a, &shb);
        let mut idb = linktype.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&65535u32.to_le_bytes());
        if let Some(r) = tsresol {
            idb.extend_from_slice(&[9, 0, 1, 0, r, 0, 0, 0, 0, 0, 0, 0]);
        }
        block(&mut out, 1, &idb);
        for (ticks, data) in packets {
            let mut epb = 0u32.to_le_bytes().to_vec();
            epb.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
            epb.extend_from_slice(&(*ticks as u32).to_le_bytes());
            epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
            epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
            epb.extend_from_slice(data);
            epb.resize(epb.len().next_multiple_of(4), 0);
            block(&mut out, 6, &epb);
        }
        out
    }

    #[test]
    fn pcapng_timestamps_honour_tsresol() {
        let dir = std::env::temp_dir().join(format!("netanom-lab-pcapng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (a, b) = lab();
        let frame = udp(&a, &b, false, 1, 2, b"x");
        let cases = [
            (None, 1_500_000u64, Duration::from_millis(1500)),
            (Some(9), 1_500_000_000, Duration::from_millis(1500)),
            (Some(3), 1_500, Duration::from_millis(1500)),
            (Some(0x80 | 10), 1536, Duration::from_millis(1500)),
        ];
        for (i, (tsresol, ticks, want)) in cases.into_iter().enumerate() {
            let path = dir.join(format!("t{i}.pcapng"));
            std::fs::write(&path, pcapng(1, tsresol, &[(0, &frame), (ticks, &frame)])).expect("write");
            let frames = read_frames(&path).expect("read pcapng");
            assert_eq!(frames.len(), 2);
            assert_eq!(frames[1].0 - frames[0].0, want, "tsresol {tsresol:?}");
            assert_eq!(frames[1].1, frame);
        }
        let path = dir.join("raw.pcapng");
        std::fs::write(&path, pcapng(101, None, &[(0, &frame)])).expect("write");
        let err = read_frames(&path).expect_err("raw IP must be refused");
        assert!(format!("{err:#}").contains("Ethernet only"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn non_ethernet_and_garbage_are_errors() {
        let dir = std::env::temp_dir().join(format!("netanom-lab-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // A pcap header with link type 101 (raw IP) and no packets.
        let mut raw = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        raw.extend_from_slice(&[0; 8]);
        raw.extend_from_slice(&65535u32.to_le_bytes());
        raw.extend_from_slice(&101u32.to_le_bytes());
        let path = dir.join("raw.pcap");
        std::fs::write(&path, &raw).expect("write");
        let err = read_frames(&path).expect_err("raw IP must be refused");
        assert!(format!("{err:#}").contains("Ethernet only"), "{err:#}");
        let path = dir.join("garbage.pcap");
        std::fs::write(&path, b"not a capture at all").expect("write");
        assert!(read_frames(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
