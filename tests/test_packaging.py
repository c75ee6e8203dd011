"""Packaging: desktop integration files, the PyInstaller spec, icons, data paths, and assets
found from an installed wheel and from a frozen bundle."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import json
import os
import plistlib
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import ModuleType

import platformdirs
import pytest
import yaml

import callpath.core
from callpath.core import user_data as paths
from callpath.core.call import library_adapter

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
APP_ID = "org.callpath.CallPath"
DESKTOP_FILE = PACKAGING / "linux" / f"{APP_ID}.desktop"
METAINFO_FILE = PACKAGING / "linux" / f"{APP_ID}.metainfo.xml"
FLATPAK_FILE = PACKAGING / "flatpak" / f"{APP_ID}.yml"
SPEC_FILE = PACKAGING / "pyinstaller" / "callpath.spec"
ICON_DIR = ROOT / "assets" / "icons"


def _load_icons_module() -> ModuleType:
    # packaging/ is not a package (the name would shadow PyPI's "packaging"): load by path.
    spec = importlib.util.spec_from_file_location("callpath_icons", PACKAGING / "icons.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed (Debian: see packaging/README.md)")
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


# --- desktop integration ------------------------------------------------------------------


def test_desktop_file_is_valid() -> None:
    result = _run_tool("desktop-file-validate", str(DESKTOP_FILE))
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_metainfo_is_valid() -> None:
    result = _run_tool("appstreamcli", "validate", "--no-net", str(METAINFO_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_desktop_integration_files_agree_with_each_other_and_the_project() -> None:
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str  # type: ignore[assignment, method-assign]
    desktop.read(DESKTOP_FILE, encoding="utf-8")
    entry = desktop["Desktop Entry"]
    metainfo = ElementTree.parse(METAINFO_FILE).getroot()
    flatpak = yaml.safe_load(FLATPAK_FILE.read_text(encoding="utf-8"))
    with (PACKAGING / "macos" / "Info.plist").open("rb") as handle:
        info = plistlib.load(handle)

    assert entry["Icon"] == APP_ID
    assert entry["Exec"].split()[0] == "callpath-gui"
    assert metainfo.findtext("id") == APP_ID
    assert metainfo.findtext("launchable") == DESKTOP_FILE.name
    assert {b.text for b in metainfo.iter("binary")} == {"callpath", "callpath-gui"}
    releases = [r.get("version") for r in metainfo.iter("release")]
    assert releases[0] == callpath.core.__version__
    assert flatpak["id"] == APP_ID and flatpak["command"] == "callpath-gui"
    assert info["CFBundleIdentifier"] == APP_ID
    assert info["CFBundleExecutable"] == "callpath-gui"


def test_metainfo_screenshots_are_the_committed_ones() -> None:
    images = [
        image.text or "" for image in ElementTree.parse(METAINFO_FILE).getroot().iter("image")
    ]
    assert images
    for url in images:
        relative = re.sub(r"^https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/", "", url)
        assert relative.startswith("docs/screenshots/"), url
        assert (ROOT / relative).is_file(), f"{url} names a file that is not in the repository"


def test_flatpak_manifest_has_the_sandbox_holes_callpath_needs_and_no_more() -> None:
    manifest = yaml.safe_load(FLATPAK_FILE.read_text(encoding="utf-8"))
    assert set(manifest["finish-args"]) == {
        "--share=network",
        "--share=ipc",
        "--socket=wayland",
        "--socket=fallback-x11",
        "--device=dri",
        "--talk-name=org.freedesktop.secrets",
    }
    (app,) = [m for m in manifest["modules"] if isinstance(m, dict) and m["name"] == "callpath"]
    commands = "\n".join(app["build-commands"])
    for installed in re.findall(r"install -Dm644 (\S+)", commands):
        if "${size}" in installed:
            for size in re.search(r"for size in ([\d ]+);", commands).group(1).split():  # type: ignore[union-attr]
                assert (ROOT / installed.replace("${size}", size)).is_file()
        else:
            assert (ROOT / installed).is_file(), installed


def test_windows_installer_script_installs_the_bundle_per_user_with_a_start_menu_entry() -> None:
    script = (PACKAGING / "windows" / "callpath.iss").read_text(encoding="utf-8")
    assert '#define BundleDir "..\\..\\dist\\callpath"' in script
    assert re.search(r"^PrivilegesRequired=lowest$", script, re.MULTILINE)
    assert re.search(r"^PrivilegesRequiredOverridesAllowed=.*dialog", script, re.MULTILINE)
    assert re.search(r'^Name: "\{autoprograms\}.*callpath-gui\.exe', script, re.MULTILINE)
    icon = re.search(r"^SetupIconFile=(.+)$", script, re.MULTILINE)
    assert icon is not None
    assert (PACKAGING / "windows" / icon.group(1).replace("\\", "/")).resolve().is_file()


def test_macos_entries_explain_devices_and_declare_the_app() -> None:
    with (PACKAGING / "macos" / "Info.plist").open("rb") as handle:
        info = plistlib.load(handle)
    with (PACKAGING / "macos" / "entitlements.plist").open("rb") as handle:
        entitlements = plistlib.load(handle)
    assert "optional device test" in info["NSMicrophoneUsageDescription"]
    assert "optional device test" in info["NSCameraUsageDescription"]
    assert info["NSHighResolutionCapable"] is True
    assert re.fullmatch(r"\d+\.\d+", info["LSMinimumSystemVersion"])
    assert entitlements["com.apple.security.device.audio-input"] is True
    assert entitlements["com.apple.security.device.camera"] is True


# --- icons ----------------------------------------------------------------------------------


def test_icon_pngs_have_their_sizes_and_the_containers_hold_exactly_them() -> None:
    icons = _load_icons_module()
    pngs = {}
    for size in icons.PNG_SIZES:
        data = (ICON_DIR / icons.png_name(size)).read_bytes()
        assert icons.png_size(data) == (size, size)
        pngs[size] = data
    ico = (ICON_DIR / "callpath.ico").read_bytes()
    icns = (ICON_DIR / "callpath.icns").read_bytes()
    assert ico == icons.pack_ico({size: pngs[size] for size in icons.ICO_SIZES})
    assert icns == icons.pack_icns(pngs)
    assert icns.count(icons.PNG_SIGNATURE) == len(icons.ICNS_TYPES)


def test_icon_containers_follow_their_formats() -> None:
    icons = _load_icons_module()
    one = (ICON_DIR / icons.png_name(16)).read_bytes()
    big = (ICON_DIR / icons.png_name(256)).read_bytes()

    ico = icons.pack_ico({256: big, 16: one})
    assert ico[:6] == b"\x00\x00\x01\x00\x02\x00"  # reserved, type icon, two images
    first, second = ico[6:22], ico[22:38]
    assert first[0] == 16 and second[0] == 0  # 0 stands for 256 pixels
    assert int.from_bytes(first[12:16], "little") == 38
    assert ico[38 : 38 + len(one)] == one

    icns = icons.pack_icns({16: one, 24: one})  # 24 has no icns type and is left out
    assert icns[:4] == b"icns" and int.from_bytes(icns[4:8], "big") == len(icns)
    assert icns[8:12] == b"icp4" and int.from_bytes(icns[12:16], "big") == 8 + len(one)
    assert len(icns) == 16 + len(one)


# --- the PyInstaller spec -------------------------------------------------------------------


def _spec_asset_folders() -> set[str]:
    tree = ast.parse(SPEC_FILE.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "ASSET_FOLDERS" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    raise AssertionError("callpath.spec has no ASSET_FOLDERS")


def test_spec_names_every_assets_folder() -> None:
    folders = {
        p.name for p in (ROOT / "assets").iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert _spec_asset_folders() == folders


def test_spec_builds_both_entry_points() -> None:
    spec = SPEC_FILE.read_text(encoding="utf-8")
    assert 'name="callpath"' in spec and 'name="callpath-gui"' in spec
    for entry, target in (
        ("callpath_cli.py", "callpath.gui.launcher"),
        ("callpath_gui.py", "callpath.gui.app"),
    ):
        source = (PACKAGING / "pyinstaller" / entry).read_text(encoding="utf-8")
        assert entry in spec and f"from {target} import main" in source
        module_file = ROOT / (target.replace(".", "/") + ".py")
        functions = {
            node.name
            for node in ast.parse(module_file.read_text(encoding="utf-8")).body
            if isinstance(node, ast.FunctionDef)
        }
        assert "main" in functions, f"{target} has no main() for the bundle to run"


# --- data directory -------------------------------------------------------------------------


def test_data_dir_prefers_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.DATA_DIR_VARIABLE, str(tmp_path / "elsewhere"))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "callpath"))
    (tmp_path / paths.PORTABLE_MARKER).write_text("", "utf-8")
    assert paths.data_dir() == tmp_path / "elsewhere"


def test_data_dir_is_next_to_a_portable_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(paths.DATA_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    app = tmp_path / "CallPath"
    app.mkdir()
    monkeypatch.setattr(sys, "executable", str(app / "callpath-gui"))
    default = Path(platformdirs.user_data_dir("callpath", appauthor=False))

    assert paths.data_dir() == default  # a bundle without the marker is an installed app
    (app / paths.PORTABLE_MARKER).write_text("", "utf-8")
    assert paths.data_dir() == app.resolve() / "data"


def test_portable_marker_is_ignored_outside_a_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(paths.DATA_DIR_VARIABLE, raising=False)
    monkeypatch.delattr(sys, "frozen", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3"))
    (tmp_path / paths.PORTABLE_MARKER).write_text("", "utf-8")
    assert paths.app_directory() is None
    assert paths.data_dir() == Path(platformdirs.user_data_dir("callpath", appauthor=False))


# --- assets from an installed wheel ---------------------------------------------------------

_PROBE = """
import json, sys
from callpath.core.resources import asset_path
from callpath.core.lab.scenario import list_presets
from callpath.core.i18n import set_language, _
set_language("ru")
print(json.dumps({
    "scenarios": str(asset_path("scenarios")),
    "presets": len(list_presets()),
    "icon": asset_path("icons", "callpath-256.png").is_file(),
    "schema": asset_path("schemas", "report.schema.json").is_file(),
    "web": [asset_path("web", name).is_file() for name in ("index.html", "app.js", "style.css")],
    "ru": _("CallPath self-test"),
    "core": __import__("callpath.core").core.__file__,
    "native_echo": __import__("callpath.core.call.library_adapter").core.call.library_adapter
    .NATIVE_LOOP is not None,
    "top_level": [
        name for name in ("core", "gui", "assets")
        if __import__("importlib.util").util.find_spec(name) is not None
    ],
}))
"""


@pytest.mark.slow
def test_assets_load_from_an_installed_wheel(tmp_path: Path) -> None:
    # Build from a copy: a build in the work tree would write build/ and *.egg-info there,
    # racing with anyone else building at the same time.
    source = tmp_path / "callpath"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("core", "gui", "assets"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.so")
        )
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    (wheel,) = wheels.glob("callpath-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    environment["PYTHONPATH"] = str(site)  # ahead of the other dependencies' site-packages
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=outside,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(result.stdout)
    assert Path(found["core"]).is_relative_to(site)
    assert Path(found["scenarios"]) == site / "callpath" / "assets" / "scenarios"
    # One import package: nothing generic is installed at top level.
    assert found["top_level"] == []
    installed = {p.name for p in site.iterdir() if not p.name.endswith(".dist-info")}
    assert installed - {"bin"} == {"callpath"}
    assert found["presets"] == len(list((ROOT / "assets" / "scenarios").glob("*.yaml")))
    assert found["icon"] and found["schema"]
    assert found["web"] == [True, True, True]  # the echo server's phone test page
    assert found["ru"] == "Самопроверка CallPath"
    # The wheel carries the echo's native loop, built from core/call/_rtp_echo.c, wherever the
    # work tree's own install built it.
    assert found["native_echo"] is (library_adapter.NATIVE_LOOP is not None)


# --- the frozen bundle ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.packaging
@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    os.environ.get("CALLPATH_TEST_BUNDLE") != "1",
    reason="builds the PyInstaller bundle (about a minute with a warm pip cache); "
    "set CALLPATH_TEST_BUNDLE=1",
)
def test_bundle_builds_and_works_without_the_source_tree(tmp_path: Path) -> None:
    build = subprocess.run(
        ["bash", str(PACKAGING / "build-linux.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    output = build.stdout + build.stderr
    assert build.returncode == 0, output[-6000:]
    assert "Self-test passed" in build.stdout
    assert "frozen bundle" in build.stdout
    scenarios_line = next(line for line in build.stdout.splitlines() if "lab scenarios" in line)
    assert (
        "/_internal/callpath/assets/scenarios" in scenarios_line and str(ROOT) not in scenarios_line
    )

    # The desktop app from a copy outside the tree: a demo run saved as screenshots.
    shutil.copytree(ROOT / "dist" / "callpath", tmp_path / "callpath", symlinks=True)
    shots = tmp_path / "shots"
    gui = subprocess.run(
        [str(tmp_path / "callpath" / "callpath-gui"), "--demo", "--screenshot", str(shots)],
        cwd=tmp_path,
        env={
            "HOME": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "QT_QPA_PLATFORM": "offscreen",
            "CALLPATH_DATA_DIR": str(tmp_path / "data"),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert gui.returncode == 0, gui.stdout + gui.stderr
    assert {p.name for p in shots.glob("*.png")} >= {"home.png", "running.png", "verdict.png"}
