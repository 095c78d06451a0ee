"""The main window's pane docks and their arrangement, kept across bundles and sessions.

Panes are shown only while a bundle is open. Closing a bundle remembers how the docks were arranged
(``QMainWindow.saveState``) and hides them; opening one brings that arrangement back, so a pane the
user closed stays closed. On quit the arrangement and the window geometry go to the settings file,
and the next session starts from them.

``default_sizes`` is the first-start arrangement's dock sizes (pixels for the 1280×820 window,
scaled to the window's size); they are applied when a bundle first shows the docks with no
remembered arrangement and again by View › Reset Layout, which puts sizes back as well as places.

Docks named in ``family_only`` (the feature map, splitting, universality) exist only for a bundle
that holds a family of dictionaries: for any other they are hidden and so are their View toggles.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QWidget

__all__ = ["DockLayout", "DOCK_AREAS"]

STATE_VERSION = 1
DOCK_AREAS = {"left": Qt.DockWidgetArea.LeftDockWidgetArea, "right": Qt.DockWidgetArea.RightDockWidgetArea,
              "top": Qt.DockWidgetArea.TopDockWidgetArea, "bottom": Qt.DockWidgetArea.BottomDockWidgetArea}


class DockLayout:
    """The docks of ``window``: their toggles go in ``menu`` before ``before``; layout in ``settings``."""

    def __init__(self, window: QMainWindow, menu: QMenu, before: QAction, settings) -> None:
        self.window = window
        self.menu = menu
        self.before = before
        self.settings = settings
        self.docks: dict[str, QDockWidget] = {}
        self._saved: QByteArray | None = None     # dock arrangement while a bundle is open
        self.family_only: set[str] = set()         # docks shown only for a bundle with a family
        self._has_family = False
        # [(dock names, sizes at 1280x820, Qt.Orientation)]: the default arrangement's sizes
        self.default_sizes: list[tuple[tuple[str, ...], tuple[int, ...], Qt.Orientation]] = []
        self.base_window = (1280, 820)
        self._hidden_no_family: set[str] = set()   # hidden because the bundle had no family: back for one

    def add(self, widget: QWidget, title: str, area, object_name: str | None, shortcut: str | None,
            visible: bool) -> QDockWidget:
        name = object_name or widget.objectName() or title.lower().replace(" ", "")
        if not widget.objectName():
            widget.setObjectName(name)
        dock = QDockWidget(title, self.window)
        dock.setObjectName(f"{name}Dock")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.window.addDockWidget(DOCK_AREAS[area] if isinstance(area, str) else area, dock)
        toggle = dock.toggleViewAction()
        toggle.setText(title)
        toggle.triggered.connect(lambda checked: checked and dock.raise_())   # a tabbed pane comes to the front
        if shortcut:
            toggle.setShortcut(QKeySequence(shortcut))
        self.menu.insertAction(self.before, toggle)
        self.docks[name] = dock
        dock.setVisible(visible)
        toggle.setEnabled(visible)
        return dock

    def show_for_bundle(self, has_bundle: bool, has_family: bool = False) -> None:
        """Bring back the remembered arrangement (a bundle opened) or remember it and hide (closed);
        the family-only docks appear only when the bundle holds a family."""
        self._has_family = has_bundle and has_family
        if has_bundle:
            if self._saved is not None:
                self.window.restoreState(self._saved, STATE_VERSION)
            else:
                for dock in self.docks.values():
                    dock.setVisible(True)
                QTimer.singleShot(0, self.apply_default_sizes)
        else:
            if any(not d.isHidden() for d in self.docks.values()):
                self._saved = self.window.saveState(STATE_VERSION)
            for dock in self.docks.values():
                dock.setVisible(False)
        for name, dock in self.docks.items():
            dock.toggleViewAction().setEnabled(has_bundle)
            if name in self.family_only:
                dock.toggleViewAction().setVisible(self._has_family)
                if has_bundle and not self._has_family and not dock.isHidden():
                    dock.setVisible(False)
                    self._hidden_no_family.add(name)
                elif self._has_family and name in self._hidden_no_family:
                    dock.setVisible(True)
        if self._has_family:
            self._hidden_no_family.clear()

    def applies(self, name: str) -> bool:
        return name not in self.family_only or self._has_family

    def reset(self, has_bundle: bool) -> None:
        """Every dock back in the window (none floating), shown if a bundle is open and it applies."""
        for name, dock in self.docks.items():
            dock.setFloating(False)
            dock.setVisible(has_bundle and self.applies(name))
        self._saved = None
        if has_bundle:
            self.apply_default_sizes()
            QTimer.singleShot(0, self.apply_default_sizes)      # again once the re-docked layout settled

    def apply_default_sizes(self) -> None:
        """Resize the docks to the default arrangement's sizes, scaled to the window."""
        w0, h0 = self.base_window
        for names, sizes, orientation in self.default_sizes:
            docks = [self.docks[n] for n in names if n in self.docks]
            if len(docks) != len(names) or any(d.isHidden() or d.isFloating() for d in docks):
                continue
            scale = (self.window.width() / w0) if orientation == Qt.Orientation.Horizontal else \
                (self.window.height() / h0)
            self.window.resizeDocks(docks, [max(1, int(s * min(scale, 1.5))) for s in sizes], orientation)

    def restore_window_state(self) -> None:
        """Window geometry and, once there are docks, their arrangement, from the settings."""
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.window.restoreGeometry(geometry)
        if state is not None and self.docks:
            self._saved = state

    def save_window_state(self, has_bundle: bool) -> None:
        if has_bundle and self.docks:
            self._saved = self.window.saveState(STATE_VERSION)
        state = self._saved if self._saved is not None else self.window.saveState(STATE_VERSION)
        self.settings.set_window_state(self.window.saveGeometry(), state)
