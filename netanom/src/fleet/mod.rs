//! The fleet: gateways sharing their decisions and alerts over NATS JetStream.
//!
//! - [`config`]: `[fleet]`, the subjects and streams;
//! - [`message`]: the versioned JSON messages (decisions, heartbeats);
//! - [`outbox`]: the bounded queue between the scoring stage and NATS;
//! - [`publisher`]: the decision sink that queues this gateway's decisions, and the task that
//!   publishes the queue;
//! - [`apply`]: the rails another gateway's decision goes through here, over [`lists`] (the
//!   fleet thread's cached view of the pinned lists);
//! - [`worker`]: the fleet's thread (connection, replay, consumer, heartbeats);
//! - [`client`]: connecting, and the JetStream streams.
pub mod apply;
pub mod client;
pub mod config;
pub mod lists;
pub mod message;
pub mod outbox;
pub mod publisher;
pub mod worker;

pub use config::FleetConfig;
pub use worker::Fleet;

#[cfg(test)]
mod tests;
