"""Structural rules the whole project relies on."""

from __future__ import annotations

import importlib.metadata
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import callpath.core
from callpath.core.call import library_adapter as aiortc_adapter


def test_importing_every_core_module_leaves_qt_out() -> None:
    modules = [
        info.name
        for info in pkgutil.walk_packages(callpath.core.__path__, prefix="callpath.core.")
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


def test_adapter_fails_loudly_when_an_aioquic_private_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aioquic.h3.connection import H3Connection

    monkeypatch.delattr(H3Connection, "_get_local_settings")
    with pytest.raises(aiortc_adapter.LibraryChangedError, match="_get_local_settings"):
        aiortc_adapter.check_library_versions()


def test_only_the_adapter_reaches_into_the_call_libraries() -> None:
    """aiortc, aioice and aioquic internals (private modules, the attributes the adapter pins)
    are used in core/call/library_adapter.py and nowhere else in core."""
    core = Path(callpath.core.__file__).resolve().parent
    adapter = core / "call" / "library_adapter.py"
    private = re.compile(
        r"\b(aioquic|aioice|aiortc)\._|\._quic\b|_remote_max_datagram_frame_size|"
        r"_get_local_settings|\._nominated\b|_RTC(RtpReceiver|RtpSender|DtlsTransport)__"
    )
    found = [
        f"{file.relative_to(core)}: {match.group(0)}"
        for file in sorted(core.rglob("*.py"))
        if file != adapter
        for match in private.finditer(file.read_text(encoding="utf-8"))
    ]
    assert not found, found


def test_pins_in_pyproject_match_the_adapter() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    dependencies = project["project"]["dependencies"]
    for name, version in aiortc_adapter.PINNED_VERSIONS.items():
        assert f"{name}=={version}" in dependencies


# --- layers, cycles and the one import package -----------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_layer_contracts_hold() -> None:
    """import-linter's contracts in pyproject.toml: gui above core, the core's layers, no Qt."""
    result = subprocess.run(
        [sys.executable, "-m", "importlinter.cli", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout


def _import_graph() -> dict[str, set[str]]:
    import grimp

    graph = grimp.build_graph("callpath")
    return {
        module: {m for m in graph.find_modules_directly_imported_by(module) if m in graph.modules}
        for module in graph.modules
    }


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_no_import_cycles_in_core_or_gui() -> None:
    assert _cycles(_import_graph()) == []


def test_pyproject_names_every_package_folder() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {"callpath.assets"}
    for folder in ("core", "gui"):
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            on_disk.add(".".join(("callpath", *parts)))
    assert listed == on_disk
    assert config["package-dir"] == {
        "callpath.core": "core",
        "callpath.gui": "gui",
        "callpath.assets": "assets",
    }


def test_checkout_links_the_folders_under_callpath() -> None:
    for folder in ("core", "gui", "assets"):
        link = ROOT / "callpath" / folder
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve()
    assert not (ROOT / "callpath" / "__init__.py").exists()  # a namespace package


def test_nothing_imports_the_folders_by_their_bare_names() -> None:
    """`import core` would load a second copy of every module from a checkout."""
    import re

    bare = re.compile(r"^\s*(?:from|import)\s+(?:core|gui|assets)(?:\.|\s|$)", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("core", "gui", "tests", "bench", "packaging")
        for path in (ROOT / folder).rglob("*.py")
        if bare.search(path.read_text("utf-8"))
    ]
    assert offenders == []
