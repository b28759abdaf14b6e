"""Evaluation of the CIC-IDS2017 bundle (models/default): reports/cic-ids2017.md + PNG plots.

The sample has no separate test files: the test rows are the held-out, label-stratified test
split recreated from the manifest (never used for fitting, thresholds or the rule). The
sample's class ratios are not the real ones (84 % attacks), so every metric is also given
re-weighted to the population class sizes of PROVENANCE.md.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from . import architecture as arch
from . import datasets, scoring
from .evaluate import (
    LABELS, METRICS_HEADER, Scorer, _calibration, _display, _fmt, _metrics_row, _sensitivity, _test_section,
    _validation_section, evaluate_table, model_rows, plot_confusion, plot_hist, plot_roc,
)
from .train import prepare, sample_rows

TEST_NAME = "test split"


def population_weights(labels: np.ndarray, population: dict) -> np.ndarray:
    """w = population[label] / rows of that label in `labels`: each class then weighs what it
    weighs in the full data set. Labels missing from `population` raise KeyError."""
    uniq, counts = np.unique(labels, return_counts=True)
    per = {lab: population[lab] / n for lab, n in zip(uniq, counts)}
    return np.array([per[lab] for lab in labels], dtype=np.float64)


def _attack_order(labels: np.ndarray, normal: str) -> list[str]:
    uniq, counts = np.unique(labels[labels != normal], return_counts=True)
    return [u for _, u in sorted(zip(-counts, uniq))]


def _loco(sc: Scorer, p, s_test: dict, y_test: np.ndarray, labels_test: np.ndarray, raw_test: np.ndarray,
          raw_all: np.ndarray) -> list[dict]:
    """Leave-one-class-out: the Random Forest retrained without class c (same hyper-parameters,
    sklearn scores), its threshold re-derived on the calibration benign rows; recall on c of the
    RF alone and of the ensemble (bundle rule, bundle AE and IF). Says how much of each class's
    detection rests on having seen it."""
    from .train import train_rf

    hp = sc.manifest["models"]["rf"]["hyperparameters"]
    params = {k: hp[k] for k in ("n_estimators", "max_depth", "min_samples_leaf", "max_features", "class_weight")}
    seed = sc.manifest["seeds"]["rf_random_state"]
    q = sc.manifest["thresholds"]["quantile"]
    fit, cal = p.split["fit"], p.split["calibration"]
    cal_n = cal[p.normal[cal]]
    labels_fit = p.table.labels[fit]
    rows = []
    for c in _attack_order(labels_test, p.table.normal[0]):
        keep = fit[labels_fit != c]
        rf = train_rf(raw_all[keep], p.is_attack[keep].astype(np.int64), params, seed)
        thr = scoring.threshold(rf.predict_proba(raw_all[cal_n])[:, 1].astype(np.float32), q)
        rf_s = rf.predict_proba(raw_test)[:, 1].astype(np.float32)
        th = dict(sc.thresholds, rf=thr)
        e = scoring.ensemble_score(scoring.ratios({**s_test, "rf": rf_s}, th), sc.rule, sc.weights)
        m = labels_test == c
        rows.append({
            "class": c,
            "test_rows": int(m.sum()),
            "rf_recall": float(np.mean(rf_s[m] > thr)),
            "ensemble_recall": float(np.mean(e[m] > 1.0)),
            "ensemble_fpr": float(np.mean(e[~y_test] > 1.0)),
        })
    return rows


def evaluate_cic(sc: Scorer, spec, bundle_dir: Path, reports_dir: Path, sample: int | None) -> dict:
    man = sc.manifest
    td = man["training_data"]
    dataset = spec.name
    t0 = time.time()
    print(f"[{dataset}] loading the sample and recreating the split", flush=True)
    table = datasets.load_cic(spec, man["features"])
    files_ok = [f["sha256"] for f in table.files] == [f["sha256"] for f in td["files"]]
    p = prepare(spec, td["sample"], man["seeds"]["seed"], table=table, feature_names=man["features"])
    calib = _calibration(sc, spec, None, p)
    test = p.table.subset(p.test)
    if sample:
        test = test.subset(sample_rows(len(test.features), sample, 0))
    order = _attack_order(test.labels, spec.normal_label)
    single = man.get("baselines", {}).get("single_feature")
    res, y, s, ens, flags, curves = evaluate_table(
        sc, test, {lab: lab for lab in set(test.labels)}, set(p.table.labels.tolist()), single, group_order=order)
    res["file"] = {"path": f"{spec.folder}/*.csv.gz", "split": "test", "sampled": sample}
    res["threshold_sensitivity"] = _sensitivity(sc, calib, y, s)

    # -- re-weighted to the population class ratios --
    w = population_weights(test.labels, datasets.CIC_POPULATION)
    rw = {"models": {}, "ensemble": {}, "baselines": {}}
    r = scoring.ratios(s, sc.thresholds)
    for j, m in enumerate(arch.MODEL_NAMES):
        rw["models"][m] = scoring.weighted_metrics(y, s[m], r[:, j] > 1.0, w)
    for rule, e in ens.items():
        rw["ensemble"][rule] = scoring.weighted_metrics(y, e, e > 1.0, w)
    rw["baselines"]["flag_everything"] = scoring.weighted_metrics(y, np.ones(len(y)), np.ones(len(y), dtype=bool), w)
    raw_test, _ = sc.raw(test.features)
    if single:
        jf = sc.pre.feature_names().index(single["feature"])
        sf_score, sf_flag = scoring.apply_single_feature(raw_test[:, jf], single)
        rw["baselines"]["single_feature"] = scoring.weighted_metrics(y, sf_score, sf_flag, w)
    res["reweighted"] = rw

    # -- plots --
    slug = f"{dataset}-test"
    plot_roc(reports_dir / f"{slug}-roc.png", f"{dataset} {TEST_NAME}", y, curves)
    panels = [(LABELS[m], s[m], sc.thresholds[m], m == "autoencoder") for m in arch.MODEL_NAMES]
    panels.append((f"ensemble E ({sc.rule})", ens[sc.rule], 1.0, True))
    plot_hist(reports_dir / f"{slug}-hist.png", f"{dataset} {TEST_NAME}", y, panels)
    cm_flags = {LABELS[m]: flags[m] for m in arch.MODEL_NAMES}
    cm_flags[f"ensemble ({sc.rule})"] = flags["ensemble"]
    plot_confusion(reports_dir / f"{slug}-confusion.png", f"{dataset} {TEST_NAME}", y, cm_flags)
    _plot_per_class(reports_dir / f"{slug}-per-class.png", res["per_category"])

    # -- leave-one-class-out (RF) --
    print(f"[{dataset}] leave-one-class-out random forests", flush=True)
    raw_all, _ = sc.raw(p.table.features)
    res["leave_one_class_out"] = _loco(sc, p, s, y, test.labels, raw_test, raw_all)

    results = {TEST_NAME: res}
    lines = _header(sc, dataset, bundle_dir, files_ok, res, calib, p)
    lines += _features_section(man)
    lines += _test_section(sc, TEST_NAME, res, slug, single)
    lines += [f"![recall per class]({slug}-per-class.png)", ""]
    lines += _reweighted_section(sc, res, test.labels, single)
    lines += _loco_section(sc, res["leave_one_class_out"])
    lines += _live_shapes_section(sc)
    lines += _size_section(sc, bundle_dir, reports_dir, dataset)
    lines += _validation_section(sc)
    (reports_dir / f"{dataset}.md").write_text("\n".join(lines).rstrip() + "\n")
    (reports_dir / f"{dataset}.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    e = res["ensemble"][sc.rule]
    print(f"[{dataset}]   {TEST_NAME}: ensemble ({sc.rule}) ROC-AUC {e['roc_auc']:.4f}, F1 {e['f1']:.4f}; "
          f"re-weighted precision {rw['ensemble'][sc.rule]['precision']:.4f} ({time.time() - t0:.0f}s)", flush=True)
    print(f"[{dataset}] report written to {reports_dir / (dataset + '.md')}", flush=True)
    return results


def _plot_per_class(path: Path, per: dict) -> None:
    from .evaluate import _plt, _save

    plt = _plt()
    names = list(per)
    keys = [m for m in arch.MODEL_NAMES] + ["ensemble"]
    fig, ax = plt.subplots(figsize=(8.6, 3.4))
    x = np.arange(len(names))
    width = 0.8 / len(keys)
    for i, k in enumerate(keys):
        ax.bar(x + (i - (len(keys) - 1) / 2) * width, [per[n][k] for n in names], width,
               label=LABELS.get(k, k))
    ax.set_xticks(x, [f"{n} ({per[n]['rows']})" for n in names], rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("recall (share flagged)")
    ax.set_ylim(0, 1.22)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=4, loc="upper center")
    ax.set_title("recall per attack class at the bundle thresholds (test split; rows in brackets)")
    fig.tight_layout()
    _save(fig, path)


def _header(sc: Scorer, dataset: str, bundle_dir: Path, files_ok: bool, res: dict, calib: dict, p) -> list[str]:
    man = sc.manifest
    td = man["training_data"]
    sp = td["split"]
    mtext = (bundle_dir / "manifest.json").read_bytes()
    e = res["ensemble"][sc.rule]
    met = e["roc_auc"] is not None and e["roc_auc"] >= 0.95
    ld = td["loader"]
    return [
        f"# {dataset}: evaluation report (the default bundle, `models/default/`)",
        "",
        f"Written by `python -m netanom_models eval --dataset {dataset}` (or `cargo xtask eval -- --dataset "
        f"{dataset}`). Scores come from the bundle's ONNX graphs run by onnxruntime "
        f"{man['libraries']['onnxruntime']}, exactly as the agent runs them. Attack = positive class.",
        "",
        f"- Bundle: `{_display(bundle_dir)}/` (manifest sha256 `{hashlib.sha256(mtext).hexdigest()[:16]}…`).",
        f"- Data: the {len(td['files'])} CSVs of `{p.table.files[0]['path'].split('/')[0]}/` ({ld['rows_read']:,} rows; "
        f"{ld['exact_duplicates_dropped']} exact duplicates and "
        f"{sum(ld['non_tcp_udp_dropped'].values())} non-TCP/UDP rows dropped: {ld['rows_kept']:,} kept). "
        f"File sha256s match the manifest: {'yes' if files_ok else '**NO** (data changed since training)'}.",
        f"- Split, stratified by `Label`: fit {sp['fit']['rows']:,} ({sp['fit']['normal']:,} benign), calibration "
        f"{sp['calibration']['rows']:,} (benign only), validation {sp['validation']['rows']:,} "
        f"({sp['validation']['normal']:,} benign), **test {sp['test']['rows']:,} ({sp['test']['normal']:,} benign, "
        f"{sp['test']['attack']:,} attacks of {len(sp['per_label']) - 1} classes)**. The autoencoder and the "
        "Isolation Forest learn from benign fit rows only; the Random Forest from all fit rows and their labels.",
        f"- Thresholds: quantile {man['thresholds']['quantile']} of each model's score on the calibration "
        "(benign) rows: " + ", ".join(f"{LABELS[m]} {sc.thresholds[m]:.6g}" for m in arch.MODEL_NAMES)
        + f". Reproduced from the recreated rows: {'yes' if calib['reproduced'] else '**NO**'}.",
        f"- Ensemble rule: **{sc.rule}** ({man['ensemble']['reason']}).",
        "",
        "## Summary",
        "",
        "| test set | rows | attack share (sample) | attack share (population) | ensemble ROC-AUC | ensemble F1 | "
        "re-weighted precision | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {TEST_NAME} | {res['rows']:,} | {res['base_rate']:.1%} | "
        f"{res['reweighted']['ensemble'][sc.rule]['base_rate']:.1%} | {_fmt(e['roc_auc'])} | {_fmt(e['f1'])} | "
        f"{_fmt(res['reweighted']['ensemble'][sc.rule]['precision'])} | ROC-AUC >= 0.95 | "
        f"{'yes' if met else '**no**'} |",
        "",
    ]


def _features_section(man: dict) -> list[str]:
    fs = man["feature_schema"]
    pre = man["preprocessing"]
    used = fs["used"]
    logs = set(pre["log_columns"])
    lines = [
        "## Input features (the live schema)",
        "",
        f"The model reads {len(used)} of the agent's {fs['n_flow_features']} `FLOW_FEATURES` "
        f"(`netanom/src/features/flow.rs`, schema sha256 `{fs['schema_sha256'][:16]}…`), parsed at training time. "
        f"Rule: {fs['selection_rule']}. The agent picks them by name from its feature vector "
        "(manifest `scorer.steps[0].from_flow_features`).",
        "",
        "Excluded:",
        "",
        "| feature | reason |",
        "|---|---|",
    ]
    for name, why in fs["excluded"].items():
        lines.append(f"| `{name}` | {why} |")
    lines += [
        "",
        "- **`Fwd Act Data Pkts` (CicMatch::Differs) is excluded**: CICFlowMeter does not count the first "
        "packet, ours does, so for most UDP flows (the DNS majority of the benign rows) our value is CIC's + 1. "
        "That is a systematic, class-correlated shift (benign is 64 % UDP, attacks are all TCP), not noise.",
        "- **`protocol` is not an input.** CIC's `Protocol` is an identifier column; it equals ours for TCP/UDP/"
        "ICMP but is 0 for every other protocol where ours is the real number (47 GRE, 58 ICMPv6, …), so a "
        "numeric split on it would extrapolate arbitrarily live. It is also redundant: `Fwd Seg Size Min` "
        "is 8 for UDP and >= 20 for TCP, and `ICMP Type` is -1 for non-ICMP flows. CIC's `Protocol` is used only "
        "to keep TCP and UDP rows (where CicMatch::Exact holds).",
        f"- **Heavy tails.** {len(logs)} features (units {', '.join(fs['log_units'])}) get "
        "x -> sign(x)·ln(1 + |x|) before the autoencoder's min-max scaling and before the Isolation Forest; "
        "both steps are inside the ONNX graphs (`models.<m>.inside_graph` in the manifest). The Random Forest "
        "uses the raw values (trees are invariant to monotone transforms). The agent feeds raw float32 values.",
        "",
        "Used, in model-input order: " + ", ".join(f"`{n}`" + ("ᴸ" if n in logs else "") for n in used)
        + " (ᴸ = log step).",
        "",
    ]
    return lines


def _reweighted_section(sc: Scorer, res: dict, labels: np.ndarray, single: dict | None) -> list[str]:
    rw = res["reweighted"]
    pop = datasets.CIC_POPULATION
    total = sum(pop.values())
    benign = pop["BENIGN"]
    lines = [
        "## Base-rate caveat: metrics re-weighted to the real class ratios",
        "",
        f"The sample is {res['base_rate']:.1%} attacks; the full improved CIC-IDS2017 is "
        f"{1 - benign / total:.1%} attacks ({total - benign:,} of {total:,} flows, PROVENANCE.md). Precision and "
        "F1 above therefore flatter every model (a flag-everything rule gets F1 "
        f"{res['baselines']['flag_everything']['f1']:.3f}). Below, each test row of class c weighs "
        "population(c) / test rows(c), which restores the population's class mix (and its mix of attack "
        "classes). Recall per class and the benign FPR do not change; precision does. Real deployments "
        "see far fewer attacks than even this (the CIC week was attack-heavy by design), so the precision here "
        "is still an upper bound.",
        "",
        "| model | ROC-AUC | PR-AUC | precision | recall | F1 | FPR |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name, m):
        return (f"| {name} | {_fmt(m['roc_auc'])} | {_fmt(m['pr_auc'])} | {_fmt(m['precision'])} | "
                f"{_fmt(m['recall'])} | {_fmt(m['f1'])} | {_fmt(m['fpr'])} |")

    lines += model_rows(sc, rw, row)
    if single:
        lines.append(row(f"baseline: {single['feature']} {single['direction']} {single['threshold']:g}",
                         rw["baselines"]["single_feature"]))
    e = rw["ensemble"][sc.rule]
    fpr = e["fpr"]
    lines += [
        "",
        f"At a benign FPR of {fpr:.2%} and one flow in {1 / max(1 - benign / total, 1e-9):.1f} being an attack, "
        f"{fpr * benign / total * 100:.2f} flows in 100 are false alarms. With a realistic 1-in-1,000 attack "
        f"share, the same operating point would give precision about "
        f"{(0.001 * e['recall']) / max(0.001 * e['recall'] + 0.999 * fpr, 1e-12):.3f}. "
        f"The test split holds {int((labels == 'BENIGN').sum()):,} benign flows, so an FPR below "
        f"~{1 / max(int((labels == 'BENIGN').sum()), 1):.1e} cannot be resolved.",
        "",
    ]
    return lines


def _loco_section(sc: Scorer, rows: list[dict]) -> list[str]:
    lines = [
        "## How much rests on having seen the attack class (leave-one-class-out)",
        "",
        "For each attack class c: a Random Forest with the bundle's hyper-parameters retrained on the fit rows "
        "without c (sklearn, float32 inputs), its threshold re-derived on the calibration benign rows; the "
        f"ensemble ({sc.rule}) combines it with the bundle's autoencoder and Isolation Forest, which never see "
        "attacks. Recall on the test rows of c, and the ensemble's FPR on the benign test rows. Diagnostic only: "
        "the bundle's RF was trained on all classes.",
        "",
        "| class held out | test rows | RF recall | ensemble recall | ensemble FPR |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['class']} | {r['test_rows']:,} | {r['rf_recall']:.3f} | {r['ensemble_recall']:.3f} | "
                     f"{r['ensemble_fpr']:.4f} |")
    lines += [
        "",
        "A class whose held-out recall collapses is detected by the supervised forest's memory of it; for novel "
        "attacks of that shape only the benign-trained autoencoder and Isolation Forest remain.",
        "",
    ]
    return lines


#: Flow shapes the agent emits but CIC never contains (1 packet, zero duration); all other
#: features 0, ICMP code/type -1.
LIVE_SHAPES = {
    "1-packet UDP query (40 B payload, no reply)": {
        "Total Fwd Packet": 1, "Total Length of Fwd Packet": 40, "Fwd Packet Length Max": 40,
        "Fwd Packet Length Min": 40, "Fwd Packet Length Mean": 40, "Fwd Header Length": 8,
        "Packet Length Min": 40, "Packet Length Max": 40, "Packet Length Mean": 40,
        "Average Packet Size": 40, "Fwd Segment Size Avg": 40, "Fwd Seg Size Min": 8},
    "lone SYN (no reply)": {
        "Total Fwd Packet": 1, "Fwd Header Length": 40, "SYN Flag Count": 1, "FWD Init Win Bytes": 64240,
        "Fwd Seg Size Min": 40},
}


def _live_shapes_section(sc: Scorer) -> list[str]:
    import pandas as pd

    names = sc.pre.columns
    rows = []
    for shape in LIVE_SHAPES.values():
        r = {c: 0.0 for c in names}
        r.update({c: -1.0 for c in ("ICMP Code", "ICMP Type") if c in r})
        r.update({k: float(v) for k, v in shape.items() if k in r})
        rows.append(r)
    raw, _ = sc.raw(pd.DataFrame(rows, columns=names))
    s = sc.scores(raw)
    r = scoring.ratios(s, sc.thresholds)
    e = scoring.ensemble_score(r, sc.rule, sc.weights)
    lines = [
        "## Flow shapes CIC does not contain",
        "",
        "CICFlowMeter emits no 1-packet or zero-duration flows (FEATURES.md); the agent does (a scan or a "
        "SYN flood is mostly these, but so are unanswered benign queries). The bundle has never seen one. "
        "Two hand-built examples (every other feature 0, ICMP code/type -1), r = score / threshold:",
        "",
        "| flow | r autoencoder | r isolation forest | r random forest | E | flagged |",
        "|---|---|---|---|---|---|",
    ]
    for i, name in enumerate(LIVE_SHAPES):
        lines.append(f"| {name} | {r[i, 0]:.3f} | {r[i, 1]:.3f} | {r[i, 2]:.3f} | {e[i]:.3f} | "
                     f"{'yes' if e[i] > 1.0 else 'no'} |")
    lines += [
        "",
        "Both sit at the decision boundary. Expect the live false-positive rate on such flows to differ "
        "from the CIC figures above; calibrating the thresholds on live benign traffic is the next step.",
        "",
    ]
    return lines


def _size_section(sc: Scorer, bundle_dir: Path, reports_dir: Path, dataset: str) -> list[str]:
    files = sorted(f for f in bundle_dir.iterdir() if f.is_file())
    total = sum(f.stat().st_size for f in files)
    lines = [
        "## Bundle size",
        "",
        "| file | bytes |",
        "|---|---|",
    ]
    for f in files:
        lines.append(f"| {f.name} | {f.stat().st_size:,} |")
    lines += [f"| **total** | **{total:,}** ({total / 1e6:.2f} MB; budget 3 MB) |", ""]
    for kind, what in (("rf", "Random Forest"), ("if", "Isolation Forest")):
        sweep = reports_dir / f"{dataset}-{kind}-sweep.md"
        if sweep.is_file():
            lines += [f"{what} size / speed / quality sweep: [{sweep.name}]({sweep.name}).", ""]
    return lines
