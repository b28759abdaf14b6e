"""``train --dataset stratosphere-letters``: trains the sequence model on the training channels,
picks its threshold on the validation channels and writes the bundle part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import sequence_baselines as B
from . import sequence_data as D
from . import sequence_export as X
from . import sequence_model as M
from . import sequence_part as P
from .datasets import MODELS_DIR

DEFAULT_OUT = MODELS_DIR / "default"


@dataclass
class Prepared:
    ch: D.Channels
    split: dict[str, np.ndarray]
    symbols: list[list[str]]
    windows: list[str]  # each line's whole string, cut to max_len
    max_len: int

    def part(self, name: str) -> np.ndarray:
        return self.split[name]

    def texts(self, idx: np.ndarray) -> list[str]:
        return [self.windows[i] for i in idx]

    def syms(self, idx: np.ndarray) -> list[list[str]]:
        return [self.symbols[i] for i in idx]


def prepare(max_len: int = M.SEQUENCE["max_len"], ch: D.Channels | None = None) -> Prepared:
    ch = ch if ch is not None else D.load()
    symbols = [ch.symbols(i) for i in range(len(ch))]
    return Prepared(ch, D.split_by_channel(ch), symbols, [M.window_text(s, max_len) for s in symbols], max_len)


def fit(prep: Prepared, train_idx: np.ndarray, val_idx: np.ndarray, cfg: dict, log=None) -> M.Trained:
    cfg = dict(M.SEQUENCE, **cfg)
    rng = np.random.default_rng(cfg["seed"])
    samples = M.channel_samples(prep.syms(train_idx), prep.ch.y[train_idx], cfg["max_len"], cfg["prefixes"], rng)
    return M.train(samples, prep.texts(val_idx), prep.ch.y[val_idx], cfg, log=log)


def by_length_group(scores: np.ndarray, y: np.ndarray, flows: np.ndarray, threshold: float) -> dict:
    out = {"all": B.metrics(scores, y, threshold)}
    for g, _, _ in D.LENGTH_GROUPS:
        m = D.length_group(flows, g)
        out[g] = B.metrics(scores[m], y[m], threshold)
    return out


def operating_points(val_scores: np.ndarray, val_y: np.ndarray, threshold: float) -> list[dict]:
    """The shipped threshold and stricter ones (for an operator who wants fewer alerts), each
    with its validation recall and FPR."""
    points = [("youden", threshold)] + [(f"validation normal quantile {q}", B.normal_quantile_threshold(
        val_scores, val_y, q)) for q in B.NORMAL_QUANTILES]
    out = []
    for rule, t in points:
        m = B.metrics(val_scores, val_y, t)
        out.append({"rule": rule, "threshold": t, "validation": {"recall": m["recall"], "fpr": m["fpr"]}})
    return out


def data_summary(prep: Prepared) -> dict:
    ch = prep.ch
    return {
        "dataset": D.DATASET,
        "data": {"file": f"{D.FOLDER}/{D.FILE}", "sha256_uncompressed": ch.stats.get("sha256"),
                 "matches_provenance": ch.stats.get("sha256_matches_provenance"),
                 "lines": {k: v for k, v in ch.stats.items() if not k.startswith("sha256")},
                 "channels_used": len(ch), "malicious": int(ch.y.sum()), "normal": int((ch.y == 0).sum())},
        "split": {"rule": "by 4-tuple (every line of a 4-tuple in one part), stratified by class, seed "
                          f"{D.SPLIT_SEED}", "fractions": D.SPLIT,
                  "lines": {k: int(len(v)) for k, v in prep.split.items()}},
    }


def train_part(out_dir: Path | None = None, seed: int = 0, max_epochs: int | None = None, quiet: bool = False,
               ch: D.Channels | None = None) -> dict:
    out_dir = out_dir if out_dir is not None else DEFAULT_OUT
    log = None if quiet else print
    cfg = {"seed": seed} | ({"max_epochs": max_epochs} if max_epochs else {})
    prep = prepare(ch=ch)
    tr, va, te = prep.part("train"), prep.part("validation"), prep.part("test")
    if log:
        log(f"sequence: {len(tr)} training, {len(va)} validation channels; training the LSTM")
    trained = fit(prep, tr, va, cfg, log=log)
    sess = X.session(X.export_onnx(trained.model))
    val_scores = X.scores_batched(sess, prep.texts(va))
    threshold = B.youden_threshold(val_scores, prep.ch.y[va])
    validation = by_length_group(val_scores, prep.ch.y[va], prep.ch.flows[va], threshold)
    points = operating_points(val_scores, prep.ch.y[va], threshold)
    parity = P.parity_windows(prep.texts(te), prep.ch.flows[te])
    man = P.write_part(out_dir, trained, threshold, validation, parity, points, data_summary(prep))
    if log:
        v = validation["all"]
        log(f"sequence: best epoch {trained.best_epoch}/{trained.epochs_run}; validation ROC-AUC {v['roc_auc']:.4f}, "
            f"accuracy {v['accuracy']:.4f} at threshold {threshold:.4f}; wrote {out_dir / P.MANIFEST}")
    return man
