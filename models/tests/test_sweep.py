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
        _row(25, 64, 0.20, 0.912, 0.98, 0.9995, 0.5, 10),    # 0: F1 too low
        _row(50, 128, 0.335, 0.915, 0.985, 0.9995, 1.2, 30),  # 1: no real loss, the fastest such
        _row(100, 256, 0.34, 0.92, 0.986, 0.9996, 2.8, 90),  # 2: the reference
        _row(75, 64, 0.336, 0.914, 0.985, 0.9995, 1.4, 20),  # 3: no real loss, as fast as 1 (tie): smaller
        _row(150, 64, 0.34, 0.92, 0.986, 0.9990, 0.9, 40),   # 4: ensemble F1 too low
        _row(100, 512, 0.36, 0.95, 0.990, 0.9996, 3.2, 120),  # 5: the best AUCs, slower
    ]


def test_if_choice_rule_against_the_reference():
    from netanom_models.evaluate import choose_if

    rows = _rows()
    pick, why = choose_if(rows, ref=2)
    assert [r["within_noise"] for r in rows] == [False, True, True, True, False, True]
    assert pick == 3 and "4 of 6 settings qualify" in why
    assert "IF ROC-AUC >=" in why and "ensemble F1 >=" in why and "reference: 100 × 256" in why
    # every metric is tested: an AUC below reference - noise rules a setting out on its own
    rows[3]["mean"]["if"]["roc_auc"] = 0.90
    pick, _ = choose_if(rows, ref=2)
    assert not rows[3]["within_noise"] and pick == 1
    # the reference wins a tie it is part of: a change must buy clear speed
    rows[2]["us"][1024] = 1.3
    pick, _ = choose_if(rows, ref=2)
    assert pick == 2
    # a larger seed-to-seed spread widens the band
    rows = _rows()
    for r in rows:
        r["sd"]["if"]["f1"] = 0.2
    pick, why = choose_if(rows, ref=2, mean_se=False)
    assert rows[0]["within_noise"] and pick == 0 and "median seed SD 0.2" in why
    # ... by default the seed term is the standard error of the 4-seed mean (0.2 / 2): not enough
    pick, why = choose_if(rows, ref=2)
    assert not rows[0]["within_noise"] and pick == 3 and "√4" in why
    # without ensemble figures (no bundle), only the IF's metrics count
    for r in rows:
        del r["mean"]["ensemble"]
    pick, why = choose_if(rows, ref=2)
    assert rows[4]["within_noise"] and "ensemble" not in why


def test_if_choice_rule_against_the_best():
    from netanom_models.evaluate import choose_if, if_within_noise

    rows = _rows()
    flags, why = if_within_noise(rows, None)
    assert flags == [False, False, False, False, False, True] and "best: 100 × 512" in why
    pick, _ = choose_if(rows)
    assert pick == 5
    # nothing within noise on every metric: no choice (the bundle keeps its size)
    rows = [_row(25, 64, 0.5, 0.80, 0.98, 0.9995, 0.5, 10, se=0.001, sd=0.001),
            _row(50, 64, 0.2, 0.95, 0.98, 0.9995, 0.9, 20, se=0.001, sd=0.001)]
    pick, why = choose_if(rows)
    assert pick is None and "0 of 2" in why


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
    assert pick is None or rows[pick]["within_noise"]
    # measured ensembles: the bundle's; the reference IF is the bundle's here, so no separate row
    assert "bundle" in res["ensemble"] and "reference" not in res["ensemble"]
    assert ("chosen" in res["ensemble"]) == (pick != 3)
    md = (tmp_path / "cic-ids2017-if-sweep.md").read_text()
    assert "Isolation Forest size" in md and "Rule's choice" in md and "byte-identical to" in md
    assert res["ref"] == 3 and rows[3]["within_noise"] and "| no real loss | near best |" in md
    assert "reference: 20 × 128" in md and "Robustness: with the RF sweep's wider noise band" in md
    assert all(isinstance(r["near_best"], bool) for r in rows)
    assert md.count("\n| 5 | ") == 2 and md.count("\n| 20 | ") == 2
    dump = json.loads((tmp_path / "cic-ids2017-if-sweep.json").read_text())
    assert len(dump["rows"]) == 4 and dump["rule_choice"] == pick and dump["bundle"]["if_size"] == [20, 128]


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


def test_if_sweep_cli_rejects_unknown_dataset(capsys):
    from netanom_models.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["if-sweep", "--dataset", "nope"])
    assert e.value.code == 2
