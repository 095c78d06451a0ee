"""The main window: welcome view or the open bundle's overview in the middle, panes docked around.

What other parts of the app use (the panes in ``superpos_app/panes`` in particular):

- ``window.bundle``: the open ``engine.bundle.Bundle`` or ``None``;
  ``bundleOpened(bundle)`` / ``bundleClosed()`` signals.
- ``window.selection``: the shared ``Selection`` (``unitSelected(kind, index)``, back/forward).
- ``window.jobs``: the ``JobController`` that runs engine jobs in the background.
- ``window.add_pane(widget, title, area, object_name)`` -> QDockWidget: registers a pane as a
  dock, adds its toggle to the View menu, and lets its place be saved and restored. Panes are
  shown only while a bundle is open. ``superpos_app.panes.install_panes(window)``, if the panes
  package provides it, is called once while the window is built.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QHBoxLayout, QLabel, QMainWindow,
                               QMessageBox, QProgressBar, QPushButton, QStackedWidget, QWidget)

from engine import paths
from superpos_app.errors import show_error
from superpos_app.jobs import JobController, JobStatus
from superpos_app.overview import OverviewPane
from superpos_app.selection import Selection
from superpos_app.settings import AppSettings
from superpos_app.welcome import WelcomeView

__all__ = ["MainWindow", "BUNDLE_FILTER"]

BUNDLE_FILTER = "superpos bundles (*.h5 *.hdf5);;All files (*)"
BUNDLE_SUFFIXES = (".h5", ".hdf5")
_STATE_VERSION = 1


class MainWindow(QMainWindow):
    bundleOpened = Signal(object)
    bundleClosed = Signal()

    def __init__(self, settings: AppSettings | None = None, install_panes: bool = True) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle("superpos")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.resize(1280, 820)
        self.settings = settings or AppSettings()
        self.bundle = None
        self.selection = Selection(self)
        self.jobs = JobController(self)
        self.train_dialog = None
        self._docks: dict[str, QDockWidget] = {}
        self._dock_layout: QByteArray | None = None   # dock arrangement while a bundle is open

        self.welcome = WelcomeView()
        self.overview = OverviewPane()
        self.stack = QStackedWidget()
        self.stack.setObjectName("centralStack")
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.overview)
        self.setCentralWidget(self.stack)
        self.welcome.openRequested.connect(self.open_dialog)
        self.welcome.trainRequested.connect(self.show_train_dialog)
        self.welcome.demoRequested.connect(self.open_demo)
        self.welcome.recentRequested.connect(self.open_bundle)

        self._build_menus()
        self._build_status_bar()
        self._connect_jobs()
        if install_panes:
            self._install_panes()
        self._restore_window_state()
        self._refresh_recent()
        self._set_bundle_ui(None)
        QTimer.singleShot(0, self._show_device)

    # ============================================================================================
    # building
    # ============================================================================================
    def _action(self, text: str, slot, shortcut=None, name: str | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if name:
            action.setObjectName(name)
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(lambda checked=False: slot())
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_action = self._action("&Open Bundle…", self.open_dialog, QKeySequence("Ctrl+O"), "openAction")
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.setObjectName("recentMenu")
        self.close_action = self._action("&Close Bundle", self.close_bundle, QKeySequence("Ctrl+W"), "closeAction")
        self.export_copy_action = self._action("Save a &Copy of the Bundle…", self.export_copy, None, "exportCopyAction")
        self.export_saelens_action = self._action("Export SAE for &SAELens…", self.export_saelens, None,
                                                  "exportSaelensAction")
        self.quit_action = self._action("&Quit", self.close, QKeySequence("Ctrl+Q"), "quitAction")
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        file_menu.insertAction(self.recent_menu.menuAction(), self.open_action)
        file_menu.addAction(self.close_action)
        file_menu.addSeparator()
        export_menu = file_menu.addMenu("&Export")
        export_menu.addAction(self.export_copy_action)
        export_menu.addAction(self.export_saelens_action)
        self.export_menu = export_menu
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        run_menu = bar.addMenu("&Run")
        self.train_action = self._action("&Train…", self.show_train_dialog, QKeySequence("Ctrl+T"), "trainAction",
                                         "Train a model and an SAE on a corpus")
        self.cancel_action = self._action("&Cancel Job", self.jobs.cancel, QKeySequence("Esc"), "cancelAction")
        self.cancel_action.setEnabled(False)
        run_menu.addAction(self.train_action)
        run_menu.addAction(self.cancel_action)

        self.view_menu = bar.addMenu("&View")
        self.back_action = self._action("&Back", self.selection.back, QKeySequence.StandardKey.Back, "backAction")
        self.forward_action = self._action("&Forward", self.selection.forward, QKeySequence.StandardKey.Forward,
                                           "forwardAction")
        self.view_menu.addAction(self.back_action)
        self.view_menu.addAction(self.forward_action)
        self.view_menu.addSeparator()
        self.overview_action = self._action("&Overview", self.show_overview, QKeySequence("Ctrl+1"), "overviewAction")
        self.view_menu.addAction(self.overview_action)
        self._pane_separator = self.view_menu.addSeparator()
        self.reset_layout_action = self._action("&Reset Layout", self.reset_layout, None, "resetLayoutAction")
        self.view_menu.addAction(self.reset_layout_action)
        self.selection.historyChanged.connect(self._update_history_actions)
        self._update_history_actions()

        help_menu = bar.addMenu("&Help")
        self.demo_action = self._action("Open &Demo", self.open_demo, None, "demoAction")
        self.about_action = self._action("&About superpos", self.show_about, None, "aboutAction")
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        help_menu.addAction(self.demo_action)
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        status.setObjectName("statusBar")
        self.bundle_label = QLabel("No bundle open")
        self.bundle_label.setObjectName("bundleStatus")
        status.addWidget(self.bundle_label, 1)

        self.job_box = QWidget()
        self.job_box.setObjectName("jobBox")
        box = QHBoxLayout(self.job_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(6)
        self.job_label = QLabel("")
        self.job_label.setObjectName("jobLabel")
        self.job_label.setMinimumWidth(120)
        self.job_progress = QProgressBar()
        self.job_progress.setObjectName("jobProgress")
        self.job_progress.setRange(0, 1000)
        self.job_progress.setFixedWidth(290)
        self.job_progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelJobButton")
        self.cancel_button.setToolTip("Stop the job; its checkpoints are kept so it can resume (Esc)")
        self.cancel_button.clicked.connect(self.jobs.cancel)
        box.addWidget(self.job_label)
        box.addWidget(self.job_progress)
        box.addWidget(self.cancel_button)
        status.addPermanentWidget(self.job_box)
        self.job_box.setVisible(False)

        self.device_label = QLabel("Device: …")
        self.device_label.setObjectName("deviceStatus")
        status.addPermanentWidget(self.device_label)

    def _connect_jobs(self) -> None:
        jobs = self.jobs
        jobs.busyChanged.connect(self._on_busy)
        jobs.statusChanged.connect(self._on_job_status)
        jobs.jobCancelled.connect(lambda text: self.statusBar().showMessage(text, 8000))
        jobs.jobFailed.connect(self._on_job_failed)
        jobs.messageReceived.connect(lambda text, level: self.statusBar().showMessage(text, 6000))

    def _install_panes(self) -> None:
        try:
            from superpos_app import panes
        except ImportError:
            return
        install = getattr(panes, "install_panes", None)
        if install is not None:
            install(self)

    # ============================================================================================
    # panes
    # ============================================================================================
    def add_pane(self, widget: QWidget, title: str, area=Qt.DockWidgetArea.RightDockWidgetArea,
                 object_name: str | None = None, shortcut: str | None = None) -> QDockWidget:
        """Dock ``widget`` as a pane; returns its QDockWidget (objectName ``<object_name>Dock``)."""
        name = object_name or widget.objectName() or title.lower().replace(" ", "")
        if not widget.objectName():
            widget.setObjectName(name)
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{name}Dock")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        if isinstance(area, str):
            area = {"left": Qt.DockWidgetArea.LeftDockWidgetArea, "right": Qt.DockWidgetArea.RightDockWidgetArea,
                    "top": Qt.DockWidgetArea.TopDockWidgetArea,
                    "bottom": Qt.DockWidgetArea.BottomDockWidgetArea}[area]
        self.addDockWidget(area, dock)
        toggle = dock.toggleViewAction()
        toggle.setText(title)
        if shortcut:
            toggle.setShortcut(QKeySequence(shortcut))
        self.view_menu.insertAction(self._pane_separator, toggle)
        self._docks[name] = dock
        dock.setVisible(self.bundle is not None)
        return dock

    def pane(self, object_name: str) -> QWidget | None:
        dock = self._docks.get(object_name)
        return dock.widget() if dock is not None else None

    @property
    def docks(self) -> dict[str, QDockWidget]:
        return dict(self._docks)

    def reset_layout(self) -> None:
        for dock in self._docks.values():
            dock.setFloating(False)
            dock.setVisible(self.bundle is not None)
        self._dock_layout = None

    def show_overview(self) -> None:
        if self.bundle is not None:
            self.stack.setCurrentWidget(self.overview)

    # ============================================================================================
    # bundles
    # ============================================================================================
    def open_dialog(self) -> None:
        start = str(Path(self.settings.recent_files()[0]).parent) if self.settings.recent_files() else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open bundle", start, BUNDLE_FILTER)
        if path:
            self.open_bundle(path)

    def open_bundle(self, path: str | os.PathLike) -> bool:
        """Open a bundle file and show it; a file that is not a readable bundle shows an error box."""
        path = Path(path)
        if self.bundle is not None and Path(str(self.bundle.path)).resolve() == path.resolve():
            self.show_overview()
            return True
        try:
            from engine.bundle import open_bundle
            bundle = open_bundle(path)
        except Exception as exc:  # noqa: BLE001 - BundleError and OS errors alike: tell the user
            if not path.exists():
                self.settings.remove_recent(path)
                self._refresh_recent()
            show_error(self, "Could not open the bundle", exc)
            return False
        self.close_bundle()
        self.bundle = bundle
        self.settings.add_recent(path)
        self._refresh_recent()
        self._set_bundle_ui(bundle)
        self.bundleOpened.emit(bundle)
        return True

    def close_bundle(self) -> None:
        if self.bundle is None:
            return
        bundle, self.bundle = self.bundle, None
        self.selection.clear()
        self.bundleClosed.emit()
        self._set_bundle_ui(None)
        try:
            bundle.close()
        except Exception:  # noqa: BLE001 - closing a handle must never take the app down
            pass

    def _set_bundle_ui(self, bundle) -> None:
        has = bundle is not None
        if has:
            self.overview.set_bundle(bundle)
            self.stack.setCurrentWidget(self.overview)
            self.setWindowTitle(f"{Path(str(bundle.path)).name} — superpos")
            self.bundle_label.setText(f"{bundle.path}  ·  {int(bundle.n_features):,} features, "
                                      f"{int(bundle.n_neurons):,} neurons")
            if self._docks:
                if self._dock_layout is not None:
                    self.restoreState(self._dock_layout, _STATE_VERSION)
                else:
                    for dock in self._docks.values():
                        dock.setVisible(True)
        else:
            if self._docks and any(not d.isHidden() for d in self._docks.values()):
                self._dock_layout = self.saveState(_STATE_VERSION)
            for dock in self._docks.values():
                dock.setVisible(False)
            self.overview.set_bundle(None)
            self.stack.setCurrentWidget(self.welcome)
            self.setWindowTitle("superpos")
            self.bundle_label.setText("No bundle open")
        for action in (self.close_action, self.export_copy_action, self.overview_action):
            action.setEnabled(has)
        self.export_saelens_action.setEnabled(has and self._saelens_exporter() is not None)
        for dock in self._docks.values():
            dock.toggleViewAction().setEnabled(has)

    def _refresh_recent(self) -> None:
        files = self.settings.recent_files()
        self.welcome.set_recent(files)
        self.recent_menu.clear()
        for f in files:
            action = self.recent_menu.addAction(Path(f).name)
            action.setToolTip(f)
            action.setStatusTip(f)
            action.triggered.connect(lambda checked=False, f=f: self.open_bundle(f))
        if files:
            self.recent_menu.addSeparator()
            clear = self.recent_menu.addAction("Clear Recent")
            clear.triggered.connect(lambda: (self.settings.clear_recent(), self._refresh_recent()))
        self.recent_menu.setEnabled(bool(files))

    # --- export ------------------------------------------------------------------------------
    def export_copy(self, target: str | None = None) -> bool:
        if self.bundle is None:
            return False
        src = Path(str(self.bundle.path))
        if target is None:
            target, _ = QFileDialog.getSaveFileName(self, "Save a copy of the bundle",
                                                    str(src.with_name(src.stem + "-copy.h5")), BUNDLE_FILTER)
            if not target:
                return False
        try:
            from engine.fileio import atomic_path
            with atomic_path(target) as tmp:
                shutil.copyfile(src, tmp)
        except Exception as exc:  # noqa: BLE001
            show_error(self, "Could not save the copy", exc)
            return False
        self.statusBar().showMessage(f"Saved a copy to {target}", 6000)
        return True

    def _saelens_exporter(self):
        try:
            import engine.bundle as eb
        except ImportError:
            return None
        return getattr(eb, "export_saelens", None)

    def export_saelens(self, target: str | None = None) -> bool:
        exporter = self._saelens_exporter()
        if self.bundle is None or exporter is None:
            return False
        if target is None:
            target = QFileDialog.getExistingDirectory(self, "Export the SAE for SAELens (choose a folder)")
            if not target:
                return False
        try:
            exporter(self.bundle, target)
        except Exception as exc:  # noqa: BLE001
            show_error(self, "Could not export the SAE", exc)
            return False
        self.statusBar().showMessage(f"Exported the SAE to {target}", 6000)
        return True

    # ============================================================================================
    # training and the demo
    # ============================================================================================
    def show_train_dialog(self, preset_name: str | None = None, output: str | None = None,
                          start: bool = False):
        from superpos_app.train_dialog import TrainDialog

        if self.train_dialog is None:
            self.train_dialog = TrainDialog(self.jobs, self.settings, parent=self)
            self.train_dialog.bundleReady.connect(self._on_trained)
        dialog = self.train_dialog
        if preset_name is not None and not self.jobs.is_busy:
            dialog.load_preset(preset_name)
        if output is not None and not self.jobs.is_busy:
            dialog.set_output(output)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        if start and not self.jobs.is_busy:
            dialog.start()
        return dialog

    def _on_trained(self, path: str) -> None:
        self.open_bundle(path)

    def open_demo(self) -> None:
        """Open the cached demo bundle, or train it first (demo preset, built-in corpus)."""
        demo = paths.demo_bundle_path()
        if demo.exists():
            self.open_bundle(demo)
            return
        if self.jobs.is_busy:
            self.statusBar().showMessage("A job is already running; the demo can start when it ends.", 6000)
            return
        dialog = self.show_train_dialog("demo", str(demo), start=False)
        dialog.set_corpus("builtin")
        dialog.start()

    # ============================================================================================
    # jobs
    # ============================================================================================
    def _on_busy(self, busy: bool) -> None:
        self.job_box.setVisible(busy)
        self.cancel_action.setEnabled(busy)
        self.cancel_button.setEnabled(busy)
        if busy:
            self.job_progress.setValue(0)

    def _on_job_status(self, status: JobStatus) -> None:
        self.job_label.setText(status.title)
        if status.total:
            self.job_progress.setRange(0, 1000)
            self.job_progress.setValue(int(1000 * status.fraction))
        else:
            self.job_progress.setRange(0, 0)       # busy indicator
        self.job_progress.setFormat(status.text)
        self.job_progress.setToolTip(status.text)
        self.cancel_button.setEnabled(not status.cancelling)

    def _on_job_failed(self, message: str, details: str) -> None:
        show_error(self, "The job stopped with an error", message, details)

    # ============================================================================================
    # about, device, window state
    # ============================================================================================
    def _device_text(self) -> str:
        try:
            from engine.device import describe_device, resolve_device
            return describe_device(resolve_device("auto"))
        except Exception:  # noqa: BLE001
            return "CPU"

    def _show_device(self) -> None:
        self.device_label.setText(f"Device: {self._device_text()}")
        self.device_label.adjustSize()

    def about_text(self) -> str:
        import numpy
        import PySide6
        import pyqtgraph
        import torch
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("superpos")
        except PackageNotFoundError:
            ours = "development"
        return (f"<h3>superpos {ours}</h3>"
                "<p>A desktop lab for superposition research: train a one-layer transformer and a "
                "sparse autoencoder on your own text, then explore its features and neurons "
                "(after Bricken et al., <i>Towards Monosemanticity</i>, 2023).</p>"
                f"<p>Device in use: <b>{self._device_text()}</b></p>"
                f"<p>Python {platform.python_version()} · PyTorch {torch.__version__} · "
                f"Qt {PySide6.QtCore.qVersion()} (PySide6 {PySide6.__version__}) · "
                f"pyqtgraph {pyqtgraph.__version__} · NumPy {numpy.__version__}</p>"
                f"<p>Settings: {self.settings.path}<br>Data: {paths.data_dir()}</p>")

    def show_about(self) -> QMessageBox:
        box = QMessageBox(self)
        box.setObjectName("aboutDialog")
        box.setWindowTitle("About superpos")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(self.about_text())
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box

    def _update_history_actions(self) -> None:
        self.back_action.setEnabled(self.selection.can_back)
        self.forward_action.setEnabled(self.selection.can_forward)

    def _restore_window_state(self) -> None:
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None and self._docks:
            self._dock_layout = state

    def save_window_state(self) -> None:
        if self.bundle is not None and self._docks:
            self._dock_layout = self.saveState(_STATE_VERSION)
        state = self._dock_layout if self._dock_layout is not None else self.saveState(_STATE_VERSION)
        self.settings.set_window_state(self.saveGeometry(), state)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        if self.jobs.is_busy:
            self.jobs.cancel()
            self.jobs.wait(5000)
        self.save_window_state()
        if self.train_dialog is not None:
            self.train_dialog.close()
        self.close_bundle()
        super().closeEvent(event)

    # --- drag and drop -----------------------------------------------------------------------
    @staticmethod
    def _dropped_bundle(mime) -> str | None:
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile() and url.toLocalFile().lower().endswith(BUNDLE_SUFFIXES):
                return url.toLocalFile()
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._dropped_bundle(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if self._dropped_bundle(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = self._dropped_bundle(event.mimeData())
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        # Open after the drop returns so the source application is not kept waiting.
        QTimer.singleShot(0, lambda: self.open_bundle(path))
