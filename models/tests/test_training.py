import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from netanom_models import BUNDLE_FORMAT_VERSION, datasets
from netanom_models.architecture import MODEL_NAMES

from conftest import train_small

REQUIRED_KEYS = {
    "bundle_format_version", "dataset", "features", "n_features", "preprocessing", "models",
    "thresholds", "ensemble", "libraries", "training_data", "validation", "seeds", "baselines",
}
FILES = ("autoencoder.onnx", "iforest.onnx", "rf.onnx", "manifest.json")


def test_bundle_has_three_onnx_files_and_a_complete_manifest(trained):
    out = trained.out_dir
    for f in FILES:
        assert (out / f).is_file(), f
    man = json.loads((out / "manifest.json").read_text())
    assert REQUIRED_KEYS <= set(man)
    assert man["bundle_format_version"] == BUNDLE_FORMAT_VERSION
    assert man["dataset"] == "nsl-kdd"
    assert len(man["features"]) == man["n_features"]
    assert man["thresholds"]["quantile"] == 0.999
    assert man["ensemble"]["rule"] in ("any", "majority", "weighted")
    assert man["ensemble"]["reason"]
    assert abs(sum(man["ensemble"]["weights"].values()) - 1.0) < 1e-12
    assert len(man["training_data"]["files"][0]["sha256"]) == 64
    assert set(man["validation"]["ensemble"]) == {"any", "majority", "weighted"}
    pre = man["preprocessing"]
    assert set(pre["categories"]) == {"protocol_type", "service", "flag"}
    assert len(pre["scaling"]["min"]) == man["n_features"]
    for m in MODEL_NAMES:
        info = man["models"][m]
        blob = (out / info["file"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == info["sha256"]
        assert man["thresholds"]["values"][m] == info["threshold"] > 0
        model = onnx.load_from_string(blob)
        onnx.checker.check_model(model)
        opsets = {o.domain: o.version for o in model.opset_import}
        assert opsets[""] >= 17
        sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        (inp,) = sess.get_inputs()
        (outp,) = sess.get_outputs()
        assert (inp.name, inp.shape, inp.type) == ("input", ["batch", man["n_features"]], "tensor(float)")
        assert (outp.name, outp.shape, outp.type) == ("score", ["batch"], "tensor(float)")
        for n in (1, 7):  # dynamic batch axis
            x = np.zeros((n, man["n_features"]), dtype=np.float32)
            assert sess.run(None, {"input": x})[0].shape == (n,)


def test_onnx_scores_equal_python_models(trained, shared):
    spec = datasets.spec("nsl-kdd")
    table = datasets.load_test(spec, "KDDTest+.txt.gz")
    raw, unseen = trained.preprocessor.raw_matrix(table.features)
    assert unseen["service"] > 0  # the synthetic test set has an unseen service
    # add extreme values (beyond the training range) to exercise clipping
    big = raw[:5].copy() * 1000 + 3
    x = np.vstack([raw, big]).astype(np.float32)
    # nsl-kdd's forest sees the count columns after the log step (architecture.LOG_STEP)
    assert trained.preprocessor.log_columns
    with torch.no_grad():
        ref = {
            "autoencoder": trained.autoencoder(torch.from_numpy(x)).numpy(),
            "iforest": -trained.iforest.score_samples(trained.preprocessor.log_transform(x)),
            "rf": trained.rf.predict_proba(x)[:, 1],
        }
    for m in MODEL_NAMES:
        sess = ort.InferenceSession(str(trained.out_dir / f"{m}.onnx"), providers=["CPUExecutionProvider"])
        got = sess.run(["score"], {"input": x})[0]
        np.testing.assert_allclose(got, ref[m], rtol=0, atol=1e-5, err_msg=m)


def test_training_is_deterministic(trained, shared, tmp_path):
    again = train_small(shared, tmp_path / "again")
    for f in FILES:
        a = (trained.out_dir / f).read_bytes()
        b = (again.out_dir / f).read_bytes()
        assert a == b, f"{f} differs between two identical training runs"


def test_eval_writes_report_and_plots(trained, tmp_path):
    from netanom_models.evaluate import evaluate

    res = evaluate("nsl-kdd", bundle_dir=trained.out_dir, reports_dir=tmp_path)
    assert set(res) == {"KDDTest+", "KDDTest-21"}
    text = (tmp_path / "nsl-kdd.md").read_text()
    assert "base rate" in text and "flag everything" in text and "novel labels" in text
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) == 6
    assert all((tmp_path / p).stat().st_size < 200_000 for p in pngs)
    r = res["KDDTest+"]
    assert r["baselines"]["flag_everything"]["recall"] == 1.0
    assert 0.0 < r["base_rate"] < 1.0


def test_unlabelled_data_uses_isolation_forest_pseudo_labels(shared, tmp_path, monkeypatch):
    from dataclasses import replace

    from conftest import SMALL, synth_rows, write_csv_gz
    from netanom_models.train import TrainConfig, train

    d = shared / "datasets" / "nsl-kdd"
    write_csv_gz(d / "unlabelled.gz", [r[:41] for r in synth_rows(400, 11, attack_share=0.05)], extra=())
    spec = replace(datasets.SPECS["nsl-kdd"], name="unlab", train_file="unlabelled.gz", trailing=(),
                   has_labels=False, test_files=())
    monkeypatch.setitem(datasets.SPECS, "unlab", spec)
    res = train(TrainConfig(dataset="unlab", out_dir=tmp_path / "u", max_epochs=2, quiet=True, **SMALL))
    man = res.manifest
    assert "pseudo-labels" in man["models"]["rf"]["hyperparameters"]["trained_on"]
    assert man["validation"] is None
    assert man["ensemble"]["chosen_by"].startswith("default")
    assert set(res.rf.classes_) == {0, 1}


def test_iforest_graph_is_one_tree_ensemble(trained):
    """iforest.onnx holds the whole forest in ONE TreeEnsembleRegressor (plus Reshape and Pow,
    after the log step where the data set has one), agrees with sklearn's score_samples, and
    gives bit-identical scores whatever the batch size or thread count (the leaf values make
    the float32 sum over trees exact)."""
    from netanom_models import export

    shipped = onnx.load_from_string((trained.out_dir / "iforest.onnx").read_bytes())
    ops = [n.op_type for n in shipped.graph.node]
    assert ops[-3:] == ["TreeEnsembleRegressor", "Reshape", "Pow"] and ops.count("TreeEnsembleRegressor") == 1
    assert "Log" in ops[:-3]  # nsl-kdd: the log step comes first
    # the forest part alone, exported without the log step
    blob = export.export_iforest(trained.iforest, trained.preprocessor.n_features)
    model = onnx.load_from_string(blob)
    assert [n.op_type for n in model.graph.node] == ["TreeEnsembleRegressor", "Reshape", "Pow"]
    ifo = trained.iforest
    table = export.iforest_leaf_table(ifo)
    assert table["quantum"] == 2.0 ** -23 and table["bound"] < 2.0
    for tr in table["trees"]:
        v = tr["value"][tr["leaf"]]
        assert np.all(v <= 0) and np.array_equal(v, np.round(v / table["quantum"]) * table["quantum"])
    rng = np.random.default_rng(3)
    n = trained.preprocessor.n_features
    x = np.vstack([rng.random((300, n)) * rng.choice([1, 10, 1000], n), np.zeros((2, n))]).astype(np.float32)
    one = export.session(blob)
    two = export.session(blob, threads=2)
    batched = one.run(None, {"input": x})[0]
    single = np.array([one.run(None, {"input": x[i : i + 1]})[0][0] for i in range(len(x))], dtype=np.float32)
    threaded = np.array([two.run(None, {"input": x[i : i + 1]})[0][0] for i in range(len(x))], dtype=np.float32)
    assert np.array_equal(batched, single) and np.array_equal(batched, threaded)
    assert np.array_equal(batched, two.run(None, {"input": x})[0])
    np.testing.assert_allclose(batched, -ifo.score_samples(x), rtol=0, atol=2e-6)
    ref = export.iforest_score_reference(ifo, x)
    assert np.abs(batched.view(np.int32) - ref.view(np.int32)).max() <= 1  # Pow vs numpy: <= 1 ulp


def test_rf_choice_rule():
    from netanom_models.evaluate import choose_rf

    def row(f1, roc, pr, us, size, se=(0.001, 0.0001, 0.0001), sd=(0.0005, 0.00001, 0.00001)):
        keys = ("f1", "roc_auc", "pr_auc")
        return {"mean": {"f1": f1, "roc_auc": roc, "pr_auc": pr}, "se": dict(zip(keys, se)),
                "sd": dict(zip(keys, sd)), "us": {1024: us}, "onnx_bytes": size, "n_estimators": size,
                "max_depth": None}

    rows = [
        row(0.990, 0.9999, 0.9999, 0.1, 10),   # F1 too low
        row(0.9985, 0.99995, 0.99995, 0.5, 30),  # within noise, fastest
        row(0.9990, 0.99999, 0.99999, 2.0, 90),  # the best
        row(0.9989, 0.99998, 0.99998, 0.52, 20),  # within noise, as fast (tie): smaller wins
    ]
    pick, why = choose_rf(rows)
    assert pick == 3 and "3 of 4" in why
    assert [r["within_noise"] for r in rows] == [False, True, True, True]
    # a larger seed-to-seed spread widens the band
    for r in rows:
        r["sd"]["f1"] = 0.01
    pick, why = choose_rf(rows)
    assert rows[0]["within_noise"] and pick == 0
    # ... but a setting that ranks materially worse (AUC more than 0.001 below the best) never qualifies
    rows[0]["mean"]["pr_auc"] = 0.998
    pick, why = choose_rf(rows)
    assert not rows[0]["within_noise"] and pick == 3


def test_rf_graph_is_bit_identical_to_skl2onnx(trained):
    """rf.onnx (one single-target tree ensemble) scores exactly like skl2onnx's classifier graph
    with the Gather of P(attack)."""
    from netanom_models import export

    blob = (trained.out_dir / "rf.onnx").read_bytes()
    assert [n.op_type for n in onnx.load_from_string(blob).graph.node] == ["TreeEnsembleRegressor", "Reshape"]
    rf = trained.rf
    n = trained.preprocessor.n_features
    rng = np.random.default_rng(5)
    x = np.vstack([rng.random((500, n)) * rng.choice([1, 10, 1000], n), np.zeros((2, n))]).astype(np.float32)
    new = export.session(blob).run(None, {"input": x})[0]
    old = export.session(export.export_rf_skl2onnx(rf, n)).run(None, {"input": x})[0]
    assert np.array_equal(new, old)
    np.testing.assert_allclose(new, rf.predict_proba(x)[:, 1], rtol=0, atol=1e-6)


def test_log_step_follows_the_architecture(trained, shared, tmp_path, monkeypatch):
    """nsl-kdd logs exactly its count columns (numeric, max > 1 over the fit split's normal
    rows) in autoencoder.onnx and iforest.onnx; a KDD data set without the step (kdd99's
    setting) gets graphs without it and an empty log_columns."""
    from netanom_models import architecture as arch
    from netanom_models.train import prepare

    spec = datasets.spec("nsl-kdd")
    p = prepare(spec, None, 0)
    fit_n = p.split["fit"][p.normal[p.split["fit"]]]
    fitted = p.table.features.iloc[fit_n]
    want = [c for c in fitted.columns if c not in datasets.CATEGORICAL and fitted[c].max() > 1]
    assert want and p.log_columns == want == trained.preprocessor.log_columns
    assert "src_bytes" in want and "serror_rate" not in want and "logged_in" not in want
    man = json.loads((trained.out_dir / "manifest.json").read_text())
    assert man["preprocessing"]["log_columns"] == want
    inside = man["scorer"]["models"]
    assert [s["op"] for s in inside["autoencoder"]["inside_graph"]][:2] == ["signed_log1p", "minmax_clip"]
    assert inside["iforest"]["inside_graph"][0]["op"] == "signed_log1p"

    monkeypatch.setitem(arch.LOG_STEP, "nsl-kdd", False)
    plain = train_small(shared, tmp_path / "plain")
    assert plain.preprocessor.log_columns == [] and plain.manifest["preprocessing"]["log_columns"] == []
    ops = [n.op_type for n in onnx.load(str(plain.out_dir / "iforest.onnx")).graph.node]
    assert ops == ["TreeEnsembleRegressor", "Reshape", "Pow"]
    ae_ops = {n.op_type for n in onnx.load(str(plain.out_dir / "autoencoder.onnx")).graph.node}
    assert "Log" not in ae_ops
    # the same rows, scored by both bundles: only the log-step graphs differ
    assert (plain.out_dir / "rf.onnx").read_bytes() == (trained.out_dir / "rf.onnx").read_bytes()


def test_count_columns_rule():
    import pandas as pd

    f = pd.DataFrame({"protocol_type": ["tcp", "udp"], "rate": [0.0, 1.0], "flag01": [0, 1],
                      "bytes": [0, 1500], "neg": [-5.0, 0.5]})
    assert datasets.count_columns(f, datasets.CATEGORICAL) == ["bytes"]
    assert datasets.count_columns(f.iloc[:0], datasets.CATEGORICAL) == []


def test_log_step_forms_agree_bit_for_bit(monkeypatch):
    """The gather/scatter form (few log elements) and the whole-vector Where form (many) of the
    log step give the same float32 values, in the IF graph prefix and in the autoencoder's
    scaling; the form follows preprocessing.LOG_GATHER_MAX_SHARE."""
    import netanom_models.preprocessing as prep
    from netanom_models import architecture as arch
    from netanom_models import export

    n = 40
    rng = np.random.default_rng(5)
    x = (rng.lognormal(2, 3, (257, n)) * rng.choice([-1.0, 0.0, 1.0], (257, n))).astype(np.float32)
    for share in (0.1, 0.9):
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, int(share * n), replace=False)] = True
        assert prep.log_by_gather(mask) == (share <= prep.LOG_GATHER_MAX_SHARE)
        outs, aes = [], []
        for cut in (1.0, 0.0):  # force the gather form, then the Where form
            monkeypatch.setattr(prep, "LOG_GATHER_MAX_SHARE", cut)
            nodes, _ = export._signed_log1p_nodes(mask)
            assert ("ScatterElements" in [nd.op_type for nd in nodes]) == (cut == 1.0)
            outs.append(export.signed_log1p_onnx(x, mask))
            torch.manual_seed(0)
            ae = arch.ScoringAutoEncoder(arch.AutoEncoder(n), np.zeros(n, np.float32), np.ones(n, np.float32), mask)
            with torch.no_grad():
                aes.append(ae.scale(torch.from_numpy(x)).numpy())
        assert np.array_equal(outs[0].view(np.int32), outs[1].view(np.int32))
        assert np.array_equal(aes[0], aes[1])
        ref = x.astype(np.float64)
        ref[:, mask] = np.sign(ref[:, mask]) * np.log1p(np.abs(ref[:, mask]))
        np.testing.assert_allclose(outs[0], ref, rtol=1e-6, atol=1e-6)
        assert np.array_equal(outs[0][:, ~mask], x[:, ~mask])  # the other elements pass untouched
    assert not prep.log_by_gather(np.zeros(n, dtype=bool))
