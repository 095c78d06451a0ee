"""Before Qt loads its X11 ("xcb") platform plugin: are the system libraries it needs there?

Qt aborts the process (signal 6) when ``libqxcb.so`` cannot be loaded, and its message names only
the first missing library, so installing that one alone does not help. ``check_xcb()`` runs before
the ``QApplication`` exists: it asks the dynamic linker (``ldd`` on the plugin, which resolves the
whole dependency tree) which libraries are missing and returns ONE message naming all of them, with
the command that installs them on Debian/Ubuntu, Fedora and Arch. With the libraries there but no
``DISPLAY`` (Qt aborts then too) it says so. ``superpos-app`` prints the message and exits with
status 1 instead of aborting.

Only the xcb platform is checked: offscreen (tests, screenshots), wayland and minimal are left to
Qt. ``SUPERPOS_QT_XCB_LIBS`` (sonames separated by ":") replaces the plugin's library list, each
then loaded with ``dlopen``: the tests use it to simulate a machine that lacks a library.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["check_xcb", "uses_xcb", "missing_libraries", "install_message", "PACKAGES"]

LIBS_ENV = "SUPERPOS_QT_XCB_LIBS"

# soname -> (Debian/Ubuntu, Fedora, Arch) package
PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb"),
}
_INSTALL = (("Debian/Ubuntu", "sudo apt install"), ("Fedora", "sudo dnf install"), ("Arch", "sudo pacman -S"))


def uses_xcb(environ: dict | None = None, platform: str | None = None) -> bool:
    """Would Qt pick the xcb platform here? (Linux, and QT_QPA_PLATFORM unset or naming xcb first;
    unset with WAYLAND_DISPLAY set means Qt 6 tries wayland first.)"""
    env = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux"):
        return False
    qpa = env.get("QT_QPA_PLATFORM", "").strip().lower()
    if qpa:
        return qpa.split(";")[0].split(":")[0] == "xcb"
    return not env.get("WAYLAND_DISPLAY")


def xcb_plugin() -> Path | None:
    spec = importlib.util.find_spec("PySide6")
    if spec is None or spec.origin is None:
        return None
    plugin = Path(spec.origin).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.exists() else None


def _dlopen_fails(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return True
    return False


def _ldd_missing(plugin: Path) -> list[str] | None:
    """The libraries ``ldd`` reports "not found" for the plugin (None if ldd cannot tell)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    missing = [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]
    return list(dict.fromkeys(missing))


def missing_libraries(libraries: Iterable[str] | None = None,
                      fails: Callable[[str], bool] = _dlopen_fails) -> list[str]:
    """Sonames the xcb plugin needs that the dynamic linker cannot find. ``libraries`` (or
    ``$SUPERPOS_QT_XCB_LIBS``) is a list to ``dlopen`` one by one; otherwise ``ldd`` on the plugin
    answers, and without ldd the known list in ``PACKAGES`` is tried."""
    if libraries is None and os.environ.get(LIBS_ENV):
        libraries = [s for s in os.environ[LIBS_ENV].split(":") if s]
    if libraries is None:
        plugin = xcb_plugin()
        if plugin is None:
            return []
        found = _ldd_missing(plugin)
        if found is not None:
            return found
        libraries = list(PACKAGES)
    return [lib for lib in libraries if fails(lib)]


def install_message(missing: list[str]) -> str:
    """One message: what is missing and the command that installs it on each distribution."""
    lines = ["superpos-app: the Qt X11 (xcb) platform plugin cannot load; these system libraries are "
             "missing: " + ", ".join(missing), "Install them with:"]
    for col, (distro, command) in enumerate(_INSTALL):
        names = list(dict.fromkeys(PACKAGES[lib][col] if lib in PACKAGES else
                                   f"<the package providing {lib}>" for lib in missing))
        lines.append(f"  {distro + ':':<15}{command} {' '.join(names)}")
    lines.append("(or run with QT_QPA_PLATFORM=wayland on a Wayland desktop; QT_QPA_PLATFORM=offscreen "
                 "renders without a display)")
    return "\n".join(lines)


NO_DISPLAY = ("superpos-app: no X display to open a window on (DISPLAY is not set). Run it from a desktop "
              "session, or over ssh with -X; the `superpos` command line needs no display.")


def check_xcb(environ: dict | None = None) -> str | None:
    """The message to print if Qt's xcb plugin would fail to load here (a missing library, or no
    display to connect to: Qt aborts on both), else None."""
    env = os.environ if environ is None else environ
    if not uses_xcb(env):
        return None
    missing = missing_libraries()
    if missing:
        return install_message(missing)
    return None if env.get("DISPLAY") else NO_DISPLAY
