//! netanom: inline network anomaly detection for Linux gateways.
//!
//! The agent is this library; `main.rs` only calls [`cli::main`]. The modules follow the data
//! flow:
//!
//! 1. [`datapath`]: the kernel side (the XDP and TC programs, their maps), as the agent loads,
//!    attaches and reads it;
//! 2. [`sources`]: where ended flows and aggregates come from: the kernel (live) or a capture
//!    file, through the same per-packet code;
//! 3. [`features`]: flow and aggregate feature vectors, the schema, the CSV form;
//! 4. [`model`]: scoring with an ONNX model bundle;
//! 5. [`detect`]: findings about offending sources and flooded destinations;
//! 6. [`respond`]: decisions and their enforcement (the enforcement and alert-sink seams);
//! 7. [`sinks`]: alerts, metrics, the stats line, the status file, flow CSV;
//! 8. [`bgp`]: the decisions announced upstream to routers (blackhole routes, FlowSpec);
//! 9. [`fleet`]: the decisions and alerts shared with the other gateways over NATS JetStream;
//!
//! with [`telemetry`] (the plain counters every stage fills and every sink reads),
//! [`pipeline`] (the stages assembled and driven, live or over a capture, with the one clock
//! and the configuration file) and [`cli`] (one file per subcommand). [`letters`] (Stratosphere
//! behavioural letters of a channel's flows, the sequence model's input) waits for its place in
//! [`detect`].
pub mod bgp;
pub mod cli;
pub mod datapath;
pub mod detect;
pub mod features;
pub mod fleet;
pub mod letters;
pub mod model;
pub mod pipeline;
pub mod respond;
pub mod sinks;
pub mod sources;
pub mod telemetry;
