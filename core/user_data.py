"""Where CallPath keeps the user's data (settings, run history).

In order of precedence:

1. the ``CALLPATH_DATA_DIR`` environment variable, when set (tests, scripted installs);
2. portable mode: in a frozen bundle with a file ``portable.txt`` next to the executable, the
   ``data`` folder next to it, so the app runs from a USB stick and leaves nothing behind;
3. the platform's per-user data directory (``platformdirs.user_data_dir("callpath")``).

Portable mode only applies to frozen bundles: in a source checkout or a pip install,
``sys.executable`` is the Python interpreter, whose folder is not the app's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "callpath"
DATA_DIR_VARIABLE = "CALLPATH_DATA_DIR"
PORTABLE_MARKER = "portable.txt"
PORTABLE_DATA_FOLDER = "data"


def is_frozen() -> bool:
    """True inside a PyInstaller (or similar) bundle."""
    return bool(getattr(sys, "frozen", False))


def app_directory() -> Path | None:
    """The folder holding the bundle's executable, or None when not running from a bundle."""
    if not is_frozen():
        return None
    return Path(sys.executable).resolve().parent


def portable_data_dir() -> Path | None:
    """``data/`` next to the executable when the bundle is marked portable, else None."""
    folder = app_directory()
    if folder is None or not (folder / PORTABLE_MARKER).is_file():
        return None
    return folder / PORTABLE_DATA_FOLDER


def data_dir() -> Path:
    """The directory for settings and history (not created here)."""
    override = os.environ.get(DATA_DIR_VARIABLE)
    if override:
        return Path(override)
    portable = portable_data_dir()
    if portable is not None:
        return portable
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
