//! The live source: ended flows and aggregates out of the kernel, all counted.
//!
//! - [`ring`]: flows that end in the kernel (FIN, RST, active timeout), through the ring
//!   buffer;
//! - [`sweep`]: flows that simply stop (idle timeout), found by sweeping the flow table;
//! - [`aggregates`]: the per-source and per-destination aggregates, read and reset every
//!   interval;
//! - [`uncredited`]: aggregate volume of swept flows that the kernel had not credited yet.
pub mod aggregates;
pub mod error;
pub mod ring;
pub mod sweep;
pub mod uncredited;

pub use aggregates::drain_aggregates;
pub use error::DrainError;
pub use ring::ExportReader;
pub use sweep::{Sweep, flow_entries, sweep_flows, sweep_flows_into};
pub use uncredited::Uncredited;
