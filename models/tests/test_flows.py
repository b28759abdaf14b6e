"""--dataset flows: bundles trained on netanom's own flow exports, bound to the live schema, and
their evaluation report (held-out flows and labelled sets, captures included)."""

import json
import os
import stat
import textwrap

import numpy as np
import pytest

from netanom_models import datasets, flows, schema
from netanom_models.__main__ import main
from netanom_models.architecture import MODEL_NAMES
from netanom_models.contract import check_parity
from netanom_models.tabular import MissingColumns, NonNumericValue, TooFewRows

from conftest import FLOW_ID_COLUMNS, flow_feature_names, flow_rows, flows_spec_small, train_given, write_flows


def test_flows_bundle_takes_every_live_feature_by_name(trained_flows):
    man = trained_flows.manifest
    names = flow_feature_names()
    assert man["features"] == names and man["n_features"] == len(names) == 67
    fff = man["scorer"]["steps"][0]["from_flow_features"]
    assert fff["names"] == names and fff["flow_feature_index"] == list(range(len(names)))
    assert flows.schema_problems(man, schema.load_schema()) == []
    # count units get the log step inside the AE and IF graphs; codes and ratios do not
    logs = man["preprocessing"]["log_columns"]
    assert "Flow Duration" in logs and "Flow Bytes/s" in logs
    assert not {"ICMP Type", "Down/Up Ratio", "protocol"} & set(logs)
    assert man["training_data"]["kind"] == "flows"
    assert man["validation"] is None and man["ensemble"]["chosen_by"].startswith("default")


def test_flows_split_is_per_file_with_a_held_out_part(trained_flows, site_flows):
    sp = trained_flows.manifest["training_data"]["split"]
    per = sp["per_file"]
    assert list(per) == ["site-a.csv", "site-b.csv"]
    assert per["site-a.csv"] == {"fit": 96, "calibration": 32, "validation": 0, "test": 32}
    assert per["site-b.csv"] == {"fit": 36, "calibration": 12, "validation": 0, "test": 12}
    assert sp["test"]["rows"] == 44 and sp["validation"]["rows"] == 0
    # parity.csv holds held-out flows (no labels: 0) and the reference scorer reproduces them
    assert trained_flows.manifest["parity"]["rows"] == 44
    assert check_parity(trained_flows.out_dir)["rows"] == 44


def test_random_forest_learns_the_top_share_of_isolation_forest_scores(trained_flows):
    from netanom_models import architecture as arch
    from netanom_models.train import pseudo_labels

    hp = trained_flows.manifest["models"]["rf"]["hyperparameters"]
    assert "pseudo-labels" in hp["trained_on"] and "top 1%" in hp["trained_on"] and "(2 of 132)" in hp["trained_on"]
    assert set(trained_flows.rf.classes_) == {0, 1}
    s = np.array([0.1, 0.5, 0.5, 0.3, 0.9])
    assert pseudo_labels(s, 0.4).tolist() == [0, 1, 0, 0, 1]  # ceil(2.0) rows; the earlier 0.5 wins the tie
    assert pseudo_labels(s, arch.PSEUDO_LABEL_SHARE).tolist() == [0, 0, 0, 0, 1]  # at least one row


def test_flows_training_is_deterministic(trained_flows, site_flows, tmp_path):
    again = train_given(flows_spec_small(site_flows), tmp_path / "again")
    for f in ("autoencoder.onnx", "iforest.onnx", "rf.onnx", "manifest.json", "parity.csv"):
        assert (again.out_dir / f).read_bytes() == (trained_flows.out_dir / f).read_bytes(), f


def test_the_same_flows_elsewhere_give_the_same_bundle(trained_flows, site_flows, tmp_path):
    """The manifest names input files by name and sha256, not by where they lie."""
    moved = [tmp_path / p.name for p in site_flows]
    for a, b in zip(site_flows, moved):
        b.write_bytes(a.read_bytes())
    again = train_given(flows_spec_small(moved), tmp_path / "b")
    assert (again.out_dir / "manifest.json").read_bytes() == (trained_flows.out_dir / "manifest.json").read_bytes()


def test_schema_problems_name_a_changed_or_moved_feature(trained_flows):
    man = trained_flows.manifest
    rs = schema.FEATURES_RS.read_text(encoding="utf-8")
    changed = schema.parse_features_rs(rs.replace('"Flow IAT Min", "µs"', '"Flow IAT Min", "ms"', 1))
    assert "'Flow IAT Min' changed its unit" in flows.schema_problems(man, changed)[0]
    renamed = schema.parse_features_rs(rs.replace('"Flow IAT Min", "µs"', '"Flow IAT Minimum", "µs"', 1))
    assert "no longer in FLOW_FEATURES" in flows.schema_problems(man, renamed)[0]
    moved = schema.parse_features_rs(rs.replace('    "Flow Duration", "µs", CicMatch::Exact,',
                                                '    "extra", "x", CicMatch::NotInCic,\n        "new.",\n        |c| 0;\n'
                                                '    "Flow Duration", "µs", CicMatch::Exact,', 1))
    assert "indices" in flows.schema_problems(man, moved)[0]


def test_flows_without_a_feature_column_are_refused(tmp_path):
    p = write_flows(tmp_path / "f.csv", flow_rows(30, "benign", 3))
    lines = p.read_text().splitlines()
    j = lines[0].split(",").index("Flow IAT Max")
    p.write_text("\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != j) for line in lines) + "\n")
    with pytest.raises(MissingColumns, match=r"f\.csv: missing column\(s\) \['Flow IAT Max'\]"):
        train_given(flows_spec_small([p]), tmp_path / "b")


def test_a_non_numeric_flow_value_names_file_line_and_column(tmp_path):
    rows = flow_rows(30, "benign", 3)
    rows[9][len(FLOW_ID_COLUMNS) + 2] = "lots"  # Total Bwd packets of the 10th flow: line 11
    p = write_flows(tmp_path / "f.csv", rows)
    with pytest.raises(NonNumericValue, match=r"f\.csv: line 11, column 'Total Bwd packets': value 'lots'"):
        train_given(flows_spec_small([p]), tmp_path / "b")


def test_too_few_flows_to_split(tmp_path):
    p = write_flows(tmp_path / "f.csv", flow_rows(12, "benign", 3))
    with pytest.raises(TooFewRows, match=r"too few rows to split: 12 rows .*more flows \(about 17 at least\)"):
        train_given(flows_spec_small([p]), tmp_path / "b")


# ---- evaluation ---------------------------------------------------------------------------------------
def _fake_netanom(tmp_path, rows):
    """A stand-in for `netanom features --pcap X --out Y`: writes `rows` as flows to Y."""
    src = write_flows(tmp_path / "fake-flows.csv", rows)
    exe = tmp_path / "netanom"
    exe.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1" = features ] && [ "$2" = --pcap ] && [ "$4" = --out ] || exit 3
        cp {src} "$5"
        echo "netanom: features: $3 (pcap): 9 packets read; 5 flows exported; 0.001 s (9000 packets/s)" >&2
        """))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_eval_reports_held_out_flows_and_labelled_sets(trained_flows, site_flows, tmp_path):
    from netanom_models.evaluate_flows import evaluate_flows
    from netanom_models.eval_sets import read_eval_list

    d = tmp_path / "sets"
    d.mkdir()
    write_flows(d / "syn-flood.csv", flow_rows(300, "attack", 7))
    write_flows(d / "other-office.csv", flow_rows(40, "benign", 8))
    (d / "capture.pcap").write_bytes(b"not read: the fake netanom ignores it")
    (d / "list.csv").write_text("file,label,attack_type\nsyn-flood.csv,attack,syn\nother-office.csv,benign,-\n"
                                f"capture.pcap,attack,syn\n{site_flows[1]},benign,-\n")
    exe = _fake_netanom(tmp_path, flow_rows(5, "attack", 9))
    res = evaluate_flows(trained_flows.out_dir, site_flows, read_eval_list(d / "list.csv"), tmp_path / "r", exe)
    names = [r["name"] for r in res["sets"]]
    assert names == ["held-out flows", "syn-flood", "other-office", "capture", "site-b"]
    by = {r["name"]: r for r in res["sets"]}
    assert by["held-out flows"]["flows"] == 44 and by["capture"]["flows"] == 5 and by["syn-flood"]["flows"] == 300
    assert by["site-b"]["training_input"] and not by["site-b"]["pooled"]
    assert res["thresholds_reproduced"]
    assert res["pooled"]["rows"] == 44 + 40 + 300 + 5 and res["pooled"]["attacks"] == 305
    # single SYNs with a window no site flow has: far outside the site's ranges
    assert by["syn-flood"]["shares"]["range rule"] == 1.0
    assert set(by["syn-flood"]["auc_vs_held_out"]) == set(MODEL_NAMES) | {"ensemble", "range rule"}
    text = (tmp_path / "r" / "site.md").read_text()
    for part in ("## Flows flagged per set", "## Pooled", "against the held-out flows (ROC-AUC)",
                 "## Threshold sensitivity", "Small training input", "training input (left out",
                 "9 packets read; 5 flows exported"):
        assert part in text, part
    assert "0.001 s" not in text  # the conversion's timing is not in the report
    assert sorted(p.name for p in (tmp_path / "r").glob("*.png")) == ["site-hist.png", "site-roc.png", "site-sets.png"]
    assert json.loads((tmp_path / "r" / "site.json").read_text())["sets"][0]["name"] == "held-out flows"


def test_eval_refuses_other_inputs_than_the_training_ones(trained_flows, site_flows, tmp_path):
    from netanom_models import DataError
    from netanom_models.eval_sets import parse_eval_arg
    from netanom_models.evaluate_flows import evaluate_flows

    sets = [parse_eval_arg(f"attack={site_flows[0]}")]
    with pytest.raises(DataError, match="give the same files with --input"):
        evaluate_flows(trained_flows.out_dir, site_flows[:1], sets, tmp_path)
    with pytest.raises(DataError, match="sha256 differs"):
        evaluate_flows(trained_flows.out_dir, site_flows[::-1], sets, tmp_path)


@pytest.mark.parametrize("text, message", [
    ("syn.csv", "expected LABEL=FILE"),
    ("evil=syn.csv", "not one of benign, normal, attack"),
])
def test_bad_eval_arguments(text, message):
    from netanom_models import DataError
    from netanom_models.eval_sets import parse_eval_arg

    with pytest.raises(DataError, match=message):
        parse_eval_arg(text)


def test_eval_list_errors(tmp_path):
    from netanom_models import DataError
    from netanom_models.eval_sets import read_eval_list

    (tmp_path / "a.csv").write_text("path,label\nx.csv,attack\n")
    with pytest.raises(DataError, match=r"needs the columns file and label \(missing \['file'\]"):
        read_eval_list(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("file,label\nx.csv,hostile\n")
    with pytest.raises(DataError, match=r"b\.csv: line 2: label 'hostile'"):
        read_eval_list(tmp_path / "b.csv")


def test_cli_trains_and_evaluates_flows_with_caller_relative_paths(site_flows, tmp_path, monkeypatch, capsys):
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    for p in site_flows:
        shutil.copy(p, work / p.name)
    write_flows(work / "syn.csv", flow_rows(50, "attack", 5))
    monkeypatch.setenv("NETANOM_CALLER_DIR", str(work))  # what `cargo xtask` passes
    args = ["train", "--dataset", "flows", "--input", "site-a.csv", "--input", "site-b.csv", "--name", "office",
            "--out", "bundle", "--max-epochs", "2"]
    assert main(args) == 0
    assert (work / "bundle" / "manifest.json").is_file()
    assert main(["eval", "--dataset", "flows", "--bundle", "bundle", "--input", "site-a.csv", "--input",
                 "site-b.csv", "--eval", "attack=syn.csv", "--reports", "reports"]) == 0
    assert (work / "reports" / "office.md").is_file()
    capsys.readouterr()
    assert main(["train", "--dataset", "flows", "--input", "site-a.csv", "--label-column", "x"]) == 2
    assert "--label-column: only for --dataset csv" in capsys.readouterr().err
    assert main(["train", "--dataset", "flows", "--input", "missing.csv"]) == 2
    assert "data file not found" in capsys.readouterr().err
    assert main(["eval", "--dataset", "nsl-kdd", "--eval", "attack=syn.csv"]) == 2
    assert "--eval: only for eval --dataset flows" in capsys.readouterr().err
    assert main(["eval", "--dataset", "flows", "--bundle", "bundle", "--input", "site-a.csv", "--input",
                 "site-b.csv"]) == 2
    assert "no labelled sets to evaluate on" in capsys.readouterr().err


def test_netanom_is_found_or_named(tmp_path, monkeypatch):
    from netanom_models import DataError
    from netanom_models.eval_sets import find_netanom

    exe = _fake_netanom(tmp_path, flow_rows(1, "attack", 1))
    monkeypatch.setenv("NETANOM_BIN", str(exe))
    assert find_netanom(None) == exe
    monkeypatch.setenv("NETANOM_BIN", str(tmp_path / "none"))
    with pytest.raises(DataError, match="cargo xtask build"):
        find_netanom(None)
    assert os.access(find_netanom(exe), os.X_OK)


SHIPPED_FLOWS = [d for d in sorted((datasets.MODELS_DIR / "bundles").glob("*"))
                 if (d / "manifest.json").is_file()
                 and json.loads((d / "manifest.json").read_text())["training_data"].get("kind") == "flows"]


@pytest.mark.parametrize("bundle", SHIPPED_FLOWS, ids=[d.name for d in SHIPPED_FLOWS])
def test_shipped_flows_bundles_match_the_current_rust_schema(bundle):
    """Fails when netanom/src/features/flow.rs changes a feature a flows bundle takes: retrain it (the
    commands are in models/README.md)."""
    man = json.loads((bundle / "manifest.json").read_text())
    assert flows.schema_problems(man, schema.load_schema()) == []
    assert man["features"] == flow_feature_names()
