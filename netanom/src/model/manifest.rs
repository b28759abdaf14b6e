//! `manifest.json`: read tolerantly, validated strictly.
//!
//! Keys the scorer does not use (training data, validation metrics, loss history, library
//! versions, ...) are ignored, so the Python side can add information without breaking older
//! agents. Every key the scorer *does* use must be present, of the right type and consistent
//! with the others; an error names the key (`models.rf.threshold`, ...).
use serde_json::Value;

use super::{MODEL_NAMES, ModelError, SUPPORTED_FORMAT_VERSIONS, json_path::At, preprocess::Preprocessor};

/// How the per-model normalised scores r_i = score_i / threshold_i combine into the ensemble
/// score E; a row is an anomaly when E > [`Manifest::ensemble_threshold`] (1.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnsembleRule {
    /// E = max_i r_i (an anomaly when any model flags the row).
    Any,
    /// E = the k-th largest r_i, k = floor(m/2) + 1 (the median of three).
    Majority,
    /// E = Σ w_i r_i with the weights normalised to sum 1.
    Weighted,
}

impl EnsembleRule {
    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::Majority => "majority",
            Self::Weighted => "weighted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "any" => Some(Self::Any),
            "majority" => Some(Self::Majority),
            "weighted" => Some(Self::Weighted),
            _ => None,
        }
    }
}

/// One model of the bundle, as the manifest describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// `autoencoder`, `iforest` or `rf`.
    pub name: String,
    /// File name inside the bundle directory.
    pub file: String,
    /// Lower-case hex sha256 of the file, when the manifest records it.
    pub sha256: Option<String>,
    /// File size in bytes, when the manifest records it.
    pub bytes: Option<u64>,
    /// Input tensor name (float32 `[batch, n_features]`).
    pub input: String,
    /// Output tensor name (float32 `[batch]`).
    pub output: String,
    /// The model flags a row when its score is above this.
    pub threshold: f64,
}

/// The validated manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub format_version: u64,
    /// `nsl-kdd`, `kdd99`, ...
    pub dataset: String,
    /// Width of the model-input vector.
    pub n_features: usize,
    /// Names of the model-input vector's elements (`duration`, `protocol_type=icmp`, ...).
    pub features: Vec<String>,
    /// The models in [`MODEL_NAMES`] order.
    pub models: Vec<ModelSpec>,
    pub rule: EnsembleRule,
    /// Ensemble weights in model order, normalised to sum 1 (used by [`EnsembleRule::Weighted`]).
    pub weights: Vec<f64>,
    /// A row is an anomaly when the ensemble score is above this (1.0).
    pub ensemble_threshold: f64,
    /// The whole document, for the keys this type does not expose.
    pub json: Value,
}

impl Manifest {
    /// Parses and validates `text`; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<(Manifest, Preprocessor), ModelError> {
        let json: Value = serde_json::from_str(text)
            .map_err(|e| ModelError::manifest(origin, format!("it is not valid JSON ({e})")))?;
        let root = At::root(&json, origin);
        if !json.is_object() {
            return Err(root.err("must be a JSON object"));
        }
        let (format_version, dataset, n_features, features) = header(&root)?;
        // Format 2 carries the normative scorer contract under `scorer`; format 1 only the
        // descriptive keys. Where both describe the same thing they must agree.
        let scorer = root.opt("scorer")?;
        if format_version >= 2 && scorer.is_none() {
            return Err(root.missing("scorer"));
        }
        let models = model_specs(&root, scorer.as_ref(), n_features)?;
        let (rule, weights, ensemble_threshold) = ensemble(&root, scorer.as_ref())?;
        let pre = Preprocessor::from_manifest(&root, n_features, &features)?;
        let manifest = Manifest {
            format_version,
            dataset,
            n_features,
            features,
            models,
            rule,
            weights,
            ensemble_threshold,
            json: Value::Null,
        };
        Ok((Manifest { json, ..manifest }, pre))
    }

    pub fn model(&self, name: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// The format version, dataset, and the model-input vector's width and element names.
fn header(root: &At<'_>) -> Result<(u64, String, usize, Vec<String>), ModelError> {
    let origin = root.origin();
    let version = root.get("bundle_format_version")?.u64()?;
    if !SUPPORTED_FORMAT_VERSIONS.contains(&version) {
        return Err(ModelError::manifest(
            origin,
            format!(
                "its bundle_format_version is {version}, and this netanom reads version(s) {:?}; \
                 use a netanom release that matches the bundle, or retrain the bundle with this \
                 tree's models/",
                SUPPORTED_FORMAT_VERSIONS
            ),
        ));
    }
    let dataset = match root.opt("dataset")? {
        Some(d) => d.str()?.to_owned(),
        None => "unnamed bundle".to_owned(),
    };
    let n_features = root.get("n_features")?.u64()? as usize;
    let features = root.get("features")?.strings()?;
    if features.len() != n_features {
        return Err(ModelError::manifest(
            origin,
            format!(
                "`features` lists {} names but `n_features` is {n_features}",
                features.len()
            ),
        ));
    }
    if n_features == 0 {
        return Err(root.get("n_features")?.err("must be at least 1"));
    }
    Ok((version, dataset, n_features, features))
}

/// Where the manifest describes the models: the scorer contract, the descriptive `models`
/// entry, and the format-1 `thresholds.values`.
struct ModelPlaces<'a> {
    contract: At<'a>,
    descriptive: Option<At<'a>>,
    thresholds: Option<At<'a>>,
    scorer_thresholds: Option<At<'a>>,
}

/// Every model's spec, in [`MODEL_NAMES`] order.
fn model_specs(
    root: &At<'_>,
    scorer: Option<&At<'_>>,
    n_features: usize,
) -> Result<Vec<ModelSpec>, ModelError> {
    let descriptive = root.opt("models")?;
    let contract = match scorer {
        Some(s) => s.get("models")?,
        None => root.get("models")?,
    };
    for obj in [Some(&contract), descriptive.as_ref()].into_iter().flatten() {
        if let Some(extra) = obj.keys()?.into_iter().find(|n| !MODEL_NAMES.contains(n)) {
            return Err(obj.err(format!(
                "lists the model `{extra}`, which this netanom does not know (it scores {})",
                MODEL_NAMES.join(", ")
            )));
        }
    }
    let places = ModelPlaces {
        contract,
        descriptive,
        thresholds: match root.opt("thresholds")? {
            Some(t) => t.opt("values")?,
            None => None,
        },
        scorer_thresholds: scorer.map(|s| s.get("thresholds")).transpose()?,
    };
    MODEL_NAMES
        .iter()
        .map(|name| model_spec(&places, name, n_features))
        .collect()
}

/// The spec of model `name`: file, checksum, tensors and threshold, each place that states one
/// agreeing with the others.
fn model_spec(places: &ModelPlaces<'_>, name: &str, n_features: usize) -> Result<ModelSpec, ModelError> {
    let m = places.contract.get(name)?;
    let top = match &places.descriptive {
        Some(t) => t.opt(name)?,
        None => None,
    };
    let file_at = m.get("file")?;
    let file = file_at.str()?.to_owned();
    if file.is_empty() || file.contains('/') || file.contains('\\') || file.starts_with('.') {
        return Err(file_at.err(format!(
            "must be a plain file name inside the bundle, not {file:?}"
        )));
    }
    // The checksum and size live in the descriptive `models` entry.
    let desc = top.clone().unwrap_or_else(|| m.clone());
    if let Some(f) = desc.opt("file")? {
        let f = f.str()?;
        if f != file {
            return Err(desc.get("file")?.err(format!(
                "is {f:?}, but `{}` is {file:?}; they must agree",
                file_at.path()
            )));
        }
    }
    let sha256 = match desc.opt("sha256")? {
        Some(s) => {
            let v = s.str()?.to_ascii_lowercase();
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(s.err("must be 64 hexadecimal digits"));
            }
            Some(v)
        }
        None => None,
    };
    let bytes = desc.opt("bytes")?.map(|b| b.u64()).transpose()?;
    let input_at = m.get("input")?;
    let (input, in_width) = tensor_spec(&input_at, 2)?;
    let (output, _) = tensor_spec(&m.get("output")?, 1)?;
    if in_width != Some(n_features) {
        return Err(input_at.err(format!(
            "must have the shape [\"batch\", {n_features}] (n_features), found {}",
            input_at.get("shape")?.v
        )));
    }
    let threshold = threshold(places, &m, top.as_ref(), name)?;
    Ok(ModelSpec {
        name: name.to_owned(),
        file,
        sha256,
        bytes,
        input,
        output,
        threshold,
    })
}

/// Model `name`'s threshold: every place that states one must state the same, positive one.
fn threshold(
    places: &ModelPlaces<'_>,
    m: &At<'_>,
    top: Option<&At<'_>>,
    name: &str,
) -> Result<f64, ModelError> {
    let mut sources = Vec::new();
    if let Some(t) = &places.scorer_thresholds {
        sources.push(t.get(name)?);
    }
    if let Some(t) = top.map(|t| t.opt("threshold")).transpose()?.flatten() {
        sources.push(t);
    }
    if let Some(t) = places
        .thresholds
        .as_ref()
        .map(|t| t.opt(name))
        .transpose()?
        .flatten()
    {
        sources.push(t);
    }
    let Some(first) = sources.first() else {
        return Err(m.missing("threshold"));
    };
    let threshold = first.f64()?;
    for other in &sources[1..] {
        let t = other.f64()?;
        if t != threshold {
            return Err(other.err(format!(
                "is {t}, but `{}` is {threshold}; they must agree",
                first.path()
            )));
        }
    }
    if threshold <= 0.0 {
        return Err(first.err(format!(
            "must be positive (scores are divided by it), found {threshold}"
        )));
    }
    Ok(threshold)
}

/// The ensemble's rule, weights (normalised to sum 1) and threshold.
fn ensemble(root: &At<'_>, scorer: Option<&At<'_>>) -> Result<(EnsembleRule, Vec<f64>, f64), ModelError> {
    let ens = match scorer {
        Some(s) => s.get("ensemble")?,
        None => root.get("ensemble")?,
    };
    let rule_at = ens.get("rule")?;
    let rule = EnsembleRule::parse(rule_at.str()?)
        .ok_or_else(|| rule_at.err("must be one of \"any\", \"majority\", \"weighted\""))?;
    if scorer.is_some()
        && let Some(top_rule) = root
            .opt("ensemble")?
            .map(|e| e.opt("rule"))
            .transpose()?
            .flatten()
        && top_rule.str()? != rule.name()
    {
        return Err(top_rule.err(format!(
            "is {:?}, but `{}` is {:?}; they must agree",
            top_rule.str()?,
            rule_at.path(),
            rule.name()
        )));
    }
    let weights = weights(&ens, rule)?;
    let ensemble_threshold = match ens.opt("threshold")? {
        Some(t) => t.f64()?,
        None => 1.0,
    };
    Ok((rule, weights, ensemble_threshold))
}

/// The ensemble's weights in model order (a list, or an object by model name), normalised to
/// sum 1 (the identity for the weights the pipeline writes, which already sum to exactly 1.0).
fn weights(ens: &At<'_>, rule: EnsembleRule) -> Result<Vec<f64>, ModelError> {
    let weights = match ens.opt("weights")? {
        None if rule != EnsembleRule::Weighted => vec![1.0; MODEL_NAMES.len()],
        None => return Err(ens.missing("weights")),
        Some(w) => {
            if w.v.is_array() {
                let ws = w.f64s()?;
                if ws.len() != MODEL_NAMES.len() {
                    return Err(w.err(format!("must hold {} weights", MODEL_NAMES.len())));
                }
                ws
            } else {
                MODEL_NAMES
                    .iter()
                    .map(|name| w.get(name)?.f64())
                    .collect::<Result<Vec<_>, _>>()?
            }
        }
    };
    if weights.iter().any(|w| *w < 0.0) || weights.iter().sum::<f64>() <= 0.0 {
        return Err(ens
            .get("weights")?
            .err("must be non-negative with a positive sum"));
    }
    let sum: f64 = weights.iter().sum();
    Ok(weights.iter().map(|w| w / sum).collect())
}

/// (tensor name, width of the last dimension if it is a number) of an `input`/`output` entry,
/// checking dtype float32 and the rank.
fn tensor_spec(t: &At<'_>, rank: usize) -> Result<(String, Option<usize>), ModelError> {
    let name = t.get("name")?.str()?.to_owned();
    if let Some(d) = t.opt("dtype")? {
        let d = d.str()?;
        if d != "float32" {
            return Err(t.get("dtype")?.err(format!("must be \"float32\", found {d:?}")));
        }
    }
    let mut width = None;
    if let Some(shape) = t.opt("shape")? {
        let dims = shape.array()?;
        if dims.len() != rank {
            return Err(shape.err(format!("must have {rank} dimension(s), found {}", dims.len())));
        }
        if rank > 1 {
            width = dims[rank - 1].v.as_u64().map(|w| w as usize);
        }
    } else if rank > 1 {
        return Err(t.missing("shape"));
    }
    Ok((name, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small valid manifest: numeric `a`, categorical `proto` (tcp, udp), numeric `b`.
    pub(crate) fn sample() -> Value {
        let model = |file: &str, t: f64| {
            serde_json::json!({
                "file": file,
                "input": {"name": "input", "dtype": "float32", "shape": ["batch", 4]},
                "output": {"name": "score", "dtype": "float32", "shape": ["batch"]},
                "threshold": t,
                "hyperparameters": {"anything": [1, 2, 3]}
            })
        };
        serde_json::json!({
            "bundle_format_version": 1,
            "dataset": "toy",
            "n_features": 4,
            "features": ["a", "proto=tcp", "proto=udp", "b"],
            "preprocessing": {
                "source_columns": ["a", "proto", "b"],
                "categorical_columns": ["proto"],
                "categories": {"proto": ["tcp", "udp"]},
                "unseen_category": "all-zero block"
            },
            "models": {
                "autoencoder": model("autoencoder.onnx", 0.5),
                "iforest": model("iforest.onnx", 0.25),
                "rf": model("rf.onnx", 0.4)
            },
            "thresholds": {"values": {"autoencoder": 0.5, "iforest": 0.25, "rf": 0.4}},
            "ensemble": {"rule": "weighted", "weights": {"autoencoder": 1, "iforest": 1, "rf": 2}},
            "some_future_key": {"ignored": true}
        })
    }

    /// The same bundle in format 2, with the normative `scorer` contract.
    pub(crate) fn sample_v2() -> Value {
        let mut v = sample();
        v["bundle_format_version"] = 2.into();
        let io = |m: &str| {
            serde_json::json!({
                "file": format!("{m}.onnx"),
                "input": {"name": "input", "dtype": "float32", "shape": ["batch", 4]},
                "output": {"name": "score", "dtype": "float32", "shape": ["batch"]},
                "inside_graph": [{"op": "whatever", "formula": "reference only"}]
            })
        };
        v["scorer"] = serde_json::json!({
            "normative": true,
            "raw_columns": [
                {"name": "a", "type": "numeric"},
                {"name": "proto", "type": "categorical"},
                {"name": "b", "type": "numeric"}
            ],
            "steps": [
                {"step": 1, "op": "read_raw_columns", "columns": ["a", "proto", "b"]},
                {"step": 2, "op": "build_input_vector", "dtype": "float32", "n_elements": 4, "elements": [
                    {"index": 0, "name": "a", "source": "a", "kind": "numeric"},
                    {"index": 1, "name": "proto=tcp", "source": "proto", "kind": "onehot", "category": "tcp"},
                    {"index": 2, "name": "proto=udp", "source": "proto", "kind": "onehot", "category": "udp"},
                    {"index": 3, "name": "b", "source": "b", "kind": "numeric"}
                ]},
                {"step": 3, "op": "run_models"},
                {"step": 4, "op": "normalise"},
                {"step": 5, "op": "per_model_decision"},
                {"step": 6, "op": "ensemble"}
            ],
            "models": {"autoencoder": io("autoencoder"), "iforest": io("iforest"), "rf": io("rf")},
            "thresholds": {"autoencoder": 0.5, "iforest": 0.25, "rf": 0.4},
            "ensemble": {"rule": "weighted", "weights": {"autoencoder": 0.25, "iforest": 0.25, "rf": 0.5}}
        });
        v
    }

    #[test]
    fn reads_the_scorer_contract_of_format_2() {
        let (m, p) = parse(&sample_v2()).unwrap();
        assert_eq!(m.format_version, 2);
        assert_eq!(m.weights, vec![0.25, 0.25, 0.5]);
        assert_eq!(p.input_names(), ["a", "proto", "b"]);
        assert_eq!(p.element_name(1), "proto=tcp");

        // A step the scorer does not implement is refused, naming it.
        let mut v = sample_v2();
        v["scorer"]["steps"].as_array_mut().unwrap().insert(
            2,
            serde_json::json!({"op": "standardise", "where": "scorer (outside ONNX)"}),
        );
        let e = err_of(v);
        assert!(
            e.contains("\"standardise\"") && e.contains("does not implement"),
            "{e}"
        );

        // Elements that disagree with `features`.
        let mut v = sample_v2();
        v["scorer"]["steps"][1]["elements"][2]["category"] = "icmp".into();
        let e = err_of(v);
        assert!(e.contains("proto=icmp") && e.contains("proto=udp"), "{e}");

        // The contract's threshold must agree with the descriptive one.
        let mut v = sample_v2();
        v["scorer"]["thresholds"]["rf"] = 0.41.into();
        assert!(err_of(v).contains("must agree"));

        // Format 2 without the contract.
        let mut v = sample_v2();
        v.as_object_mut().unwrap().remove("scorer");
        assert!(err_of(v).contains("`scorer` is missing"));

        // An element pointing at an unknown column.
        let mut v = sample_v2();
        v["scorer"]["steps"][1]["elements"][3]["source"] = "c".into();
        assert!(err_of(v).contains("names `c`"));
    }

    fn parse(v: &Value) -> Result<(Manifest, Preprocessor), ModelError> {
        Manifest::parse(&v.to_string(), "toy/manifest.json")
    }

    #[test]
    fn reads_a_valid_manifest_and_ignores_unknown_keys() {
        let (m, p) = parse(&sample()).unwrap();
        assert_eq!(m.dataset, "toy");
        assert_eq!(m.n_features, 4);
        assert_eq!(m.rule, EnsembleRule::Weighted);
        assert_eq!(m.weights, vec![0.25, 0.25, 0.5]);
        assert_eq!(m.models.len(), 3);
        assert_eq!(m.models[1].name, "iforest");
        assert_eq!(m.models[1].threshold, 0.25);
        assert_eq!(m.ensemble_threshold, 1.0);
        assert_eq!(p.input_names(), ["a", "proto", "b"]);
    }

    fn err_of(v: Value) -> String {
        parse(&v).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let mut v = sample();
        v["models"]["rf"].as_object_mut().unwrap().remove("threshold");
        // thresholds.values.rf alone is enough ...
        assert!(parse(&v).is_ok());
        // ... but some place must state it.
        v["thresholds"]["values"].as_object_mut().unwrap().remove("rf");
        let e = err_of(v);
        assert!(e.contains("`models.rf.threshold` is missing"), "{e}");
        assert!(
            e.contains("toy/manifest.json") && e.contains("cargo xtask train"),
            "{e}"
        );

        let mut v = sample();
        v["ensemble"]["rule"] = "vote".into();
        assert!(err_of(v).contains("`ensemble.rule` must be one of"));

        let mut v = sample();
        v["n_features"] = 5.into();
        assert!(err_of(v).contains("`features` lists 4 names but `n_features` is 5"));

        let mut v = sample();
        v["thresholds"]["values"]["iforest"] = 0.3.into();
        assert!(err_of(v).contains("must agree"));

        let mut v = sample();
        v["models"]["rf"]["threshold"] = 0.0.into();
        v["thresholds"]["values"]["rf"] = 0.0.into();
        assert!(err_of(v).contains("must be positive"));

        let mut v = sample();
        v["models"]["rf"]["file"] = "../rf.onnx".into();
        assert!(err_of(v).contains("plain file name"));

        let mut v = sample();
        v["models"]["autoencoder"]["input"]["shape"] = serde_json::json!(["batch", 7]);
        assert!(err_of(v).contains("n_features"));

        let mut v = sample();
        v["bundle_format_version"] = 99.into();
        assert!(err_of(v).contains("bundle_format_version is 99"));

        let mut v = sample();
        v["models"]["gbm"] = v["models"]["rf"].clone();
        assert!(err_of(v).contains("`gbm`"));

        let e = Manifest::parse("{ not json", "x/manifest.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not valid JSON") && e.contains("x/manifest.json"),
            "{e}"
        );
    }
}
