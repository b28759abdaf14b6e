"""Thresholds, the ensemble rules and the metrics, shared by training and evaluation.

Each model i gives a score s_i and has a threshold t_i > 0; it flags a row when s_i > t_i,
i.e. when its normalised score r_i = s_i / t_i exceeds 1. Each ensemble rule is a
continuous ensemble score E compared with 1.0 (flag when E > 1.0):

- any:      E = max_i r_i                   (flag if any model flags)
- majority: E = k-th largest r_i, k = m//2+1 (flag if more than half of the m models flag)
- weighted: E = sum_i w_i r_i, sum_i w_i = 1
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .architecture import MIN_THRESHOLD, MODEL_NAMES


def threshold(normal_scores: np.ndarray, quantile: float) -> float:
    if normal_scores.size == 0:
        raise ValueError("no normal rows to calibrate the threshold on")
    return max(float(np.quantile(normal_scores.astype(np.float64), quantile)), MIN_THRESHOLD)


def ratios(scores: dict[str, np.ndarray], thresholds: dict[str, float]) -> np.ndarray:
    """[n, m] matrix of s_i / t_i in MODEL_NAMES order (float64)."""
    return np.stack([scores[m].astype(np.float64) / thresholds[m] for m in MODEL_NAMES], axis=1)


def normalised_weights(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def ensemble_score(r: np.ndarray, rule: str, weights) -> np.ndarray:
    if rule == "any":
        return r.max(axis=1)
    if rule == "majority":
        k = r.shape[1] // 2 + 1
        return -np.sort(-r, axis=1)[:, k - 1]
    if rule == "weighted":
        # Left to right in float64, exactly as the manifest's scorer contract says.
        w = normalised_weights(weights)
        e = np.zeros(r.shape[0], dtype=np.float64)
        for j in range(r.shape[1]):
            e = e + w[j] * r[:, j]
        return e
    raise ValueError(f"unknown ensemble rule {rule!r}")


def rule_definitions() -> dict[str, str]:
    return {
        "per_model": "r_i = score_i / threshold_i; model i flags the row when r_i > 1",
        "any": "E = max_i r_i",
        "majority": "E = the k-th largest r_i with k = floor(m/2) + 1 (m = 3 models -> the median)",
        "weighted": "E = sum_i weight_i * r_i (weights sum to 1)",
        "decision": "the row is an anomaly when E > 1.0",
    }


def _r(x) -> float | None:
    return None if x is None else round(float(x), 6)


def binary_metrics(y: np.ndarray, score: np.ndarray, flagged: np.ndarray) -> dict:
    """Attack = positive class. AUCs from the continuous score, P/R/F1 from `flagged`."""
    y = y.astype(bool)
    flagged = flagged.astype(bool)
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    fn = int(np.sum(~flagged & y))
    tn = int(np.sum(~flagged & ~y))
    both = 0 < y.sum() < y.size
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {
        "roc_auc": _r(roc_auc_score(y, score)) if both else None,
        "pr_auc": _r(average_precision_score(y, score)) if both else None,
        "precision": _r(prec),
        "recall": _r(rec),
        "f1": _r(f1),
        "fpr": _r(fp / (fp + tn) if fp + tn else 0.0),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def best_single_feature(x: np.ndarray, y: np.ndarray, names: list[str]) -> dict:
    """Best (F1) rule `feature > t` or `feature < t` over the given columns of x."""
    y = y.astype(bool)
    best = {"f1": -1.0}
    n_pos = int(y.sum())
    for j, name in enumerate(names):
        v = x[:, j].astype(np.float64)
        for direction in (">", "<"):
            s = v if direction == ">" else -v
            order = np.argsort(-s, kind="stable")
            ss = s[order]
            tp = np.cumsum(y[order])
            k = np.arange(1, len(ss) + 1)
            # Only cut between distinct values: flag rows with s > cut, cut = next value.
            last = np.r_[ss[1:] != ss[:-1], True]
            tp, k, ss_cut = tp[last], k[last], ss[last]
            f1 = 2 * tp / (k + n_pos)
            i = int(np.argmax(f1))
            if f1[i] > best["f1"] + 1e-12:
                # threshold between ss_cut[i] and the next lower distinct value
                nxt = ss[k[i]] if k[i] < len(ss) else ss_cut[i] - 1.0
                t = (ss_cut[i] + nxt) / 2.0
                best = {
                    "feature": name,
                    "direction": direction,
                    "threshold": float(t if direction == ">" else -t),
                    "f1": float(f1[i]),
                }
    return best


def apply_single_feature(x_col: np.ndarray, rule: dict) -> tuple[np.ndarray, np.ndarray]:
    """(continuous score, flagged) of a single-feature rule."""
    v = x_col.astype(np.float64)
    if rule["direction"] == ">":
        return v, v > rule["threshold"]
    return -v, v < rule["threshold"]


def weighted_metrics(y: np.ndarray, score: np.ndarray, flagged: np.ndarray, w: np.ndarray) -> dict:
    """binary_metrics with per-row weights (re-weighting a sample to population class ratios):
    counts become weighted sums; AUCs use sample_weight."""
    y = y.astype(bool)
    flagged = flagged.astype(bool)
    w = w.astype(np.float64)
    tp = float(w[flagged & y].sum())
    fp = float(w[flagged & ~y].sum())
    fn = float(w[~flagged & y].sum())
    tn = float(w[~flagged & ~y].sum())
    both = 0 < y.sum() < y.size
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {
        "roc_auc": _r(roc_auc_score(y, score, sample_weight=w)) if both else None,
        "pr_auc": _r(average_precision_score(y, score, sample_weight=w)) if both else None,
        "precision": _r(prec),
        "recall": _r(rec),
        "f1": _r(f1),
        "fpr": _r(fp / (fp + tn) if fp + tn else 0.0),
        "base_rate": _r((tp + fn) / (tp + fp + fn + tn)),
    }
