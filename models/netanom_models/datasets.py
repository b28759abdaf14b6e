"""Dataset locations, loading and validation (NSL-KDD, KDD Cup 99).

Files are read where they are (gzip CSV under ``$NETANOM_SHARED/datasets``, default
``<repo>/../shared/datasets``); nothing is copied into the repository.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import DataError

#: models/ (the directory holding this package).
MODELS_DIR = Path(__file__).resolve().parent.parent
#: The repository root.
REPO_ROOT = MODELS_DIR.parent

CATEGORICAL = ("protocol_type", "service", "flag")
NORMAL_LABEL = "normal"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str
    train_file: str
    #: (display name, file name) of each labelled test set.
    test_files: tuple[tuple[str, str], ...]
    #: Columns after the 41 features: ("label",) or ("label", "difficulty").
    trailing: tuple[str, ...]
    #: Drop exact duplicate rows (features + label) from the training file.
    dedup_train: bool
    #: Folders searched, in order, for field_names.csv (kdd99/ has none; its PROVENANCE.md
    #: says the names are those of ../nsl-kdd/field_names.csv).
    field_name_folders: tuple[str, ...]
    has_labels: bool = True


SPECS: dict[str, DatasetSpec] = {
    "nsl-kdd": DatasetSpec(
        name="nsl-kdd",
        folder="nsl-kdd",
        train_file="KDDTrain+.txt.gz",
        test_files=(("KDDTest+", "KDDTest+.txt.gz"), ("KDDTest-21", "KDDTest-21.txt.gz")),
        trailing=("label", "difficulty"),
        dedup_train=False,
        field_name_folders=("nsl-kdd",),
    ),
    "kdd99": DatasetSpec(
        name="kdd99",
        folder="kdd99",
        train_file="kddcup.data_10_percent.gz",
        test_files=(("corrected", "corrected.gz"),),
        trailing=("label",),
        dedup_train=True,
        field_name_folders=("kdd99", "nsl-kdd"),
    ),
}


def spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(SPECS)}") from None


def datasets_root() -> Path:
    """``$NETANOM_SHARED/datasets``, else ``<repo>/../shared/datasets``."""
    shared = os.environ.get("NETANOM_SHARED")
    base = Path(shared) if shared else REPO_ROOT.parent / "shared"
    return base / "datasets"


def dataset_dir(s: DatasetSpec) -> Path:
    d = datasets_root() / s.folder
    if not d.is_dir():
        raise DataError(
            f"dataset folder not found: {d} (set NETANOM_SHARED to the directory that holds datasets/)"
        )
    return d


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def field_names(s: DatasetSpec) -> tuple[list[str], Path]:
    """The 41 feature names, in file order, and the field_names.csv they came from."""
    root = datasets_root()
    for folder in s.field_name_folders:
        p = root / folder / "field_names.csv"
        if p.is_file():
            names = []
            for line in p.read_text().splitlines():
                line = line.strip()
                if line:
                    names.append(line.split(",")[0].strip())
            if len(names) != 41 or not set(CATEGORICAL) <= set(names):
                raise DataError(f"{p}: expected 41 field names including {CATEGORICAL}, found {len(names)}")
            return names, p
    raise DataError(
        "field_names.csv not found in "
        + ", ".join(str(root / f) for f in s.field_name_folders)
    )


def attack_categories(s: DatasetSpec) -> dict[str, str]:
    """label -> category (normal, dos, probe, r2l, u2r). Missing file -> empty map."""
    p = datasets_root() / s.folder / "attack_categories.csv"
    if not p.is_file():
        return {}
    df = pd.read_csv(p, dtype=str)
    if list(df.columns[:2]) != ["label", "category"]:
        raise DataError(f"{p}: expected the header 'label,category'")
    return dict(zip(df["label"].str.strip(), df["category"].str.strip()))


@dataclass
class Table:
    """One loaded data file."""

    path: Path
    #: The 41 feature columns: categorical ones as str, the others float64.
    features: pd.DataFrame
    #: Labels without the trailing dot ("normal", "smurf", ...); None when unlabelled.
    labels: np.ndarray | None
    sha256_gz: str
    sha256_raw: str
    rows_read: int

    @property
    def is_attack(self) -> np.ndarray:
        assert self.labels is not None
        return self.labels != NORMAL_LABEL

    def categories(self, mapping: dict[str, str]) -> np.ndarray:
        assert self.labels is not None
        return np.array([mapping.get(lab, "unknown") for lab in self.labels], dtype=object)

    def subset(self, idx: np.ndarray) -> "Table":
        return Table(
            path=self.path,
            features=self.features.iloc[idx].reset_index(drop=True),
            labels=None if self.labels is None else self.labels[idx],
            sha256_gz=self.sha256_gz,
            sha256_raw=self.sha256_raw,
            rows_read=self.rows_read,
        )


def _read_text(path: Path) -> tuple[str, str]:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not an ASCII CSV file ({e})") from None
    return text, hashlib.sha256(raw).hexdigest()


def load_file(path: Path, s: DatasetSpec, require_labels: bool = True) -> Table:
    """Reads and validates one CSV (gzip or plain). Raises DataError on any problem."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    names, _ = field_names(s)
    columns = names + list(s.trailing)
    text, sha_raw = _read_text(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    first = text.lstrip().split("\n", 1)[0]
    n_first = len(first.split(","))
    if n_first != len(columns):
        raise DataError(
            f"{path}: expected {len(columns)} comma-separated columns "
            f"(41 features, {', '.join(s.trailing)}), found {n_first} in the first row"
        )
    from io import StringIO

    try:
        df = pd.read_csv(
            StringIO(text), header=None, names=columns, dtype=str, keep_default_na=False,
            skip_blank_lines=True,
        )
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"{path}: malformed CSV ({str(e).strip()})") from None
    if len(df) == 0:
        raise DataError(f"{path}: file has no data rows")
    # Rows with too few fields come back padded with NaN.
    short = df.isna().any(axis=1).to_numpy()
    if short.any():
        raise DataError(f"{path}: row {int(np.argmax(short)) + 1} has fewer than {len(columns)} columns")

    feats = {}
    for c in names:
        col = df[c].str.strip()
        if c in CATEGORICAL:
            bad = (col == "").to_numpy()
            if bad.any():
                raise DataError(f"{path}: row {int(np.argmax(bad)) + 1}: empty value in column {c!r}")
            feats[c] = col.to_numpy(dtype=object)
        else:
            vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            bad = ~np.isfinite(vals)
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(
                    f"{path}: row {i + 1}, column {c!r}: value {df[c].iloc[i]!r} is not a finite number "
                    f"({int(bad.sum())} such value(s) in this column; NaN/inf are rejected)"
                )
            feats[c] = vals
    features = pd.DataFrame(feats, columns=names)

    labels = None
    if "label" in df.columns:
        lab = df["label"].str.strip().str.rstrip(".").to_numpy(dtype=object)
        empty = lab == ""
        if empty.any():
            raise DataError(f"{path}: row {int(np.argmax(empty)) + 1}: empty label")
        labels = lab.astype(str)
    elif require_labels:
        raise DataError(f"{path}: no label column")
    return Table(
        path=path,
        features=features,
        labels=labels,
        sha256_gz=sha256_file(path),
        sha256_raw=sha_raw,
        rows_read=len(df),
    )


def dedup(t: Table) -> Table:
    """Drops exact duplicate rows (features + label), keeping the first of each."""
    key = t.features.copy()
    if t.labels is not None:
        key["__label"] = t.labels
    return t.subset(np.flatnonzero(~key.duplicated(keep="first").to_numpy()))


def load_train(s: DatasetSpec, table: Table | None = None) -> Table:
    """The training table as used for fitting (deduplicated where the spec says so).
    `table`: the already loaded training file, to avoid reading it twice."""
    t = table if table is not None else load_file(dataset_dir(s) / s.train_file, s, require_labels=s.has_labels)
    return dedup(t) if s.dedup_train else t


def load_test(s: DatasetSpec, file_name: str) -> Table:
    return load_file(dataset_dir(s) / file_name, s)
