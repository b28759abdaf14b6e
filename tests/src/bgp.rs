//! The BGP lab: BIRD 2 (Debian's `bird2`) as the upstream router, in a namespace of its own
//! linked to the agent's, and GoBGP's `gobgpd` beside the agent, peering with it. The agent
//! announces through gobgpd's API ([`API`]); the tests read what BIRD learnt.
//!
//! ```text
//!   agent's namespace                              upstream namespace
//!   gobgpd AS 64513, API 127.0.0.1:50051
//!   198.18.4.1, 2001:db8:4::1 ──────veth────── 198.18.4.2, 2001:db8:4::2   BIRD AS 64512
//! ```
//!
//! - BIRD is passive and gobgpd retries every second, so a restarted gobgpd is back within
//!   seconds. The session carries IPv4 and IPv6 unicast and FlowSpec.
//! - Blackhole routes land in `master4`/`master6`: their next hops ([`DISCARD_V4`],
//!   [`DISCARD_V6`]) resolve recursively through static blackhole routes, as an RTBH router's
//!   discard next hop does. FlowSpec rules land in `flowtab4`/`flowtab6`.
//! - BIRD exports nothing and has no kernel protocol: no routing table in the lab changes.
//! - Both daemons write their logs and sockets in a scratch directory and are killed with the
//!   guard that started them.
use std::{
    fs,
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    Link, Netns,
    files::TempDir,
    gateway::link_sides,
    netns::veth_link,
    servers::{KillOnDrop, tool},
    timing::wait_until,
};

/// The upstream router's AS.
pub const UPSTREAM_AS: u32 = 64512;
/// The speaker's (gobgpd's) AS.
pub const SPEAKER_AS: u32 = 64513;
/// gobgpd's API, in the agent's namespace.
pub const API: &str = "127.0.0.1:50051";
/// The discard next hops BIRD routes to a blackhole.
pub const DISCARD_V4: &str = "198.18.255.1";
/// The IPv6 discard next hop.
pub const DISCARD_V6: &str = "2001:db8:ff::1";

/// BIRD in its own namespace, peering with the speaker at the agent's end of the link.
pub struct Upstream {
    /// The upstream namespace.
    pub ns: Netns,
    /// `gw`: the agent's end (198.18.4.1), `host`: BIRD's (198.18.4.2).
    pub link: Link,
    dir: TempDir,
    _bird: KillOnDrop,
}

fn bird_config(link: &Link, log: &str) -> String {
    let (me, peer) = (link.host.ep.ipv4, link.gw.ep.ipv4);
    format!(
        r#"router id {me};
log "{log}" all;
protocol device {{ }}
flow4 table flowtab4;
flow6 table flowtab6;
protocol static discard4 {{ ipv4; route {DISCARD_V4}/32 blackhole; }}
protocol static discard6 {{ ipv6; route {DISCARD_V6}/128 blackhole; }}
protocol bgp speaker {{
  local {me} as {UPSTREAM_AS};
  neighbor {peer} as {SPEAKER_AS};
  passive on;
  hold time 9;
  error wait time 1, 2;
  ipv4 {{ import all; export none; gateway recursive; igp table master4; }};
  ipv6 {{ import all; export none; gateway recursive; igp table master6; }};
  flow4 {{ table flowtab4; import all; export none; }};
  flow6 {{ table flowtab6; import all; export none; }};
}}
"#
    )
}

impl Upstream {
    /// Creates the namespace `nalab-<pid>-<n>-<tag>-up`, its link to `agent_ns` and a running
    /// BIRD (its control socket answering).
    pub fn new(agent_ns: &Netns, tag: &str) -> Result<Upstream> {
        let bird = tool("bird").context("bird not found: run `cargo xtask setup` (Debian bird2)")?;
        let ns = Netns::new(&format!("{tag}-up"))?;
        let link = link_sides(4)?;
        veth_link(agent_ns, &link.gw, &ns, &link.host, 24, 64)?;
        let dir = TempDir::new(&format!("{tag}-bird"));
        let log = dir.path("bird.log");
        let conf = dir.path("bird.conf");
        fs::write(&conf, bird_config(&link, &log.display().to_string()))?;
        let child = ns
            .command(bird)
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(dir.path("bird.ctl"))
            .arg("-P")
            .arg(dir.path("bird.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path("bird.stderr"))?)
            .spawn()
            .context("starting bird")?;
        let up = Upstream {
            ns,
            link,
            dir,
            _bird: KillOnDrop(child),
        };
        if wait_until(Duration::from_secs(5), || up.birdc(&["show", "status"]).ok()).is_none() {
            bail!("bird did not answer on its control socket: {}", up.log());
        }
        Ok(up)
    }

    /// `birdc ARGS` on this BIRD's control socket: its output.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let birdc = tool("birdc").context("birdc not found")?;
        let out = Command::new(birdc)
            .arg("-s")
            .arg(self.dir.path("bird.ctl"))
            .args(args)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.contains("Unable to connect") {
            bail!("birdc {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(text)
    }

    /// `birdc show route all table TABLE` (empty when BIRD does not answer).
    pub fn routes(&self, table: &str) -> String {
        self.birdc(&["show", "route", "all", "table", table])
            .unwrap_or_default()
    }

    /// Each route of `table` learnt from the speaker: its first line (the network, or the
    /// FlowSpec rule) and its attribute lines.
    pub fn learnt(&self, table: &str) -> Vec<(String, String)> {
        let text = self.routes(table);
        let mut out: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.starts_with(char::is_whitespace) {
                if let Some((_, attrs)) = out.last_mut() {
                    attrs.push_str(line.trim());
                    attrs.push('\n');
                }
            } else if line.contains("[speaker ") {
                out.push((line.to_owned(), String::new()));
            } else {
                // Another protocol's route, or a table header: ends the previous route.
                out.push((String::new(), String::new()));
            }
        }
        out.retain(|(l, _)| !l.is_empty());
        out
    }

    /// The networks (or FlowSpec rules) of `table` learnt from the speaker.
    pub fn learnt_networks(&self, table: &str) -> Vec<String> {
        self.learnt(table)
            .into_iter()
            .map(|(l, _)| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect()
    }

    /// Whether the session with the speaker is established.
    pub fn established(&self) -> bool {
        self.birdc(&["show", "protocols", "speaker"])
            .is_ok_and(|s| s.contains("Established"))
    }

    /// BIRD's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path("bird.log")).unwrap_or_default()
    }
}

/// gobgpd in the agent's namespace, its API on [`API`]; killed on drop.
pub struct GoBgpd {
    dir: TempDir,
    /// With a configuration peering with the upstream router; without, gobgpd serves its API
    /// but has no BGP running and refuses every route.
    peering: bool,
    child: Option<KillOnDrop>,
}

fn gobgpd_config(up: &Link) -> String {
    let families: String = ["ipv4-unicast", "ipv6-unicast", "ipv4-flowspec", "ipv6-flowspec"]
        .iter()
        .map(|f| {
            format!(
                "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{f}\"\n"
            )
        })
        .collect();
    format!(
        "[global.config]\n  as = {SPEAKER_AS}\n  router-id = \"{}\"\n  port = -1\n\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {UPSTREAM_AS}\n\
         \x20 [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = 9\n    \
         keepalive-interval = 3\n    idle-hold-time-after-reset = 1\n{families}",
        up.gw.ep.ipv4, up.host.ep.ipv4
    )
}

impl GoBgpd {
    /// Starts gobgpd in `ns` (the agent's namespace), peering with `upstream` when given, and
    /// waits until its API accepts connections.
    pub fn start(ns: &Netns, upstream: Option<&Upstream>, tag: &str) -> Result<GoBgpd> {
        let dir = TempDir::new(&format!("{tag}-gobgpd"));
        if let Some(up) = upstream {
            fs::write(dir.path("gobgpd.toml"), gobgpd_config(&up.link))?;
        }
        let mut g = GoBgpd {
            dir,
            peering: upstream.is_some(),
            child: None,
        };
        g.spawn(ns)?;
        Ok(g)
    }

    fn spawn(&mut self, ns: &Netns) -> Result<()> {
        let gobgpd = tool("gobgpd").context("gobgpd not found: run `cargo xtask setup` (Debian gobgpd)")?;
        let mut cmd = ns.command(gobgpd);
        if self.peering {
            cmd.arg("-f").arg(self.dir.path("gobgpd.toml"));
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path("gobgpd.log"))?;
        let child = cmd
            .args(["--api-hosts", API, "--pprof-disable", "--log-plain"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting gobgpd")?;
        self.child = Some(KillOnDrop(child));
        let api: SocketAddr = API.parse()?;
        let answers = || {
            ns.run(|| TcpStream::connect_timeout(&api, Duration::from_millis(200)).is_ok())
                .unwrap_or(false)
                .then_some(())
        };
        if wait_until(Duration::from_secs(5), answers).is_none() {
            bail!("gobgpd's API did not come up: {}", self.log());
        }
        Ok(())
    }

    /// Kills gobgpd (its routes go with it, as in a crash).
    pub fn stop(&mut self) {
        self.child = None;
    }

    /// Kills gobgpd and starts it again, with no routes.
    pub fn restart(&mut self, ns: &Netns) -> Result<()> {
        self.stop();
        self.spawn(ns)
    }

    /// From now on (at the next restart) with, or without, the configuration peering with
    /// `upstream`.
    pub fn set_peering(&mut self, upstream: Option<&Upstream>) -> Result<()> {
        if let Some(up) = upstream {
            fs::write(self.dir.path("gobgpd.toml"), gobgpd_config(&up.link))?;
        }
        self.peering = upstream.is_some();
        Ok(())
    }

    /// `gobgp ARGS` against this gobgpd (in `ns`): its output, or why it failed.
    pub fn cli(&self, ns: &Netns, args: &[&str]) -> Result<String> {
        let gobgp = tool("gobgp").context("gobgp not found (Debian gobgpd)")?;
        let (host, port) = API.split_once(':').unwrap_or((API, "50051"));
        let out = ns
            .command(gobgp)
            .args(["-u", host, "-p", port])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("gobgp {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// gobgpd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path("gobgpd.log")).unwrap_or_default()
    }
}
