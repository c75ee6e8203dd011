"""The one place that finds CallPath's data files.

Works the same from a source checkout, an installed wheel and a frozen bundle, because the
``assets`` directory is the package ``callpath.assets``, located through importlib.resources.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def asset_path(*parts: str) -> Path:
    """Return the filesystem path of a file or directory under ``assets/``."""
    root = resources.files("callpath.assets")
    target = root.joinpath(*parts)
    # Wheels and source checkouts are unpacked on disk; frozen bundles keep assets as files too.
    return Path(str(target))
