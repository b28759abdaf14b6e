"""The sequence model as ONNX, built node by node from the trained weights.

Graph (opset 18, default domain only):

    letters int64 [batch, seq]  (model indices, 0 = padding, right-padded)
    lengths int64 [batch]       (real characters per row, 1..seq)
      Gather(embedding, letters)            -> [batch, seq, E]
      Transpose(1, 0, 2)                    -> [seq, batch, E]
      LSTM(..., sequence_lens=int32(lengths)) -> Y_h [1, batch, H]: the hidden state after
                                               each row's last real character
      Squeeze, MatMul, Add, Squeeze, Sigmoid -> score float32 [batch]

Building it by hand (not through the torch exporter) keeps the bytes a function of the
weights alone, and uses the ONNX LSTM's own ``sequence_lens``, so padding never reaches the
state and a row's score does not depend on how far it was padded.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import export
from .sequence_model import index_matrix

OPSET = 18
LETTERS_INPUT = "letters"
LENGTHS_INPUT = "lengths"
OUTPUT = "score"
BATCH, SEQ = "batch", "seq"
#: torch packs the LSTM gates (i, f, g, o); ONNX wants (i, o, f, c).
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)


def io_spec() -> dict:
    return {
        "inputs": [
            {"name": LETTERS_INPUT, "dtype": "int64", "shape": [BATCH, SEQ],
             "meaning": "model indices of the window's characters, oldest first; 0 after the row's length"},
            {"name": LENGTHS_INPUT, "dtype": "int64", "shape": [BATCH],
             "meaning": "characters in each row's window, 1..seq"},
        ],
        "output": {"name": OUTPUT, "dtype": "float32", "shape": [BATCH],
                   "meaning": "P(C&C / malicious channel), higher = more C&C-like"},
    }


def _gates(w: np.ndarray, hidden: int) -> np.ndarray:
    chunks = [w[k * hidden : (k + 1) * hidden] for k in range(4)]
    return np.concatenate([chunks[k] for k in TORCH_TO_ONNX_GATES], axis=0)


def _weights(model) -> dict[str, np.ndarray]:
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    hidden = sd["lstm.weight_hh_l0"].shape[1]
    return {
        "embedding": sd["embedding.weight"],
        "lstm_w": _gates(sd["lstm.weight_ih_l0"], hidden)[None],
        "lstm_r": _gates(sd["lstm.weight_hh_l0"], hidden)[None],
        "lstm_b": np.concatenate([_gates(sd["lstm.bias_ih_l0"], hidden), _gates(sd["lstm.bias_hh_l0"], hidden)])[None],
        "head_w": sd["head.weight"].T.copy(),  # [H, 1]
        "head_b": sd["head.bias"],  # [1]
        "axis0": np.array([0], dtype=np.int64),
        "axis1": np.array([1], dtype=np.int64),
    }


def export_onnx(model) -> bytes:
    w = _weights(model)
    hidden = w["lstm_r"].shape[2]
    nodes = [
        helper.make_node("Gather", ["embedding", LETTERS_INPUT], ["x_bte"], name="embed", axis=0),
        helper.make_node("Transpose", ["x_bte"], ["x_tbe"], name="time_major", perm=[1, 0, 2]),
        helper.make_node("Cast", [LENGTHS_INPUT], ["seq_lens"], name="lengths_i32", to=TensorProto.INT32),
        helper.make_node("LSTM", ["x_tbe", "lstm_w", "lstm_r", "lstm_b", "seq_lens"], ["", "y_h"], name="lstm",
                         hidden_size=hidden, direction="forward"),
        helper.make_node("Squeeze", ["y_h", "axis0"], ["h"], name="last_hidden"),
        helper.make_node("MatMul", ["h", "head_w"], ["hw"], name="head_matmul"),
        helper.make_node("Add", ["hw", "head_b"], ["logit2"], name="head_bias"),
        helper.make_node("Squeeze", ["logit2", "axis1"], ["logit"], name="logit"),
        helper.make_node("Sigmoid", ["logit"], [OUTPUT], name="score"),
    ]
    inits = [numpy_helper.from_array(v, name=k) for k, v in w.items()]
    graph = helper.make_graph(
        nodes, "netanom_sequence",
        [helper.make_tensor_value_info(LETTERS_INPUT, TensorProto.INT64, [BATCH, SEQ]),
         helper.make_tensor_value_info(LENGTHS_INPUT, TensorProto.INT64, [BATCH])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [BATCH])],
        initializer=inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="netanom_models",
                          model_version=1)
    m.ir_version = 9  # ONNX Runtime 1.31 reads IR <= 10; 9 is what opset 18 needs
    onnx.checker.check_model(m, full_check=True)
    return export.serialize(m)


def session(blob: bytes):
    return export.session(blob)


def scores_one_by_one(sess, texts: list[str]) -> np.ndarray:
    """One row per run (batch 1, seq = the row's length): how the parity rows are scored."""
    out = np.empty(len(texts), dtype=np.float32)
    for i, t in enumerate(texts):
        idx, lengths = index_matrix([t])
        out[i] = sess.run([OUTPUT], {LETTERS_INPUT: idx, LENGTHS_INPUT: lengths})[0][0]
    return out


def scores_batched(sess, texts: list[str], batch: int = 256) -> np.ndarray:
    """Rows of similar length together, each batch padded to its longest row."""
    idx, lengths = index_matrix(texts)
    order = np.argsort(lengths, kind="stable")
    out = np.empty(len(texts), dtype=np.float32)
    for s in range(0, len(order), batch):
        rows = order[s : s + batch]
        width = int(lengths[rows].max())
        out[rows] = sess.run([OUTPUT], {LETTERS_INPUT: idx[rows, :width], LENGTHS_INPUT: lengths[rows]})[0]
    return out
