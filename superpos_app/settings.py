"""Persistent app settings: recent bundles, window layout, the last training setup.

Stored with QSettings in INI format at ``engine.paths.config_dir() / "superpos-app.ini"``, so
``SUPERPOS_HOME`` points them elsewhere (tests never touch a user's real settings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from engine import paths

__all__ = ["AppSettings", "MAX_RECENT"]

MAX_RECENT = 10


class AppSettings:
    """Thin typed wrapper over one QSettings file (every getter tolerates missing or odd values)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else paths.config_dir() / "superpos-app.ini"
        self._qs = QSettings(str(self.path), QSettings.Format.IniFormat)

    # --- recent bundles --------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        raw = self._qs.value("recent/files", [])
        if isinstance(raw, str):           # QSettings returns a bare string for one-item lists
            raw = [raw]
        return [str(f) for f in (raw or []) if f]

    def add_recent(self, path: str | Path) -> list[str]:
        path = os.path.realpath(path)           # never raises, even on a symlink loop
        files = [f for f in self.recent_files() if f != path]
        files.insert(0, path)
        del files[MAX_RECENT:]
        self._qs.setValue("recent/files", files)
        self._qs.sync()
        return files

    def remove_recent(self, path: str | Path) -> None:
        path = str(path)
        files = [f for f in self.recent_files() if f != path and f != os.path.realpath(path)]
        self._qs.setValue("recent/files", files)
        self._qs.sync()

    def clear_recent(self) -> None:
        self._qs.setValue("recent/files", [])
        self._qs.sync()

    # --- window ----------------------------------------------------------------------------------
    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry = self._qs.value("window/geometry")
        state = self._qs.value("window/state")
        return (geometry if isinstance(geometry, QByteArray) else None,
                state if isinstance(state, QByteArray) else None)

    def set_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self._qs.setValue("window/geometry", geometry)
        self._qs.setValue("window/state", state)
        self._qs.sync()

    # --- training --------------------------------------------------------------------------------
    def last_training(self) -> dict | None:
        """The Train dialog's last setup: ``{"preset", "config" (RunConfig dict), "output"}``."""
        raw = self._qs.value("training/last")
        if not raw:
            return None
        try:
            data = json.loads(str(raw))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def set_last_training(self, data: dict) -> None:
        self._qs.setValue("training/last", json.dumps(data, sort_keys=True))
        self._qs.sync()

    # --- view ------------------------------------------------------------------------------------
    def ablation_underlines(self) -> bool:
        """Whether dashboards underline their examples by the unit's ablation effect (default on)."""
        return str(self._qs.value("view/ablation_underlines", "true")).lower() not in ("false", "0", "no")

    def set_ablation_underlines(self, on: bool) -> None:
        self._qs.setValue("view/ablation_underlines", "true" if on else "false")
        self._qs.sync()

    # --- explain ---------------------------------------------------------------------------------
    def explain_setup(self) -> dict:
        """The Explain dialog's last endpoint: ``{"endpoint", "model", "key_env", "concurrency"}`` (no key)."""
        try:
            data = json.loads(str(self._qs.value("explain/last") or "{}"))
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def set_explain_setup(self, data: dict) -> None:
        self._qs.setValue("explain/last", json.dumps(data, sort_keys=True))
        self._qs.sync()
