"""``eval --dataset stratosphere-letters``: the sequence model's evaluation report.

Writes ``reports/stratosphere-letters.md``, ``.json`` and PNG plots:
- the encoding checked against the data set (alphabet, symbol grammar, class statistics);
- the bundle part's ONNX graph on the held-out test channels (split by 4-tuple), overall and
  by length group (1, 2-4, 5+ flows), beside the periodicity-only rule and the per-flow view;
- young channels: each test channel's first n flows only (how the agent sees a channel grow);
- families held out: for each large label family, a model trained without it, tested on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import sequence_baselines as B
from . import sequence_checks as C
from . import sequence_data as D
from . import sequence_export as X
from . import sequence_part as P
from . import sequence_train as T
from .datasets import MODELS_DIR
from .sequence_report_md import render

REPORT = "stratosphere-letters"
PREFIX_FLOWS = (3, 5, 10, 30)
METHODS = ("lstm", "periodicity rule", "per-flow view")


def _baselines(prep: T.Prepared, train_idx, val_idx):
    """(rule threshold (fixed), per-flow table, per-flow threshold), the table fitted on the
    training lines and its threshold on the validation lines."""
    y = prep.ch.y
    table = B.PerFlowTable(prep.syms(train_idx), y[train_idx])
    flow_t = B.youden_threshold(table.scores(prep.syms(val_idx)), y[val_idx])
    return B.RULE_THRESHOLD, table, flow_t


def _scores(sess, table, symbol_lists: list[list[str]], max_len: int) -> dict[str, np.ndarray]:
    texts = [T.M.window_text(s, max_len) for s in symbol_lists]
    return {"lstm": X.scores_batched(sess, texts), "periodicity rule": B.periodicity_scores(symbol_lists),
            "per-flow view": table.scores(symbol_lists)}


def held_out_split(prep: T.Prepared, man: dict, sess) -> dict:
    tr, va, te = (prep.part(k) for k in ("train", "validation", "test"))
    rule_t, table, flow_t = _baselines(prep, tr, va)
    thr = {"lstm": man["scoring"]["threshold"], "periodicity rule": rule_t, "per-flow view": flow_t}
    y, flows = prep.ch.y[te], prep.ch.flows[te]
    scores = _scores(sess, table, prep.syms(te), prep.max_len)
    result = {"thresholds": thr, "methods": {m: T.by_length_group(scores[m], y, flows, thr[m]) for m in METHODS}}
    result["operating_points"] = [op | {"test": B.metrics(scores["lstm"], y, op["threshold"])}
                                  for op in man["scoring"]["operating_points"]]
    young = {}
    for n in PREFIX_FLOWS:
        rows = np.flatnonzero(flows >= n)
        if len(rows) == 0 or y[rows].min() == y[rows].max():
            continue
        s = _scores(sess, table, [prep.symbols[te[i]][:n] for i in rows], prep.max_len)
        young[str(n)] = {m: B.metrics(s[m], y[rows], thr[m]) for m in METHODS}
    result["young_channels"] = young
    result["curves"] = {"y": y.tolist(), **{m: scores[m].tolist() for m in METHODS}}
    return result


def _family_sets(prep: T.Prepared, fam: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(train, validation, test) line indices for holding `fam` out, and the family's class."""
    ch = prep.ch
    in_fam = D.in_family(ch, fam)
    cls = int(round(float(ch.y[in_fam].mean())))
    te = np.concatenate([np.flatnonzero(in_fam), prep.part("test")[(~in_fam[prep.part("test")])
                                                                   & (ch.y[prep.part("test")] != cls)]])
    test_chans = {ch.channel[i] for i in te}
    keep = lambda idx: idx[[(not in_fam[i]) and ch.channel[i] not in test_chans for i in idx]]  # noqa: E731
    return keep(prep.part("train")), keep(prep.part("validation")), np.sort(te), cls


def family_holdouts(prep: T.Prepared, man: dict, families: list[str], max_epochs: int | None, log) -> dict:
    cfg = {k: man["training"][k] for k in T.M.SEQUENCE}
    if max_epochs:
        cfg["max_epochs"] = max_epochs
    out = {}
    for fam in families:
        tr, va, te, cls = _family_sets(prep, fam)
        if log:
            log(f"  family held out: {fam} ({int(D.in_family(prep.ch, fam).sum())} lines); training without it")
        trained = T.fit(prep, tr, va, cfg)
        sess = X.session(X.export_onnx(trained.model))
        lstm_t = B.youden_threshold(X.scores_batched(sess, prep.texts(va)), prep.ch.y[va])
        rule_t, table, flow_t = _baselines(prep, tr, va)
        thr = {"lstm": lstm_t, "periodicity rule": rule_t, "per-flow view": flow_t}
        scores = _scores(sess, table, prep.syms(te), prep.max_len)
        fam_rows = D.in_family(prep.ch, fam)[te]
        res = {"class": "malicious" if cls else "normal", "lines": int(fam_rows.sum()),
               "other_class_test_lines": int((~fam_rows).sum()), "train_lines": int(len(tr)),
               "best_epoch": trained.best_epoch, "methods": {}}
        for m in METHODS:
            met = B.metrics(scores[m], prep.ch.y[te], thr[m])
            fam_flagged = float(np.mean(scores[m][fam_rows] > thr[m]))
            met["family_correct"] = fam_flagged if cls else 1.0 - fam_flagged
            res["methods"][m] = met
        out[fam] = res
    return out


def evaluate_part(bundle_dir: Path | None = None, reports_dir: Path | None = None, families: int | None = None,
                  max_epochs: int | None = None, quiet: bool = False, ch: D.Channels | None = None) -> dict:
    bundle_dir = bundle_dir if bundle_dir is not None else T.DEFAULT_OUT
    reports_dir = reports_dir if reports_dir is not None else MODELS_DIR / "reports"
    log = None if quiet else print
    man, sess = P.load_part(bundle_dir)
    parity_rows = P.check_parity(bundle_dir)
    prep = T.prepare(man["window"]["max_len"], ch=ch)
    if log:
        log(f"sequence eval: {len(prep.part('test'))} test channels; parity rows reproduced: {parity_rows['rows']} "
            f"({parity_rows['bit_identical']} bit for bit)")
    fams = D.holdout_families(prep.ch)
    fams = fams[:families] if families else fams
    result = {
        "bundle": str(bundle_dir.relative_to(MODELS_DIR)) if bundle_dir.is_relative_to(MODELS_DIR) else str(bundle_dir),
        "part": {k: man[k] for k in ("model", "window", "scoring", "training", "parity")},
        "data": T.data_summary(prep),
        "encoding_check": C.encoding_check(prep.ch),
        "symbol_statistics": C.symbol_statistics(prep.ch),
        "held_out": held_out_split(prep, man, sess),
        "families": family_holdouts(prep, man, fams, max_epochs, log),
        "parity_rows_checked": parity_rows,
    }
    reports_dir.mkdir(parents=True, exist_ok=True)
    curves = result["held_out"].pop("curves")
    render(reports_dir, REPORT, result, curves, man)
    (reports_dir / f"{REPORT}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if log:
        log(f"sequence eval: wrote {reports_dir / (REPORT + '.md')}")
    return result
