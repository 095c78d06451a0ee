"""Where superpos keeps files: user data (demo bundle, recent runs) and caches (token files).

``SUPERPOS_HOME`` points everything elsewhere (tests set it so they never touch a user's folders);
otherwise platformdirs picks the platform's conventional folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "superpos"


def _home() -> Path | None:
    value = os.environ.get("SUPERPOS_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    home = _home()
    path = home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    home = _home()
    path = home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    home = _home()
    path = home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo_bundle_path() -> Path:
    return data_dir() / "demo.h5"
