"""Raw feature vector (what the Rust scorer builds) and min-max scaling parameters.

The input vector of every ONNX model is the *raw* vector: the source columns in file order
(KDD: the 41 columns), with each categorical column replaced, in place, by its one-hot block (categories sorted as
stored in the manifest). Numeric values are cast to float32. A category not in the list gives
an all-zero block. Min-max scaling (``clip((x - min) / range, 0, 1)``) happens inside
``autoencoder.onnx``; the tree models need no scaling (trees are invariant to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import DataError


def log_indices(log_mask) -> np.ndarray:
    """The input-vector indices of the log elements (int64), as the graphs gather them."""
    return np.flatnonzero(np.asarray(log_mask, dtype=bool)).astype(np.int64)


#: The graphs compute the log step on the log elements alone (Gather, log, ScatterElements
#: back) when they are at most this share of the vector, else over the whole vector with a
#: Where. Both give bit-identical values; onnxruntime, batch 1024, 1 thread: with 16 of KDD's
#: 122 elements the gather form costs 0.16 / 0.23 µs/row (AE / IF) against 0.48 / 0.55 for
#: the whole-vector form; with 58 of CIC's 61 it costs 0.27 / 0.28 µs/row more than that form.
LOG_GATHER_MAX_SHARE = 0.5


def log_by_gather(log_mask) -> bool:
    """Whether the graphs use the gather form of the log step for `log_mask` (see above)."""
    m = np.asarray(log_mask, dtype=bool)
    return 0 < m.sum() <= LOG_GATHER_MAX_SHARE * m.size


@dataclass
class Preprocessor:
    #: The source columns, in file order.
    columns: list[str]
    #: Sorted category list of each categorical column.
    categories: dict[str, list[str]]
    #: Per input-vector element (after one-hot expansion); float32 values.
    scale_min: np.ndarray | None = None
    scale_range: np.ndarray | None = None
    #: Numeric source columns that get x -> sign(x) * ln(1 + |x|) before the min-max scaling
    #: (inside autoencoder.onnx, like the scaling; iforest.onnx applies it too). See
    #: architecture.LOG_STEP for the KDD data sets.
    log_columns: list[str] = field(default_factory=list)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def fit_vocabulary(cls, features: pd.DataFrame, categorical=()) -> "Preprocessor":
        """The columns of `features`, and the sorted categories of those in `categorical`."""
        cats = {}
        for c in features.columns:
            if c in categorical:
                cats[c] = sorted(str(v) for v in pd.unique(features[c]))
        return cls(columns=list(features.columns), categories=cats)

    def log_elements(self) -> list[int]:
        """Input-vector indices of the elements in `log_columns`."""
        logs = set(self.log_columns)
        return [j for j, f in enumerate(self.layout()) if f["kind"] == "numeric" and f["column"] in logs]

    def log_mask(self) -> np.ndarray:
        m = np.zeros(self.n_features, dtype=bool)
        m[self.log_elements()] = True
        return m

    def log_transform(self, raw: np.ndarray) -> np.ndarray:
        """sign(x) * log1p(|x|) on the log elements (float32 result; reference for the graph)."""
        x = raw.astype(np.float32).copy()
        j = self.log_elements()
        if j:
            v = x[:, j].astype(np.float64)
            x[:, j] = (np.sign(v) * np.log1p(np.abs(v))).astype(np.float32)
        return x

    def fit_scaling(self, raw: np.ndarray) -> None:
        """Min/range per element from `raw` (the training normal rows), after the log step
        (see `log_columns`). One-hot elements get
        min 0 / range 1; a numeric element constant in `raw` gets range 1, so that any
        deviation from the constant still shows up (clipped to [0, 1])."""
        if raw.shape[0] == 0:
            raise DataError("no normal rows to fit the scaling on")
        is_num = self.numeric_mask()
        raw = self.log_transform(raw)
        lo = raw.min(axis=0).astype(np.float64)
        hi = raw.max(axis=0).astype(np.float64)
        rng = hi - lo
        lo = np.where(is_num, lo, 0.0)
        rng = np.where(is_num & (rng > 0), rng, 1.0)
        self.scale_min = lo.astype(np.float32)
        self.scale_range = rng.astype(np.float32)

    # ---- layout -------------------------------------------------------------------------
    def layout(self) -> list[dict]:
        out = []
        for c in self.columns:
            if c in self.categories:
                for v in self.categories[c]:
                    out.append({"name": f"{c}={v}", "kind": "onehot", "column": c, "category": v})
            else:
                out.append({"name": c, "kind": "numeric", "column": c})
        return out

    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.layout()]

    def numeric_mask(self) -> np.ndarray:
        return np.array([f["kind"] == "numeric" for f in self.layout()])

    @property
    def n_features(self) -> int:
        return len(self.layout())

    # ---- transforms ---------------------------------------------------------------------
    def raw_matrix(self, features: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        """The raw float32 input matrix, and the number of rows with an unseen category per
        categorical column."""
        if list(features.columns) != self.columns:
            raise DataError(f"columns differ from the model's: expected {self.columns}")
        blocks = []
        unseen = {}
        for c in self.columns:
            if c in self.categories:
                cats = self.categories[c]
                index = {v: i for i, v in enumerate(cats)}
                codes = np.array([index.get(str(v), -1) for v in features[c]], dtype=np.int64)
                block = np.zeros((len(features), len(cats)), dtype=np.float32)
                ok = codes >= 0
                block[np.flatnonzero(ok), codes[ok]] = 1.0
                unseen[c] = int((~ok).sum())
                blocks.append(block)
            else:
                vals = features[c].to_numpy(dtype=np.float64)
                if not np.all(np.isfinite(vals)):
                    raise DataError(f"column {c!r} holds NaN or infinite values")
                blocks.append(vals.astype(np.float32).reshape(-1, 1))
        return np.ascontiguousarray(np.hstack(blocks), dtype=np.float32), unseen

    def scale(self, raw: np.ndarray) -> np.ndarray:
        """Reference (numpy, float32) version of the log step + scaling inside autoencoder.onnx."""
        assert self.scale_min is not None and self.scale_range is not None
        x = (self.log_transform(raw) - self.scale_min) / self.scale_range
        return np.clip(x, np.float32(0.0), np.float32(1.0)).astype(np.float32)

    # ---- manifest -----------------------------------------------------------------------
    def to_manifest(self) -> dict:
        assert self.scale_min is not None and self.scale_range is not None
        return {
            "input_vector": (
                "float32[N, n_features] in the order of `features`. For each source column in "
                "`source_columns` order: numeric -> the raw value cast to float32 (no scaling, "
                "no log); categorical -> one element per entry of `categories[column]` (same "
                "order), 1.0 where the row's value equals that category, else 0.0."
            ),
            "unseen_category": (
                "a value not in `categories[column]` gives an all-zero one-hot block "
                "(no error); the models then see 'none of the known categories'."
            ),
            "source_columns": self.columns,
            "categorical_columns": [c for c in self.columns if c in self.categories],
            "categories": self.categories,
            "invalid_values": "NaN or infinite numeric values must be rejected by the scorer (training rejects them).",
            "log_columns": list(self.log_columns),
            "log_elements": self.log_elements(),
            "log_transform": ("x -> sign(x) * ln(1 + |x|) on `log_elements`, before the scaling, inside "
                              "autoencoder.onnx; the scorer does NOT apply it" if self.log_columns else None),
            "scaling": {
                "applied_inside": ["autoencoder.onnx"],
                "not_needed_by": ["iforest.onnx", "rf.onnx"],
                "formula": "x_scaled[j] = clip((x[j] - min[j]) / range[j], 0, 1), float32",
                "fitted_on": "normal rows of the fit split of the training file (after the log step)",
                "note": (
                    "one-hot elements: min 0, range 1; numeric elements constant in the "
                    "fitting data: range 1. The scorer does NOT apply this: it is part of "
                    "the autoencoder graph. Listed for reference/debugging."
                ),
                "min": [float(v) for v in self.scale_min],
                "range": [float(v) for v in self.scale_range],
            },
        }

    @classmethod
    def from_manifest(cls, pre: dict) -> "Preprocessor":
        p = cls(columns=list(pre["source_columns"]), categories={k: list(v) for k, v in pre["categories"].items()},
                log_columns=list(pre.get("log_columns", [])))
        p.scale_min = np.array(pre["scaling"]["min"], dtype=np.float32)
        p.scale_range = np.array(pre["scaling"]["range"], dtype=np.float32)
        return p
