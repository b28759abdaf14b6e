//! The default bundle (`models/default`: trained on CIC-IDS2017 flows, on the live flow
//! schema), compiled into the agent so it scores out of the box. `netanom run --bundle DIR`
//! replaces it.
use super::{Bundle, BundleOptions, ModelError, SequenceModel};

/// How the embedded bundle names itself in logs and errors.
pub const ORIGIN: &str = "embedded default bundle (models/default)";

const MANIFEST: &str = include_str!("../../../models/default/manifest.json");
static AUTOENCODER: &[u8] = include_bytes!("../../../models/default/autoencoder.onnx");
static IFOREST: &[u8] = include_bytes!("../../../models/default/iforest.onnx");
static RF: &[u8] = include_bytes!("../../../models/default/rf.onnx");
const SEQUENCE_JSON: &str = include_str!("../../../models/default/sequence.json");
static SEQUENCE: &[u8] = include_bytes!("../../../models/default/sequence.onnx");

/// Loads the embedded default bundle (sessions are created from memory).
pub fn load(opts: &BundleOptions) -> Result<Bundle, ModelError> {
    Bundle::from_memory(
        ORIGIN,
        MANIFEST,
        &[
            ("autoencoder.onnx", AUTOENCODER),
            ("iforest.onnx", IFOREST),
            ("rf.onnx", RF),
        ],
        opts,
    )
}

/// Loads the embedded bundle's sequence part (the C&C beacon model).
pub fn load_sequence(opts: &BundleOptions) -> Result<SequenceModel, ModelError> {
    SequenceModel::from_memory(ORIGIN, SEQUENCE_JSON, SEQUENCE, opts)
}
