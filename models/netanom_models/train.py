"""Training and bundle export.

The training file is split (stratified by attack/normal) into
- fit (70 %): the autoencoder and the Isolation Forest learn on its normal rows, the Random
  Forest on all of its rows;
- calibration (15 %): its normal rows drive the autoencoder's early stopping and give every
  model's threshold (a quantile of the model's ONNX score);
- validation (15 %): normal + attack rows never used for fitting; the ensemble rule is
  chosen on it, and its metrics go into the manifest.
Test files are never used for fitting, thresholds or the choice of rule; only a fixed sample
of the first test file is scored to write the bundle's parity fixture (parity.csv).
"""

from __future__ import annotations

import copy
import json
import platform
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import BUNDLE_FORMAT_VERSION, DataError
from . import architecture as arch
from . import contract, datasets, export, scoring
from .datasets import MODELS_DIR
from .preprocessing import Preprocessor

MODEL_FILES = {"autoencoder": "autoencoder.onnx", "iforest": "iforest.onnx", "rf": "rf.onnx"}


@dataclass
class TrainConfig:
    #: The bundle's data set name (a built-in one, or the name of a csv/flows data set).
    dataset: str
    out_dir: Path | None = None
    quantile: float = arch.DEFAULT_QUANTILE
    ensemble: str | None = None
    sample: int | None = None
    seed: int = 0
    max_epochs: int = arch.AE_TRAINING["max_epochs"]
    threads: int = 1
    #: None: architecture.rf_params(dataset).
    rf_params: dict | None = None
    #: None: architecture.iforest_params(dataset).
    iforest_params: dict | None = None
    quiet: bool = False
    #: The data set, for csv and flows (built from the command line); None: SPECS[dataset].
    spec: datasets.DatasetSpec | None = None

    def resolved_spec(self) -> datasets.DatasetSpec:
        return self.spec if self.spec is not None else datasets.spec(self.dataset)

    def resolved_out(self) -> Path:
        return self.out_dir if self.out_dir is not None else datasets.default_bundle_dir(self.dataset)


def log(cfg: TrainConfig, msg: str) -> None:
    if not cfg.quiet:
        print(msg, flush=True)


def seed_everything(seed: int, threads: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


# ---- data ---------------------------------------------------------------------------------
def sample_rows(n: int, sample: int | None, seed: int) -> np.ndarray:
    if sample is None or sample >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=sample, replace=False))


def split_indices(is_attack: np.ndarray | None, n: int, seed: int) -> dict[str, np.ndarray]:
    """Deterministic stratified fit/calibration/validation split (indices sorted)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    strat = is_attack if is_attack is not None else None

    def can_stratify(sub):
        if strat is None:
            return None
        vals, counts = np.unique(strat[sub], return_counts=True)
        return strat[sub] if len(vals) == 2 and counts.min() >= 4 else None

    fit_share = arch.SPLIT["fit"]
    fit, rest = train_test_split(idx, train_size=fit_share, random_state=seed, stratify=can_stratify(idx))
    cal_share = arch.SPLIT["calibration"] / (arch.SPLIT["calibration"] + arch.SPLIT["validation"])
    cal, val = train_test_split(rest, train_size=cal_share, random_state=seed + 1, stratify=can_stratify(rest))
    return {"fit": np.sort(fit), "calibration": np.sort(cal), "validation": np.sort(val)}


@dataclass
class TrainResult:
    manifest: dict
    out_dir: Path
    preprocessor: Preprocessor
    autoencoder: object  # architecture.ScoringAutoEncoder
    iforest: object
    rf: object


@dataclass
class Prepared:
    table: datasets.Table
    rows_after_dedup: int
    labelled: bool
    is_attack: np.ndarray | None
    normal: np.ndarray
    split: dict[str, np.ndarray]
    #: Held-out test rows, for data sets without separate test files (None otherwise).
    test: np.ndarray | None = None
    #: Source columns that get the signed log1p step (CIC; KDD per arch.LOG_STEP), and the
    #: schema manifest entry.
    log_columns: list[str] = field(default_factory=list)
    schema: dict | None = None


def _schema_inputs(spec: datasets.DatasetSpec, feature_names: list[str] | None):
    """(inputs, log columns, feature_schema entry) of a data set whose inputs are live
    FLOW_FEATURES (cic, flows); `feature_names` (a bundle's) override today's choice."""
    if spec.kind == "cic":
        names, log_columns, entry = datasets.cic_feature_names()
    else:
        from . import flows

        names, log_columns, entry = flows.feature_names()
    if feature_names is not None:
        names = list(feature_names)
        log_columns = [n for n in log_columns if n in set(names)]
    return names, log_columns, entry


def _split(spec: datasets.DatasetSpec, table: datasets.Table, labelled: bool, is_attack, seed: int):
    """(fit/calibration/validation indices, held-out test indices or None)."""
    if spec.kind == "flows":
        from .flows import FLOWS_SPLIT

        # stratified by input file; every flow counts as normal
        parts = datasets.split_by_label(table.source.astype(str), set(table.source.astype(str)), FLOWS_SPLIT, seed)
    elif spec.kind == "cic" or (spec.kind == "csv" and not spec.test_files):
        labels = table.labels if labelled else np.full(len(table.features), "-", dtype=object)
        parts = datasets.split_by_label(labels, set(spec.normal) if labelled else {"-"}, datasets.CIC_SPLIT, seed)
    else:
        return split_indices(is_attack, len(table.features), seed), None
    return {k: parts[k] for k in ("fit", "calibration", "validation")}, parts["test"]


def _log_columns(spec: datasets.DatasetSpec, table: datasets.Table, fit_normal: np.ndarray) -> list[str]:
    """KDD (architecture.LOG_STEP) and csv (--log-step counts): the count columns of the fit
    split's normal rows."""
    if (spec.kind == "kdd" and arch.log_step(spec.name)) or (spec.kind == "csv" and spec.log_step == "counts"):
        return datasets.count_columns(table.features.iloc[fit_normal], table.categorical)
    return []


def prepare(spec: datasets.DatasetSpec, sample: int | None, seed: int, table: datasets.Table | None = None,
            feature_names: list[str] | None = None) -> Prepared:
    """Training rows (deduplicated, sampled) and their split; deterministic, so that `eval`
    can recreate the calibration and validation rows from the manifest. For CIC and flows,
    `feature_names` (default: chosen from the Rust schema now) are the model inputs."""
    from .tabular import NoAttackRows, require_normal_rows

    log_columns, schema_entry = [], None
    if spec.kind in ("cic", "flows"):
        names, log_columns, schema_entry = _schema_inputs(spec, feature_names)
        if table is None:
            if spec.kind == "cic":
                table = datasets.load_cic(spec, names)
            else:
                from .flows import with_inputs

                table = datasets.load_given(with_inputs(spec, names))
    table = datasets.load_train(spec, table)
    rows_after_dedup = len(table.features)
    table = table.subset(sample_rows(rows_after_dedup, sample, seed))
    labelled = spec.has_labels and table.labels is not None
    if labelled and spec.kind == "csv":
        where = ", ".join(str(p) for p in spec.inputs)
        require_normal_rows(table, spec.fmt.label, where)
        if not table.is_attack.any():
            raise NoAttackRows(f"{where}: every row of the label column {spec.fmt.label!r} is normal "
                               f"({list(spec.normal)}); the Random Forest learns attack against normal. Without "
                               "attack rows, leave out --label-column: the Random Forest then learns Isolation "
                               "Forest pseudo-labels")
    is_attack = table.is_attack if labelled else None
    normal = ~is_attack if labelled else np.ones(len(table.features), dtype=bool)
    split, test = _split(spec, table, labelled, is_attack, seed)
    if spec.kind in ("kdd", "csv"):
        log_columns = _log_columns(spec, table, split["fit"][normal[split["fit"]]])
    return Prepared(table, rows_after_dedup, labelled, is_attack, normal, split, test, log_columns, schema_entry)


# ---- models -------------------------------------------------------------------------------
def train_autoencoder(pre: Preprocessor, raw_fit_normal: np.ndarray, raw_cal_normal: np.ndarray, cfg: TrainConfig):
    import torch

    torch.manual_seed(cfg.seed)
    ae = arch.AutoEncoder(pre.n_features)
    scorer = arch.ScoringAutoEncoder(ae, pre.scale_min, pre.scale_range, pre.log_mask())
    with torch.no_grad():
        xs_fit = scorer.scale(torch.from_numpy(raw_fit_normal))
        xs_cal = scorer.scale(torch.from_numpy(raw_cal_normal))
    t = arch.AE_TRAINING
    opt = torch.optim.Adam(ae.parameters(), lr=t["learning_rate"])
    loss_fn = torch.nn.MSELoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, best_epoch, bad = float("inf"), None, -1, 0
    history = []
    n = xs_fit.shape[0]
    bs = arch.ae_batch_size(n)
    for epoch in range(cfg.max_epochs):
        ae.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, bs):
            xb = xs_fit[perm[i : i + bs]]
            opt.zero_grad()
            loss = loss_fn(ae(xb), xb)
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
        ae.eval()
        with torch.no_grad():
            val = float(loss_fn(ae(xs_cal), xs_cal)) if xs_cal.shape[0] else total / n
        history.append((round(total / n, 9), round(val, 9)))
        if val < best - t["early_stopping_min_delta"]:
            best, best_state, best_epoch, bad = val, copy.deepcopy(ae.state_dict()), epoch, 0
        else:
            bad += 1
            if bad >= t["early_stopping_patience"]:
                break
    ae.load_state_dict(best_state)
    ae.eval()
    scorer.eval()
    info = {
        "batch_size": bs,
        "epochs_run": len(history),
        "best_epoch": best_epoch + 1,
        "best_calibration_loss": round(best, 9),
        "loss_history": [{"epoch": i + 1, "train": a, "calibration": b} for i, (a, b) in enumerate(history)],
    }
    return scorer, info


def train_iforest(raw_fit_normal: np.ndarray, params: dict, seed: int):
    from sklearn.ensemble import IsolationForest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = IsolationForest(**params, random_state=seed, n_jobs=1).fit(raw_fit_normal)
    export.snap_tree_thresholds(m)
    return m


def pseudo_labels(if_scores: np.ndarray, share: float) -> np.ndarray:
    """1 for the top `share` of rows by Isolation Forest score (at least one row), else 0; the
    earlier row wins a tie at the cut."""
    k = max(1, int(np.ceil(share * len(if_scores))))
    y = np.zeros(len(if_scores), dtype=np.int64)
    y[np.argsort(-if_scores, kind="stable")[:k]] = 1
    return y


def check_split_sizes(spec: datasets.DatasetSpec, p: "Prepared", fit_normal: int, cal_normal: int) -> None:
    """TooFewRows unless the fit split has >= 10 normal rows and the calibration split >= 2."""
    from .tabular import TooFewRows

    if fit_normal >= 10 and cal_normal >= 2:
        return
    n = len(p.table.features)
    raise TooFewRows(
        f"[{spec.name}] too few rows to split: {n:,} rows ({int(p.normal.sum()):,} normal) give {fit_normal} "
        f"normal rows to fit on and {cal_normal} to calibrate on; training needs >= 10 and >= 2"
        + (" (use a larger --sample)" if n < p.rows_after_dedup else
           f"; bring more {'flows' if spec.kind == 'flows' else 'rows'} (about {_rows_needed(spec)} at least)"))


def _rows_needed(spec: datasets.DatasetSpec) -> int:
    """Roughly the fewest normal rows that give 10 fit and 2 calibration rows under the split."""
    if spec.kind == "flows":
        from .flows import FLOWS_SPLIT

        fr = FLOWS_SPLIT["normal"]
    elif spec.kind == "cic" or (spec.kind == "csv" and not spec.test_files):
        fr = datasets.CIC_SPLIT["normal"]
    else:
        fr = arch.SPLIT
    return int(max(np.ceil(10 / fr["fit"]), np.ceil(2 / fr["calibration"])))


def train_rf(raw: np.ndarray, y: np.ndarray, params: dict, seed: int):
    from sklearn.ensemble import RandomForestClassifier

    if len(np.unique(y)) < 2:
        raise DataError("the Random Forest needs normal and attack rows in the fit split; use a larger --sample")
    m = RandomForestClassifier(**params, random_state=seed, n_jobs=1).fit(raw, y.astype(np.int64))
    export.snap_tree_thresholds(m)
    return m


def library_versions() -> dict:
    import onnx
    import onnxruntime
    import onnxscript
    import pandas
    import skl2onnx
    import sklearn
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxscript": onnxscript.__version__,
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
    }


def _counts(is_attack: np.ndarray | None, idx: np.ndarray) -> dict:
    if is_attack is None:
        return {"rows": int(len(idx))}
    a = int(is_attack[idx].sum())
    return {"rows": int(len(idx)), "normal": int(len(idx) - a), "attack": a}


# ---- the pipeline -------------------------------------------------------------------------
def train(cfg: TrainConfig) -> TrainResult:
    if not 0.0 < cfg.quantile < 1.0:
        raise DataError(f"--quantile must be in (0, 1), got {cfg.quantile}")
    if cfg.ensemble is not None and cfg.ensemble not in arch.ENSEMBLE_RULES:
        raise DataError(f"--ensemble must be one of {arch.ENSEMBLE_RULES}")
    if cfg.sample is not None and cfg.sample < 20:
        raise DataError("--sample must be at least 20 rows")
    spec = cfg.resolved_spec()
    rf_params = dict(cfg.rf_params) if cfg.rf_params is not None else arch.rf_params(cfg.dataset)
    if_params = dict(cfg.iforest_params) if cfg.iforest_params is not None else arch.iforest_params(cfg.dataset)
    seed_everything(cfg.seed, cfg.threads)

    log(cfg, f"[{spec.name}] loading {spec.train_file}")
    p = prepare(spec, cfg.sample, cfg.seed)
    table, rows_after_dedup, labelled = p.table, p.rows_after_dedup, p.labelled
    is_attack, normal, split = p.is_attack, p.normal, p.split
    fit_n = split["fit"][normal[split["fit"]]]
    cal_n = split["calibration"][normal[split["calibration"]]]
    check_split_sizes(spec, p, len(fit_n), len(cal_n))

    pre = Preprocessor.fit_vocabulary(table.features, table.categorical)
    pre.log_columns = list(p.log_columns)
    raw_all, _ = pre.raw_matrix(table.features)
    pre.fit_scaling(raw_all[fit_n])
    log_mask = pre.log_mask() if pre.log_columns else None
    n_feat = pre.n_features
    log(cfg, f"[{spec.name}] {len(table.features)} rows, {n_feat} input features; "
        f"fit/calibration/validation = {len(split['fit'])}/{len(split['calibration'])}/{len(split['validation'])}")

    # -- models --
    log(cfg, f"[{spec.name}] training autoencoder on {len(fit_n)} normal rows")
    scorer, ae_info = train_autoencoder(pre, raw_all[fit_n], raw_all[cal_n], cfg)
    log(cfg, f"[{spec.name}]   {ae_info['epochs_run']} epochs, best {ae_info['best_epoch']} "
        f"(calibration MSE {ae_info['best_calibration_loss']:.3g})")
    log(cfg, f"[{spec.name}] training isolation forest")
    if_input = export.signed_log1p_onnx(raw_all[fit_n], log_mask) if log_mask is not None else raw_all[fit_n]
    iforest = train_iforest(if_input, if_params, cfg.seed)
    if labelled:
        y_fit = is_attack[split["fit"]].astype(np.int64)
        rf_labels = "dataset labels (attack = 1, normal = 0)"
    else:
        def if_in(idx):
            return export.signed_log1p_onnx(raw_all[idx], log_mask) if log_mask is not None else raw_all[idx]

        y_fit = pseudo_labels(-iforest.score_samples(if_in(split["fit"])), arch.PSEUDO_LABEL_SHARE)
        rf_labels = (f"Isolation Forest pseudo-labels: the top {arch.PSEUDO_LABEL_SHARE:.0%} of the fit rows by "
                     f"Isolation Forest score (-score_samples), at least one, are attacks ({int(y_fit.sum())} of "
                     f"{len(y_fit)}), the rest normal; ties at the cut go to the earlier row")
    log(cfg, f"[{spec.name}] training random forest on {len(split['fit'])} rows ({rf_labels})")
    rf = train_rf(raw_all[split["fit"]], y_fit, rf_params, cfg.seed)

    # -- export --
    log(cfg, f"[{spec.name}] exporting ONNX")
    blobs = {
        "autoencoder": export.export_autoencoder(scorer, n_feat),
        "iforest": export.export_iforest(iforest, n_feat, log_mask),
        "rf": export.export_rf(rf, n_feat),
    }
    sessions = {m: export.session(b) for m, b in blobs.items()}

    # -- thresholds from the exported graphs, on held-out normal rows --
    def onnx_scores(idx):
        x = raw_all[idx]
        return {m: export.run_scores(s, x) for m, s in sessions.items()}

    cal_scores = onnx_scores(cal_n)
    thresholds = {m: scoring.threshold(cal_scores[m], cfg.quantile) for m in arch.MODEL_NAMES}

    # -- validation: per-model metrics and the ensemble rule --
    val_idx = split["validation"]
    weights = scoring.normalised_weights(arch.ENSEMBLE_WEIGHTS)
    validation = None
    if labelled:
        y_val = is_attack[val_idx]
        vs = onnx_scores(val_idx)
        r = scoring.ratios(vs, thresholds)
        validation = {"rows": _counts(is_attack, val_idx), "models": {}, "ensemble": {}}
        for j, m in enumerate(arch.MODEL_NAMES):
            validation["models"][m] = scoring.binary_metrics(y_val, vs[m], r[:, j] > 1.0)
        for rule in arch.ENSEMBLE_RULES:
            e = scoring.ensemble_score(r, rule, weights)
            validation["ensemble"][rule] = scoring.binary_metrics(y_val, e, e > 1.0)
        f1s = {rule: validation["ensemble"][rule]["f1"] for rule in arch.ENSEMBLE_RULES}
        best_rule = max(arch.ENSEMBLE_RULES, key=lambda k: (f1s[k], -arch.ENSEMBLE_RULES.index(k)))
        f1_text = ", ".join(f"{k} {v:.4f}" for k, v in f1s.items())
        if cfg.ensemble is None:
            rule, chosen_by = best_rule, "validation"
            reason = (f"highest F1 on the validation split ({f1_text}); ties go to the earlier of "
                      f"{list(arch.ENSEMBLE_RULES)}")
        else:
            rule, chosen_by = cfg.ensemble, "command line (--ensemble)"
            reason = f"set with --ensemble; validation F1: {f1_text} (best: {best_rule})"
    else:
        rule = cfg.ensemble or "majority"
        chosen_by = "command line (--ensemble)" if cfg.ensemble else "default (no labels to validate on)"
        reason = "the data set has no labels, so no rule could be validated"

    baselines = {}
    if labelled:
        num = pre.numeric_mask()
        names = [n for n, k in zip(pre.feature_names(), num) if k]
        xf = raw_all[split["fit"]][:, num]
        sf = scoring.best_single_feature(xf, is_attack[split["fit"]], names)
        j = names.index(sf["feature"])
        s, flag = scoring.apply_single_feature(raw_all[val_idx][:, num][:, j], sf)
        baselines["single_feature"] = {
            "chosen_on": "fit split (best F1 over every numeric feature, both directions)",
            "feature": sf["feature"],
            "direction": sf["direction"],
            "threshold": sf["threshold"],
            "fit_f1": round(sf["f1"], 6),
            "validation": scoring.binary_metrics(is_attack[val_idx], s, flag),
        }

    # -- write the bundle --
    out = cfg.resolved_out()
    out.mkdir(parents=True, exist_ok=True)
    parity = write_parity_fixture(spec, p, pre, out, sessions, thresholds, rule, weights, cfg)
    import hashlib

    models = {}
    descriptions = {
        "autoencoder": "per-row reconstruction MSE of the min-max scaled input (scaling inside the graph)",
        "iforest": "-score_samples of sklearn IsolationForest (higher = more anomalous), on the raw vector"
                   + (" after the signed log1p step (inside the graph)" if log_mask is not None else ""),
        "rf": "P(attack) of a RandomForestClassifier, on the raw vector",
    }
    hyper = {
        "autoencoder": {
            "layers": "input -> 64 (ReLU, dropout 0.2) -> 32 (ReLU) -> 10 -> 32 (ReLU, dropout 0.2) -> 64 (ReLU) -> input (sigmoid)",
            "encoder_widths": list(arch.ENCODER_WIDTHS),
            "dropout": arch.DROPOUT,
            **{k: v for k, v in arch.AE_TRAINING.items() if k != "max_epochs"},
            "max_epochs": cfg.max_epochs,
            "trained_on": "normal rows of the fit split",
            "early_stopping_on": "normal rows of the calibration split",
            **ae_info,
        },
        "iforest": {**if_params, "trained_on": "normal rows of the fit split"
                    + (", after the graph's signed log1p step (computed with onnxruntime)" if log_mask is not None else ""),
                    "tree_thresholds": "rounded down to float32 (exactly equivalent for float32 inputs)",
                    "onnx_graph": export.iforest_graph_note(iforest)},
        "rf": {**rf_params, "trained_on": f"all rows of the fit split; labels: {rf_labels}",
               "tree_thresholds": "rounded down to float32 (exactly equivalent for float32 inputs)",
               "onnx_graph": "one single-target TreeEnsembleRegressor (leaf value P(attack | leaf) / n_trees, "
                             "summed over the trees), then Reshape; bit-identical to skl2onnx's "
                             "TreeEnsembleClassifier + Gather of column 1"},
    }
    for m in arch.MODEL_NAMES:
        (out / MODEL_FILES[m]).write_bytes(blobs[m])
        models[m] = {
            "file": MODEL_FILES[m],
            "sha256": hashlib.sha256(blobs[m]).hexdigest(),
            "bytes": len(blobs[m]),
            **export.io_spec(n_feat),
            "score": descriptions[m],
            "threshold": thresholds[m],
            "hyperparameters": hyper[m],
        }
    manifest = {
        "bundle_format_version": BUNDLE_FORMAT_VERSION,
        "dataset": spec.name,
        "n_features": n_feat,
        "features": pre.feature_names(),
        "preprocessing": pre.to_manifest(),
        "models": models,
        "thresholds": {
            "quantile": cfg.quantile,
            "computed_on": "ONNX scores of the normal rows of the calibration split (held out from fitting; never test data)",
            "decision": "a model flags a row when score > threshold",
            "minimum": arch.MIN_THRESHOLD,
            "values": thresholds,
        },
        "ensemble": {
            "rule": rule,
            "weights": {m: float(w) for m, w in zip(arch.MODEL_NAMES, weights)},
            "chosen_by": chosen_by,
            "reason": reason,
            "definitions": scoring.rule_definitions(),
        },
        **({"feature_schema": p.schema} if p.schema else {}),
        "scorer": contract.scorer_contract(pre, models, thresholds, rule,
                                           {m: float(w) for m, w in zip(arch.MODEL_NAMES, weights)},
                                           iforest_log=log_mask is not None, schema=p.schema),
        "parity": parity,
        "scoring_procedure": [
            "Normative, machine-readable version: `scorer` (steps 1-6). In short:",
            "1. Build the float32 input vector per row as described in scorer.steps[build_input_vector] "
            "(unseen category -> all-zero block; reject NaN/inf).",
            "2. Run each model in `models` (input tensor 'input' [N, n_features], output 'score' [N]).",
            "3. r_i = score_i / thresholds.values[i] for i in autoencoder, iforest, rf (float64).",
            "4. E = ensemble rule applied to r (see ensemble.definitions); anomaly when E > 1.0.",
        ],
        "training_data": training_data_entry(spec, cfg, p),
        "validation": validation,
        "baselines": baselines,
        "seeds": {
            "seed": cfg.seed,
            "sample": cfg.seed,
            "split": [cfg.seed, cfg.seed + 1],
            "torch": cfg.seed,
            "autoencoder_shuffle": cfg.seed,
            "iforest_random_state": cfg.seed,
            "rf_random_state": cfg.seed,
            "threads": cfg.threads,
            "torch_deterministic_algorithms": True,
        },
        "onnx": {"opset": export.OPSET, "ai.onnx.ml_opset": export.ML_OPSET},
        "libraries": library_versions(),
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=True, allow_nan=False) + "\n"
    (out / "manifest.json").write_text(text)
    total = sum(len(b) for b in blobs.values()) + len(text.encode())
    if parity:
        total += (out / parity["file"]).stat().st_size
    log(cfg, f"[{spec.name}] thresholds (q={cfg.quantile}): "
        + ", ".join(f"{m} {thresholds[m]:.6g}" for m in arch.MODEL_NAMES))
    if validation:
        v = validation["ensemble"][rule]
        log(cfg, f"[{spec.name}] ensemble rule {rule} ({chosen_by}): validation F1 {v['f1']:.4f}, "
            f"ROC-AUC {v['roc_auc']:.4f}")
    log(cfg, f"[{spec.name}] bundle written to {out} ({total / 1e6:.2f} MB)")
    return TrainResult(manifest, out, pre, scorer, iforest, rf)


def training_data_entry(spec, cfg: TrainConfig, p: Prepared) -> dict:
    table, split, is_attack = p.table, p.split, p.is_attack
    parts = {
        "fit": _counts(is_attack, split["fit"]),
        "calibration": _counts(is_attack, split["calibration"]),
        "validation": _counts(is_attack, split["validation"]),
    }
    if spec.kind == "cic":
        hdr = datasets.dataset_dir(spec) / datasets.CIC_HEADER_FILE
        all_parts = {**split, "test": p.test}
        labels = table.labels
        per_label = {
            lab: {k: int(np.sum(labels[v] == lab)) for k, v in all_parts.items()}
            for lab in sorted(set(labels.tolist()), key=lambda x: (x != spec.normal_label, x))
        }
        return {
            "files": table.files,
            "header_reference": {"path": f"{spec.folder}/{hdr.name}", "sha256": datasets.sha256_file(hdr)}
            if hdr.is_file() else None,
            "identifier_columns_dropped": list(datasets.CIC_ID_COLUMNS),
            "bookkeeping_columns_dropped": list(datasets.CIC_BOOKKEEPING),
            "row_filter": (f"Protocol in {list(datasets.CIC_PROTOCOLS)} (TCP, UDP): CicMatch::Exact holds for TCP "
                           "and UDP flows; CICFlowMeter's ICMP rows have zero lengths and it gives protocol 0 "
                           "to all other protocols"),
            "loader": table.stats,
            "deduplicated": "exact duplicate rows (all 91 columns) dropped, first kept, files in name order",
            "rows_after_dedup": p.rows_after_dedup,
            "sample": cfg.sample,
            "rows_used": int(len(table.features)),
            "split": {
                "fractions": datasets.CIC_SPLIT,
                "stratified_by": "Label (per-label shuffle with numpy default_rng(seed), largest-remainder rounding)",
                **parts,
                "test": _counts(is_attack, p.test),
                "per_label": per_label,
            },
            "population": {
                "source": f"{spec.folder}/PROVENANCE.md (class sizes of the full improved CIC-IDS2017)",
                "counts": datasets.CIC_POPULATION,
            },
        }
    if spec.kind in datasets.GIVEN_KINDS:
        return given_data_entry(spec, cfg, p, parts)
    _, fn_path = datasets.field_names(spec)
    return {
        "files": [{
            "path": f"{spec.folder}/{spec.train_file}",
            "sha256": table.sha256_gz,
            "sha256_uncompressed": table.sha256_raw,
            "rows": table.rows_read,
        }],
        "field_names": {
            "path": f"{fn_path.parent.name}/{fn_path.name}",
            "sha256": datasets.sha256_file(fn_path),
        },
        "deduplicated": spec.dedup_train,
        "rows_after_dedup": p.rows_after_dedup,
        "sample": cfg.sample,
        "rows_used": int(len(table.features)),
        "split": {
            "fractions": arch.SPLIT,
            "stratified_by": "attack vs normal" if p.labelled else None,
            **parts,
        },
    }


def given_data_entry(spec, cfg: TrainConfig, p: Prepared, parts: dict) -> dict:
    """training_data of a csv or flows data set: the files (by name and sha256, so that the same
    data gives the same bundle wherever it lies), how they were read, the split."""
    table, fmt = p.table, spec.fmt
    split = {"fractions": None, "stratified_by": None, **parts}
    if p.test is not None:
        split["test"] = _counts(p.is_attack, p.test)
    if spec.kind == "flows":
        from .flows import FLOWS_SPLIT

        split["fractions"] = FLOWS_SPLIT
        split["stratified_by"] = "input file (per-file shuffle with numpy default_rng(seed), largest-remainder rounding)"
        split["per_file"] = {f["path"]: {k: int(np.sum(table.source[v] == i)) for k, v in
                                         {**p.split, "test": p.test}.items()}
                             for i, f in enumerate(table.files)}
    elif p.test is not None:
        split["fractions"] = datasets.CIC_SPLIT
        split["stratified_by"] = ("label (per-label shuffle with numpy default_rng(seed), largest-remainder "
                                  "rounding)" if p.labelled else "none (no labels)")
    else:
        split["fractions"] = arch.SPLIT
        split["stratified_by"] = "attack vs normal"
    return {
        "kind": spec.kind,
        "files": table.files,
        "test_files": [name for name, _ in spec.test_files],
        "format": {
            "header": fmt.header,
            "label_column": fmt.label,
            "normal_values": list(fmt.normal) if fmt.label else None,
            "categorical_columns": list(table.categorical),
            "ignored_columns": list(fmt.ignore),
            "inputs": "FLOW_FEATURES (feature_schema)" if spec.kind == "flows" else "every column but the label "
                      "and the ignored ones, in file order",
            "log_step": "schema count units (feature_schema.log_units)" if spec.kind == "flows" else spec.log_step,
        },
        "loader": table.stats,
        "deduplicated": spec.dedup_train,
        "rows_after_dedup": p.rows_after_dedup,
        "sample": cfg.sample,
        "rows_used": int(len(table.features)),
        "split": split,
    }


def write_parity_fixture(spec, p: Prepared, pre: Preprocessor, out: Path, sessions, thresholds, rule, weights,
                         cfg: TrainConfig) -> dict | None:
    """parity.csv from the data set's first test file (or, for data sets whose test rows are a
    held-out part of the training data, from those rows)."""
    if spec.test_files:
        name, file_name = spec.test_files[0]
        t = datasets.load_test(spec, file_name)
        where = f"{spec.folder}/{file_name}" if spec.folder else name
        features, y, source = t.features, t.is_attack, f"test file {where} ({name})"
    elif p.test is not None and len(p.test):
        idx = p.test
        features = p.table.features.iloc[idx].reset_index(drop=True)
        y = p.is_attack[idx] if p.labelled else np.zeros(len(idx), dtype=bool)
        source = "the held-out test rows (training_data.split.test)" + ("" if p.labelled else "; no labels: 0")
    else:
        return None
    log(cfg, f"[{spec.name}] writing {contract.PARITY_FILE} from {source}")
    return contract.write_parity(out, pre, features, y, sessions, thresholds, rule, weights, source)


def load_bundle(bundle_dir: Path) -> tuple[dict, dict]:
    """(manifest, {model: onnxruntime session}); verifies the files' sha256."""
    import hashlib

    mpath = bundle_dir / "manifest.json"
    if not mpath.is_file():
        raise DataError(f"no bundle at {bundle_dir} (manifest.json missing); run `train` first")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{mpath}: invalid JSON ({e})") from None
    if manifest.get("bundle_format_version") != BUNDLE_FORMAT_VERSION:
        raise DataError(f"{mpath}: bundle format {manifest.get('bundle_format_version')} "
                        f"(expected {BUNDLE_FORMAT_VERSION}); retrain")
    sessions = {}
    for m in arch.MODEL_NAMES:
        f = bundle_dir / manifest["models"][m]["file"]
        if not f.is_file():
            raise DataError(f"{f} missing from the bundle")
        b = f.read_bytes()
        if hashlib.sha256(b).hexdigest() != manifest["models"][m]["sha256"]:
            raise DataError(f"{f}: sha256 differs from the manifest; retrain")
        sessions[m] = export.session(b)
    return manifest, sessions
