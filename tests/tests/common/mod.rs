//! Helpers for tests that run the real `netanom` binary inside a lab namespace.
#![allow(dead_code)] // Each test binary uses a different subset.

pub mod deploy;
pub mod prometheus;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use netanom_lab::{Endpoint, Netns, Pace, Pair, RawReceiver, RawSender, StateDirs, traffic};
use serde_json::Value;

/// The agent binary: $NETANOM_BIN (set by `cargo xtask test`), else target/debug/netanom.
pub fn agent_bin() -> PathBuf {
    std::env::var_os("NETANOM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target/debug/netanom")
        })
}

/// A running agent. Drop kills it if the test did not stop it.
pub struct Agent {
    pub child: Child,
    /// The pin and state directories the agent was given when the test named none.
    pub dirs: Option<StateDirs>,
    pub stderr_lines: mpsc::Receiver<String>,
    pub stderr_seen: Vec<String>,
    /// Everything the agent printed on stdout so far. A thread reads the pipe all along: an
    /// unread pipe fills up (64 KiB, about 20 s of JSON counters at 0.5 s) and then blocks
    /// the agent.
    pub stdout: Arc<Mutex<String>>,
    stdout_reader: Option<JoinHandle<()>>,
}

impl Agent {
    /// Starts `netanom run ARGS` inside `ns` and waits for its "ready" line.
    ///
    /// Unless `args` name them, the agent gets its own pin and state directories (removed with
    /// it) and writes no alerts, so that counters stay on stdout.
    pub fn start(ns: &Netns, args: &[&str]) -> Result<Agent, String> {
        let mut cmd = ns.command(agent_bin());
        cmd.arg("run").args(args);
        let dirs = (!args.contains(&"--pin-dir")).then(|| StateDirs::new("agent"));
        if let Some(d) = &dirs {
            cmd.args(["--pin-dir", d.pin(), "--state-dir", d.state()]);
        }
        if !args.contains(&"--alerts") {
            cmd.args(["--alerts", ""]);
        }
        cmd.env("RUST_LOG", "info");
        let mut agent = Agent::spawn(cmd)?;
        agent.dirs = dirs;
        Ok(agent)
    }

    /// Starts `cmd` (an agent, however it is wrapped: the process must become the agent, so
    /// that signals reach it) and waits for its "ready" line.
    pub fn spawn(mut cmd: Command) -> Result<Agent, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawning {:?}: {e}", cmd.get_program()))?;
        let stderr: ChildStderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = Arc::new(Mutex::new(String::new()));
        let stdout_reader = child.stdout.take().map(|mut pipe| {
            let buf = Arc::clone(&stdout);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                // Ends at EOF (the agent exited) or on a read error.
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    buf.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            })
        });
        let mut agent = Agent {
            child,
            dirs: None,
            stderr_lines: rx,
            stderr_seen: Vec::new(),
            stdout,
            stdout_reader,
        };
        agent.wait_for_stderr("netanom: ready", Duration::from_secs(20))?;
        Ok(agent)
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.stderr_lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.stderr_seen.push(line);
                    if hit {
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        self.drain();
                        return Err(format!(
                            "agent exited ({st}) before `{needle}`: {:?}",
                            self.stderr_seen
                        ));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.drain();
        Err(format!(
            "no `{needle}` within {timeout:?}; stderr: {:?}",
            self.stderr_seen
        ))
    }

    fn drain(&mut self) {
        while let Ok(l) = self.stderr_lines.try_recv() {
            self.stderr_seen.push(l);
        }
    }

    /// Sends `signal`, waits (bounded) for exit; returns (exit code, stdout, stderr lines).
    pub fn stop(mut self, signal: i32) -> (Option<i32>, String, Vec<String>) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut code = None;
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                code = st.code();
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader reaches EOF once the agent has exited (it has no children holding the
        // pipe); otherwise take what was read so far.
        if exited && let Some(reader) = self.stdout_reader.take() {
            let _ = reader.join();
        }
        let out = std::mem::take(&mut *self.stdout.lock().unwrap_or_else(|e| e.into_inner()));
        // Give the stderr reader thread a moment to deliver the last lines.
        std::thread::sleep(Duration::from_millis(50));
        self.drain();
        (code, out, std::mem::take(&mut self.stderr_seen))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // `dirs` drops after this: its pins (a killed agent's XDP link included) go with it.
    }
}

/// Runs `netanom ARGS` to completion (bounded) and returns (exit code, stdout, stderr).
pub fn run_to_end(mut cmd: Command) -> (Option<i32>, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn netanom");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A lab pair and its agent's state directories (created), after sweeping what crashed runs
/// left; `None` (test skipped) without root.
#[allow(dead_code)]
pub fn lab_setup(tag: &str) -> Option<(Pair, StateDirs)> {
    if !netanom_lab::require_root() {
        eprintln!("skipped: needs root (namespaces, XDP, bpffs)");
        return None;
    }
    netanom_lab::sweep_leftovers().unwrap();
    netanom_lab::sweep_state_leftovers();
    let dirs = StateDirs::new(tag);
    std::fs::create_dir_all(&dirs.state_dir).unwrap();
    Some((Pair::new(tag).unwrap(), dirs))
}

/// The agent on a's interface with `dirs`, JSON stats every 0.5 s, no metrics endpoint
/// unless `extra` names one; then `extra`.
#[allow(dead_code)]
pub fn start_lab_agent(lab: &Pair, dirs: &StateDirs, extra: &[&str]) -> Agent {
    let iface = lab.a_side.iface.clone();
    let mut args = vec![
        "--iface",
        &iface,
        "--pin-dir",
        dirs.pin(),
        "--state-dir",
        dirs.state(),
        "--stats-format",
        "json",
        "--stats-interval",
        "0.5",
    ];
    args.extend_from_slice(extra);
    if !extra.contains(&"--metrics-addr") {
        args.push("--no-metrics");
    }
    Agent::start(&lab.a, &args).unwrap()
}

/// Runs `attack` on a thread while polling `done` every 50 ms (for at most 5 s); returns how
/// long after the attack's start `done` first held.
#[allow(dead_code)]
pub fn time_until(attack: impl FnOnce() + Send, mut done: impl FnMut() -> bool) -> Option<Duration> {
    std::thread::scope(|s| {
        let t0 = Instant::now();
        s.spawn(attack);
        let deadline = t0 + Duration::from_secs(5);
        while Instant::now() < deadline {
            if done() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
}

/// Whether any XDP program is attached to `iface` in `ns`.
pub fn xdp_attached(ns: &Netns, iface: &str) -> bool {
    ns.ip(&["-d", "link", "show", "dev", iface])
        .map(|s| s.contains("xdp") || s.contains("prog/xdp"))
        .unwrap_or(false)
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
pub fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An attacker on b's side of the lab: b's interface and MAC, address 198.18.0.`last_octet`.
pub fn attacker(lab: &Pair, last_octet: u8) -> Endpoint {
    let mut e = lab.b_side.ep;
    e.ipv4 = Ipv4Addr::new(198, 18, 0, last_octet);
    e
}

/// `netanom ARGS` in `lab.a`; returns (exit code, stdout, stderr).
pub fn netanom_in(lab: &Pair, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = lab.a.command(agent_bin());
    cmd.args(args);
    run_to_end(cmd)
}

/// `netanom ARGS` in `lab.a`, which must succeed and print JSON.
pub fn netanom_json(lab: &Pair, args: &[&str]) -> Value {
    let (code, out, err) = netanom_in(lab, args);
    assert_eq!(code, Some(0), "netanom {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("netanom {args:?} printed no JSON ({e}): {out}"))
}

/// `netanom block list --json [--all]`: the entries.
pub fn block_list(lab: &Pair, dirs: &StateDirs, all: bool) -> Vec<Value> {
    let mut args = vec!["block", "list", "--json", "--pin-dir", dirs.pin()];
    if all {
        args.push("--all");
    }
    netanom_json(lab, &args).as_array().cloned().unwrap_or_default()
}

/// The `block list --json [--all]` entry of exactly `prefix`, if any.
pub fn block_of(lab: &Pair, dirs: &StateDirs, prefix: &str, all: bool) -> Option<Value> {
    block_list(lab, dirs, all)
        .into_iter()
        .find(|b| b["prefix"] == prefix)
}

/// `netanom status --json` for the agent using `dirs`.
pub fn status_json(lab: &Pair, dirs: &StateDirs) -> Value {
    netanom_json(
        lab,
        &[
            "status",
            "--json",
            "--pin-dir",
            dirs.pin(),
            "--state-dir",
            dirs.state(),
        ],
    )
}

/// Sends `count` UDP datagrams from `src` (on b's side) to a's address; returns how many
/// a's interface received from `src` (after XDP: dropped frames never reach a packet socket).
pub fn udp_through(lab: &Pair, src: &Endpoint, count: u64) -> u64 {
    let rx = RawReceiver::open(&lab.a, &lab.a_side.iface).unwrap();
    rx.drain().unwrap();
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let pace = Pace::rate(2_000, Duration::from_secs(5));
    traffic::udp_burst(&tx, src, &lab.a_side.ep, false, count, 32, &pace).unwrap();
    let frames = rx
        .collect(
            count as usize * 4 + 64,
            Duration::from_millis(300),
            Duration::from_secs(5),
        )
        .unwrap();
    let want = src.ipv4.octets();
    frames
        .iter()
        .filter(|f| f.len() > 34 && f[12..14] == [0x08, 0x00] && f[26..30] == want)
        .count() as u64
}

/// A UDP flood from every source in `srcs` at once (frames interleaved), `pps_each` frames
/// per second from each, for `duration`. Returns how many frames were sent.
pub fn udp_flood(lab: &Pair, srcs: &[Endpoint], pps_each: u32, duration: Duration) -> u64 {
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let n = srcs.len() as u64;
    let total = (u64::from(pps_each) * n) as f64 * duration.as_secs_f64();
    let pace = Pace::rate(pps_each * n as u32, duration + Duration::from_millis(500));
    let payload = traffic::pattern(64);
    let dst = lab.a_side.ep;
    tx.send_generated(total as u64, &pace, |i| {
        let src = &srcs[(i % n) as usize];
        netanom_lab::frames::udp(src, &dst, false, 40_000, 9, &payload)
    })
    .unwrap()
}

/// `count` SYNs to a's port 80 from `sources` spoofed addresses in 198.19.0.0/16 (sent from
/// b's interface, the sources taking turns), paced by `pace`. Returns how many were sent.
pub fn spoofed_syn_flood(lab: &Pair, count: u64, sources: u16, pace: &Pace) -> u64 {
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let (base, dst) = (lab.b_side.ep, lab.a_side.ep);
    let n = u64::from(sources.max(1));
    tx.send_generated(count, pace, |i| {
        let mut src = base;
        let k = (i % n) as u16;
        src.ipv4 = Ipv4Addr::new(198, 19, (k >> 8) as u8, (k & 0xff) as u8);
        netanom_lab::frames::tcp(
            &src,
            &dst,
            false,
            1024 + (i / n) as u16,
            80,
            0x02,
            i as u32,
            0,
            &[],
        )
    })
    .unwrap()
}

/// The EVE alerts written to `path` so far (one JSON object per line).
pub fn read_alerts(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("alert line is not JSON ({e}): {l}")))
        .collect()
}

/// `GET target` over HTTP/1.0 to 127.0.0.1:port inside `ns` (the socket is made on a thread
/// that entered the namespace). Returns (status, head, body).
pub fn http_get(
    ns: &Netns,
    port: u16,
    target: &str,
    accept: Option<&str>,
) -> Result<(u16, String, String), String> {
    let request = format!(
        "GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{}\r\n",
        accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default()
    );
    ns.run(move || -> Result<(u16, String, String), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| format!("receive: {e}"))?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP head in {raw:?}"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        Ok((status, head.to_owned(), body.to_owned()))
    })
    .map_err(|e| format!("{e:#}"))?
}

/// The value of the sample `series` (name with labels, as exposed) in a text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}
