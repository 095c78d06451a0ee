"""Screenshots of the token view on hand-made text: right-to-left scripts, Korean, Python, control
characters, and the Train dialog's guesses. Look at each PNG after a change to the token view.

    python scripts/screenshots_text.py [--out docs/screenshots]

Each shot is a ``TokenView`` laid out as the panes use it: dashboard lines (an activation in the
prefix column, backgrounds shaded by activation, the example's token framed, ablation underlines)
above one paragraph that wraps as the lens's does. Glyphs come from the system's fonts: where a
script's font is missing (``fc-list :charset=ac00`` for Korean) the shot shows boxes, which is what
the app shows on that machine too (README, "System requirements"). The committed shots were made
with the README's fonts (fonts-noto-cjk, fonts-freefont-ttf) added through ``FONTCONFIG_FILE``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# token splits as a byte-pair tokenizer makes them: inside words, spaces leading
SAMPLES = {
    "arabic": (["مر", "حبا", " بال", "عالم", "،", " هذا", " مث", "ال", " على", " الن", "ص", " العربي", "."],
               ["ال", "لغة", " العربية", " جميلة", " جدا"]),
    "hebrew": (["של", "ום", " עו", "לם", ",", " זה", " טק", "סט", " ב", "עבר", "ית", "."],
               ["hello", " (", "של", "ום", ")", " world", " 42"]),
    "korean": (["안녕", "하세요", " 세", "계", ",", " 한국", "어", " 텍", "스트", "입니다", "."],
               ["서울", "은", " 대한", "민국", "의", " 수도", "이다"]),
    "python": (["def", " f", "(x", "):", "\n", "        ", "if", " x", ":", "\n", "            ", "return",
                " x", " +", " 1", "\n", "    ", "return", " 0"],
               ["\t", "for", " i", " in", " range", "(3", "):", "\n", "\t\t", "pass"]),
    "controls": (["a", "\x00", "b", "\x1b", "[31m", "red", "\x7f", " \u202eevil", "\u202c", " \x85end"],
                 ["tab", "\t", "cr", "\r\n", "bell", "\x07"]),
}


def _values(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.where(rng.random(n) < 0.5, rng.random(n) * 4, 0.0).astype(np.float32)
    v[n // 2] = 4.0
    return v


def build_view(name: str, width: int = 640):
    from superpos_app.widgets.token_view import TokenView

    first, second = SAMPLES[name]
    view = TokenView()
    lines = [[], first, second, [], first * 4]
    values = [np.zeros(0), _values(len(first), 0), _values(len(second), 1), np.zeros(0), _values(4 * len(first), 2)]
    prefixes = ["Top activations (dashboard lines)", "4.00", "3.12", "One paragraph that wraps (the lens)", ""]
    centers = [-1, len(first) // 2, len(second) // 2, -1, -1]
    view.set_lines(lines, values, max_value=4.0, prefixes=prefixes, centers=centers)
    under = [None, np.linspace(-1, 1, len(first)).astype(np.float32), None, None, None]
    view.set_underlines(under)
    view.set_highlight(2, 1)
    view.resize(width, view.sizeHint().height())
    return view


def build_guesses(width: int = 640):
    """The Train dialog's guesses: a Hebrew and an Arabic guess among Latin ones."""
    from superpos_app.widgets.token_view import TokenView

    view = TokenView(isolate_tokens=True, line_gap=2.0)
    rows = [["→ ", "יש", " 41%", " · ", "the", " 12%", " (actual ", "של", ")"],
            ["→ ", "␣return", " 61%", " · ", "␣x", " 20%"],
            ["→ ", "بال", " 33%", " · ", "عالم", " 9%"]]
    values = [np.array([0, 0, 0, 0, 0, 0, 0, -1, 0], np.float32), np.array([0, 1, 0, 0, 0, 0], np.float32),
              np.array([0, 1, 0, 0, 0, 0], np.float32)]
    view.set_lines(rows, values, max_value=1.0, prefixes=["…שלום עולם", "…def f(x):↵    ", "…مرحبا"])
    view.resize(width, view.sizeHint().height())
    return view


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT))
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    views = {f"text-{name}": build_view(name) for name in SAMPLES}
    views["text-guesses"] = build_guesses()
    for name, view in views.items():
        view.show()
        app.processEvents()
        path = out / f"{name}.png"
        view.grab().save(str(path))
        print(f"wrote {path} ({view.width()}×{view.height()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
