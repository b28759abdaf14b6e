"""ONNX export: every graph takes the raw float32 vector "input" [batch, n_features] and
returns one float32 tensor "score" [batch] (higher = more anomalous)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
ML_OPSET = 3
INPUT_NAME = "input"
OUTPUT_NAME = "score"
BATCH_DIM = "batch"


def io_spec(n_features: int) -> dict:
    return {
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [BATCH_DIM, n_features]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [BATCH_DIM]},
    }


def serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


def snap_tree_thresholds(forest) -> None:
    """Rounds every split threshold of a fitted sklearn forest DOWN to float32, in place.

    sklearn compares float32 inputs with float64 thresholds; ONNX tree ensembles store float32
    thresholds (rounded to nearest), which can send a value equal to the rounded threshold
    the other way. For a float32 x, `x <= t` iff `x <= largest float32 <= t`, so after this
    the sklearn model predicts exactly as before, and ONNX agrees with it bit for bit.
    """
    for est in forest.estimators_:
        tree = est.tree_
        thr = tree.threshold  # a writable view of the tree's node array
        inner = tree.children_left != -1
        t32 = thr[inner].astype(np.float32)
        up = t32.astype(np.float64) > thr[inner]
        t32[up] = np.nextafter(t32[up], np.float32(-np.inf))
        thr[inner] = t32.astype(np.float64)
        if not np.array_equal(tree.threshold[inner], t32.astype(np.float64)):
            raise RuntimeError("could not rewrite the tree thresholds in place")


def _strip(model: onnx.ModelProto) -> None:
    """Removes debugging metadata (source paths, stack traces) so that bytes depend only on
    the model."""
    def clean_graph(g: onnx.GraphProto) -> None:
        g.doc_string = ""
        for n in g.node:
            n.doc_string = ""
            del n.metadata_props[:]
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    clean_graph(a.g)
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            vi.doc_string = ""
            del vi.metadata_props[:]
        for init in g.initializer:
            init.doc_string = ""
            del init.metadata_props[:]
        del g.metadata_props[:]

    model.doc_string = ""
    del model.metadata_props[:]
    clean_graph(model.graph)
    for f in model.functions:
        del f.metadata_props[:]
        f.doc_string = ""


def _prune(graph: onnx.GraphProto, outputs: list[str]) -> None:
    needed = set(outputs)
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    vis = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(vis)


def _set_io(model: onnx.ModelProto, n_features: int) -> None:
    g = model.graph
    assert len(g.input) == 1
    if g.input[0].name != INPUT_NAME:
        raise RuntimeError(f"unexpected input name {g.input[0].name!r}")
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, n_features]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM]))


def _finish(model: onnx.ModelProto, n_features: int, name: str) -> bytes:
    _set_io(model, n_features)
    _prune(model.graph, [OUTPUT_NAME])
    _strip(model)
    # One opset entry per domain (skl2onnx can list the default domain twice).
    versions: dict[str, int] = {}
    for op in model.opset_import:
        versions[op.domain] = max(versions.get(op.domain, 0), op.version)
    del model.opset_import[:]
    for domain in sorted(versions):
        model.opset_import.append(helper.make_opsetid(domain, versions[domain]))
    model.graph.name = name
    model.producer_name = "netanom_models"
    model.producer_version = ""
    model.model_version = 1
    onnx.checker.check_model(model, full_check=True)
    return serialize(model)


# ---- autoencoder --------------------------------------------------------------------------
def export_autoencoder(scorer, n_features: int) -> bytes:
    """torch.onnx.export (dynamo exporter, opset 18) of a ScoringAutoEncoder."""
    import torch

    scorer.eval()
    example = (torch.zeros(2, n_features, dtype=torch.float32),)
    batch = torch.export.Dim(BATCH_DIM)
    sink = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                scorer,
                example,
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                optimize=True,
                verbose=False,
                report=False,
            )
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
    model = program.model_proto
    # The dynamo exporter may keep weights as external data for big models; ours are tiny.
    for init in model.graph.initializer:
        if init.data_location == TensorProto.EXTERNAL:
            raise RuntimeError("autoencoder export produced external data")
    return _finish(model, n_features, "netanom_autoencoder")


# ---- forests ------------------------------------------------------------------------------
def _convert_sklearn(model, n_features: int, options: dict) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_sklearn(
            model,
            name="netanom",
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
            options={id(model): options},
        )


LOGGED = "netanom_logged"


def _signed_log1p_nodes(log_mask: np.ndarray, out_name: str = LOGGED) -> tuple[list, list]:
    """Nodes + initializers computing out = where(mask, sign(x) * ln(1 + |x|), x) from INPUT_NAME."""
    inits = [
        numpy_helper.from_array(np.asarray(log_mask, dtype=bool), "netanom_log_mask"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "netanom_one"),
    ]
    nodes = [
        helper.make_node("Abs", [INPUT_NAME], ["netanom_abs"], name="netanom_abs"),
        helper.make_node("Add", ["netanom_abs", "netanom_one"], ["netanom_abs1"], name="netanom_abs1"),
        helper.make_node("Log", ["netanom_abs1"], ["netanom_log"], name="netanom_log"),
        helper.make_node("Sign", [INPUT_NAME], ["netanom_sign"], name="netanom_sign"),
        helper.make_node("Mul", ["netanom_sign", "netanom_log"], ["netanom_slog"], name="netanom_slog"),
        helper.make_node("Where", ["netanom_log_mask", "netanom_slog", INPUT_NAME], [out_name], name="netanom_where"),
    ]
    return nodes, inits


def signed_log1p_onnx(x: np.ndarray, log_mask: np.ndarray) -> np.ndarray:
    """Runs the graph prefix that iforest.onnx applies (signed log1p on the mask) with
    onnxruntime, so the forest is fitted on exactly the values its graph will compute."""
    n = x.shape[1]
    nodes, inits = _signed_log1p_nodes(log_mask, "out")
    g = helper.make_graph(nodes, "netanom_slog", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, n])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    return session(serialize(m)).run(["out"], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def export_iforest(iforest, n_features: int, log_mask: np.ndarray | None = None) -> bytes:
    """score = -score_samples (higher = more anomalous), shape [batch]. With `log_mask`, the
    graph first applies signed log1p to the masked elements (the forest was fitted on those)."""
    m = _convert_sklearn(iforest, n_features, {"score_samples": True})
    outs = [o.name for o in m.graph.output]
    if len(outs) != 3:
        raise RuntimeError(f"unexpected IsolationForest ONNX outputs {outs}")
    g = m.graph
    if log_mask is not None and np.any(log_mask):
        for node in g.node:
            for i, name in enumerate(node.input):
                if name == INPUT_NAME:
                    node.input[i] = LOGGED
        nodes, inits = _signed_log1p_nodes(log_mask)
        rest = list(g.node)
        del g.node[:]
        g.node.extend(nodes + rest)
        g.initializer.extend(inits)
    g.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "netanom_flat_shape"))
    g.node.append(helper.make_node("Neg", [outs[2]], ["netanom_neg_score"], name="netanom_neg"))
    g.node.append(
        helper.make_node("Reshape", ["netanom_neg_score", "netanom_flat_shape"], [OUTPUT_NAME], name="netanom_flatten")
    )
    return _finish(m, n_features, "netanom_iforest")


def export_rf(rf, n_features: int) -> bytes:
    """score = P(attack) = probabilities[:, 1] (zipmap disabled), shape [batch]."""
    if list(rf.classes_) != [0, 1]:
        raise RuntimeError(f"random forest classes must be [0, 1], got {list(rf.classes_)}")
    m = _convert_sklearn(rf, n_features, {"zipmap": False})
    outs = [o.name for o in m.graph.output]
    if len(outs) != 2:
        raise RuntimeError(f"unexpected RandomForest ONNX outputs {outs}")
    g = m.graph
    g.initializer.append(numpy_helper.from_array(np.array(1, dtype=np.int64), "netanom_attack_class"))
    g.node.append(
        helper.make_node("Gather", [outs[1], "netanom_attack_class"], [OUTPUT_NAME], name="netanom_p_attack", axis=1)
    )
    return _finish(m, n_features, "netanom_rf")


# ---- running ------------------------------------------------------------------------------
def session(model_bytes: bytes, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])


def run_scores(sess, raw: np.ndarray, batch: int = 65536) -> np.ndarray:
    out = np.empty(raw.shape[0], dtype=np.float32)
    for i in range(0, raw.shape[0], batch):
        out[i : i + batch] = sess.run([OUTPUT_NAME], {INPUT_NAME: raw[i : i + batch]})[0]
    return out
