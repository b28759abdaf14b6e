"""Stratosphere behavioural letters: one symbol per flow of a channel, in time order.

A *channel* is the flows from one inside host to one remote host, remote port and protocol.
Each flow becomes a symbol ``zeros + letter + gap``:

- ``letter`` (one of 45) is chosen from three classes of the flow:
  - size (total bytes, both directions): 1 when <= 250, 2 when <= 1100, else 3;
  - duration (seconds): 1 when <= 0.1, 2 when <= 10, else 3;
  - periodicity, from the gap to the previous flow (T2) and the gap before that (T1): the
    ratio of the larger to the smaller gap is 1 (strongly periodic) when <= 1.05, 2 when
    <= 1.3, 3 when <= 5, else 4 (strongly not periodic). When the smaller gap is 0 the ratio
    is undefined and the class is 1, as in the encoder that produced the data set. The first
    two flows of a channel have no T1, so their periodicity is "none".
  The letter is ``LETTERS[periodicity][3 * (size - 1) + (duration - 1)]``.
- ``gap`` (one of ``. , + *`` or nothing) classes T2, the time since the previous flow
  started: <= 5 s, <= 60 s, <= 300 s, <= 3600 s, or nothing when longer (or for the first
  flow).
- ``zeros``: from the third flow on, one ``0`` per whole hour of T2 (at most
  ``MAX_HOUR_ZEROS``). The second flow never gets zeros (the data set's encoder computes
  them only when T1 is known).

So the gap symbol written after a flow's letter is the gap *before* that flow: a channel of
flows 1, 2, 3 reads ``l1 l2 g(1->2) z(2->3) l3 g(2->3)``.

Times are start times in seconds (float64). A flow that starts before the previous one is
taken to start at the same time as it (gap 0), so the encoding never sees a negative gap.

These class edges are those of the encoder that labelled ``stratosphere-letters`` (Slips'
``SymbolHandler`` and its predecessor in ``profilerProcess.py``; the data set keeps the older
behaviour of giving the second flow a gap symbol). This module is our own definition; the
Rust agent's ``netanom/src/letters.rs`` implements the same rules, and
``tests/fixtures/letters_parity.csv`` proves they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import DataError

#: Duration class edges, seconds (class 1 when <= the first, 2 when <= the second, else 3).
DURATION_EDGES = (0.1, 10.0)
#: Size class edges, total bytes of the flow in both directions.
SIZE_EDGES = (250, 1100)
#: Periodicity class edges of the gap ratio max(T1, T2) / min(T1, T2) (classes 1..4).
PERIODICITY_EDGES = (1.05, 1.3, 5.0)
#: Gap symbols: the first whose bound (seconds, inclusive) holds; none above the last.
GAP_SYMBOLS = ((5.0, "."), (60.0, ","), (300.0, "+"), (3600.0, "*"))
#: One zero per whole hour of silence.
HOUR_S = 3600.0
#: Cap on the zeros of one symbol (one week). The data set's longest run is 166. The cap keeps
#: a symbol's size bounded whatever the clock says.
MAX_HOUR_ZEROS = 168
ZERO = "0"

#: Letters by periodicity class (0 = none: the channel's first two flows), each 9 long,
#: indexed by 3 * (size class - 1) + (duration class - 1).
LETTERS = {
    0: "123456789",
    1: "abcdefghi",
    2: "ABCDEFGHI",
    3: "rstuvwxyz",
    4: "RSTUVWXYZ",
}
#: Every character a letter string can hold, in the model's index order (index 0 is the
#: model's padding, so a character's index is its position here + 1).
ALPHABET = "".join(LETTERS[p] for p in range(5)) + "".join(s for _, s in GAP_SYMBOLS) + ZERO
GAP_CHARS = frozenset(s for _, s in GAP_SYMBOLS)
LETTER_CHARS = frozenset("".join(LETTERS.values()))


@dataclass(frozen=True)
class Flow:
    """What the encoding reads of one flow."""

    start: float  # seconds (any epoch; only differences matter)
    duration: float  # seconds
    bytes: int  # total bytes, both directions


def size_class(total_bytes: int) -> int:
    lo, hi = SIZE_EDGES
    return 1 if total_bytes <= lo else 2 if total_bytes <= hi else 3


def duration_class(seconds: float) -> int:
    lo, hi = DURATION_EDGES
    return 1 if seconds <= lo else 2 if seconds <= hi else 3


def periodicity_class(t1: float | None, t2: float | None) -> int:
    """0 without both gaps, else 1 (strongly periodic) .. 4 (strongly not periodic)."""
    if t1 is None or t2 is None:
        return 0
    small, large = min(t1, t2), max(t1, t2)
    if small == 0.0:
        return 1
    ratio = large / small
    for cls, edge in enumerate(PERIODICITY_EDGES, start=1):
        if ratio <= edge:
            return cls
    return 4


def gap_symbol(t2: float | None) -> str:
    if t2 is None:
        return ""
    for bound, sym in GAP_SYMBOLS:
        if t2 <= bound:
            return sym
    return ""


def hour_zeros(t2: float) -> int:
    if t2 < HOUR_S:
        return 0
    return min(int(t2 / HOUR_S), MAX_HOUR_ZEROS)


def letter(periodicity: int, size: int, duration: int) -> str:
    return LETTERS[periodicity][3 * (size - 1) + (duration - 1)]


def _check(flow: Flow) -> None:
    if not math.isfinite(flow.start):
        raise DataError(f"flow start time must be a finite number of seconds, got {flow.start!r}")
    if not (math.isfinite(flow.duration) and flow.duration >= 0.0):
        raise DataError(f"flow duration must be finite and >= 0 seconds, got {flow.duration!r}")
    if isinstance(flow.bytes, bool) or not isinstance(flow.bytes, int) or flow.bytes < 0:
        raise DataError(f"flow bytes must be an integer >= 0, got {flow.bytes!r}")


class ChannelEncoder:
    """Encodes one channel's flows as they arrive (in start-time order), one symbol each."""

    def __init__(self) -> None:
        self.flows = 0
        self._last_start: float | None = None
        self._last_gap: float | None = None  # T1 for the next flow

    def push(self, flow: Flow) -> str:
        _check(flow)
        start = flow.start if self._last_start is None else max(flow.start, self._last_start)
        t2 = None if self._last_start is None else start - self._last_start
        t1 = self._last_gap
        zeros = hour_zeros(t2) if (t1 is not None and t2 is not None) else 0
        sym = ZERO * zeros + letter(periodicity_class(t1, t2), size_class(flow.bytes),
                                    duration_class(flow.duration)) + gap_symbol(t2)
        self._last_gap, self._last_start = t2, start
        self.flows += 1
        return sym


def encode(flows: list[Flow]) -> list[str]:
    """The symbols of one channel's flows (sorted by start time first, stable)."""
    enc = ChannelEncoder()
    return [enc.push(f) for f in sorted(flows, key=lambda f: f.start)]


def split_symbols(text: str) -> list[str]:
    """Splits a letter string into its symbols (``0* letter gap?``); a cut-off last symbol
    (zeros without a letter) is dropped. Raises DataError on a character outside ALPHABET."""
    out: list[str] = []
    cur = ""
    for ch in text:
        if ch == ZERO:
            if cur and cur[-1] != ZERO:
                out.append(cur)
                cur = ""
            cur += ch
        elif ch in LETTER_CHARS:
            if cur and cur[-1] != ZERO:
                out.append(cur)
                cur = ""
            cur += ch
        elif ch in GAP_CHARS:
            if not cur or cur[-1] in GAP_CHARS or cur[-1] == ZERO:
                raise DataError(f"gap symbol {ch!r} without a letter before it in {text[:60]!r}")
            cur += ch
        else:
            raise DataError(f"character {ch!r} is not a behavioural letter (alphabet {ALPHABET!r})")
    if cur and cur[-1] != ZERO:
        out.append(cur)
    return out


def tail_window(symbols: list[str], max_len: int) -> str:
    """The most recent whole symbols whose characters fit in `max_len`; when even the newest
    symbol is longer (a long run of zeros), its last `max_len` characters."""
    if max_len <= 0:
        raise ValueError("max_len must be > 0")
    kept: list[str] = []
    used = 0
    for sym in reversed(symbols):
        if used + len(sym) > max_len:
            break
        kept.append(sym)
        used += len(sym)
    if not kept and symbols:
        return symbols[-1][-max_len:]
    return "".join(reversed(kept))


def indices(text: str) -> list[int]:
    """Model input indices of a letter string (1-based positions in ALPHABET; 0 is padding)."""
    try:
        return [ALPHABET.index(ch) + 1 for ch in text]
    except ValueError:
        bad = next(ch for ch in text if ch not in ALPHABET)
        raise DataError(f"character {bad!r} is not a behavioural letter") from None


def symbol_letter(symbol: str) -> str:
    """The letter of one symbol (its zeros and gap stripped)."""
    return symbol.lstrip(ZERO)[0]


def letter_classes(ch: str) -> tuple[int, int, int]:
    """(periodicity, size, duration) of a letter."""
    for p, row in LETTERS.items():
        j = row.find(ch)
        if j >= 0:
            return p, j // 3 + 1, j % 3 + 1
    raise DataError(f"{ch!r} is not a letter")
