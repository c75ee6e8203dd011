"""Debian's headless Chromium (and Firefox ESR) driving the echo server's phone test page
(GUIDE §11).

No driver library: the page takes URL parameters for automation (``?autorun=1&send=1``), the
test waits for the report in the server's inbox, and Chromium's network log
(``--log-net-log``) shows every request it made. Chromium trusts the test certificates through
``--ignore-certificate-errors-spki-list`` (it verifies TURN-over-TLS certificates like HTTPS
ones: without the flag the TLS relay fails with net error -202, unknown authority).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.servers import require_binary

# Flags that make WebRTC work against loopback servers headless, and keep Chromium's own
# background traffic (updates, sign-in, …) from leaving the machine: every name but the
# loopback ones fails to resolve.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE localhost., "
    "EXCLUDE 127.0.0.1",
    "--enable-logging=stderr",
    "--v=0",
)


def spki_hash(certificate_pem: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate, for the SPKI flag."""
    certificate = x509.load_pem_x509_certificate(certificate_pem.read_bytes())
    der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


@dataclass
class ChromiumRun:
    process: subprocess.Popen[bytes]
    net_log: Path
    output: Path

    def console(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""


@contextlib.contextmanager
def run_chromium(
    url: str, workdir: Path, *, trusted_certificates: Sequence[Path] = ()
) -> Iterator[ChromiumRun]:
    binary = require_binary("chromium", "chromium")
    workdir.mkdir(parents=True, exist_ok=True)
    net_log = workdir / "net-log.json"
    output = workdir / "chromium.log"
    flags = list(CHROMIUM_FLAGS)
    if trusted_certificates:
        hashes = ",".join(spki_hash(path) for path in trusted_certificates)
        flags.append(f"--ignore-certificate-errors-spki-list={hashes}")
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                binary,
                *flags,
                f"--user-data-dir={workdir / 'profile'}",
                f"--log-net-log={net_log}",
                url,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    run = ChromiumRun(process, net_log, output)
    try:
        yield run
    finally:
        process.terminate()  # a clean shutdown: Chromium closes the net log's JSON
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def requests_from_page(net_log: Path, page_origin: str) -> list[str]:
    """URLs of every request the page made (it initiated them, or it is the page itself).

    Chromium's own requests (updates, sign-in) have no page initiator and are left out.
    """
    text = net_log.read_text(errors="replace")
    try:
        log: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:  # cut short: close the events array ourselves
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if names.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        url = str(params["url"])
        initiator = str(params.get("initiator", ""))
        if initiator == page_origin or url.startswith(page_origin + "/"):
            urls.append(url)
    return urls


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# Firefox ESR: the same for loopback calls, and every non-loopback request goes to a dead proxy
# (port 9 on loopback) so that its own background traffic never leaves the machine.
FIREFOX_PREFS: dict[str, object] = {
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.http_port": 9,
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.ssl_port": 9,
    "network.proxy.no_proxies_on": "localhost, 127.0.0.1",
    "network.proxy.allow_hijacking_localhost": False,
    "network.trr.mode": 5,
    "network.dns.disablePrefetch": True,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "app.update.enabled": False,
    "extensions.update.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
}


@contextlib.contextmanager
def run_firefox(url: str, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    binary = require_binary("firefox-esr", "firefox-esr")
    profile = workdir / "profile"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in FIREFOX_PREFS.items())
    )
    with (workdir / "firefox.log").open("wb") as sink:
        process = subprocess.Popen(
            [binary, "--headless", "--no-remote", "--profile", str(profile), url],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
