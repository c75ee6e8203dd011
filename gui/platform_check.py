"""Before the first window: are the system libraries Qt's X11 (xcb) platform plugin needs here?

Without them Qt aborts the process (exit 134) with a message that names one library, often
not the missing one. This check asks the dynamic loader (``ldd``) what the plugin that
PySide6 ships, ``libqxcb.so``, cannot find, and turns that into one line a user can act on: the
Debian/Ubuntu packages to install. It imports no Qt (it runs before Qt loads) and only looks
when the platform will be xcb; offscreen, Wayland and other systems are not checked.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from callpath.core.i18n import _

LDD_TIMEOUT_S = 10.0
# A shared object's Debian package is its soname's stem plus its major version, with a hyphen
# when the stem ends in a digit (Debian policy 8.1): libxcb-icccm.so.4 -> libxcb-icccm4,
# libxkbcommon-x11.so.0 -> libxkbcommon-x11-0. These are the exceptions the rule gets wrong.
PACKAGE_EXCEPTIONS = {
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}
_SONAME = re.compile(r"^(?P<stem>lib[\w.+-]+?)\.so\.(?P<major>\d+)$")
_NOT_FOUND = re.compile(r"^\s*(?P<soname>\S+)\s+=>\s+not found", re.MULTILINE)


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships ``soname`` by the usual naming rule."""
    if soname in PACKAGE_EXCEPTIONS:
        return PACKAGE_EXCEPTIONS[soname]
    match = _SONAME.match(soname)
    if match is None:
        return soname
    stem, major = match.group("stem").lower(), match.group("major")
    return f"{stem}-{major}" if stem[-1].isdigit() else f"{stem}{major}"


def platform_is_xcb(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether Qt will pick its X11 platform plugin, as Qt 6 chooses it on Linux."""
    environ = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        first = chosen.split(";")[0].split(":")[0].strip()
        if first == "wayland" and environ.get("WAYLAND_DISPLAY"):
            return False
        return first == "xcb" or (first == "wayland" and "xcb" in chosen)
    wayland = environ.get("XDG_SESSION_TYPE") == "wayland" and bool(environ.get("WAYLAND_DISPLAY"))
    return not wayland


def xcb_plugin() -> Path | None:
    """PySide6's ``libqxcb.so``, found without importing Qt."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        plugin = Path(folder) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def missing_libraries(plugin: Path) -> list[str]:
    """The sonames the loader cannot find for ``plugin`` (and what it loads), in order."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        completed = subprocess.run(
            [ldd, str(plugin)], capture_output=True, text=True, timeout=LDD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    found: list[str] = []
    for match in _NOT_FOUND.finditer(completed.stdout):
        if match.group("soname") not in found:
            found.append(match.group("soname"))
    return found


def install_command(packages: list[str]) -> str:
    sudo = "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "
    return sudo + "apt-get install --no-install-recommends " + " ".join(packages)


def missing_platform_advice(environ: Mapping[str, str] | None = None) -> str | None:
    """One line naming the packages to install when the xcb plugin cannot load, else None."""
    if not platform_is_xcb(environ):
        return None
    plugin = xcb_plugin()
    if plugin is None:
        return None
    packages: list[str] = []
    for soname in missing_libraries(plugin):
        package = debian_package(soname)
        if package not in packages:
            packages.append(package)
    if not packages:
        return None
    return _(
        "the desktop app cannot open a window: Qt's X11 support needs system libraries that "
        "are missing ({libraries}). Install them with: {command}"
    ).format(libraries=", ".join(packages), command=install_command(packages))
