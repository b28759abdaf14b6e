//! Where alerts go (`agent.alerts`, `--alerts`): the one alert target type, from the
//! configuration straight to the sink that writes there.
use std::{fmt, io, path::PathBuf, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{discard::Discard, jsonl::JsonLines};
use crate::respond::{AlertError, AlertSink};

/// Where EVE JSON alerts go (`agent.alerts`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AlertTarget {
    /// `""`: no alerts are written.
    Off,
    /// `"-"`: one JSON object per line on stdout.
    #[default]
    Stdout,
    /// Any other string: appended to this file.
    File(PathBuf),
}

impl FromStr for AlertTarget {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<AlertTarget, Self::Err> {
        Ok(match s {
            "" => AlertTarget::Off,
            "-" => AlertTarget::Stdout,
            path => AlertTarget::File(PathBuf::from(path)),
        })
    }
}

impl fmt::Display for AlertTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertTarget::Off => Ok(()),
            AlertTarget::Stdout => f.write_str("-"),
            AlertTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Serialize for AlertTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AlertTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AlertTarget, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse().unwrap_or_else(|never| match never {}))
    }
}

impl AlertTarget {
    /// Opens the sink that writes here: standard output, a file opened for appending (created
    /// if missing), or nothing.
    pub fn open(&self) -> Result<Box<dyn AlertSink>, AlertError> {
        Ok(match self {
            AlertTarget::Off => Box::new(Discard::default()),
            AlertTarget::Stdout => Box::new(JsonLines::new(Box::new(io::stdout()), "standard output")),
            AlertTarget::File(path) => Box::new(JsonLines::append(path)?),
        })
    }

    /// Whether alerts go to standard output (the stats line then goes to stderr).
    pub fn is_stdout(&self) -> bool {
        matches!(self, AlertTarget::Stdout)
    }
}
