"""The behavioural-letter encoding: each class edge, the symbol rules, the window, the
parity fixture the Rust encoder replays, and the real data set's strings."""

import math
import os
from pathlib import Path

import pytest

from netanom_models import DataError
from netanom_models import letters as L
from netanom_models import letters_parity as P
from netanom_models.datasets import REPO_ROOT

#: The real data sets (read at import, before conftest points NETANOM_SHARED at synthetic ones).
REAL_SHARED = Path(os.environ.get("NETANOM_SHARED") or REPO_ROOT.parent / "shared")

up = lambda x: math.nextafter(x, math.inf)  # noqa: E731


def test_size_edges():
    assert [L.size_class(b) for b in (0, 250, 251, 1100, 1101, 10**12)] == [1, 1, 2, 2, 3, 3]


def test_duration_edges():
    assert [L.duration_class(d) for d in (0.0, 0.1, up(0.1), 10.0, up(10.0), 1e9)] == [1, 1, 2, 2, 3, 3]


def test_periodicity_edges():
    p = L.periodicity_class
    assert p(None, 1.0) == 0 and p(1.0, None) == 0
    assert [p(2.0, 2.0), p(1.0, 1.05), p(1.05, 1.0), p(1.0, up(1.05))] == [1, 1, 1, 2]
    assert [p(1.0, 1.3), p(1.0, up(1.3)), p(1.0, 5.0), p(5.0, 1.0)] == [2, 3, 3, 3]
    assert [p(1.0, up(5.0)), p(1.0, 1e6)] == [4, 4]
    assert [p(0.0, 7.0), p(7.0, 0.0), p(0.0, 0.0)] == [1, 1, 1]  # the undefined ratio


def test_gap_symbols_and_zeros():
    g = L.gap_symbol
    assert g(None) == ""
    assert [g(0.0), g(5.0), g(up(5.0)), g(60.0), g(up(60.0)), g(300.0), g(up(300.0))] == list("..,,++*")
    assert [g(3600.0), g(up(3600.0)), g(1e9)] == ["*", "", ""]
    assert [L.hour_zeros(t) for t in (0.0, 3599.999, 3600.0, 7199.9, 7200.0)] == [0, 0, 1, 1, 2]
    assert L.hour_zeros(3600.0 * 1000) == L.MAX_HOUR_ZEROS == L.hour_zeros(1e300)


def test_letter_table_and_alphabet():
    table = "".join(L.letter(p, s, d) for p in range(5) for s in (1, 2, 3) for d in (1, 2, 3))
    assert table == "123456789abcdefghiABCDEFGHIrstuvwxyzRSTUVWXYZ"
    assert L.ALPHABET == table + ".,+*0" and len(set(L.ALPHABET)) == 50
    assert L.letter(1, 3, 1) == "g" and L.letter(0, 3, 2) == "8" and L.letter(4, 3, 3) == "Z"
    assert L.letter_classes("g") == (1, 3, 1) and L.letter_classes("8") == (0, 3, 2)
    assert L.indices("1Z.0") == [1, 45, 46, 50]
    with pytest.raises(DataError):
        L.indices("1!")


def test_a_channel_reads_as_the_data_set_does():
    f = L.Flow
    flows = [f(100.0, 1.0, 300), f(101.0, 1.0, 300), f(102.0, 1.0, 300), f(7302.0, 20.0, 5000)]
    assert "".join(L.encode(flows)) == "55.e.00Z"
    assert "".join(L.encode(list(reversed(flows)))) == "55.e.00Z"  # encode sorts by start
    # the second flow never gets zeros; a gap over an hour has no symbol
    assert L.encode([f(0.0, 0.0, 10), f(7300.0, 0.0, 10)]) == ["1", "1"]
    # exactly one hour: one zero and '*'
    assert L.encode([f(0.0, 0.0, 10), f(1.0, 0.0, 10), f(3601.0, 0.0, 10)]) == ["1", "1.", "0R*"]


def test_an_earlier_start_is_a_zero_gap():
    enc = L.ChannelEncoder()
    got = [enc.push(L.Flow(s, 0.0, 1)) for s in (10.0, 30.0, 20.0)]
    assert got == ["1", "1,", "a."]


@pytest.mark.parametrize("flow, message", [
    (L.Flow(math.nan, 0.0, 1), "start time"),
    (L.Flow(math.inf, 0.0, 1), "start time"),
    (L.Flow(1.0, -0.5, 1), "duration"),
    (L.Flow(1.0, math.nan, 1), "duration"),
    (L.Flow(1.0, 0.0, -1), "bytes"),
    (L.Flow(1.0, 0.0, 1.5), "bytes"),
    (L.Flow(1.0, 0.0, True), "bytes"),
])
def test_bad_flows_are_named_errors_that_change_nothing(flow, message):
    enc = L.ChannelEncoder()
    enc.push(L.Flow(0.0, 0.0, 1))
    with pytest.raises(DataError, match=message):
        enc.push(flow)
    assert enc.flows == 1
    assert enc.push(L.Flow(2.0, 0.0, 1)) == "1."


def test_split_symbols():
    assert L.split_symbols("22*0s00Y.a") == ["2", "2*", "0s", "00Y.", "a"]
    assert L.split_symbols("22,b,00") == ["2", "2,", "b,"]  # zeros cut off without a letter
    with pytest.raises(DataError, match="without a letter"):
        L.split_symbols("2..")
    with pytest.raises(DataError, match="not a behavioural letter"):
        L.split_symbols("2x!")


def test_tail_window():
    syms = ["2", "2.", "a.", "a."]
    assert L.tail_window(syms, 100) == "22.a.a."
    assert L.tail_window(syms, 5) == "a.a."  # whole symbols only
    assert L.tail_window(syms, 6) == "2.a.a."
    assert L.tail_window(syms + ["0000000R"], 5) == "0000R"  # the newest alone is too long
    assert L.tail_window([], 5) == ""
    with pytest.raises(ValueError):
        L.tail_window(syms, 0)


def test_fixture_is_what_the_encoder_writes_and_covers_the_alphabet():
    text = P.FIXTURE.read_text()
    assert text == P.fixture_text(), "run `python -m netanom_models letters-fixture` and commit the file"
    rows = [ln.split("\t") for ln in text.splitlines()[1:]]
    assert set("".join(r[4] for r in rows)) == set(L.ALPHABET)
    assert any(len(r[4]) > P.WINDOW for r in rows)  # a symbol longer than the window (zeros)
    assert len({r[0] for r in rows}) >= 40 and len(rows) >= 500  # what the Rust test expects


def test_fixture_command_writes_the_same_file(tmp_path):
    from netanom_models.__main__ import main

    out = tmp_path / "f.tsv"
    assert main(["letters-fixture", "--out", str(out)]) == 0
    assert out.read_text() == P.FIXTURE.read_text()


@pytest.mark.skipif(not (REAL_SHARED / "datasets" / "stratosphere-letters").is_dir(),
                    reason="the stratosphere-letters data set is not here")
def test_real_data_set_is_the_language_of_the_encoder(monkeypatch):
    from netanom_models import sequence_checks, sequence_data

    monkeypatch.setenv("NETANOM_SHARED", str(REAL_SHARED))
    ch = sequence_data.load()
    res = sequence_checks.encoding_check(ch)
    assert res["alphabet_equal"]
    assert res["lines_with_violations"] == 0
    assert res["last_symbol_without_gap"] <= 20  # only strings cut at ~1,000 characters
