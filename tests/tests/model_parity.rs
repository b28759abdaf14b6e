//! The Rust scorer (`netanom::model`) reproduces the Python pipeline: for every bundle that
//! ships a `parity.csv` (models/bundles/*, models/default), the raw rows are scored and every
//! per-model score must equal the onnxruntime score Python wrote, within
//! |rust − python| ≤ 1e-5 · max(1, |python|) (absolute for scores up to 1 in magnitude,
//! relative above), and every decision — per model and the ensemble's — must be identical.
//!
//! Also: binding refuses a renamed feature and names it; corrupted, truncated or missing model
//! files and malformed manifests are refused with a clear error; CUDA falls back to the CPU;
//! `netanom score` / `netanom eval` on CSV files, including their error reports.
//!
//! Unprivileged. Needs ONNX Runtime: $NETANOM_ORT_LIB, else
//! /usr/local/lib/netanom/libonnxruntime.so.1.31.1 (`cargo xtask setup`); without it every test
//! here prints why and passes without checking anything.
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use netanom::cli::{
    args::EngineArgs,
    eval::{EvalArgs, run as run_eval},
    score::{ScoreArgs, run as run_score},
};
use netanom::model::{
    Bundle, BundleOptions, ExecutionProvider, MODEL_NAMES, ModelError, Scorer, SequenceModel,
    csv::{Reader, Record},
};
use netanom_lab::TempDir;

/// The absolute/relative tolerance on scores (see the module documentation).
const TOL: f64 = 1e-5;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The ONNX Runtime library, or `None` (and a note on stderr) when it is not installed.
fn ort_lib(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("NETANOM_ORT_LIB")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/lib/netanom/libonnxruntime.so.1.31.1"));
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "{test}: SKIPPED: ONNX Runtime not found at {} (run `cargo xtask setup` or set NETANOM_ORT_LIB)",
            p.display()
        );
        None
    }
}

/// Load options for `lib`. `NETANOM_TEST_PROVIDER=cuda` requests the CUDA execution provider
/// in every test (`cargo xtask test` runs this file so with the `cuda` feature; on a machine
/// without a usable GPU each load falls back to the CPU, and every check still holds).
fn options(lib: &Path) -> BundleOptions {
    let provider = match std::env::var("NETANOM_TEST_PROVIDER").as_deref() {
        Ok("cuda") => ExecutionProvider::Cuda,
        Ok("cpu") | Err(_) => ExecutionProvider::Cpu,
        Ok(other) => panic!("NETANOM_TEST_PROVIDER={other:?}: expected cpu or cuda"),
    };
    BundleOptions {
        ort_lib: Some(lib.to_path_buf()),
        provider,
        ..BundleOptions::default()
    }
}

/// Every bundle directory with a parity.csv.
fn parity_bundles() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(rd) = fs::read_dir(models_dir().join("bundles")) {
        dirs.extend(rd.filter_map(Result::ok).map(|e| e.path()));
    }
    dirs.push(models_dir().join("default"));
    dirs.sort();
    dirs.retain(|d| d.join("parity.csv").is_file() && d.join("manifest.json").is_file());
    dirs
}

/// A bundle to run the non-parity tests on: nsl-kdd (it has categorical columns).
fn kdd_bundle() -> PathBuf {
    models_dir().join("bundles/nsl-kdd")
}

fn copy_bundle(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A CSV file: header and records (as strings).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    lines: Vec<usize>,
}

fn read_table(path: &Path) -> Table {
    let f = fs::File::open(path).unwrap();
    let mut r = Reader::new(std::io::BufReader::new(f));
    let mut rec = Record::default();
    assert!(r.read(&mut rec).unwrap(), "{} is empty", path.display());
    let header = rec.iter().map(str::to_owned).collect();
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    while r.read(&mut rec).unwrap() {
        rows.push(rec.iter().map(str::to_owned).collect());
        lines.push(rec.line);
    }
    Table { header, rows, lines }
}

fn write_table(path: &Path, header: &[String], rows: &[Vec<String>]) {
    let mut f = fs::File::create(path).unwrap();
    writeln!(f, "{}", header.join(",")).unwrap();
    for r in rows {
        writeln!(f, "{}", r.join(",")).unwrap();
    }
}

impl Table {
    fn col(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }
    fn f64s(&self, name: &str) -> Vec<f64> {
        let c = self.col(name);
        self.rows.iter().map(|r| r[c].parse().unwrap()).collect()
    }
    fn bools(&self, name: &str) -> Vec<bool> {
        let c = self.col(name);
        self.rows
            .iter()
            .map(|r| match r[c].as_str() {
                "0" => false,
                "1" => true,
                other => panic!("{name}: {other:?} is not 0/1"),
            })
            .collect()
    }
}

/// The raw rows of `t` in the bundle's column order, through `Bundle::bind` on the header.
fn raw_rows(bundle: &Bundle, t: &Table) -> Vec<f32> {
    let b = bundle.bind(&t.header).unwrap();
    let pre = bundle.preprocessor();
    let mut out = Vec::with_capacity(t.rows.len() * b.gather.len());
    for (row, line) in t.rows.iter().zip(&t.lines) {
        for (c, &h) in b.gather.iter().enumerate() {
            out.push(
                pre.encode(c, &row[h])
                    .unwrap_or_else(|e| panic!("line {line}, column {}: {e}", t.header[h])),
            );
        }
    }
    out
}

#[derive(Default, Debug, Clone, Copy)]
struct Diff {
    abs: f64,
    rel: f64,
}

#[test]
fn rust_scores_equal_python_onnxruntime_scores() {
    let Some(lib) = ort_lib("rust_scores_equal_python_onnxruntime_scores") else {
        return;
    };
    let bundles = parity_bundles();
    assert!(
        !bundles.is_empty(),
        "no bundle with a parity.csv under {}",
        models_dir().display()
    );
    let mut failures = Vec::new();
    for dir in &bundles {
        let t0 = std::time::Instant::now();
        let bundle = Bundle::load_with(dir, &options(&lib)).unwrap_or_else(|e| panic!("{e}"));
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        let provider = bundle.provider();
        // On a GPU machine: prove the scores on CUDA, rather than accept a fallback.
        if std::env::var_os("NETANOM_TEST_REQUIRE_CUDA").is_some() {
            assert_eq!(
                provider,
                ExecutionProvider::Cuda,
                "NETANOM_TEST_REQUIRE_CUDA is set: {:?}",
                bundle.fallback_reason()
            );
        }
        let t = read_table(&dir.join("parity.csv"));
        let n = t.rows.len();
        let rows = raw_rows(&bundle, &t);
        let width = bundle.preprocessor().n_inputs();
        let mut scorer = Scorer::new(bundle);
        let full = scorer.score(&rows, n).unwrap().clone();
        assert!(
            full.rejected.is_empty(),
            "{}: rows rejected: {:?}",
            dir.display(),
            full.rejected
        );

        let mut diffs = [Diff::default(); 3];
        for (mi, m) in MODEL_NAMES.iter().enumerate() {
            let want = t.f64s(&format!("score_{m}"));
            for (i, w) in want.iter().enumerate() {
                let got = f64::from(full.model[mi][i]);
                let abs = (got - w).abs();
                diffs[mi].abs = diffs[mi].abs.max(abs);
                diffs[mi].rel = diffs[mi].rel.max(abs / w.abs().max(f64::MIN_POSITIVE));
                if abs > TOL * w.abs().max(1.0) {
                    failures.push(format!(
                        "{}: line {}: score_{m} {got} vs python {w}",
                        dir.display(),
                        t.lines[i]
                    ));
                }
            }
            let want = t.bools(&format!("decision_{m}"));
            for (i, w) in want.iter().enumerate() {
                if full.flagged[mi][i] != *w {
                    failures.push(format!(
                        "{}: line {}: decision_{m} {} vs python {w}",
                        dir.display(),
                        t.lines[i],
                        full.flagged[mi][i]
                    ));
                }
            }
        }
        let want = t.bools("decision");
        let want_e = t.f64s("ensemble_score");
        let mut e_diff = 0.0f64;
        for i in 0..n {
            if full.anomaly[i] != want[i] {
                failures.push(format!(
                    "{}: line {}: ensemble decision {} vs python {}",
                    dir.display(),
                    t.lines[i],
                    full.anomaly[i],
                    want[i]
                ));
            }
            e_diff = e_diff.max((full.ensemble[i] - want_e[i]).abs() / want_e[i].abs().max(1.0));
        }
        assert!(
            e_diff <= TOL,
            "{}: ensemble score differs by {e_diff}",
            dir.display()
        );

        // The same rows in other batch sizes give the same decisions, and scores within TOL.
        let mut batch_diff = 0.0f64;
        for batch in [1usize, 37] {
            let mut start = 0;
            while start < n {
                let k = batch.min(n - start);
                let s = scorer
                    .score(&rows[start * width..(start + k) * width], k)
                    .unwrap();
                for i in 0..k {
                    assert_eq!(
                        s.anomaly[i],
                        full.anomaly[start + i],
                        "batch {batch}, row {}",
                        start + i
                    );
                    for mi in 0..3 {
                        assert_eq!(s.flagged[mi][i], full.flagged[mi][start + i]);
                        let (a, b) = (f64::from(s.model[mi][i]), f64::from(full.model[mi][start + i]));
                        batch_diff = batch_diff.max((a - b).abs() / b.abs().max(1.0));
                    }
                }
                start += k;
            }
        }
        assert!(
            batch_diff <= TOL,
            "{}: batch sizes change scores by {batch_diff}",
            dir.display()
        );

        eprintln!(
            "parity {} on {provider}: {n} rows, {} unseen-category rows, bundle loaded in {load_ms:.0} ms; max |diff| (max rel): \
             autoencoder {:.3e} ({:.3e}), iforest {:.3e} ({:.3e}), rf {:.3e} ({:.3e}); ensemble score {:.3e}; \
             batch 1/37 vs 256: {:.3e}; decisions: {} anomalies, all identical: {}",
            dir.display(),
            full.unseen,
            diffs[0].abs,
            diffs[0].rel,
            diffs[1].abs,
            diffs[1].rel,
            diffs[2].abs,
            diffs[2].rel,
            e_diff,
            batch_diff,
            full.anomaly.iter().filter(|a| **a).count(),
            failures.is_empty()
        );
    }
    assert!(
        failures.is_empty(),
        "{} disagreement(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn binding_names_missing_and_unexpected_features() {
    let Some(lib) = ort_lib("binding_names_missing_and_unexpected_features") else {
        return;
    };
    let bundle = Bundle::load_with(kdd_bundle(), &options(&lib)).unwrap();
    let names: Vec<String> = bundle.preprocessor().input_names().to_vec();
    // Exact names in another order, plus an extra column: lenient binding works.
    let mut shuffled: Vec<&str> = names.iter().map(String::as_str).rev().collect();
    shuffled.push("label");
    let b = bundle.bind(&shuffled).unwrap();
    assert_eq!(b.width, names.len() + 1);
    assert_eq!(b.gather[0], names.len() - 1);
    // Strict binding refuses the extra column and names it.
    let e = bundle.bind_strict(&shuffled).unwrap_err().to_string();
    assert!(
        e.contains("unexpected: [label]") && e.contains("missing: []"),
        "{e}"
    );

    // One feature renamed.
    let mut renamed: Vec<&str> = names.iter().map(String::as_str).collect();
    let i = names.iter().position(|n| n == "src_bytes").unwrap_or(0);
    let old = names[i].clone();
    let new = format!("{old}_renamed");
    renamed[i] = &new;
    let e = bundle.bind(&renamed).unwrap_err();
    assert!(
        matches!(&e, ModelError::Bind { missing, .. } if missing == std::slice::from_ref(&old)),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&format!("missing: [{old}]")), "{msg}");
    let msg = bundle.bind_strict(&renamed).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("missing: [{old}]")) && msg.contains(&format!("unexpected: [{new}]")),
        "{msg}"
    );

    // Rows in the caller's order score like rows in the bundle's order.
    let t = read_table(&kdd_bundle().join("parity.csv"));
    let rows = raw_rows(&bundle, &t);
    let n = t.rows.len().min(50);
    let w = names.len();
    let mut rev = Vec::with_capacity(n * (w + 1));
    for r in rows.chunks(w).take(n) {
        rev.extend(r.iter().rev());
        rev.push(12345.0); // the extra column
    }
    let mut plain = Scorer::new(bundle);
    let want = plain.score(&rows[..n * w], n).unwrap().clone();
    plain.set_binding(Some(b)).unwrap();
    assert_eq!(plain.row_width(), w + 1);
    let got = plain.score(&rev, n).unwrap();
    assert_eq!(got, &want);
    // A batch of the wrong width is refused.
    let e = plain.score(&rev[1..], n).unwrap_err().to_string();
    assert!(e.contains("rows of"), "{e}");
}

#[test]
fn nan_and_inf_rows_are_refused_and_counted() {
    let Some(lib) = ort_lib("nan_and_inf_rows_are_refused_and_counted") else {
        return;
    };
    let bundle = Bundle::load_with(kdd_bundle(), &options(&lib)).unwrap();
    let t = read_table(&kdd_bundle().join("parity.csv"));
    let mut rows = raw_rows(&bundle, &t);
    let w = bundle.preprocessor().n_inputs();
    let n = 6;
    let mut scorer = Scorer::new(bundle);
    let want = scorer.score(&rows[..n * w], n).unwrap().clone();
    rows[w + 4] = f32::NAN; // row 1, column 4
    rows[4 * w] = f32::INFINITY; // row 4, column 0
    let got = scorer.score(&rows[..n * w], n).unwrap();
    assert_eq!(got.rejected, [(1, 4), (4, 0)]);
    assert!(!got.is_scored(1) && got.is_scored(0));
    for i in [0, 2, 3, 5] {
        assert_eq!(got.ensemble[i], want.ensemble[i]);
        assert_eq!(got.anomaly[i], want.anomaly[i]);
    }
    for i in [1, 4] {
        assert!(got.ensemble[i].is_nan() && !got.anomaly[i]);
        assert!(got.model.iter().all(|m| m[i].is_nan()));
        assert!(got.flagged.iter().all(|f| !f[i]));
    }
    assert_eq!(scorer.rejected_total(), 2);
    assert_eq!(scorer.rows_total(), 2 * n as u64);
    // A batch of nothing but bad rows runs no model.
    let bad = vec![f32::NAN; w];
    assert_eq!(scorer.score(&bad, 1).unwrap().rejected, [(0, 0)]);
    assert!(scorer.score(&[], 0).unwrap().is_empty());
}

#[test]
fn corrupted_missing_or_mismatched_files_are_refused_cleanly() {
    let Some(lib) = ort_lib("corrupted_missing_or_mismatched_files_are_refused_cleanly") else {
        return;
    };
    let tmp = TempDir::new("corrupt");
    let dir = tmp.path("bundle");
    copy_bundle(&kdd_bundle(), &dir);
    let rf = dir.join("rf.onnx");
    let bytes = fs::read(&rf).unwrap();
    fs::write(&rf, &bytes[..bytes.len() / 2]).unwrap();

    // With checksums (the default): the manifest's size/sha256 catch it.
    let e = Bundle::load_with(&dir, &options(&lib)).unwrap_err();
    assert!(matches!(e, ModelError::Checksum { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&rf.display().to_string()) && msg.contains("truncated"),
        "{msg}"
    );
    // Without: ONNX Runtime's parse error, still naming the file and the fix.
    let no_check = BundleOptions {
        verify_checksums: false,
        ..options(&lib)
    };
    let e = Bundle::load_with(&dir, &no_check).unwrap_err();
    assert!(matches!(e, ModelError::Onnx { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&rf.display().to_string()) && msg.contains("copy the whole bundle"),
        "{msg}"
    );
    eprintln!("truncated rf.onnx without checksums: {msg}");
    // Garbage (not protobuf at all).
    fs::write(&rf, b"this is not an onnx model").unwrap();
    let e = Bundle::load_with(&dir, &no_check).unwrap_err();
    assert!(matches!(e, ModelError::Onnx { .. }), "{e}");

    // A missing file.
    fs::write(&rf, &bytes).unwrap();
    fs::remove_file(dir.join("iforest.onnx")).unwrap();
    let e = Bundle::load_with(&dir, &options(&lib)).unwrap_err();
    assert!(matches!(e, ModelError::MissingModel { .. }), "{e}");
    assert!(e.to_string().contains("iforest.onnx"), "{e}");
    fs::copy(kdd_bundle().join("iforest.onnx"), dir.join("iforest.onnx")).unwrap();
    Bundle::load_with(&dir, &options(&lib)).unwrap();

    // A manifest whose tensor names do not match the graphs.
    let mpath = dir.join("manifest.json");
    let original = fs::read_to_string(&mpath).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    if v.get("scorer").is_some() {
        v["scorer"]["models"]["rf"]["input"]["name"] = "features".into();
    }
    v["models"]["rf"]["input"]["name"] = "features".into();
    fs::write(&mpath, v.to_string()).unwrap();
    let e = Bundle::load_with(&dir, &options(&lib)).unwrap_err();
    assert!(matches!(e, ModelError::Interface { .. }), "{e}");
    assert!(e.to_string().contains("\"features\""), "{e}");

    // A malformed manifest: truncated JSON, then a missing key.
    fs::write(&mpath, &original[..original.len() / 3]).unwrap();
    let e = Bundle::load_with(&dir, &options(&lib)).unwrap_err();
    assert!(matches!(e, ModelError::Manifest { .. }), "{e}");
    assert!(
        e.to_string().contains("manifest.json") && e.to_string().contains("not valid JSON"),
        "{e}"
    );
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v.as_object_mut().unwrap().remove("ensemble");
    if let Some(s) = v.get_mut("scorer") {
        s.as_object_mut().unwrap().remove("ensemble");
    }
    fs::write(&mpath, v.to_string()).unwrap();
    let e = Bundle::load_with(&dir, &options(&lib)).unwrap_err().to_string();
    assert!(e.contains("ensemble` is missing"), "{e}");

    // No bundle at all.
    let e = Bundle::load_with(tmp.path("nothing"), &options(&lib))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no model bundle") && e.contains("manifest.json"),
        "{e}"
    );
}

#[test]
fn bundle_from_memory_scores_like_the_directory() {
    let Some(lib) = ort_lib("bundle_from_memory_scores_like_the_directory") else {
        return;
    };
    let dir = kdd_bundle();
    let manifest = fs::read_to_string(dir.join("manifest.json")).unwrap();
    let files: Vec<(String, Vec<u8>)> = ["autoencoder.onnx", "iforest.onnx", "rf.onnx"]
        .iter()
        .map(|f| ((*f).to_owned(), fs::read(dir.join(f)).unwrap()))
        .collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let mem = Bundle::from_memory("embedded:nsl-kdd", &manifest, &refs, &options(&lib)).unwrap();
    let disk = Bundle::load_with(&dir, &options(&lib)).unwrap();
    let t = read_table(&dir.join("parity.csv"));
    let rows = raw_rows(&disk, &t);
    let n = t.rows.len();
    let a = Scorer::new(mem).score(&rows, n).unwrap().clone();
    let b = disk.scorer().score(&rows, n).unwrap().clone();
    assert_eq!(a, b);
    // A file missing from memory is named.
    let e = Bundle::from_memory("embedded:x", &manifest, &refs[..2], &options(&lib))
        .unwrap_err()
        .to_string();
    assert!(e.contains("rf.onnx"), "{e}");
}

#[test]
fn cuda_request_falls_back_to_cpu() {
    let Some(lib) = ort_lib("cuda_request_falls_back_to_cpu") else {
        return;
    };
    let opts = BundleOptions {
        provider: ExecutionProvider::Cuda,
        intra_threads: 2,
        ..options(&lib)
    };
    let bundle = Bundle::load_with(kdd_bundle(), &opts).unwrap();
    assert_eq!(bundle.requested_provider(), ExecutionProvider::Cuda);
    assert_eq!(bundle.intra_threads(), 2);
    if bundle.provider() == ExecutionProvider::Cuda {
        eprintln!("cuda_request_falls_back_to_cpu: CUDA is available here; no fallback to test");
        return;
    }
    let why = bundle.fallback_reason().expect("a fallback reason");
    eprintln!("CUDA fallback: {why}");
    // The reason names the cause: the build (no `cuda` feature); the library (the PyPI
    // `onnxruntime` wheel has no CUDA provider); or the machine (`onnxruntime-gpu`'s provider
    // cannot start without a GPU and the CUDA libraries). `cargo xtask test` runs all three.
    let gpu_build = lib.with_file_name("libonnxruntime_providers_cuda.so").is_file();
    if !netanom::model::CUDA_BUILT {
        assert!(why.contains("without the `cuda` feature"), "{why}");
    } else if gpu_build {
        assert!(
            why.contains("could not start its CUDA execution provider") && why.contains("--provider cpu"),
            "{why}"
        );
    } else {
        assert!(why.contains("has no CUDA execution provider"), "{why}");
    }
    let scorer = bundle.scorer();
    assert_eq!(scorer.provider(), ExecutionProvider::Cpu);
}

/// Every shipped bundle trained on live flow features (the default, CIC-IDS2017, and the flows
/// bundles trained on netanom's own exports) binds to the live flow vector, as `netanom run`
/// binds it; a flows bundle takes every feature, so it binds strictly.
#[test]
fn live_feature_bundles_bind_to_the_live_flow_features() {
    let Some(lib) = ort_lib("live_feature_bundles_bind_to_the_live_flow_features") else {
        return;
    };
    let names: Vec<&str> = netanom::features::FLOW_FEATURES.iter().map(|f| f.name).collect();
    let mut checked = 0;
    for dir in parity_bundles() {
        let bundle = Bundle::load_with(&dir, &options(&lib)).unwrap();
        let json = &bundle.manifest().json;
        if json["scorer"]["steps"][0]["from_flow_features"].is_null() {
            continue;
        }
        let b = bundle
            .bind(&names)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(b.width, names.len());
        let strict = bundle.bind_strict(&names);
        eprintln!(
            "{}: binds to the {} flow features ({})",
            dir.display(),
            names.len(),
            if strict.is_ok() { "strictly" } else { "leniently" }
        );
        if json["training_data"]["kind"] == "flows" {
            let b = strict.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            assert!(
                b.is_identity(),
                "{}: a flows bundle takes the live vector as it is",
                dir.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 0, "no shipped bundle takes live flow features");
}

// ---- the CSV commands -----------------------------------------------------------------------

fn engine(lib: &Path, bundle: &Path) -> EngineArgs {
    EngineArgs {
        bundle: bundle.to_path_buf(),
        threads: 1,
        provider: options(lib).provider,
        ort_lib: Some(lib.to_path_buf()),
    }
}

/// The parity.csv of nsl-kdd without its output columns: raw columns and label.
fn kdd_input(tmp: &TempDir) -> (PathBuf, Table) {
    let mut t = read_table(&kdd_bundle().join("parity.csv"));
    let keep = t.col("label") + 1;
    t.header.truncate(keep);
    for r in &mut t.rows {
        r.truncate(keep);
    }
    let p = tmp.path("in.csv");
    write_table(&p, &t.header, &t.rows);
    (p, t)
}

#[test]
fn score_appends_scores_and_decisions() {
    let Some(lib) = ort_lib("score_appends_scores_and_decisions") else {
        return;
    };
    let tmp = TempDir::new("score");
    let (input, t) = kdd_input(&tmp);
    let out = tmp.path("out.csv");
    let args = ScoreArgs {
        engine: engine(&lib, &kdd_bundle()),
        input: input.clone(),
        out: Some(out.clone()),
    };
    let s = run_score(&args).unwrap();
    assert_eq!(s.rows as usize, t.rows.len());
    let got = read_table(&out);
    let want = read_table(&kdd_bundle().join("parity.csv"));
    assert_eq!(got.header, want.header, "same columns as parity.csv");
    assert_eq!(got.rows.len(), want.rows.len());
    for name in [
        "decision_autoencoder",
        "decision_iforest",
        "decision_rf",
        "decision",
    ] {
        assert_eq!(got.bools(name), want.bools(name), "{name}");
    }
    for m in MODEL_NAMES {
        let (g, w) = (got.f64s(&format!("score_{m}")), want.f64s(&format!("score_{m}")));
        for (a, b) in g.iter().zip(&w) {
            assert!((a - b).abs() <= TOL * b.abs().max(1.0), "{m}: {a} vs {b}");
        }
    }
    // Passed-through columns are unchanged, the label included.
    let lc = got.col("label");
    assert!(got.rows.iter().zip(&t.rows).all(|(g, i)| g[..=lc] == i[..]));
    assert_eq!(
        s.anomalies as usize,
        got.bools("decision").iter().filter(|d| **d).count()
    );

    // The output may not overwrite the input.
    let e = run_score(&ScoreArgs {
        out: Some(input.clone()),
        ..args.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("is the input file"), "{e}");
}

#[test]
fn score_reports_bad_rows_by_line_and_keeps_what_it_scored() {
    let Some(lib) = ort_lib("score_reports_bad_rows_by_line_and_keeps_what_it_scored") else {
        return;
    };
    let tmp = TempDir::new("badrows");
    let (_, t) = kdd_input(&tmp);
    let out = tmp.path("out.csv");
    let src = t.col("src_bytes");
    let run = |rows: &[Vec<String>], header: &[String]| {
        let p = tmp.path("bad.csv");
        write_table(&p, header, rows);
        let r = run_score(&ScoreArgs {
            engine: engine(&lib, &kdd_bundle()),
            input: p,
            out: Some(out.clone()),
        });
        (r, read_table_opt(&out))
    };

    // A non-numeric value on line 5 (data row 4): rows 1-3 are written, then the error.
    for (bad, why) in [
        ("abc", "not a number"),
        ("nan", "NaN"),
        ("-inf", "NaN and infinite"),
        ("", "empty"),
    ] {
        let mut rows = t.rows[..10].to_vec();
        rows[3][src] = bad.to_owned();
        let (r, written) = run(&rows, &t.header);
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains("line 5")
                && e.contains("`src_bytes`")
                && e.contains(why)
                && e.contains("3 row(s) before it"),
            "{e}"
        );
        assert_eq!(written.map(|w| w.rows.len()), Some(3), "{bad:?}");
    }
    // A row with a missing field.
    let mut rows = t.rows[..5].to_vec();
    rows[1].pop();
    let e = format!("{:#}", run(&rows, &t.header).0.unwrap_err());
    assert!(e.contains("line 3") && e.contains("fields"), "{e}");

    // A missing feature column is named.
    let svc = t.col("service");
    let header: Vec<String> = t
        .header
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != svc)
        .map(|(_, h)| h.clone())
        .collect();
    let rows: Vec<Vec<String>> = t.rows[..3]
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .filter(|(i, _)| *i != svc)
                .map(|(_, v)| v.clone())
                .collect()
        })
        .collect();
    let e = format!("{:#}", run(&rows, &header).0.unwrap_err());
    assert!(e.contains("missing: [service]"), "{e}");

    // An unseen category is scored (all-zero block) and counted.
    let mut rows = t.rows[..4].to_vec();
    rows[2][svc] = "no_such_service".into();
    let (r, written) = run(&rows, &t.header);
    let s = r.unwrap();
    assert_eq!((s.rows, s.unseen), (4, 1));
    assert_eq!(written.unwrap().rows.len(), 4);

    // An empty file, and a header without rows.
    let p = tmp.path("empty.csv");
    fs::write(&p, "").unwrap();
    let e = format!(
        "{:#}",
        run_score(&ScoreArgs {
            engine: engine(&lib, &kdd_bundle()),
            input: p.clone(),
            out: Some(out.clone()),
        })
        .unwrap_err()
    );
    assert!(e.contains("is empty"), "{e}");
    let (r, written) = run(&[], &t.header);
    assert_eq!(r.unwrap().rows, 0);
    assert_eq!(written.unwrap().rows.len(), 0);

    // A corrupted model file is an error before anything is written.
    let bdir = tmp.path("b");
    copy_bundle(&kdd_bundle(), &bdir);
    fs::write(bdir.join("autoencoder.onnx"), b"\x08\x07garbage").unwrap();
    let e = format!(
        "{:#}",
        run_score(&ScoreArgs {
            engine: engine(&lib, &bdir),
            input: tmp.path("bad.csv"),
            out: None,
        })
        .unwrap_err()
    );
    assert!(e.contains("autoencoder.onnx"), "{e}");
}

fn read_table_opt(p: &Path) -> Option<Table> {
    p.is_file().then(|| read_table(p))
}

#[test]
fn eval_reports_metrics_per_model_and_for_the_ensemble() {
    let Some(lib) = ort_lib("eval_reports_metrics_per_model_and_for_the_ensemble") else {
        return;
    };
    let tmp = TempDir::new("eval");
    let (input, _) = kdd_input(&tmp);
    let want = read_table(&kdd_bundle().join("parity.csv"));
    let args = EvalArgs {
        engine: engine(&lib, &kdd_bundle()),
        input,
        label_column: "label".into(),
        positive: vec![],
        normal: vec!["normal".into(), "0".into()],
    };
    let r = run_eval(&args).unwrap();
    let y = want.bools("label");
    assert_eq!(r.rows, y.len());
    assert_eq!(r.positives, y.iter().filter(|l| **l).count());
    assert_eq!(r.scorers.len(), 4);
    let decisions = [
        "decision_autoencoder",
        "decision_iforest",
        "decision_rf",
        "decision",
    ];
    for (s, d) in r.scorers.iter().zip(decisions) {
        let f = want.bools(d);
        let tp = y.iter().zip(&f).filter(|(y, f)| **y && **f).count() as u64;
        let fp = y.iter().zip(&f).filter(|(y, f)| !**y && **f).count() as u64;
        assert_eq!((s.confusion.tp, s.confusion.fp), (tp, fp), "{}", s.name);
        let auc = s.roc_auc.unwrap();
        assert!((0.5..=1.0).contains(&auc), "{}: ROC-AUC {auc}", s.name);
        assert!(s.pr_auc.unwrap() > r.base_rate(), "{}", s.name);
    }
    // A missing label column is named.
    let e = format!(
        "{:#}",
        run_eval(&EvalArgs {
            label_column: "class".into(),
            ..args.clone()
        })
        .unwrap_err()
    );
    assert!(e.contains("no column `class`"), "{e}");
}

/// `netanom eval` on rows of the real KDDTest+ file (gzip, no header) given the header from
/// field_names.csv, with string labels.
#[test]
fn eval_on_kdd_rows_with_string_labels() {
    let Some(lib) = ort_lib("eval_on_kdd_rows_with_string_labels") else {
        return;
    };
    let shared = std::env::var_os("NETANOM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let ds = shared.join("datasets/nsl-kdd");
    let (names, gz) = (ds.join("field_names.csv"), ds.join("KDDTest+.txt.gz"));
    if !names.is_file() || !gz.is_file() {
        eprintln!(
            "eval_on_kdd_rows_with_string_labels: SKIPPED: no {}",
            ds.display()
        );
        return;
    }
    let out = Command::new("gzip").arg("-dc").arg(&gz).output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        eprintln!("eval_on_kdd_rows_with_string_labels: SKIPPED: gzip -dc failed");
        return;
    };
    let text = String::from_utf8(out.stdout).unwrap();
    let mut header: Vec<String> = fs::read_to_string(&names)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').next().unwrap().trim().to_owned())
        .collect();
    header.extend(["label".to_owned(), "difficulty".to_owned()]);
    let rows: Vec<Vec<String>> = text
        .lines()
        .take(500)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let tmp = TempDir::new("kdd");
    let p = tmp.path("kddtest.csv");
    write_table(&p, &header, &rows);
    let r = run_eval(&EvalArgs {
        engine: engine(&lib, &kdd_bundle()),
        input: p.clone(),
        label_column: "label".into(),
        positive: vec![],
        normal: vec!["normal".into(), "normal.".into(), "BENIGN".into(), "0".into()],
    })
    .unwrap();
    let attacks = rows.iter().filter(|r| r[41] != "normal").count();
    assert_eq!((r.rows, r.positives), (500, attacks));
    let ens = &r.scorers[3];
    assert!(ens.roc_auc.unwrap() > 0.8, "{ens:?}");
    // The same file through `score`.
    let s = run_score(&ScoreArgs {
        engine: engine(&lib, &kdd_bundle()),
        input: p,
        out: Some(tmp.path("scored.csv")),
    })
    .unwrap();
    assert_eq!(s.rows, 500);
    assert_eq!(s.anomalies, ens.confusion.tp + ens.confusion.fp);
}

/// The sequence part: the agent's ONNX Runtime scores of the letter windows in
/// models/default/sequence-parity.tsv equal Python's within the tolerance, and the decisions at
/// the part's threshold are identical; the embedded part is the directory's; the windows are
/// what the agent's letter encoding indexes.
#[test]
fn sequence_part_scores_equal_python_onnxruntime_scores() {
    let Some(lib) = ort_lib("sequence_part_scores_equal_python_onnxruntime_scores") else {
        return;
    };
    let dir = models_dir().join("default");
    let mut part = SequenceModel::load(&dir, &options(&lib))
        .unwrap()
        .expect("the default bundle has a sequence part");
    let mut embedded = netanom::model::embedded::load_sequence(&options(&lib)).unwrap();
    assert_eq!(part.spec, embedded.spec);
    let text = fs::read_to_string(dir.join("sequence-parity.tsv")).unwrap();
    let mut rows = text.lines();
    assert_eq!(
        rows.next(),
        Some("letters\tlength\tindices\tscore\tscore_f32_bits\tflagged")
    );
    let mut windows: Vec<Vec<i64>> = Vec::new();
    let mut want: Vec<(f64, bool)> = Vec::new();
    for line in rows {
        let c: Vec<&str> = line.split('\t').collect();
        let idx: Vec<i64> = c[2].split(' ').map(|i| i.parse().unwrap()).collect();
        // The agent's own indexing of the letters gives the same window.
        let mine: Vec<i64> = c[0]
            .bytes()
            .filter_map(netanom::letters::alphabet_index)
            .collect();
        let tail = &mine[mine.len().saturating_sub(part.spec.max_len)..];
        assert_eq!(tail, &idx[..], "indices of {}", c[0]);
        assert_eq!(idx.len(), c[1].parse::<usize>().unwrap());
        windows.push(idx);
        want.push((c[3].parse().unwrap(), c[5] == "1"));
    }
    assert!(windows.len() >= 50, "{} parity rows", windows.len());
    let refs: Vec<&[i64]> = windows.iter().map(Vec::as_slice).collect();
    let got = part.score(&refs).unwrap();
    assert_eq!(got, embedded.score(&refs).unwrap());
    for ((g, (w, flagged)), win) in got.iter().zip(&want).zip(&windows) {
        let g = f64::from(*g);
        assert!(
            (g - w).abs() <= TOL * w.abs().max(1.0),
            "window {win:?}: rust {g}, python {w}"
        );
        assert_eq!(g > part.spec.threshold, *flagged, "decision of window {win:?}");
    }
    // Scored one at a time (no padding), the same.
    for (w, g) in refs.iter().zip(&got).take(8) {
        let one = part.score(&[w]).unwrap();
        assert!((one[0] - g).abs() <= 1e-6, "batched {g}, alone {}", one[0]);
    }
}

/// A sequence part that does not match its files, or another encoding, is refused by name.
#[test]
fn a_broken_sequence_part_is_refused_clearly() {
    let Some(lib) = ort_lib("a_broken_sequence_part_is_refused_clearly") else {
        return;
    };
    let src = models_dir().join("default");
    let tmp = TempDir::new("seq-part");
    let dir = tmp.path("bundle");
    fs::create_dir_all(&dir).unwrap();
    assert!(
        SequenceModel::load(&dir, &options(&lib)).unwrap().is_none(),
        "no part: none"
    );
    let json = fs::read_to_string(src.join("sequence.json")).unwrap();
    fs::write(dir.join("sequence.json"), &json).unwrap();
    let e = SequenceModel::load(&dir, &options(&lib))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("sequence.onnx") && e.contains("missing"), "{e}");
    let mut onnx = fs::read(src.join("sequence.onnx")).unwrap();
    onnx.truncate(onnx.len() / 2);
    fs::write(dir.join("sequence.onnx"), &onnx).unwrap();
    let e = SequenceModel::load(&dir, &options(&lib))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("sequence.onnx") && e.contains("bytes long"), "{e}");
    fs::write(
        dir.join("sequence.json"),
        json.replace("123456789abcdefghi", "123456789abcdefghX"),
    )
    .unwrap();
    let e = SequenceModel::load(&dir, &options(&lib))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("encoding.alphabet") && e.contains("another encoding"),
        "{e}"
    );
}
