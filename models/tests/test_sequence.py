"""The sequence model on a small synthetic stratosphere-letters file: loading, the split by
channel, training, the ONNX graph, the bundle part and its parity rows, the report, the
command line. The shipped part's parity rows are replayed too."""

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from netanom_models import DataError
from netanom_models import letters as L
from netanom_models import sequence_baselines as B
from netanom_models import sequence_data as D
from netanom_models import sequence_export as X
from netanom_models import sequence_model as M
from netanom_models import sequence_part as P
from netanom_models.__main__ import main

MODELS = Path(__file__).resolve().parent.parent
EPOCHS = 2


def _flows(kind: str, n: int, rng) -> list[L.Flow]:
    t, out = 1.7e9 + rng.uniform(0, 1e4), []
    for _ in range(n):
        if kind == "beacon":  # C&C: every 30 s +- 2 %, same small exchange
            out.append(L.Flow(t, 0.05, 300))
            t += 30.0 * rng.uniform(0.98, 1.02)
        elif kind == "dns-burst":
            out.append(L.Flow(t, 0.01, int(rng.integers(60, 200))))
            t += 2.0 * rng.uniform(0.9, 1.1)
        elif kind == "browse":  # irregular, big, long
            out.append(L.Flow(t, float(rng.lognormal(1.5, 1.0)), int(rng.lognormal(9, 1))))
            t += float(rng.lognormal(3, 2))
        else:  # normal DNS: irregular small
            out.append(L.Flow(t, 0.02, int(rng.integers(60, 400))))
            t += float(rng.lognormal(4, 2))
    return out


FAMILIES = [("From-Botnet-TCP-HTTP-CC.Beacon", "beacon", "80-tcp"), ("From-Botnet-UDP-DNS-", "dns-burst", "53-udp"),
            ("From-Normal-TCP-HTTP-Webpage", "browse", "80-tcp"), ("From-Normal-UDP-DNS-", "dns", "53-udp")]


def synthetic_text(per_family: int = 45, seed: int = 3) -> str:
    rng = np.random.default_rng(seed)
    lines, k = [], 0
    for f, (fam, kind, port) in enumerate(FAMILIES):
        for j in range(per_family):
            n = int(rng.choice([1, 2, 3, 5, 8, 20]))
            letters = "".join(L.encode(_flows(kind, n, rng)))
            host = j // 2 if kind == "beacon" else j  # beacon 4-tuples repeat: two lines each
            chan = f"\x1b[36m10.0.{k % 7}.2-198.18.{f}.{host}-{port}\x1b[0m"
            lines.append(f"[{k}] | {fam}-{j + 1} | {chan} | {letters}")
            k += 1
    lines.append(f"[ ] From-Normal-UDP-DNS--999 | \x1b[36m10.0.9.9-198.18.9.9-53-udp\x1b[0m | 22.a.")
    lines.append("From-Botnet-UDP-DNS--998 | \x1b[36m10.0.9.8-198.18.9.8-53-udp\x1b[0m | 11.a.a.")
    lines.append(f"[{k}] |  | \x1b[36m10.0.9.7-198.18.9.7-53-udp\x1b[0m | 1")  # unlabelled
    lines.append(lines[0])  # exact duplicate
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def letters_data(shared) -> str:
    d = shared / "datasets" / D.FOLDER
    d.mkdir(parents=True, exist_ok=True)
    text = synthetic_text()
    (d / D.FILE).write_bytes(gzip.compress(text.encode(), mtime=0))
    return text


@pytest.fixture(scope="module")
def part(letters_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seqpart")
    (out / "manifest.json").write_text('{"flow": "bundle"}')  # a flow bundle's file: left alone
    from netanom_models.sequence_train import train_part

    train_part(out, max_epochs=EPOCHS, quiet=True, ch=D.parse(letters_data))
    return out


def test_parse_reads_every_line_form(letters_data):
    ch = D.parse(letters_data)
    assert len(ch) == 4 * 45 + 2
    assert ch.stats["unlabelled"] == 1 and ch.stats["duplicates"] == 1 and ch.stats["bad_lines"] == 0
    assert ch.label[-1] == "From-Botnet-UDP-DNS--998" and ch.channel[-1] == "10.0.9.8-198.18.9.8-53-udp"
    assert ch.label[-2] == "From-Normal-UDP-DNS--999"
    assert set(ch.family) == {"malicious TCP-HTTP", "malicious UDP-DNS", "normal TCP-HTTP", "normal UDP-DNS"}
    assert int(ch.is_cc.sum()) == 45
    assert D.holdout_families(ch)[-1] == D.CC_FAMILY
    assert list(ch.flows[:1]) == [len(L.split_symbols(ch.letters[0]))]


@pytest.mark.parametrize("text, message", [
    ("[1] | From-Botnet-X-Y-1 | a-b-1-tcp | 2!\n", "line 1: character '!'"),
    ("[1] |  | a-b-1-tcp | 22\n", "no labelled channels"),
    ("[1] | From-Botnet-X-Y-1 | a-b-1-tcp | 22\n", "both malicious and normal"),
])
def test_bad_letters_files_are_named_errors(text, message):
    with pytest.raises(DataError, match=message):
        D.parse(text)


def test_split_keeps_each_4tuple_in_one_part(letters_data):
    ch = D.parse(letters_data)
    sp = D.split_by_channel(ch)
    assert sorted(np.concatenate(list(sp.values())).tolist()) == list(range(len(ch)))
    owners = {}
    for part, idx in sp.items():
        for i in idx:
            assert owners.setdefault(ch.channel[i], part) == part
    for part in sp:
        assert 0 < ch.y[sp[part]].mean() < 1


def test_part_files_manifest_and_parity(part):
    assert (part / "manifest.json").read_text() == '{"flow": "bundle"}'
    man = json.loads((part / P.MANIFEST).read_text())
    assert man["part"] == "sequence" and man["part_format_version"] == P.PART_FORMAT_VERSION
    blob = (part / P.ONNX_FILE).read_bytes()
    assert man["model"]["sha256"] == hashlib.sha256(blob).hexdigest() and man["model"]["bytes"] == len(blob)
    assert man["encoding"]["alphabet"] == L.ALPHABET
    assert man["encoding"]["index"]["1"] == 1 and man["encoding"]["index"]["0"] == 50
    assert [i["name"] for i in man["graph"]["inputs"]] == ["letters", "lengths"]
    assert man["scoring"]["min_flows"] == P.MIN_FLOWS and 0.0 <= man["scoring"]["threshold"] <= 1.0
    assert man["window"]["max_len"] == M.SEQUENCE["max_len"]
    assert man["training"]["epochs_run"] <= EPOCHS
    res = P.check_parity(part)
    assert res["rows"] == res["bit_identical"] == man["parity"]["rows"] > 9


def test_parity_catches_a_changed_score_and_a_changed_graph(part, tmp_path):
    d = tmp_path / "p"
    shutil.copytree(part, d)
    lines = (d / P.PARITY_FILE).read_text().splitlines()
    cells = lines[1].split("\t")
    moved = np.float32(float(cells[3]) + 0.01)  # one score, 0.01 away
    cells[3], cells[4] = repr(float(moved)), f"{moved.view(np.uint32):08x}"
    lines[1] = "\t".join(cells)
    (d / P.PARITY_FILE).write_text("\n".join(lines) + "\n")
    man = json.loads((d / P.MANIFEST).read_text())
    man["parity"]["sha256"] = hashlib.sha256((d / P.PARITY_FILE).read_bytes()).hexdigest()
    (d / P.MANIFEST).write_text(json.dumps(man))
    with pytest.raises(AssertionError, match="score of"):
        P.check_parity(d)
    (d / P.ONNX_FILE).write_bytes((d / P.ONNX_FILE).read_bytes() + b"\0")
    with pytest.raises(DataError, match="sha256 or size differs"):
        P.load_part(d)


def test_same_inputs_give_the_same_files(part, letters_data, tmp_path):
    from netanom_models.sequence_train import train_part

    train_part(tmp_path, max_epochs=EPOCHS, quiet=True, ch=D.parse(letters_data))
    for f in (P.MANIFEST, P.ONNX_FILE, P.PARITY_FILE):
        assert (tmp_path / f).read_bytes() == (part / f).read_bytes(), f


def test_graph_equals_torch_and_ignores_padding(letters_data):
    ch = D.parse(letters_data)
    texts = [M.window_text(ch.symbols(i), 500) for i in range(len(ch))]
    samples = M.channel_samples([ch.symbols(i) for i in range(0, len(ch), 2)], ch.y[::2], 500, 2,
                                np.random.default_rng(0))
    trained = M.train(samples, texts[1::2], ch.y[1::2], {"max_epochs": 1})
    sess = X.session(X.export_onnx(trained.model))
    one = X.scores_one_by_one(sess, texts)
    np.testing.assert_allclose(one, M.torch_scores(trained.model, texts), rtol=0, atol=2e-6)
    np.testing.assert_allclose(X.scores_batched(sess, texts), one, rtol=0, atol=1e-6)
    idx, lengths = M.index_matrix(texts[:20])
    noisy = np.where(np.arange(idx.shape[1])[None, :] >= lengths[:, None], 7, idx)
    run = lambda i: sess.run([X.OUTPUT], {X.LETTERS_INPUT: i, X.LENGTHS_INPUT: lengths})[0]  # noqa: E731
    assert np.array_equal(run(idx), run(noisy))
    assert not np.array_equal(one[:20], np.full(20, one[0]))  # the model tells rows apart


def test_baselines():
    beacon = L.encode([L.Flow(30.0 * k, 0.05, 300) for k in range(10)])
    assert B.periodicity_score(beacon) == 1.0
    assert B.periodicity_score(beacon[:2]) == 0.0
    mixed = beacon[:3] + L.encode([L.Flow(0, 0, 5000), L.Flow(1, 0, 5000), L.Flow(500, 0, 5000)])
    assert 0.0 < B.periodicity_score(mixed) < 1.0
    y = np.array([0, 0, 1, 1])
    assert B.youden_threshold(np.array([0.1, 0.2, 0.7, 0.9]), y) == pytest.approx(0.7, abs=0.5)
    t = B.youden_threshold(np.array([0.1, 0.2, 0.7, 0.9]), y)
    assert B.metrics(np.array([0.1, 0.2, 0.7, 0.9]), y, t)["accuracy"] == 1.0
    table = B.PerFlowTable([["2"], ["9"]], np.array([1, 0]))
    s = table.scores([["2"], ["9"]])
    assert s[0] > 0.5 > s[1]


def test_eval_writes_the_report(part, letters_data, tmp_path):
    from netanom_models.sequence_report import evaluate_part

    res = evaluate_part(part, tmp_path, families=2, max_epochs=1, quiet=True, ch=D.parse(letters_data))
    md = (tmp_path / "stratosphere-letters.md").read_text()
    for s in ("## Summary", "## Held-out test split", "## Families held out", "## The flow ensemble",
              "periodicity rule", "per-flow view"):
        assert s in md
    for f in ("test-curves", "test-hist", "families"):
        assert (tmp_path / f"stratosphere-letters-{f}.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "stratosphere-letters.json").read_text())
    assert len(saved["families"]) == 2 and saved["parity_rows_checked"]["rows"] > 0
    assert set(saved["held_out"]["methods"]["lstm"]) == {"all", "1", "2-4", "5+"}
    assert res["encoding_check"]["lines_with_violations"] == 0


def test_cli_train_and_clean_errors(part, letters_data, tmp_path, capsys):
    assert main(["train", "--dataset", "stratosphere-letters", "--out", str(tmp_path / "b"),
                 "--max-epochs", "1"]) == 0
    assert (tmp_path / "b" / P.MANIFEST).is_file()
    assert main(["eval", "--dataset", "stratosphere-letters", "--bundle", str(tmp_path / "none")]) == 2
    assert "run `train --dataset stratosphere-letters` first" in capsys.readouterr().err


def test_cli_missing_data_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETANOM_SHARED", str(tmp_path))
    assert main(["train", "--dataset", "stratosphere-letters", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "dataset folder not found" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "stratosphere-letters", "--max-epochs", "0"])


@pytest.mark.skipif(not (MODELS / "default" / P.MANIFEST).is_file(), reason="no shipped sequence part")
def test_shipped_part_parity():
    assert P.check_parity(MODELS / "default")["rows"] == P.PARITY_ROWS
