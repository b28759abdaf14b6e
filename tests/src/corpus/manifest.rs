//! `tests/corpus/manifest.toml`: one `[[capture]]` table per labelled capture.
//!
//! ```toml
//! [[capture]]
//! file = "nmap-syn.pcap"            # in tests/corpus/, or "shared:pcaps/attacks/..." below ../shared/datasets
//! scenario = "nmap-syn"             # unique; the recorder's scenario for a recorded capture
//! label = "attack"                  # attack | benign
//! tool = "nmap"
//! command = "nmap -sS -T4 -p 1-1000 198.18.3.2"
//! attackers = ["198.18.2.2"]        # addresses or prefixes; sources (or C2 servers) of the attack
//! victims = ["198.18.3.2"]          # what the attack is aimed at
//! innocents = ["198.18.1.2"]        # hosts that must never be alerted on or blocked
//! expected = "block_source"         # block_source | victim_rate_limit | alert_only | none
//! sha256 = "..."
//! description = "..."
//! ```
//!
//! [`Manifest::parse`] checks the labels are consistent (benign captures expect nothing and
//! name no attacker; a `block_source` attack names its attackers, a victim outcome its
//! victims; no address is both attacker and innocent; recorded captures use only the lab's
//! ranges) and says which entry is wrong and how.
use std::{
    collections::HashSet,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use netanom::respond::prefix::Cidr;
use serde::{Deserialize, Serialize};

/// What a capture is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// Only normal traffic: every alert is a false positive.
    Benign,
    /// An attack (possibly beside a benign client).
    Attack,
}

/// What an operator expects the detector to do about the capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// The attacking source is blocked.
    BlockSource,
    /// The victim is reported and the flood's pattern toward it rate-limited (spoofed floods).
    VictimRateLimit,
    /// An alert, no mitigation (floods with no pattern to limit, beacons).
    AlertOnly,
    /// Nothing (benign captures).
    None,
}

impl Expected {
    /// The name used in the manifest and the report.
    pub fn name(self) -> &'static str {
        match self {
            Expected::BlockSource => "block_source",
            Expected::VictimRateLimit => "victim_rate_limit",
            Expected::AlertOnly => "alert_only",
            Expected::None => "none",
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Label::Benign => "benign",
            Label::Attack => "attack",
        })
    }
}

/// One labelled capture.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// A file in the corpus directory, or `shared:<path below ../shared/datasets>`.
    pub file: String,
    /// Unique name; for recorded captures, the recorder's scenario.
    pub scenario: String,
    /// Benign or attack.
    pub label: Label,
    /// The tool that made the traffic.
    pub tool: String,
    /// Its command line (empty when unknown, e.g. a third party's capture).
    pub command: String,
    #[serde(default)]
    /// Sources of the attack, or its command-and-control servers (addresses or prefixes).
    pub attackers: Vec<Cidr>,
    #[serde(default)]
    /// What the attack is aimed at.
    pub victims: Vec<Cidr>,
    #[serde(default)]
    /// Hosts that must never be alerted on or blocked (the benign client).
    pub innocents: Vec<Cidr>,
    /// What the detector should do about it.
    pub expected: Expected,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// What the capture holds, in a sentence or two.
    pub description: String,
}

/// Where an entry's file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// In the corpus directory (recorded in the lab).
    Corpus(PathBuf),
    /// Below the shared data directory's `datasets/`.
    Shared(PathBuf),
}

/// The prefix of [`Entry::file`] for a capture in the shared data directory.
pub const SHARED_PREFIX: &str = "shared:";

/// The lab's address ranges (RFC 2544 benchmarking, RFC 3849 documentation).
pub fn lab_ranges() -> [Cidr; 2] {
    [
        Cidr::from_str("198.18.0.0/15").expect("valid prefix"),
        Cidr::from_str("2001:db8::/32").expect("valid prefix"),
    ]
}

/// Whether `c` lies inside the lab's ranges.
pub fn in_lab(c: &Cidr) -> bool {
    lab_ranges()
        .iter()
        .any(|r| r.len() <= c.len() && r.contains(c.addr()))
}

impl Entry {
    /// Where the file is.
    pub fn location(&self) -> Location {
        match self.file.strip_prefix(SHARED_PREFIX) {
            Some(rest) => Location::Shared(PathBuf::from(rest)),
            None => Location::Corpus(PathBuf::from(&self.file)),
        }
    }

    /// Whether the capture was recorded in the lab (a corpus file).
    pub fn is_recorded(&self) -> bool {
        matches!(self.location(), Location::Corpus(_))
    }

    /// The file's path: `corpus_dir/file`, or `shared_dir/datasets/<path>`; `None` for a shared
    /// capture when there is no shared directory.
    pub fn path(&self, corpus_dir: &Path, shared_dir: Option<&Path>) -> Option<PathBuf> {
        match self.location() {
            Location::Corpus(p) => Some(corpus_dir.join(p)),
            Location::Shared(p) => shared_dir.map(|s| s.join("datasets").join(p)),
        }
    }
}

/// What is wrong with a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read the manifest {path}: {err}")]
    Read {
        /// The manifest.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// The file is not TOML, or not the manifest's format.
    #[error("{path} is not a valid manifest: {err}")]
    Syntax {
        /// The manifest.
        path: PathBuf,
        /// Where and what (line and column).
        err: Box<toml::de::Error>,
    },
    /// One entry is inconsistent.
    #[error("{path}: capture `{scenario}`: {problem}")]
    Entry {
        /// The manifest.
        path: PathBuf,
        /// The entry's scenario.
        scenario: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    capture: Vec<Entry>,
}

/// The parsed, checked manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its captures, in the file's order.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|err| ManifestError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        Manifest::parse(path, &text)
    }

    /// Parses and checks `text` (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let file: File = toml::from_str(text).map_err(|err| ManifestError::Syntax {
            path: path.to_path_buf(),
            err: Box::new(err),
        })?;
        let mut scenarios = HashSet::new();
        let mut files = HashSet::new();
        for e in &file.capture {
            let problem = entry_problem(e)
                .or_else(|| {
                    (!scenarios.insert(e.scenario.clone())).then(|| "the scenario name is used twice".into())
                })
                .or_else(|| {
                    (!files.insert(e.file.clone())).then(|| format!("the file {} is listed twice", e.file))
                });
            if let Some(problem) = problem {
                return Err(ManifestError::Entry {
                    path: path.to_path_buf(),
                    scenario: e.scenario.clone(),
                    problem,
                });
            }
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            entries: file.capture,
        })
    }

    /// The entry of `scenario`.
    pub fn get(&self, scenario: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.scenario == scenario)
    }
}

/// What is wrong with one entry on its own, if anything.
fn entry_problem(e: &Entry) -> Option<String> {
    if e.scenario.is_empty()
        || !e
            .scenario
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Some("the scenario name must be non-empty letters, digits, `-` and `.`".into());
    }
    if let Some(p) = file_problem(e) {
        return Some(p);
    }
    if e.sha256.len() != 64
        || !e
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Some(format!(
            "sha256 `{}` is not 64 lower-case hex digits (write the output of `sha256sum`)",
            e.sha256
        ));
    }
    label_problem(e).or_else(|| address_problem(e))
}

fn file_problem(e: &Entry) -> Option<String> {
    let rel = match e.location() {
        Location::Corpus(p) | Location::Shared(p) => p,
    };
    let escapes = rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)));
    if e.file.is_empty() || escapes {
        return Some(format!(
            "file `{}` must be a relative path inside the corpus directory, or `shared:` and a \
             relative path below the shared datasets directory",
            e.file
        ));
    }
    let ext = rel.extension().and_then(|x| x.to_str()).unwrap_or("");
    (!matches!(ext, "pcap" | "pcapng"))
        .then(|| format!("file `{}` is not a .pcap or .pcapng capture", e.file))
}

fn label_problem(e: &Entry) -> Option<String> {
    match (e.label, e.expected) {
        (Label::Benign, Expected::None) if e.attackers.is_empty() && e.victims.is_empty() => None,
        (Label::Benign, Expected::None) => Some("a benign capture names no attackers or victims".into()),
        (Label::Benign, x) => Some(format!("a benign capture expects `none`, not `{}`", x.name())),
        (Label::Attack, Expected::None) => {
            Some("an attack expects block_source, victim_rate_limit or alert_only, not `none`".into())
        }
        (Label::Attack, Expected::BlockSource) if e.attackers.is_empty() => {
            Some("block_source needs the attackers to block".into())
        }
        (Label::Attack, Expected::VictimRateLimit) if e.victims.is_empty() => {
            Some("victim_rate_limit needs the victims".into())
        }
        (Label::Attack, _) if e.attackers.is_empty() && e.victims.is_empty() => {
            Some("an attack names its attackers, its victims, or both".into())
        }
        (Label::Attack, _) => None,
    }
}

fn address_problem(e: &Entry) -> Option<String> {
    if let Some(a) = e
        .attackers
        .iter()
        .find(|a| e.innocents.iter().any(|i| a.overlaps(i)))
    {
        return Some(format!("{a} is both an attacker and an innocent"));
    }
    if !e.is_recorded() {
        return None;
    }
    let all = e.attackers.iter().chain(&e.victims).chain(&e.innocents);
    all.clone().find(|c| !in_lab(c)).map(|c| {
        format!(
            "{c} is outside the lab's ranges (198.18.0.0/15, 2001:db8::/32): recorded captures use only those"
        )
    })
}
