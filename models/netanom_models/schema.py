"""The agent's live flow-feature schema, read from the Rust sources at training time.

``netanom/src/features/flow.rs`` declares ``FLOW_FEATURES`` (name, unit, CicMatch, definition) in
model-input order; ``netanom/FEATURES.md`` carries the same table (a Rust unit test keeps the
two identical). Both are parsed here and must agree; nothing is copied by hand. The CIC-IDS2017
bundle (``models/default``) consumes a subset of these names, chosen by :func:`select_cic_features`,
and records both the schema and the choice in its manifest; ``tests/test_schema.py`` fails
when the Rust schema changes in a way that would make the bundle's inputs diverge.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from . import DataError
from .datasets import REPO_ROOT

FEATURES_RS = REPO_ROOT / "netanom" / "src" / "features" / "flow.rs"
FEATURES_MD = REPO_ROOT / "netanom" / "FEATURES.md"


@dataclass(frozen=True)
class Feature:
    index: int
    name: str
    unit: str
    #: "Exact", "Differs" or "NotInCic".
    cic: str
    #: The Differs explanation (resolved from a const when the source names one), else "".
    cic_note: str = ""
    #: The definition text.
    definition: str = ""


# One entry of the `features! { ... }` macro: "Name", "unit", CicMatch::Kind[(...)],
_ENTRY = re.compile(
    r'^\s*"((?:[^"\\]|\\.)*)",\s*"((?:[^"\\]|\\.)*)",\s*CicMatch::(Exact|NotInCic|Differs\(([^)]*)\))\s*,'
    r'\s*"((?:[^"\\]|\\.)*)",\s*\|',
    re.MULTILINE,
)
_CONST = re.compile(r'const\s+([A-Z0-9_]+)\s*:\s*&str\s*=\s*"((?:[^"\\]|\\.)*)"\s*;', re.DOTALL)


def _rust_str(s: str) -> str:
    """Un-escapes a Rust string literal body (line continuations, \\", \\\\)."""
    s = re.sub(r"\\\n\s*", "", s)
    return s.replace('\\"', '"').replace("\\\\", "\\")


def parse_features_rs(text: str) -> list[Feature]:
    start = text.find("features! {")
    if start < 0:
        raise DataError("features/flow.rs: no `features! {` block found (the schema moved? update models/netanom_models/schema.py)")
    # The block ends at the first line that is just "}" after the start.
    end = text.find("\n}\n", start)
    block = text[start : end if end > 0 else len(text)]
    # Every entry starts with a string literal followed by a unit literal; count them to make
    # sure the regex did not skip one it failed to parse.
    expected = len(re.findall(r'^\s*"(?:[^"\\]|\\.)*",\s*"(?:[^"\\]|\\.)*",\s*CicMatch::', block, re.MULTILINE))
    consts = {m.group(1): _rust_str(m.group(2)) for m in _CONST.finditer(text)}
    out = []
    for m in _ENTRY.finditer(block):
        kind = m.group(3)
        note = ""
        if kind.startswith("Differs"):
            arg = m.group(4).strip()
            note = _rust_str(arg[1:-1]) if arg.startswith('"') else consts.get(arg, arg)
            kind = "Differs"
        out.append(Feature(len(out), _rust_str(m.group(1)), _rust_str(m.group(2)), kind, note,
                           _rust_str(m.group(5))))
    if not out:
        raise DataError("features/flow.rs: the `features!` block has no entries the parser recognises")
    if len(out) != expected:
        raise DataError(f"features/flow.rs: parsed {len(out)} of {expected} `features!` entries (format changed? "
                        "update models/netanom_models/schema.py)")
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise DataError("features/flow.rs: duplicate feature names")
    return out


def parse_features_md(text: str) -> list[tuple[int, str, str, str]]:
    """(index, name, unit, kind) rows of the generated table in FEATURES.md."""
    a = text.find("<!-- BEGIN FLOW_FEATURES")
    b = text.find("<!-- END FLOW_FEATURES")
    if a < 0 or b < 0:
        raise DataError("FEATURES.md: no generated FLOW_FEATURES table")
    rows = []
    for line in text[a:b].splitlines():
        m = re.match(r"^\|\s*(\d+)\s*\|\s*`([^`]*)`\s*\|\s*([^|]*?)\s*\|.*\|\s*([^|]*?)\s*\|\s*$", line)
        if not m:
            continue
        cic = m.group(4)
        kind = "Exact" if cic == "same" else "NotInCic" if cic.startswith("ours") else "Differs" if cic.startswith("differs") else cic
        rows.append((int(m.group(1)), m.group(2), m.group(3), kind))
    return rows


def load_schema(rs_path: Path = FEATURES_RS, md_path: Path | None = FEATURES_MD) -> list[Feature]:
    """FLOW_FEATURES from features/flow.rs, cross-checked against FEATURES.md when it exists."""
    if not rs_path.is_file():
        raise DataError(f"feature schema not found: {rs_path}")
    feats = parse_features_rs(rs_path.read_text(encoding="utf-8"))
    if md_path is not None and md_path.is_file():
        md = parse_features_md(md_path.read_text(encoding="utf-8"))
        rs = [(f.index, f.name, f.unit, f.cic) for f in feats]
        if md != rs:
            diff = next((i for i, (x, y) in enumerate(zip(rs, md)) if x != y), min(len(rs), len(md)))
            raise DataError(
                f"{rs_path.name} and {md_path.name} disagree (first difference at feature {diff}: "
                f"{rs[diff] if diff < len(rs) else None} vs {md[diff] if diff < len(md) else None}); "
                "regenerate FEATURES.md (NETANOM_UPDATE_FEATURES_MD=1 cargo test -p netanom --lib features_md)"
            )
    return feats


def schema_digest(feats: list[Feature]) -> str:
    """sha256 over (name, unit, cic kind, definition) in order: changes whenever the schema does."""
    blob = json.dumps([[f.name, f.unit, f.cic, f.definition] for f in feats], ensure_ascii=True).encode()
    return hashlib.sha256(blob).hexdigest()


def feature_fingerprint(f: Feature) -> dict:
    """What a model input depends on: if any of this changes, the bundle must be retrained."""
    return {"name": f.name, "unit": f.unit, "cic": f.cic, "definition": f.definition}


# ---- the CIC-IDS2017 feature choice -------------------------------------------------------------
#: Differs features that are used anyway (name -> why the difference is negligible). Empty: the
#: only Differs feature, "Fwd Act Data Pkts", is off by one for most UDP flows (CIC does not
#: count the first packet), a systematic shift that the models would learn as a class signal.
ACCEPTED_DIFFERS: dict[str, str] = {}

#: Units that get x -> sign(x) * ln(1 + |x|) before the autoencoder's min-max scaling: counts,
#: sizes, times and rates, all heavy-tailed. Bounded codes and ratios are left linear.
LOG_UNITS = frozenset({"bytes", "bytes²", "bytes/s", "packets", "packets/s", "µs"})

#: Specific reasons for NotInCic features that have a CIC namesake of another spelling.
SPECIAL_EXCLUSIONS = {
    "protocol": ("NotInCic. CIC's `Protocol` is an identifier column, equal to ours for TCP/UDP/ICMP but 0 for "
                 "all other protocols (ours: the real number, e.g. 47, 58): a numeric split on it would "
                 "extrapolate arbitrarily live, and it is redundant (Fwd Seg Size Min is 8 for UDP, >= 20 for "
                 "TCP; ICMP Type is -1 for non-ICMP). Training keeps TCP and UDP rows only"),
}

EXCLUSION_REASONS = {
    "Differs": "definition differs from the CIC column (see the schema's explanation); not accepted in ACCEPTED_DIFFERS",
    "NotInCic": "not a CIC-IDS2017 column: no training data",
    "missing": "CicMatch::Exact, but the CIC CSV has no column of this name",
}


def select_cic_features(feats: list[Feature], cic_columns: list[str]) -> tuple[list[Feature], dict[str, str]]:
    """(features the CIC model consumes, in schema order; {excluded name: reason})."""
    cols = set(cic_columns)
    used, excluded = [], {}
    for f in feats:
        if f.cic == "Exact" and f.name in cols:
            used.append(f)
        elif f.cic == "Differs" and f.name in ACCEPTED_DIFFERS and f.name in cols:
            used.append(f)
        elif f.cic in ("Exact", "Differs") and f.name not in cols:
            excluded[f.name] = EXCLUSION_REASONS["missing"]
        else:
            excluded[f.name] = SPECIAL_EXCLUSIONS.get(f.name, EXCLUSION_REASONS[f.cic])
    if not used:
        raise DataError("no FLOW_FEATURES name matches a CIC column")
    return used, excluded


def manifest_entry(feats: list[Feature], used: list[Feature], excluded: dict[str, str],
                   cic_columns: list[str]) -> dict:
    return {
        "source": "netanom/src/features/flow.rs (FLOW_FEATURES), cross-checked with netanom/FEATURES.md",
        "n_flow_features": len(feats),
        "schema_sha256": schema_digest(feats),
        "flow_features": [{"index": f.index, "name": f.name, "unit": f.unit, "cic": f.cic} for f in feats],
        "selection_rule": ("FLOW_FEATURES entries with CicMatch::Exact whose name is a CIC CSV column, plus "
                           "the Differs entries listed in accepted_differs; in FLOW_FEATURES order"),
        "accepted_differs": dict(ACCEPTED_DIFFERS),
        "cic_columns": list(cic_columns),
        "used": [f.name for f in used],
        "used_fingerprints": [feature_fingerprint(f) for f in used],
        "used_flow_feature_index": [f.index for f in used],
        "excluded": excluded,
        "log_units": sorted(LOG_UNITS),
        "rust_usage": ("the agent computes its FLOW_FEATURES vector and picks the `used` names, in this "
                       "order, by name (indices are informative: they are those of this schema version)"),
    }


def bundle_schema_problems(manifest: dict, feats: list[Feature]) -> list[str]:
    """Why a CIC bundle no longer fits the schema `feats` (empty list: it fits). Checked by
    tests/test_cic.py against netanom/src/features/flow.rs."""
    fs = manifest["feature_schema"]
    used, _ = select_cic_features(feats, fs["cic_columns"])
    problems = []
    if [f.name for f in used] != fs["used"] or fs["used"] != manifest["features"]:
        problems.append("the Rust schema now selects different CIC features than the bundle was trained on "
                        f"(now {[f.name for f in used]}); retrain")
    else:
        for f, old in zip(used, fs["used_fingerprints"]):
            if feature_fingerprint(f) != old:
                changed = [k for k in old if old[k] != feature_fingerprint(f)[k]]
                problems.append(f"feature {f.name!r} changed its {', '.join(changed)} in features/flow.rs; "
                                "re-check it against CIC and retrain")
    names = [f.name for f in feats]
    idx = manifest["scorer"]["steps"][0].get("from_flow_features", {}).get("flow_feature_index")
    if not problems and idx != [names.index(n) for n in manifest["features"]]:
        problems.append("FLOW_FEATURES indices of the bundle's inputs moved; retrain")
    return problems
