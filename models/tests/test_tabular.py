"""The generic loader: what it reads, and the named error (file, line, column) for each kind of
bad input."""

import gzip

import numpy as np
import pytest

from netanom_models import DataError
from netanom_models.tabular import (
    BadFieldCount, EmptyFile, EmptyValue, MissingColumns, NoNormalRows, NonNumericValue, RowFilter, TabularFormat,
    load, require_normal_rows,
)

FMT = TabularFormat(categorical=("proto",), ignore=("id",), label="verdict", normal=("ok",))


def _write(path, text: str):
    path.write_bytes(gzip.compress(text.encode(), mtime=0) if path.suffix == ".gz" else text.encode())
    return path


def test_reads_header_inputs_categories_labels_and_where_rows_came_from(tmp_path):
    a = _write(tmp_path / "a.csv.gz", "id,proto,bytes,verdict\n1,tcp,10,ok\n2, udp ,2.5e3,bad\n")
    b = _write(tmp_path / "b.csv", "verdict,bytes,proto,id,extra\nok,7,tcp,3,x\n")  # other order, extra column
    t = load([a, b], FMT)
    assert list(t.features.columns) == ["proto", "bytes"] and t.categorical == ("proto",)
    assert t.features["proto"].tolist() == ["tcp", "udp", "tcp"]
    assert t.features["bytes"].tolist() == [10.0, 2500.0, 7.0] and t.features["bytes"].dtype == np.float64
    assert t.labels.tolist() == ["ok", "bad", "ok"] and t.is_attack.tolist() == [False, True, False]
    assert t.source.tolist() == [0, 0, 1]
    assert [f["path"] for f in t.files] == ["a.csv.gz", "b.csv"] and [f["rows"] for f in t.files] == [2, 1]
    assert t.stats == {"rows_read": 3, "exact_duplicates_dropped": 0, "rows_kept": 3}


def test_duplicates_and_row_filter(tmp_path):
    p = _write(tmp_path / "a.csv", "id,proto,bytes,verdict\n1,tcp,1,ok\n1,tcp,1,ok\n2,tcp,1,ok\n3,icmp,1,bad\n")
    fmt = TabularFormat(ignore=("id", "proto"), label="verdict", normal=("ok",),
                        row_filter=RowFilter("id", (1, 3), "other_ids_dropped", "id 1 or 3"))
    t = load([p], fmt, dedup=True)
    assert t.stats == {"rows_read": 4, "exact_duplicates_dropped": 1, "other_ids_dropped": {"2": 1}, "rows_kept": 2}
    with pytest.raises(EmptyFile, match="no id 1 or 3 rows"):
        load([p], TabularFormat(ignore=("proto",), label="verdict", row_filter=RowFilter("id", (9,), "k", "id 1 or 3")))


@pytest.mark.parametrize("text, error, message", [
    ("", EmptyFile, r"x\.csv: file is empty"),
    ("\n  \n", EmptyFile, r"x\.csv: file is empty"),
    ("id,proto,bytes,verdict\n", EmptyFile, r"x\.csv: file has no data rows \(only a header\)"),
    ("id,proto,bytes,verdict\n1,tcp,3,ok\n2,tcp\n", BadFieldCount, r"x\.csv: line 3 has 2 fields, expected 4"),
    ("id,proto,bytes,verdict\n1,tcp,3,ok,9\n", BadFieldCount, r"x\.csv: line 2 has 5 fields, expected 4"),
    ("id,proto,bytes,state\n1,tcp,3,ok\n", MissingColumns, r"missing column\(s\) \['verdict'\] \(label column 'verdict'\)"),
    ("id,proto,bytes,verdict\n1,tcp,3,ok\n\n2,tcp,lots,ok\n", NonNumericValue,
     r"x\.csv: line 4, column 'bytes': value 'lots' is not a finite number \(1 such value"),
    ("id,proto,bytes,verdict\n1,tcp,nan,ok\n2,tcp,inf,ok\n", NonNumericValue, r"line 2, column 'bytes'.*\(2 such"),
    ("id,proto,bytes,verdict\n1,tcp,,ok\n", NonNumericValue, r"line 2, column 'bytes': value ''"),
    ('id,proto,bytes,verdict\n"1\nstill 1",tcp,1,ok\n2,tcp,x,ok\n', NonNumericValue, r"line 4, column 'bytes'"),
    ("id,proto,bytes,verdict\n1,,3,ok\n", EmptyValue, r"x\.csv: line 2: empty value in column 'proto'"),
    ("id,proto,bytes,verdict\n1,tcp,3, \n", EmptyValue, r"x\.csv: line 2: empty label"),
    ("id,bytes,bytes,verdict\n1,2,3,ok\n", DataError, r"names column\(s\) \['bytes'\] more than once"),
])
def test_bad_input_gets_a_named_error_that_says_where(tmp_path, text, error, message):
    p = _write(tmp_path / "x.csv", text)
    with pytest.raises(error, match=message):
        load([p], FMT)


def test_every_input_file_needs_the_first_files_inputs(tmp_path):
    a = _write(tmp_path / "a.csv", "proto,bytes,rate,verdict\ntcp,1,2,ok\n")
    b = _write(tmp_path / "b.csv", "proto,bytes,verdict\ntcp,1,ok\n")
    with pytest.raises(MissingColumns, match=r"b\.csv: missing column\(s\) \['rate'\], which .*a\.csv has"):
        load([a, b], TabularFormat(categorical=("proto",), label="verdict"))


def test_unreadable_and_missing_files(tmp_path):
    p = tmp_path / "x.csv.gz"
    p.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        load([p], FMT)
    with pytest.raises(DataError, match="data file not found"):
        load([tmp_path / "none.csv"], FMT)
    p = tmp_path / "latin1.csv"
    p.write_bytes("id,proto,bytes,verdict\n1,t\xe9cp,1,ok\n".encode("latin-1"))
    with pytest.raises(DataError, match="not an ASCII or UTF-8 CSV"):
        load([p], FMT)
    p = _write(tmp_path / "utf8.csv", "id,proto,bytes,verdict\n1,tcp-µ,1,ok\n")
    assert load([p], FMT).features["proto"].tolist() == ["tcp-µ"]


def test_no_normal_rows_names_the_label_column_and_what_it_holds(tmp_path):
    p = _write(tmp_path / "x.csv", "id,proto,bytes,verdict\n1,tcp,1,bad\n2,tcp,1,bad\n3,tcp,1,worse\n")
    t = load([p], FMT)
    with pytest.raises(NoNormalRows, match=r"no value of the label column 'verdict' is one of \['ok'\]; it holds "
                                           r"'bad' \(2\), 'worse' \(1\)\. Name the normal value\(s\) with --normal"):
        require_normal_rows(t, "verdict", str(p))
