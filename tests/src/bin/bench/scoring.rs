//! Section 4: Scoring throughput with ONNX Runtime (CPU, one thread), per model and for the ensemble.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::report::Report;

/// Pins the calling thread to the CPU it runs on; restores the previous mask on drop.
pub(crate) struct PinnedThread(Option<libc::cpu_set_t>);

impl PinnedThread {
    pub(crate) fn pin() -> PinnedThread {
        // SAFETY: plain sched_{get,set}affinity(2) on the calling thread with a zeroed set.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
                return PinnedThread(None);
            }
            let cpu = libc::sched_getcpu().max(0) as usize;
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
                return PinnedThread(None);
            }
            PinnedThread(Some(old))
        }
    }
}

impl Drop for PinnedThread {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: restores the mask read in `pin`.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), old) };
        }
    }
}

/// Throughput and per-call latency of `f`, which handles `batch` vectors per call.
pub(crate) struct CallStats {
    pub(crate) per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

pub(crate) fn time_calls(
    budget: Duration,
    batch: usize,
    f: &mut dyn FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<CallStats> {
    for i in 0..20 {
        f(i)?;
    }
    let mut lat: Vec<f64> = Vec::with_capacity(1 << 16);
    let t0 = Instant::now();
    let mut i = 0;
    while (t0.elapsed() < budget || lat.len() < 50) && lat.len() < 2_000_000 {
        let t = Instant::now();
        f(i)?;
        lat.push(t.elapsed().as_nanos() as f64);
        i += 1;
    }
    let total = t0.elapsed().as_secs_f64();
    let calls = lat.len();
    lat.sort_by(f64::total_cmp);
    Ok(CallStats {
        per_s: (calls * batch) as f64 / total,
        p50_us: lat[calls / 2] / 1e3,
        p99_us: lat[(calls * 99 / 100).min(calls - 1)] / 1e3,
    })
}

/// The raw rows of a bundle's parity.csv (its fixed test rows), in the bundle's column order.
pub(crate) fn parity_rows(
    bundle: &netanom::model::Bundle,
    path: &std::path::Path,
) -> anyhow::Result<Vec<f32>> {
    use netanom::model::csv::{Reader, Record};
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rd = Reader::new(std::io::BufReader::new(f));
    let mut rec = Record::default();
    if !rd.read(&mut rec)? {
        bail!("{} is empty", path.display());
    }
    let header: Vec<String> = rec.iter().map(str::to_owned).collect();
    let binding = bundle.bind(&header)?;
    let pre = bundle.preprocessor();
    let mut rows = Vec::new();
    while rd.read(&mut rec)? {
        for (c, &h) in binding.gather.iter().enumerate() {
            rows.push(
                pre.encode(c, rec.get(h))
                    .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", path.display(), rec.line))?,
            );
        }
    }
    Ok(rows)
}

/// The benchmark's rows: the bundle's parity rows repeated to fill `pool` vectors of
/// `width`, and the time budget per measurement.
struct Rows {
    rows: Vec<f32>,
    width: usize,
    pool: usize,
    budget: Duration,
}

impl Rows {
    /// The rows of call `i` at `batch` rows per call.
    fn slice(&self, i: usize, batch: usize) -> std::ops::Range<usize> {
        let start = (i * batch) % (self.pool - batch + 1);
        start * self.width..(start + batch) * self.width
    }
}

const SCORING_NOTE: &str = "`netanom::model::Scorer` on the bundle below: ONNX Runtime's CPU \
    provider, one intra-op and one inter-op thread, the benchmark thread pinned to one CPU. \
    Input: the bundle's parity.csv rows (real test rows), repeated; each call scores the next \
    `batch` rows. *vectors/s* = rows scored per second of wall time over many calls; p50/p99 are \
    per call (per batch). Rows per model include the Rust-side preprocessing; *ensemble* is all \
    three models, the ratios, the rule and the decision. Baseline in the same run: the Rust-side \
    preprocessing alone (raw row → model-input vector). Targets: autoencoder ≥ 1M vectors/s at \
    batch 1,024; ensemble ≥ 250k vectors/s. Bundle: models/default, else \
    models/bundles/nsl-kdd, or $NETANOM_BENCH_BUNDLE.";

pub(crate) fn scoring_throughput(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    use netanom::model::{Bundle, BundleOptions};
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    // $NETANOM_BENCH_BUNDLE names another bundle directory.
    let dir = std::env::var_os("NETANOM_BENCH_BUNDLE")
        .map(PathBuf::from)
        .into_iter()
        .chain([models.join("default"), models.join("bundles/nsl-kdd")])
        .find(|d| d.join("manifest.json").is_file())
        .context("no model bundle (models/default or models/bundles/nsl-kdd)")?;
    r.section("Scoring throughput (ONNX Runtime, CPU, 1 thread)", SCORING_NOTE);
    let _pin = PinnedThread::pin();
    let t0 = Instant::now();
    let bundle = Bundle::load_with(&dir, &BundleOptions::default())?;
    let load = t0.elapsed();
    let m = bundle.manifest();
    r.line(format!(
        "Bundle `{}` (dataset {}, {} raw columns → {} model inputs, ensemble rule {}), loaded in {:.2} s \
         (three sessions created once); provider {}.",
        dir.strip_prefix(models.parent().unwrap_or(&models))
            .unwrap_or(&dir)
            .display(),
        m.dataset,
        bundle.preprocessor().n_inputs(),
        m.n_features,
        m.rule.name(),
        load.as_secs_f64(),
        bundle.provider()
    ));
    r.line(String::new());
    let rows = bench_rows(&bundle, &dir, quick)?;
    let mut scorer = bundle.scorer();
    let (ae_1024, ens_1024) = main_table(r, &mut scorer, &rows)?;
    r.line(String::new());
    let verdict = |x: f64, t: f64| if x >= t { "met" } else { "NOT met" };
    r.line(format!(
        "Targets at batch 1,024: autoencoder {ae_1024:.0} vectors/s (≥ 1,000,000: {}); ensemble \
         {ens_1024:.0} vectors/s (≥ 250,000: {}).",
        verdict(ae_1024, 1e6),
        verdict(ens_1024, 2.5e5)
    ));
    r.line(String::new());
    r.line(format!(
        "Random Forest size vs speed: the bundle's RF ({}) is the `rf` row above; accuracy for \
         other sizes: models/reports/{}-rf-sweep.md (validation split).",
        m_spec_bytes(&scorer),
        scorer.bundle().manifest().dataset
    ));
    // Other graphs from $NETANOM_BENCH_EXTRA_MODELS (files `<model>-<anything>.onnx`, e.g.
    // rf-10-8.onnx, exported for this bundle's input width), if given: each replaces that
    // model of the bundle.
    match std::env::var_os("NETANOM_BENCH_EXTRA_MODELS").map(PathBuf::from) {
        Some(extra) => other_graphs(r, &scorer, &dir, &extra, &rows),
        None => Ok(()),
    }
}

/// The parity rows of the bundle in `dir`, repeated into a pool of 4,096 vectors.
fn bench_rows(bundle: &netanom::model::Bundle, dir: &std::path::Path, quick: bool) -> anyhow::Result<Rows> {
    let mut rows = parity_rows(bundle, &dir.join("parity.csv"))?;
    let width = bundle.preprocessor().n_inputs();
    if rows.len() / width == 0 {
        bail!("{}/parity.csv has no rows", dir.display());
    }
    let pool = 4 * 1024;
    while rows.len() < pool * width {
        let k = rows.len().min(pool * width - rows.len());
        rows.extend_from_within(..k);
    }
    Ok(Rows {
        rows,
        width,
        pool,
        budget: Duration::from_millis(if quick { 300 } else { 1500 }),
    })
}

/// Preprocessing, each model and the ensemble at batch 1, 64 and 1,024; returns the
/// autoencoder's and the ensemble's vectors/s at 1,024.
fn main_table(
    r: &mut Report,
    scorer: &mut netanom::model::Scorer,
    rows: &Rows,
) -> anyhow::Result<(f64, f64)> {
    use netanom::model::MODEL_NAMES;
    r.line("| scorer | batch | vectors/s | p50 µs/batch | p99 µs/batch | vs preprocessing |".into());
    r.line("|---|---:|---:|---:|---:|---:|".into());
    let (mut ae_1024, mut ens_1024) = (0.0, 0.0);
    let rule = m_rule(scorer);
    for batch in [1usize, 64, 1024] {
        let x = |i| &rows.rows[rows.slice(i, batch)];
        let base = time_calls(rows.budget, batch, &mut |i| {
            scorer.preprocess(x(i), batch)?;
            Ok(())
        })?;
        let line = |r: &mut Report, name: &str, s: &CallStats| {
            r.line(format!(
                "| {name} | {batch} | {:.0} | {:.2} | {:.2} | {:.1}× slower |",
                s.per_s,
                s.p50_us,
                s.p99_us,
                base.per_s / s.per_s
            ));
        };
        line(r, "preprocessing only (baseline)", &base);
        for (mi, name) in MODEL_NAMES.iter().enumerate() {
            let s = time_calls(rows.budget, batch, &mut |i| {
                scorer.score_model(mi, x(i), batch)?;
                Ok(())
            })?;
            if batch == 1024 && mi == 0 {
                ae_1024 = s.per_s;
            }
            line(r, name, &s);
        }
        let s = time_calls(rows.budget, batch, &mut |i| {
            scorer.score(x(i), batch)?;
            Ok(())
        })?;
        if batch == 1024 {
            ens_1024 = s.per_s;
        }
        line(r, &format!("ensemble ({rule}): 3 models + decision"), &s);
    }
    Ok((ae_1024, ens_1024))
}

/// The `.onnx` files of `extra` named after a model of the bundle (`rf-...`), smallest first
/// per model.
fn graph_files(extra: &std::path::Path) -> anyhow::Result<Vec<(usize, PathBuf)>> {
    use netanom::model::MODEL_NAMES;
    let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(extra)
        .with_context(|| format!("reading {}", extra.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_owned();
            let mi = MODEL_NAMES
                .iter()
                .position(|m| stem.starts_with(&format!("{m}-")))?;
            Some((mi, p))
        })
        .collect();
    files.sort_by_key(|(mi, p)| (*mi, std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    Ok(files)
}

/// Each graph of `extra` in place of the bundle's model of the same name: alone, and in the
/// ensemble.
fn other_graphs(
    r: &mut Report,
    scorer: &netanom::model::Scorer,
    dir: &std::path::Path,
    extra: &std::path::Path,
    rows: &Rows,
) -> anyhow::Result<()> {
    use netanom::model::{Bundle, BundleOptions};
    let files = graph_files(extra)?;
    r.line(String::new());
    r.line(format!(
        "Other graphs (from {}), each in place of the bundle's model of the same name:",
        extra.display()
    ));
    r.line(String::new());
    r.line(
        "| graph | size | alone: vectors/s at 1,024 | alone: p50 µs at batch 1 | ensemble with it: vectors/s at 1,024 |"
            .into(),
    );
    r.line("|---|---:|---:|---:|---:|".into());
    let manifest_text = std::fs::read_to_string(dir.join("manifest.json"))?;
    let originals: Vec<(String, Vec<u8>)> = scorer
        .bundle()
        .manifest()
        .models
        .iter()
        .map(|spec| Ok((spec.file.clone(), std::fs::read(dir.join(&spec.file))?)))
        .collect::<anyhow::Result<_>>()?;
    let no_check = BundleOptions {
        verify_checksums: false,
        ..BundleOptions::default()
    };
    for (mi, f) in files {
        let bytes = std::fs::read(&f)?;
        let parts: Vec<(&str, &[u8])> = originals
            .iter()
            .enumerate()
            .map(|(i, (n, b))| (n.as_str(), if i == mi { bytes.as_slice() } else { b.as_slice() }))
            .collect();
        let name = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let b = match Bundle::from_memory(&name, &manifest_text, &parts, &no_check) {
            Ok(b) => b,
            Err(netanom::model::ModelError::Interface { .. }) => {
                r.line(format!(
                    "| {name} | skipped: not exported for this bundle's input | | | |"
                ));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut s = b.scorer();
        let x = |i, batch| &rows.rows[rows.slice(i, batch)];
        let one = time_calls(rows.budget, 1, &mut |i| {
            s.score_model(mi, x(i, 1), 1)?;
            Ok(())
        })?;
        let big = time_calls(rows.budget, 1024, &mut |i| {
            s.score_model(mi, x(i, 1024), 1024)?;
            Ok(())
        })?;
        let ens = time_calls(rows.budget, 1024, &mut |i| {
            s.score(x(i, 1024), 1024)?;
            Ok(())
        })?;
        r.line(format!(
            "| {name} | {:.2} MB | {:.0} | {:.2} | {:.0} |",
            bytes.len() as f64 / 1e6,
            big.per_s,
            one.p50_us,
            ens.per_s
        ));
    }
    Ok(())
}

pub(crate) fn m_rule(s: &netanom::model::Scorer) -> &'static str {
    s.bundle().manifest().rule.name()
}

/// "50 trees, depth 14, 1.22 MB" from the bundle's manifest.
pub(crate) fn m_spec_bytes(s: &netanom::model::Scorer) -> String {
    let json = &s.bundle().manifest().json;
    let rf = &json["models"]["rf"];
    let hp = &rf["hyperparameters"];
    let depth = hp["max_depth"]
        .as_u64()
        .map_or("unlimited".to_owned(), |d| d.to_string());
    format!(
        "{} trees, max depth {depth}, {:.2} MB",
        hp["n_estimators"].as_u64().unwrap_or(0),
        rf["bytes"].as_u64().unwrap_or(0) as f64 / 1e6
    )
}
