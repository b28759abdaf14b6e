"""The generic tabular loader: every data set the pipeline trains on is a configuration of it.

A :class:`TabularFormat` says how to read a set of CSV files (gzip or plain, with or without a
header row): which column holds the label and which of its values are normal, which columns are
categorical (one-hot in the input vector) or not inputs at all, whether the model inputs are an
explicit list, and which rows are kept. NSL-KDD, KDD Cup 99 and CIC-IDS2017 are such
configurations (``datasets.SPECS``), and so are ``--dataset csv`` (a data set brought on the
command line) and ``--dataset flows`` (netanom's own flow exports).

Reading, in order: each file's text (gzip when the name ends in .gz; ASCII or UTF-8), its header
(checked against ``columns`` when the format fixes them), a field count per line, the columns the
format needs; then over all files together: exact duplicate rows dropped (every column as read,
first kept; only where asked), the row filter, the categorical, numeric and label columns.

Bad input raises a named :class:`~netanom_models.DataError` subclass whose message says where:
file, line and column.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import DataError


# ---- named errors ------------------------------------------------------------------------------
class EmptyFile(DataError):
    """A file without any text, or with a header and no data rows."""


class MissingColumns(DataError):
    """A column the format needs (a model input, the label, the row filter's) is absent."""


class BadFieldCount(DataError):
    """A line with more or fewer fields than the header (or the format's column list)."""


class NonNumericValue(DataError):
    """A numeric column holds text, an empty field, NaN or an infinity."""


class EmptyValue(DataError):
    """A categorical or label field is empty."""


class NoNormalRows(DataError):
    """The label column has no row with one of the normal values."""


class NoAttackRows(DataError):
    """A labelled training set whose every row is normal (the Random Forest needs both)."""


class TooFewRows(DataError):
    """Not enough rows to split into the parts training needs."""


# ---- the format ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowFilter:
    """Keep only the rows whose `column`, read as a number, is one of `keep`."""

    column: str
    keep: tuple[float, ...]
    #: Key of the dropped rows' counts (per value) in the loader statistics.
    stats_key: str
    #: What `keep` means, for the error when no row is left ("TCP/UDP").
    what: str


@dataclass(frozen=True)
class TabularFormat:
    #: The files have a header row. Without one, `columns` names the fields.
    header: bool = True
    #: Headerless files: the field names, in order. With a header: the exact header every file
    #: must have (None: any header holding the needed columns).
    columns: tuple[str, ...] | None = None
    #: How `columns` is described in errors ("41 features, label, difficulty").
    columns_note: str = ""
    #: Where the expected header comes from, for errors ("data_header_reference.csv").
    header_source: str = ""
    #: The model inputs, in order. None: every column but the label and `ignore`, in file order.
    features: tuple[str, ...] | None = None
    #: Columns that are read but are not inputs (identifiers, bookkeeping).
    ignore: tuple[str, ...] = ()
    #: Input columns one-hot encoded in the input vector; every other input must be numeric.
    categorical: tuple[str, ...] = ()
    #: The label column; None: the data set has no labels.
    label: str | None = None
    #: Label values of normal rows (compared after stripping whitespace and `label_strip`).
    normal: tuple[str, ...] = ("normal",)
    #: Characters stripped from the right of every label ("." for KDD Cup 99's "normal.").
    label_strip: str = ""
    row_filter: RowFilter | None = None

    def input_columns(self, header: list[str]) -> list[str]:
        if self.features is not None:
            return list(self.features)
        skip = set(self.ignore) | ({self.label} if self.label else set())
        return [c for c in header if c not in skip]

    def needed(self, header: list[str]) -> list[str]:
        """The columns a file must have: the inputs, the label and the row filter's column."""
        need = self.input_columns(header)
        if self.label:
            need.append(self.label)
        if self.row_filter:
            need.append(self.row_filter.column)
        return need


@dataclass
class Table:
    """Rows loaded with a TabularFormat."""

    path: Path
    #: The input columns: categorical ones as str (object), the others float64.
    features: pd.DataFrame
    #: Labels (stripped), or None when unlabelled.
    labels: np.ndarray | None
    #: sha256 of the file as stored (one file), or of the concatenated file sha256s (several).
    sha256_gz: str
    #: sha256 of the uncompressed text (one file; "" for several).
    sha256_raw: str
    rows_read: int
    normal: tuple[str, ...] = ("normal",)
    #: One {path, sha256, sha256_uncompressed, rows} per file, in reading order.
    files: list | None = None
    #: Loader statistics (rows read, dropped and why), for the manifest.
    stats: dict | None = None
    categorical: tuple[str, ...] = ()
    #: Index into `files` of each row's file.
    source: np.ndarray | None = None

    @property
    def is_attack(self) -> np.ndarray:
        assert self.labels is not None
        return ~np.isin(self.labels, list(self.normal))

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
            normal=self.normal,
            files=self.files,
            stats=self.stats,
            categorical=self.categorical,
            source=None if self.source is None else self.source[idx],
        )


# ---- reading one file ------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_text(path: Path) -> tuple[str, str]:
    """(text, sha256 of the uncompressed bytes). gzip when the name ends in .gz."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not an ASCII or UTF-8 CSV file ({e})") from None
    return text, hashlib.sha256(raw).hexdigest()


def _records(text: str) -> tuple[list[int], list[int], list[str]]:
    """(1-based line number, field count, first field) of every non-blank record, as pandas
    (skip_blank_lines) sees them. Without quotes in the text, lines are records; with quotes,
    the csv module finds where each record starts."""
    if '"' not in text:
        lines, counts, firsts = [], [], []
        for i, line in enumerate(text.split("\n")):
            if line.strip():
                lines.append(i + 1)
                counts.append(line.count(",") + 1)
                firsts.append(line.split(",", 1)[0])
        return lines, counts, firsts
    lines, counts, firsts = [], [], []
    reader = csv.reader(io.StringIO(text))
    start = 1
    for rec in reader:
        if rec and not (len(rec) == 1 and not rec[0].strip()):
            lines.append(start)
            counts.append(len(rec))
            firsts.append(rec[0])
        start = reader.line_num + 1
    return lines, counts, firsts


def _header(text: str, path: Path) -> list[str]:
    first = next(csv.reader(io.StringIO(text.lstrip())))
    cols = [c.strip() for c in first]
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise DataError(f"{path}: the header names column(s) {dup} more than once")
    return cols


@dataclass
class _File:
    path: Path
    frame: pd.DataFrame
    #: File line of each row.
    lines: np.ndarray
    sha256: str
    sha256_raw: str


def read_file(path: Path, fmt: TabularFormat) -> _File:
    """One CSV as strings, every field count checked, with the line number of each row."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    text, sha_raw = read_text(path)
    if not text.strip():
        raise EmptyFile(f"{path}: file is empty")
    lines, counts, _ = _records(text)
    if fmt.header:
        names = _header(text, path)
        if fmt.columns is not None and names != list(fmt.columns):
            raise DataError(f"{path}: header differs from {fmt.header_source or 'the expected header'} "
                            f"({len(names)} columns, expected {len(fmt.columns)})")
        lines, counts = lines[1:], counts[1:]
        if not lines:
            raise EmptyFile(f"{path}: file has no data rows (only a header)")
    else:
        assert fmt.columns is not None, "a headerless format names its columns"
        names = list(fmt.columns)
        if counts[0] != len(names):
            raise DataError(f"{path}: expected {len(names)} comma-separated columns ({fmt.columns_note}), "
                            f"found {counts[0]} in the first row")
    bad = np.flatnonzero(np.array(counts) != len(names))
    if len(bad):
        i = int(bad[0])
        raise BadFieldCount(f"{path}: line {lines[i]} has {counts[i]} fields, expected {len(names)}"
                            + (" (as many as the header)" if fmt.header else f" ({fmt.columns_note})")
                            + f"; {len(bad)} such line(s)")
    try:
        df = pd.read_csv(io.StringIO(text), header=0 if fmt.header else None, names=names, dtype=str,
                         keep_default_na=False, skip_blank_lines=True)
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"{path}: malformed CSV ({str(e).strip()})") from None
    if len(df) != len(lines):
        raise DataError(f"{path}: malformed CSV ({len(df)} rows parsed, {len(lines)} records found)")
    missing = [c for c in fmt.needed(names) if c not in df.columns]
    if missing:
        label_note = f" (label column {fmt.label!r})" if fmt.label in missing else ""
        raise MissingColumns(f"{path}: missing column(s) {missing}{label_note}; the file has {len(names)} "
                             f"columns: {names[:12]}{' ...' if len(names) > 12 else ''}")
    return _File(path, df, np.array(lines, dtype=np.int64), sha256_file(path), sha_raw)


# ---- the whole table ------------------------------------------------------------------------------
@dataclass
class _Rows:
    """The concatenated string rows and where each came from."""

    frame: pd.DataFrame
    file: np.ndarray
    line: np.ndarray
    paths: list[Path] = field(default_factory=list)

    def keep(self, mask: np.ndarray) -> "_Rows":
        return _Rows(self.frame[mask].reset_index(drop=True), self.file[mask], self.line[mask], self.paths)

    def where(self, i: int) -> str:
        return f"{self.paths[self.file[i]]}: line {self.line[i]}"


def _numeric(rows: _Rows, c: str) -> np.ndarray:
    raw = rows.frame[c].str.strip()
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        i = int(np.argmax(bad))
        raise NonNumericValue(f"{rows.where(i)}, column {c!r}: value {raw.iloc[i]!r} is not a finite number "
                              f"({int(bad.sum())} such value(s) in this column; NaN/inf are rejected)")
    return vals


def _strings(rows: _Rows, c: str, what: str) -> np.ndarray:
    col = rows.frame[c].str.strip()
    empty = (col == "").to_numpy()
    if empty.any():
        i = int(np.argmax(empty))
        raise EmptyValue(f"{rows.where(i)}: empty {what} in column {c!r}")
    return col.to_numpy(dtype=object)


def _filter(rows: _Rows, f: RowFilter, where: str) -> tuple[_Rows, dict]:
    v = pd.to_numeric(rows.frame[f.column].str.strip(), errors="coerce")
    keep = v.isin(f.keep).to_numpy()
    dropped = {str(k): int(n) for k, n in sorted(v[~keep].value_counts(dropna=False).items(),
                                                 key=lambda kv: str(kv[0]))}
    rows = rows.keep(keep)
    if len(rows.frame) == 0:
        raise EmptyFile(f"{where}: no {f.what} rows")
    return rows, dropped


def load(paths: list[Path], fmt: TabularFormat, *, dedup: bool = False, require_labels: bool = True,
         display: list[str] | None = None, where: str | None = None) -> Table:
    """Reads `paths` (in this order) with `fmt` into one Table.

    `dedup`: drop exact duplicate rows (every column as read, first kept). `display`: the name
    of each file in the Table's `files` (the manifest); default the file name. `where`: how the
    files are named together in errors about all of them (default: the first path)."""
    if not paths:
        raise DataError("no input files")
    files = [read_file(Path(p), fmt) for p in paths]
    header = list(files[0].frame.columns)
    for f in files[1:]:
        missing = [c for c in fmt.needed(header) if c not in f.frame.columns]
        if missing:
            raise MissingColumns(f"{f.path}: missing column(s) {missing}, which {paths[0]} has and the model "
                                 "inputs need (every input file must hold the same input columns)")
    frames = [f.frame if list(f.frame.columns) == header else f.frame.reindex(columns=header, fill_value="")
              for f in files]
    rows = _Rows(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0],
                 np.concatenate([np.full(len(f.frame), i, dtype=np.int64) for i, f in enumerate(files)]),
                 np.concatenate([f.lines for f in files]), [f.path for f in files])
    where = where or str(paths[0])
    n0 = len(rows.frame)
    stats = {"rows_read": n0}
    if dedup:
        rows = rows.keep(~rows.frame.duplicated(keep="first").to_numpy())
    stats["exact_duplicates_dropped"] = n0 - len(rows.frame)
    if fmt.row_filter:
        rows, stats[fmt.row_filter.stats_key] = _filter(rows, fmt.row_filter, where)
    stats["rows_kept"] = len(rows.frame)

    inputs = fmt.input_columns(header)
    cat = set(fmt.categorical)
    feats = {c: _strings(rows, c, "value") if c in cat else _numeric(rows, c) for c in inputs}
    features = pd.DataFrame(feats, columns=inputs)
    labels = None
    if fmt.label is not None:
        lab = rows.frame[fmt.label].str.strip()
        if fmt.label_strip:
            lab = lab.str.rstrip(fmt.label_strip)
        empty = (lab == "").to_numpy()
        if empty.any():
            raise EmptyValue(f"{rows.where(int(np.argmax(empty)))}: empty label")
        labels = lab.to_numpy(dtype=object).astype(str)
    elif require_labels:
        raise MissingColumns(f"{where}: no label column")
    names = display or [Path(p).name for p in paths]
    info = [{"path": n, "sha256": f.sha256, "sha256_uncompressed": f.sha256_raw, "rows": int(len(f.frame))}
            for n, f in zip(names, files)]
    one = len(files) == 1
    return Table(
        path=Path(paths[0]) if one else Path(where),
        features=features,
        labels=labels,
        sha256_gz=files[0].sha256 if one else hashlib.sha256("".join(f.sha256 for f in files).encode()).hexdigest(),
        sha256_raw=files[0].sha256_raw if one else "",
        rows_read=n0,
        normal=tuple(fmt.normal),
        files=info,
        stats=stats,
        categorical=tuple(c for c in inputs if c in cat),
        source=rows.file,
    )


def require_normal_rows(table: Table, label_column: str, where: str) -> None:
    """NoNormalRows unless some label is one of the normal values; names what was found."""
    if table.labels is None or (~table.is_attack).any():
        return
    uniq, counts = np.unique(table.labels, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    top = ", ".join(f"{str(uniq[i])!r} ({int(counts[i]):,})" for i in order[:8])
    raise NoNormalRows(f"{where}: no normal rows: no value of the label column {label_column!r} is one of "
                       f"{list(table.normal)}; it holds {top}{' ...' if len(uniq) > 8 else ''}. Name the normal "
                       "value(s) with --normal")


# ---- splitting and column choices ------------------------------------------------------------------
def split_by_label(labels: np.ndarray, normal, fractions: dict, seed: int) -> dict[str, np.ndarray]:
    """Deterministic split stratified by label: each label's rows are shuffled (numpy
    default_rng(seed)) and cut by the fractions of its group ("normal" or "attack"), with
    largest-remainder rounding. `normal`: the normal label, or a collection of them. Returns
    sorted index arrays per part."""
    normal = {normal} if isinstance(normal, str) else set(normal)
    rng = np.random.default_rng(seed)
    parts = list(fractions["normal"])
    out = {k: [] for k in parts}
    for lab in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == lab)
        idx = idx[rng.permutation(len(idx))]
        fr = fractions["normal" if lab in normal else "attack"]
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


def count_columns(features: pd.DataFrame, categorical=()) -> list[str]:
    """The numeric columns whose maximum over `features` is above 1: bytes, durations and
    counts, as opposed to rates and 0/1 flags (file order). These get the log step where the
    data set's spec says so (architecture.LOG_STEP for KDD)."""
    out = []
    for c in features.columns:
        if c in categorical:
            continue
        v = features[c].to_numpy(dtype=np.float64)
        if len(v) and np.nanmax(v) > 1.0:
            out.append(c)
    return out
