#!/usr/bin/env bash
# Idempotent set-up of a Debian machine for CallPath's tests (CI runs it as root on a fresh one):
#  - the third-party servers the tests start themselves (coturn, Janus, Dante, tinyproxy,
#    shadowsocks-libev; v2ray, whose config test checks the routing export), nftables/ipset/
#    iproute2 for network namespaces, Xvfb, openssl, the shared libraries Qt needs to open a
#    window (the xcb libraries PySide6 documents) and offscreen, and the browsers that drive the
#    phone test page;
#  - a C compiler and Python's headers, which build the echo server's native per-packet loop
#    (core/call/_rtp_echo.c) during the install below;
#  - .venv in the repository with `pip install -e '.[gui,test]'`, redone only when
#    pyproject.toml or the C source changed.
# CALLPATH_SETUP_MODE=lab (what scripts/lab.sh uses) installs only the command line into .venv,
# without the desktop app's Qt or the test tools, and no Debian package; a later full set-up
# adds the rest.
# It never stops, disables or reconfigures a service: maintainer scripts are kept from starting
# services only while its own apt-get install runs (policy-rc.d, restored exactly afterwards), and
# services already on the machine (a production coturn, other work's lab servers) are left as they
# are, running and enabled or not. The tests start their own instances on free loopback ports.
# Without root, missing packages are listed with the apt-get line that installs them, and
# skipped; tests that need them skip with a reason.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

server_packages=(coturn janus dante-server tinyproxy shadowsocks-libev v2ray)
# What Qt's X11 platform plugin (libqxcb.so in PySide6) loads beyond libxcb1 itself: without
# them `callpath gui` cannot open a window (gui/platform_check.py names the missing ones).
qt_window_packages=(
    libxcb1 libx11-6 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
    libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1
    libxcb-util1 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0
)
packages=(
    "${server_packages[@]}"
    nftables ipset iproute2 xvfb xauth openssl desktop-file-utils appstream librsvg2-bin
    libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0
    "${qt_window_packages[@]}"
    # Browsers that drive the echo server's phone test page (tests/test_phone_page.py).
    chromium firefox-esr
    # Build the echo server's native loop (core/call/_rtp_echo.c); without them it runs in Python.
    gcc libc6-dev python3-dev
)
# Where Debian's invoke-rc.d looks for a policy; a variable so the tests can use a temporary file.
policy_rc_d="${CALLPATH_POLICY_RC_D:-/usr/sbin/policy-rc.d}"

log() { printf 'setup: %s\n' "$*"; }

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Run "$@" with a policy-rc.d that forbids starting services (exit 101), then put back exactly
# what was there: the previous file with its contents and mode, or no file.
with_services_held() {
    local policy="$policy_rc_d"
    local backup=""
    if [ -e "$policy" ] || [ -L "$policy" ]; then
        backup="$(mktemp "${policy}.callpath-saved.XXXXXX")"
        cp -a "$policy" "$backup"
    fi
    printf '#!/bin/sh\nexit 101\n' >"$policy.callpath-new"
    chmod 755 "$policy.callpath-new"
    mv -f "$policy.callpath-new" "$policy"
    local status=0
    "$@" || status=$?
    if [ -n "$backup" ]; then
        mv -f "$backup" "$policy"
    else
        rm -f "$policy"
    fi
    return "$status"
}

apt_install() {
    apt-get update -q &&
        apt-get install -y -q --no-install-recommends "$@"
}

install_packages() {
    local missing=()
    local package
    for package in "${packages[@]}"; do
        is_installed "$package" || missing+=("$package")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "Debian packages: all present"
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        log "not root: cannot install missing Debian packages; install them with:"
        log "  sudo apt-get install --no-install-recommends ${missing[*]}"
        log "tests that need them will be skipped"
        return
    fi
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Maintainer scripts may not start services during the install (policy-rc.d, exit 101 =
    # action forbidden); nothing already running is touched, before or after.
    local status=0
    with_services_held apt_install "${missing[@]}" || status=$?
    if [ "$status" -ne 0 ]; then
        log "apt-get failed with status $status"
        exit "$status"
    fi
    log "installed Debian packages: ${missing[*]} (their services were not started; running services were left alone)"
}

# The sources a non-editable (lab) install copies: reinstalled when any of them changes.
source_digest() {
    find core assets pyproject.toml -type f ! -name '*.pyc' ! -name '*.so' -print0 | LC_ALL=C sort -z |
        xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

python_environment() {
    local venv="$repo_root/.venv"
    local stamp="$venv/.callpath-pyproject.sha256"
    if [ ! -x "$venv/bin/python" ]; then
        log "creating $venv"
        python3 -m venv "$venv"
    fi
    local wanted have=""
    # pyproject.toml and the C source of the native echo loop, which the editable install builds.
    wanted="$(cat pyproject.toml core/call/*.c | sha256sum | cut -d' ' -f1)"
    [ -f "$stamp" ] && have="$(cat "$stamp")"
    if [ "${CALLPATH_SETUP_MODE:-full}" = "lab" ]; then
        # The full (editable) environment serves the lab too; otherwise the command line alone,
        # installed as a user would (no editable-install notices), redone when a source changes.
        local lab_wanted
        lab_wanted="lab $(source_digest)"
        if [ "$have" = "$wanted" ] || [ "$have" = "$lab_wanted" ]; then
            log "Python environment: up to date"
            return
        fi
        log "installing the command line into $venv (no desktop app, no test tools)"
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        "$venv/bin/python" -m pip install --quiet .
        printf '%s\n' "$lab_wanted" >"$stamp"
        return
    fi
    if [ "$have" = "$wanted" ]; then
        log "Python environment: up to date"
        return
    fi
    log "installing the project into $venv (pyproject.toml or C source changed, or first run)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e '.[gui,test]'
    printf '%s\n' "$wanted" >"$stamp"
}

main() {
    # The built-in lab needs no Debian package: `scripts/lab.sh` sets CALLPATH_SETUP_PACKAGES=0.
    if [ "${CALLPATH_SETUP_PACKAGES:-1}" != "0" ]; then
        install_packages
    fi
    python_environment
    log "done"
}

# Sourced (by the tests), only the functions are defined.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main
fi
