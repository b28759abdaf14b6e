//! What the announcer needs of a BGP speaker: the routes it holds for netanom, adding and
//! withdrawing one, and its peers. [`super::gobgp::GoBgp`] is the real one; the unit tests
//! use one in memory.
use std::net::IpAddr;

use thiserror::Error;

use super::route::Route;

/// A route the speaker holds for netanom, with the speaker's own form of it (to withdraw it
/// exactly as it is held).
#[derive(Clone, Debug)]
pub struct Held<P> {
    pub route: Route,
    pub path: P,
}

/// A BGP speaker netanom announces through.
#[allow(async_fn_in_trait)]
pub trait Speaker {
    /// The speaker's form of a held route.
    type Path;
    /// Every route it originates that netanom would have made (netanom's own, from this run
    /// or an earlier one).
    async fn held(&mut self) -> Result<Vec<Held<Self::Path>>, SpeakerError>;
    /// Announces `r`, replacing a route with the same key.
    async fn add(&mut self, r: &Route) -> Result<(), SpeakerError>;
    /// Withdraws `h`.
    async fn withdraw(&mut self, h: &Held<Self::Path>) -> Result<(), SpeakerError>;
    /// The addresses of its BGP neighbours.
    async fn peers(&mut self) -> Result<Vec<IpAddr>, SpeakerError>;
}

/// Why an exchange with the speaker failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SpeakerError {
    #[error(
        "cannot reach the BGP speaker's API at {addr}: {detail}. Check that gobgpd runs and \
         serves its API there (`gobgpd --api-hosts {addr}`), or set bgp.speaker"
    )]
    Unreachable { addr: String, detail: String },
    #[error("the BGP speaker at {addr} refused to {op}: {detail}")]
    Refused {
        addr: String,
        op: &'static str,
        detail: String,
    },
    #[error("the BGP speaker at {addr} did not answer to {op} within {secs} s")]
    Timeout {
        addr: String,
        op: &'static str,
        secs: u64,
    },
}

/// The kinds of [`SpeakerError`] (indexes `telemetry::bgp::SPEAKER_ERRORS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Unreachable = 0,
    Refused = 1,
    Timeout = 2,
}

impl SpeakerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SpeakerError::Unreachable { .. } => ErrorKind::Unreachable,
            SpeakerError::Refused { .. } => ErrorKind::Refused,
            SpeakerError::Timeout { .. } => ErrorKind::Timeout,
        }
    }
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        crate::telemetry::bgp::SPEAKER_ERRORS[self as usize]
    }
}
