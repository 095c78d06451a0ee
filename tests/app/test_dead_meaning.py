"""One meaning per word: "dead" is never fired on any of the harvested tokens, and the overview, the
search filter, `superpos info` and `superpos eval` show the same count with the token count."""

from __future__ import annotations

import json

from PySide6.QtWidgets import QLabel, QWidget

from engine.bundle import open_bundle
from engine.cli.main import main as cli


def test_dead_is_one_count_everywhere(qtbot, app_settings, tiny_bundle, capsys):
    from superpos_app import create_window

    with open_bundle(tiny_bundle) as b:
        dead = b.dead_count("feature")
        density = b.columns("feature")["density"]
        n_tokens = int(b.n_tokens)
        stored_eval = dict(b.metrics)["dead_fraction"]
    assert dead.n_dead == int((density == 0).sum()) and dead.n_tokens == n_tokens
    tokens = f"{n_tokens:,} harvested tokens"

    win = create_window(settings=app_settings)
    qtbot.addWidget(win)
    win.show()
    assert win.open_bundle(tiny_bundle)
    card = win.findChild(QWidget, "overviewPane").cards["dead_fraction"]
    assert card.findChild(QLabel, "metric_dead_fraction").text() == f"{100 * dead.fraction:.1f}%"
    assert tokens in card.toolTip() and f"{dead.n_dead:,} of {dead.n_units:,} features" in card.toolTip()

    search = win.pane("featureSearch")
    assert search.hide_dead.isChecked()
    assert tokens in search.hide_dead.toolTip() and f"{dead.n_dead:,} dead features" in search.hide_dead.toolTip()
    search.hide_dead.setChecked(False)
    shown_all = search.model.rowCount()
    search.hide_dead.setChecked(True)
    assert shown_all - search.model.rowCount() == dead.n_dead           # the filter hides exactly those
    win.close_bundle()

    assert cli(["info", str(tiny_bundle)]) == 0
    info = capsys.readouterr().out
    assert f"{dead.n_dead:,} dead (never fired on any of the {tokens})" in info
    assert cli(["info", str(tiny_bundle), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["features"]["dead"] == dead.n_dead
    assert summary["metrics"]["dead_fraction"] == dead.fraction

    assert cli(["eval", str(tiny_bundle), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["dead_fraction"] == dead.fraction and evaluated["dead_judged_on_tokens"] == n_tokens
    assert evaluated["eval_never_active_fraction"] == stored_eval       # the evaluation's own, named apart
