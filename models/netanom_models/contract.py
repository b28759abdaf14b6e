"""The scorer contract and the parity fixture.

- :func:`scorer_contract` writes manifest key ``scorer``: everything a non-Python scorer (the
  Rust agent) must do with a bundle, in order and in machine-readable form.
- :class:`ReferenceScorer` implements that contract using ONLY ``manifest.json`` and the ONNX
  files (no training code, no Preprocessor), so the tests prove that the manifest is complete.
- :func:`write_parity` writes ``parity.csv``: a fixed sample of test rows with their raw
  inputs, the per-model ONNX scores, the per-model decisions and the ensemble decision, which
  the Rust scorer must reproduce.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np

from . import DataError
from . import architecture as arch
from . import export, scoring

PARITY_FILE = "parity.csv"
PARITY_ROWS = 256
PARITY_SEED = 20_240_917
#: At most this many parity rows are reserved for rows with an unseen category (so that
#: the all-zero one-hot rule is exercised), when the test data has such rows.
PARITY_UNSEEN_ROWS = 16

ENSEMBLE_FORMULAS = {
    "any": "E = max(r_autoencoder, r_iforest, r_rf)",
    "majority": "E = median(r_autoencoder, r_iforest, r_rf) (the 2nd largest of the 3; in general the "
                "k-th largest with k = floor(m/2) + 1)",
    "weighted": "E = w_autoencoder * r_autoencoder + w_iforest * r_iforest + w_rf * r_rf "
                "(weights from `weights`, summing to 1; evaluate left to right in float64)",
}


# ---- the contract ---------------------------------------------------------------------------
def _log_step(pre) -> dict:
    return {
        "op": "signed_log1p",
        "elements": pre.log_elements(),
        "element_names": [pre.feature_names()[j] for j in pre.log_elements()],
        "formula": "x[j] = sign(x[j]) * ln(1 + |x[j]|) for the listed element indices (float32); "
                   "other elements unchanged",
    }


def _graph_steps(pre, model: str, iforest_log: bool = False) -> list[dict]:
    """What happens INSIDE each ONNX graph (for reference; the scorer must not repeat it)."""
    if model == "autoencoder":
        steps = [_log_step(pre)] if pre.log_elements() else []
        steps += [
            {
                "op": "minmax_clip",
                "formula": "xs[j] = clip((x[j] - min[j]) / range[j], 0, 1)",
                "min": [float(v) for v in pre.scale_min],
                "range": [float(v) for v in pre.scale_range],
                "note": "fitted on the training normal rows after the steps above; range 1 for one-hot "
                        "elements and for elements constant in the fitting data",
            },
            {"op": "autoencoder", "formula": "recon = decoder(encoder(xs))"},
            {"op": "reconstruction_mse", "formula": "score = mean_j (recon[j] - xs[j])^2"},
        ]
        return steps
    if model == "iforest":
        steps = [_log_step(pre)] if iforest_log else []
        return steps + [{
            "op": "isolation_forest",
            "formula": "score = -score_samples(x) of sklearn IsolationForest (higher = more anomalous), on "
                       + ("the vector after signed_log1p" if iforest_log else "the raw input vector"),
            "graph": "one TreeEnsembleRegressor (ai.onnx.ml, aggregate SUM) over all trees: h = sum over trees of "
                     "the leaf value -(depth + c(n_leaf)) / (n_trees * c(max_samples)), each leaf value a multiple "
                     "of a power of two (models.iforest.hyperparameters.onnx_graph.leaf_quantum) so that the "
                     "float32 sum is exact in any order; then score = 2^h (Pow)",
        }]
    return [{"op": "random_forest", "formula": "score = P(attack) = predict_proba(x)[:, 1] of sklearn "
             "RandomForestClassifier (class 1 = attack), on the raw input vector",
             "graph": "one single-target TreeEnsembleRegressor (ai.onnx.ml, aggregate SUM) whose leaves hold "
                      "P(attack | leaf) / n_trees, then Reshape to [batch]"}]


def scorer_contract(pre, models: dict, thresholds: dict, rule: str, weights: dict, iforest_log: bool = False,
                    schema: dict | None = None) -> dict:
    """Manifest key ``scorer``. `models`: manifest ``models`` entries (file, input, output).
    `schema`: the feature_schema entry when the inputs are live FLOW_FEATURES (CIC bundle)."""
    layout = pre.layout()
    raw_cols = [{"name": c, "type": "categorical" if c in pre.categories else "numeric"} for c in pre.columns]
    elements = []
    for j, e in enumerate(layout):
        d = {"index": j, "name": e["name"], "source": e["column"], "kind": e["kind"]}
        if e["kind"] == "onehot":
            d["category"] = e["category"]
        elements.append(d)
    has_cat = bool(pre.categories)
    order = list(arch.MODEL_NAMES)
    steps = [
        {
            "step": 1,
            "op": "read_raw_columns",
            "where": "scorer (outside ONNX)",
            "columns": [c["name"] for c in raw_cols],
            "numeric": "parse as IEEE-754 float64 (correctly rounded decimal -> double), then round to "
                       "nearest float32",
            "categorical": "a string; compared by exact, case-sensitive equality" if has_cat else None,
            "non_finite": "a NaN or +/-inf numeric value is an error: do not score the row",
            "from_flow_features": ({
                "names": schema["used"],
                "flow_feature_index": schema["used_flow_feature_index"],
                "schema_sha256": schema["schema_sha256"],
                "how": "the live agent takes these FLOW_FEATURES values (f64) by name, in this order, and "
                       "rounds each to the nearest float32",
            } if schema else None),
        },
        {
            "step": 2,
            "op": "build_input_vector",
            "where": "scorer (outside ONNX)",
            "dtype": "float32",
            "n_elements": len(layout),
            "rule_numeric": "element = the float32 value of column `source`, unchanged (no scaling, no log)",
            "rule_onehot": ("element = 1.0 if column `source` equals `category`, else 0.0. A value that "
                            "equals none of its column's categories gives an all-zero block (not an error)"
                            if has_cat else None),
            "elements": elements,
        },
        {
            "step": 3,
            "op": "run_models",
            "where": "onnxruntime",
            "models": order,
            "how": "stack rows into a float32 tensor [N, n_elements] (row-major) and feed it as each "
                   "model's input tensor; each graph returns one float32 tensor [N]; element i is row "
                   "i's score (higher = more anomalous). Graph-internal steps are listed per model in "
                   "`models.<m>.inside_graph` for reference only: do NOT apply them outside",
        },
        {
            "step": 4,
            "op": "normalise",
            "where": "scorer, float64",
            "formula": "r_m = f64(score_m) / thresholds[m], for m in models order",
        },
        {
            "step": 5,
            "op": "per_model_decision",
            "where": "scorer, float64",
            "formula": "decision_m = 1 if r_m > 1.0 else 0",
        },
        {
            "step": 6,
            "op": "ensemble",
            "where": "scorer, float64",
            "rule": rule,
            "weights": weights,
            "formula": ENSEMBLE_FORMULAS[rule],
            "continuous_score": "E is the ensemble's continuous anomaly score (ROC/PR curves, ranking)",
            "decision": "decision = 1 if E > 1.0 else 0",
            "all_rules": ENSEMBLE_FORMULAS,
        },
    ]
    steps = [{k: v for k, v in st.items() if v is not None} for st in steps]
    return {
        "normative": True,
        "summary": ("Read the raw columns, build the float32 input vector (step 2), run the three ONNX "
                    "graphs on it, divide each score by its threshold, combine with the ensemble rule; "
                    "every other preprocessing step happens inside the graphs."),
        "raw_columns": raw_cols,
        "steps": steps,
        "models": {
            m: {
                "file": models[m]["file"],
                "input": models[m]["input"],
                "output": models[m]["output"],
                "score_from_output": (f"row i's score = output `{models[m]['output']['name']}`[i] (the graph's "
                                      "only output; no post-processing)"),
                "inside_graph": _graph_steps(pre, m, iforest_log),
            }
            for m in order
        },
        "thresholds": {m: float(thresholds[m]) for m in order},
        "ensemble": {"rule": rule, "weights": weights, "formula": ENSEMBLE_FORMULAS[rule]},
        "arithmetic": "scores are float32 (from ONNX); ratios, E and all comparisons are float64",
    }


# ---- reference implementation (manifest + ONNX only) ----------------------------------------
class ReferenceScorer:
    """Scores raw rows using nothing but manifest.json and the ONNX files of a bundle."""

    def __init__(self, bundle_dir: Path):
        self.dir = Path(bundle_dir)
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        c = self.manifest["scorer"]
        self.contract = c
        self.steps = {s["op"]: s for s in c["steps"]}
        self.columns = [col["name"] for col in c["raw_columns"]]
        self.types = {col["name"]: col["type"] for col in c["raw_columns"]}
        self.sessions = {m: export.session((self.dir / info["file"]).read_bytes()) for m, info in c["models"].items()}

    def input_vector(self, rows: list[dict]) -> np.ndarray:
        """rows: {column: str} as read from a CSV."""
        elements = self.steps["build_input_vector"]["elements"]
        x = np.zeros((len(rows), len(elements)), dtype=np.float32)
        for i, row in enumerate(rows):
            for e in elements:
                v = row[e["source"]]
                if e["kind"] == "numeric":
                    f = float(v)
                    if not np.isfinite(f):
                        raise DataError(f"row {i}: non-finite value in {e['source']!r}")
                    x[i, e["index"]] = np.float32(f)
                else:
                    x[i, e["index"]] = 1.0 if v == e["category"] else 0.0
        return x

    def score(self, rows: list[dict]) -> dict:
        x = self.input_vector(rows)
        out = {}
        for m, info in self.contract["models"].items():
            out[f"score_{m}"] = self.sessions[m].run([info["output"]["name"]], {info["input"]["name"]: x})[0]
        thr = self.contract["thresholds"]
        r = {m: out[f"score_{m}"].astype(np.float64) / thr[m] for m in self.contract["models"]}
        for m in r:
            out[f"decision_{m}"] = (r[m] > 1.0).astype(np.int64)
        ens = self.contract["ensemble"]
        stack = np.stack([r[m] for m in arch.MODEL_NAMES], axis=1)
        if ens["rule"] == "any":
            e = stack.max(axis=1)
        elif ens["rule"] == "majority":
            e = np.sort(stack, axis=1)[:, 1]
        else:
            w = ens["weights"]
            e = np.zeros(len(rows))
            for m in arch.MODEL_NAMES:
                e = e + w[m] * r[m]
        out["ensemble_score"] = e
        out["decision"] = (e > 1.0).astype(np.int64)
        return out


# ---- parity.csv -------------------------------------------------------------------------------
def select_parity_rows(is_attack: np.ndarray, unseen: np.ndarray | None, seed: int = PARITY_SEED,
                       n: int = PARITY_ROWS) -> np.ndarray:
    """Deterministic indices: up to PARITY_UNSEEN_ROWS rows with an unseen category, the rest
    half normal / half attack (as far as available), sorted."""
    rng = np.random.default_rng(seed)
    total = len(is_attack)
    if total <= n:
        return np.arange(total)
    chosen: list[int] = []
    if unseen is not None and unseen.any():
        u = np.flatnonzero(unseen)
        chosen += list(rng.choice(u, size=min(PARITY_UNSEEN_ROWS, len(u)), replace=False))
    taken = np.zeros(total, dtype=bool)
    taken[chosen] = True
    left = n - len(chosen)
    pools = [np.flatnonzero(~is_attack & ~taken), np.flatnonzero(is_attack & ~taken)]
    want_normal = min(left // 2, len(pools[0]))
    want_attack = min(left - want_normal, len(pools[1]))
    want_normal = min(left - want_attack, len(pools[0]))
    chosen += list(rng.choice(pools[0], size=want_normal, replace=False))
    chosen += list(rng.choice(pools[1], size=want_attack, replace=False))
    return np.sort(np.array(chosen, dtype=np.int64))


def parity_columns(raw_columns: list[str]) -> list[str]:
    ms = list(arch.MODEL_NAMES)
    return (list(raw_columns) + ["label"] + [f"score_{m}" for m in ms] + [f"decision_{m}" for m in ms]
            + ["decision", "ensemble_score"])


def _num(v: float) -> str:
    return repr(float(v))


def write_parity(out_dir: Path, pre, features, is_attack: np.ndarray, sessions: dict, thresholds: dict,
                 rule: str, weights, source: str) -> dict:
    """Writes parity.csv for `features` (the source-column frame of the candidate test rows, in
    file order) and returns the manifest entry ``parity``."""
    raw_all, _ = pre.raw_matrix(features)
    unseen = None
    if pre.categories:
        unseen = np.zeros(len(features), dtype=bool)
        for c, cats in pre.categories.items():
            known = set(cats)
            unseen |= np.array([str(v) not in known for v in features[c]])
    idx = select_parity_rows(is_attack, unseen)
    sub = features.iloc[idx].reset_index(drop=True)
    raw = raw_all[idx]
    y = is_attack[idx].astype(bool)
    s = {m: export.run_scores(sessions[m], raw) for m in arch.MODEL_NAMES}
    r = scoring.ratios(s, thresholds)
    e = scoring.ensemble_score(r, rule, weights)
    cols = parity_columns(pre.columns)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for i in range(len(idx)):
        row = []
        for c in pre.columns:
            v = sub[c].iloc[i]
            row.append(str(v) if c in pre.categories else _num(v))
        row.append(int(y[i]))
        row += [_num(s[m][i]) for m in arch.MODEL_NAMES]
        row += [int(r[i, j] > 1.0) for j in range(len(arch.MODEL_NAMES))]
        row += [int(e[i] > 1.0), _num(e[i])]
        w.writerow(row)
    data = buf.getvalue().encode("ascii")
    (Path(out_dir) / PARITY_FILE).write_bytes(data)
    dec = e > 1.0
    return {
        "file": PARITY_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "rows": int(len(idx)),
        "normal_rows": int((~y).sum()),
        "attack_rows": int(y.sum()),
        "rows_with_unseen_category": int(unseen[idx].sum()) if unseen is not None else 0,
        "source": source,
        "selection": (f"seed {PARITY_SEED} (numpy default_rng): up to {PARITY_UNSEEN_ROWS} rows with a "
                      "category unseen in training, then half normal / half attack at random; rows kept "
                      "in file order"),
        "columns": cols,
        "column_meaning": {
            "raw columns": "scorer.raw_columns, before any preprocessing (numeric: repr of the float64 "
                           "value; categorical: the string)",
            "label": "ground truth: 0 normal, 1 attack (not a model output)",
            "score_<m>": "the float32 output of <m>.onnx for this row, written as the exact float64 repr "
                         "of that float32",
            "decision_<m>": "1 if f64(score_<m>) / thresholds[<m>] > 1.0 else 0",
            "decision": "1 if ensemble_score > 1.0 else 0 (the bundle's ensemble rule)",
            "ensemble_score": "E, the continuous ensemble score (scorer step 6), float64",
        },
        "format": "CSV, comma-separated, header row, '\\n' line ends, ASCII",
        "positive_rate": {"decision": float(dec.mean()), "label": float(y.mean())},
        "expected_agreement": ("with onnxruntime 1.31.1 (CPU provider) the scores should be bit-identical; "
                               "across other builds allow |diff| <= 1e-6 * max(1, |score|) for the "
                               "autoencoder. Decisions must be identical; the minimum |r_m - 1| and "
                               "|E - 1| over these rows are in `min_margin`"),
        "min_margin": {
            **{m: float(np.min(np.abs(r[:, j] - 1.0))) for j, m in enumerate(arch.MODEL_NAMES)},
            "ensemble": float(np.min(np.abs(e - 1.0))),
        },
    }


def read_parity(bundle_dir: Path) -> tuple[list[str], list[dict]]:
    with open(Path(bundle_dir) / PARITY_FILE, newline="") as f:
        rd = csv.DictReader(f)
        return list(rd.fieldnames or []), list(rd)


def check_parity(bundle_dir: Path, atol_ae: float = 1e-6) -> dict:
    """Recomputes parity.csv with ReferenceScorer; raises AssertionError on any disagreement.
    Returns a small summary."""
    sc = ReferenceScorer(bundle_dir)
    man = sc.manifest
    cols, rows = read_parity(bundle_dir)
    assert cols == man["parity"]["columns"], "parity.csv header differs from manifest parity.columns"
    assert len(rows) == man["parity"]["rows"]
    data = (Path(bundle_dir) / PARITY_FILE).read_bytes()
    assert hashlib.sha256(data).hexdigest() == man["parity"]["sha256"], "parity.csv sha256 differs from the manifest"
    got = sc.score(rows)
    worst = {}
    for m in arch.MODEL_NAMES:
        want = np.array([float(r[f"score_{m}"]) for r in rows])
        have = got[f"score_{m}"].astype(np.float64)
        diff = np.abs(have - want)
        tol = atol_ae * np.maximum(1.0, np.abs(want)) if m == "autoencoder" else 0.0
        assert np.all(diff <= tol), f"{m}: max |diff| {diff.max()} (row {int(np.argmax(diff))})"
        worst[m] = float(diff.max())
        d = np.array([int(r[f"decision_{m}"]) for r in rows])
        assert np.array_equal(d, got[f"decision_{m}"]), f"decision_{m} differs"
    d = np.array([int(r["decision"]) for r in rows])
    assert np.array_equal(d, got["decision"]), "ensemble decision differs"
    e = np.array([float(r["ensemble_score"]) for r in rows])
    np.testing.assert_allclose(got["ensemble_score"], e, rtol=1e-6, atol=0)
    return {"rows": len(rows), "max_abs_diff": worst, "decisions": int(d.sum())}
