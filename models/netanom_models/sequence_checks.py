"""Checks of our letter encoding against the ``stratosphere-letters`` data set.

The data set holds only letter strings, not the flows behind them, so the class edges cannot
be re-derived from it. What it can show is that its strings are exactly the language our
encoder writes:

- every character is in ``letters.ALPHABET`` and every string splits into symbols
  ``0* letter gap?``;
- the first two symbols of a channel have a digit letter (periodicity "none") and no zeros,
  and the first has no gap symbol;
- from the third symbol on the letter has a periodicity class (1..4);
- from the third symbol on, a symbol has zeros exactly when its gap symbol is missing (a
  gap of more than an hour), except a gap of exactly one hour (one zero and ``*``).

Strings cut off by the data set's 1,000-character limit can end in a symbol without its gap.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from . import letters as L
from .sequence_data import Channels

RULES = {
    "first symbol: digit letter, no zeros, no gap": "first",
    "second symbol: digit letter, no zeros": "second",
    "later symbols: letter with a periodicity class": "later_letter",
    "later symbols: zeros exactly when no gap symbol (or one zero and '*')": "zeros_vs_gap",
}


def _parts(sym: str) -> tuple[int, str, str]:
    z = len(sym) - len(sym.lstrip(L.ZERO))
    return z, sym[z], sym[z + 1 :]


def _violations(symbols: list[str]) -> Counter:
    bad: Counter = Counter()
    for k, sym in enumerate(symbols):
        z, let, gap = _parts(sym)
        digit = let in L.LETTERS[0]
        if k == 0 and not (digit and z == 0 and not gap):
            bad["first"] += 1
        elif k == 1 and not (digit and z == 0):
            bad["second"] += 1
        elif k >= 2:
            if digit:
                bad["later_letter"] += 1
            last = k == len(symbols) - 1
            ok = (z > 0 and gap in ("", "*") and (gap == "" or z == 1)) or (z == 0 and (gap or last))
            if not ok:
                bad["zeros_vs_gap"] += 1
    return bad


def encoding_check(ch: Channels) -> dict:
    chars = Counter()
    bad: Counter = Counter()
    lines_bad = 0
    unterminated = 0
    for i in range(len(ch)):
        chars.update(ch.letters[i])
        syms = ch.symbols(i)
        v = _violations(syms)
        bad.update(v)
        lines_bad += bool(v)
        z, _, gap = _parts(syms[-1])
        unterminated += len(syms) >= 3 and z == 0 and not gap
    return {
        "alphabet_seen": "".join(sorted(chars, key=L.ALPHABET.index)),
        "alphabet_equal": set(chars) == set(L.ALPHABET),
        "characters": int(sum(chars.values())),
        "symbols": int(ch.flows.sum()),
        "violations": {name: int(bad[key]) for name, key in RULES.items()},
        "lines_with_violations": int(lines_bad),
        "last_symbol_without_gap": int(unterminated),
    }


def symbol_statistics(ch: Channels) -> dict:
    """Shares of each class (size, duration, periodicity of flows 3+, gap symbol of flows 2+)
    among the flows of malicious and of normal channels."""
    out = {}
    for cls, name in ((1, "malicious"), (0, "normal")):
        size, dur, per, gap = Counter(), Counter(), Counter(), Counter()
        zeros = []
        for i in np.flatnonzero(ch.y == cls):
            for k, sym in enumerate(ch.symbols(int(i))):
                z, let, g = _parts(sym)
                p, s, d = L.letter_classes(let)
                size[s] += 1
                dur[d] += 1
                if k >= 2:
                    per[p] += 1
                if k >= 1:
                    gap[g or "none"] += 1
                zeros.append(z)
        share = lambda c: {str(k): c[k] / max(sum(c.values()), 1) for k in sorted(c, key=str)}  # noqa: E731
        out[name] = {"flows": len(zeros), "size": share(size), "duration": share(dur), "periodicity": share(per),
                     "gap": share(gap), "flows_after_an_hour_or_more": float(np.mean(np.array(zeros) > 0)),
                     "longest_zero_run": int(max(zeros))}
    return out
