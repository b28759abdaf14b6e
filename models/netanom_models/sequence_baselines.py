"""Baselines for the sequence model, the threshold rule and the metrics they share.

- :func:`periodicity_scores`: the periodicity-only rule (no model). From the letters alone:
  gap regularity (the share of flows, from the third on, whose periodicity class is 1 or 2,
  i.e. whose gap ratio is <= 1.3) times size regularity (the share of flows in the channel's
  most common size class). Channels of fewer than 3 flows have no periodicity: score 0. Its
  threshold is fixed, not learned: flag when the score is above ``RULE_THRESHOLD`` (more than
  half of the gaps regular and the sizes alike).
- :class:`PerFlowTable`: a channel seen one flow at a time. Each flow's size and duration
  class gets P(malicious) from the training channels (each channel counts once, spread over
  its flows); the channel's score is the mean over its flows. It has what a letter says
  about one flow and nothing about order or timing: the view of a per-flow scorer.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from . import letters as L

MIN_RULE_FLOWS = 3
RULE_THRESHOLD = 0.5
#: Operating points besides Youden's J: quantiles of the validation normal channels' scores.
NORMAL_QUANTILES = (0.95, 0.99)


def _classes(symbols: list[str]) -> list[tuple[int, int, int]]:
    return [L.letter_classes(L.symbol_letter(s)) for s in symbols]


def periodicity_score(symbols: list[str]) -> float:
    if len(symbols) < MIN_RULE_FLOWS:
        return 0.0
    cls = _classes(symbols)
    periodic = [p in (1, 2) for p, _, _ in cls if p > 0]
    sizes = np.bincount([s for _, s, _ in cls], minlength=4)
    return float(np.mean(periodic)) * float(sizes.max() / len(cls))


def periodicity_scores(symbol_lists: list[list[str]]) -> np.ndarray:
    return np.array([periodicity_score(s) for s in symbol_lists], dtype=np.float64)


class PerFlowTable:
    """P(malicious | size class, duration class), Laplace-smoothed."""

    def __init__(self, symbol_lists: list[list[str]], y: np.ndarray) -> None:
        mal = np.ones((4, 4))
        tot = np.full((4, 4), 2.0)
        for syms, lab in zip(symbol_lists, y):
            w = 1.0 / len(syms)
            for _, s, d in _classes(syms):
                mal[s, d] += w * float(lab)
                tot[s, d] += w
        self.p = mal / tot

    def scores(self, symbol_lists: list[list[str]]) -> np.ndarray:
        return np.array([np.mean([self.p[s, d] for _, s, d in _classes(syms)]) for syms in symbol_lists])


def youden_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The threshold t (a score value; a row is flagged when score > t) with the largest
    TPR - FPR on these rows; ties go to the largest t (fewer alerts)."""
    s = np.asarray(scores, dtype=np.float64)
    cands = np.unique(s)
    cands = np.concatenate([[np.nextafter(cands[0], -np.inf)], cands])
    pos, neg = max(int(y.sum()), 1), max(int((y == 0).sum()), 1)
    best_t, best_j = cands[0], -np.inf
    for t in cands:
        flagged = s > t
        j = (flagged & (y == 1)).sum() / pos - (flagged & (y == 0)).sum() / neg
        if j >= best_j:
            best_t, best_j = t, j
    return float(best_t)


def normal_quantile_threshold(scores: np.ndarray, y: np.ndarray, q: float) -> float:
    """The q-quantile of the normal rows' scores (an actual score: method "higher"), so that
    at most about (1 - q) of them are flagged (score > threshold)."""
    return float(np.quantile(np.asarray(scores, dtype=np.float64)[np.asarray(y) == 0], q, method="higher"))


def metrics(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y)
    flagged = s > threshold
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    tn = int((~flagged & (y == 0)).sum())
    both = 0 < int(y.sum()) < len(y)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    return {
        "rows": int(len(y)), "malicious": int(y.sum()), "normal": int((y == 0).sum()),
        "roc_auc": float(roc_auc_score(y, s)) if both else None,
        "pr_auc": float(average_precision_score(y, s)) if both else None,
        "accuracy": (tp + tn) / len(y) if len(y) else None,
        "precision": prec, "recall": rec,
        "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
        "fpr": fp / (fp + tn) if fp + tn else None,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }
