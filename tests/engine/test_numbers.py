"""One way of writing numbers for people (engine/numbers.py): no 6e+06, no 15-digit seconds."""

from __future__ import annotations

import math

from engine.numbers import readable, seconds, si


def test_si_writes_large_numbers_with_a_suffix_and_three_figures():
    assert [si(v) for v in (500_000, 1_000_000, 6e6, 4.521e6, 1500, 250, 0.0604, 0, -2500)] == \
        ["500k", "1M", "6M", "4.52M", "1.5k", "250", "0.0604", "0", "-2.5k"]
    assert si(999_999) == "1M" and si(math.nan) == "n/a"


def test_readable_uses_thousands_separators_never_an_exponent_for_counts():
    assert readable(6e6) == "6,000,000" and readable(4.521e6) == "4,521,000" and readable(199_936) == "199,936"
    assert readable(0.06022) == "0.06022" and readable(12.5) == "12.5" and readable(None) == "n/a"
    assert "e+" not in readable(123456789.0)


def test_seconds_are_short():
    assert seconds(0.2123123123123) == "0.21 s" and seconds(4.25) == "4.2 s" and seconds(1234.5) == "1,234 s"


def test_info_prints_stage_seconds_readably():
    from engine.cli.bundle_cmds import _extra_item

    line = _extra_item("stage_seconds", '{"tokenizer": 0.212312312312, "model": 12.3456789012}')
    assert line == "stage seconds: tokenizer 0.21 s, model 12 s"
