//! Traffic generation inside the lab.
//!
//! - [`RawSender`] / [`RawReceiver`]: `AF_PACKET` sockets opened *inside* a namespace and bound
//!   to one interface; after opening they work from any thread.
//! - Generators of hand-built frames ([`udp_burst`], [`tcp_syns`], [`icmp_echos`],
//!   [`port_sweep`]), all bounded by a count and by [`Pace::max_duration`].
//! - [`tcp_exchange`]: real kernel TCP connections between two namespaces.
//!
//! Frames sent on one end of a veth arrive on the other end exactly as sent, in order. A
//! single sender reaches a few hundred thousand frames per second; measured on kernel 6.18,
//! 200,000 back-to-back frames all arrived at the peer (`rx_packets`, no `rx_dropped`), with
//! and without an XDP program on the receiving veth. Should a faster setup overflow the
//! receiving kernel's backlog or the veth's XDP ring, [`crate::Netns::iface_stats`] shows it
//! (`rx_dropped`) and [`Pace::pps`] avoids it. A [`RawReceiver`] has its own, smaller limit
//! (see [`RawReceiver::open`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::frames::{self, TCP_SYN};
use crate::{Endpoint, Netns, sys};

/// Fixed ports of the frames the generators build.
pub mod ports {
    /// Source port of [`super::udp_burst`] datagrams.
    pub const UDP_SRC: u16 = 40000;
    /// Destination port of [`super::udp_burst`] datagrams.
    pub const UDP_DST: u16 = 5001;
    /// First source port of [`super::tcp_syns`]; the n-th SYN uses `TCP_SYN_SRC_BASE + n % 20000`.
    pub const TCP_SYN_SRC_BASE: u16 = 20000;
    /// Source port of [`super::port_sweep`] SYNs.
    pub const SWEEP_SRC: u16 = 40001;
    /// Identifier of [`super::icmp_echos`] echo requests (ASCII "NA").
    pub const ICMP_ID: u16 = 0x4e41;
}

/// How fast, and for how long at most, to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Frames per second; `None` sends as fast as possible.
    pub pps: Option<u32>,
    /// Sending stops after this long, whatever is left.
    pub max_duration: Duration,
}

impl Default for Pace {
    /// As fast as possible, for at most 5 s.
    fn default() -> Self {
        Pace {
            pps: None,
            max_duration: Duration::from_secs(5),
        }
    }
}

impl Pace {
    /// `pps` frames per second for at most `max_duration`.
    pub fn rate(pps: u32, max_duration: Duration) -> Pace {
        Pace {
            pps: Some(pps),
            max_duration,
        }
    }
}

/// Sleeps (or spins, for very short waits) until `due`.
fn wait_until(due: Instant) {
    // Bounded: `due` is finite and every pass moves towards it.
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Paces a sequence of sends: frame `i` is due at `start + i / pps`.
pub(crate) struct Pacer {
    start: Instant,
    pace: Pace,
}

impl Pacer {
    pub(crate) fn new(pace: &Pace) -> Result<Pacer> {
        ensure!(pace.pps != Some(0), "Pace::pps must be positive");
        Ok(Pacer {
            start: Instant::now(),
            pace: *pace,
        })
    }

    /// Waits until frame `index` (also no earlier than `offset` after the start) is due.
    /// Returns false when that is past `max_duration`: the caller stops.
    pub(crate) fn wait(&self, index: u64, offset: Duration) -> bool {
        let mut due = offset;
        if let Some(pps) = self.pace.pps {
            due = due.max(Duration::from_secs_f64(index as f64 / f64::from(pps)));
        }
        if due >= self.pace.max_duration || self.start.elapsed() >= self.pace.max_duration {
            return false;
        }
        wait_until(self.start + due);
        true
    }
}

/// An `AF_PACKET` raw socket opened inside a namespace and bound to one of its interfaces,
/// for sending complete Ethernet frames. It installs no receive hook.
#[derive(Debug)]
pub struct RawSender {
    fd: OwnedFd,
    iface: String,
    ifindex: u32,
}

/// How long [`RawSender::send`] retries a frame the kernel temporarily refuses.
const SEND_RETRY_LIMIT: Duration = Duration::from_secs(1);

impl RawSender {
    /// Opens the socket on a thread that entered `ns`, bound to `iface` there.
    pub fn open(ns: &Netns, iface: &str) -> Result<RawSender> {
        let (fd, ifindex) = ns
            .run(|| -> io::Result<(OwnedFd, u32)> {
                let ifindex = sys::ifindex(iface)?;
                Ok((sys::packet_socket(ifindex, 0)?, ifindex))
            })?
            .with_context(|| format!("cannot open a packet socket on {iface} in {}", ns.name()))?;
        Ok(RawSender {
            fd,
            iface: iface.to_owned(),
            ifindex,
        })
    }

    /// The interface the socket is bound to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The interface's index in its namespace.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends one frame, retrying (for at most 1 s) while the kernel reports a transient
    /// shortage (ENOBUFS, EAGAIN). The raw `io::Error` is returned, so callers can tell
    /// e.g. a frame larger than the MTU (`EMSGSIZE`) from other failures.
    pub fn try_send(&self, frame: &[u8]) -> io::Result<()> {
        let start = Instant::now();
        // Bounded by SEND_RETRY_LIMIT.
        loop {
            match sys::send(self.fd.as_fd(), frame) {
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR))
                        && start.elapsed() < SEND_RETRY_LIMIT =>
                {
                    std::thread::sleep(Duration::from_micros(50));
                }
                other => return other,
            }
        }
    }

    /// Sends one frame (see [`RawSender::try_send`]).
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        self.try_send(frame)
            .with_context(|| format!("cannot send a {}-byte frame on {}", frame.len(), self.iface))
    }

    /// Sends `frames` at `pace`, stopping early when `pace.max_duration` has passed.
    /// Returns how many frames were sent.
    pub fn send_all<'a>(&self, frames: impl IntoIterator<Item = &'a [u8]>, pace: &Pace) -> Result<u64> {
        let pacer = Pacer::new(pace)?;
        let mut sent = 0;
        // Bounded by the iterator and by the pacer's max_duration.
        for frame in frames {
            if !pacer.wait(sent, Duration::ZERO) {
                break;
            }
            self.send(frame)?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Sends `count` frames made by `make(i)` at `pace` (bounded by `count` and
    /// `pace.max_duration`). Returns how many were sent.
    pub fn send_generated(
        &self,
        count: u64,
        pace: &Pace,
        mut make: impl FnMut(u64) -> Vec<u8>,
    ) -> Result<u64> {
        let pacer = Pacer::new(pace)?;
        let mut sent = 0;
        while sent < count && pacer.wait(sent, Duration::ZERO) {
            self.send(&make(sent))?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// An `AF_PACKET` raw socket opened inside a namespace, bound to one interface, receiving
/// every frame that *arrives* on it (frames the interface sends are skipped).
///
/// VLAN tags that the kernel strips before packet taps are put back (from
/// `PACKET_AUXDATA`), so received frames are byte-for-byte what was on the wire.
#[derive(Debug)]
pub struct RawReceiver {
    fd: OwnedFd,
    iface: String,
}

/// Largest frame the receiver copies; longer ones are truncated.
pub(crate) const RECV_BUF: usize = 65_536 + 64;
/// Upper bound on frames handled by a single receiver call.
const RECV_MAX_FRAMES: usize = 10_000_000;

impl RawReceiver {
    /// Opens the socket on a thread that entered `ns`, bound to `iface` there. Frames that
    /// arrive from then on are queued until read. The queue (64 MiB of kernel memory, about
    /// 100,000 small frames) overflows when more arrive before they are read: for larger
    /// bursts, read on another thread while sending (the receiver is `Sync`, e.g.
    /// `std::thread::scope(|s| s.spawn(|| rx.recv_count(..)))`) and check
    /// [`RawReceiver::drops`].
    pub fn open(ns: &Netns, iface: &str) -> Result<RawReceiver> {
        let fd = ns
            .run(|| -> io::Result<OwnedFd> {
                sys::packet_socket(sys::ifindex(iface)?, libc::ETH_P_ALL as u16)
            })?
            .with_context(|| format!("cannot open a packet socket on {iface} in {}", ns.name()))?;
        Ok(RawReceiver {
            fd,
            iface: iface.to_owned(),
        })
    }

    /// The interface the socket is bound to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Reads one queued incoming frame without waiting.
    fn try_recv(&self, buf: &mut [u8]) -> Result<Option<Vec<u8>>> {
        // Bounded: each pass consumes one queued frame, at most RECV_MAX_FRAMES.
        for _ in 0..RECV_MAX_FRAMES {
            let got = match sys::recv_frame(self.fd.as_fd(), buf) {
                Ok(got) => got,
                // Reported once after the interface went down; not a receive failure.
                Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => continue,
                Err(e) => return Err(e).with_context(|| format!("receive on {}", self.iface)),
            };
            let Some(got) = got else { return Ok(None) };
            if got.pkttype == sys::PACKET_OUTGOING {
                continue;
            }
            let data = &buf[..got.len];
            return Ok(Some(match got.vlan {
                Some((tpid, tci)) if data.len() >= 12 => {
                    let mut frame = Vec::with_capacity(data.len() + 4);
                    frame.extend_from_slice(&data[..12]);
                    frame.extend_from_slice(&tpid.to_be_bytes());
                    frame.extend_from_slice(&tci.to_be_bytes());
                    frame.extend_from_slice(&data[12..]);
                    frame
                }
                _ => data.to_vec(),
            }));
        }
        Ok(None)
    }

    /// The next incoming frame, waiting at most `timeout`. `None` on timeout.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        self.recv_with(&mut vec![0u8; RECV_BUF], timeout)
    }

    /// [`RawReceiver::recv`] with a caller-provided scratch buffer.
    pub(crate) fn recv_with(&self, buf: &mut [u8], timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        // Bounded by `deadline`.
        loop {
            if let Some(frame) = self.try_recv(buf)? {
                return Ok(Some(frame));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            sys::poll_readable(self.fd.as_fd(), deadline - now)
                .with_context(|| format!("poll {}", self.iface))?;
        }
    }

    /// Collects incoming frames until `max_frames` have arrived, none arrived for `idle`, or
    /// `max_duration` passed, whichever comes first.
    pub fn collect(&self, max_frames: usize, idle: Duration, max_duration: Duration) -> Result<Vec<Vec<u8>>> {
        let start = Instant::now();
        let mut buf = vec![0u8; RECV_BUF];
        let mut frames = Vec::new();
        while frames.len() < max_frames.min(RECV_MAX_FRAMES) {
            let left = max_duration.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            match self.recv_with(&mut buf, idle.min(left))? {
                Some(frame) => frames.push(frame),
                None => break,
            }
        }
        Ok(frames)
    }

    /// Counts incoming frames until none arrived for `idle` or `max_duration` passed.
    pub fn recv_count(&self, idle: Duration, max_duration: Duration) -> Result<u64> {
        let start = Instant::now();
        let mut buf = vec![0u8; RECV_BUF];
        let mut count = 0;
        let mut last = Instant::now();
        while count < RECV_MAX_FRAMES as u64 && start.elapsed() < max_duration {
            if self.try_recv(&mut buf)?.is_some() {
                count += 1;
                last = Instant::now();
                continue;
            }
            let wait = idle
                .saturating_sub(last.elapsed())
                .min(max_duration.saturating_sub(start.elapsed()));
            if wait.is_zero() {
                break;
            }
            sys::poll_readable(self.fd.as_fd(), wait).with_context(|| format!("poll {}", self.iface))?;
        }
        Ok(count)
    }

    /// Discards every frame already queued; returns how many there were.
    pub fn drain(&self) -> Result<u64> {
        let mut buf = vec![0u8; RECV_BUF];
        let mut count = 0;
        while count < RECV_MAX_FRAMES as u64 && self.try_recv(&mut buf)?.is_some() {
            count += 1;
        }
        Ok(count)
    }

    /// Frames the socket dropped because its buffer was full since the last call (the kernel
    /// resets the counter on each read).
    pub fn drops(&self) -> Result<u32> {
        let (_, drops) = sys::packet_stats(self.fd.as_fd())
            .with_context(|| format!("PACKET_STATISTICS on {}", self.iface))?;
        Ok(drops)
    }
}

/// The `i`th of many distinct one-packet UDP flows from `src` to `dst`: source ports 1024 to
/// 61023, then the next destination port from 10000, 16 zero bytes of payload.
pub fn distinct_flow(src: &Endpoint, dst: &Endpoint, i: u64) -> Vec<u8> {
    frames::udp(
        src,
        dst,
        false,
        1024 + (i % 60_000) as u16,
        10_000 + (i / 60_000) as u16,
        &[0; 16],
    )
}

/// Payload bytes with a recognisable pattern.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Sends `count` UDP datagrams with `payload_len` payload bytes from `src` to `dst`
/// (ports [`ports::UDP_SRC`] → [`ports::UDP_DST`]). Returns how many were sent.
pub fn udp_burst(
    sender: &RawSender,
    src: &Endpoint,
    dst: &Endpoint,
    v6: bool,
    count: u64,
    payload_len: usize,
    pace: &Pace,
) -> Result<u64> {
    let payload = pattern(payload_len);
    sender.send_generated(count, pace, |_| {
        frames::udp(src, dst, v6, ports::UDP_SRC, ports::UDP_DST, &payload)
    })
}

/// Sends `count` SYN-only segments to `dst:dport`, the n-th from source port
/// `ports::TCP_SYN_SRC_BASE + n % 20000` with a sequence number derived from n.
pub fn tcp_syns(
    sender: &RawSender,
    src: &Endpoint,
    dst: &Endpoint,
    v6: bool,
    dport: u16,
    count: u64,
    pace: &Pace,
) -> Result<u64> {
    sender.send_generated(count, pace, |n| {
        let sport = ports::TCP_SYN_SRC_BASE + (n % 20_000) as u16;
        let seq = (n as u32).wrapping_mul(0x9e37_79b9);
        frames::tcp(src, dst, v6, sport, dport, TCP_SYN, seq, 0, &[])
    })
}

/// Sends `count` echo requests (ICMP or ICMPv6) with id [`ports::ICMP_ID`], sequence numbers
/// 0, 1, ... and a 56-byte payload.
pub fn icmp_echos(
    sender: &RawSender,
    src: &Endpoint,
    dst: &Endpoint,
    v6: bool,
    count: u64,
    pace: &Pace,
) -> Result<u64> {
    let payload = pattern(56);
    sender.send_generated(count, pace, |n| {
        frames::icmp_echo(src, dst, v6, ports::ICMP_ID, n as u16, &payload)
    })
}

/// Sends one SYN to every port in `ports` (from source port [`ports::SWEEP_SRC`]).
pub fn port_sweep(
    sender: &RawSender,
    src: &Endpoint,
    dst: &Endpoint,
    v6: bool,
    ports: std::ops::RangeInclusive<u16>,
    pace: &Pace,
) -> Result<u64> {
    let (first, last) = (*ports.start(), *ports.end());
    if first > last {
        return Ok(0);
    }
    let count = u64::from(last - first) + 1;
    sender.send_generated(count, pace, |n| {
        frames::tcp(
            src,
            dst,
            v6,
            self::ports::SWEEP_SRC,
            first + n as u16,
            TCP_SYN,
            n as u32,
            0,
            &[],
        )
    })
}

/// Size of the pieces a [`tcp_exchange`] client writes and reads back in lock step, so
/// neither side ever blocks on a full socket buffer.
const EXCHANGE_CHUNK: usize = 16 * 1024;

/// Real kernel TCP: a listener in `server` on `addr:port`, and `count` client connections
/// from `client`, one after another, each doing the full handshake, sending `payload_len`
/// bytes (in 16 KiB pieces), reading each piece echoed back and checking it, then closing.
/// Returns the number of bytes echoed (`count * payload_len` on success). Everything is
/// bounded by `timeout`.
pub fn tcp_exchange(
    server: &Netns,
    client: &Netns,
    addr: IpAddr,
    port: u16,
    count: u32,
    payload_len: usize,
    timeout: Duration,
) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let target = SocketAddr::new(addr, port);
    let listener = server
        .run(|| TcpListener::bind(target))?
        .with_context(|| format!("cannot listen on {target} in {}", server.name()))?;
    listener.set_nonblocking(true).context("set_nonblocking")?;
    let client_done = AtomicBool::new(false);

    std::thread::scope(|scope| -> Result<u64> {
        let server_thread = scope.spawn(|| serve_echo(&listener, count, deadline, &client_done));
        let result = client
            .run(|| run_clients(target, count, payload_len, deadline))
            .and_then(|r| r);
        client_done.store(true, Ordering::Relaxed);
        let served = match server_thread.join() {
            Ok(served) => served,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let echoed = result.with_context(|| format!("TCP client {} -> {target}", client.name()))?;
        let served = served.with_context(|| format!("TCP echo server {target} in {}", server.name()))?;
        ensure!(served == count, "server handled {served} of {count} connections");
        Ok(echoed)
    })
}

fn remaining(deadline: Instant) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("timed out");
    }
    Ok(left)
}

/// Accepts up to `count` connections and echoes each until EOF. Returns connections served.
fn serve_echo(
    listener: &TcpListener,
    count: u32,
    deadline: Instant,
    client_done: &AtomicBool,
) -> Result<u32> {
    let mut served = 0;
    let mut buf = vec![0u8; EXCHANGE_CHUNK];
    // Bounded by `count` and by `deadline`.
    while served < count {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if client_done.load(Ordering::Relaxed) {
                    break;
                }
                remaining(deadline)?;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) => return Err(e).context("accept"),
        };
        stream.set_nonblocking(false).context("set_nonblocking")?;
        let mut stream = stream;
        // Bounded: every read either makes progress, hits EOF, or times out at the deadline.
        loop {
            stream
                .set_read_timeout(Some(remaining(deadline)?))
                .context("set_read_timeout")?;
            stream
                .set_write_timeout(Some(remaining(deadline)?))
                .context("set_write_timeout")?;
            let n = stream.read(&mut buf).context("server read")?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n]).context("server write")?;
        }
        served += 1;
    }
    Ok(served)
}

/// Runs `count` echo connections to `target`; returns bytes echoed and verified.
fn run_clients(target: SocketAddr, count: u32, payload_len: usize, deadline: Instant) -> Result<u64> {
    let payload = pattern(payload_len);
    let mut back = vec![0u8; EXCHANGE_CHUNK];
    let mut echoed = 0u64;
    for i in 0..count {
        let mut stream = TcpStream::connect_timeout(&target, remaining(deadline)?)
            .with_context(|| format!("connection {i}: connect"))?;
        stream.set_nodelay(true).context("set_nodelay")?;
        for piece in payload.chunks(EXCHANGE_CHUNK) {
            stream
                .set_write_timeout(Some(remaining(deadline)?))
                .context("set_write_timeout")?;
            stream
                .set_read_timeout(Some(remaining(deadline)?))
                .context("set_read_timeout")?;
            stream
                .write_all(piece)
                .with_context(|| format!("connection {i}: write"))?;
            let back = &mut back[..piece.len()];
            stream
                .read_exact(back)
                .with_context(|| format!("connection {i}: read echo"))?;
            ensure!(back == piece, "connection {i}: echoed bytes differ");
            echoed += piece.len() as u64;
        }
        stream.shutdown(std::net::Shutdown::Write).context("shutdown")?;
        // Wait for the server's FIN so the server has finished with this connection.
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .context("set_read_timeout")?;
        let n = stream
            .read(&mut back)
            .with_context(|| format!("connection {i}: read EOF"))?;
        ensure!(n == 0, "connection {i}: {n} unexpected bytes after the echo");
    }
    Ok(echoed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_stops_at_max_duration() {
        let pacer = Pacer::new(&Pace::rate(1000, Duration::from_millis(50))).expect("pacer");
        let start = Instant::now();
        let mut n = 0;
        while n < 1_000_000 && pacer.wait(n, Duration::ZERO) {
            n += 1;
        }
        assert!((40..=51).contains(&n), "sent {n}");
        assert!(start.elapsed() < Duration::from_millis(200));
        assert!(Pacer::new(&Pace::rate(0, Duration::from_secs(1))).is_err());
    }

    #[test]
    fn pace_default() {
        assert_eq!(
            Pace::default(),
            Pace {
                pps: None,
                max_duration: Duration::from_secs(5)
            }
        );
    }
}
