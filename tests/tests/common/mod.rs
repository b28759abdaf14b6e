//! Helpers for tests that run the real `netanom` binary inside a lab namespace.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, ChildStderr, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use netanom_lab::{Netns, StateDirs};

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
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawning {:?}: {e}", agent_bin()))?;
        let stderr: ChildStderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent {
            child,
            dirs,
            stderr_lines: rx,
            stderr_seen: Vec::new(),
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
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                code = st.code();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            use std::io::Read as _;
            let _ = o.read_to_string(&mut out);
        }
        // Give the reader thread a moment to deliver the last lines.
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

/// Whether any XDP program is attached to `iface` in `ns`.
pub fn xdp_attached(ns: &Netns, iface: &str) -> bool {
    ns.ip(&["-d", "link", "show", "dev", iface])
        .map(|s| s.contains("xdp") || s.contains("prog/xdp"))
        .unwrap_or(false)
}
