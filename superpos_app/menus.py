"""The main window's menu bar and status bar: every action, with its objectName and shortcut.

``install_menus(window)`` and ``install_status_bar(window)`` build them once and set them as
attributes of the window (``window.open_action``, ``window.view_menu``, ``window.job_box``, …), which
is how the window, its tests and the screenshots script reach them. The slots stay the window's.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QProgressBar, QPushButton, QWidget

from superpos_app.workers.jobs import JobStatus
from superpos_app.plain_text import tooltip
from superpos_app.toy import show_toy_window

__all__ = ["install_menus", "install_status_bar", "JobBox"]


def _action(window: QMainWindow, text: str, slot, shortcut=None, name: str = "", tip: str = "") -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if name:
        action.setObjectName(name)
    if tip:
        action.setStatusTip(tip)
    action.triggered.connect(lambda checked=False: slot())
    return action


def install_menus(w) -> None:
    """File (open, analyse a model and SAE, recent, show in folder, close, export, quit), Run (train, explain, cancel, toy models), View (history, overview, the
    panes' toggles before ``w.pane_separator``, reset layout), Help (demo, about)."""
    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    w.open_action = _action(w, "&Open Bundle…", w.open_dialog, QKeySequence("Ctrl+O"), "openAction")
    w.recent_menu = file_menu.addMenu("Open &Recent")
    w.recent_menu.setObjectName("recentMenu")
    w.close_action = _action(w, "&Close Bundle", w.close_bundle, QKeySequence("Ctrl+W"), "closeAction")
    w.show_in_folder_action = _action(w, "Show in &Folder", w.show_in_folder, None, "showInFolderAction",
                                      "Open the folder that holds the bundle in the file manager")
    w.export_copy_action = _action(w, "Save a &Copy of the Bundle…", w.export_copy, None, "exportCopyAction")
    w.export_saelens_action = _action(w, "Export SAE for &SAELens…", w.export_saelens, None,
                                      "exportSaelensAction")
    w.analyze_action = _action(w, "&Analyse a Model and SAE…", w.show_analyze_dialog, None, "analyzeAction",
                               "Analyse a TransformerLens model and an SAELens / dictionary_learning / sparsify SAE")
    w.quit_action = _action(w, "&Quit", w.close, QKeySequence("Ctrl+Q"), "quitAction")
    w.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
    file_menu.insertAction(w.recent_menu.menuAction(), w.open_action)
    file_menu.insertAction(w.recent_menu.menuAction(), w.analyze_action)
    file_menu.addAction(w.show_in_folder_action)
    file_menu.addAction(w.close_action)
    file_menu.addSeparator()
    w.export_menu = file_menu.addMenu("&Export")
    w.export_menu.addAction(w.export_copy_action)
    w.export_menu.addAction(w.export_saelens_action)
    file_menu.addSeparator()
    file_menu.addAction(w.quit_action)

    run_menu = bar.addMenu("&Run")
    w.train_action = _action(w, "&Train…", w.show_train_dialog, QKeySequence("Ctrl+T"), "trainAction",
                             "Train a model and an SAE on a corpus")
    w.explain_action = _action(w, "&Explain Units…", w.show_explain_dialog, QKeySequence("Ctrl+E"), "explainAction",
                               "Explain and score features or neurons with a language model")
    w.cancel_action = _action(w, "&Cancel Job", w.jobs.cancel, QKeySequence("Esc"), "cancelAction")
    w.cancel_action.setEnabled(False)
    run_menu.addAction(w.train_action)
    run_menu.addAction(w.explain_action)
    run_menu.addAction(w.cancel_action)
    run_menu.addSeparator()
    w.toy_action = _action(w, "T&oy Models of Superposition…", lambda: show_toy_window(w), None, "toyModelsAction",
                           "Train toy models of superposition live, and an SAE on their hidden layer")
    run_menu.addAction(w.toy_action)

    w.view_menu = bar.addMenu("&View")
    w.back_action = _action(w, "&Back", w.selection.back, QKeySequence.StandardKey.Back, "backAction")
    w.forward_action = _action(w, "&Forward", w.selection.forward, QKeySequence.StandardKey.Forward,
                               "forwardAction")
    w.view_menu.addAction(w.back_action)
    w.view_menu.addAction(w.forward_action)
    w.view_menu.addSeparator()
    w.overview_action = _action(w, "&Overview", w.show_overview, QKeySequence("Ctrl+1"), "overviewAction")
    w.view_menu.addAction(w.overview_action)
    w.pane_separator = w.view_menu.addSeparator()
    w.reset_layout_action = _action(w, "&Reset Layout", w.reset_layout, None, "resetLayoutAction")
    w.view_menu.addAction(w.reset_layout_action)

    help_menu = bar.addMenu("&Help")
    w.demo_action = _action(w, "Open &Demo", w.open_demo, None, "demoAction")
    w.about_action = _action(w, "&About superpos", w.show_about, None, "aboutAction")
    w.about_action.setMenuRole(QAction.MenuRole.AboutRole)
    help_menu.addAction(w.demo_action)
    help_menu.addSeparator()
    help_menu.addAction(w.about_action)


class JobBox(QWidget):
    """The running job in the status bar: its title, a progress bar, the job's status text (stage,
    percent, ETA: ``JobStatus.text``, the very text the Train dialog shows) beside the bar where it
    has room, never clipped inside it, and Cancel (shown while busy)."""

    def __init__(self, cancel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobBox")
        box = QHBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(6)
        self.label = QLabel("")
        self.label.setObjectName("jobLabel")
        self.label.setMinimumWidth(120)
        self.progress = QProgressBar()
        self.progress.setObjectName("jobProgress")
        self.progress.setRange(0, 1000)
        self.progress.setFixedWidth(140)
        self.progress.setTextVisible(False)
        self.text = QLabel("")
        self.text.setObjectName("jobStatusText")
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelJobButton")
        self.cancel_button.setToolTip("Stop the job; its checkpoints are kept so it can resume (Esc)")
        self.cancel_button.clicked.connect(cancel)
        box.addWidget(self.label)
        box.addWidget(self.progress)
        box.addWidget(self.text)
        box.addWidget(self.cancel_button)

    def set_busy(self, busy: bool) -> None:
        self.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        if busy:
            self.progress.setValue(0)

    def show_status(self, status: JobStatus) -> None:
        self.label.setText(status.title)
        if status.run_fraction is not None:        # a pipeline run: the bar is the whole run
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * status.run_fraction))
        elif status.total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * status.fraction))
        else:
            self.progress.setRange(0, 0)       # busy indicator
        self.text.setText(status.text)
        self.progress.setToolTip(tooltip(status.text))
        self.cancel_button.setEnabled(not status.cancelling)


def install_status_bar(w) -> None:
    """The open bundle on the left; the job box and the device on the right."""
    status = w.statusBar()
    status.setObjectName("statusBar")
    w.bundle_label = QLabel("No bundle open")
    w.bundle_label.setObjectName("bundleStatus")
    w.bundle_label.setTextFormat(Qt.TextFormat.PlainText)      # a path from the file system: never markup
    status.addWidget(w.bundle_label, 1)
    w.job_box = JobBox(w.jobs.cancel)
    w.job_label, w.job_progress, w.cancel_button = w.job_box.label, w.job_box.progress, w.job_box.cancel_button
    status.addPermanentWidget(w.job_box)
    w.job_box.setVisible(False)                # shown while a job runs
    w.device_label = QLabel("Device: …")
    w.device_label.setObjectName("deviceStatus")
    status.addPermanentWidget(w.device_label)
