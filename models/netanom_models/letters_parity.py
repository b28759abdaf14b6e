"""The letter-encoding parity fixture, ``models/tests/fixtures/letters_parity.tsv``.

Channels of flows built around every class edge (sizes, durations, gap ratios, gap symbols,
hours of silence, zero gaps, out-of-order starts, epoch-sized start times), plus random
beacon-like and irregular channels. One row per flow, in the order the flows are pushed into
:class:`letters.ChannelEncoder`; each row has the symbol it gets, the channel's tail window
of ``WINDOW`` characters after it, and that window's model indices. Tab-separated: the gap
symbol ``,`` is a letter-string character. The Rust unit test in
``netanom/src/letters.rs`` replays the file and must produce the same three columns; pytest
checks that the checked-in file is what this module writes.

Regenerate with ``python -m netanom_models letters-fixture`` (in models/).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from . import letters as L
from .datasets import MODELS_DIR

FIXTURE = MODELS_DIR / "tests" / "fixtures" / "letters_parity.tsv"
HEADER = "\t".join(["channel", "start", "duration", "bytes", "symbol", "window12", "indices12"])
WINDOW = 12
SEED = 20_260_513
EPOCH = 1_717_000_000.25  # a realistic wall-clock start


def _up(x: float) -> float:
    return math.nextafter(x, math.inf)


def _chain(starts_from_gaps: list[float], base: float = 0.0) -> list[float]:
    out = [base]
    for g in starts_from_gaps:
        out.append(out[-1] + g)
    return out


def edge_channels() -> list[list[L.Flow]]:
    """Hand-made channels: each edge of each class on both sides."""
    chans: list[list[L.Flow]] = []
    sizes = [0, 1, 250, 251, 1100, 1101, 10**9]
    durs = [0.0, 0.1, _up(0.1), 10.0, _up(10.0), 86_400.0]
    # every size x duration on regular 1 s gaps (periodicity 1 from the third flow)
    for b in sizes:
        chans.append([L.Flow(float(i), d, b) for i, d in enumerate(durs)])
    # gap-symbol edges: the gap before flows 2..n
    for g in [0.0, 5.0, _up(5.0), 60.0, _up(60.0), 300.0, _up(300.0), 3600.0, _up(3600.0), 7199.0, 7200.0]:
        chans.append([L.Flow(s, 0.05, 100) for s in _chain([g, g, 1.0, g])])
    # ratio edges: T1 = 1, T2 = ratio (and the other way round)
    for r in [1.0, 1.05, _up(1.05), 1.3, _up(1.3), 5.0, _up(5.0), 100.0]:
        chans.append([L.Flow(s, 1.0, 500) for s in _chain([1.0, r, 1.0, r])])
        chans.append([L.Flow(s, 1.0, 500) for s in _chain([r, 1.0, r, 1.0], base=EPOCH)])
    # zero gaps (the undefined-ratio rule), long silences (the zeros, their cap)
    chans.append([L.Flow(s, 0.0, 60) for s in _chain([0.0, 0.0, 3.0, 0.0, 2.0])])
    chans.append([L.Flow(s, 2.0, 2000) for s in _chain([10.0, 3600.0 * 3.5, 20.0, 3600.0 * 500.0, 1.0], base=EPOCH)])
    # out of order (export order differs from start order): clamped to a zero gap
    chans.append([L.Flow(s, 0.5, 300) for s in [EPOCH + 10, EPOCH + 30, EPOCH + 20, EPOCH + 25, EPOCH + 5, EPOCH + 40]])
    # every letter: periodicity class by the ratio of the last two gaps, size and duration of the third flow
    for ratio in (1.0, 1.2, 2.0, 10.0):
        for b in (100, 600, 5000):
            for d in (0.01, 1.0, 60.0):
                chans.append([L.Flow(EPOCH, 0.5, 400), L.Flow(EPOCH + 10.0, 0.5, 400),
                              L.Flow(EPOCH + 10.0 + 10.0 * ratio, d, b)])
    # a single flow, and two flows
    chans.append([L.Flow(EPOCH, 3.0, 900)])
    chans.append([L.Flow(EPOCH, 3.0, 900), L.Flow(EPOCH + 4000.0, 0.01, 90)])
    return chans


def random_channels(n: int, seed: int = SEED) -> list[list[L.Flow]]:
    """Beacons with jitter, bursty and irregular channels, at epoch-sized start times."""
    rng = np.random.default_rng(seed)
    chans = []
    for k in range(n):
        flows = int(rng.integers(1, 40))
        kind = k % 3
        if kind == 0:  # beacon: period 1 s .. 2 h, jitter up to 10 %
            period = float(np.exp(rng.uniform(0.0, math.log(7200.0))))
            gaps = period * (1.0 + rng.uniform(-0.1, 0.1, flows - 1))
        elif kind == 1:  # bursty: many small gaps, some long
            gaps = np.where(rng.random(flows - 1) < 0.2, rng.exponential(5000.0, flows - 1),
                            rng.exponential(2.0, flows - 1))
        else:  # irregular
            gaps = rng.lognormal(3.0, 2.5, flows - 1)
        starts = _chain([float(round(g, 6)) for g in gaps], base=EPOCH + float(rng.uniform(0, 1e5)))
        durs = rng.lognormal(-1.0, 2.0, flows)
        sizes = rng.lognormal(6.0, 1.5, flows).astype(np.int64)
        chans.append([L.Flow(float(s), float(round(d, 6)), int(b)) for s, d, b in zip(starts, durs, sizes)])
    return chans


def fixture_text() -> str:
    out = io.StringIO()
    out.write(HEADER + "\n")
    for c, flows in enumerate(edge_channels() + random_channels(60)):
        enc = L.ChannelEncoder()
        syms: list[str] = []
        for f in flows:
            syms.append(enc.push(f))
            win = L.tail_window(syms, WINDOW)
            idx = " ".join(str(i) for i in L.indices(win))
            cells = [f"c{c:03d}", repr(f.start), repr(f.duration), str(f.bytes), syms[-1], win, idx]
            out.write("\t".join(cells) + "\n")
    return out.getvalue()


def write_fixture(path: Path = FIXTURE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(fixture_text())
    return path
