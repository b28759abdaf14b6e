//! What can go wrong getting flows and aggregates out of the kernel.
use std::io;

use thiserror::Error;

use crate::datapath::DatapathError;

/// Elements moved per batch syscall.
pub const BATCH: usize = 1024;

#[derive(Debug, Error)]
pub enum DrainError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("reading kernel map {map} in batches failed: {source}")]
    Batch {
        map: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("opening the flow export ring buffer failed: {0}")]
    Ring(String),
}

pub(super) fn batch_err(map: &'static str) -> impl Fn(io::Error) -> DrainError {
    move |source| DrainError::Batch { map, source }
}
