"""Labelled evaluation sets for flows bundles: captures or flow CSVs, each benign or attack.

Given on the command line as ``--eval LABEL=FILE`` or in lists (``--eval-list LIST.csv``): a CSV
with a header holding ``file`` and ``label`` (other columns are ignored, so
``../shared/datasets/pcaps/manifest.csv`` is such a list), one set a row, paths relative to the
list. A label is ``benign`` (also ``normal``) or ``attack``; every flow of the file takes it.
A pcap or pcapng file is turned into flows with ``netanom features --pcap``, which computes the
same vectors as the live agent; a .csv file is read as flows directly.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import DataError
from .datasets import REPO_ROOT

LABELS = {"benign": "benign", "normal": "benign", "attack": "attack"}
PCAP_SUFFIXES = (".pcap", ".pcapng", ".cap")


@dataclass(frozen=True)
class EvalSet:
    #: Display name: the file name without its extension.
    name: str
    #: "benign" or "attack".
    label: str
    #: The file as listed (a capture or a flow CSV).
    path: Path
    #: Where it was listed (for errors).
    origin: str

    @property
    def is_capture(self) -> bool:
        return self.path.suffix.lower() in PCAP_SUFFIXES


def _label(text: str, where: str) -> str:
    lab = LABELS.get(text.strip().lower())
    if lab is None:
        raise DataError(f"{where}: label {text!r} is not one of benign, normal, attack")
    return lab


def _name(p: Path) -> str:
    name = p.name
    for ext in (".csv", ".gz") + PCAP_SUFFIXES:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name


def parse_eval_arg(text: str, base: Path | None = None) -> EvalSet:
    """``LABEL=FILE``."""
    label, sep, file = text.partition("=")
    if not sep or not file:
        raise DataError(f"--eval {text!r}: expected LABEL=FILE (LABEL benign or attack)")
    p = Path(file).expanduser()
    if base is not None and not p.is_absolute():
        p = base / p
    return EvalSet(_name(p), _label(label, f"--eval {text!r}"), p, f"--eval {text}")


def read_eval_list(path: Path) -> list[EvalSet]:
    """The sets of a list CSV (columns `file` and `label`), in its order."""
    if not path.is_file():
        raise DataError(f"evaluation list not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path}: the evaluation list is empty")
    header = [c.strip() for c in rows[0]]
    missing = [c for c in ("file", "label") if c not in header]
    if missing:
        raise DataError(f"{path}: the evaluation list needs the columns file and label (missing {missing}; "
                        f"header {header[:8]})")
    fi, li = header.index("file"), header.index("label")
    out = []
    for n, r in enumerate(rows[1:], start=2):
        if len(r) <= max(fi, li):
            raise DataError(f"{path}: line {n} has {len(r)} fields, the header {len(header)}")
        p = Path(r[fi].strip())
        p = p if p.is_absolute() else path.parent / p
        out.append(EvalSet(_name(p), _label(r[li], f"{path}: line {n}"), p, f"{path}: line {n}"))
    if not out:
        raise DataError(f"{path}: the evaluation list has a header and no sets")
    return out


def find_netanom(explicit: Path | None) -> Path:
    """--netanom, else $NETANOM_BIN, else the repository's target/release or target/debug build."""
    cands = [explicit] if explicit else []
    if os.environ.get("NETANOM_BIN"):
        cands.append(Path(os.environ["NETANOM_BIN"]))
    if not cands:
        cands = [REPO_ROOT / "target" / "release" / "netanom", REPO_ROOT / "target" / "debug" / "netanom"]
    for c in cands:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which("netanom")
    if found and not explicit and not os.environ.get("NETANOM_BIN"):
        return Path(found)
    raise DataError("no netanom executable to turn the captures into flows (looked at "
                    + ", ".join(str(c) for c in cands) + "); build it with `cargo xtask build` or pass --netanom")


def flows_of(s: EvalSet, netanom: Path | None, workdir: Path) -> tuple[Path, str]:
    """(flow CSV of `s`, how it was made). A capture is run through `netanom features --pcap`."""
    if not s.path.is_file():
        raise DataError(f"{s.origin}: file not found: {s.path}")
    if not s.is_capture:
        return s.path, "flow CSV as given"
    assert netanom is not None
    out = workdir / f"{s.name}.csv"
    p = subprocess.run([str(netanom), "features", "--pcap", str(s.path), "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    summary = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    if p.returncode != 0:
        raise DataError(f"{s.origin}: `netanom features --pcap {s.path}` failed ({p.returncode}): {summary}")
    return out, f"`netanom features --pcap`: {_summary(summary)}"


def _summary(line: str) -> str:
    """netanom features' summary without the capture's path and the timing (which varies)."""
    line = line.split("(pcap): ", 1)[-1].split("(pcapng): ", 1)[-1]
    return re.sub(r";\s*[0-9.]+ s \([0-9]+ packets/s\)\s*$", "", line) or "no summary"
