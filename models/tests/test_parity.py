"""parity.csv (every bundle's fixture for the Rust scorer) agrees with onnxruntime, recomputed
from nothing but manifest.json + the ONNX files (contract.ReferenceScorer)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from netanom_models import BUNDLE_FORMAT_VERSION
from netanom_models.architecture import MODEL_NAMES
from netanom_models.contract import PARITY_FILE, ReferenceScorer, check_parity, parity_columns

MODELS = Path(__file__).resolve().parent.parent
#: Checked-in bundles (no data set needed: parity.csv holds the raw inputs): models/bundles/* and
#: models/default.
SHIPPED = [d for d in sorted((MODELS / "bundles").glob("*")) + [MODELS / "default"] if (d / "manifest.json").is_file()]


def test_synthetic_bundle_parity(trained):
    out = trained.out_dir
    man = json.loads((out / "manifest.json").read_text())
    assert man["bundle_format_version"] == BUNDLE_FORMAT_VERSION
    p = man["parity"]
    assert p["file"] == PARITY_FILE and (out / PARITY_FILE).is_file()
    assert p["columns"] == parity_columns(man["preprocessing"]["source_columns"])
    assert p["normal_rows"] > 0 and p["attack_rows"] > 0
    assert p["rows_with_unseen_category"] > 0  # the synthetic test set has an unseen service
    res = check_parity(out)
    assert res["rows"] == p["rows"]


def test_parity_scores_equal_the_training_objects(trained):
    """The parity scores are those of the exported graphs, which equal the Python models."""
    out = trained.out_dir
    with open(out / PARITY_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    ref = ReferenceScorer(out)
    x = ref.input_vector(rows)
    # the manifest-only input vector equals the training preprocessor's
    import pandas as pd

    pre = trained.preprocessor
    frame = pd.DataFrame({c: [r[c] for r in rows] for c in pre.columns})
    for c in pre.columns:
        if c not in pre.categories:
            frame[c] = frame[c].astype(np.float64)
    raw, _ = pre.raw_matrix(frame)
    assert np.array_equal(raw, x)
    got = np.array([float(r["score_rf"]) for r in rows])
    np.testing.assert_allclose(got, trained.rf.predict_proba(x)[:, 1], rtol=0, atol=1e-6)


def test_parity_detects_a_changed_score(trained, tmp_path):
    import shutil

    d = tmp_path / "b"
    shutil.copytree(trained.out_dir, d)
    lines = (d / PARITY_FILE).read_text().splitlines()
    header = lines[0].split(",")
    j = header.index("score_iforest")
    cells = lines[1].split(",")
    cells[j] = repr(float(cells[j]) + 1e-3)
    lines[1] = ",".join(cells)
    (d / PARITY_FILE).write_text("\n".join(lines) + "\n")
    man = json.loads((d / "manifest.json").read_text())
    import hashlib

    man["parity"]["sha256"] = hashlib.sha256((d / PARITY_FILE).read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(AssertionError, match="iforest"):
        check_parity(d)


def test_contract_is_complete(trained):
    man = json.loads((trained.out_dir / "manifest.json").read_text())
    c = man["scorer"]
    ops = [s["op"] for s in c["steps"]]
    assert ops == ["read_raw_columns", "build_input_vector", "run_models", "normalise", "per_model_decision",
                   "ensemble"]
    elems = c["steps"][1]["elements"]
    assert [e["name"] for e in elems] == man["features"]
    assert [e["index"] for e in elems] == list(range(man["n_features"]))
    for m in MODEL_NAMES:
        io = c["models"][m]
        assert io["input"] == {"name": "input", "dtype": "float32", "shape": ["batch", man["n_features"]]}
        assert io["output"] == {"name": "score", "dtype": "float32", "shape": ["batch"]}
        assert c["thresholds"][m] == man["thresholds"]["values"][m]
    ae = c["models"]["autoencoder"]["inside_graph"]
    mm = next(s for s in ae if s["op"] == "minmax_clip")
    assert mm["min"] == man["preprocessing"]["scaling"]["min"]
    assert c["ensemble"]["rule"] == man["ensemble"]["rule"]


@pytest.mark.parametrize("bundle", SHIPPED, ids=[d.name for d in SHIPPED])
def test_shipped_bundle_parity(bundle):
    res = check_parity(bundle)
    # 256 rows, or every held-out row of a smaller data set (flows-benign-misc: 45)
    want = json.loads((bundle / "manifest.json").read_text())["training_data"]["split"].get("test", {}).get("rows", 256)
    assert res["rows"] == min(256, want)
