//! The agent under test: the real `netanom` binary started inside a lab namespace, its
//! output read all along, stopped (or killed) with the test; and the operator's commands run
//! beside it.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::PathBuf,
    process::{Child, ChildStderr, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{Netns, Pair, StateDirs, Topology};

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
    /// The agent process.
    pub child: Child,
    /// The pin and state directories the agent was given when the test named none.
    pub dirs: Option<StateDirs>,
    /// Lines of stderr, as the reader thread delivers them.
    pub stderr_lines: mpsc::Receiver<String>,
    /// Lines of stderr seen so far.
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
        cmd.env(
            "RUST_LOG",
            std::env::var("NETANOM_LAB_LOG").unwrap_or_else(|_| "info".into()),
        );
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
pub fn lab_setup(tag: &str) -> Option<(Pair, StateDirs)> {
    if !crate::require_root() {
        eprintln!("skipped: needs root (namespaces, XDP, bpffs)");
        return None;
    }
    crate::sweep_leftovers().expect("sweeping leftover namespaces");
    crate::sweep_state_leftovers();
    let dirs = StateDirs::new(tag);
    std::fs::create_dir_all(&dirs.state_dir).expect("creating the state directory");
    Some((Pair::new(tag).expect("creating the lab pair"), dirs))
}

/// The agent on the topology's agent interfaces with `dirs`, JSON stats every 0.5 s, no
/// metrics endpoint unless `extra` names one; then `extra`.
pub fn start_agent(lab: &impl Topology, dirs: &StateDirs, extra: &[&str]) -> Agent {
    let ifaces = lab.agent_ifaces();
    let mut args = Vec::new();
    for i in &ifaces {
        args.extend(["--iface", *i]);
    }
    args.extend([
        "--pin-dir",
        dirs.pin(),
        "--state-dir",
        dirs.state(),
        "--stats-format",
        "json",
        "--stats-interval",
        "0.5",
    ]);
    args.extend_from_slice(extra);
    if !extra.contains(&"--metrics-addr") {
        args.push("--no-metrics");
    }
    Agent::start(lab.agent_ns(), &args).expect("starting the agent")
}

/// Whether any XDP program is attached to `iface` in `ns`.
pub fn xdp_attached(ns: &Netns, iface: &str) -> bool {
    ns.ip(&["-d", "link", "show", "dev", iface])
        .map(|s| s.contains("xdp") || s.contains("prog/xdp"))
        .unwrap_or(false)
}

/// `netanom ARGS` in the agent's namespace; returns (exit code, stdout, stderr).
pub fn netanom_in(lab: &impl Topology, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = lab.agent_ns().command(agent_bin());
    cmd.args(args);
    run_to_end(cmd)
}

/// `netanom ARGS` in the agent's namespace, which must succeed and print JSON.
pub fn netanom_json(lab: &impl Topology, args: &[&str]) -> Value {
    let (code, out, err) = netanom_in(lab, args);
    assert_eq!(code, Some(0), "netanom {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("netanom {args:?} printed no JSON ({e}): {out}"))
}

/// `netanom block list --json [--all]`: the entries.
pub fn block_list(lab: &impl Topology, dirs: &StateDirs, all: bool) -> Vec<Value> {
    let mut args = vec!["block", "list", "--json", "--pin-dir", dirs.pin()];
    if all {
        args.push("--all");
    }
    netanom_json(lab, &args).as_array().cloned().unwrap_or_default()
}

/// The `block list --json [--all]` entry of exactly `prefix`, if any.
pub fn block_of(lab: &impl Topology, dirs: &StateDirs, prefix: &str, all: bool) -> Option<Value> {
    block_list(lab, dirs, all)
        .into_iter()
        .find(|b| b["prefix"] == prefix)
}

/// `netanom status --json` for the agent using `dirs`.
pub fn status_json(lab: &impl Topology, dirs: &StateDirs) -> Value {
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

/// Panics if an entry of the `block list --json` output `list` covers a host the topology
/// calls innocent.
pub fn assert_innocents_not_blocked(lab: &impl Topology, list: &[Value]) {
    for who in lab.innocents() {
        let who = who.to_string();
        let bad = list.iter().find(|b| {
            b["prefix"]
                .as_str()
                .is_some_and(|p| p.split('/').next() == Some(who.as_str()))
        });
        assert!(bad.is_none(), "{who} was blocked: {bad:?}");
    }
}
