//! netanom: inline network anomaly detection for Linux gateways.
//!
//! The agent is this library; `main.rs` only calls [`cli::main`]. Layout:
//! - [`config`]: the configuration file (`netanom run --config`);
//! - [`cidr`]: IP prefixes, for the allowlist and blocks;
//! - [`sys`]: checks on the host (privileges, bpffs, interfaces, default route);
//! - [`datapath`]: the embedded XDP program: load, attach, read its maps;
//! - [`batch`], [`drain`]: batched map reads, the flow export ring buffer, the idle sweep;
//! - [`onnx`]: locating and loading ONNX Runtime;
//! - [`stats`]: counter snapshots and how they are shown;
//! - [`metrics`]: the Prometheus metrics and the `/metrics` endpoint;
//! - [`run`]: the agent's main loop;
//! - [`features`]: the flow feature schema, feature vectors and their CSV form;
//! - [`offline`]: flow features from capture files (`netanom features`);
//! - [`alerts`]: Suricata-EVE-compatible JSON alert lines and where they are written;
//! - [`cli`]: the command line.
pub mod aggregates;
pub mod alerts;
pub mod batch;
pub mod cidr;
pub mod cli;
pub mod config;
pub mod control;
pub mod datapath;
pub mod detect;
pub mod drain;
pub mod features;
pub mod metrics;
pub mod model;
pub mod offline;
pub mod onnx;
pub mod pipeline;
pub mod respond;
pub mod run;
pub mod stats;
pub mod sys;
pub mod tables;
