"""The seven exploration panes: feature search, feature detail, text lens, neuron vs feature, and a
family's feature map, splitting tree and universality.

Every pane is built from the shared ``Selection`` alone (``FeatureSearchPane(selection)``) and fed a
bundle with ``set_bundle(bundle)`` (``None`` when it closes), so tests build them without a window.
``install_panes(window)`` (called by the main window) docks them, wires
them to ``window.bundleOpened`` / ``window.bundleClosed`` and adds Ctrl+F (search) and Ctrl+L (lens).
Back/forward (Alt+Left/Right) are the window's actions over ``Selection``'s history.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut

from superpos_app.dictionary_bar import dictionary_name
from superpos_app.faults import clear_fault, report_fault
from superpos_app.panes.compare import NeuronComparePane
from superpos_app.panes.detail import FeatureDetailPane
from superpos_app.panes.feature_map import FeatureMapPane
from superpos_app.panes.lens import TextLensPane
from superpos_app.panes.search import FeatureSearchPane
from superpos_app.panes.splitting import SplittingPane
from superpos_app.panes.universality import UniversalityPane

__all__ = ["install_panes", "FeatureSearchPane", "FeatureDetailPane", "TextLensPane",
           "NeuronComparePane", "FeatureMapPane", "SplittingPane", "UniversalityPane", "PANE_NAMES"]

PANE_NAMES = ("featureSearch", "featureDetail", "textLens", "neuronCompare", "featureMap", "splitting",
              "universality")


def install_panes(window) -> dict:
    """Create the seven panes, dock them in ``window`` and connect them; returns {objectName: pane}."""
    sel = window.selection
    search = FeatureSearchPane(sel)
    detail = FeatureDetailPane(sel)
    lens = TextLensPane(sel)
    compare = NeuronComparePane(sel)
    feature_map = FeatureMapPane(sel)
    splitting = SplittingPane(sel)
    universality = UniversalityPane(sel)
    panes = {p.objectName(): p for p in (search, detail, lens, compare, feature_map, splitting, universality)}

    docks = {
        "featureSearch": window.add_pane(search, "Feature Search", Qt.DockWidgetArea.LeftDockWidgetArea,
                                         "featureSearch"),
        "featureDetail": window.add_pane(detail, "Feature Detail", Qt.DockWidgetArea.RightDockWidgetArea,
                                         "featureDetail"),
        "neuronCompare": window.add_pane(compare, "Neuron vs Feature", Qt.DockWidgetArea.RightDockWidgetArea,
                                         "neuronCompare"),
        "textLens": window.add_pane(lens, "Text Lens", Qt.DockWidgetArea.BottomDockWidgetArea, "textLens"),
        "featureMap": window.add_pane(feature_map, "Feature Map", Qt.DockWidgetArea.BottomDockWidgetArea,
                                      "featureMap"),
        "splitting": window.add_pane(splitting, "Splitting", Qt.DockWidgetArea.RightDockWidgetArea, "splitting"),
        "universality": window.add_pane(universality, "Universality", Qt.DockWidgetArea.RightDockWidgetArea,
                                        "universality"),
    }
    window.docking.family_only.update(("featureMap", "splitting", "universality"))   # a family's panes
    window.tabifyDockWidget(docks["featureDetail"], docks["neuronCompare"])
    window.tabifyDockWidget(docks["neuronCompare"], docks["splitting"])
    window.tabifyDockWidget(docks["splitting"], docks["universality"])
    docks["featureDetail"].raise_()
    window.tabifyDockWidget(docks["textLens"], docks["featureMap"])
    docks["textLens"].raise_()
    # Feature Detail takes the right side top to bottom (its plots, logits and examples need the height);
    # the lens runs under the search and the overview, tall enough for its predictions table
    window.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
    window.docking.default_sizes = [(("featureSearch", "featureDetail"), (420, 500), Qt.Orientation.Horizontal),
                                    (("textLens",), (410,), Qt.Orientation.Vertical)]

    def open_family_feature(d: int, f: int) -> None:
        """A feature of dictionary d of the family, chosen in any family pane: every pane switches
        to that dictionary (the docks stay where they are), and Feature Detail shows it, raised."""
        b = window.bundle
        if b is None:
            return
        if getattr(b, "dictionary", 0) != d and not window.switch_dictionary(d):
            return
        window.selection.select("feature", f)
        docks["featureDetail"].show()
        docks["featureDetail"].raise_()

    feature_map.openFeature.connect(open_family_feature)
    splitting.openFeature.connect(open_family_feature)
    universality.openFeature.connect(open_family_feature)
    docks["featureDetail"].raise_()
    # The central overview takes all spare width, which can leave a dock too narrow to read; when a
    # dock appears that narrow, widen it once (a wider saved layout is left alone).
    def widen(dock, width: int):
        def check(visible: bool) -> None:
            if visible and not dock.isFloating() and dock.width() < 0.75 * width:
                QTimer.singleShot(0, lambda: window.resizeDocks([dock], [width], Qt.Orientation.Horizontal))
        dock.visibilityChanged.connect(check)

    widen(docks["featureSearch"], 420)
    widen(docks["featureDetail"], 500)

    titles = {name: dock.windowTitle() for name, dock in docks.items()}

    def feed(bundle):
        which = dictionary_name(bundle)          # "A/1" in a family: every pane header names it
        for name, dock in docks.items():
            dock.setWindowTitle(f"{titles[name]} · {which}" if which else titles[name])
            dock.toggleViewAction().setText(titles[name])        # the View menu keeps the pane's name
        for name, p in panes.items():
            clear_fault(p)
            try:
                p.set_bundle(bundle)
            except Exception as exc:  # noqa: BLE001 - one unreadable part must not take the others down
                try:
                    p.set_bundle(None)
                except Exception:  # noqa: BLE001 - the message below is what counts
                    pass
                report_fault(p, exc, f"{docks[name].windowTitle()} cannot show this bundle")

    window.bundleOpened.connect(feed)
    window.bundleClosed.connect(lambda: feed(None))
    if window.bundle is not None:
        feed(window.bundle)

    def focus(dock, pane_focus):
        dock.show()
        dock.raise_()
        pane_focus()

    find = QShortcut(QKeySequence("Ctrl+F"), window)
    find.setObjectName("focusSearchShortcut")
    find.setContext(Qt.ShortcutContext.WindowShortcut)
    find.activated.connect(lambda: focus(docks["featureSearch"], search.focus_search))
    lens_key = QShortcut(QKeySequence("Ctrl+L"), window)
    lens_key.setObjectName("focusLensShortcut")
    lens_key.setContext(Qt.ShortcutContext.WindowShortcut)
    lens_key.activated.connect(lambda: focus(docks["textLens"], lens.focus_input))
    window.destroyed.connect(lambda *_: (lens.shutdown(), detail.ablation.shutdown(), compare.ablation.shutdown()))
    return panes

