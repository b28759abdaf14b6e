//! Network namespaces ([`Netns`]), veth pairs between two of them ([`Pair`]) and the sweep of
//! leftovers from crashed runs ([`sweep_leftovers`]).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::PREFIX;
use crate::sys;

/// Where `ip netns` keeps its bind mounts (iproute2's NETNS_RUN_DIR).
const NETNS_RUN_DIR: &str = "/var/run/netns";
/// Maximum interface name length (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;
/// Upper bound for polling loops during setup.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-process counter that makes names unique within the process (the pid makes them unique
/// across processes).
static COUNTER: AtomicU32 = AtomicU32::new(0);

pub(crate) fn next_serial() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Runs a command and returns its stdout; on failure the error names the command and carries
/// its stderr.
fn run_cmd(cmd: &mut Command) -> Result<String> {
    let shown = format!("{:?}", cmd).replace('"', "");
    let out = cmd.output().with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{shown}: output is not UTF-8"))
}

/// The pid encoded in a lab namespace name `nalab-<pid>-...`, if `name` is one.
pub(crate) fn leftover_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix('-')?;
    let (pid, tail) = rest.split_once('-')?;
    if tail.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the namespaces left behind by crashed runs: every `nalab-<pid>-...` namespace whose
/// `<pid>` is no longer a running process (the namespaces of live processes, including this
/// one, are left alone). Deleting a namespace destroys the veths inside it. Returns how many
/// namespaces were removed. Tests call this first. Concurrent sweeps (parallel test
/// processes) are harmless. A leftover whose pid has meanwhile been reused by an unrelated
/// process stays until that process ends.
pub fn sweep_leftovers() -> Result<usize> {
    let entries = match fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot list {NETNS_RUN_DIR}")),
    };
    let mut removed = 0;
    // Bounded by the directory's size.
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {NETNS_RUN_DIR}"))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(pid) = leftover_pid(&name) else { continue };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        match run_cmd(Command::new("ip").args(["netns", "del", &name])) {
            Ok(_) => removed += 1,
            // Another sweeping process may have been faster.
            Err(_) if !Path::new(NETNS_RUN_DIR).join(&name).exists() => {}
            Err(e) => eprintln!("netanom-lab: cannot remove leftover namespace {name}: {e:#}"),
        }
    }
    Ok(removed)
}

/// Keeps only characters that are safe in namespace names.
pub(crate) fn sanitize_tag(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    if tag.is_empty() { "x".to_owned() } else { tag }
}

/// A throwaway network namespace `nalab-<pid>-<n>-<tag>`, deleted on drop.
///
/// Holds an open descriptor of the namespace, used to enter it with `setns`.
pub struct Netns {
    name: String,
    fd: Arc<OwnedFd>,
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netns")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Netns {
    /// Creates the namespace, brings `lo` up and silences IPv6 autoconfiguration
    /// (`net.ipv6.conf.{all,default}.{accept_ra,accept_dad,dad_transmits,router_solicitations} = 0`).
    /// The namespace has no other interface and no route out.
    pub fn new(tag: &str) -> Result<Netns> {
        let name = format!(
            "{PREFIX}-{}-{}-{}",
            std::process::id(),
            next_serial(),
            sanitize_tag(tag)
        );
        run_cmd(Command::new("ip").args(["netns", "add", &name]))?;
        let path = Path::new(NETNS_RUN_DIR).join(&name);
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) => {
                let _ = run_cmd(Command::new("ip").args(["netns", "del", &name]));
                return Err(e).with_context(|| format!("cannot open {}", path.display()));
            }
        };
        // From here on, Drop deletes the namespace whatever fails next.
        let ns = Netns {
            name,
            fd: Arc::new(OwnedFd::from(file)),
        };
        ns.ip(&["link", "set", "dev", "lo", "up"])?;
        let mut settings = Vec::new();
        for scope in ["all", "default"] {
            for key in ["accept_ra", "accept_dad", "dad_transmits", "router_solicitations"] {
                settings.push((format!("net.ipv6.conf.{scope}.{key}"), "0"));
            }
        }
        ns.sysctls(settings.iter().map(|(k, v)| (k.as_str(), *v)))?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mount path of the namespace (`/var/run/netns/<name>`).
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// Runs `ip -n <name> <args>` and returns its stdout; the error includes stderr.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run_cmd(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs `f` on a scoped thread that first entered this namespace with
    /// `setns(fd, CLONE_NEWNET)`; the caller's thread never changes namespace. Sockets `f`
    /// creates belong to this namespace and keep working from any thread afterwards.
    /// A panic in `f` is propagated to the caller.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let fd = self.fd.as_fd();
        let name = &self.name;
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("netns {name}"))
                .spawn_scoped(scope, move || -> Result<T> {
                    sys::setns_net(fd).with_context(|| format!("setns into {name}"))?;
                    Ok(f())
                })
                .context("cannot spawn a thread")?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A [`Command`] whose child enters this namespace (`setns(CLONE_NEWNET)` in `pre_exec`)
    /// before `exec`. Only the network namespace changes: the mount namespace, and with it
    /// `/sys/fs/bpf`, stays the host's. The command keeps the namespace descriptor alive.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = Arc::clone(&self.fd);
        // SAFETY: the hook runs between fork and exec; it only issues the setns system call
        // on a descriptor the closure keeps open, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || sys::setns_net(fd.as_fd()));
        }
        cmd
    }

    /// Writes sysctls inside the namespace. Keys use the dotted form
    /// (`net.ipv6.conf.all.accept_ra`); dots become path separators below `/proc/sys`, so
    /// interface names containing dots are not supported.
    pub fn sysctls<'a>(&self, settings: impl IntoIterator<Item = (&'a str, &'a str)> + Send) -> Result<()> {
        self.run(|| -> Result<()> {
            for (key, value) in settings {
                let path = Path::new("/proc/sys").join(key.replace('.', "/"));
                fs::write(&path, value)
                    .with_context(|| format!("cannot set {key}={value} in {}", self.name))?;
            }
            Ok(())
        })?
    }

    /// Reads a sysctl inside the namespace (dotted key, see [`Netns::sysctls`]).
    pub fn sysctl(&self, key: &str) -> Result<String> {
        self.run(|| {
            let path = Path::new("/proc/sys").join(key.replace('.', "/"));
            fs::read_to_string(&path)
                .map(|v| v.trim().to_owned())
                .with_context(|| format!("cannot read {key} in {}", self.name))
        })?
    }

    /// Counters of `iface` in this namespace (from `/proc/thread-self/net/dev`). Useful to
    /// tell a frame dropped by the lab (veth `rx_dropped`) from one dropped by the test subject.
    pub fn iface_stats(&self, iface: &str) -> Result<IfaceStats> {
        let text = self.run(|| fs::read_to_string("/proc/thread-self/net/dev"))??;
        parse_net_dev(&text, iface).ok_or_else(|| anyhow!("no interface {iface} in {}", self.name))
    }

    /// The namespace descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run_cmd(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("netanom-lab: cannot delete namespace {}: {e:#}", self.name);
        }
    }
}

/// Interface counters from `/proc/net/dev`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames dropped on receive.
    pub rx_dropped: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames dropped on send.
    pub tx_dropped: u64,
}

fn parse_net_dev(text: &str, iface: &str) -> Option<IfaceStats> {
    let line = text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        (name.trim() == iface).then_some(rest)
    })?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 12 {
        return None;
    }
    Some(IfaceStats {
        rx_bytes: v[0],
        rx_packets: v[1],
        rx_dropped: v[3],
        tx_bytes: v[8],
        tx_packets: v[9],
        tx_dropped: v[11],
    })
}

/// Addresses of one end of a veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Ethernet address of the interface.
    pub mac: [u8; 6],
    /// IPv4 address (in 198.18.0.0/15).
    pub ipv4: Ipv4Addr,
    /// IPv6 address (in 2001:db8::/32).
    pub ipv6: Ipv6Addr,
}

/// One end of a veth: its interface name (inside its namespace) and addresses.
#[derive(Clone, Debug)]
pub struct Side {
    /// Interface name, valid inside the side's namespace.
    pub iface: String,
    /// Addresses of the interface.
    pub ep: Endpoint,
}

/// Two namespaces `a` and `b` joined by one veth pair.
///
/// - `a`: 198.18.0.1/24 and 2001:db8::1/64; `b`: 198.18.0.2/24 and 2001:db8::2/64. No
///   default route: nothing leaves the pair.
/// - IPv6 addresses are added with `nodad`; permanent neighbour entries (IPv4 and IPv6) are
///   installed in both directions, so no ARP or neighbour discovery is ever sent.
/// - Both veths are `NOARP` and have `addrgenmode none`, with router solicitations, RA and
///   DAD disabled. `NOARP` stops the kernel from joining the solicited-node multicast group
///   of each address, which is what would otherwise send MLD reports on link up (from `::`
///   to ff02::16). With these settings *no* unsolicited frame crosses the veth: not during
///   setup, not later (verified by the lab's self-test). Groups that are joined
///   (ff02::1, ff01::1, 224.0.0.1) are never reported by the kernel. The kernel still
///   answers traffic addressed to it (echo replies, TCP RST, ICMP errors), which arrive at
///   the other side.
/// - The veth names are `nalab<pid%10000>x<n%10000>{a,b}` (at most 15 characters). They are
///   created directly inside `a` and `b`, never in the host's namespace, so they cannot clash
///   with anything outside the pair.
///
/// Dropping the pair deletes both namespaces, which destroys the veth.
#[derive(Debug)]
pub struct Pair {
    /// First namespace (by convention the side under test, e.g. where XDP is attached).
    pub a: Netns,
    /// Second namespace (by convention the traffic source).
    pub b: Netns,
    /// `a`'s end of the veth.
    pub a_side: Side,
    /// `b`'s end of the veth.
    pub b_side: Side,
}

/// Veth names for pair number `serial` of process `pid`.
pub(crate) fn veth_names(pid: u32, serial: u32) -> (String, String) {
    let stem = format!("{PREFIX}{}x{}", pid % 10_000, serial % 10_000);
    let names = (format!("{stem}a"), format!("{stem}b"));
    debug_assert!(names.0.len() <= IFNAME_MAX && names.1.len() <= IFNAME_MAX);
    names
}

pub(crate) fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Locally administered unicast MAC for veth number `serial`, end `side`:
/// 02:6e:61 ("na") + serial + side.
pub(crate) fn lab_mac(serial: u32, side: u8) -> [u8; 6] {
    [0x02, 0x6e, 0x61, (serial >> 8) as u8, serial as u8, side]
}

/// A fresh veth serial and the names of its two ends (see [`veth_names`]).
pub(crate) fn new_veth_names() -> Result<(u32, String, String)> {
    let serial = next_serial();
    let (iface_a, iface_b) = veth_names(std::process::id(), serial);
    if iface_a.len() > IFNAME_MAX || iface_b.len() > IFNAME_MAX {
        bail!("interface names {iface_a}/{iface_b} are longer than {IFNAME_MAX} characters");
    }
    Ok((serial, iface_a, iface_b))
}

/// Creates the veth `a_side.iface` (in `a`) / `b_side.iface` (in `b`) with the sides' MACs,
/// directly inside the two namespaces, configures both ends for silence with the sides'
/// addresses (`/v4_len`, `/v6_len`) and permanent neighbour entries for each other, brings
/// both up and waits (bounded) for carrier. See [`Pair`] for what "silence" means.
pub(crate) fn veth_link(
    a: &Netns,
    a_side: &Side,
    b: &Netns,
    b_side: &Side,
    v4_len: u8,
    v6_len: u8,
) -> Result<()> {
    // `ip -n a link add ... peer ... netns b`: both ends are created inside the lab.
    a.ip(&[
        "link",
        "add",
        &a_side.iface,
        "address",
        &mac_string(&a_side.ep.mac),
        "type",
        "veth",
        "peer",
        "name",
        &b_side.iface,
        "address",
        &mac_string(&b_side.ep.mac),
        "netns",
        b.name(),
    ])?;
    configure_end(a, a_side, &b_side.ep, v4_len, v6_len)?;
    configure_end(b, b_side, &a_side.ep, v4_len, v6_len)?;
    for (ns, side) in [(b, b_side), (a, a_side)] {
        ns.ip(&["link", "set", "dev", &side.iface, "up"])?;
    }
    wait_lower_up(&[(a, &a_side.iface), (b, &b_side.iface)])
}

/// Configures one veth end (still down): silence, addresses, permanent neighbours.
fn configure_end(ns: &Netns, side: &Side, peer: &Endpoint, v4_len: u8, v6_len: u8) -> Result<()> {
    let iface = side.iface.as_str();
    ns.ip(&["link", "set", "dev", iface, "arp", "off", "addrgenmode", "none"])?;
    let settings: Vec<(String, &str)> = [
        ("addr_gen_mode", "1"),
        ("accept_ra", "0"),
        ("accept_dad", "0"),
        ("dad_transmits", "0"),
        ("router_solicitations", "0"),
    ]
    .iter()
    .map(|(k, v)| (format!("net.ipv6.conf.{iface}.{k}"), *v))
    .collect();
    ns.sysctls(settings.iter().map(|(k, v)| (k.as_str(), *v)))?;
    ns.ip(&["addr", "add", &format!("{}/{v4_len}", side.ep.ipv4), "dev", iface])?;
    ns.ip(&[
        "addr",
        "add",
        &format!("{}/{v6_len}", side.ep.ipv6),
        "dev",
        iface,
        "nodad",
    ])?;
    let lladdr = mac_string(&peer.mac);
    for addr in [peer.ipv4.to_string(), peer.ipv6.to_string()] {
        ns.ip(&[
            "neigh",
            "replace",
            &addr,
            "lladdr",
            &lladdr,
            "dev",
            iface,
            "nud",
            "permanent",
        ])?;
    }
    Ok(())
}

/// Waits (bounded) until every listed interface reports carrier.
fn wait_lower_up(ifaces: &[(&Netns, &str)]) -> Result<()> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    for attempt in 0..1000 {
        let mut up = true;
        for (ns, iface) in ifaces {
            let out = ns.ip(&["-o", "link", "show", "dev", iface])?;
            up &= out.contains("LOWER_UP") && out.contains("state UP");
        }
        if up {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("veth {} did not come up after {attempt} checks", ifaces[0].1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("veth {} did not come up", ifaces[0].1)
}

/// Waits until none of `ifaces` has received a frame for 200 ms, bounded by 3 s, so that
/// whatever is attached afterwards sees only its own traffic. Fails if they keep carrying
/// frames.
pub(crate) fn settle_ifaces(ifaces: &[(&Netns, &str)]) -> Result<()> {
    let quiet = Duration::from_millis(200);
    let limit = Duration::from_secs(3);
    let rxs = ifaces
        .iter()
        .map(|(ns, iface)| crate::traffic::RawReceiver::open(ns, iface))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut last_frame = start;
    // Bounded by `limit`; each pass waits at most 20 ms.
    while start.elapsed() < limit {
        let mut got = 0;
        for rx in &rxs {
            got += rx.drain()?;
        }
        if got > 0 {
            last_frame = Instant::now();
        } else if last_frame.elapsed() >= quiet {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "{} still carries unsolicited frames after {limit:?}",
        ifaces.iter().map(|(_, i)| *i).collect::<Vec<_>>().join("/")
    )
}

impl Pair {
    /// Creates namespaces `nalab-<pid>-<n>-<tag>-a` / `-b` and the veth between them; see
    /// the type's documentation for the configuration. Call [`Pair::settle`] before
    /// attaching anything that counts packets.
    pub fn new(tag: &str) -> Result<Pair> {
        let tag = sanitize_tag(tag);
        let a = Netns::new(&format!("{tag}-a"))?;
        let b = Netns::new(&format!("{tag}-b"))?;
        let (serial, iface_a, iface_b) = new_veth_names()?;
        let a_side = Side {
            iface: iface_a,
            ep: Endpoint {
                mac: lab_mac(serial, 0x0a),
                ipv4: Ipv4Addr::new(198, 18, 0, 1),
                ipv6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            },
        };
        let b_side = Side {
            iface: iface_b,
            ep: Endpoint {
                mac: lab_mac(serial, 0x0b),
                ipv4: Ipv4Addr::new(198, 18, 0, 2),
                ipv6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
            },
        };
        veth_link(&a, &a_side, &b, &b_side, 24, 64)?;
        Ok(Pair { a, b, a_side, b_side })
    }

    /// Deletes the veth (`ip -n a link del`; both ends go), as when a gateway's interface
    /// disappears at run time. The namespaces stay; [`Pair::recreate_link`] brings it back.
    pub fn delete_link(&self) -> Result<()> {
        self.a.ip(&["link", "del", "dev", &self.a_side.iface])?;
        // Bounded: the peer end goes with it, normally at once.
        let deadline = Instant::now() + SETUP_TIMEOUT;
        while self.b.ip(&["link", "show", "dev", &self.b_side.iface]).is_ok() {
            if Instant::now() >= deadline {
                bail!(
                    "veth end {} still exists after deleting its peer",
                    self.b_side.iface
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Recreates the veth after [`Pair::delete_link`] with the same names, MACs, addresses,
    /// neighbours and silence settings as [`Pair::new`] (a new interface index), and waits
    /// until both ends are up.
    pub fn recreate_link(&self) -> Result<()> {
        veth_link(&self.a, &self.a_side, &self.b, &self.b_side, 24, 64)
    }

    /// Waits until the veth has been quiet (no frame received on either end) for 200 ms,
    /// bounded by 3 s, so that whatever is attached afterwards sees only its own traffic.
    /// With the pair's configuration nothing unsolicited is sent, so this normally returns
    /// after 200 ms; it fails if the veth keeps carrying frames.
    pub fn settle(&self) -> Result<()> {
        settle_ifaces(&[(&self.a, &self.a_side.iface), (&self.b, &self.b_side.iface)])
    }
}

/// Where lab agents pin their maps (on bpffs) and write their status file.
const PIN_ROOT: &str = "/sys/fs/bpf";
const STATE_ROOT: &str = "/tmp";

/// A lab agent's pin directory (`/sys/fs/bpf/nalab-<pid>-<n>`) and state directory
/// (`/tmp/nalab-<pid>-<n>`): unique per test, removed on drop (pinned maps and links with
/// them), and swept by [`sweep_state_leftovers`] after a crashed run.
pub struct StateDirs {
    /// The agent's `--pin-dir`, on bpffs.
    pub pin_dir: PathBuf,
    /// The agent's `--state-dir`.
    pub state_dir: PathBuf,
}

impl StateDirs {
    /// New (not yet created) directories named after this process and `tag`.
    pub fn new(tag: &str) -> StateDirs {
        let name = format!(
            "{PREFIX}-{}-{}-{}",
            std::process::id(),
            next_serial(),
            sanitize_tag(tag)
        );
        StateDirs {
            pin_dir: Path::new(PIN_ROOT).join(&name),
            state_dir: Path::new(STATE_ROOT).join(&name),
        }
    }

    /// The pin directory as a command-line argument.
    pub fn pin(&self) -> &str {
        self.pin_dir.to_str().unwrap_or_default()
    }

    /// The state directory as a command-line argument.
    pub fn state(&self) -> &str {
        self.state_dir.to_str().unwrap_or_default()
    }
}

impl Drop for StateDirs {
    fn drop(&mut self) {
        // bpffs directories hold only pins: unlinking them releases the maps and links.
        let _ = fs::remove_dir_all(&self.pin_dir);
        let _ = fs::remove_dir_all(&self.state_dir);
    }
}

/// Removes the pin and state directories of crashed runs (dead `<pid>`). Returns how many.
pub fn sweep_state_leftovers() -> usize {
    let mut removed = 0;
    for root in [PIN_ROOT, STATE_ROOT] {
        let Ok(entries) = fs::read_dir(root) else { continue };
        for e in entries.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some(pid) = leftover_pid(&name) else { continue };
            if Path::new("/proc").join(pid.to_string()).exists() {
                continue;
            }
            if fs::remove_dir_all(e.path())
                .or_else(|_| fs::remove_file(e.path()))
                .is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz() {
        for pid in [1, 9999, 10_000, 4_194_303] {
            for serial in [0, 9, 9999, 10_000, u32::MAX] {
                let (a, b) = veth_names(pid, serial);
                assert!(a.len() <= IFNAME_MAX && b.len() <= IFNAME_MAX, "{a} {b}");
                assert!(a.starts_with(PREFIX) && b.starts_with(PREFIX));
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            veth_names(123_456, 7),
            ("nalab3456x7a".to_owned(), "nalab3456x7b".to_owned())
        );
    }

    #[test]
    fn leftover_names_parse() {
        assert_eq!(leftover_pid("nalab-1234-0-pair-a"), Some(1234));
        assert_eq!(leftover_pid("nalab-1-5-x"), Some(1));
        assert_eq!(leftover_pid("nalab-abc-0-x"), None);
        assert_eq!(leftover_pid("nalab-1234"), None);
        assert_eq!(leftover_pid("nalab-1234-"), None);
        assert_eq!(leftover_pid("other-1234-0-x"), None);
        assert_eq!(leftover_pid("nalab1234-0-x"), None);
        assert_eq!(leftover_pid("nalab--0-x"), None);
    }

    #[test]
    fn tags_are_sanitized() {
        assert_eq!(sanitize_tag("ok_tag-1"), "ok_tag-1");
        assert_eq!(sanitize_tag("a b/c"), "a_b_c");
        assert_eq!(sanitize_tag(""), "x");
        assert_eq!(sanitize_tag(&"y".repeat(100)).len(), 24);
    }

    #[test]
    fn net_dev_parses() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
 lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n\
nalab1x2a:     500       5    0    1    0     0          0         0      600       6    0    2    0     0       0          0\n";
        let s = parse_net_dev(text, "nalab1x2a").expect("parsed");
        assert_eq!(
            s,
            IfaceStats {
                rx_bytes: 500,
                rx_packets: 5,
                rx_dropped: 1,
                tx_bytes: 600,
                tx_packets: 6,
                tx_dropped: 2
            }
        );
        assert!(parse_net_dev(text, "eth0").is_none());
    }
}
