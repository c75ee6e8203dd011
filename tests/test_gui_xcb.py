"""The desktop app on a real X11 display (Xvfb) through Qt's xcb platform plugin, beside the
offscreen tests; and the one-line advice, instead of Qt's abort, when an xcb library is missing.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from callpath.gui.platform_check import (
    debian_package,
    missing_libraries,
    platform_is_xcb,
    xcb_plugin,
)

ROOT = Path(__file__).parents[1]
PAGES = ("home", "running", "verdict", "verdict-details", "history", "workshop", "support")


def test_sonames_map_to_the_debian_packages_that_ship_them() -> None:
    assert debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert debian_package("libxcb-keysyms.so.1") == "libxcb-keysyms1"
    assert debian_package("libxcb-cursor.so.0") == "libxcb-cursor0"
    assert debian_package("libxcb-render-util.so.0") == "libxcb-render-util0"
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert debian_package("libX11-xcb.so.1") == "libx11-xcb1"
    assert debian_package("libGL.so.1") == "libgl1"


def test_only_an_x11_platform_is_checked() -> None:
    linux = "linux"
    assert platform_is_xcb({}, linux)
    assert platform_is_xcb({"QT_QPA_PLATFORM": "xcb"}, linux)
    assert not platform_is_xcb({"QT_QPA_PLATFORM": "offscreen"}, linux)
    assert not platform_is_xcb({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "w-0"}, linux)
    assert platform_is_xcb({"QT_QPA_PLATFORM": "wayland;xcb"}, linux)
    assert not platform_is_xcb({}, "darwin")


def test_setup_installs_every_library_the_xcb_plugin_loads() -> None:
    """What the loader finds missing for PySide6's plugin here is in setup.sh's package list
    (after setup.sh as root, nothing is missing at all)."""
    plugin = xcb_plugin()
    assert plugin is not None
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    missing = [debian_package(name) for name in missing_libraries(plugin)]
    assert all(f" {package}" in setup for package in missing), missing
    for package in ("libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0", "libxkbcommon-x11-0"):
        assert f" {package}" in setup


def test_a_missing_library_gets_one_line_of_advice_not_a_qt_abort(tmp_path: Path) -> None:
    # The loader's answer for a machine without two of the libraries (as on a fresh Debian).
    fake_ldd = tmp_path / "ldd"
    fake_ldd.write_text(
        "#!/bin/sh\n"
        'echo "\tlibxcb-icccm.so.4 => not found"\n'
        'echo "\tlibxcb-keysyms.so.1 => not found"\n'
        'echo "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x0)"\n'
    )
    fake_ldd.chmod(fake_ldd.stat().st_mode | stat.S_IXUSR)
    environment = {
        **os.environ,
        "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
        "QT_QPA_PLATFORM": "xcb",
        "CALLPATH_LANG": "en",
    }
    result = subprocess.run(
        [sys.executable, "-m", "callpath.gui.launcher", "gui", "--lab", "open-network"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "libxcb-icccm4, libxcb-keysyms1" in lines[0]
    command = "apt-get install --no-install-recommends libxcb-icccm4 libxcb-keysyms1"
    assert lines[0].endswith(command)


def test_without_qt_the_app_command_says_how_to_install_it() -> None:
    """The command line's own installation (scripts/lab.sh) has no PySide6."""
    code = (
        "import sys\n"
        "sys.modules['PySide6'] = None  # as if not installed\n"
        "from callpath.gui.launcher import gui_main\n"
        "sys.exit(gui_main([]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CALLPATH_LANG": "en"},
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'callpath[gui]'" in lines[0], result.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run (Debian xvfb) missing")
def test_the_app_opens_a_real_x11_window_and_saves_its_pages(tmp_path: Path) -> None:
    folder = tmp_path / "pages"
    environment = {**os.environ, "QT_QPA_PLATFORM": "xcb", "CALLPATH_LANG": "en"}
    environment.pop("WAYLAND_DISPLAY", None)
    app = [sys.executable, "-m", "callpath.gui.app", "--lab", "open-network"]
    result = subprocess.run(
        ["xvfb-run", "-a", *app, "--screenshot", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )
    # Qt aborts (134) when the xcb plugin cannot load; 0 means a real X11 window ran the lab.
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    for page in PAGES:
        picture = folder / f"{page}.png"
        assert picture.is_file() and picture.stat().st_size > 5000, page
