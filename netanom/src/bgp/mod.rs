//! Upstream mitigation over BGP: the agent's blocks announced as blackhole routes (RTBH, with
//! BLACKHOLE 65535:666, RFC 7999) and its rate limits as FlowSpec rules (RFC 8955), through a
//! BGP speaker that peers with the routers: GoBGP's `gobgpd`, driven over its gRPC API.
//!
//! - [`route`]: the routes and their attributes; [`config`]: `[bgp]`;
//! - [`plan`]: what should be announced, minus what the safety rules exclude;
//! - [`announcer`]: the decision sink on the scoring stage's side, which never waits;
//! - [`worker`]: the speaker's thread, which reconciles what the speaker holds with the plan;
//! - [`speaker`]: what the worker needs of a speaker; [`gobgp`]: GoBGP's.
pub mod announcer;
pub mod config;
pub mod gobgp;
pub mod plan;
pub mod route;
pub mod speaker;
pub mod worker;

pub use announcer::Announcer;
pub use config::{BgpConfig, FlowSpecAction};

#[cfg(test)]
mod tests;
