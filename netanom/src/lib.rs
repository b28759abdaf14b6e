//! netanom: inline network anomaly detection for Linux gateways.
//!
//! The agent is this library; `main.rs` only calls [`cli::main`]. Layout:
//! - [`sys`]: checks on the host (privileges, bpffs, interfaces, default route);
//! - [`datapath`]: the embedded XDP program: load, attach, read its maps;
//! - [`onnx`]: locating and loading ONNX Runtime;
//! - [`stats`]: counter snapshots and how they are shown;
//! - [`run`]: the agent's main loop;
//! - [`cli`]: the command line.
pub mod cli;
pub mod datapath;
pub mod onnx;
pub mod run;
pub mod stats;
pub mod sys;
