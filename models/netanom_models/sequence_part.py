"""The sequence model's bundle part: ``sequence.onnx``, its manifest ``sequence.json`` and its
parity rows ``sequence-parity.tsv``, written beside a flow bundle without touching its files.

``sequence.json`` holds everything a scorer outside Python needs: the encoding (alphabet ->
index, class edges, the letter table), the window (``max_len``), when to score
(``min_flows``), the decision (``score > threshold``), the graph's inputs and output, and the
ONNX file's sha256 and size. ``sequence-parity.tsv`` holds windows with their indices and the
scores onnxruntime gave them one row at a time, as float32 bit patterns too.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from . import DataError
from . import letters as L
from . import sequence_export as X
from . import sequence_model as M

PART_FORMAT_VERSION = 1
MANIFEST = "sequence.json"
ONNX_FILE = "sequence.onnx"
PARITY_FILE = "sequence-parity.tsv"
PARITY_COLUMNS = ("letters", "length", "indices", "score", "score_f32_bits", "flagged")
PARITY_ROWS = 64
PARITY_SEED = 20_260_515
#: Flows a channel needs before it is scored: the third flow is the first whose letter holds
#: a periodicity class (the first two only say "no previous gaps").
MIN_FLOWS = 3
THRESHOLD_RULE = ("the validation channels' score with the largest TPR - FPR (Youden's J); ties to the larger "
                  "threshold; a window is flagged when score > threshold")


def encoding_spec() -> dict:
    return {
        "name": "stratosphere-letters",
        "python": "models/netanom_models/letters.py",
        "rust": "netanom/src/letters.rs",
        "channel": "the flows from one inside host to one remote host, remote port and protocol, in start-time "
                   "order",
        "symbol": "zeros + letter + gap, one per flow",
        "letter": "letters[periodicity][3 * (size - 1) + (duration - 1)]",
        "letters": {str(p): row for p, row in L.LETTERS.items()},
        "size_edges_bytes": list(L.SIZE_EDGES),
        "size": "class 1 when total bytes (both directions) <= edge 0, 2 when <= edge 1, else 3",
        "duration_edges_s": list(L.DURATION_EDGES),
        "duration": "class 1 when seconds <= edge 0, 2 when <= edge 1, else 3",
        "periodicity_edges": list(L.PERIODICITY_EDGES),
        "periodicity": "T2 = this flow's start - the previous flow's start, T1 = the gap before that; class 0 "
                       "(letters[0]) without T1 (the first two flows); else ratio = max(T1,T2) / min(T1,T2): "
                       "1 when min is 0 or ratio <= edge 0, 2 when <= edge 1, 3 when <= edge 2, else 4",
        "gap_symbols": [[b, s] for b, s in L.GAP_SYMBOLS],
        "gap": "after the letter: the first symbol whose bound (s) >= T2; none when T2 is above the last bound or "
               "for the first flow",
        "hour_s": L.HOUR_S,
        "max_hour_zeros": L.MAX_HOUR_ZEROS,
        "zeros": "before the letter, from the third flow on: min(floor(T2 / hour_s), max_hour_zeros) '0's",
        "out_of_order": "a flow that starts before the previous one is taken to start with it (T2 = 0)",
        "alphabet": L.ALPHABET,
        "index": {ch: i + 1 for i, ch in enumerate(L.ALPHABET)},
        "padding_index": 0,
    }


def parity_text(sess, texts: list[str], threshold: float) -> tuple[str, int]:
    scores = X.scores_one_by_one(sess, texts)
    out = io.StringIO()
    out.write("\t".join(PARITY_COLUMNS) + "\n")
    for t, s in zip(texts, scores):
        idx = " ".join(str(i) for i in L.indices(t))
        bits = f"{np.float32(s).view(np.uint32):08x}"
        out.write("\t".join([t, str(len(t)), idx, repr(float(s)), bits, str(int(float(s) > threshold))]) + "\n")
    return out.getvalue(), len(texts)


def parity_windows(windows: list[str], flows: np.ndarray, seed: int = PARITY_SEED) -> list[str]:
    """Every single-letter window, the longest window, and a seeded sample of the rest."""
    rng = np.random.default_rng(seed)
    chosen = list(L.LETTERS[0])  # each first-flow letter alone
    longest = max(range(len(windows)), key=lambda i: (len(windows[i]), -i))
    chosen.append(windows[longest])
    rest = [i for i in range(len(windows)) if i != longest and flows[i] >= 2]
    take = rng.choice(len(rest), size=min(PARITY_ROWS - len(chosen), len(rest)), replace=False)
    chosen += [windows[rest[j]] for j in sorted(take)]
    return chosen


def write_part(out_dir: Path, trained: M.Trained, threshold: float, validation: dict, parity_texts: list[str],
               operating_points: list[dict], extra: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    blob = X.export_onnx(trained.model)
    sess = X.session(blob)
    ptext, prow = parity_text(sess, parity_texts, threshold)
    (out_dir / ONNX_FILE).write_bytes(blob)
    (out_dir / PARITY_FILE).write_text(ptext)
    cfg = trained.cfg
    man = {
        "part": "sequence",
        "part_format_version": PART_FORMAT_VERSION,
        "what": "C&C beacon model: an LSTM over a channel's Stratosphere behavioural letters",
        "model": {
            "file": ONNX_FILE, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob),
            "opset": X.OPSET, "architecture": {"embedding": cfg["embedding"], "hidden": cfg["hidden"],
                                              "layers": 1, "direction": "forward", "head": "linear + sigmoid"},
            "parameters": M.n_parameters(trained.model),
        },
        "graph": X.io_spec(),
        "encoding": encoding_spec(),
        "window": {
            "max_len": cfg["max_len"],
            "rule": "the channel's most recent whole symbols whose characters fit in max_len; when the newest "
                    "symbol alone is longer, its last max_len characters (letters.tail_window, "
                    "letters::SymbolWindow)",
        },
        "scoring": {
            "min_flows": MIN_FLOWS,
            "when": "each time a channel with at least min_flows flows gets a flow: score its window",
            "threshold": threshold,
            "decision": "flag when score > threshold",
            "threshold_rule": THRESHOLD_RULE,
            "operating_points": operating_points,
        },
        "validation": validation,
        "training": {k: cfg[k] for k in sorted(cfg)} | {"best_epoch": trained.best_epoch,
                                                          "epochs_run": trained.epochs_run},
        "parity": {
            "file": PARITY_FILE, "rows": prow, "sha256": hashlib.sha256(ptext.encode()).hexdigest(),
            "columns": list(PARITY_COLUMNS),
            "how": "onnxruntime 1.31.1, CPU, one row per run (letters shape [1, length], lengths = [length]); score is "
                   "the float32 output (score_f32_bits: its IEEE-754 bits, hex); flagged = score > threshold",
        },
        "report": "models/reports/stratosphere-letters.md",
    } | extra
    (out_dir / MANIFEST).write_text(json.dumps(man, indent=2) + "\n")
    return man


def load_part(bundle_dir: Path) -> tuple[dict, object]:
    """(sequence.json, onnxruntime session); checks the ONNX file against the manifest."""
    mpath = bundle_dir / MANIFEST
    if not mpath.is_file():
        raise DataError(f"{mpath} not found: run `train --dataset stratosphere-letters` first")
    man = json.loads(mpath.read_text())
    if man.get("part_format_version") != PART_FORMAT_VERSION:
        raise DataError(f"{mpath}: part format {man.get('part_format_version')}, expected {PART_FORMAT_VERSION}")
    blob_path = bundle_dir / man["model"]["file"]
    if not blob_path.is_file():
        raise DataError(f"{blob_path} not found: retrain the sequence part")
    blob = blob_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != man["model"]["sha256"] or len(blob) != man["model"]["bytes"]:
        raise DataError(f"{blob_path}: sha256 or size differs from {MANIFEST}; retrain")
    return man, X.session(blob)


def check_parity(bundle_dir: Path, atol: float = 1e-6) -> dict:
    """Re-scores the parity rows from the part's files alone. Scores must agree within `atol`
    (onnxruntime's CPU kernels differ by instruction set; on the machine that wrote the file
    they are bit-identical) and every decision exactly; raises AssertionError otherwise."""
    man, sess = load_part(bundle_dir)
    p = man["parity"]
    text = (bundle_dir / p["file"]).read_text()
    assert hashlib.sha256(text.encode()).hexdigest() == p["sha256"], "sequence parity file changed"
    lines = text.splitlines()
    assert lines[0].split("\t") == p["columns"]
    index = man["encoding"]["index"]
    rows = [ln.split("\t") for ln in lines[1:]]
    got = X.scores_one_by_one(sess, [r[0] for r in rows])
    same = 0
    for r, s in zip(rows, got):
        assert [index[c] for c in r[0]] == [int(v) for v in r[2].split()], f"indices of {r[0]!r}"
        assert int(r[1]) == len(r[0])
        want = np.uint32(int(r[4], 16)).view(np.float32)
        assert abs(float(s) - float(want)) <= atol, f"score of {r[0]!r}: {s!r} != {r[3]}"
        assert int(r[5]) == int(float(s) > man["scoring"]["threshold"]), f"decision of {r[0]!r}"
        same += f"{np.float32(s).view(np.uint32):08x}" == r[4]
    return {"rows": len(rows), "bit_identical": int(same)}
