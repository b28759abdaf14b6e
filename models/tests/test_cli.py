import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netanom_models.__main__ import main

MODELS = Path(__file__).resolve().parent.parent


def test_missing_dataset_is_a_clean_error(tmp_path):
    env = dict(os.environ, NETANOM_SHARED=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "netanom_models", "train", "--dataset", "nsl-kdd"],
                       cwd=MODELS, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "error: dataset folder not found" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"1,2,3\n", "expected 43 comma-separated columns"),
])
def test_bad_training_file_exits_nonzero_without_traceback(tmp_path, monkeypatch, capsys, content, message):
    d = tmp_path / "datasets" / "nsl-kdd"
    d.mkdir(parents=True)
    src = Path(os.environ["NETANOM_SHARED"]) / "datasets" / "nsl-kdd" / "field_names.csv"
    (d / "field_names.csv").write_text(src.read_text())
    (d / "KDDTrain+.txt.gz").write_bytes(gzip.compress(content))
    monkeypatch.setenv("NETANOM_SHARED", str(tmp_path))
    assert main(["train", "--dataset", "nsl-kdd", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_eval_without_bundle_is_a_clean_error(tmp_path, capsys):
    assert main(["eval", "--dataset", "nsl-kdd", "--bundle", str(tmp_path / "none")]) == 2
    assert "run `train` first" in capsys.readouterr().err


@pytest.mark.parametrize("args", [
    ["train", "--dataset", "nsl-kdd", "--quantile", "1.5"],
    ["train", "--dataset", "nsl-kdd", "--sample", "0"],
    ["train", "--dataset", "nope"],
    ["train", "--dataset", "nsl-kdd", "--ensemble", "vote"],
])
def test_bad_arguments_exit_2(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
