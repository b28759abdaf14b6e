"""--dataset csv: any labelled tabular data set, without editing code; the KDD data sets are
configurations of the same loader."""

import gzip
import json

import numpy as np
import pytest

from netanom_models import datasets
from netanom_models.__main__ import main
from netanom_models.contract import check_parity
from netanom_models.tabular import MissingColumns, NoAttackRows, NoNormalRows, TooFewRows

from conftest import FIELDS, train_given

ONNX = ("autoencoder.onnx", "iforest.onnx", "rf.onnx")


def _kdd_as_csv(src, dst):
    """A headerless NSL-KDD file as a CSV with a header row."""
    text = gzip.decompress(src.read_bytes()).decode()
    dst.write_text(",".join(FIELDS + ["label", "difficulty"]) + "\n" + text)
    return dst


def test_nsl_kdd_through_the_csv_options_gives_the_same_graphs(trained, shared, tmp_path):
    """--dataset csv --label-column label --normal normal --categorical protocol_type,service,flag
    --ignore difficulty --test ... --log-step counts reads KDDTrain+ (with a header) exactly as the
    nsl-kdd configuration does: same split, same models, same parity rows."""
    d = shared / "datasets" / "nsl-kdd"
    train = _kdd_as_csv(d / "KDDTrain+.txt.gz", tmp_path / "train.csv")
    tests = [_kdd_as_csv(d / f, tmp_path / f"{f}.csv") for f in ("KDDTest+.txt.gz", "KDDTest-21.txt.gz")]
    spec = datasets.csv_spec([train], "label", ("normal",), datasets.CATEGORICAL, ("difficulty",), tests,
                             name="kdd-as-csv", log_step="counts")
    res = train_given(spec, tmp_path / "b")
    for f in ONNX + ("parity.csv",):
        assert (res.out_dir / f).read_bytes() == (trained.out_dir / f).read_bytes(), f
    man = res.manifest
    assert man["dataset"] == "kdd-as-csv" and man["training_data"]["kind"] == "csv"
    assert man["training_data"]["format"]["categorical_columns"] == list(datasets.CATEGORICAL)
    assert man["training_data"]["test_files"] == ["KDDTest+.txt.gz.csv", "KDDTest-21.txt.gz.csv"]
    assert man["preprocessing"]["log_columns"] == trained.manifest["preprocessing"]["log_columns"]


def _office(path, n=400, seed=0, attack_share=0.3, labels=("ok", "scan", "flood")):
    """A small labelled CSV: an identifier, a categorical column, counts and a rate."""
    rng = np.random.default_rng(seed)
    lines = ["host,proto,bytes,duration,rate,verdict"]
    for i in range(n):
        if rng.random() >= attack_share:
            lab, proto = labels[0], rng.choice(["tcp", "udp"])
            b, dur, rate = rng.lognormal(7, 1), rng.lognormal(3, 1), rng.random()
        else:
            lab = labels[1 + int(rng.integers(0, len(labels) - 1))]
            proto, b, dur, rate = "tcp", rng.lognormal(3, 0.3), rng.lognormal(0, 0.3), 0.9 + rng.random() / 10
        lines.append(f"h{i % 7},{proto},{b:.1f},{dur:.3f},{rate:.4f},{lab}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_labelled_csv_with_a_held_out_split(tmp_path):
    p = _office(tmp_path / "office.csv")
    spec = datasets.csv_spec([p], "verdict", ("ok",), ("proto",), ("host",))
    res = train_given(spec, tmp_path / "b")
    man = res.manifest
    assert man["dataset"] == "office"
    assert man["features"] == ["proto=tcp", "proto=udp", "bytes", "duration", "rate"]
    td = man["training_data"]
    assert td["format"]["normal_values"] == ["ok"] and td["format"]["ignored_columns"] == ["host"]
    sp = td["split"]
    assert sp["calibration"]["attack"] == 0 and sp["test"]["attack"] > 0 and sp["test"]["normal"] > 0
    assert man["validation"]["ensemble"][man["ensemble"]["rule"]]["roc_auc"] > 0.9
    assert man["parity"]["attack_rows"] > 0 and "held-out test rows" in man["parity"]["source"]
    assert check_parity(res.out_dir)["rows"] == man["parity"]["rows"]
    assert "pseudo-labels" not in man["models"]["rf"]["hyperparameters"]["trained_on"]


def test_an_unlabelled_csv_trains_on_pseudo_labels(tmp_path):
    p = _office(tmp_path / "office.csv", attack_share=0.0)
    res = train_given(datasets.csv_spec([p], None, ignore=("host", "verdict"), categorical=("proto",)), tmp_path / "b")
    assert "pseudo-labels" in res.manifest["models"]["rf"]["hyperparameters"]["trained_on"]
    assert res.manifest["validation"] is None and res.manifest["parity"]["attack_rows"] == 0


def test_label_column_without_normal_rows(tmp_path):
    p = _office(tmp_path / "office.csv")
    with pytest.raises(NoNormalRows, match=r"office\.csv: no normal rows: no value of the label column 'verdict' is "
                                           r"one of \['normal', 'normal\.', 'BENIGN', '0'\]; it holds 'ok' \("):
        train_given(datasets.csv_spec([p], "verdict", categorical=("proto",), ignore=("host",)), tmp_path / "b")


def test_label_column_without_attack_rows(tmp_path):
    p = _office(tmp_path / "office.csv", attack_share=0.0)
    with pytest.raises(NoAttackRows, match="leave out --label-column"):
        train_given(datasets.csv_spec([p], "verdict", ("ok",), ("proto",), ("host",)), tmp_path / "b")


def test_too_few_rows_to_split(tmp_path):
    p = _office(tmp_path / "office.csv", n=24)
    with pytest.raises(TooFewRows, match=r"too few rows to split: 24 rows \(\d+ normal\) give \d+ normal rows to fit on"):
        train_given(datasets.csv_spec([p], "verdict", ("ok",), ("proto",), ("host",)), tmp_path / "b")


def test_a_text_column_not_declared_categorical_is_named(tmp_path):
    from netanom_models.tabular import NonNumericValue

    p = _office(tmp_path / "office.csv")
    with pytest.raises(NonNumericValue, match=r"office\.csv: line 2, column 'proto': value '(tcp|udp)' is not a finite "
                                              "number"):
        train_given(datasets.csv_spec([p], "verdict", ("ok",), ignore=("host",)), tmp_path / "b")


def test_cli_csv(tmp_path, capsys):
    p = _office(tmp_path / "office.csv")
    out = tmp_path / "bundle"
    args = ["train", "--dataset", "csv", "--input", str(p), "--label-column", "verdict", "--normal", "ok",
            "--categorical", "proto", "--ignore", "host", "--max-epochs", "2", "--out", str(out), "--name", "lan"]
    assert main(args) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["dataset"] == "lan" and man["n_features"] == 5
    capsys.readouterr()
    assert main(args[:-4] + ["--label-column", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) ['nope'] (label column 'nope')" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--dataset", "nsl-kdd", "--input", "x.csv"], "--input: only for --dataset csv or flows"),
    (["--dataset", "csv"], "--dataset csv needs --input FILE"),
    (["--dataset", "csv", "--input", "{p}", "--categorical", "a", "--ignore", "a"], "both --categorical and --ignore"),
    (["--dataset", "csv", "--input", "{p}", "--label-column", "a", "--ignore", "a"], "cannot also be"),
    (["--dataset", "flows", "--input", "{p}", "--normal", "ok"], "--normal: only for --dataset csv"),
])
def test_option_mistakes_are_named(tmp_path, capsys, args, message):
    p = _office(tmp_path / "office.csv", n=30)
    assert main(["train"] + [a.replace("{p}", str(p)) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_label_column_is_missing_columns(tmp_path):
    p = _office(tmp_path / "office.csv", n=30)
    with pytest.raises(MissingColumns):
        train_given(datasets.csv_spec([p], "class", categorical=("proto",)), tmp_path / "b")
