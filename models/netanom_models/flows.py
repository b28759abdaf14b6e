"""`--dataset flows`: bundles trained on the site's own traffic.

The input is one or more CSV files exported by ``netanom run --flows-out`` or ``netanom
features``: the identity columns (Flow ID, Src IP, ...), the FLOW_FEATURES values and End
Reason (netanom/src/features/flow.rs, ``csv_header``). The model inputs are **every**
FLOW_FEATURES entry, by name, in schema order: the flows were computed by netanom itself, so
each feature means exactly what the live agent computes (no CIC matching is involved), and
the bundle binds strictly to the live flow vector. Count units (schema.LOG_UNITS) get the
signed log1p step inside the autoencoder and Isolation Forest graphs, as in the CIC bundle.

There are no labels: the autoencoder and the Isolation Forest learn the flows as normal, and
the Random Forest learns Isolation Forest pseudo-labels (architecture.PSEUDO_LABEL_SHARE).
The flows are split per input file (so each file contributes its share to every part) into
fit, calibration and a held-out test part (FLOWS_SPLIT) that `eval` scores.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from . import DataError
from .datasets import DatasetSpec
from .tabular import TabularFormat

#: Per input file: fit (autoencoder, Isolation Forest, Random Forest), calibration (early
#: stopping and the thresholds) and test (held out; `eval`'s "held-out flows"). There are no
#: labels, so there is no validation part to choose an ensemble rule on. The attack fractions
#: are never used (every flow is taken as normal) but the splitter needs both groups.
FLOWS_SPLIT = {
    "normal": {"fit": 0.60, "calibration": 0.20, "validation": 0.0, "test": 0.20},
    "attack": {"fit": 0.60, "calibration": 0.20, "validation": 0.0, "test": 0.20},
}
#: The name of a flows bundle (manifest `dataset`, default folder models/bundles/<name>) unless
#: --name gives one.
DEFAULT_NAME = "flows"


def feature_names() -> tuple[list[str], list[str], dict]:
    """(model inputs: every FLOW_FEATURES name, the ones in count units, the manifest's
    `feature_schema` entry)."""
    from . import schema

    feats = schema.load_schema()
    return [f.name for f in feats], [f.name for f in feats if f.unit in schema.LOG_UNITS], schema_entry(feats)


def schema_entry(feats) -> dict:
    from . import schema

    return {
        "source": "netanom/src/features/flow.rs (FLOW_FEATURES), cross-checked with netanom/FEATURES.md",
        "n_flow_features": len(feats),
        "schema_sha256": schema.schema_digest(feats),
        "flow_features": [{"index": f.index, "name": f.name, "unit": f.unit, "cic": f.cic} for f in feats],
        "selection_rule": ("every FLOW_FEATURES entry, in schema order: the training flows were computed by "
                           "netanom (netanom features / netanom run --flows-out), exactly as live"),
        "used": [f.name for f in feats],
        "used_fingerprints": [schema.feature_fingerprint(f) for f in feats],
        "used_flow_feature_index": [f.index for f in feats],
        "excluded": {},
        "log_units": sorted(schema.LOG_UNITS),
        "rust_usage": ("the agent computes its FLOW_FEATURES vector and picks the `used` names, in this "
                       "order, by name (indices are informative: they are those of this schema version)"),
    }


def schema_problems(manifest: dict, feats) -> list[str]:
    """Why a flows bundle no longer fits the schema `feats` (empty: it fits): an input gone or
    redefined, or moved to another index."""
    from . import schema

    now = {f.name: f for f in feats}
    fs = manifest["feature_schema"]
    problems = []
    for old in fs["used_fingerprints"]:
        f = now.get(old["name"])
        if f is None:
            problems.append(f"feature {old['name']!r} is no longer in FLOW_FEATURES; retrain")
        elif schema.feature_fingerprint(f) != old:
            changed = [k for k in old if old[k] != schema.feature_fingerprint(f)[k]]
            problems.append(f"feature {f.name!r} changed its {', '.join(changed)} in features/flow.rs; retrain")
    if not problems and [now[n].index for n in fs["used"]] != fs["used_flow_feature_index"]:
        problems.append("FLOW_FEATURES indices of the bundle's inputs moved; retrain")
    return problems


def flow_format(names: list[str]) -> TabularFormat:
    """A flow CSV: a header row holding (at least) the FLOW_FEATURES names; the identity columns
    and End Reason are read but are not inputs."""
    return TabularFormat(header=True, features=tuple(names), label=None)


def flows_spec(inputs: list[Path], name: str | None = None, names: list[str] | None = None) -> DatasetSpec:
    """The flows data set over `inputs`; `names`: the inputs (default: every FLOW_FEATURES name
    now; `eval` passes the bundle's)."""
    if not inputs:
        raise DataError("--dataset flows needs --input FILE.csv (flows from `netanom features` or "
                        "`netanom run --flows-out`)")
    if names is None:
        names = feature_names()[0]
    return DatasetSpec(
        name=name or DEFAULT_NAME,
        folder="",
        train_file=", ".join(Path(p).name for p in inputs),
        test_files=(),
        trailing=(),
        dedup_train=False,
        field_name_folders=(),
        has_labels=False,
        kind="flows",
        inputs=tuple(Path(p) for p in inputs),
        fmt=flow_format(names),
    )


def with_inputs(spec: DatasetSpec, names: list[str]) -> DatasetSpec:
    return replace(spec, fmt=flow_format(names))
