//! `[mitigation]` and `[allowlist]`, and the response mode (`agent.mode`).
use std::{fmt, time::Duration};

use netanom_common::time::secs_to_ns;
use serde::{Deserialize, Serialize};

use super::prefix::Cidr;

/// What the agent does about offenders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Alerts and would-block counts only: nothing is dropped.
    #[default]
    Observe,
    /// Blocks offenders and rate limits floods in the kernel.
    Mitigate,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Mitigate => "mitigate",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[mitigation]`: blocks, rate limits and the circuit breaker (mode `mitigate` only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MitigationConfig {
    /// Seconds the first block of a source lasts (1 to 31536000).
    pub block_ttl: f64,
    /// Each repeat block multiplies the TTL by this (>= 1).
    pub ttl_escalation: f64,
    /// Seconds; escalation stops here (>= `block_ttl`).
    pub max_block_ttl: f64,
    /// Seconds without a block after which a source's repeat count resets.
    pub forget_after: f64,
    /// Prefix length blocked around an IPv4 offender (8 to 32).
    pub block_prefix_v4: u8,
    /// Prefix length blocked around an IPv6 offender (32 to 128).
    pub block_prefix_v6: u8,
    /// Cap on active blocklist entries (1 to 65536).
    pub max_blocks: u32,
    pub max_new_blocks_per_minute: u32,
    /// Seconds in observe mode after the circuit breaker trips; 0: until reload.
    pub breaker_cooldown: f64,
    /// Packets per second a flood pattern is limited to (> 0).
    pub rate_limit_pps: f64,
    pub rate_limit_burst: u32,
    /// Seconds a rate limit lasts.
    pub rate_limit_ttl: f64,
    /// Cap on active rate limits (1 to 4096).
    pub max_rate_limits: u32,
}

impl Default for MitigationConfig {
    fn default() -> Self {
        Self {
            block_ttl: 300.0,
            ttl_escalation: 2.0,
            max_block_ttl: 86_400.0,
            forget_after: 86_400.0,
            block_prefix_v4: 32,
            block_prefix_v6: 128,
            max_blocks: 10_000,
            max_new_blocks_per_minute: 120,
            breaker_cooldown: 600.0,
            rate_limit_pps: 1000.0,
            rate_limit_burst: 100,
            rate_limit_ttl: 300.0,
            max_rate_limits: 64,
        }
    }
}

impl MitigationConfig {
    /// How long a block lasts when the source was already blocked `repeats` times before
    /// (within `forget_after`): `block_ttl × ttl_escalation^repeats`, at most `max_block_ttl`.
    pub fn block_ttl_for(&self, repeats: u32) -> Duration {
        let ttl = self.block_ttl * self.ttl_escalation.powi(repeats.min(i32::MAX as u32) as i32);
        Duration::from_nanos(secs_to_ns(ttl.min(self.max_block_ttl)))
    }

    /// The prefix length blocked around an offender of this family.
    pub fn block_prefix(&self, v4: bool) -> u8 {
        if v4 {
            self.block_prefix_v4
        } else {
            self.block_prefix_v6
        }
    }
}

/// `[allowlist]`: addresses never blocked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowlistConfig {
    /// Infrastructure prefixes never blocked (management, BGP peers, DNS resolvers).
    pub prefixes: Vec<Cidr>,
    /// Never block the host's own addresses.
    pub host_addresses: bool,
    /// Never block the default gateway(s).
    pub default_gateway: bool,
}

impl Default for AllowlistConfig {
    fn default() -> Self {
        Self {
            prefixes: Vec::new(),
            host_addresses: true,
            default_gateway: true,
        }
    }
}
