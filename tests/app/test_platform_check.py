"""Start anywhere: without the system libraries Qt's xcb plugin needs, ``superpos-app`` prints one
message naming all of them with the install commands, and exits 1 instead of aborting."""

from __future__ import annotations

import os
import subprocess
import sys

from superpos_app.platform_check import LIBS_ENV, NO_DISPLAY, check_xcb, install_message, missing_libraries, uses_xcb

ABSENT = ["libsuperpos-absent-cursor.so.0", "libsuperpos-absent-icccm.so.4"]


def test_app_without_xcb_libraries_prints_all_missing_and_exits_1():
    # A real dlopen of each listed soname: libc loads, the two absent names cannot. Were the check to
    # let Qt start, xcb without a display would abort (signal 6) or open a window, not exit 1.
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update({"QT_QPA_PLATFORM": "xcb", LIBS_ENV: ":".join(["libc.so.6", *ABSENT])})
    proc = subprocess.run([sys.executable, "-m", "superpos_app", "--demo"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert err.count("superpos-app:") == 1                       # one message
    assert all(lib in err for lib in ABSENT) and "libc.so.6" not in err
    for distro in ("Debian/Ubuntu:", "Fedora:", "Arch:"):
        assert distro in err
    assert "Traceback" not in err


def test_missing_libraries_asks_the_loader_about_each_listed_library():
    asked = []

    def fails(soname):
        asked.append(soname)
        return soname.startswith("libxcb-")

    libs = ["libGL.so.1", "libxcb-cursor.so.0", "libxcb-keysyms.so.1"]
    assert missing_libraries(libs, fails=fails) == ["libxcb-cursor.so.0", "libxcb-keysyms.so.1"]
    assert asked == libs
    assert missing_libraries(["libc.so.6"]) == []              # the real loader finds libc


def test_install_message_names_every_package_for_each_distribution():
    text = install_message(["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libfoo.so.2"])
    lines = text.splitlines()
    debian = next(line for line in lines if line.strip().startswith("Debian/Ubuntu:"))
    fedora = next(line for line in lines if line.strip().startswith("Fedora:"))
    arch = next(line for line in lines if line.strip().startswith("Arch:"))
    assert "apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in debian
    assert "dnf install xcb-util-cursor xcb-util-wm xcb-util-keysyms" in fedora
    assert "pacman -S xcb-util-cursor xcb-util-wm xcb-util-keysyms" in arch
    assert "libfoo.so.2" in debian                              # an unknown library is still named


def test_only_the_xcb_platform_is_checked():
    assert uses_xcb({}, "linux")
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb"}, "linux")
    assert not uses_xcb({"QT_QPA_PLATFORM": "offscreen"}, "linux")        # tests, screenshots
    assert not uses_xcb({"WAYLAND_DISPLAY": "wayland-0"}, "linux")        # Qt 6 picks wayland
    assert uses_xcb({"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"}, "linux")
    assert not uses_xcb({}, "darwin")


def test_without_a_display_it_says_so_instead_of_aborting(monkeypatch):
    monkeypatch.setenv(LIBS_ENV, "libc.so.6")                    # every library there
    assert check_xcb({"QT_QPA_PLATFORM": "xcb"}) == NO_DISPLAY
    assert check_xcb({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}) is None
    assert check_xcb({"QT_QPA_PLATFORM": "offscreen"}) is None
    monkeypatch.setenv(LIBS_ENV, "libc.so.6:" + ABSENT[0])       # missing libraries are named first
    assert ABSENT[0] in check_xcb({"QT_QPA_PLATFORM": "xcb"})
