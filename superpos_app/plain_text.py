"""Any string from a file or a paste, made safe to show: plain, valid, short.

Bundles come from other people; a label, explanation, corpus name or token string may hold Qt
rich-text markup (``<img src=…>``, ``<a href=…>``), control characters, invalid surrogates or 10 MB
of text. Qt guesses rich text in ``QLabel``, ``QMessageBox`` and *every tooltip*
(``Qt::mightBeRichText``), so a raw string can load images, draw links or lay out for seconds. Every
such string goes through one of these before it reaches a widget:

- ``plain(s, limit)``: a str with control characters shown as visible symbols (U+2400 block, so a
  NUL or ESC is seen, not obeyed), lone surrogates dropped, and elided to ``limit`` characters (…).
- ``html_text(s, limit)``: ``plain`` escaped for a rich-text context (``<b>`` around it is ours).
- ``tooltip(s, limit)``: a tooltip that Qt shows as text whatever ``s`` holds.
- ``display_token(s)``: a token as the token views draw it (the same symbols, ↵ for a newline).
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

__all__ = ["plain", "html_text", "tooltip", "display_token", "LABEL_LIMIT", "TOOLTIP_LIMIT"]

LABEL_LIMIT = 200              # characters of one label in a table cell or a title
TOOLTIP_LIMIT = 2000           # characters of a tooltip or a dialog's message

# C0 controls except \n and \t, DEL, C1 controls; shown as their "control picture" (␀ ␛ ␡) or ⍰ for C1
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# characters that reorder or hide text: bidi overrides / isolates, and the line/paragraph separators
_INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _picture(m: re.Match) -> str:
    c = ord(m.group())
    if c < 0x20:
        return chr(0x2400 + c)
    return "\u2421" if c == 0x7F else "\u2370"


def _visible(s: str) -> str:
    """``s`` with control characters as their pictures, reordering characters as U+FFFD, lone
    surrogates dropped: the one place that decides how an unprintable character looks."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:                  # lone surrogates cannot reach Qt as UTF-16 pairs
        s = s.encode("utf-8", errors="ignore").decode("utf-8")
    s = _CONTROLS.sub(_picture, s)
    return _INVISIBLE.sub("\ufffd", s)


def plain(value, limit: int = LABEL_LIMIT, newlines: bool = False) -> str:
    """``value`` as safe plain text of at most ``limit`` characters (newlines kept only if asked)."""
    s = value if isinstance(value, str) else ("" if value is None else str(value))
    if len(s) > 4 * limit + 16:                 # never scan megabytes for a 200-character label
        s = s[: 4 * limit + 16]
    s = _visible(s)
    if not newlines:
        s = s.replace("\r", "").replace("\n", "\u21b5").replace("\t", " ")
    if len(s) > limit:
        s = s[: max(0, limit - 1)] + "\u2026"
    return s


def html_text(value, limit: int = LABEL_LIMIT, newlines: bool = False) -> str:
    """``plain(value)`` escaped for a Qt rich-text string."""
    out = html.escape(plain(value, limit, newlines), quote=True)
    return out.replace("\n", "<br>") if newlines else out


def tooltip(value, limit: int = TOOLTIP_LIMIT) -> str:
    """A tooltip showing ``value`` as text: escaped inside ``<qt>`` so Qt never guesses markup."""
    if not value:
        return ""
    return f"<qt>{html_text(value, limit, newlines=True)}</qt>"


@lru_cache(maxsize=1 << 16)              # token strings repeat (a vocabulary): the lens draws thousands
def display_token(s: str) -> str:
    """Token text as drawn: newlines as ↵ (the break itself is handled by the layout), tabs as →,
    control characters as their pictures (␀ ␛) and bidi overrides as U+FFFD, as ``plain`` shows them
    (a token's U+202E must not reverse the rest of its example)."""
    return _visible(s.replace("\r", "").replace("\n", "↵").replace("\t", "→"))
