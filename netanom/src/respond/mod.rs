//! Response: what the agent does about each finding, through two seams.
//!
//! - [`responder`]: the decisions (skip, spare, report, block, rate-limit), with
//!   [`source`] (offending sources: blocks and TTL escalation), [`victim`] (floods from many
//!   sources: pattern rate limits) and [`rails`] (caps and the circuit breaker);
//! - [`enforcer`]: the enforcement trait, with [`kernel`] (the pinned maps the XDP program
//!   reads) and [`memory`] (captures and unit tests);
//! - [`channel`]: beacons (alert on the inside host; optionally block the remote peer);
//! - [`decision`]: the decision-sink trait, for what acts on decisions beyond the local lists
//!   (the fleet, BGP);
//! - [`sink`]: the alert-sink trait; [`alert`] is the record of a decision and [`eve`] its
//!   Suricata EVE JSON form;
//! - [`allowlist`]: the allowlist the agent keeps;
//! - [`prefix`]: IP prefixes; [`config`]: `[mitigation]`, `[allowlist]` and the mode.
pub mod alert;
pub mod allowlist;
pub mod channel;
pub mod config;
pub mod decision;
pub mod enforcer;
pub mod eve;
pub mod kernel;
pub mod memory;
pub mod prefix;
pub mod rails;
pub mod responder;
pub mod sink;
pub mod source;
pub mod victim;

pub use alert::{Action, Alert, AlertContext};
pub use config::{AllowlistConfig, MitigationConfig, Mode};
pub use decision::{Decision, DecisionSink, Proposal};
pub use enforcer::{Allow, Block, EnforceError, Enforcer};
pub use kernel::KernelTables;
pub use memory::{FrameVerdict, MemoryTables, SharedTables};
pub use prefix::Cidr;
pub use responder::Responder;
pub use sink::{AlertError, AlertSink};

#[cfg(test)]
mod tests;
