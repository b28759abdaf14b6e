//! Host checks the agent makes before touching the kernel, each with an error that says what
//! to do about it.
use std::{ffi::CString, fs, path::Path};

use thiserror::Error;

/// bpffs magic number (`BPF_FS_MAGIC` in linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

#[derive(Debug, Error)]
pub enum SysError {
    #[error(
        "interface `{name}` does not exist in this network namespace (interfaces here: {available}). \
         Pass an existing interface with --iface; `ip -br link` lists them."
    )]
    UnknownInterface { name: String, available: String },
    #[error(
        "netanom needs CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN to load and attach its XDP \
         program, and this process lacks {missing}. Run it as root (sudo netanom ...) or grant \
         the capabilities: setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(which netanom)."
    )]
    MissingPrivileges { missing: String },
    #[error(
        "the BPF filesystem is not mounted at {path}; netanom pins its maps there. Mount it with \
         `mount -t bpf bpf /sys/fs/bpf` (or run `cargo xtask setup`), then start netanom again."
    )]
    BpffsNotMounted { path: String },
    #[error(
        "no default route, so there is no default interface to watch. Name one with --iface \
         (`ip -br link` lists them)."
    )]
    NoDefaultRoute,
}

/// Fails unless `name` is an interface of the current network namespace.
pub fn check_interface(name: &str) -> Result<u32, SysError> {
    let index = CString::new(name)
        .ok()
        // SAFETY: valid NUL-terminated string.
        .map(|c| unsafe { libc::if_nametoindex(c.as_ptr()) })
        .unwrap_or(0);
    if index == 0 {
        return Err(SysError::UnknownInterface {
            name: name.to_owned(),
            available: interfaces().join(", "),
        });
    }
    Ok(index)
}

/// Interface names of the current network namespace (from `if_nameindex`, which, unlike
/// /sys/class/net, follows the namespace the process is in).
pub fn interfaces() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return names;
        }
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            names.push(
                std::ffi::CStr::from_ptr((*p).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    names.sort();
    names
}

/// The interface of the IPv4 default route, else of the IPv6 one.
pub fn default_route_interface() -> Result<String, SysError> {
    let v4 = fs::read_to_string("/proc/net/route").unwrap_or_default();
    if let Some(name) = parse_route_v4(&v4) {
        return Ok(name);
    }
    let v6 = fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    parse_route_v6(&v6).ok_or(SysError::NoDefaultRoute)
}

fn parse_route_v4(table: &str) -> Option<String> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" && f[0] != "lo").then(|| f[0].to_owned())
    })
}

fn parse_route_v6(table: &str) -> Option<String> {
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // dest dest_plen src src_plen nexthop metric refcnt use flags iface
        (f.len() == 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo")
            .then(|| f[9].to_owned())
    })
}

/// The addresses of this host's interfaces (current network namespace), loopback excluded.
pub fn host_addresses() -> Vec<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut p = list;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            let ip = match family {
                libc::AF_INET => {
                    // SAFETY: AF_INET: a sockaddr_in.
                    let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))))
                }
                libc::AF_INET6 => {
                    // SAFETY: AF_INET6: a sockaddr_in6.
                    let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    Some(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)))
                }
                _ => None,
            };
            if let Some(ip) = ip.filter(|ip| !ip.is_loopback() && !out.contains(ip)) {
                out.push(ip);
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(list) };
    out
}

/// The next hops of the default routes (IPv4 and IPv6).
pub fn default_gateways() -> Vec<std::net::IpAddr> {
    let v4 = fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    parse_gateways(&v4, &v6)
}

fn parse_gateways(v4: &str, v6: &str) -> Vec<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut out = Vec::new();
    for l in v4.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        // The gateway is the address's bytes in network order, printed as a host-order
        // (little-endian) hex u32.
        if f.len() > 7
            && f[1] == "00000000"
            && f[7] == "00000000"
            && let Ok(g) = u32::from_str_radix(f[2], 16)
        {
            let ip = IpAddr::V4(Ipv4Addr::from(g.to_le_bytes()));
            if g != 0 && !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    for l in v6.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 10
            && f[0].bytes().all(|b| b == b'0')
            && f[1] == "00"
            && let Ok(g) = u128::from_str_radix(f[4], 16)
        {
            let ip = IpAddr::V6(Ipv6Addr::from(g));
            if g != 0 && !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Fails unless the effective capability set allows loading and attaching XDP programs.
pub fn check_privileges() -> Result<(), SysError> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(SysError::MissingPrivileges {
            missing: missing.join(" and "),
        })
    }
}

/// Fails unless a BPF filesystem is mounted at `path`.
pub fn check_bpffs(path: &Path) -> Result<(), SysError> {
    let err = || SysError::BpffsNotMounted {
        path: path.display().to_string(),
    };
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| err())?;
    // SAFETY: statfs writes into a zeroed struct we own; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(err());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs.
    if st.f_type as i64 != BPF_FS_MAGIC {
        return Err(err());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_v4() {
        let t = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth1\t0012C6C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 eth0\t00000000\t0100C6C6\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(parse_route_v4(t).as_deref(), Some("eth0"));
        assert_eq!(parse_route_v4("Iface\tDestination\n"), None);
    }

    #[test]
    fn default_route_v6() {
        let t = "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth1\n\
                 00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth2\n";
        assert_eq!(parse_route_v6(t).as_deref(), Some("eth2"));
    }

    #[test]
    fn unknown_interface_names_alternatives_and_fix() {
        let e = check_interface("netanom-nope0").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("netanom-nope0") && msg.contains("--iface") && msg.contains("lo"),
            "{msg}"
        );
    }

    #[test]
    fn bpffs_check_rejects_a_plain_directory() {
        let e = check_bpffs(Path::new("/tmp")).unwrap_err();
        assert!(e.to_string().contains("mount -t bpf"), "{e}");
    }

    #[test]
    fn gateways_are_parsed_from_the_route_tables() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t010012C6\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth0\t000012C6\t00000000\t0001\t0\t0\t0\t00FEFFFF\t0\t0\t0\n";
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n";
        let g = parse_gateways(v4, v6);
        assert_eq!(
            g,
            vec![
                "198.18.0.1".parse::<std::net::IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
    }
}
