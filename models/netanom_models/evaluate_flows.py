"""Evaluation of a flows bundle (a model of the site's own traffic): reports/<name>.md + PNGs.

Two kinds of evidence, scored with the bundle's ONNX graphs exactly as the agent runs them:

- **held-out flows** of the training input: the test part of the split (training_data.split),
  recreated from the manifest and the same --input files (checked by sha256). There are no
  labels, so every held-out flow counts as normal, and what they measure is the false-positive
  rate on the site's own traffic;
- **labelled sets** (eval_sets.py): captures or flow CSVs, benign or attack, every flow of a
  set taking its label. A set whose flows are one of the training files is marked as training
  input and left out of the pooled metrics (its held-out part is already in the first row).

Beside the models, in the same run: "flag everything", and a range rule that needs no labels
either: a flow is flagged when any feature lies outside the range of the fit flows.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from . import DataError
from . import architecture as arch
from . import flows, scoring
from .datasets import MODELS_DIR, default_bundle_dir
from .eval_sets import EvalSet, find_netanom, flows_of, parse_eval_arg, read_eval_list
from .evaluate import (
    LABELS, METRICS_HEADER, SENSITIVITY_QUANTILES, Scorer, _display, _fmt, _metrics_row, _plt, _save, model_rows,
    plot_hist, plot_roc,
)
from .tabular import EmptyFile, load, sha256_file
from .train import prepare, sample_rows

HELD_OUT = "held-out flows"
#: Below this many fit flows the report warns that the training input is small.
SMALL_FIT = 1000
RANGE = "range rule"


def evaluate_flows_args(args) -> dict:
    from .dataset_args import user_path

    sets = [parse_eval_arg(t) for t in args.eval]
    sets = [EvalSet(s.name, s.label, user_path(str(s.path)), s.origin) for s in sets]
    for lst in args.eval_list:
        sets += read_eval_list(lst)
    bundle = args.bundle or default_bundle_dir(flows.DEFAULT_NAME)
    return evaluate_flows(bundle, args.input, sets, args.reports, args.netanom, args.sample)


# ---- scoring ---------------------------------------------------------------------------------------
def _held_out(sc: Scorer, inputs: list[Path]):
    """(Prepared, calibration scores, thresholds reproduced?) for the bundle's training inputs."""
    man = sc.manifest
    td = man["training_data"]
    want = [f["sha256"] for f in td["files"]]
    if len(inputs) != len(want):
        raise DataError(f"the bundle was trained on {len(want)} file(s) ({', '.join(f['path'] for f in td['files'])}); "
                        f"give the same files with --input, in that order (got {len(inputs)})")
    for p, f in zip(inputs, td["files"]):
        if not Path(p).is_file():
            raise DataError(f"data file not found: {p}")
        if sha256_file(Path(p)) != f["sha256"]:
            raise DataError(f"{p}: sha256 differs from the training file {f['path']} in the manifest (the held-out "
                            "flows would be other flows); give the files the bundle was trained on")
    spec = flows.flows_spec(inputs, name=man["dataset"], names=man["features"])
    p = prepare(spec, td["sample"], man["seeds"]["seed"], feature_names=man["features"])
    cal = p.split["calibration"]
    cal_raw, _ = sc.raw(p.table.features.iloc[cal].reset_index(drop=True))
    s = sc.scores(cal_raw)
    q = man["thresholds"]["quantile"]
    return p, s, all(scoring.threshold(s[m], q) == sc.thresholds[m] for m in arch.MODEL_NAMES)


def _scored(sc: Scorer, raw: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict:
    """Per-model scores, ensemble scores (every rule) and the range rule's score (the number of
    features outside the fit flows' range) for `raw`."""
    s = sc.scores(raw)
    r = scoring.ratios(s, sc.thresholds)
    out = {m: s[m] for m in arch.MODEL_NAMES}
    out["r"] = r
    out["ensemble"] = {rule: scoring.ensemble_score(r, rule, sc.weights) for rule in arch.ENSEMBLE_RULES}
    out[RANGE] = ((raw < lo) | (raw > hi)).sum(axis=1).astype(np.float64)
    return out


def _flag_shares(sc: Scorer, d: dict) -> dict:
    n = len(d[RANGE])
    if n == 0:
        return {}
    out = {m: float(np.mean(d["r"][:, j] > 1.0)) for j, m in enumerate(arch.MODEL_NAMES)}
    out["ensemble"] = float(np.mean(d["ensemble"][sc.rule] > 1.0))
    out[RANGE] = float(np.mean(d[RANGE] > 0))
    return out


def _load_set(s: EvalSet, names: list[str], netanom: Path | None, work: Path, sample: int | None):
    """(flow features or None when the set has no flows, flow CSV sha256, how it was made)."""
    path, how = flows_of(s, netanom, work)
    sha = sha256_file(path)
    try:
        t = load([path], flows.flow_format(names), require_labels=False)
    except EmptyFile:
        return None, sha, how
    if sample:
        t = t.subset(sample_rows(len(t.features), sample, 0))
    return t.features, sha, how


# ---- the evaluation -------------------------------------------------------------------------------------
def evaluate_flows(bundle_dir: Path, inputs: list[Path], sets: list[EvalSet], reports_dir: Path | None = None,
                   netanom: Path | None = None, sample: int | None = None) -> dict:
    from . import schema

    sc = Scorer(bundle_dir)
    man = sc.manifest
    if man["training_data"].get("kind") != "flows":
        raise DataError(f"{bundle_dir} is not a flows bundle (trained on {man['dataset']!r}); use eval --dataset "
                        f"{man['dataset']}")
    problems = flows.schema_problems(man, schema.load_schema())
    if problems:
        raise DataError(f"{bundle_dir} no longer fits netanom/src/features/flow.rs: {'; '.join(problems)}")
    if not sets:
        raise DataError("no labelled sets to evaluate on: give --eval LABEL=FILE or --eval-list LIST.csv")
    name = man["dataset"]
    reports_dir = reports_dir or MODELS_DIR / "reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    p, cal_scores, reproduced = _held_out(sc, inputs)
    fit_raw, _ = sc.raw(p.table.features.iloc[p.split["fit"]].reset_index(drop=True))
    lo, hi = fit_raw.min(axis=0), fit_raw.max(axis=0)
    held_raw, _ = sc.raw(p.table.features.iloc[p.test].reset_index(drop=True))
    scored = {HELD_OUT: _scored(sc, held_raw, lo, hi)}
    train_shas = {f["sha256"] for f in man["training_data"]["files"]}
    rows = [{"name": HELD_OUT, "label": "benign", "flows": len(p.test), "pooled": True,
             "source": "the held-out test part of the training input", "shares": _flag_shares(sc, scored[HELD_OUT])}]
    exe = find_netanom(netanom) if any(s.is_capture for s in sets) else None
    with tempfile.TemporaryDirectory(prefix="netanom-eval-flows-") as work:
        for s in sets:
            print(f"[{name}] scoring {s.label} set {s.name}", flush=True)
            feats, sha, how = _load_set(s, man["features"], exe, Path(work), sample)
            in_sample = sha in train_shas
            row = {"name": s.name, "label": s.label, "flows": 0 if feats is None else len(feats), "file": s.path.name,
                   "file_sha256": sha256_file(s.path), "flows_sha256": sha, "source": how,
                   "pooled": feats is not None and not in_sample, "training_input": in_sample, "shares": {}}
            if feats is not None:
                raw, _ = sc.raw(feats)
                scored[s.name] = _scored(sc, raw, lo, hi)
                row["shares"] = _flag_shares(sc, scored[s.name])
                if s.label == "attack":
                    row["auc_vs_held_out"] = _auc_vs(sc, scored[HELD_OUT], scored[s.name])
            rows.append(row)
    res = {"bundle": _display(bundle_dir), "rule": sc.rule, "thresholds_reproduced": reproduced, "sets": rows,
           "pooled": _pooled(sc, rows, scored), "threshold_sensitivity": _sensitivity(sc, cal_scores, rows, scored)}
    _plots(sc, reports_dir, name, rows, scored)
    (reports_dir / f"{name}.md").write_text("\n".join(_report(sc, bundle_dir, p, res)).rstrip() + "\n")
    (reports_dir / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"[{name}] report written to {reports_dir / (name + '.md')}", flush=True)
    return res


def _auc_vs(sc: Scorer, normal: dict, attack: dict) -> dict:
    """ROC-AUC of each model, the ensemble and the range rule: this attack set against the held-out flows."""
    y = np.r_[np.zeros(len(normal[RANGE]), bool), np.ones(len(attack[RANGE]), bool)]
    out = {}
    for k in list(arch.MODEL_NAMES) + ["ensemble", RANGE]:
        a = normal["ensemble"][sc.rule] if k == "ensemble" else normal[k]
        b = attack["ensemble"][sc.rule] if k == "ensemble" else attack[k]
        out[k] = scoring.binary_metrics(y, np.r_[a, b], np.zeros(len(y), bool))["roc_auc"]
    return out


def _sensitivity(sc: Scorer, cal_scores: dict, rows: list[dict], scored: dict) -> list[dict]:
    """The bundle's rule with every threshold re-derived at quantile q of the calibration flows'
    scores: the share of each set's flows flagged (diagnostic; the bundle's q is in the manifest)."""
    out = []
    for q in SENSITIVITY_QUANTILES:
        th = {m: scoring.threshold(cal_scores[m], q) for m in arch.MODEL_NAMES}
        shares = {}
        for r in rows:
            if r["name"] in scored:
                d = scored[r["name"]]
                e = scoring.ensemble_score(scoring.ratios({m: d[m] for m in arch.MODEL_NAMES}, th), sc.rule, sc.weights)
                shares[r["name"]] = float(np.mean(e > 1.0))
        out.append({"quantile": q, "thresholds": th, "ensemble_share": shares})
    return out


def _pooled_data(rows: list[dict], scored: dict):
    """(y, cat) over every pooled set, benign flows first: y is True for attack flows, cat(key)
    concatenates key(scores of a set) in the same order. None without both kinds of set."""
    ben = [scored[r["name"]] for r in rows if r["pooled"] and r["label"] == "benign"]
    att = [scored[r["name"]] for r in rows if r["pooled"] and r["label"] == "attack"]
    if not ben or not att:
        return None
    y = np.r_[np.zeros(sum(len(d[RANGE]) for d in ben), bool), np.ones(sum(len(d[RANGE]) for d in att), bool)]
    return y, lambda key: np.concatenate([key(d) for d in ben + att])


def _pooled(sc: Scorer, rows: list[dict], scored: dict) -> dict | None:
    """Metrics over every pooled set: held-out and benign flows (normal) against attack flows."""
    data = _pooled_data(rows, scored)
    if data is None:
        return None
    y, cat = data
    out = {"rows": int(len(y)), "attacks": int(y.sum()), "models": {}, "ensemble": {}, "baselines": {}}
    r = cat(lambda d: d["r"])
    for j, m in enumerate(arch.MODEL_NAMES):
        out["models"][m] = scoring.binary_metrics(y, cat(lambda d, m=m: d[m]), r[:, j] > 1.0)
    for rule in arch.ENSEMBLE_RULES:
        e = cat(lambda d, rule=rule: d["ensemble"][rule])
        out["ensemble"][rule] = scoring.binary_metrics(y, e, e > 1.0)
    rng = cat(lambda d: d[RANGE])
    out["baselines"]["flag_everything"] = scoring.binary_metrics(y, np.ones(len(y)), np.ones(len(y), bool))
    out["baselines"][RANGE] = scoring.binary_metrics(y, rng, rng > 0)
    return out


# ---- plots and report ------------------------------------------------------------------------------------
def _plots(sc: Scorer, reports_dir: Path, name: str, rows: list[dict], scored: dict) -> None:
    data = _pooled_data(rows, scored)
    if data is not None:
        y, cat = data
        r = cat(lambda d: d["r"])
        curves = {LABELS[m]: (cat(lambda d, m=m: d[m]), r[:, j] > 1.0) for j, m in enumerate(arch.MODEL_NAMES)}
        e = cat(lambda d: d["ensemble"][sc.rule])
        curves[f"ensemble ({sc.rule})"] = (e, e > 1.0)
        rng = cat(lambda d: d[RANGE])
        curves["range rule"] = (rng, rng > 0)
        plot_roc(reports_dir / f"{name}-roc.png", f"{name}: held-out + benign vs attack flows", y, curves)
        panels = [(LABELS[m], curves[LABELS[m]][0], sc.thresholds[m], m == "autoencoder") for m in arch.MODEL_NAMES]
        panels.append((f"ensemble E ({sc.rule})", e, 1.0, True))
        plot_hist(reports_dir / f"{name}-hist.png", name, y, panels)
    _plot_shares(reports_dir / f"{name}-sets.png", name, sc.rule, [r for r in rows if r["shares"]])


def _plot_shares(path: Path, name: str, rule: str, rows: list[dict]) -> None:
    plt = _plt()
    keys = list(arch.MODEL_NAMES) + ["ensemble", RANGE]
    fig, ax = plt.subplots(figsize=(8.6, 0.9 + 0.42 * len(rows)))
    h = 0.8 / len(keys)
    for k, key in enumerate(keys):
        ys = np.arange(len(rows)) + (k - (len(keys) - 1) / 2) * h
        label = f"ensemble ({rule})" if key == "ensemble" else LABELS.get(key, key)
        ax.barh(ys, [r["shares"][key] for r in rows], height=h, label=label)
    ax.set_yticks(np.arange(len(rows)), [f"{r['name']} ({r['label']}, {r['flows']:,})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the set's flows flagged (benign: false positives; attack: detections)")
    ax.set_title(f"{name}: flows flagged per set")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def _report(sc: Scorer, bundle_dir: Path, p, res: dict) -> list[str]:
    man = sc.manifest
    td = man["training_data"]
    name = man["dataset"]
    mtext = (bundle_dir / "manifest.json").read_bytes()
    sp = td["split"]
    rows = res["sets"]
    lines = [
        f"# {name}: evaluation report (a model of the site's own flows)",
        "",
        f"Written by `python -m netanom_models eval --dataset flows --bundle {_display(bundle_dir)} --input ... "
        "--eval-list ...` (or `cargo xtask eval -- ...`; the commands are in models/README.md). Scores come from "
        f"the bundle's ONNX graphs run by onnxruntime {man['libraries']['onnxruntime']}, exactly as the agent "
        "runs them. Attack = positive class.",
        "",
        f"- Bundle: `{_display(bundle_dir)}/` (manifest sha256 `{hashlib.sha256(mtext).hexdigest()[:16]}…`), "
        f"trained on {len(td['files'])} flow file(s): "
        + ", ".join(f"`{f['path']}` ({f['rows']:,} flows)" for f in td["files"])
        + f"; {man['n_features']} inputs (every FLOW_FEATURES entry). Split per file, fit/calibration/test = "
        f"{sp['fit']['rows']:,}/{sp['calibration']['rows']:,}/{sp['test']['rows']:,} flows.",
        "- Training files (sha256) match the manifest: yes (checked); the bundle fits the current "
        "netanom/src/features/flow.rs: yes (checked).",
        f"- Thresholds: quantile {man['thresholds']['quantile']} of each model's score on the calibration flows: "
        + ", ".join(f"{LABELS[m]} {sc.thresholds[m]:.6g}" for m in arch.MODEL_NAMES)
        + f"; reproduced from the recreated calibration flows: {'yes' if res['thresholds_reproduced'] else '**NO**'}.",
        f"- Ensemble rule: **{sc.rule}** ({man['ensemble']['reason']}).",
        f"- Random Forest: {man['models']['rf']['hyperparameters']['trained_on']}.",
        "- Labels: per set (every flow of a benign capture is benign, of an attack capture an attack). The held-out "
        "flows are the site's own, unlabelled, and count as benign.",
        f"- Beside the models: \"flag everything\", and the **range rule** (a flow is flagged when any of its "
        f"{man['n_features']} features lies outside the range of the {sp['fit']['rows']:,} fit flows; score = the "
        "number of such features).",
        "- Per-flow scores judge one flow at a time. A flood made of single-packet flows (spoofed SYNs, reflected "
        "UDP replies) is, flow by flow, like the site's own short flows when the site has such flows; those attacks "
        "are for the aggregate detectors (README.md, `[detection]`), and this report measures only the flow models.",
    ]
    if sp["fit"]["rows"] < SMALL_FIT:
        lines.append(f"- **Small training input**: {sp['fit']['rows']:,} fit and {sp['calibration']['rows']:,} "
                     f"calibration flows (fewer than {SMALL_FIT:,} fit flows). The 0.999-quantile thresholds are "
                     "then about the largest calibration score; record more of the site's traffic (hours to days) "
                     "before trusting the false-positive rates here.")
    lines += [
        "",
        "## Flows flagged per set",
        "",
        "Benign sets: the share is the false-positive rate. Attack sets: the detection rate (recall).",
        "",
        "| set | label | flows | " + " | ".join(LABELS[m] for m in arch.MODEL_NAMES)
        + f" | **ensemble ({sc.rule})** | range rule | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sh = r["shares"]
        cells = " | ".join(f"{sh[k]:.3f}" for k in arch.MODEL_NAMES) if sh else " | ".join("-" for _ in arch.MODEL_NAMES)
        note = ("training input (left out of the pooled metrics)" if r.get("training_input")
                else "no flows" if not r["flows"] else "")
        lines.append(f"| {r['name']} | {r['label']} | {r['flows']:,} | {cells} | "
                     f"{'**%.3f**' % sh['ensemble'] if sh else '-'} | {f'{sh[RANGE]:.3f}' if sh else '-'} | {note} |")
    lines += _reading(sc, res) + _pooled_section(sc, res) + _auc_section(rows) + _sensitivity_section(sc, res)
    lines += [
        "## Plots",
        "",
        f"![flows flagged per set]({name}-sets.png)",
        "",
    ]
    if res["pooled"]:
        lines += [f"![ROC curves]({name}-roc.png)", "", f"![score histograms]({name}-hist.png)", ""]
    lines += ["## Sets", "", "| set | file | sha256 | flows from |", "|---|---|---|---|"]
    for r in rows[1:]:
        lines.append(f"| {r['name']} | `{r['file']}` | `{r['file_sha256'][:16]}…` | {r['source']} |")
    lines.append("")
    return lines


def _reading(sc: Scorer, res: dict) -> list[str]:
    rows = res["sets"]
    held = rows[0]["shares"]
    attack = [r for r in rows if r["label"] == "attack" and r["shares"] and r["pooled"]]
    benign = [r for r in rows[1:] if r["label"] == "benign" and r["shares"] and r["pooled"]]
    out = ["", f"Reading: the ensemble flags {held['ensemble']:.1%} of the {rows[0]['flows']:,} held-out flows of the "
           "site's own traffic"]
    if benign:
        out[-1] += (", and on average {:.1%} of the flows of the {} other benign set(s)"
                    .format(np.mean([r["shares"]["ensemble"] for r in benign]), len(benign)))
    if attack:
        det = np.mean([r["shares"]["ensemble"] for r in attack])
        out[-1] += (f"; it flags on average {det:.1%} of an attack set's flows (macro mean over {len(attack)} "
                    f"sets; from {min(r['shares']['ensemble'] for r in attack):.1%} to "
                    f"{max(r['shares']['ensemble'] for r in attack):.1%})")
    out[-1] += "."
    return out + [""]


def _pooled_section(sc: Scorer, res: dict) -> list[str]:
    pm = res["pooled"]
    if not pm:
        return []
    lines = [
        "## Pooled: held-out and benign flows against attack flows",
        "",
        f"{pm['rows']:,} flows, {pm['attacks']:,} of them from attack sets: base rate "
        f"**{pm['attacks'] / pm['rows']:.1%}**. Large captures weigh more than small ones (see the table above "
        "for each set).",
        "",
        METRICS_HEADER,
    ]
    lines += model_rows(sc, pm)
    lines.append(_metrics_row("baseline: range rule", pm["baselines"][RANGE]))
    return lines + [""]


def _sensitivity_section(sc: Scorer, res: dict) -> list[str]:
    rows = [r for r in res["sets"] if r["shares"]]
    att = [r for r in rows if r["label"] == "attack" and r["pooled"]]
    ben = [r for r in rows[1:] if r["label"] == "benign" and r["pooled"]]
    cal = sc.manifest["training_data"]["split"]["calibration"]["rows"]
    lines = [
        f"## Threshold sensitivity (ensemble, {sc.rule})",
        "",
        f"Diagnostic only: every model's threshold re-derived at quantile q of its scores on the {cal:,} "
        f"calibration flows (the bundle uses q = {sc.manifest['thresholds']['quantile']}; with few calibration "
        "flows the high quantiles all sit near the largest calibration score). Share of each set's flows flagged:",
        "",
        "| q | held-out flows | " + ("other benign sets (mean) | " if ben else "")
        + "attack sets (macro mean) | " + " | ".join(r["name"] for r in att) + " |",
        "|---|---|" + ("---|" if ben else "") + "---|" + "---|" * len(att),
    ]
    for t in res["threshold_sensitivity"]:
        sh = t["ensemble_share"]
        cells = [f"{sh[HELD_OUT]:.3f}"]
        if ben:
            cells.append(f"{np.mean([sh[r['name']] for r in ben]):.3f}")
        cells.append(f"{np.mean([sh[r['name']] for r in att]):.3f}" if att else "-")
        cells += [f"{sh[r['name']]:.3f}" for r in att]
        lines.append(f"| {t['quantile']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _auc_section(rows: list[dict]) -> list[str]:
    att = [r for r in rows if r.get("auc_vs_held_out")]
    if not att:
        return []
    keys = list(arch.MODEL_NAMES) + ["ensemble", RANGE]
    lines = [
        "## Each attack set against the held-out flows (ROC-AUC)",
        "",
        "How well each score ranks that set's flows above the site's held-out flows, whatever the threshold.",
        "",
        "| set | " + " | ".join(LABELS.get(k, k) for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for r in att:
        lines.append(f"| {r['name']} | " + " | ".join(_fmt(r["auc_vs_held_out"][k]) for k in keys) + " |")
    return lines + [""]
