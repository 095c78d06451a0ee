"""How numbers are written for people: the one formatter the CLI, the logs and the app's axes share.

``si(6_000_000)`` is ``"6M"``, ``si(4_521_000)`` ``"4.52M"``, ``si(500_000)`` ``"500k"``; small
values keep three significant figures without an exponent where one is not needed (``0.0604``).
``readable(value)`` is for a single figure in a sentence or a table: whole counts with thousands
separators (``4,521,000``), seconds and fractions to four significant figures, never ``6e+06``.
"""

from __future__ import annotations

import math

__all__ = ["si", "readable", "seconds"]

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def si(value: float, digits: int = 3) -> str:
    """``value`` with an SI suffix (k, M, G, T) and at most ``digits`` significant figures."""
    if value is None:
        return "—"
    value = float(value)
    if not math.isfinite(value):
        return "n/a" if math.isnan(value) else ("∞" if value > 0 else "−∞")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mag = abs(value)
    for scale, suffix in _PREFIXES:
        if mag >= scale * (1 - 0.5 * 10 ** -digits):
            scaled = mag / scale
            decimals = max(0, digits - 1 - int(math.floor(math.log10(scaled))))
            return f"{sign}{_trim(f'{scaled:.{decimals}f}')}{suffix}"
    if mag >= 1e-4:
        decimals = max(0, digits - 1 - int(math.floor(math.log10(mag))))
        return f"{sign}{_trim(f'{mag:.{decimals}f}')}"
    return f"{value:.{digits - 1}e}"


def readable(value) -> str:
    """One figure for a log line or a table: integers (and whole floats ≥ 1000) with thousands
    separators, other floats to four significant figures."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(value):
        return "n/a"
    if not math.isfinite(value):
        return "∞" if value > 0 else "−∞"
    if abs(value) >= 1e4 or (abs(value) >= 1000 and value == int(value)):
        return f"{value:,.0f}"
    if value != 0 and abs(value) < 1e-4:
        return f"{value:.3e}"
    return _trim(f"{value:.4g}")


def seconds(value: float) -> str:
    """A duration in seconds for people: ``0.21 s``, ``4.2 s``, ``95 s`` (never 15 digits)."""
    value = float(value)
    if value < 10:
        return f"{value:.2g} s" if value < 1 else f"{value:.1f} s"
    return f"{value:,.0f} s"
