//! The bundle's sequence part (`sequence.json` + `sequence.onnx`, written by `cargo xtask
//! train -- --dataset stratosphere-letters`): the C&C beacon model, an LSTM over a channel's
//! behavioural letters ([`crate::letters`]), scored with ONNX Runtime.
//!
//! The graph takes `letters` (int64 `[batch, seq]`: the model indices of each window's
//! characters, oldest first, 0 after the row's length) and `lengths` (int64 `[batch]`), and
//! returns `score` (float32 `[batch]`, P(C&C)). The part is optional: a bundle without
//! `sequence.json` scores no channels.
use std::path::Path;

use ort::{session::Session, value::TensorRef};
use serde_json::Value;

use super::{
    ModelError,
    bundle::{BundleOptions, environment, session, verify},
    json_path::At,
    manifest::ModelSpec,
};
use crate::letters::ALPHABET;

/// The `part_format_version`s this agent reads.
pub const SUPPORTED_PART_VERSIONS: &[u64] = &[1];
/// The operating point the agent flags at unless `detection.beacon_threshold` says otherwise:
/// the validation normal channels' 99 % quantile. Youden's J, the part's own `threshold`,
/// flags 11 % of normal channels, far too many for a gateway that sees thousands; the 95 %
/// point (0.764 for the default part) flags the lab's benign DNS lookups, which the model
/// scores up to 0.79.
pub const DEFAULT_OPERATING_POINT: &str = "validation normal quantile 0.99";

/// Windows scored per ONNX Runtime call at most (see [`SequenceModel::score`]).
pub const CHUNK: usize = 64;

/// What `sequence.json` says the agent needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceSpec {
    /// The ONNX file, its size and sha256.
    pub model: ModelSpec,
    /// Characters of a channel's window at most (the newest whole symbols that fit).
    pub max_len: usize,
    /// A channel is scored once it has this many flows.
    pub min_flows: u32,
    /// The part's decision threshold (Youden's J on the validation channels).
    pub threshold: f64,
    /// Named operating points: (rule, threshold).
    pub operating_points: Vec<(String, f64)>,
}

impl SequenceSpec {
    /// Parses and validates `sequence.json` (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<SequenceSpec, ModelError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| ModelError::manifest(origin, format!("is not JSON: {e}")))?;
        let root = At::root(&v, origin);
        if root.get("part")?.str()? != "sequence" {
            return Err(root.get("part")?.err("must be \"sequence\""));
        }
        let version = root.get("part_format_version")?;
        if !SUPPORTED_PART_VERSIONS.contains(&version.u64()?) {
            return Err(version.err(format!(
                "is {}, this agent reads {SUPPORTED_PART_VERSIONS:?}: retrain the part with this \
                 version's `cargo xtask train -- --dataset stratosphere-letters`",
                version.v
            )));
        }
        let alphabet = root.get("encoding")?.get("alphabet")?;
        if alphabet.str()? != ALPHABET {
            return Err(alphabet.err(format!(
                "is {:?}, the agent's letters are {ALPHABET:?}: the part was trained on another \
                 encoding",
                alphabet.v
            )));
        }
        let graph = root.get("graph")?;
        let m = root.get("model")?;
        let scoring = root.get("scoring")?;
        let threshold = scoring.get("threshold")?.f64()?;
        let model = ModelSpec {
            name: "sequence".into(),
            file: m.get("file")?.str()?.to_owned(),
            sha256: m.opt("sha256")?.map(|s| s.str().map(str::to_owned)).transpose()?,
            bytes: m.opt("bytes")?.map(|b| b.u64()).transpose()?,
            input: "letters".into(),
            output: graph.get("output")?.get("name")?.str()?.to_owned(),
            threshold,
        };
        let mut operating_points = Vec::new();
        for p in scoring
            .opt("operating_points")?
            .map(|p| p.array())
            .transpose()?
            .unwrap_or_default()
        {
            operating_points.push((p.get("rule")?.str()?.to_owned(), p.get("threshold")?.f64()?));
        }
        let max_len = root.get("window")?.get("max_len")?.u64()?;
        if max_len == 0 {
            return Err(root.get("window")?.get("max_len")?.err("must be at least 1"));
        }
        Ok(SequenceSpec {
            model,
            max_len: max_len as usize,
            min_flows: scoring.get("min_flows")?.u64()?.clamp(1, u64::from(u32::MAX)) as u32,
            threshold,
            operating_points,
        })
    }

    /// The threshold of the operating point named `rule`, if the part has it.
    pub fn operating_point(&self, rule: &str) -> Option<f64> {
        self.operating_points
            .iter()
            .find(|(r, _)| r == rule)
            .map(|(_, t)| *t)
    }

    /// The threshold the agent flags at by default: [`DEFAULT_OPERATING_POINT`], or the part's
    /// threshold when it has no such point.
    pub fn default_threshold(&self) -> f64 {
        self.operating_point(DEFAULT_OPERATING_POINT)
            .unwrap_or(self.threshold)
    }
}

/// The sequence model, ready to score windows.
pub struct SequenceModel {
    pub spec: SequenceSpec,
    origin: String,
    session: Session,
    /// Reused buffers: the padded index matrix and the lengths.
    letters: Vec<i64>,
    lengths: Vec<i64>,
}

impl SequenceModel {
    /// The part in bundle directory `dir`, or `None` when the bundle has no `sequence.json`.
    pub fn load(dir: &Path, opts: &BundleOptions) -> Result<Option<SequenceModel>, ModelError> {
        let json = dir.join("sequence.json");
        if !json.exists() {
            return Ok(None);
        }
        let read = |p: &Path| std::fs::read(p).map_err(|err| ModelError::Read { path: p.into(), err });
        let text = String::from_utf8_lossy(&read(&json)?).into_owned();
        let spec = SequenceSpec::parse(&text, &json.display().to_string())?;
        let file = dir.join(&spec.model.file);
        if !file.exists() {
            return Err(ModelError::MissingModel {
                model: "sequence".into(),
                path: file,
            });
        }
        let bytes = read(&file)?;
        Self::build(spec, &file.display().to_string(), &bytes, opts).map(Some)
    }

    /// The part from memory (the embedded bundle's).
    pub fn from_memory(
        origin: &str,
        json: &str,
        onnx: &[u8],
        opts: &BundleOptions,
    ) -> Result<SequenceModel, ModelError> {
        let spec = SequenceSpec::parse(json, &format!("{origin}/sequence.json"))?;
        let file = format!("{origin}/{}", spec.model.file);
        Self::build(spec, &file, onnx, opts)
    }

    fn build(
        spec: SequenceSpec,
        origin: &str,
        bytes: &[u8],
        opts: &BundleOptions,
    ) -> Result<Self, ModelError> {
        if opts.verify_checksums {
            verify(&spec.model, origin, bytes)?;
        }
        let env = match &opts.environment {
            Some(e) => e.clone(),
            None => environment(opts.ort_lib.as_deref())?,
        };
        let onnx_err = |e: ort::Error| ModelError::Onnx {
            model: "sequence".into(),
            origin: origin.to_owned(),
            detail: e.to_string(),
        };
        // One small LSTM: the CPU is the right place for it whatever runs the flow models.
        let session = session(&env, bytes, 1, false, onnx_err)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if inputs != ["letters", "lengths"] {
            return Err(ModelError::Interface {
                model: "sequence".into(),
                origin: origin.to_owned(),
                detail: format!("its inputs are {inputs:?}, the part expects [\"letters\", \"lengths\"]"),
            });
        }
        Ok(SequenceModel {
            spec,
            origin: origin.to_owned(),
            session,
            letters: Vec::new(),
            lengths: Vec::new(),
        })
    }

    /// Where the part came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Scores windows of model indices (each 1..=max_len long; longer ones keep their last
    /// max_len): one P(C&C) per window, in order. Windows are run shortest first, in chunks
    /// of [`CHUNK`] padded to their own longest: the LSTM steps through every padded
    /// position, so one long channel in a batch of young ones must not make them all long.
    pub fn score(&mut self, windows: &[&[i64]]) -> Result<Vec<f32>, ModelError> {
        let max = self.spec.max_len;
        let tails: Vec<&[i64]> = windows
            .iter()
            .map(|w| &w[w.len().saturating_sub(max)..])
            .collect();
        let mut order: Vec<usize> = (0..tails.len()).collect();
        order.sort_by_key(|&i| tails[i].len());
        let mut scores = vec![0.0f32; tails.len()];
        for chunk in order.chunks(CHUNK) {
            let rows: Vec<&[i64]> = chunk.iter().map(|&i| tails[i]).collect();
            for (&i, s) in chunk.iter().zip(self.run(&rows)?) {
                scores[i] = s;
            }
        }
        Ok(scores)
    }

    /// One ONNX Runtime call over `rows` (at most max_len each), padded to the longest.
    fn run(&mut self, rows: &[&[i64]]) -> Result<Vec<f32>, ModelError> {
        let width = rows.iter().map(|w| w.len().max(1)).max().unwrap_or(1);
        self.letters.clear();
        self.lengths.clear();
        for w in rows {
            self.lengths.push(w.len().max(1) as i64);
            self.letters.extend_from_slice(w);
            self.letters.extend(std::iter::repeat_n(0, width - w.len()));
        }
        let err = |e: ort::Error| ModelError::Inference {
            model: "sequence".into(),
            detail: e.to_string(),
        };
        let n = rows.len();
        let letters = TensorRef::from_array_view(([n, width], &self.letters[..])).map_err(err)?;
        let lengths = TensorRef::from_array_view(([n], &self.lengths[..])).map_err(err)?;
        let outputs = self
            .session
            .run(ort::inputs!["letters" => letters, "lengths" => lengths])
            .map_err(err)?;
        let out = outputs
            .get(&self.spec.model.output)
            .ok_or_else(|| ModelError::Inference {
                model: "sequence".into(),
                detail: format!("no output `{}`", self.spec.model.output),
            })?;
        let (_, data) = out.try_extract_tensor::<f32>().map_err(err)?;
        if data.len() != n {
            return Err(ModelError::Inference {
                model: "sequence".into(),
                detail: format!("{} scores for {n} windows", data.len()),
            });
        }
        Ok(data.to_vec())
    }
}
