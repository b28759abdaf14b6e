"""CIC-IDS2017: the coupling to the Rust feature schema, the loader, the split, and a bundle
trained end to end on a synthetic CIC-shaped sample."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from netanom_models import DataError, datasets, export, schema
from netanom_models.contract import check_parity

from conftest import CIC_HEADER, cic_rows

MODELS = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = MODELS / "default" / "manifest.json"

SNIPPET = r'''
const NOTE: &str = "CIC counts \
    differently.";

features! {
    "Flow Duration", "µs", CicMatch::Exact,
        "Time from first to last packet.",
        |c| c.dur_us;
    "Fwd Act Data Pkts", "packets", CicMatch::Differs(NOTE),
        "Forward packets with payload.",
        |c| c.f.data_packets;
    "Weird \"quoted\"", "bytes", CicMatch::Differs("inline note"),
        "x",
        |c| 0;
    "protocol", "number", CicMatch::NotInCic,
        "IP protocol number.",
        |c| c.key.proto;
}
'''


# ---- schema coupling ------------------------------------------------------------------------------
def test_parser_reads_names_units_kinds_and_notes():
    feats = schema.parse_features_rs(SNIPPET)
    assert [(f.index, f.name, f.unit, f.cic) for f in feats] == [
        (0, "Flow Duration", "µs", "Exact"),
        (1, "Fwd Act Data Pkts", "packets", "Differs"),
        (2, 'Weird "quoted"', "bytes", "Differs"),
        (3, "protocol", "number", "NotInCic"),
    ]
    assert feats[1].cic_note == "CIC counts differently."
    assert feats[2].cic_note == "inline note"
    assert feats[0].definition == "Time from first to last packet."
    used, excluded = schema.select_cic_features(feats, ["Flow Duration", "Fwd Act Data Pkts", "Protocol"])
    assert [f.name for f in used] == ["Flow Duration"]
    assert set(excluded) == {"Fwd Act Data Pkts", 'Weird "quoted"', "protocol"}


def test_parser_refuses_an_entry_it_cannot_read():
    broken = SNIPPET.replace('"Time from first to last packet.",', "concat!(\"a\", \"b\"),")
    with pytest.raises(DataError, match="parsed 3 of 4"):
        schema.parse_features_rs(broken)


def test_real_schema_parses_and_agrees_with_features_md():
    feats = schema.load_schema()  # raises if features.rs and FEATURES.md disagree
    names = [f.name for f in feats]
    assert len(names) == len(set(names)) > 50
    assert {f.cic for f in feats} <= {"Exact", "Differs", "NotInCic"}
    # every Differs feature carries its explanation
    assert all(f.cic_note for f in feats if f.cic == "Differs")


def test_md_mismatch_is_detected(tmp_path):
    rs = schema.FEATURES_RS.read_text(encoding="utf-8")
    md = schema.FEATURES_MD.read_text(encoding="utf-8")
    (tmp_path / "features.rs").write_text(rs.replace('"Flow Duration", "µs"', '"Flow Duration", "ms"'), encoding="utf-8")
    (tmp_path / "FEATURES.md").write_text(md, encoding="utf-8")
    with pytest.raises(DataError, match="disagree"):
        schema.load_schema(tmp_path / "features.rs", tmp_path / "FEATURES.md")


@pytest.mark.skipif(not DEFAULT_MANIFEST.is_file(), reason="models/default not built")
def test_default_bundle_matches_the_current_rust_schema():
    """Fails when netanom/src/features/flow.rs changes so that the default bundle's inputs no longer
    mean what they meant at training time: retrain with `cargo xtask train -- --dataset cic-ids2017`."""
    man = json.loads(DEFAULT_MANIFEST.read_text())
    feats = schema.load_schema()
    assert schema.bundle_schema_problems(man, feats) == []
    assert set(man["features"]) <= {f.name for f in feats}
    assert man["scorer"]["steps"][0]["from_flow_features"]["names"] == man["features"]


@pytest.mark.skipif(not DEFAULT_MANIFEST.is_file(), reason="models/default not built")
@pytest.mark.parametrize("edit, message", [
    (('"Flow Duration", "µs", CicMatch::Exact,', '"Flow Duration", "ms", CicMatch::Exact,'), "changed its unit"),
    (("in whole microseconds (truncated).", "in whole microseconds (rounded)."), "changed its definition"),
    (('"Flow IAT Min", "µs", CicMatch::Exact,', '"Flow IAT Min", "µs", CicMatch::Differs("x"),'), "selects different"),
    (('    "protocol", "number", CicMatch::NotInCic,', '    "Fwd Bulk Rate Avg", "bytes/s", CicMatch::Exact,\n'
      '        "new.",\n        |c| 0;\n    "protocol", "number", CicMatch::NotInCic,'), "selects different"),
    (('    "Flow Duration", "µs", CicMatch::Exact,', '    "extra", "x", CicMatch::NotInCic,\n        "new.",\n'
      '        |c| 0;\n    "Flow Duration", "µs", CicMatch::Exact,'), "indices"),
])
def test_schema_coupling_detects_rust_side_changes(edit, message):
    """The check above really fails on a changed unit, definition, match kind, a new CIC
    feature, or moved indices (simulated on a copy of features.rs)."""
    man = json.loads(DEFAULT_MANIFEST.read_text())
    rs = schema.FEATURES_RS.read_text(encoding="utf-8")
    assert edit[0] in rs
    feats = schema.parse_features_rs(rs.replace(edit[0], edit[1], 1))
    problems = schema.bundle_schema_problems(man, feats)
    assert problems and message in problems[0]


# ---- loader and split -----------------------------------------------------------------------------------
def _load(tmp_path, rows, names, name="x.csv.gz"):
    """The CIC configuration of the generic loader, on one file of `rows`."""
    from conftest import write_cic_csv

    p = tmp_path / name
    write_cic_csv(p, rows)
    s = datasets.spec("cic-ids2017")
    return datasets.load([p], datasets.cic_format(s, names), dedup=True)


def test_cic_loader_on_a_tiny_file(tmp_path):
    rows = cic_rows(6, "BENIGN", 1, 6) + cic_rows(3, "DDoS", 2, 6) + cic_rows(2, "BENIGN", 3, 1)
    rows.append(list(rows[0]))  # exact duplicate
    rows += cic_rows(1, "BENIGN", 4, 0)  # CIC's protocol 0 (other): dropped
    names = ["Flow Duration", "Total Fwd Packet", "Down/Up Ratio", "ICMP Type"]
    t = _load(tmp_path, rows, names)
    feats, labels, stats = t.features, t.labels, t.stats
    assert list(feats.columns) == names  # schema order, identifiers gone
    assert all(feats[c].dtype == np.float64 for c in names)
    assert len(feats) == 9 and list(labels) == ["BENIGN"] * 6 + ["DDoS"] * 3
    assert stats == {"rows_read": 13, "exact_duplicates_dropped": 1, "non_tcp_udp_dropped": {"0": 1, "1": 2},
                     "rows_kept": 9}
    assert feats["Flow Duration"].iloc[0] == float(rows[0][CIC_HEADER.index("Flow Duration")])
    assert feats["ICMP Type"].eq(-1).all()
    assert list(t.is_attack) == [False] * 6 + [True] * 3


@pytest.mark.parametrize("bad", ["Infinity", "NaN", "", "abc"])
def test_cic_loader_rejects_non_finite_values_naming_file_line_and_column(tmp_path, bad):
    from netanom_models.tabular import NonNumericValue

    rows = cic_rows(4, "BENIGN", 1, 6)
    rows[2][CIC_HEADER.index("Flow Bytes/s")] = bad
    # header on line 1: the third data row is line 4
    with pytest.raises(NonNumericValue, match=r"x\.csv\.gz: line 4, column 'Flow Bytes/s'.*not a finite number"):
        _load(tmp_path, rows, ["Flow Duration", "Flow Bytes/s"])


def test_cic_loader_requires_the_columns(tmp_path):
    from netanom_models.tabular import MissingColumns

    p = tmp_path / "x.csv"
    header = [c for c in CIC_HEADER if c != "Flow Duration"]
    rows = [[v for c, v in zip(CIC_HEADER, r) if c != "Flow Duration"] for r in cic_rows(3, "BENIGN", 1)]
    p.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    fmt = datasets.TabularFormat(features=("Flow Duration",), label="Label")
    with pytest.raises(MissingColumns, match=r"missing column\(s\) \['Flow Duration'\]"):
        datasets.load([p], fmt)


def test_cic_files_with_a_wrong_header_are_refused(shared, tmp_path, monkeypatch):
    import shutil

    d = tmp_path / "datasets" / "cic-ids2017-improved-sample"
    shutil.copytree(shared / "datasets" / "cic-ids2017-improved-sample", d)
    import gzip

    (d / "Bad_1.csv.gz").write_bytes(gzip.compress(b"a,b,c\n1,2,3\n"))
    monkeypatch.setenv("NETANOM_SHARED", str(tmp_path))
    with pytest.raises(DataError, match="header differs"):
        datasets.load_cic(datasets.spec("cic-ids2017"), ["Flow Duration"])


def test_split_by_label_is_stratified_deterministic_and_keeps_attacks_out_of_calibration():
    labels = np.array(["BENIGN"] * 1000 + ["DDoS"] * 400 + ["Heartbleed"] * 11)
    a = datasets.split_by_label(labels, "BENIGN", datasets.CIC_SPLIT, 0)
    b = datasets.split_by_label(labels, "BENIGN", datasets.CIC_SPLIT, 0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    allidx = np.concatenate(list(a.values()))
    assert sorted(allidx.tolist()) == list(range(len(labels)))  # a partition
    assert set(labels[a["calibration"]]) == {"BENIGN"}
    assert (labels[a["test"]] == "BENIGN").sum() == 200 and (labels[a["test"]] == "DDoS").sum() == 140
    assert (labels[a["test"]] == "Heartbleed").sum() >= 3
    c = datasets.split_by_label(labels, "BENIGN", datasets.CIC_SPLIT, 1)
    assert not np.array_equal(a["test"], c["test"])


# ---- end to end on the synthetic sample ------------------------------------------------------------------
def test_cic_bundle(trained_cic):
    out = trained_cic.out_dir
    man = json.loads((out / "manifest.json").read_text())
    fs = man["feature_schema"]
    assert man["features"] == fs["used"] and "Fwd Act Data Pkts" not in man["features"]
    assert "protocol" in fs["excluded"] and "Protocol" not in man["features"]
    assert set(man["features"]) <= {f.name for f in schema.load_schema()}
    td = man["training_data"]
    assert td["loader"]["exact_duplicates_dropped"] == 1 and td["loader"]["non_tcp_udp_dropped"] == {"1": 3}
    assert td["split"]["calibration"]["attack"] == 0 and td["split"]["test"]["rows"] > 0
    steps = man["scorer"]["steps"]
    assert steps[0]["columns"] == man["features"] and "categorical" not in steps[0]
    assert all(e["kind"] == "numeric" for e in steps[1]["elements"])
    ae_ops = [s["op"] for s in man["scorer"]["models"]["autoencoder"]["inside_graph"]]
    if_ops = [s["op"] for s in man["scorer"]["models"]["iforest"]["inside_graph"]]
    rf_ops = [s["op"] for s in man["scorer"]["models"]["rf"]["inside_graph"]]
    assert ae_ops[:2] == ["signed_log1p", "minmax_clip"] and if_ops[0] == "signed_log1p" and "signed_log1p" not in rf_ops
    assert check_parity(out)["rows"] == man["parity"]["rows"]


def test_cic_graphs_equal_the_python_models(trained_cic):
    """The log step really is inside autoencoder.onnx and iforest.onnx."""
    t = trained_cic
    rng = np.random.default_rng(0)
    n = t.preprocessor.n_features
    x = np.vstack([rng.lognormal(3, 2, (50, n)), -rng.lognormal(1, 1, (3, n)), np.zeros((1, n))]).astype(np.float32)
    sess = {m: ort.InferenceSession(str(t.out_dir / f"{m}.onnx"), providers=["CPUExecutionProvider"])
            for m in ("autoencoder", "iforest", "rf")}
    with torch.no_grad():
        ae = t.autoencoder(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess["autoencoder"].run(None, {"input": x})[0], ae, rtol=1e-4, atol=1e-6)
    xl = export.signed_log1p_onnx(x, t.preprocessor.log_mask())
    np.testing.assert_allclose(xl, t.preprocessor.log_transform(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sess["iforest"].run(None, {"input": x})[0], -t.iforest.score_samples(xl), atol=1e-5)
    np.testing.assert_allclose(sess["rf"].run(None, {"input": x})[0], t.rf.predict_proba(x)[:, 1], atol=1e-6)


def test_cic_training_is_deterministic(trained_cic, shared, tmp_path):
    from conftest import train_small

    again = train_small(shared, tmp_path / "again", "cic-ids2017")
    for f in ("autoencoder.onnx", "iforest.onnx", "rf.onnx", "manifest.json", "parity.csv"):
        assert (trained_cic.out_dir / f).read_bytes() == (again.out_dir / f).read_bytes(), f


def test_cic_eval_report(trained_cic, tmp_path):
    from netanom_models.evaluate import evaluate

    res = evaluate("cic-ids2017", bundle_dir=trained_cic.out_dir, reports_dir=tmp_path)
    r = res["test split"]
    text = (tmp_path / "cic-ids2017.md").read_text()
    assert "re-weighted" in text and "leave-one-class-out" in text and "flag everything" in text
    assert set(r["per_category"]) == {"DDoS", "Portscan", "Botnet"}
    rw = r["reweighted"]["baselines"]["flag_everything"]
    pop = datasets.CIC_POPULATION
    assert rw["precision"] == pytest.approx((pop["DDoS"] + pop["Portscan"] + pop["Botnet"])
                                            / (pop["BENIGN"] + pop["DDoS"] + pop["Portscan"] + pop["Botnet"]), abs=1e-6)
    assert len(list(tmp_path.glob("*.png"))) == 4


def test_population_weights():
    from netanom_models.evaluate_cic import population_weights

    w = population_weights(np.array(["BENIGN", "BENIGN", "DDoS"]), {"BENIGN": 10, "DDoS": 3})
    assert w.tolist() == [5.0, 5.0, 3.0]
