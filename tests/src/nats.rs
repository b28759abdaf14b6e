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
    child: Option<KillOnDrop>,
}

fn config(dir: &TempDir, users: &[String]) -> String {
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
        "listen: 0.0.0.0:{PORT}\nserver_name: nalab\njetstream {{ store_dir: \"{}\" }}\n\
         authorization {{\n  users: [\n{users}  ]\n}}\n",
        dir.path("js").display()
    )
}

impl Nats {
    /// Creates the namespace `nalab-<pid>-<n>-<tag>-nats`; the server is started by
    /// [`Nats::start`] once the gateways are linked, with a user for each of `users`.
    pub fn new(tag: &str, users: &[&str]) -> Result<Nats> {
        tool("nats-server").context("nats-server not found: run `cargo xtask setup` (Debian nats-server)")?;
        let ns = Netns::new(&format!("{tag}-nats"))?;
        ns.ip(&["link", "set", "dev", "lo", "up"])?;
        Ok(Nats {
            ns,
            dir: TempDir::new(&format!("{tag}-nats")),
            users: users.iter().map(|u| (*u).to_owned()).collect(),
            links: Vec::new(),
            child: None,
        })
    }

    /// Links gateway namespace `gw` to the server over link `n` (`198.18.<n>.0/24`); returns
    /// the server's URL as seen from there.
    pub fn link(&mut self, gw: &Netns, n: u8) -> Result<String> {
        let link = link_sides(n)?;
        veth_link(gw, &link.gw, &self.ns, &link.host, 24, 64)?;
        let url = format!("nats://{}:{PORT}", link.host.ep.ipv4);
        self.links.push(link);
        Ok(url)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start(&mut self) -> Result<()> {
        let nats = tool("nats-server").context("nats-server not found")?;
        let conf = self.dir.path("nats.conf");
        fs::write(&conf, config(&self.dir, &self.users))?;
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
        self.child = Some(KillOnDrop(child));
        let addr: SocketAddr = format!("127.0.0.1:{PORT}").parse()?;
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

    /// Kills the server (its JetStream store stays for the next start).
    pub fn stop(&mut self) {
        self.child = None;
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path("nats.log")).unwrap_or_default()
    }
}
