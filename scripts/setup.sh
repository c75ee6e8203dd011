#!/usr/bin/env bash
# Idempotent set-up of a Debian machine for CallPath's tests (CI runs it as root on a fresh one):
#  - the third-party servers the tests start themselves (coturn, Janus, Dante, tinyproxy,
#    shadowsocks-libev; v2ray, whose config test checks the routing export), nftables/ipset/iproute2 for network namespaces, Xvfb, openssl, and the
#    shared libraries Qt needs offscreen;
#  - .venv in the repository with `pip install -e '.[gui,test]'`, redone only when
#    pyproject.toml changed.
# Package services are never left running: the tests start their own instances on loopback.
# Without root, missing packages are listed and skipped; tests that need them skip with a reason.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

server_packages=(coturn janus dante-server tinyproxy shadowsocks-libev v2ray)
packages=(
    "${server_packages[@]}"
    nftables ipset iproute2 xvfb xauth openssl desktop-file-utils appstream librsvg2-bin
    libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0
    # Browsers that drive the echo server's phone test page (tests/test_phone_page.py).
    chromium firefox-esr
)
# Services the server packages may register; the tests run their own instances instead.
services=(coturn janus danted tinyproxy shadowsocks-libev v2ray)

log() { printf 'setup: %s\n' "$*"; }

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

stop_package_services() {
    local service
    for service in "${services[@]}"; do
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            systemctl disable --now "$service" >/dev/null 2>&1 || true
        else
            if command -v service >/dev/null 2>&1 && [ -e "/etc/init.d/$service" ]; then
                service "$service" stop >/dev/null 2>&1 || true
            fi
            if command -v update-rc.d >/dev/null 2>&1 && [ -e "/etc/init.d/$service" ]; then
                update-rc.d "$service" disable >/dev/null 2>&1 || true
            fi
        fi
    done
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
        log "not root: cannot install missing Debian packages: ${missing[*]}"
        log "tests that need them will be skipped"
        return
    fi
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Forbid maintainer scripts from starting services during the install (policy-rc.d, exit
    # 101 = action forbidden); remove the file afterwards only if we created it.
    local policy=/usr/sbin/policy-rc.d
    local created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local status=0
    {
        apt-get update -q &&
            apt-get install -y -q --no-install-recommends "${missing[@]}"
    } || status=$?
    if [ "$created_policy" -eq 1 ]; then
        rm -f "$policy"
    fi
    if [ "$status" -ne 0 ]; then
        log "apt-get failed with status $status"
        exit "$status"
    fi
    stop_package_services
}

python_environment() {
    local venv="$repo_root/.venv"
    local stamp="$venv/.callpath-pyproject.sha256"
    if [ ! -x "$venv/bin/python" ]; then
        log "creating $venv"
        python3 -m venv "$venv"
    fi
    local wanted
    wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        log "Python environment: up to date"
        return
    fi
    log "installing the project into $venv (pyproject.toml changed or first run)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e '.[gui,test]'
    printf '%s\n' "$wanted" >"$stamp"
}

# The built-in lab needs no Debian package: `scripts/lab.sh` sets CALLPATH_SETUP_PACKAGES=0.
if [ "${CALLPATH_SETUP_PACKAGES:-1}" != "0" ]; then
    install_packages
fi
python_environment
log "done"
