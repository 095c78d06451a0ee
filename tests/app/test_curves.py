"""CurvePanel: a live metric key of a stage feeds the stored curve of the same name, "<stage>/<key>"."""

from __future__ import annotations

import numpy as np

from superpos_app.widgets.curves import CurvePanel


def test_live_metrics_feed_the_curve_named_stage_slash_key(qtbot):
    panel = CurvePanel()
    qtbot.addWidget(panel)
    added = panel.add_event_metrics("model", [(10, {"train_loss": 3.0, "lr": 1e-3}),
                                              (20, {"train_loss": 2.5, "val_loss": 2.7}),
                                              (30, {"train_loss": float("nan")})])
    assert added == 3                                   # model/lr has no plot; NaN is skipped
    assert panel.point_count("model/train_loss") == 2 and panel.point_count("model/val_loss") == 1
    panel.add_event_metrics("sae", [(512, {"mse": 0.1, "l0": 20.0, "dead_fraction": 0.0, "nmse": 0.3})])
    for name in ("sae/mse", "sae/l0", "sae/dead_fraction"):
        assert panel.point_count(name) == 1, name
    assert panel.point_count("sae/nmse") == 0           # no plot for it


def test_stored_curves_and_live_points_share_a_curve(qtbot):
    panel = CurvePanel()
    qtbot.addWidget(panel)
    panel.set_curve("sae/mse", np.array([[1.0, 0.5], [2.0, 0.4]]))
    panel.add_event_metrics("sae", [(3.0, {"mse": 0.3})])
    assert panel.point_count("sae/mse") == 3
    panel.clear_data()
    assert not panel.has_data()
