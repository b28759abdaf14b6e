//! What a capture says about itself: its sha256, its time span, the addresses in it, and the
//! first frame of the attack, read with the agent's own capture reader and header parser (so
//! "a frame" means what `netanom run --pcap` counts as one).
use std::{
    collections::BTreeSet,
    io::Read as _,
    net::IpAddr,
    path::{Path, PathBuf},
};

use netanom::{features::identity::addr, respond::prefix::Cidr, sources::capture::Capture};
use netanom_common::{parse::parse, stats::Event};
use sha2::{Digest as _, Sha256};

use super::manifest::Entry;

/// Who is who in a capture, from its manifest entry.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    /// Sources of the attack (or its command-and-control servers).
    pub attackers: Vec<Cidr>,
    /// What the attack is aimed at.
    pub victims: Vec<Cidr>,
    /// Hosts that must never be alerted on or blocked.
    pub innocents: Vec<Cidr>,
}

fn any_contains(set: &[Cidr], ip: IpAddr) -> bool {
    set.iter().any(|c| c.contains(ip))
}

impl Roles {
    /// The roles an entry names.
    pub fn of(e: &Entry) -> Roles {
        Roles {
            attackers: e.attackers.clone(),
            victims: e.victims.clone(),
            innocents: e.innocents.clone(),
        }
    }

    /// Whether `ip` is one of the attackers.
    pub fn is_attacker(&self, ip: IpAddr) -> bool {
        any_contains(&self.attackers, ip)
    }

    /// Whether `ip` is one of the victims.
    pub fn is_victim(&self, ip: IpAddr) -> bool {
        any_contains(&self.victims, ip)
    }

    /// Innocent: named as such, or a victim (a flooded server must not be blocked either).
    pub fn is_innocent(&self, ip: IpAddr) -> bool {
        any_contains(&self.innocents, ip) || self.is_victim(ip)
    }

    /// Whether traffic from `src` to `dst` belongs to the attack: from or to an attacker, or
    /// toward a victim from anyone not innocent (the spoofed or reflected sources of a flood
    /// that names no attacker).
    pub fn is_attack(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.is_attacker(src)
            || self.is_attacker(dst)
            || (self.is_victim(dst) && !any_contains(&self.innocents, src) && !self.is_victim(src))
    }
}

/// Facts about one capture.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Frames in the file.
    pub frames: u64,
    /// Capture time of the first and the last frame (ns since the Unix epoch).
    pub first_ns: u64,
    /// (The latest timestamp, should frames be out of order.)
    pub last_ns: u64,
    /// The first frame that [`Roles::is_attack`]; `None` when there is none.
    pub attack_start_ns: Option<u64>,
    /// Every source and destination address of an IP frame.
    pub addresses: BTreeSet<IpAddr>,
    /// Frames whose headers the parser found cut short (a snap length too small).
    pub truncated: u64,
}

impl Facts {
    /// Capture time from the first to the last frame, in seconds.
    pub fn duration_s(&self) -> f64 {
        self.last_ns.saturating_sub(self.first_ns) as f64 / 1e9
    }
}

/// What can go wrong reading a capture.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The capture reader refused the file.
    #[error(transparent)]
    Capture(#[from] netanom::sources::capture::CaptureError),
    /// The file could not be read.
    #[error("cannot read {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
}

/// Reads every frame of `path`.
pub fn facts(path: &Path, roles: &Roles) -> Result<Facts, FactsError> {
    let mut cap = Capture::open(path)?;
    let mut f = Facts::default();
    while let Some(frame) = cap.next_frame()? {
        if f.frames == 0 {
            f.first_ns = frame.ts_ns;
        }
        f.frames += 1;
        f.last_ns = f.last_ns.max(frame.ts_ns);
        let parsed = parse(frame.data);
        if parsed.class.event == Some(Event::Truncated) {
            f.truncated += 1;
        }
        let Some(m) = parsed.meta else { continue };
        let (src, dst) = (addr(m.family, &m.src), addr(m.family, &m.dst));
        f.addresses.insert(src);
        f.addresses.insert(dst);
        if f.attack_start_ns.is_none() && roles.is_attack(src, dst) {
            f.attack_start_ns = Some(frame.ts_ns);
        }
    }
    Ok(f)
}

/// Lower-case hex sha256 of a file.
pub fn sha256(path: &Path) -> Result<String, FactsError> {
    let err = |err| FactsError::Read {
        path: path.to_path_buf(),
        err,
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
