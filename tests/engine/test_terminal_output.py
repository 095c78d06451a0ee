"""What the CLI prints is safe for a terminal: strings from a (hostile) bundle, and error messages that
quote file names or contents, reach it with their control characters escaped, never raw."""

from __future__ import annotations

import json

import h5py

from bundle_parts import copy_bundle
from engine.cli.main import main
from engine.cli.terminal import terminal_safe

ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m"      # retitle the window, clear the screen, turn red
BIDI = "\u202eevil\u202c"                       # right-to-left override: reorders what is shown


def _raw_controls(text: str) -> list[str]:
    return [ch for ch in text if ch != "\n" and not ch.isprintable()]


def _hostile(src, tmp_path):
    path = copy_bundle(src, tmp_path, "hostile.h5")
    with h5py.File(path, "r+") as f:
        config = json.loads(f["config"][()])
        config["name"] = "run" + ESC
        config["corpus"]["spec"] = "notes/" + ESC + BIDI
        metrics = json.loads(f["metrics"][()])
        metrics["evil" + ESC] = 1.5
        metrics["mse"] = "0.5" + ESC
        for name, text in (("config", json.dumps(config)), ("metrics", json.dumps(metrics))):
            del f[name]
            f.create_dataset(name, data=text, dtype=h5py.string_dtype("utf-8"))
        f.attrs["generator"] = "superpos" + ESC
        f.attrs["created"] = "2026\r\n" + ESC
        f.attrs["extra_info"] = json.dumps({"note" + ESC: "x\x1b[8m" + BIDI, "multi\nline": "a\nb"})
        f.attrs["versions"] = json.dumps({"torch" + ESC: "2\x9b31m"})     # a C1 CSI too
    return path


def test_a_hostile_bundle_through_info_writes_no_control_characters(written, tmp_path, capsys):
    path = _hostile(written, tmp_path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out and "\r" not in out
    assert _raw_controls(out) == []
    assert "\\x1b]0;owned\\x07" in out and "\\u202e" in out and "\\x9b" in out   # visible, as escapes
    assert "multi\\nline" in out                                             # cannot forge a line
    assert main(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert _raw_controls(out) == [] and json.loads(out)["config"]["name"] == "run" + ESC


def test_error_messages_escape_what_they_quote(tmp_path, capsys):
    assert main(["info", str(tmp_path / f"x{ESC}.h5")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and _raw_controls(err) == [] and "\\x1b[2J" in err


def test_terminal_safe_keeps_ordinary_text():
    text = "héllo ✓ עברית 日本語 👩‍🔬 tab"
    assert terminal_safe(text) == text.replace("\u200d", "\\u200d")        # ZWJ is a format character
    assert terminal_safe("a\tb\x00c\x7f") == "a\\tb\\x00c\\x7f"
