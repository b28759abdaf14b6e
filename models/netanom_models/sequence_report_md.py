"""The sequence report's Markdown and plots (numbers come from sequence_report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluate import _plt, _save
from .sequence_data import LENGTH_GROUPS

TARGET_HELD_OUT = 0.97
TARGET_FAMILIES = 0.90
SLIPS_ACCURACY = (0.90, 0.93)
COLORS = {"lstm": "tab:blue", "periodicity rule": "tab:orange", "per-flow view": "tab:green"}


def _f(v, nd: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _row(name: str, m: dict) -> str:
    return (f"| {name} | {m['rows']:,} | {m['malicious']:,} / {m['normal']:,} | {_f(m['roc_auc'])} | "
            f"{_f(m['pr_auc'])} | {_f(m['accuracy'])} | {_f(m['precision'])} | {_f(m['recall'])} | "
            f"{_f(m['fpr'])} |")


HEAD = ("| {} | rows | malicious / normal | ROC-AUC | PR-AUC | accuracy | precision | recall | FPR |\n"
        "|---|---|---|---|---|---|---|---|---|")


def family_summary(fams: dict, method: str = "lstm") -> dict:
    aucs = [f["methods"][method]["roc_auc"] for f in fams.values() if f["methods"][method]["roc_auc"] is not None]
    return {"mean": float(np.mean(aucs)) if aucs else None, "min": float(np.min(aucs)) if aucs else None,
            "n": len(aucs), "at_or_above_target": int(sum(a >= TARGET_FAMILIES for a in aucs))}


def plot_curves(path: Path, curves: dict) -> None:
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = _plt()
    y = np.array(curves["y"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.6, 3.7))
    for m, c in COLORS.items():
        s = np.array(curves[m])
        fpr, tpr, _ = roc_curve(y, s)
        a.plot(fpr, tpr, color=c, label=m)
        p, r, _ = precision_recall_curve(y, s)
        b.plot(r, p, color=c, label=m)
    a.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
    a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, held-out test channels")
    b.set(xlabel="recall", ylabel="precision", title="precision-recall, held-out test channels")
    a.legend(loc="lower right")
    _save(fig, path)


def plot_hist(path: Path, curves: dict, threshold: float) -> None:
    plt = _plt()
    y = np.array(curves["y"])
    s = np.array(curves["lstm"])
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bins = np.linspace(0, 1, 41)
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label="normal", color="tab:green")
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label="malicious", color="tab:red")
    ax.axvline(threshold, color="black", lw=1, ls="--", label=f"threshold {threshold:.3f}")
    ax.set(yscale="log", xlabel="sequence score", ylabel="test channels", title="LSTM score by class (test split)")
    ax.legend()
    _save(fig, path)


def plot_families(path: Path, fams: dict) -> None:
    plt = _plt()
    names = list(fams)
    fig, ax = plt.subplots(figsize=(8.6, 0.32 * len(names) + 1.2))
    ypos = np.arange(len(names))
    for k, (m, c) in enumerate(COLORS.items()):
        v = [fams[n]["methods"][m]["roc_auc"] or 0.0 for n in names]
        ax.barh(ypos + (k - 1) * 0.27, v, height=0.27, color=c, label=m)
    ax.axvline(TARGET_FAMILIES, color="black", lw=1, ls="--", label=f"target {TARGET_FAMILIES}")
    ax.set_yticks(ypos, names)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="ROC-AUC (family vs the other class's test channels)",
           title="families held out of training")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    _save(fig, path)


def _held_out_md(r: dict) -> list[str]:
    h = r["held_out"]
    t = h["thresholds"]
    out = ["## Held-out test split", "",
           f"Thresholds: lstm {t['lstm']:.4g} and per-flow view {t['per-flow view']:.4g} (Youden's J on the "
           f"validation channels); periodicity rule {t['periodicity rule']:.4g} (fixed, not learned).", ""]
    for g in ["all"] + [g for g, _, _ in LENGTH_GROUPS]:
        out += [f"**{'all channels' if g == 'all' else g + ' flows'}**", "", HEAD.format("method")]
        out += [_row(m, h["methods"][m][g]) for m in h["methods"]]
        out.append("")
    out += ["**Operating points of the LSTM** (`scoring.operating_points` in `sequence.json`; the part ships the "
            "first): stricter thresholds for fewer alerts.", "",
            "| rule | threshold | validation recall | validation FPR | test recall | test FPR | test precision | "
            "test accuracy |", "|---|---|---|---|---|---|---|---|"]
    for op in h["operating_points"]:
        v, te = op["validation"], op["test"]
        out.append(f"| {op['rule']} | {op['threshold']:.4f} | {_f(v['recall'])} | {_f(v['fpr'])} | "
                   f"{_f(te['recall'])} | {_f(te['fpr'])} | {_f(te['precision'])} | {_f(te['accuracy'])} |")
    out.append("")
    out += ["![ROC and PR](stratosphere-letters-test-curves.png)", "",
            "![scores](stratosphere-letters-test-hist.png)", ""]
    out += ["## Young channels: the first n flows only", "",
            "Each test channel with at least n flows, cut to its first n flows (what the agent scores when the "
            "channel reaches n flows), at the same thresholds.", "", HEAD.format("n flows, method")]
    for n, ms in h["young_channels"].items():
        out += [_row(f"{n}, {m}", met) for m, met in ms.items()]
    return out + [""]


def _families_md(r: dict) -> list[str]:
    fams = r["families"]
    out = ["## Families held out", "",
           "For each label family with at least 30 lines (class + protocol + service, e.g. `malicious TCP-SMTP`; "
           "and every line whose label names C&C), a model is trained on the training channels without that "
           "family (and without any 4-tuple of its test set), its threshold chosen on the validation channels "
           "without it. The test set is the whole family (all splits) plus the test-split channels of the other "
           "class. *family correct* is the share of the family's lines on the right side of the threshold "
           "(flagged when malicious, not flagged when normal).", "",
           "| family | class | lines | other-class test lines | method | ROC-AUC | PR-AUC | accuracy | family correct |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, f in fams.items():
        for m, met in f["methods"].items():
            out.append(f"| {name} | {f['class']} | {f['lines']:,} | {f['other_class_test_lines']:,} | {m} | "
                       f"{_f(met['roc_auc'])} | {_f(met['pr_auc'])} | {_f(met['accuracy'])} | "
                       f"{_f(met['family_correct'])} |")
    out.append("")
    for m in ("lstm", "periodicity rule", "per-flow view"):
        s = family_summary(fams, m)
        out.append(f"- {m}: mean ROC-AUC {_f(s['mean'])}, lowest {_f(s['min'])}, {s['at_or_above_target']} of "
                   f"{s['n']} families at or above {TARGET_FAMILIES}.")
    return out + ["", "![families](stratosphere-letters-families.png)", ""]


def _checks_md(r: dict) -> list[str]:
    e = r["encoding_check"]
    out = ["## The encoding checked against the data set", "",
           "The data set holds letter strings only, not the flows behind them, so the class edges cannot be "
           "re-derived from it; `models/tests/test_letters.py` pins each edge, and the Rust encoder replays "
           "`models/tests/fixtures/letters_parity.tsv`. What the data does show is that its strings are exactly "
           "the language our encoder writes:", "",
           f"- characters seen: `{e['alphabet_seen']}` ({len(e['alphabet_seen'])}); equal to "
           f"`letters.ALPHABET`: {'yes' if e['alphabet_equal'] else 'no'}; {e['characters']:,} characters, "
           f"{e['symbols']:,} symbols (flows).",
           f"- lines breaking a rule of the encoding: {e['lines_with_violations']}:"]
    out += [f"  - {name}: {n}" for name, n in e["violations"].items()]
    out += [f"- lines of 3+ flows whose last symbol has no gap symbol (cut off by the data set's ~1,000-character "
            f"limit): {e['last_symbol_without_gap']}.", "",
            "Class shares among the flows (size and duration of every flow, periodicity from the third flow, gap "
            "symbol from the second):", "", "| class | malicious flows | normal flows |", "|---|---|---|"]
    st = r["symbol_statistics"]
    for key in ("size", "duration", "periodicity", "gap"):
        for k in st["malicious"][key] | st["normal"][key]:
            out.append(f"| {key} {k} | {st['malicious'][key].get(k, 0):.3f} | {st['normal'][key].get(k, 0):.3f} |")
    out.append(f"| after an hour or more of silence | {st['malicious']['flows_after_an_hour_or_more']:.4f} | "
               f"{st['normal']['flows_after_an_hour_or_more']:.4f} |")
    return out + [""]


def _summary_md(r: dict, man: dict) -> list[str]:
    allm = r["held_out"]["methods"]["lstm"]["all"]
    fs = family_summary(r["families"])
    ok = lambda v, t: "n/a" if v is None else ("yes" if v >= t else "**no**")  # noqa: E731
    return ["## Summary", "",
            "| measure | value | target | met |", "|---|---|---|---|",
            f"| ROC-AUC, held-out test channels | {_f(allm['roc_auc'])} | >= {TARGET_HELD_OUT} | "
            f"{ok(allm['roc_auc'], TARGET_HELD_OUT)} |",
            f"| ROC-AUC, families held out (mean of {fs['n']}) | {_f(fs['mean'])} | >= {TARGET_FAMILIES} | "
            f"{ok(fs['mean'], TARGET_FAMILIES)} |",
            f"| ROC-AUC, families held out (lowest) | {_f(fs['min'])} | >= {TARGET_FAMILIES} | "
            f"{ok(fs['min'], TARGET_FAMILIES)} |",
            f"| accuracy at the threshold, held-out test | {_f(allm['accuracy'])} | Slips reports "
            f"{SLIPS_ACCURACY[0]}-{SLIPS_ACCURACY[1]} (its own split) | (comparison) |", ""]


def render(reports_dir: Path, name: str, r: dict, curves: dict, man: dict) -> None:
    plot_curves(reports_dir / f"{name}-test-curves.png", curves)
    plot_hist(reports_dir / f"{name}-test-hist.png", curves, man["scoring"]["threshold"])
    if r["families"]:
        plot_families(reports_dir / f"{name}-families.png", r["families"])
    d = r["data"]["data"]
    mm = man["model"]
    lines = [
        "# stratosphere-letters: sequence (C&C beacon) model evaluation report", "",
        "Written by `python -m netanom_models eval --dataset stratosphere-letters` (or `cargo xtask eval -- "
        "--dataset stratosphere-letters`). The LSTM's scores come from the bundle part's ONNX graph run by "
        "onnxruntime 1.31.1, as the agent will run it. Malicious (botnet/malware) = positive class.", "",
        f"- Part: `{r['bundle']}/{mm['file']}` ({mm['bytes']:,} bytes, {mm['parameters']:,} parameters, sha256 "
        f"`{mm['sha256'][:16]}…`); window {man['window']['max_len']} characters; scored from "
        f"{man['scoring']['min_flows']} flows; threshold {man['scoring']['threshold']:.6g} (score > threshold); "
        f"best epoch {man['training']['best_epoch']} of {man['training']['epochs_run']}. Parity rows reproduced: "
        f"{r['parity_rows_checked']['rows']}, {r['parity_rows_checked']['bit_identical']} of them bit for bit.",
        f"- Data: `{d['file']}`, sha256 of the uncompressed file "
        f"{'matches' if d['matches_provenance'] else '**differs from**'} PROVENANCE.md; {d['channels_used']:,} "
        f"labelled lines used ({d['malicious']:,} malicious, {d['normal']:,} normal; {d['lines']['unlabelled']} "
        f"unlabelled and {d['lines']['duplicates']} exact duplicates dropped).",
        f"- Split: {r['data']['split']['rule']}: " + ", ".join(f"{k} {v:,}" for k, v in
                                                             r["data"]["split"]["lines"].items()) + " lines.", "",
    ]
    lines += _summary_md(r, man) + _model_md(man) + _held_out_md(r) + _families_md(r) + _flow_ensemble_md() + _checks_md(r)
    lines += ["## Reproduce", "", "```sh", "cargo xtask train -- --dataset stratosphere-letters   # writes "
              "models/default/sequence.{onnx,json}, sequence-parity.tsv",
              "cargo xtask eval  -- --dataset stratosphere-letters   # this report", "```", ""]
    (reports_dir / f"{name}.md").write_text("\n".join(lines))


def _model_md(man: dict) -> list[str]:
    tr, a = man["training"], man["model"]["architecture"]
    return ["## The model", "",
            f"- Input: the channel's letters, cut to its most recent whole symbols of at most "
            f"{man['window']['max_len']} characters, one index per character (alphabet of "
            f"{len(man['encoding']['alphabet'])}, 0 = padding).",
            f"- Embedding {a['embedding']} -> one forward LSTM layer of {a['hidden']} -> the hidden state after the "
            f"last real character -> linear -> sigmoid ({man['model']['parameters']:,} parameters).",
            f"- Training: each training channel's whole string plus up to {tr['prefixes']} random shorter prefixes "
            f"(cut at whole symbols, same label), so that young channels are seen too; Adam, learning rate "
            f"{tr['learning_rate']}, batches of {tr['batch']}, class-weighted cross-entropy, early stopping on the "
            f"validation ROC-AUC (patience {tr['patience']}, at most {tr['max_epochs']} epochs), seed {tr['seed']}, "
            f"one CPU thread: the same command writes the same bytes on the same machine.",
            f"- Scored from {man['scoring']['min_flows']} flows: the third flow is the first whose letter carries "
            f"a periodicity class. The tables below also show 1- and 2-flow channels, so the cost of scoring them "
            f"is visible.", ""]


def _flow_ensemble_md() -> list[str]:
    return ["## The flow ensemble", "",
            "The agent's flow models (autoencoder, Isolation Forest, Random Forest of `models/default/`) read 61 "
            "per-flow features (packet counts, sizes, inter-arrival times, flags). This data set holds only the "
            "letter strings, not those features, so the flow ensemble **cannot be scored on it**; any number "
            "here would be made up. Two stand-ins are reported instead:", "",
            "- the **per-flow view** above: every flow scored on its own from what its letter says about it "
            "(size and duration class), then averaged over the channel. It is the best a scorer that sees one "
            "flow at a time can do with this information, and shows what order and timing add;",
            "- the ensemble itself is compared where both can run, on the lab's beacon captures of the "
            "capture-detection scorecard (issue 13: the periodic HTTPS beacon was never alerted on by the flow "
            "models).", ""]
