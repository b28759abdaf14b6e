//! The command line: one file per subcommand, each over library calls.
//!
//! - [`app`]: the `netanom` command, its subcommands and the entry point;
//! - [`run`]: `netanom run` (the agent);
//! - [`block`], [`allow`], [`status`]: the operator's controls on the pinned lists;
//! - [`fleet`]: the fleet's status and alerts;
//! - [`features`]: flow features of a capture file;
//! - [`score`], [`eval`]: a model bundle over a CSV file;
//! - [`args`]: value parsers and options several subcommands share.
pub mod allow;
pub mod app;
pub mod args;
pub mod block;
pub mod eval;
pub mod features;
pub mod fleet;
pub mod run;
pub mod score;
pub mod status;

pub use app::{Cli, Command, main};

#[cfg(test)]
mod tests;
