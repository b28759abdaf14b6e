//! The labelled detection corpus (`tests/corpus/`): the manifest ([`manifest`]), what a
//! capture says about itself ([`capture`]), the check of the corpus against its manifest
//! ([`check`]), and the recorder ([`record`]) with its scenario table ([`scenarios`]) and
//! the manifest writer ([`render`]).
pub mod capture;
pub mod check;
pub mod manifest;
pub mod record;
pub mod render;
pub mod scenarios;

use std::path::PathBuf;

/// The corpus directory of this checkout (`tests/corpus`).
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

#[cfg(test)]
mod tests;
