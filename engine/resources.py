"""Access to the files shipped in ``resources/`` (installed as the ``superpos_resources`` package)."""

from __future__ import annotations

from importlib import resources as _resources


def resource_path(name: str):
    """A Traversable for a shipped resource file (works from a wheel, an editable install or a checkout)."""
    return _resources.files("superpos_resources").joinpath(name)


def read_text(name: str) -> str:
    return resource_path(name).read_text(encoding="utf-8")
