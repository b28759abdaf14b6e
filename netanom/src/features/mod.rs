//! Features: what the models and the detector read about each flow and each aggregate.
//!
//! - [`flow`]: the flow feature schema (model-input order) and how a kernel flow record
//!   becomes a feature vector;
//! - [`aggregates`]: the per-source and per-destination aggregate features;
//! - [`identity`]: who talked to whom (oriented to the initiator), protocol and flag names,
//!   flow ids;
//! - [`csv`]: the CSV form of a flow record (`netanom features`, `--flows-out`).
pub mod aggregates;
pub mod csv;
pub mod flow;
pub mod identity;

pub use flow::{FLOW_FEATURES, N_FLOW_FEATURES, feature_index, flow_features, flow_features_into};
pub use identity::{FlowIdentity, proto_name};

#[cfg(test)]
mod tests;
