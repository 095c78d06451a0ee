"""The main window: welcome view or the open bundle's overview in the middle, panes docked around.

What other parts of the app use (the panes in ``superpos_app/panes`` in particular):

- ``window.bundle``: the open ``engine.bundle.Bundle`` or ``None``;
  ``bundleOpened(bundle)`` / ``bundleClosed()`` signals.
- ``window.switch_dictionary(d)``: another dictionary of the open family in every pane (the
  toolbar's ``DictionaryBar`` calls it; ``open_bundle(same path, d)`` too), emitting ``bundleOpened``
  without a close: the docks keep their geometry.
- ``window.selection``: the shared ``Selection`` (``unitSelected(kind, index)``, back/forward).
- ``window.jobs``: the ``JobController`` that runs engine jobs in the background.
- ``window.add_pane(widget, title, area, object_name)`` -> QDockWidget: registers a pane as a
  dock, adds its toggle to the View menu, and lets its place be saved and restored (see
  ``docking.DockLayout``). Panes are shown only while a bundle is open.
  ``superpos_app.panes.install_panes(window)`` is called once while the window is built.

The menu and status bars are built in ``menus``, the About box in ``about``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QMainWindow, QMessageBox, QSizePolicy, QStackedWidget,
                               QWidget)

from engine import paths
from engine.bundle import open_bundle as read_bundle
from engine.fileio import atomic_path
from engine.interop.saelens import export_saelens
from superpos_app.dialogs import about
from superpos_app.dictionary_bar import DictionaryBar, dictionary_name
from superpos_app.docking import DockLayout
from superpos_app.errors import show_error
from superpos_app.workers.jobs import JobController
from superpos_app.menus import install_menus, install_status_bar
from superpos_app.overview import OverviewPane
from superpos_app.plain_text import plain, tooltip
from superpos_app.selection import Selection
from superpos_app.settings import AppSettings
from superpos_app.welcome import WelcomeView

__all__ = ["MainWindow", "BUNDLE_FILTER"]

BUNDLE_FILTER = "superpos bundles (*.h5 *.hdf5);;All files (*)"
BUNDLE_SUFFIXES = (".h5", ".hdf5")


def open_url(url: QUrl) -> bool:
    """Hand a URL to the desktop (file manager, browser); the one place tests replace."""
    return QDesktopServices.openUrl(url)


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
        self.analyze_dialog = None
        self.explain_dialog = None

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

        install_menus(self)
        install_status_bar(self)
        self.dictionary_bar = DictionaryBar(self)           # a family's dictionary switcher
        self.dictionary_bar.dictionaryChosen.connect(self.switch_dictionary)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.dictionary_bar)
        self.welcome.toyRequested.connect(self.toy_action.trigger)
        self.docking = DockLayout(self, self.view_menu, self.pane_separator, self.settings)
        self.selection.historyChanged.connect(self._update_history_actions)
        self._update_history_actions()
        self._connect_jobs()
        if install_panes:
            from superpos_app.panes import install_panes as install   # the panes import pyqtgraph
            install(self)
        self.docking.restore_window_state()
        self._refresh_recent()
        self._set_bundle_ui(None)
        QTimer.singleShot(0, self._show_device)

    # ============================================================================================
    # building
    # ============================================================================================
    def _connect_jobs(self) -> None:
        jobs = self.jobs
        jobs.busyChanged.connect(self._on_busy)
        jobs.statusChanged.connect(self.job_box.show_status)
        jobs.jobCancelled.connect(lambda text: self.statusBar().showMessage(text, 8000))
        jobs.jobFailed.connect(self._on_job_failed)
        jobs.messageReceived.connect(lambda text, level: self.statusBar().showMessage(text, 6000))

    # ============================================================================================
    # panes
    # ============================================================================================
    def add_pane(self, widget: QWidget, title: str, area=Qt.DockWidgetArea.RightDockWidgetArea,
                 object_name: str | None = None, shortcut: str | None = None) -> QDockWidget:
        """Dock ``widget`` as a pane; returns its QDockWidget (objectName ``<object_name>Dock``).
        ``area`` is a Qt.DockWidgetArea or one of "left", "right", "top", "bottom"."""
        return self.docking.add(widget, title, area, object_name, shortcut, visible=self.bundle is not None)

    def pane(self, object_name: str) -> QWidget | None:
        dock = self.docking.docks.get(object_name)
        return dock.widget() if dock is not None else None

    @property
    def docks(self) -> dict[str, QDockWidget]:
        return dict(self.docking.docks)

    def reset_layout(self) -> None:
        self.docking.reset(self.bundle is not None)

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

    def open_bundle(self, path: str | os.PathLike, dictionary: int = 0) -> bool:
        """Open a bundle file and show it; a file that is not a readable bundle shows an error box.
        ``dictionary``: which dictionary of a family every pane shows (``Bundle.family``)."""
        path = Path(path)
        # realpath, not Path.resolve(): a symlink loop must be refused by open_bundle, not raise here
        if self.bundle is not None and os.path.realpath(self.bundle.path) == os.path.realpath(path):
            if getattr(self.bundle, "dictionary", 0) == dictionary:
                self.show_overview()
                return True
            return self.switch_dictionary(dictionary)
        try:
            bundle = read_bundle(path, dictionary)
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

    def switch_dictionary(self, dictionary: int) -> bool:
        """Show another dictionary of the open family in every pane. The window and its docks keep
        their size and place (no close, no re-layout); the selection starts empty (indices belong
        to one dictionary)."""
        if self.bundle is None or dictionary == getattr(self.bundle, "dictionary", 0):
            return self.bundle is not None
        try:
            bundle = read_bundle(self.bundle.path, dictionary)
        except Exception as exc:  # noqa: BLE001
            show_error(self, "Could not open that dictionary", exc)
            return False
        old, self.bundle = self.bundle, bundle
        self.selection.clear()
        self._show_bundle_names(bundle)
        self.overview.set_bundle(bundle)
        self.bundleOpened.emit(bundle)
        try:
            old.close()
        except Exception:  # noqa: BLE001 - closing a handle must never take the app down
            pass
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
        # the hidden welcome page must not hold the central area wide (the stack's minimum is its
        # pages' largest): with a bundle open the docks get that width
        policy = QSizePolicy.Policy.Ignored if has else QSizePolicy.Policy.Preferred
        self.welcome.setSizePolicy(policy, policy)
        if has:
            self.overview.set_bundle(bundle)
            self.stack.setCurrentWidget(self.overview)
            self._show_bundle_names(bundle)
        else:
            self.overview.set_bundle(None)
            self.dictionary_bar.set_bundle(None)
            self.stack.setCurrentWidget(self.welcome)
            self.setWindowTitle("superpos")
            self.setWindowFilePath("")
            self.bundle_label.setText("No bundle open")
        self.docking.show_for_bundle(has, has and len(getattr(bundle, "family", None) or ()) > 1)
        self.dictionary_bar.set_bundle(bundle)        # after the restored state: a family shows it
        for action in (self.close_action, self.export_copy_action, self.export_saelens_action,
                       self.overview_action, self.show_in_folder_action, self.explain_action):
            action.setEnabled(has)

    def _show_bundle_names(self, bundle) -> None:
        """The title and status bar name the file and, in a family, the active dictionary."""
        where = Path(str(bundle.path)).resolve()
        name = dictionary_name(bundle)
        which = f" [{name}]" if name else ""
        self.setWindowTitle(f"{plain(where.name, 120)}{which} — {plain(str(where.parent), 200)} — superpos")
        self.setWindowFilePath(str(where))                          # where the bundle lives
        self.bundle_label.setText(f"{plain(str(bundle.path), 300)}  ·  {name + ': ' if name else ''}"
                                  f"{int(bundle.n_features):,} features, {int(bundle.n_neurons):,} neurons")
        self.dictionary_bar.set_bundle(bundle)

    def show_in_folder(self) -> bool:
        """Open the open bundle's folder in the system file manager (File → Show in Folder)."""
        if self.bundle is None:
            return False
        folder = Path(str(self.bundle.path)).resolve().parent
        return open_url(QUrl.fromLocalFile(str(folder)))

    def _refresh_recent(self) -> None:
        files = self.settings.recent_files()
        self.welcome.set_recent(files)
        self.recent_menu.clear()
        for f in files:
            action = self.recent_menu.addAction(plain(Path(f).name, 120))
            action.setToolTip(tooltip(f))
            action.setStatusTip(plain(f, 300))
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
            with atomic_path(target, what="the copy of the bundle", size=src.stat().st_size) as tmp:
                shutil.copyfile(src, tmp)
        except Exception as exc:  # noqa: BLE001
            show_error(self, "Could not save the copy", exc)
            return False
        self.statusBar().showMessage(f"Saved a copy to {target}", 6000)
        return True

    def export_saelens(self, target: str | None = None) -> bool:
        if self.bundle is None:
            return False
        if target is None:
            target = QFileDialog.getExistingDirectory(self, "Export the SAE for SAELens (choose a folder)")
            if not target:
                return False
        try:
            export_saelens(self.bundle, target)
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
        from superpos_app.dialogs.train_dialog import TrainDialog

        if self.train_dialog is None:
            self.train_dialog = TrainDialog(self.jobs, self.settings, parent=self)
            self.train_dialog.bundleReady.connect(self._on_trained)
        dialog = self.train_dialog
        if preset_name is not None and not self.jobs.is_busy:
            dialog.form.load_preset(preset_name)
        if output is not None and not self.jobs.is_busy:
            dialog.form.set_output(output)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        if start and not self.jobs.is_busy:
            dialog.start()
        return dialog

    def show_analyze_dialog(self):
        """File > Analyse a Model and SAE…: the dialog (one per window); its result opens here."""
        from superpos_app.dialogs.analyze_dialog import AnalyzeDialog

        if self.analyze_dialog is None:
            self.analyze_dialog = AnalyzeDialog(self.jobs, parent=self)
            self.analyze_dialog.bundleReady.connect(self._on_analysed)
        self.analyze_dialog.show()
        self.analyze_dialog.raise_()
        return self.analyze_dialog

    def _on_analysed(self, path: str) -> None:
        if self.open_bundle(path):
            self.analyze_dialog.hide()
            self.statusBar().showMessage(f"Analysis finished; opened {Path(path).resolve()}", 15000)

    def show_explain_dialog(self):
        from superpos_app.dialogs.explain_dialog import show_explain_dialog

        return show_explain_dialog(self)

    def _on_trained(self, path: str) -> None:
        """The run finished: open its bundle and, once it is open, close the Train dialog (its curves
        are in the bundle: the overview shows them) and say where the bundle lives."""
        if self.open_bundle(path):
            if self.train_dialog is not None:
                self.train_dialog.hide()
            self.statusBar().showMessage(f"Training finished; opened {Path(path).resolve()}", 15000)

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
        dialog.form.set_corpus("builtin")
        dialog.start()

    # ============================================================================================
    # jobs
    # ============================================================================================
    def _on_busy(self, busy: bool) -> None:
        self.job_box.set_busy(busy)
        self.cancel_action.setEnabled(busy)

    def _on_job_failed(self, message: str, details: str) -> None:
        show_error(self, "The job stopped with an error", message, details)

    # ============================================================================================
    # about, device, window state
    # ============================================================================================
    def _show_device(self) -> None:
        self.device_label.setText(f"Device: {about.device_text()}")
        self.device_label.adjustSize()

    def show_about(self) -> QMessageBox:
        return about.show_about(self, self.settings.path)

    def _update_history_actions(self) -> None:
        self.back_action.setEnabled(self.selection.can_back)
        self.forward_action.setEnabled(self.selection.can_forward)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        if self.jobs.is_busy:
            self.jobs.cancel()
            self.jobs.wait(5000)
        self.docking.save_window_state(self.bundle is not None)
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
