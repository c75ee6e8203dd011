"""Proxy URLs: the forms users write, and helpful refusals."""

from __future__ import annotations

import pytest

from callpath.core import i18n
from callpath.core.model.proxy_url import ProxyUrl, parse_proxy_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("socks5://127.0.0.1:1080", ProxyUrl("socks5", "127.0.0.1", 1080)),
        ("socks5h://alice@proxy.example:1080", ProxyUrl("socks5h", "proxy.example", 1080, "alice")),
        ("http://[::1]:3128/", ProxyUrl("http", "::1", 3128)),
        ("  HTTP://Proxy.Example:8080  ", ProxyUrl("http", "proxy.example", 8080)),
        ("socks5://user%40corp@10.0.0.1:1080", ProxyUrl("socks5", "10.0.0.1", 1080, "user@corp")),
    ],
)
def test_accepted_forms(text: str, expected: ProxyUrl) -> None:
    assert parse_proxy_url(text) == expected


def test_text_form_round_trips_without_a_password() -> None:
    for text in ("socks5://127.0.0.1:1080", "socks5h://bob@[::1]:9050", "http://h.example:3128"):
        assert str(parse_proxy_url(text)) == text


def test_kind_remote_dns_and_loopback() -> None:
    socks = parse_proxy_url("socks5://127.0.0.2:1080")
    assert (socks.kind, socks.remote_dns, socks.is_loopback) == ("socks5", False, True)
    socks_h = parse_proxy_url("socks5h://localhost:1080")
    assert (socks_h.kind, socks_h.remote_dns, socks_h.is_loopback) == ("socks5", True, True)
    http = parse_proxy_url("http://192.0.2.1:3128")
    assert (http.kind, http.remote_dns, http.is_loopback) == ("http", True, False)
    assert http.address == ("192.0.2.1", 3128)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("socks5://bob:hunter2@127.0.0.1:1080", "secret reference, not the URL"),
        ("socks5://bob:@127.0.0.1:1080", "secret reference, not the URL"),
        ("https://127.0.0.1:8443", "unsupported proxy scheme 'https'"),
        ("socks4://127.0.0.1:1080", "unsupported proxy scheme 'socks4'"),
        ("127.0.0.1:1080", "has no scheme"),
        ("socks5://127.0.0.1", "has no port; write e.g. socks5://127.0.0.1:1080"),
        ("socks5://127.0.0.1:0", "port 0"),
        ("socks5://127.0.0.1:70000", "not a valid proxy URL"),
        ("socks5://:1080", "has no host"),
        ("http://127.0.0.1:3128/path", "no path, query or fragment"),
        ("http://127.0.0.1:3128?x=1", "no path, query or fragment"),
        ("socks5://@127.0.0.1:1080", "empty user name"),
    ],
)
def test_refusals_say_what_to_do(text: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_proxy_url(text)
    assert message in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_refusals_are_translated() -> None:
    i18n.set_language("ru")
    try:
        with pytest.raises(ValueError) as refused:
            parse_proxy_url("socks5://bob:hunter2@127.0.0.1:1080")
    finally:
        i18n.set_language("en")
    assert "секрет" in str(refused.value)


def test_every_proxy_message_has_a_russian_translation() -> None:
    import ast
    from pathlib import Path

    from babel.messages.pofile import read_po

    from callpath.core.resources import asset_path

    core = Path(__file__).parents[1] / "core"
    modules = ("model/proxy_url", "paths/socks5", "paths/proxy_stream", "present/proxy_failures")
    messages = set()
    for source in (core / f"{name}.py" for name in modules):
        for node in ast.walk(ast.parse(source.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("_", "N_")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                messages.add(node.args[0].value)
    with asset_path("locale", "ru", "LC_MESSAGES", "callpath.po").open("rb") as handle:
        translated = {m.id for m in read_po(handle, locale="ru") if m.string and not m.fuzzy}
    assert len(messages) > 20
    assert messages - translated == set()
