"""The data sets, each a configuration of the generic loader (tabular.TabularFormat).

- ``nsl-kdd``, ``kdd99``: headerless KDD files: the 41 features named by field_names.csv, then
  the label (and NSL-KDD's difficulty, not an input); three categorical columns; KDD Cup 99's
  labels end in a dot, which is stripped.
- ``cic-ids2017``: the improved CIC-IDS2017 sample: 17 CSVs with the header of
  data_header_reference.csv; the inputs are the live FLOW_FEATURES that match a CIC column
  (schema.py); exact duplicate rows dropped; TCP and UDP rows only.
- ``csv`` (:func:`csv_spec`): any labelled (or unlabelled) CSV brought on the command line.
- ``flows`` (:func:`flows.flows_spec`): netanom's own flow exports.

The built-in data sets are read where they are (gzip CSV under ``$NETANOM_SHARED/datasets``,
default ``<repo>/../shared/datasets``); nothing is copied into the repository.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

from . import DataError
from .tabular import (  # noqa: F401 (re-exported: the loader's names, where the pipeline used to find them)
    RowFilter, Table, TabularFormat, count_columns, load, sha256_file, split_by_label,
)

#: models/ (the directory holding this package).
MODELS_DIR = Path(__file__).resolve().parent.parent
#: The repository root.
REPO_ROOT = MODELS_DIR.parent

#: KDD's categorical columns.
CATEGORICAL = ("protocol_type", "service", "flag")
#: The data set of the bundle the agent embeds; its bundle lives in models/default/.
DEFAULT_BUNDLE_DATASET = "cic-ids2017"
NORMAL_LABEL = "normal"
#: `--dataset csv`: label values that count as normal unless --normal says otherwise (the same
#: as `netanom eval`'s).
CSV_NORMAL = ("normal", "normal.", "BENIGN", "0")


def default_bundle_dir(dataset: str) -> Path:
    return MODELS_DIR / "default" if dataset == DEFAULT_BUNDLE_DATASET else MODELS_DIR / "bundles" / dataset


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    #: Folder under datasets_root() ("" for data sets given by path: csv, flows).
    folder: str
    #: File name (or glob, for cic) of the training data inside `folder`.
    train_file: str
    #: (display name, file name) of each labelled test set (a path for csv).
    test_files: tuple[tuple[str, str], ...]
    #: KDD: columns after the 41 features: ("label",) or ("label", "difficulty").
    trailing: tuple[str, ...]
    #: Drop exact duplicate rows (every column as read) from the training data.
    dedup_train: bool
    #: KDD: folders searched, in order, for field_names.csv (kdd99/ has none; its PROVENANCE.md
    #: says the names are those of ../nsl-kdd/field_names.csv).
    field_name_folders: tuple[str, ...]
    has_labels: bool = True
    #: "kdd", "cic", "csv" or "flows": which format and manifest entries the data set gets.
    kind: str = "kdd"
    #: The label values of normal rows.
    normal: tuple[str, ...] = (NORMAL_LABEL,)
    #: csv, flows: the training files, in order.
    inputs: tuple[Path, ...] = ()
    #: csv, flows: how they are read.
    fmt: TabularFormat | None = None
    #: csv: "counts" gives the autoencoder and the Isolation Forest the signed log1p step on the
    #: count columns (tabular.count_columns), "none" does not. KDD: architecture.LOG_STEP.
    log_step: str = "none"

    @property
    def normal_label(self) -> str:
        return self.normal[0]


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
        normal=("BENIGN",),
    ),
}
#: Data sets given on the command line (--input) rather than found in the shared folder.
GIVEN_KINDS = ("csv", "flows")

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
#: `--dataset csv` without --test splits the same way.
CIC_SPLIT = {
    "normal": {"fit": 0.50, "calibration": 0.20, "validation": 0.10, "test": 0.20},
    "attack": {"fit": 0.50, "calibration": 0.0, "validation": 0.15, "test": 0.35},
}


def spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        given = f"; or {' / '.join(GIVEN_KINDS)} with --input" if name not in GIVEN_KINDS else \
            f" (--dataset {name} needs --input FILE)"
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(SPECS)}{given}") from None


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


def check_available(s: DatasetSpec) -> None:
    """Fails fast (before the heavy imports) when the data set's files are not there."""
    if s.kind in GIVEN_KINDS:
        for p in list(s.inputs) + [Path(f) for _, f in s.test_files]:
            if not Path(p).is_file():
                raise DataError(f"data file not found: {p}")
    else:
        dataset_dir(s)


# ---- KDD ------------------------------------------------------------------------------------------
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
    import pandas as pd

    p = datasets_root() / s.folder / "attack_categories.csv"
    if not s.folder or not p.is_file():
        return {}
    df = pd.read_csv(p, dtype=str)
    if list(df.columns[:2]) != ["label", "category"]:
        raise DataError(f"{p}: expected the header 'label,category'")
    return dict(zip(df["label"].str.strip(), df["category"].str.strip()))


def kdd_format(s: DatasetSpec) -> TabularFormat:
    """41 headerless features, then `trailing` (the label, NSL-KDD's difficulty)."""
    names, _ = field_names(s)
    label = "label" if "label" in s.trailing else None
    return TabularFormat(
        header=False,
        columns=tuple(names) + tuple(s.trailing),
        columns_note=", ".join(("41 features",) + tuple(s.trailing)),
        ignore=tuple(c for c in s.trailing if c != "label"),
        categorical=CATEGORICAL,
        label=label,
        normal=s.normal,
        label_strip=".",
    )


def load_file(path: Path, s: DatasetSpec, require_labels: bool = True) -> Table:
    """Reads and validates one KDD file (gzip or plain). Raises DataError on any problem."""
    return load([path], kdd_format(s), require_labels=require_labels)


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


def cic_format(s: DatasetSpec, feature_names: list[str]) -> TabularFormat:
    """The CICFlowMeter header of data_header_reference.csv; `feature_names` as inputs; TCP and
    UDP rows only."""
    return TabularFormat(
        header=True,
        columns=tuple(cic_header(s)),
        header_source=CIC_HEADER_FILE,
        features=tuple(feature_names),
        label="Label",
        normal=s.normal,
        row_filter=RowFilter("Protocol", CIC_PROTOCOLS, "non_tcp_udp_dropped", "TCP/UDP"),
    )


def load_cic(s: DatasetSpec, feature_names: list[str] | None = None) -> Table:
    """Reads every CIC CSV of the sample (sorted by file name), checks each header against
    data_header_reference.csv, drops exact duplicate rows (all columns) and non-TCP/UDP rows,
    and returns the inputs `feature_names` (default: chosen from the Rust schema now)."""
    if feature_names is None:
        feature_names = cic_feature_names()[0]
    files = cic_files(s)
    return load(files, cic_format(s, feature_names), dedup=True, display=[f"{s.folder}/{p.name}" for p in files],
                where=str(dataset_dir(s)))


# ---- a data set brought on the command line ------------------------------------------------------
def csv_spec(inputs: list[Path], label_column: str | None, normal: tuple[str, ...] | None = None,
             categorical: tuple[str, ...] = (), ignore: tuple[str, ...] = (), tests: list[Path] = (),
             name: str | None = None, log_step: str = "none", dedup: bool = False) -> DatasetSpec:
    """`--dataset csv`: files with a header row; `label_column` holds the label (None: no
    labels, the Random Forest learns Isolation Forest pseudo-labels); every other column not in
    `ignore` is an input, numeric unless it is in `categorical`."""
    if not inputs:
        raise DataError("--dataset csv needs --input FILE")
    if log_step not in ("none", "counts"):
        raise DataError(f"--log-step must be none or counts, not {log_step!r}")
    both = set(categorical) & set(ignore)
    if both:
        raise DataError(f"column(s) {sorted(both)} are both --categorical and --ignore")
    if label_column is not None and label_column in set(categorical) | set(ignore):
        raise DataError(f"the label column {label_column!r} cannot also be --categorical or --ignore")
    normal = tuple(normal) if normal else CSV_NORMAL
    fmt = TabularFormat(header=True, ignore=tuple(ignore), categorical=tuple(categorical), label=label_column,
                        normal=normal)
    return DatasetSpec(
        name=name or _stem(inputs[0]),
        folder="",
        train_file=", ".join(Path(p).name for p in inputs),
        test_files=tuple((Path(t).name, str(t)) for t in tests),
        trailing=(),
        dedup_train=dedup,
        field_name_folders=(),
        has_labels=label_column is not None,
        kind="csv",
        normal=normal,
        inputs=tuple(Path(p) for p in inputs),
        fmt=fmt,
        log_step=log_step,
    )


def _stem(p: Path) -> str:
    name = Path(p).name
    for ext in (".gz", ".csv", ".txt"):
        name = name.removesuffix(ext)
    return name or "csv"


def load_given(s: DatasetSpec, paths: list[Path] | None = None, require_labels: bool | None = None) -> Table:
    """A csv or flows data set's training files (or `paths`, read with the same format)."""
    paths = list(paths if paths is not None else s.inputs)
    req = s.has_labels if require_labels is None else require_labels
    return load(paths, s.fmt, dedup=s.dedup_train and paths == list(s.inputs), require_labels=req)


# ---- training and test tables ------------------------------------------------------------------------
def load_train(s: DatasetSpec, table: Table | None = None) -> Table:
    """The training table as used for fitting (deduplicated where the spec says so).
    `table`: the already loaded training data, to avoid reading it twice."""
    if table is not None:
        return table
    if s.kind == "cic":
        return load_cic(s)
    if s.kind in GIVEN_KINDS:
        return load_given(s)
    fmt = kdd_format(s)
    return load([dataset_dir(s) / s.train_file], fmt, dedup=s.dedup_train, require_labels=s.has_labels)


def load_test(s: DatasetSpec, file_name: str) -> Table:
    if s.kind in GIVEN_KINDS:
        return load_given(s, [Path(file_name)], require_labels=True)
    return load_file(dataset_dir(s) / file_name, s)
