"""The Isolation Forest size sweep (`if-sweep`): its choice rule, and a small run on the
synthetic CIC-shaped data against the session's CIC bundle."""

import json

import numpy as np
import pytest

from netanom_models import architecture as arch
from netanom_models import datasets


def _row(trees, samples, f1, roc, pr, ens, us, size, se=0.01, sd=0.005, seeds=4):
    keys = ("f1", "roc_auc", "pr_auc")
    return {"n_estimators": trees, "max_samples": samples, "onnx_bytes": size, "us": {1024: us},
            "seeds": dict.fromkeys(range(seeds)),
            "mean": {"if": dict(zip(keys, (f1, roc, pr))), "ensemble": {"f1": ens}},
            "se": {"if": dict.fromkeys(keys, se), "ensemble": {"f1": 0.0002}},
            "sd": {"if": dict.fromkeys(keys, sd), "ensemble": {"f1": 0.0001}}}


def _rows():
    return [
        _row(25, 64, 0.20, 0.912, 0.98, 0.9995, 0.5, 10),     # 0: below the reference on IF F1 and AUCs
        _row(50, 128, 0.335, 0.915, 0.985, 0.9995, 1.2, 30),  # 1: within noise, but below the reference's means
        _row(100, 256, 0.34, 0.92, 0.986, 0.9996, 2.8, 90),   # 2: the reference
        _row(75, 128, 0.35, 0.92, 0.987, 0.9996, 1.4, 50),    # 3: >= on every mean (equal ROC-AUC, ens. F1)
        _row(150, 64, 0.36, 0.93, 0.990, 0.9990, 0.9, 40),    # 4: ensemble F1 below the reference's
        _row(100, 512, 0.36, 0.95, 0.990, 0.9996, 3.2, 120),  # 5: >= on every mean, slower
        _row(75, 64, 0.34, 0.92, 0.986, 0.9997, 1.6, 20),     # 6: >= on every mean, tied with 3, smaller
    ]


def test_if_choice_rule_reference_is_a_floor():
    from netanom_models.evaluate import choose_if, if_within_noise

    rows = _rows()
    pick, why = choose_if(rows, ref=2)
    assert [r["qualifies"] for r in rows] == [False, False, True, True, False, True, True]
    # 3 is the fastest qualifying setting; 6 is within 25 % of it and smaller, so it wins the tie
    assert pick == 6 and "4 of 7 settings qualify" in why
    assert "IF ROC-AUC >= 0.920000" in why and "ensemble F1 >= 0.999600" in why and "100 × 256" in why
    # row 1 is faster and within noise of the reference on every metric (the old rule let it
    # through), but below the reference's means: it must not qualify
    flags, _ = if_within_noise(rows, 2, mean_se=True)
    assert flags[1] and not rows[1]["qualifies"]
    # no allowance: a hair below the reference on one mean is out
    rows[6]["mean"]["if"]["pr_auc"] = 0.986 - 1e-6
    pick, _ = choose_if(rows, ref=2)
    assert not rows[6]["qualifies"] and pick == 3
    # every metric counts on its own: an AUC below the reference's rules a setting out; then
    # 100 × 512 (row 5) is left, within 25 % of the reference, which wins that tie
    rows[3]["mean"]["if"]["roc_auc"] = 0.9199
    pick, _ = choose_if(rows, ref=2)
    assert not rows[3]["qualifies"] and rows[5]["qualifies"] and pick == 2
    # the reference wins a tie it is part of: a change must buy clear speed
    rows = _rows()
    rows[2]["us"][1024] = 1.5
    pick, _ = choose_if(rows, ref=2)
    assert pick == 2
    # only the reference qualifies: it is the choice
    rows = _rows()
    for r in rows[3:]:
        r["mean"]["if"]["f1"] = 0.1
    pick, why = choose_if(rows, ref=2)
    assert pick == 2 and "1 of 7 settings qualify" in why
    # without ensemble figures (no bundle), only the IF's metrics count
    rows = _rows()
    for r in rows:
        del r["mean"]["ensemble"]
    pick, why = choose_if(rows, ref=2)
    assert rows[4]["qualifies"] and pick == 4 and "ensemble" not in why


def test_if_choice_rule_without_a_reference():
    from netanom_models.evaluate import choose_if, if_within_noise

    rows = _rows()
    pick, why = choose_if(rows, None)
    assert pick is None and "no reference setting in this grid" in why
    assert not any(r["qualifies"] for r in rows)
    # the noise band around the best (information only) still works without a reference
    flags, why = if_within_noise(rows, None)
    assert flags == [False, False, False, False, False, True, False] and "best: 100 × 512" in why


def test_if_noise_bands_are_information_only():
    """The old noise-band choices are still computed for the report, but do not decide."""
    from netanom_models.evaluate import _if_rule

    rows = _rows()
    out = _if_rule(rows, 2, n_seeds=4)
    assert out["pick"] == 6
    # the seed-mean SE band (the rule before the floor) would have picked the faster row 1
    assert out["se_band"]["pick"] == 1 and rows[1]["within_noise"] and not rows[1]["qualifies"]
    assert out["wide"]["pick"] is not None and len(out["wide"]["within_noise"]) == len(rows)
    assert all(isinstance(r["near_best"], bool) for r in rows)


def test_if_params_per_dataset():
    for d, (trees, samples) in arch.IF_SIZE.items():
        p = arch.iforest_params(d)
        assert (p["n_estimators"], p["max_samples"]) == (trees, samples)
        assert list(p) == list(arch.IFOREST_PARAMS)  # same keys, same order (manifest bytes)
    assert arch.iforest_params("some-test-set") == arch.IFOREST_PARAMS
    # a data set kept off the sweep's choice says why, in words the report can print
    assert set(arch.IF_SIZE_KEPT) <= set(arch.IF_SIZE)
    assert all(isinstance(v, str) and v for v in arch.IF_SIZE_KEPT.values())


@pytest.mark.parametrize("bundle", [datasets.MODELS_DIR / "default", datasets.MODELS_DIR / "bundles" / "nsl-kdd",
                                    datasets.MODELS_DIR / "bundles" / "kdd99"], ids=["default", "nsl-kdd", "kdd99"])
def test_shipped_bundles_use_the_architecture_sizes(bundle):
    """A size changed in architecture.py without retraining shows up here."""
    man = json.loads((bundle / "manifest.json").read_text())
    hp = man["models"]
    ifp, rfp = arch.iforest_params(man["dataset"]), arch.rf_params(man["dataset"])
    assert {k: hp["iforest"]["hyperparameters"][k] for k in ifp} == ifp
    assert {k: hp["rf"]["hyperparameters"][k] for k in rfp} == rfp
    # ... and so does a log step switched in architecture.LOG_STEP (CIC always has one)
    logs = man["preprocessing"]["log_columns"]
    if man["dataset"] in arch.LOG_STEP:
        assert bool(logs) == arch.log_step(man["dataset"]), man["dataset"]
        ops = [s["op"] for s in man["scorer"]["models"]["iforest"]["inside_graph"]]
        assert ("signed_log1p" in ops) == arch.log_step(man["dataset"])
    else:
        assert logs


def test_if_sweep_small(trained_cic, tmp_path, monkeypatch):
    """A 2 × 2 sweep with 2 seeds on the synthetic CIC data. The session bundle's own size
    (conftest.SMALL: 20 trees × 128) is in the grid, so the sweep must reproduce its
    iforest.onnx byte for byte, its IF threshold and its validation metrics."""
    from conftest import SMALL

    from netanom_models.evaluate import if_sweep

    # The rule's reference is architecture.IFOREST_PARAMS' size: make it the session bundle's.
    monkeypatch.setitem(arch.IFOREST_PARAMS, "n_estimators", SMALL["iforest_params"]["n_estimators"])
    monkeypatch.setitem(arch.IFOREST_PARAMS, "max_samples", SMALL["iforest_params"]["max_samples"])
    res = if_sweep("cic-ids2017", reports_dir=tmp_path, bundle_dir=trained_cic.out_dir, trees=(5, 20),
                   samples=(32, 128), seeds=(0, 1), rounds=1, min_time=0.005)
    rows = res["rows"]
    assert [(r["n_estimators"], r["max_samples"]) for r in rows] == [(5, 32), (5, 128), (20, 32), (20, 128)]
    man = trained_cic.manifest
    own = rows[3]
    assert (own["n_estimators"], own["max_samples"]) == (SMALL["iforest_params"]["n_estimators"],
                                                         SMALL["iforest_params"]["max_samples"])
    assert own["same_as_bundle"] is True and all("same_as_bundle" not in r for r in rows[:3])
    assert own["threshold"] == man["thresholds"]["values"]["iforest"]
    rule = man["ensemble"]["rule"]
    for k in ("f1", "roc_auc", "pr_auc", "tp", "fp", "tn", "fn"):
        assert own["validation"]["if"][k] == man["validation"]["models"]["iforest"][k], k
        assert own["validation"]["ensemble"][k] == man["validation"]["ensemble"][rule][k], k
    for r in rows:
        assert set(r["seeds"]) == {0, 1}
        assert r["us"][1024] > 0 and r["us"][1] > 0 and r["us"]["normal"] > 0
        assert r["onnx_bytes"] > 0 and r["nodes"] >= r["n_estimators"] and 0 < r["mean_depth"] <= 7
        ae, rf = res["timed"][("bundle", "autoencoder")][1024], res["timed"][("bundle", "rf")][1024]
        assert r["ensemble_us"][1024] == pytest.approx(ae + r["us"][1024] + rf)
        assert np.isclose(r["mean"]["if"]["f1"], np.mean([r["seeds"][s]["if"]["f1"] for s in (0, 1)]))
    assert rows[0]["nodes"] < rows[1]["nodes"] < rows[3]["nodes"]
    pick = res["pick"]
    assert pick is None or rows[pick]["qualifies"]
    # measured ensembles: the bundle's; the reference IF is the bundle's here, so no separate row
    assert "bundle" in res["ensemble"] and "reference" not in res["ensemble"]
    assert ("chosen" in res["ensemble"]) == (pick != 3)
    md = (tmp_path / "cic-ids2017-if-sweep.md").read_text()
    assert "Isolation Forest size" in md and "Rule's choice" in md and "byte-identical to" in md
    assert res["ref"] == 3 and rows[3]["qualifies"] and rows[3]["within_noise"]
    assert "| ≥ reference on every mean (rule) | within SE band (not used) | near best (not used) |" in md
    assert "the seed means of the reference, 20 × 128" in md and "Not used by the choice (information only)" in md
    assert "RF sweep's wider band" in md and "Re-rendered" not in md
    assert all(isinstance(r["near_best"], bool) for r in rows)
    assert md.count("\n| 5 | ") == 2 and md.count("\n| 20 | ") == 2
    dump = json.loads((tmp_path / "cic-ids2017-if-sweep.json").read_text())
    assert len(dump["rows"]) == 4 and dump["rule_choice"] == pick and dump["bundle"]["if_size"] == [20, 128]
    assert dump["seeds"] == [0, 1] and dump["rounds"] == 1 and dump["onnxruntime"]
    # re-rendered from the JSON alone (no data set, no bundle): same choice, same measurements
    from netanom_models.evaluate import rerender_if_sweep

    again = rerender_if_sweep("cic-ids2017", reports_dir=tmp_path)
    assert again["pick"] == pick and again["rule"] == res["rule"]
    dump2 = json.loads((tmp_path / "cic-ids2017-if-sweep.json").read_text())
    assert dump2["rows"] == dump["rows"] and dump2["bundle"] == dump["bundle"]
    md2 = (tmp_path / "cic-ids2017-if-sweep.md").read_text()
    assert "Re-rendered" in md2 and md2.count("\n| 20 | ") == 2


def test_if_sweep_without_a_matching_bundle(trained, tmp_path):
    """A bundle for other features (here the KDD one) is not used: IF metrics only."""
    from netanom_models.evaluate import if_sweep

    res = if_sweep("cic-ids2017", reports_dir=tmp_path, bundle_dir=trained.out_dir, trees=(5,), samples=(32, 64),
                   seeds=(0, 1), rounds=1, min_time=0.005)
    assert res["bundle"] is None and res["ensemble"] is None
    assert all("ensemble" not in r["mean"] and "ensemble_us" not in r for r in res["rows"])
    md = (tmp_path / "cic-ids2017-if-sweep.md").read_text()
    assert "whole ensemble" not in md and "Rule's choice" in md
    assert res["ref"] is None and "no reference setting in this grid" in md  # 100 × 256 is not in this grid


@pytest.mark.parametrize("dataset", ["cic-ids2017", "nsl-kdd", "kdd99"])
def test_shipped_if_sweep_reports_agree_with_the_architecture(dataset, tmp_path):
    """The shipped sweep JSON, re-rendered with the current rule (`if-sweep --from-json`, in a
    copy): the choice is IF_SIZE, unless IF_SIZE_KEPT says why not."""
    import shutil

    from netanom_models.__main__ import main

    src = datasets.MODELS_DIR / "reports" / f"{dataset}-if-sweep.json"
    shutil.copy(src, tmp_path / src.name)
    assert main(["if-sweep", "--dataset", dataset, "--from-json", "--reports", str(tmp_path)]) == 0
    dump = json.loads((tmp_path / src.name).read_text())
    r = dump["rows"][dump["rule_choice"]]
    ref = dump["rows"][dump["reference"]]
    assert (ref["n_estimators"], ref["max_samples"]) == (100, 256)
    for pt, k in (("if", "f1"), ("if", "roc_auc"), ("if", "pr_auc"), ("ensemble", "f1")):
        assert r["mean"][pt][k] >= ref["mean"][pt][k]
    choice = (r["n_estimators"], r["max_samples"])
    assert (choice == arch.IF_SIZE[dataset]) != (dataset in arch.IF_SIZE_KEPT)
    # the shipped report is what the re-render writes
    assert (tmp_path / f"{dataset}-if-sweep.md").read_text() == \
        (datasets.MODELS_DIR / "reports" / f"{dataset}-if-sweep.md").read_text()
    if dataset == "cic-ids2017":
        assert choice == (50, 512)


def test_if_sweep_cli_rejects_unknown_dataset(capsys):
    from netanom_models.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["if-sweep", "--dataset", "nope"])
    assert e.value.code == 2
