//! Scoring with a model bundle: the Rust side of the `models/` pipeline.
//!
//! A **bundle** is a directory (or, for an embedded bundle, the same files in memory) holding
//! `manifest.json` and three ONNX graphs — `autoencoder.onnx`, `iforest.onnx`, `rf.onnx` —
//! written by `cargo xtask train` (see `models/README.md`, "Bundle format"). Every graph takes
//! the float32 model-input vector `[batch, n_features]` and returns one float32 score per row,
//! higher meaning more anomalous.
//!
//! The pieces, in the order data flows through them:
//! - [`Manifest`]: manifest.json, read tolerantly (unknown keys are ignored) and validated
//!   strictly (every key the scorer uses must be present and consistent);
//! - [`Preprocessor`]: the bundle's **raw** input columns ([`Preprocessor::input_names`]) and
//!   the manifest's preprocessing steps that are not inside the graphs (one-hot blocks,
//!   `log1p`, ...), raw row → model-input vector;
//! - [`Bundle`]: manifest + the three ONNX Runtime sessions, created once
//!   ([`Bundle::load`], [`Bundle::from_memory`]); [`Bundle::bind`] maps a caller's feature
//!   names onto the bundle's raw columns;
//! - [`Scorer`]: batched scoring with reused buffers ([`Scorer::score`]) → [`Scores`]: per-model
//!   scores and decisions, the continuous ensemble score and the ensemble decision;
//! - [`metrics`]: ROC-AUC, average precision and threshold metrics for `netanom eval`;
//! - [`table`]: a bundle over a CSV file (what `netanom score` and `netanom eval` do);
//! - [`sequence`]: the optional sequence part (`sequence.json`, `sequence.onnx`): the C&C
//!   beacon model over a channel's behavioural letters;
//! - [`runtime`]: locating and loading ONNX Runtime.
//!
//! **Raw rows are `f32`.** One value per raw input column, in [`Preprocessor::input_names`]
//! order (or in the caller's order through a [`Binding`]). A categorical column carries the
//! *index* of its category in the manifest's list ([`Preprocessor::category_code`]); a value
//! that is not such an index ([`UNSEEN_CATEGORY`], -1, is the canonical one) stands for a
//! category the bundle has never seen, which the manifest's rule turns into an all-zero one-hot
//! block (scored, and counted in [`Scores::unseen`]).
//!
//! **NaN and infinity are refused per row.** A row holding NaN or ±inf in a column the bundle
//! uses is not given to the models: its scores are NaN, its decisions `false`, its index is in
//! [`Scores::rejected`] and [`Scorer::rejected_total`] counts it. The other rows of the batch
//! are scored normally. The CSV commands stop at such a row and report its line number.
use std::path::PathBuf;

use thiserror::Error;

pub mod bundle;
pub mod csv;
pub mod embedded;
pub mod json_path;
pub mod manifest;
pub mod metrics;
pub mod preprocess;
pub mod runtime;
pub mod scorer;
pub mod sequence;
pub mod table;

pub use bundle::{Binding, Bundle, BundleOptions, ExecutionProvider, environment};
pub use manifest::{EnsembleRule, Manifest, ModelSpec};
pub use preprocess::{Preprocessor, UNSEEN_CATEGORY};
pub use scorer::{Scorer, Scores};
pub use sequence::{SequenceModel, SequenceSpec};

/// Whether this build has the CUDA execution provider compiled in (cargo feature `cuda`).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The models of a bundle, in the order the manifest's ensemble rule and every output use.
pub const MODEL_NAMES: [&str; 3] = ["autoencoder", "iforest", "rf"];

/// The manifest `bundle_format_version`s this scorer reads.
pub const SUPPORTED_FORMAT_VERSIONS: &[u64] = &[1, 2];

/// Everything that can go wrong loading a bundle or scoring with it. Each message is one
/// paragraph: what happened, naming the file, then what to do.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error(
        "no model bundle at {}: {} does not exist. A bundle is a directory holding manifest.json, \
         autoencoder.onnx, iforest.onnx and rf.onnx as written by `cargo xtask train`; pass the \
         path of one (for example models/bundles/nsl-kdd)",
        dir.display(), manifest.display()
    )]
    NoBundle { dir: PathBuf, manifest: PathBuf },
    #[error("cannot read {}: {err}; check that the file exists and that this user may read it", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error(
        "{origin} is not a usable netanom bundle manifest: {detail}. Regenerate the bundle with \
         `cargo xtask train --dataset <name>` (or restore the manifest.json that came with the \
         ONNX files)"
    )]
    Manifest { origin: String, detail: String },
    #[error(
        "model file {} ({model}) is missing from the bundle; a bundle needs every file its \
         manifest.json lists: copy the whole bundle directory again, or retrain it with `cargo \
         xtask train`",
        path.display()
    )]
    MissingModel { model: String, path: PathBuf },
    #[error(
        "model file {origin} ({model}) does not match the bundle's manifest: {detail}. The file is \
         corrupted, truncated or from another training run: copy the whole bundle directory \
         again, or retrain it with `cargo xtask train`"
    )]
    Checksum {
        model: String,
        origin: String,
        detail: String,
    },
    #[error(
        "ONNX Runtime could not start its CUDA execution provider: {detail}. It needs a GPU, and \
         the CUDA libraries the ONNX Runtime build links against (the message names any that is \
         missing) on the library path; or score on the CPU (`--provider cpu`)"
    )]
    CudaProvider { detail: String },
    #[error(
        "ONNX Runtime could not load model file {origin} ({model}): {detail}. The file is corrupted \
         or truncated, or not an ONNX model: copy the whole bundle directory again, or retrain it \
         with `cargo xtask train`"
    )]
    Onnx {
        model: String,
        origin: String,
        detail: String,
    },
    #[error(
        "model file {origin} ({model}) does not have the interface its manifest declares: {detail}. \
         The manifest and the ONNX files come from different bundles: copy the whole bundle \
         directory again, or retrain it with `cargo xtask train`"
    )]
    Interface {
        model: String,
        origin: String,
        detail: String,
    },
    #[error(
        "the features provided do not match the bundle's ({dataset}): missing: [{}], unexpected: \
         [{}]. The bundle needs exactly its raw input columns (see its manifest.json); rename or \
         add the missing ones{}",
        missing.join(", "), unexpected.join(", "),
        if unexpected.is_empty() { "" } else { ", and drop the unexpected ones or bind leniently" }
    )]
    Bind {
        dataset: String,
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
    #[error(
        "the batch holds {got} values, but {n} rows of {width} values each were announced; pass \
         row-major rows of the bound width"
    )]
    Shape { got: usize, n: usize, width: usize },
    #[error("ONNX Runtime failed to score a batch with {model}: {detail}")]
    Inference { model: String, detail: String },
    #[error(transparent)]
    Runtime(#[from] runtime::OrtError),
}

impl ModelError {
    pub(crate) fn manifest(origin: &str, detail: impl Into<String>) -> Self {
        Self::Manifest {
            origin: origin.to_owned(),
            detail: detail.into(),
        }
    }
}
