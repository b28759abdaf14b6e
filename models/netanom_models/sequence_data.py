"""The labelled channels of ``stratosphere-letters`` (Slips' ``all_datasets_raw.tsv``), their
label families, and the split by channel.

Each line is ``[index] | label | ESC[36m src-dst-dport-proto ESC[0m | letters`` (49 lines
have an empty index merged into the label field, ``[ ] label | ...``, and one has no index
field). Labels starting with
``From-Botnet`` or ``From-Malware`` are malicious (1), ``From-Normal`` normal (0); unlabelled
lines are skipped and counted.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import DataError
from . import letters as L
from .datasets import datasets_root

DATASET = "stratosphere-letters"
FOLDER = "stratosphere-letters"
FILE = "all_datasets_raw.tsv.gz"
#: sha256 of the uncompressed file named in PROVENANCE.md (recorded in the report).
SHA256 = "771b2115bee26a181eaa751868be0275e2789d41048f77108c7e4bbab871480f"
MALICIOUS_PREFIXES = ("From-Botnet", "From-Malware")
NORMAL_PREFIX = "From-Normal"
#: Fractions of the channels (grouped by 4-tuple, stratified by class).
SPLIT = {"train": 0.70, "validation": 0.15, "test": 0.15}
SPLIT_SEED = 20_260_514
#: Length groups of the evaluation (number of flows).
LENGTH_GROUPS = (("1", 1, 1), ("2-4", 2, 4), ("5+", 5, None))
#: The cross-cutting family of channels labelled C&C (``CC`` in the label's detail part).
CC_FAMILY = "malicious C&C (any protocol)"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SERIAL = re.compile(r"-\d+$")


@dataclass
class Channels:
    """One entry per labelled line (exact duplicate lines dropped)."""

    channel: list[str]  # src-dst-dport-proto
    label: list[str]
    letters: list[str]
    y: np.ndarray  # 1 malicious, 0 normal
    flows: np.ndarray  # symbols (flows) per line
    family: list[str]  # coarse behaviour family: class + protocol + service
    is_cc: np.ndarray  # the label names a C&C channel
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.letters)

    def subset(self, idx: np.ndarray) -> "Channels":
        idx = np.asarray(idx, dtype=np.int64)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return Channels(pick(self.channel), pick(self.label), pick(self.letters), self.y[idx], self.flows[idx],
                        pick(self.family), self.is_cc[idx], dict(self.stats))

    def symbols(self, i: int) -> list[str]:
        return L.split_symbols(self.letters[i])


def data_file() -> Path:
    d = datasets_root() / FOLDER
    if not d.is_dir():
        raise DataError(f"dataset folder not found: {d} (set NETANOM_SHARED to the directory that holds datasets/)")
    f = d / FILE
    if not f.is_file():
        raise DataError(f"{f} is missing: the {DATASET} data set holds {FILE} (see its PROVENANCE.md)")
    return f


def family_of(label: str) -> str:
    """``From-Botnet-TCP-HTTP-CC.Dridex-3`` -> ``malicious TCP-HTTP``."""
    parts = label.split("-")
    cls = "normal" if label.startswith(NORMAL_PREFIX) else "malicious"
    return f"{cls} {'-'.join(parts[2:4])}" if len(parts) >= 4 else f"{cls} {label}"


def is_cc_label(label: str) -> bool:
    if label.startswith(NORMAL_PREFIX):
        return False
    detail = "-".join(label.split("-")[4:])
    return re.search(r"(^|[^A-Za-z])CC", detail) is not None


def _fields(line: str) -> tuple[str, str, str] | None:
    cells = [c.strip() for c in line.split("|")]
    if len(cells) == 3:  # no index field, or an empty one merged into the label: "[ ] label"
        cells = ["", re.sub(r"^\[[^\]]*\]", "", cells[0]).strip(), cells[1], cells[2]]
    if len(cells) != 4:
        return None
    return cells[1], _ANSI.sub("", cells[2]).strip(), cells[3]


def parse(text: str) -> Channels:
    seen: set[tuple[str, str, str]] = set()
    rows: list[tuple[str, str, str]] = []
    stats = {"lines": 0, "unlabelled": 0, "other_label": 0, "bad_lines": 0, "duplicates": 0, "empty_letters": 0}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        stats["lines"] += 1
        f = _fields(line)
        if f is None:
            stats["bad_lines"] += 1
            continue
        label, chan, letters = f
        if not label:
            stats["unlabelled"] += 1
            continue
        if not (label.startswith(MALICIOUS_PREFIXES) or label.startswith(NORMAL_PREFIX)):
            stats["other_label"] += 1
            continue
        if not letters:
            stats["empty_letters"] += 1
            continue
        try:
            L.split_symbols(letters)
        except DataError as e:
            raise DataError(f"line {n}: {e}") from None
        if (label, chan, letters) in seen:
            stats["duplicates"] += 1
            continue
        seen.add((label, chan, letters))
        rows.append((label, chan, letters))
    if not rows:
        raise DataError("no labelled channels in the letters file")
    labels = [r[0] for r in rows]
    y = np.array([0 if lb.startswith(NORMAL_PREFIX) else 1 for lb in labels], dtype=np.int64)
    if y.min() == y.max():
        raise DataError("the letters file needs both malicious and normal channels")
    flows = np.array([len(L.split_symbols(r[2])) for r in rows], dtype=np.int64)
    return Channels([r[1] for r in rows], labels, [r[2] for r in rows], y, flows,
                    [family_of(lb) for lb in labels], np.array([is_cc_label(lb) for lb in labels]), stats)


def load() -> Channels:
    raw = gzip.decompress(data_file().read_bytes())
    ch = parse(raw.decode("utf-8"))
    ch.stats["sha256"] = hashlib.sha256(raw).hexdigest()
    ch.stats["sha256_matches_provenance"] = ch.stats["sha256"] == SHA256
    return ch


def split_by_channel(ch: Channels, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Line indices of train/validation/test: every line of one 4-tuple lands in one part,
    and each part holds the same share of malicious and of normal 4-tuples."""
    rng = np.random.default_rng(seed)
    by_chan: dict[str, list[int]] = {}
    for i, c in enumerate(ch.channel):
        by_chan.setdefault(c, []).append(i)
    parts: dict[str, list[int]] = {k: [] for k in SPLIT}
    for cls in (0, 1):
        keys = sorted(k for k, ix in by_chan.items() if ch.y[ix[0]] == cls)
        if len({int(ch.y[i]) for k in keys for i in by_chan[k]}) > 1:
            raise DataError("a 4-tuple has both malicious and normal lines")
        order = rng.permutation(len(keys))
        n_tr = int(round(SPLIT["train"] * len(keys)))
        n_va = int(round(SPLIT["validation"] * len(keys)))
        for j, k in enumerate(order):
            part = "train" if j < n_tr else "validation" if j < n_tr + n_va else "test"
            parts[part].extend(by_chan[keys[k]])
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in parts.items()}


def length_group(flows: np.ndarray, name: str) -> np.ndarray:
    for g, lo, hi in LENGTH_GROUPS:
        if g == name:
            return (flows >= lo) & (flows <= (hi if hi is not None else np.iinfo(np.int64).max))
    raise KeyError(name)


def holdout_families(ch: Channels, min_channels: int = 30) -> list[str]:
    """Families held out in turn: every coarse family with at least `min_channels` lines,
    largest first, then the C&C family."""
    counts: dict[str, int] = {}
    for f in ch.family:
        counts[f] = counts.get(f, 0) + 1
    fams = sorted((f for f, n in counts.items() if n >= min_channels), key=lambda f: (-counts[f], f))
    if int(ch.is_cc.sum()) >= min_channels:
        fams.append(CC_FAMILY)
    return fams


def in_family(ch: Channels, fam: str) -> np.ndarray:
    if fam == CC_FAMILY:
        return ch.is_cc.copy()
    return np.array([f == fam for f in ch.family])
