//! The fleet lab's NATS: a real `nats-server -js` (Debian's `nats-server`) in a namespace of
//! its own, linked to each gateway namespace that joins, with authentication on: one user per
//! gateway, allowed to publish only its own subjects (and JetStream's API).
//!
//! ```text
//!   gateway A's gw namespace                NATS namespace
//!   198.18.11.1 ────────veth────────── 198.18.11.2 ┐
//!   gateway B's: 198.18.12.1 ──veth─── 198.18.12.2 ├ nats-server :4222, JetStream in a scratch dir
//!   ...                                            ┘
//! ```
//!
//! The store survives [`Nats::stop`] and [`Nats::start`] (a restarted server keeps its
//! streams). The server is killed with the guard, and its namespace deleted.
//!
//! [`Nats::cluster`] runs a JetStream cluster of several nodes in the same namespace instead
//! (node `i` on port 4222 + `i`, routes between them on 127.0.0.1:6222 + `i`), each a process
//! of its own that [`Nats::stop_node`] kills.
use std::{
    fs,
    net::{SocketAddr, TcpStream},
    process::Stdio,
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

/// The client port.
pub const PORT: u16 = 4222;

/// The password of gateway `id`'s NATS user.
pub fn password(id: &str) -> String {
    format!("lab-{id}-secret")
}

/// nats-server in its own namespace; killed on drop.
pub struct Nats {
    /// The server's namespace.
    pub ns: Netns,
    dir: TempDir,
    /// The gateways' NATS users.
    users: Vec<String>,
    links: Vec<Link>,
    /// One per node.
    children: Vec<Option<KillOnDrop>>,
}

/// Node `i`'s cluster block, for a cluster of `nodes` (none for one node).
fn cluster_block(i: usize, nodes: usize) -> String {
    if nodes < 2 {
        return String::new();
    }
    let routes: Vec<String> = (0..nodes)
        .filter(|&j| j != i)
        .map(|j| format!("nats-route://127.0.0.1:{}", 6222 + j))
        .collect();
    format!(
        "cluster {{ name: nalab, listen: 127.0.0.1:{}, routes: [{}] }}\n",
        6222 + i,
        routes.join(", ")
    )
}

fn config(dir: &TempDir, users: &[String], i: usize, nodes: usize) -> String {
    let users: String = users
        .iter()
        .map(|u| {
            format!(
                "    {{ user: \"{u}\", password: \"{}\", permissions: {{ publish: [\"netanom.decisions.{u}\", \
                 \"netanom.alerts.{u}\", \"netanom.heartbeat.{u}\", \"$JS.>\", \"_INBOX.>\"], subscribe: [\">\"] }} }}\n",
                password(u)
            )
        })
        .collect();
    format!(
        "listen: 0.0.0.0:{}\nserver_name: nalab-{i}\njetstream {{ store_dir: \"{}\" }}\n{}\
         authorization {{\n  users: [\n{users}  ]\n}}\n",
        usize::from(PORT) + i,
        dir.path(&format!("js-{i}")).display(),
        cluster_block(i, nodes)
    )
}

impl Nats {
    /// Creates the namespace `nalab-<pid>-<n>-<tag>-nats`; the server is started by
    /// [`Nats::start`] once the gateways are linked, with a user for each of `users`.
    pub fn new(tag: &str, users: &[&str]) -> Result<Nats> {
        Nats::cluster(tag, users, 1)
    }

    /// [`Nats::new`] with a JetStream cluster of `nodes` servers.
    pub fn cluster(tag: &str, users: &[&str], nodes: usize) -> Result<Nats> {
        tool("nats-server").context("nats-server not found: run `cargo xtask setup` (Debian nats-server)")?;
        let ns = Netns::new(&format!("{tag}-nats"))?;
        ns.ip(&["link", "set", "dev", "lo", "up"])?;
        Ok(Nats {
            ns,
            dir: TempDir::new(&format!("{tag}-nats")),
            users: users.iter().map(|u| (*u).to_owned()).collect(),
            links: Vec::new(),
            children: (0..nodes.max(1)).map(|_| None).collect(),
        })
    }

    /// Links gateway namespace `gw` to the server over link `n` (`198.18.<n>.0/24`); returns
    /// every node's URL as seen from there (one for a single server).
    pub fn link(&mut self, gw: &Netns, n: u8) -> Result<Vec<String>> {
        let link = link_sides(n)?;
        veth_link(gw, &link.gw, &self.ns, &link.host, 24, 64)?;
        let urls = (0..self.children.len())
            .map(|i| format!("nats://{}:{}", link.host.ep.ipv4, usize::from(PORT) + i))
            .collect();
        self.links.push(link);
        Ok(urls)
    }

    /// Starts every node that is not running and waits until each accepts connections.
    pub fn start(&mut self) -> Result<()> {
        for i in 0..self.children.len() {
            if self.children[i].is_none() {
                self.start_node(i)?;
            }
        }
        Ok(())
    }

    /// Starts node `i` and waits until it accepts connections.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let nats = tool("nats-server").context("nats-server not found")?;
        let conf = self.dir.path(&format!("nats-{i}.conf"));
        fs::write(&conf, config(&self.dir, &self.users, i, self.children.len()))?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path("nats.log"))?;
        let child = self
            .ns
            .command(nats)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nats-server")?;
        self.children[i] = Some(KillOnDrop(child));
        let addr: SocketAddr = format!("127.0.0.1:{}", usize::from(PORT) + i).parse()?;
        let answers = || {
            self.ns
                .run(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
                .unwrap_or(false)
                .then_some(())
        };
        if wait_until(Duration::from_secs(5), answers).is_none() {
            bail!("nats-server did not come up: {}", self.log());
        }
        Ok(())
    }

    /// Kills every node (their JetStream stores stay for the next start).
    pub fn stop(&mut self) {
        for c in &mut self.children {
            *c = None;
        }
    }

    /// Kills node `i` (as a crash).
    pub fn stop_node(&mut self, i: usize) {
        if let Some(c) = self.children.get_mut(i) {
            *c = None;
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path("nats.log")).unwrap_or_default()
    }
}
