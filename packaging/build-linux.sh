#!/usr/bin/env bash
# Builds the Linux one-folder bundle dist/callpath/ (executables `callpath` and `callpath-gui`)
# with PyInstaller, then proves it works without the source tree: the bundle is copied to a
# temporary directory outside the repository and `callpath --self-test` runs there with a clean
# environment (no PYTHONPATH, no virtual environment, HOME in the temporary directory).
#
#   bash packaging/build-linux.sh            # build + self-test of the bundle
#   CALLPATH_BUILD_SKIP_SELF_TEST=1 bash packaging/build-linux.sh   # build only
#
# The build environment is .venv-build/ (separate from .venv, so PyInstaller never meets the test
# tools); it is (re)installed when pyproject.toml or this script changed. Needs python3 >= 3.11
# built with a shared libpython (Debian's and pyenv's defaults are fine) and PyPI access the
# first time. Prints the time each step took.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

python="${PYTHON:-python3}"
venv="$repo_root/.venv-build"
pyinstaller_version="6.22.3"
dist="$repo_root/dist"
work="$repo_root/build/pyinstaller"
bundle="$dist/callpath"

log() { printf 'build-linux: %s\n' "$*"; }
now() { date +%s; }

started=$(now)

build_environment() {
    local stamp="$venv/.callpath-build.sha256"
    local wanted
    wanted="$(cat pyproject.toml packaging/build-linux.sh | sha256sum | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        log "build environment: up to date ($venv)"
        return
    fi
    log "creating the build environment $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    # The project with its GUI extra brings every runtime dependency; the bundle's own modules
    # are then taken from the source tree (see callpath.spec).
    "$venv/bin/python" -m pip install --quiet ".[gui]" "pyinstaller==$pyinstaller_version"
    printf '%s\n' "$wanted" >"$stamp"
}

build_environment
environment_done=$(now)

log "running PyInstaller"
rm -rf "$bundle"
"$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath "$dist" --workpath "$work" packaging/pyinstaller/callpath.spec
built=$(now)
log "bundle: $bundle ($(du -sh "$bundle" | cut -f1))"

if [ "${CALLPATH_BUILD_SKIP_SELF_TEST:-0}" = "1" ]; then
    log "self-test skipped (CALLPATH_BUILD_SKIP_SELF_TEST=1)"
else
    # Outside the source tree, so nothing can be imported or read from the repository.
    scratch="$(mktemp -d "${TMPDIR:-/tmp}/callpath-bundle-XXXXXX")"
    trap 'rm -rf "$scratch"' EXIT
    cp -a "$bundle" "$scratch/"
    log "self-test of the copied bundle in $scratch"
    (
        cd "$scratch"
        env -i HOME="$scratch" PATH=/usr/bin:/bin LANG=C.UTF-8 TMPDIR="$scratch" \
            "$scratch/callpath/callpath" --self-test
    )
    log "self-test passed"
fi
finished=$(now)
log "times: environment $((environment_done - started)) s, PyInstaller $((built - environment_done)) s, self-test $((finished - built)) s, total $((finished - started)) s"
