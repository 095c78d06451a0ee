"""Where superpos keeps files: user data (demo bundle, recent runs) and caches (token files, runs).

``SUPERPOS_HOME`` points everything elsewhere (tests set it so they never touch a user's folders);
otherwise platformdirs picks the platform's conventional folders.

A run's work folder (tokenizer, checkpoints) is ``run_workdir(cfg)``: keyed by the settings, not by
the output file, so the CLI (``superpos run`` without ``--workdir``) and the app's Train dialog find
each other's cancelled runs and either can resume them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import platformdirs

from engine.config import RunConfig

__all__ = ["data_dir", "cache_dir", "config_dir", "demo_bundle_path", "run_workdir"]

APP_NAME = "superpos"


def _user_dir(kind: str, platform_dir) -> Path:
    """``$SUPERPOS_HOME/<kind>`` if set, else the platform's folder of that kind; created if missing."""
    value = os.environ.get("SUPERPOS_HOME")
    path = Path(value).expanduser() / kind if value else Path(platform_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    return _user_dir("data", platformdirs.user_data_dir)


def cache_dir() -> Path:
    return _user_dir("cache", platformdirs.user_cache_dir)


def config_dir() -> Path:
    return _user_dir("config", platformdirs.user_config_dir)


def demo_bundle_path() -> Path:
    return data_dir() / "demo.h5"


def run_workdir(cfg: RunConfig) -> Path:
    """The work folder of a run with these settings: ``cache_dir()/runs/<name>-<16 hex digits>``.

    The key is the SHA-256 of the settings as JSON, with a local corpus path made absolute (so
    ``--corpus texts/`` and the same folder picked in the app's file dialog agree). Same settings,
    same folder: a cancelled run resumes there, whoever started it. The folder is not created.
    """
    data = cfg.to_dict()
    spec = data["corpus"]["spec"]
    if spec != "builtin" and not spec.startswith("hf:"):
        data["corpus"]["spec"] = str(Path(spec).expanduser().resolve())
    key = hashlib.sha256(json.dumps(data, indent=2, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "runs" / f"{cfg.name}-{key}"
