"""Text from files made safe for a terminal: ``terminal_safe``.

Bundle strings (run names, corpus specs, labels, metric and curve names, versions) come from files
that others send; printed raw, an ESC byte can retitle the window, clear the screen or hide text, and
a bidirectional override can reorder what is shown. Every character Python does not call printable
(``str.isprintable``: C0/C1 controls, DEL, format characters such as U+202E, line and paragraph
separators) is shown as its escape (``\\x1b``, ``\\u202e``), as ``repr`` would, so it stays visible.
"""

from __future__ import annotations

__all__ = ["terminal_safe"]


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
