//! The configuration file (`netanom run --config FILE`): one TOML document whose sections are
//! the components' own configuration types, read strictly and validated.
//!
//! - [`file`]: the document, loading and parsing;
//! - [`validate`]: range and consistency checks per section;
//! - [`error`]: what is refused, with the line and column.
pub mod error;
pub mod file;
pub mod validate;

pub use error::ConfigError;
pub use file::{AgentConfig, Config, secs};

#[cfg(test)]
mod tests;
