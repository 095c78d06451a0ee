"""The main window: welcome view, opening bundles (good and corrupt), recent files, drag-and-drop,
pane docks and their saved layout, the demo, export, settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QProgressBar, QPushButton, QWidget

from engine import paths


def _error_dialog(window):
    boxes = [w for w in QApplication.topLevelWidgets() + window.findChildren(QMessageBox)
             if w.objectName() == "errorDialog" and w.isVisible()]
    return boxes[0] if boxes else None


def test_window_starts_on_welcome_with_stable_names(window):
    assert window.objectName() == "mainWindow"
    assert window.stack.currentWidget().objectName() == "welcomeView"
    assert window.findChild(QProgressBar, "jobProgress") is not None
    assert window.findChild(QPushButton, "cancelJobButton") is not None
    assert window.bundle is None
    assert not window.close_action.isEnabled()
    assert window.open_action.shortcut().toString() == "Ctrl+O"
    assert window.train_action.shortcut().toString() == "Ctrl+T"
    assert window.close_action.shortcut().toString() == "Ctrl+W"
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"


def test_opening_a_bundle_fills_the_overview(window, tiny_bundle, qtbot):
    from engine.bundle import open_bundle

    with open_bundle(tiny_bundle) as b:
        metrics, n_features = dict(b.metrics), b.n_features
        dead = b.dead_count("feature")
    with qtbot.waitSignal(window.bundleOpened, timeout=5000) as blocker:
        assert window.open_bundle(tiny_bundle)
    assert blocker.args[0] is window.bundle
    pane = window.findChild(QWidget, "overviewPane")
    assert window.stack.currentWidget() is pane
    value = lambda key: pane.findChild(QLabel, f"metric_{key}").text()  # noqa: E731
    assert value("loss_recovered") == f"{100 * metrics['loss_recovered']:.1f}%"
    assert value("l0") == f"{metrics['l0']:.4g}"
    assert value("dead_fraction") == f"{100 * dead.fraction:.1f}%"     # one meaning: never fired in the harvest
    assert value("mse") == f"{metrics['mse']:.4g}"
    assert pane.findChild(QLabel, "fact_features").text() == f"{n_features:,}"
    assert pane.density_counts.sum() > 0                        # histogram drawn
    assert pane.curves.point_count("model/train_loss") > 0      # stored curves drawn
    assert tiny_bundle.name in window.bundle_label.text()
    assert tiny_bundle.name in window.windowTitle()
    assert window.close_action.isEnabled()

    with qtbot.waitSignal(window.bundleClosed, timeout=2000):
        window.close_action.trigger()
    assert window.bundle is None
    assert window.stack.currentWidget().objectName() == "welcomeView"
    assert pane.findChild(QLabel, "metric_l0").text() == "—"


def test_corrupt_file_shows_error_and_window_stays_usable(window, tiny_bundle, tmp_path, qtbot):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"this is not an HDF5 file" * 100)
    assert window.open_bundle(bad) is False
    qtbot.waitUntil(lambda: _error_dialog(window) is not None, timeout=2000)
    box = _error_dialog(window)
    assert "Could not open" in box.text()
    assert box.informativeText() and "Traceback" not in box.informativeText()
    assert box.detailedText()                      # the expandable details
    box.accept()
    assert window.bundle is None
    assert window.stack.currentWidget().objectName() == "welcomeView"
    assert window.open_bundle(tiny_bundle)         # still usable
    assert window.bundle is not None


def test_missing_file_is_reported_and_dropped_from_recent(window, tmp_path, qtbot):
    missing = tmp_path / "gone.h5"
    window.settings.add_recent(missing)
    assert window.open_bundle(missing) is False
    qtbot.waitUntil(lambda: _error_dialog(window) is not None, timeout=2000)
    _error_dialog(window).accept()
    assert str(missing.resolve()) not in window.settings.recent_files()


def test_recent_files_are_listed_persisted_and_reopen(window, tiny_bundle, tmp_path, qtbot, app_settings):
    from superpos_app.settings import AppSettings

    second = tmp_path / "second.h5"
    shutil.copyfile(tiny_bundle, second)
    window.open_bundle(tiny_bundle)
    window.open_bundle(second)
    recent = window.settings.recent_files()
    assert recent[:2] == [str(second.resolve()), str(tiny_bundle.resolve())]
    assert AppSettings(app_settings.path).recent_files()[:2] == recent[:2]      # persisted on disk
    names = [a.text() for a in window.recent_menu.actions() if a.text()]
    assert names[:2] == ["second.h5", "tiny.h5"]

    window.close_bundle()
    lst = window.welcome.recent_list
    assert lst.count() == 2
    with qtbot.waitSignal(window.bundleOpened, timeout=5000):
        lst.itemClicked.emit(lst.item(1))
    assert Path(str(window.bundle.path)).name == "tiny.h5"

    # reopening the open bundle is a no-op; opening the other moves it to the top
    window.recent_menu.actions()[0].trigger()
    assert Path(str(window.bundle.path)).name == "tiny.h5"
    window.recent_menu.actions()[1].trigger()
    assert Path(str(window.bundle.path)).name == "second.h5"
    assert window.settings.recent_files()[0] == str(second.resolve())


def _drop(window, path: Path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    # QDragEnterEvent takes a QPoint, QDropEvent a QPointF (PySide6 6.5 to 6.11).
    enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    drop = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    return enter, drop


def test_drag_and_drop_opens_h5(window, tiny_bundle, tmp_path, qtbot):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    enter, _ = _drop(window, txt)
    assert not enter.isAccepted()
    enter, drop = _drop(window, tiny_bundle)
    assert enter.isAccepted() and drop.isAccepted()
    qtbot.waitUntil(lambda: window.bundle is not None, timeout=5000)
    assert Path(str(window.bundle.path)).resolve() == tiny_bundle.resolve()


def test_panes_dock_hide_without_bundle_and_layout_is_restored(qtbot, app_settings, tiny_bundle):
    from superpos_app.main_window import MainWindow

    def build():
        win = MainWindow(settings=app_settings, install_panes=False)
        qtbot.addWidget(win)
        a, b = QWidget(), QWidget()
        win.add_pane(a, "Alpha", Qt.DockWidgetArea.LeftDockWidgetArea, "alphaPane")
        win.add_pane(b, "Beta", "right", "betaPane")
        win.docking.restore_window_state()
        win.show()
        return win

    win = build()
    dock_a, dock_b = win.docks["alphaPane"], win.docks["betaPane"]
    assert win.pane("alphaPane").objectName() == "alphaPane"
    assert "Alpha" in [a.text() for a in win.view_menu.actions()]
    assert not dock_a.isVisible()                 # no bundle: panes are hidden
    win.open_bundle(tiny_bundle)
    assert dock_a.isVisible() and dock_b.isVisible()
    assert win.dockWidgetArea(dock_a) == Qt.DockWidgetArea.LeftDockWidgetArea
    dock_b.close()                                 # the user closes one pane
    win.close_bundle()
    assert not dock_a.isVisible()
    win.open_bundle(tiny_bundle)
    assert dock_a.isVisible() and not dock_b.isVisible()   # arrangement survives close/open
    win.removeDockWidget(dock_a)
    win.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock_a)
    dock_a.show()
    win.close()                                    # saves geometry + dock state

    win2 = build()
    win2.open_bundle(tiny_bundle)
    assert win2.dockWidgetArea(win2.docks["alphaPane"]) == Qt.DockWidgetArea.BottomDockWidgetArea
    assert not win2.docks["betaPane"].isVisible()
    win2.close()


def test_selection_history_drives_back_forward_actions(window):
    sel = window.selection
    got = []
    sel.unitSelected.connect(lambda k, i: got.append((k, i)))
    assert not window.back_action.isEnabled()
    sel.select("feature", 3)
    sel.select("neuron", 7)
    sel.select("neuron", 7)                        # same unit: no new entry
    assert window.back_action.isEnabled()
    window.back_action.trigger()
    assert sel.current == ("feature", 3) and window.forward_action.isEnabled()
    window.forward_action.trigger()
    assert got == [("feature", 3), ("neuron", 7), ("feature", 3), ("neuron", 7)]
    with pytest.raises(ValueError):
        sel.select("token", 1)
    sel.clear()
    assert sel.current is None and not window.back_action.isEnabled()


def test_about_names_versions_and_device(window, qtbot):
    box = window.show_about()
    text = box.text()
    assert "PyTorch" in text and "Qt" in text and "Device in use" in text and "CPU" in text
    box.accept()
    qtbot.waitUntil(lambda: "Device:" in window.device_label.text(), timeout=2000)


def test_export_copy(window, tiny_bundle, tmp_path):
    from engine.bundle import open_bundle

    assert window.export_copy(str(tmp_path / "x.h5")) is False    # nothing open
    window.open_bundle(tiny_bundle)
    target = tmp_path / "copy" / "mine.h5"
    assert window.export_copy(str(target))
    with open_bundle(target) as b:
        assert b.n_features == window.bundle.n_features


def test_export_saelens(window, tiny_bundle, tmp_path):
    window.open_bundle(tiny_bundle)
    assert window.export_saelens_action.isEnabled()
    target = tmp_path / "saelens"
    assert window.export_saelens(str(target))
    assert any(target.iterdir())


def test_demo_opens_the_cached_bundle(window, tiny_bundle):
    demo = paths.demo_bundle_path()
    shutil.copyfile(tiny_bundle, demo)
    try:
        window.demo_action.trigger()
        assert window.bundle is not None and Path(str(window.bundle.path)).resolve() == demo.resolve()
    finally:
        window.close_bundle()
        demo.unlink()


def test_demo_trains_when_not_cached(window, fake_pipeline, qtbot):
    demo = paths.demo_bundle_path()
    assert not demo.exists()
    try:
        with qtbot.waitSignal(window.bundleOpened, timeout=15000):
            window.welcome.demo_button.click()
        call = fake_pipeline.calls[-1]
        assert call["cfg"].name == "demo" and call["cfg"].corpus.spec == "builtin"
        assert Path(call["out"]) == demo
        assert window.train_dialog.curves.point_count("sae/mse") > 0
    finally:
        window.close_bundle()
        demo.unlink(missing_ok=True)


def test_create_window_opens_bundle_argument_with_the_panes(qtbot, app_settings, tiny_bundle):
    from superpos_app import create_window

    win = create_window(tiny_bundle, settings=app_settings)
    qtbot.addWidget(win)
    win.show()
    assert win.bundle is not None and win.bundle.n_features == 256
    try:
        from superpos_app.panes import PANE_NAMES
    except ImportError:
        PANE_NAMES = ()
    for name in PANE_NAMES:           # the exploration panes dock themselves and show with a bundle
        # the family panes only for a bundle that holds a family (this one has one dictionary)
        assert win.docks[name].isVisible() == (name not in ("featureMap", "splitting", "universality")), name
    win.close()
    assert win.bundle is None


def test_settings_live_under_superpos_home(qtbot):
    from superpos_app.settings import AppSettings

    s = AppSettings()
    assert Path(s.path).parent == paths.config_dir()
    s.set_last_training({"preset": "tiny", "config": {"name": "tiny"}, "output": "x.h5"})
    assert AppSettings().last_training()["preset"] == "tiny"


def test_entry_point_opens_the_bundle_argument(qtbot, tiny_bundle, monkeypatch):
    from superpos_app.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0

    def fake_exec(*_):
        QApplication.processEvents()       # runs the queued open; no event loop in tests
        return 0

    monkeypatch.setattr(QApplication, "exec", fake_exec)
    before = set(QApplication.topLevelWidgets())
    assert main([str(tiny_bundle)]) == 0
    wins = [w for w in QApplication.topLevelWidgets() if w.objectName() == "mainWindow" and w not in before]
    assert wins and wins[0].bundle is not None
    for w in wins:
        w.close()


def test_overview_reflows_when_narrow(qtbot, tiny_bundle):
    from engine.bundle import open_bundle
    from superpos_app.overview import OverviewPane

    pane = OverviewPane()
    qtbot.addWidget(pane)
    with open_bundle(tiny_bundle) as b:
        pane.set_bundle(b)
        pane.resize(1200, 800)
        pane.show()
        qtbot.waitUntil(lambda: pane._columns == 4)
        pane.resize(600, 800)
        qtbot.waitUntil(lambda: pane._columns == 2)
        pos = pane.card_grid.getItemPosition(pane.card_grid.indexOf(pane.cards["dead_fraction"]))
        assert pos[:2] == (2, 0)                       # 5th card: third row of two
        pane.set_bundle(None)
