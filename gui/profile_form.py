"""The profile editor's form as data: to YAML and back, errors pointed at the right field.

Pure and Qt-free. The editor never validates on its own: it writes the form as profile YAML,
remembering the line each field lands on, and parses it with
``callpath.core.profile.document.parse_profile``.
A ``ProfileError``'s line then names the field to show the message next to, in exactly the
core's words. Secrets are references (``${env:NAME}``, ``keyring:SERVICE/USER``); the parser
refuses anything else, so a profile the editor saves or exports never holds a secret.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from callpath.core.model.config import QualityConfig, Timeouts
from callpath.core.model.results import PathId
from callpath.core.paths.registry import PATHS, ProxyKind, path_ids, paths_where
from callpath.core.profile.document import PROFILE_VERSION, Profile, ProfileError, parse_profile

TARGET_KINDS = ("echo", "janus", "relay-loopback")
# Which path each kind of server entry can check on its own.
URI_PATHS = {spec.ice_uri: path for path, spec in PATHS.items() if spec.ice_uri is not None}
PROXY_PATHS = {
    kind.value: tuple(path.value for path in path_ids() if path in paths_where(proxy=kind))
    for kind in ProxyKind
}


@dataclass
class ServerForm:
    urls: list[str] = field(default_factory=list)
    username: str = ""
    credential: str = ""  # a secret reference


@dataclass
class ProxyForm:
    url: str = ""
    password: str = ""  # a secret reference
    stun: str = ""


@dataclass
class ProfileForm:
    name: str = ""
    description: str = ""
    sender: str = ""
    target_kind: str = "echo"
    target_url: str = ""
    target_token: str = ""  # a secret reference
    servers: list[ServerForm] = field(default_factory=list)
    proxies: list[ProxyForm] = field(default_factory=list)
    masque_url: str = ""
    masque_server_name: str = ""
    masque_token: str = ""
    paths: list[str] = field(default_factory=list)  # empty: the profile's default selection
    ca_bundle: str = ""
    # Not edited in the form, but kept through import and export.
    timeouts: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedProfile:
    text: str
    lines: tuple[tuple[int, str], ...]  # (1-based line, field key) in line order

    def field_at(self, line: int | None) -> str | None:
        """The field a ProfileError's line belongs to: the last field starting at or before it."""
        if line is None:
            return None
        found = None
        for start, key in self.lines:
            if start <= line:
                found = key
        return found


@dataclass(frozen=True)
class Validation:
    rendered: RenderedProfile
    profile: Profile | None
    error: ProfileError | None

    @property
    def field(self) -> str | None:
        return None if self.error is None else self.rendered.field_at(self.error.line)


def _quoted(value: str) -> str:
    # A JSON string is a YAML double-quoted scalar: every character is safe in it.
    return json.dumps(value, ensure_ascii=False)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.fields: list[tuple[int, str]] = []

    def add(self, text: str, key: str | None = None) -> None:
        self.lines.append(text)
        if key is not None:
            self.fields.append((len(self.lines), key))

    def render(self) -> RenderedProfile:
        return RenderedProfile("\n".join(self.lines) + "\n", tuple(self.fields))


def render(form: ProfileForm, *, only_path: str | None = None) -> RenderedProfile:
    """The form as profile YAML. Empty optional fields are left out; required ones are written
    even when empty, so the parser names them (``name is empty; give it a value``)."""
    out = _Writer()
    out.add(f"version: {PROFILE_VERSION}", "name")
    out.add(f"name: {_quoted(form.name.strip())}", "name")
    if form.description.strip():
        out.add(f"description: {_quoted(form.description.strip())}", "description")
    if form.sender.strip():
        out.add(f"sender: {_quoted(form.sender.strip())}", "sender")
    out.add("target:", "target.kind")
    out.add(f"  kind: {_quoted(form.target_kind)}", "target.kind")
    if form.target_kind != "relay-loopback" or form.target_url.strip():
        out.add(f"  url: {_quoted(form.target_url.strip())}", "target.url")
    if form.target_token.strip():
        out.add(f"  token: {_quoted(form.target_token.strip())}", "target.token")
    servers = [s for s in form.servers if any(u.strip() for u in s.urls) or s.username]
    if servers:
        out.add("ice_servers:", "servers[0].urls")
        for index, server in enumerate(form.servers):
            if server not in servers:
                continue
            where = f"servers[{index}]"
            out.add("  - urls:", f"{where}.urls")
            for url in server.urls:
                if url.strip():
                    out.add(f"      - {_quoted(url.strip())}", f"{where}.urls")
            if server.username.strip() or server.credential.strip():
                out.add(f"    username: {_quoted(server.username.strip())}", f"{where}.username")
                out.add(
                    f"    credential: {_quoted(server.credential.strip())}", f"{where}.credential"
                )
    proxies = [p for p in form.proxies if p.url.strip()]
    if proxies:
        out.add("proxies:", "proxies[0].url")
        for index, proxy in enumerate(form.proxies):
            if proxy not in proxies:
                continue
            where = f"proxies[{index}]"
            out.add(f"  - url: {_quoted(proxy.url.strip())}", f"{where}.url")
            if proxy.password.strip():
                out.add(f"    password: {_quoted(proxy.password.strip())}", f"{where}.password")
            if proxy.stun.strip():
                out.add(f"    stun: {_quoted(proxy.stun.strip())}", f"{where}.stun")
    if form.masque_url.strip():
        out.add("masque:", "masque.url")
        out.add(f"  url: {_quoted(form.masque_url.strip())}", "masque.url")
        if form.masque_server_name.strip():
            out.add(
                f"  server_name: {_quoted(form.masque_server_name.strip())}", "masque.server_name"
            )
        if form.masque_token.strip():
            out.add(f"  token: {_quoted(form.masque_token.strip())}", "masque.token")
    paths = [only_path] if only_path is not None else form.paths
    if paths:
        out.add("paths:", "paths")
        for path in paths:
            out.add(f"  - {_quoted(path)}", "paths")
    if form.ca_bundle.strip():
        out.add(f"ca_bundle: {_quoted(form.ca_bundle.strip())}", "ca_bundle")
    for section, values in (("timeouts", form.timeouts), ("quality", form.quality)):
        if values:
            out.add(f"{section}:", section)
            for key, value in values.items():
                out.add(f"  {key}: {_number(value)}", section)
    return out.render()


def validate(form: ProfileForm, source: Path | None = None) -> Validation:
    """Render and parse; ``source`` anchors a relative ca_bundle like the file would."""
    rendered = render(form)
    try:
        return Validation(rendered, parse_profile(rendered.text, source), None)
    except ProfileError as error:
        return Validation(rendered, None, error)


def _changed(current: object, default: object) -> dict[str, float]:
    return {
        item.name: getattr(current, item.name)
        for item in dataclasses.fields(default)  # type: ignore[arg-type]
        if getattr(current, item.name) != getattr(default, item.name)
    }


def form_from_profile(profile: Profile) -> ProfileForm:
    """A parsed profile (someone's file, or an import) as the editor's form."""
    return ProfileForm(
        name=profile.name,
        description=profile.description,
        sender=profile.sender,
        target_kind=str(profile.target.kind),
        target_url=profile.target.url or "",
        target_token=profile.target.token.text if profile.target.token else "",
        servers=[
            ServerForm(
                urls=[str(uri) for uri in server.urls],
                username=server.username or "",
                credential=server.credential.text if server.credential else "",
            )
            for server in profile.ice_servers
        ],
        proxies=[
            ProxyForm(
                url=str(proxy.url),
                password=proxy.password.text if proxy.password else "",
                stun=str(proxy.stun) if proxy.stun else "",
            )
            for proxy in profile.proxies
        ],
        masque_url=profile.masque.url if profile.masque else "",
        masque_server_name=(profile.masque.server_name or "") if profile.masque else "",
        masque_token=profile.masque.token.text if profile.masque and profile.masque.token else "",
        paths=list(profile.paths),
        ca_bundle=str(profile.ca_bundle) if profile.ca_bundle else "",
        timeouts=_changed(profile.timeouts, Timeouts()),
        quality=_changed(profile.quality, QualityConfig()),
    )


def server_paths(server: ServerForm) -> list[str]:
    """The paths one ICE server entry can be checked on, from its URIs (unparsable ones skipped)."""
    from callpath.core.profile.document import parse_ice_uri

    found: list[str] = []
    for url in server.urls:
        try:
            uri = parse_ice_uri(url.strip())
        except ValueError:
            continue
        path = URI_PATHS.get((uri.scheme, uri.transport))
        if path is not None and path not in found:
            found.append(path)
    return found


def proxy_paths(proxy: ProxyForm) -> list[str]:
    scheme = proxy.url.strip().split(":", 1)[0].lower()
    kind = "socks5" if scheme in ("socks5", "socks5h") else scheme
    return list(PROXY_PATHS.get(kind, ()))


def check_form(form: ProfileForm, kind: str, index: int, path: str) -> ProfileForm:
    """The form reduced to one server (``kind`` is servers, proxies or masque) and one path.

    An ICE server is checked alone, so the path cannot pick another server's URI; a proxy keeps
    the relays (socks5-turn and http-turn reach a relay through it); MASQUE needs only itself.
    """
    reduced = dataclasses.replace(form, paths=[path])
    if kind == "servers":
        reduced.servers = [form.servers[index]]
        reduced.proxies = []
        reduced.masque_url = ""
    elif kind == "proxies":
        reduced.proxies = [form.proxies[index]]
        reduced.masque_url = ""
    elif kind == "masque":
        reduced.servers = [s for s in form.servers if PathId.DIRECT in server_paths(s)][:1]
        reduced.proxies = []
    return reduced


def servers_contacted(profile: Profile) -> list[str]:
    """Every host a run of ``profile`` may contact, for the confirmation before it runs."""
    hosts: list[str] = []

    def add(value: str) -> None:
        if value and value not in hosts:
            hosts.append(value)

    if profile.target.url:
        add(profile.target.url)
    for path in profile.paths:
        chosen = profile.server_for(path)
        if chosen is not None:
            add(str(chosen[1]))
        proxy = profile.proxy_for(path)
        if proxy is not None:
            add(str(proxy.url))
            if PATHS[PathId(path)].relay:  # a relay reached through the proxy
                relay = profile.relay_behind_proxy()
                if relay is not None:
                    add(str(relay[1]))
            if proxy.stun is not None:
                add(str(proxy.stun))
        if path == PathId.MASQUE and profile.masque is not None:
            add(profile.masque.url)
    return hosts
