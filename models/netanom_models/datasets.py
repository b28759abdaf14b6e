"""Dataset locations, loading and validation (NSL-KDD, KDD Cup 99, CIC-IDS2017 improved sample).

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
#: The data set of the bundle the agent embeds; its bundle lives in models/default/.
DEFAULT_BUNDLE_DATASET = "cic-ids2017"


def default_bundle_dir(dataset: str) -> Path:
    return MODELS_DIR / "default" if dataset == DEFAULT_BUNDLE_DATASET else MODELS_DIR / "bundles" / dataset
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
    #: "kdd" (41 headerless columns + label) or "cic" (CICFlowMeter CSVs with a header row).
    kind: str = "kdd"
    #: The label of normal rows.
    normal_label: str = NORMAL_LABEL


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
    "cic-ids2017": DatasetSpec(
        name="cic-ids2017",
        folder="cic-ids2017-improved-sample",
        train_file="*.csv.gz",
        test_files=(),  # the test rows are a held-out, label-stratified part of the sample
        trailing=("Label",),
        dedup_train=True,
        field_name_folders=(),
        kind="cic",
        normal_label="BENIGN",
    ),
}

# ---- CIC-IDS2017 improved sample ------------------------------------------------------------
#: Identifier columns (PROVENANCE.md: drop before training). `Protocol` is only used to keep
#: TCP and UDP rows (see CIC_PROTOCOLS); it is not a model input.
CIC_ID_COLUMNS = ("id", "Flow ID", "Src IP", "Src Port", "Dst IP", "Dst Port", "Protocol", "Timestamp")
CIC_BOOKKEEPING = ("Label", "Attempted Category")
CIC_HEADER_FILE = "data_header_reference.csv"
#: Rows kept: TCP (6) and UDP (17). CicMatch::Exact holds for TCP and UDP flows only
#: (FEATURES.md: CICFlowMeter gives ICMP rows zero lengths and protocol 0 to everything else).
CIC_PROTOCOLS = (6, 17)
#: Class sizes of the full improved CIC-IDS2017 data set (PROVENANCE.md, "Population sizes"),
#: used to re-weight test metrics to realistic class ratios.
CIC_POPULATION = {
    "BENIGN": 1_582_566, "DDoS": 95_144, "DoS Hulk": 158_468, "Portscan": 159_066,
    "Infiltration - Portscan": 71_767, "DoS GoldenEye": 7_567, "FTP-Patator": 3_972,
    "DoS Slowloris": 3_859, "SSH-Patator": 2_961, "DoS Slowhttptest": 1_740, "Botnet": 736,
    "Web Attack - Brute Force": 73, "Infiltration": 36, "Web Attack - XSS": 18,
    "Web Attack - SQL Injection": 13, "Heartbleed": 11,
}
#: Label-stratified split of the CIC sample (there are no separate test files). Attack rows are
#: never used for calibration (thresholds come from benign rows), so their share goes to test.
CIC_SPLIT = {
    "normal": {"fit": 0.50, "calibration": 0.20, "validation": 0.10, "test": 0.20},
    "attack": {"fit": 0.50, "calibration": 0.0, "validation": 0.15, "test": 0.35},
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
    normal_label: str = NORMAL_LABEL
    #: Multi-file data sets (CIC): one {path, sha256, sha256_uncompressed, rows} per file.
    files: list | None = None
    #: Loader statistics (rows dropped and why), for the manifest.
    stats: dict | None = None

    @property
    def is_attack(self) -> np.ndarray:
        assert self.labels is not None
        return self.labels != self.normal_label

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
            normal_label=self.normal_label,
            files=self.files,
            stats=self.stats,
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


def count_columns(features: pd.DataFrame) -> list[str]:
    """The numeric columns whose maximum over `features` is above 1: bytes, durations and
    counts, as opposed to rates and 0/1 flags (file order). These get the log step where
    architecture.LOG_STEP says so."""
    out = []
    for c in features.columns:
        if c in CATEGORICAL:
            continue
        v = features[c].to_numpy(dtype=np.float64)
        if len(v) and np.nanmax(v) > 1.0:
            out.append(c)
    return out


def dedup(t: Table) -> Table:
    """Drops exact duplicate rows (features + label), keeping the first of each."""
    key = t.features.copy()
    if t.labels is not None:
        key["__label"] = t.labels
    return t.subset(np.flatnonzero(~key.duplicated(keep="first").to_numpy()))


def load_train(s: DatasetSpec, table: Table | None = None) -> Table:
    """The training table as used for fitting (deduplicated where the spec says so).
    `table`: the already loaded training file, to avoid reading it twice."""
    if s.kind == "cic":
        return table if table is not None else load_cic(s)
    t = table if table is not None else load_file(dataset_dir(s) / s.train_file, s, require_labels=s.has_labels)
    return dedup(t) if s.dedup_train else t


def load_test(s: DatasetSpec, file_name: str) -> Table:
    return load_file(dataset_dir(s) / file_name, s)


# ---- CIC-IDS2017 ------------------------------------------------------------------------------
def cic_files(s: DatasetSpec) -> list[Path]:
    files = sorted(dataset_dir(s).glob(s.train_file))
    if not files:
        raise DataError(f"no {s.train_file} files in {dataset_dir(s)}")
    return files


def cic_feature_names() -> tuple[list[str], list[str], dict]:
    """(model input names, their log columns, schema manifest entry), from the Rust schema and
    the CIC header."""
    from . import schema

    header = cic_header(spec("cic-ids2017"))
    feats = schema.load_schema()
    used, excluded = schema.select_cic_features(feats, header)
    entry = schema.manifest_entry(feats, used, excluded, header)
    logs = [f.name for f in used if f.unit in schema.LOG_UNITS]
    return [f.name for f in used], logs, entry


def cic_header(s: DatasetSpec) -> list[str]:
    p = dataset_dir(s) / CIC_HEADER_FILE
    if p.is_file():
        return [c.strip() for c in p.read_text().splitlines()[0].split(",")]
    with gzip.open(cic_files(s)[0], "rt") as f:
        return [c.strip() for c in f.readline().split(",")]


def parse_cic_frame(df: pd.DataFrame, feature_names: list[str], where: str = "data") -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Validates and cleans the concatenated CIC rows (all columns as str).

    Drops exact duplicate rows (all columns), then rows whose Protocol is not TCP/UDP; checks
    that every feature column is a finite number. Returns (features as float64 in
    `feature_names` order, labels, statistics)."""
    need = set(feature_names) | {"Protocol", "Label"}
    missing = [c for c in sorted(need) if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}")
    n0 = len(df)
    df = df[~df.duplicated(keep="first")]
    n_dup = n0 - len(df)
    proto = pd.to_numeric(df["Protocol"].str.strip(), errors="coerce")
    keep = proto.isin(CIC_PROTOCOLS).to_numpy()
    dropped_proto = {str(k): int(v) for k, v in sorted(proto[~keep].value_counts(dropna=False).items(),
                                                         key=lambda kv: str(kv[0]))}
    df = df[keep].reset_index(drop=True)
    if len(df) == 0:
        raise DataError(f"{where}: no TCP/UDP rows")
    feats = {}
    for c in feature_names:
        raw = df[c].str.strip()
        vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{where}: column {c!r}, row {i + 1} (after dedup/filter): value {raw.iloc[i]!r} "
                            f"is not a finite number ({int(bad.sum())} such value(s); NaN/inf are rejected)")
        feats[c] = vals
    labels = df["Label"].str.strip().to_numpy(dtype=object).astype(str)
    if (labels == "").any():
        raise DataError(f"{where}: empty label")
    stats = {
        "rows_read": n0,
        "exact_duplicates_dropped": int(n_dup),
        "non_tcp_udp_dropped": dropped_proto,
        "rows_kept": int(len(df)),
    }
    return pd.DataFrame(feats, columns=feature_names), labels, stats


def load_cic(s: DatasetSpec, feature_names: list[str] | None = None) -> Table:
    """Reads every CIC CSV of the sample (sorted by file name), checks each header against
    data_header_reference.csv, and returns the cleaned table (see parse_cic_frame)."""
    from io import StringIO

    if feature_names is None:
        feature_names = cic_feature_names()[0]
    header = cic_header(s)
    frames, files = [], []
    for path in cic_files(s):
        text, sha_raw = _read_text(path)
        if not text.strip():
            raise DataError(f"{path}: file is empty")
        try:
            df = pd.read_csv(StringIO(text), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, ValueError) as e:
            raise DataError(f"{path}: malformed CSV ({str(e).strip()})") from None
        cols = [c.strip() for c in df.columns]
        if cols != header:
            raise DataError(f"{path}: header differs from {CIC_HEADER_FILE} ({len(cols)} columns, expected {len(header)})")
        df.columns = cols
        if len(df) == 0:
            raise DataError(f"{path}: file has no data rows")
        frames.append(df)
        files.append({"path": f"{s.folder}/{path.name}", "sha256": sha256_file(path),
                      "sha256_uncompressed": sha_raw, "rows": int(len(df))})
    all_rows = pd.concat(frames, ignore_index=True)
    features, labels, stats = parse_cic_frame(all_rows, feature_names, where=str(dataset_dir(s)))
    digest = hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()
    return Table(path=dataset_dir(s), features=features, labels=labels, sha256_gz=digest, sha256_raw="",
                 rows_read=stats["rows_read"], normal_label=s.normal_label, files=files, stats=stats)


def split_by_label(labels: np.ndarray, normal_label: str, fractions: dict, seed: int) -> dict[str, np.ndarray]:
    """Deterministic split stratified by label: each label's rows are shuffled (numpy
    default_rng(seed)) and cut by the fractions of its group ("normal" or "attack"), with
    largest-remainder rounding. Returns sorted index arrays per part."""
    rng = np.random.default_rng(seed)
    parts = list(fractions["normal"])
    out = {k: [] for k in parts}
    for lab in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == lab)
        idx = idx[rng.permutation(len(idx))]
        fr = fractions["normal" if lab == normal_label else "attack"]
        want = np.array([fr[k] * len(idx) for k in parts])
        n = np.floor(want).astype(int)
        order = [j for j in np.argsort(-(want - n), kind="stable") if want[j] > 0]
        for j in order[: len(idx) - n.sum()]:
            n[j] += 1
        start = 0
        for k, c in zip(parts, n):
            out[k].append(idx[start : start + c])
            start += c
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in out.items()}
