"""Structural rules the whole project relies on."""

from __future__ import annotations

import importlib.metadata
import pkgutil
import subprocess
import sys

import pytest

import core
from core import aiortc_adapter


def test_importing_every_core_module_leaves_qt_out() -> None:
    modules = [
        info.name
        for info in pkgutil.walk_packages(core.__path__, prefix="core.")
        if not info.name.endswith("__main__")
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert len(modules) > 10


def test_adapter_matches_the_installed_libraries() -> None:
    aiortc_adapter.check_library_versions()


def test_adapter_fails_loudly_when_a_library_version_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_version = importlib.metadata.version

    def moved(name: str) -> str:
        return "99.0.0" if name == "aioice" else real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", moved)
    with pytest.raises(aiortc_adapter.LibraryChangedError, match=r"aioice 99\.0\.0"):
        aiortc_adapter.check_library_versions()


def test_adapter_fails_loudly_when_a_private_attribute_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aioice.turn

    monkeypatch.delattr(aioice.turn.TurnTransport, "_connect")
    with pytest.raises(aiortc_adapter.LibraryChangedError, match="_connect"):
        aiortc_adapter.check_library_versions()


def test_pins_in_pyproject_match_the_adapter() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    dependencies = project["project"]["dependencies"]
    for name, version in aiortc_adapter.PINNED_VERSIONS.items():
        assert f"{name}=={version}" in dependencies
