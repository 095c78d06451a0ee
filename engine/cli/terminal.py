"""Text from files made safe for a terminal: ``terminal_safe``.

Bundle strings (run names, corpus specs, labels, metric and curve names, versions) come from files
that others send; printed raw, an ESC byte can retitle the window, clear the screen or hide text, and
a bidirectional override can reorder what is shown. Every character Python does not call printable
(``str.isprintable``: C0/C1 controls, DEL, format characters such as U+202E, line and paragraph
separators) is shown as its escape (``\\x1b``, ``\\u202e``), as ``repr`` would, so it stays visible.
"""

from __future__ import annotations

import json

__all__ = ["terminal_safe", "json_line_safe"]


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{code:02x}")
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal_safe(text: object) -> str:
    """``str(text)`` with every non-printable character (newlines too) written as an escape."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def json_line_safe(value: object) -> str:
    """``value`` as one line of JSON that is also terminal-safe: non-ASCII text stays readable, every
    non-printable character (ESC, C1 controls, U+202E...) is a ``\\uXXXX`` escape, which JSON reads back
    as the same character."""
    text = json.dumps(value, ensure_ascii=False)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:                                      # a surrogate pair, as JSON writes astral characters
            v = ord(ch) - 0x10000
            out.append(f"\\u{0xD800 + (v >> 10):04x}\\u{0xDC00 + (v & 0x3FF):04x}")
    return "".join(out)
