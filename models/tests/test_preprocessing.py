import gzip

import numpy as np
import pandas as pd
import pytest

from netanom_models import DataError, datasets
from netanom_models.preprocessing import Preprocessor
from netanom_models.tabular import BadFieldCount, EmptyFile, NonNumericValue

from conftest import FIELDS, synth_rows, write_csv_gz


def _frame(rows):
    df = pd.DataFrame([r[:41] for r in rows], columns=FIELDS)
    for c in FIELDS:
        if c not in datasets.CATEGORICAL:
            df[c] = df[c].astype(np.float64)
    return df


def test_onehot_layout_in_place_and_unseen_category_is_all_zero():
    train = _frame(synth_rows(200, 3))
    pre = Preprocessor.fit_vocabulary(train, datasets.CATEGORICAL)
    names = pre.feature_names()
    # one-hot blocks replace their column in place, categories sorted
    assert names[0] == "duration"
    protos = pre.categories["protocol_type"]
    assert protos == sorted(protos)
    assert names[1 : 1 + len(protos)] == [f"protocol_type={p}" for p in protos]
    assert "service=telnet" not in names

    test = _frame(synth_rows(5, 4))
    test.loc[0, "service"] = "telnet"  # never seen in training
    raw, unseen = pre.raw_matrix(test)
    assert raw.dtype == np.float32 and raw.shape == (5, len(names))
    svc = [i for i, n in enumerate(names) if n.startswith("service=")]
    assert raw[0, svc].sum() == 0.0  # unseen -> all-zero block
    assert all(raw[i, svc].sum() == 1.0 for i in range(1, 5))
    assert unseen == {"protocol_type": 0, "service": 1, "flag": 0}
    # numeric values are passed through raw (cast to float32)
    j = names.index("src_bytes")
    assert raw[1, j] == np.float32(test.loc[1, "src_bytes"])


def test_scaling_minmax_constant_columns_and_clipping():
    train = _frame(synth_rows(300, 5, attack_share=0.0))
    pre = Preprocessor.fit_vocabulary(train, datasets.CATEGORICAL)
    raw, _ = pre.raw_matrix(train)
    pre.fit_scaling(raw)
    names = pre.feature_names()
    num = pre.numeric_mask()
    assert np.all(pre.scale_min[~num] == 0) and np.all(pre.scale_range[~num] == 1)
    j = names.index("src_bytes")
    assert pre.scale_min[j] == raw[:, j].min()
    assert pre.scale_range[j] == np.float32(raw[:, j].max() - raw[:, j].min())
    k = names.index("land")  # constant 0 in training -> range 1
    assert pre.scale_range[k] == 1.0
    xs = pre.scale(raw)
    assert xs.min() >= 0.0 and xs.max() <= 1.0
    assert np.isclose(xs[:, j].max(), 1.0) and np.isclose(xs[:, j].min(), 0.0)
    out = raw[:2].copy()
    out[0, j] = raw[:, j].max() * 10
    out[1, j] = -5.0
    out[0, k] = 7.0
    s = pre.scale(out)
    assert s[0, j] == 1.0 and s[1, j] == 0.0 and s[0, k] == 1.0  # clipped
    # manifest round trip
    again = Preprocessor.from_manifest(pre.to_manifest())
    assert again.feature_names() == names
    assert np.array_equal(again.scale(raw), xs)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN", "abc"])
def test_nan_inf_and_non_numeric_values_are_rejected(tmp_path, bad):
    rows = synth_rows(20, 6)
    rows[7][4] = bad  # src_bytes
    p = tmp_path / "x.txt.gz"
    write_csv_gz(p, rows)
    # headerless: the 8th row is line 8
    with pytest.raises(NonNumericValue, match=r"x\.txt\.gz: line 8, column 'src_bytes'.*not a finite number"):
        datasets.load_file(p, datasets.spec("nsl-kdd"))


def test_raw_matrix_rejects_nan():
    train = _frame(synth_rows(50, 7))
    pre = Preprocessor.fit_vocabulary(train, datasets.CATEGORICAL)
    train.loc[3, "duration"] = np.nan
    with pytest.raises(DataError, match="NaN"):
        pre.raw_matrix(train)


def test_wrong_columns_empty_and_corrupt_files(tmp_path):
    s = datasets.spec("nsl-kdd")
    p = tmp_path / "short.gz"
    p.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(DataError, match="expected 43 comma-separated columns"):
        datasets.load_file(p, s)
    p = tmp_path / "empty.gz"
    p.write_bytes(gzip.compress(b""))
    with pytest.raises(EmptyFile, match="empty"):
        datasets.load_file(p, s)
    p = tmp_path / "broken.gz"
    p.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        datasets.load_file(p, s)
    rows = synth_rows(10, 8)
    p = tmp_path / "ragged.gz"
    lines = [",".join(map(str, r)) + ",21" for r in rows]
    lines[4] = lines[4] + ",extra"
    p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(BadFieldCount, match="line 5 has 44 fields, expected 43"):
        datasets.load_file(p, s)
    with pytest.raises(DataError, match="not found"):
        datasets.load_file(tmp_path / "missing.gz", s)


def test_kdd99_labels_lose_trailing_dot_and_dedup(tmp_path):
    rows = synth_rows(30, 9)
    rows = rows + rows[:10]  # 10 duplicates
    p = tmp_path / "k.gz"
    write_csv_gz(p, [r[:-1] + [r[-1] + "."] for r in rows], extra=())
    t = datasets.load_file(p, datasets.spec("kdd99"))
    assert set(t.labels) <= {"normal", "neptune", "smurf", "satan"}
    d = datasets.load([p], datasets.kdd_format(datasets.spec("kdd99")), dedup=True)
    assert len(d.features) == len({tuple(map(str, r)) for r in rows}) < 40 == len(t.features)
    assert d.stats["exact_duplicates_dropped"] == 40 - len(d.features)
