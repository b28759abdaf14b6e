//! Detection: turns scored flows and per-interval aggregates into findings about sources
//! (offenders) and destinations (victims).
//!
//! - [`detector`]: the state (flow windows, learned levels, the freeze during attacks);
//! - [`flows`]: offenders from anomalous flows;
//! - [`aggregates`]: offenders from their per-source rates (floods, SYN floods, scans, host
//!   sweeps);
//! - [`slow`]: slow scans and sweeps over a minute and ten minutes;
//! - [`services`]: repeated short connections to one service (password guessing);
//! - [`victims`]: destinations under a flood, per service and per host;
//! - [`channels`], [`beacons`], [`periodicity`]: each channel's behavioural letters, scored by
//!   the sequence model for command-and-control beacons, beside the periodicity rule;
//! - [`learned`]: learned normal levels (running quantiles) and rates with floors;
//! - [`moments`]: how unusual a flow's features are;
//! - [`finding`], [`kind`]: what detection concludes, and the signature of each kind;
//! - [`config`]: the `[detection]` configuration section.
//!
//! Model thresholds can be recalibrated online: per model, the same running quantile of the
//! scores of flows judged normal replaces the bundle's threshold once enough flows were seen.
//! While any finding is recent (an attack is in progress), nothing is learned, so an attacker
//! cannot teach the detector that the attack is normal. Time is the `now` each call is given:
//! detection reads no clock.
pub mod aggregates;
pub mod beacons;
pub mod channels;
pub mod config;
pub mod detector;
pub mod finding;
pub mod flows;
pub mod kind;
pub mod learned;
pub mod moments;
pub mod periodicity;
pub mod services;
pub mod slow;
pub mod victims;

pub use beacons::WindowScorer;
pub use config::{DetectionConfig, DetectorName};
pub use detector::Detector;
pub use finding::{Finding, FlowEvidence, Subject};
pub use flows::{ScoredFlow, is_icmp_error};
pub use kind::Kind;

#[cfg(test)]
mod beacon_tests;
#[cfg(test)]
mod behaviour_tests;
#[cfg(test)]
mod tests;
