//! The kernel datapath: the embedded XDP and TC programs and their maps, as the agent loads,
//! attaches and reads them, one file per kernel concept.
//!
//! - [`program`]: loading the object (map sizes, timeouts), BPF_PROG_TEST_RUN;
//! - [`attach`]: XDP (native, falling back to skb) and TC egress attachments, pinned links;
//! - [`counters`]: the per-CPU protocol and event counters;
//! - [`batch`]: batched map syscalls, which aya does not offer;
//! - [`host`]: checks on the host before anything is loaded (privileges, bpffs, interfaces,
//!   addresses, routes);
//! - [`config`]: the `[datapath]` configuration section;
//! - [`error`]: what can go wrong, and what to do.
pub mod attach;
pub mod batch;
pub mod config;
pub mod counters;
pub mod error;
pub mod host;
pub mod program;

pub use config::{DatapathConfig, ModePreference};
pub use error::DatapathError;
pub use program::{AttachMode, Attachment, Datapath, LoadOptions, create_pins, has_program};
