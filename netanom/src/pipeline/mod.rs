//! The pipeline: the stages assembled and driven, live or over a capture.
//!
//! - [`live`]: the kernel datapath drained into the queue, the scoring stage on its thread;
//! - [`capture`]: capture files through the same scoring stage, in capture time;
//! - [`stage`]: the scoring stage (models, detection, response) that every batch goes
//!   through; [`scoring`] is its model half;
//! - [`queue`], [`batch`]: the hand-off from the drain to the scoring stage;
//! - [`clock`]: the one clock (the system's live, the capture's on a file);
//! - [`reload`]: what SIGHUP re-reads;
//! - [`config`]: the configuration file that sets every stage up.
pub mod batch;
pub mod capture;
pub mod clock;
pub mod config;
pub mod live;
pub mod queue;
pub mod reload;
pub mod scoring;
pub mod stage;
