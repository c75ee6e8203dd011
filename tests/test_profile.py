"""Profiles: ICE URIs, secret references, every error with its file and line, the example."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from callpath.core.i18n import set_language
from callpath.core.model import yaml_input
from callpath.core.model.config import QualityConfig, Timeouts
from callpath.core.profile.document import (
    ControlServer,
    IceServer,
    IceUri,
    ProfileError,
    SecretKind,
    SecretRef,
    TargetKind,
    load_profile,
    parse_ice_uri,
    parse_profile,
)
from tests.certs import make_server_certificate
from tests.keyrings import MemoryKeyring

REPO = Path(__file__).resolve().parent.parent

# --- ICE URIs -----------------------------------------------------------------------------------

GOOD_URIS = [
    # text, scheme, host, port, transport, canonical
    (
        "stun:stun.example.org",
        "stun",
        "stun.example.org",
        3478,
        "udp",
        "stun:stun.example.org:3478",
    ),
    ("stun:stun.example.org:19302", "stun", "stun.example.org", 19302, "udp", None),
    ("turn:turn.example.org", "turn", "turn.example.org", 3478, "udp", None),
    (
        "turn:turn.example.org:80?transport=tcp",
        "turn",
        "turn.example.org",
        80,
        "tcp",
        "turn:turn.example.org:80?transport=tcp",
    ),
    (
        "turn:192.0.2.7?transport=udp",
        "turn",
        "192.0.2.7",
        3478,
        "udp",
        "turn:192.0.2.7:3478?transport=udp",
    ),
    ("turns:relay.example.org", "turns", "relay.example.org", 5349, "tcp", None),
    (
        "turns:relay.example.org:443",
        "turns",
        "relay.example.org",
        443,
        "tcp",
        "turns:relay.example.org:443?transport=tcp",
    ),
    ("turns:relay.example.org:443?transport=tcp", "turns", "relay.example.org", 443, "tcp", None),
    # Scheme, host and transport are case-insensitive; canonical form is lower case.
    (
        "TURN:Turn.Example.ORG:3478?Transport=TCP",
        "turn",
        "turn.example.org",
        3478,
        "tcp",
        "turn:turn.example.org:3478?transport=tcp",
    ),
    ("stun:[2001:DB8::1]", "stun", "2001:db8::1", 3478, "udp", "stun:[2001:db8::1]:3478"),
    (
        "turn:[2001:db8:0:0::7]:3479?transport=tcp",
        "turn",
        "2001:db8::7",
        3479,
        "tcp",
        "turn:[2001:db8::7]:3479?transport=tcp",
    ),
    ("  turn:localhost:3478  ", "turn", "localhost", 3478, "udp", None),
    ("turn:my_relay-1.example.org:65535", "turn", "my_relay-1.example.org", 65535, "udp", None),
]


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port", "transport", "canonical"),
    GOOD_URIS,
    ids=[case[0].strip() for case in GOOD_URIS],
)
def test_parse_good_ice_uris(
    text: str, scheme: str, host: str, port: int, transport: str, canonical: str | None
) -> None:
    uri = parse_ice_uri(text)
    assert (uri.scheme, uri.host, uri.port, uri.transport) == (scheme, host, port, transport)
    if canonical is not None:
        assert str(uri) == canonical
    # The canonical form parses back to the same URI.
    assert parse_ice_uri(str(uri)) == uri


BAD_URIS = [
    ("", "empty ICE server URI"),
    ("turn.example.org:3478", "unknown scheme"),
    ("http://turn.example.org", "unknown scheme"),
    ("stuns:stun.example.org", "stuns: (STUN over TLS) is not supported"),
    ("turn:", "the host is missing"),
    ("turn::3478", "the host is missing"),
    ("turn://turn.example.org:3478", "no '//' after the scheme; write turn:turn.example.org:3478"),
    ("turn:turn.example.org:0", "not a number from 1 to 65535"),
    ("turn:turn.example.org:65536", "not a number from 1 to 65535"),
    ("turn:turn.example.org:34x", "not a number from 1 to 65535"),
    ("turn:turn.example.org:", "not a number from 1 to 65535"),
    ("turn:turn.example.org:-1", "not a number from 1 to 65535"),
    ("turns:turn.example.org:443?transport=udp", "TURN over DTLS) is not supported"),
    ("turn:turn.example.org?transport=sctp", "unknown transport 'sctp'"),
    ("turn:turn.example.org?transport=", "unknown transport ''"),
    ("turn:turn.example.org?proto=udp", "the only query allowed is ?transport=udp"),
    ("turn:turn.example.org?transport", "the only query allowed is ?transport=udp"),
    ("stun:stun.example.org?transport=udp", "stun: URIs take no '?transport='"),
    ("turn:2001:db8::1", "put IPv6 addresses in brackets"),
    ("turn:[2001:db8::1", "no closing ']'"),
    ("turn:[2001:db8::zz]", "not a valid IPv6 address"),
    ("turn:[fe80::1%25eth0]", "not a valid IPv6 address"),
    ("turn:[2001:db8::1]3478", "expected ':PORT' after the IPv6 address"),
    ("turn:300.1.2.3", "not a valid IPv4 address"),
    ("turn:turn..example.org", "not a valid host name"),
    ("turn:-turn.example.org", "not a valid host name"),
    ("turn:turn example.org", "contain no spaces"),
    ("turn:turn.example.org/path", "no path"),
    ("turn:turn.example.org#frag", "no '#' fragment"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_URIS, ids=[case[0] for case in BAD_URIS])
def test_parse_bad_ice_uris(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_ice_uri(text)
    assert fragment in str(caught.value)


def test_uri_with_userinfo_is_refused_without_repeating_the_password() -> None:
    with pytest.raises(ValueError) as caught:
        parse_ice_uri("turn:alice:hunter2@turn.example.org:3478?transport=udp")
    message = str(caught.value)
    assert "hunter2" not in message
    assert "'turn:***@turn.example.org:3478'" in message
    assert "username and credential" in message


def test_ice_uri_host_port() -> None:
    assert parse_ice_uri("turns:[::1]:443").host_port == "[::1]:443"
    assert parse_ice_uri("turn:127.0.0.1").host_port == "127.0.0.1:3478"


# --- secret references --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "env_var", "service", "user"),
    [
        ("${env:TURN_PASSWORD}", SecretKind.ENV, "TURN_PASSWORD", None, None),
        ("${env:_x1}", SecretKind.ENV, "_x1", None, None),
        ("keyring:callpath/alice", SecretKind.KEYRING, None, "callpath", "alice"),
        (
            "keyring:callpath/team/alice@example.org",
            SecretKind.KEYRING,
            None,
            "callpath",
            "team/alice@example.org",
        ),
    ],
)
def test_parse_good_secret_refs(
    text: str, kind: SecretKind, env_var: str | None, service: str | None, user: str | None
) -> None:
    reference = SecretRef.parse(text)
    assert (reference.text, reference.kind) == (text, kind)
    assert (reference.env_var, reference.service, reference.user) == (env_var, service, user)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "hunter2",
            "secrets are never written in a profile; use ${env:NAME} or keyring:SERVICE/USER",
        ),
        ("$TURN_PASSWORD", "environment references are written ${env:NAME}"),
        ("${TURN_PASSWORD}", "environment references are written ${env:NAME}"),
        ("${env:1ABC}", "malformed reference '${env:1ABC}'"),
        ("${env:A-B}", "malformed reference"),
        ("${env:}", "malformed reference"),
        ("keyring:callpath", "the '/' between service and user is missing"),
        ("keyring:/alice", "service name is empty"),
        ("keyring:callpath/", "user name is empty"),
        ("keyring:call path/alice", "spaces or control characters"),
        ("env:TURN_PASSWORD", "secrets are never written"),
    ],
)
def test_parse_bad_secret_refs(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        SecretRef.parse(text)
    assert fragment in str(caught.value)


def test_literal_secret_is_never_repeated() -> None:
    for literal in ("hunter2", "$ecretValue"):
        with pytest.raises(ValueError) as caught:
            SecretRef.parse(literal)
        assert literal not in str(caught.value)


def test_env_ref_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLPATH_TEST_SECRET", "from-env")
    assert SecretRef.parse("${env:CALLPATH_TEST_SECRET}").resolve() == "from-env"


def test_env_ref_unset_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLPATH_TEST_SECRET", raising=False)
    reference = SecretRef.parse("${env:CALLPATH_TEST_SECRET}", file="p.yaml", line=7)
    with pytest.raises(ProfileError) as caught:
        reference.resolve()
    assert (caught.value.file, caught.value.line) == ("p.yaml", 7)
    assert str(caught.value).startswith("p.yaml:7: ${env:CALLPATH_TEST_SECRET}: ")
    assert "set the environment variable CALLPATH_TEST_SECRET" in caught.value.message
    monkeypatch.setenv("CALLPATH_TEST_SECRET", "")
    with pytest.raises(ProfileError, match="CALLPATH_TEST_SECRET is empty"):
        reference.resolve()


def test_keyring_ref_resolves(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.passwords[("callpath", "alice")] = "from-keyring"
    assert SecretRef.parse("keyring:callpath/alice").resolve() == "from-keyring"


def test_keyring_ref_missing_says_how_to_store_it(memory_keyring: MemoryKeyring) -> None:
    reference = SecretRef.parse("keyring:callpath/alice", file="p.yaml", line=3)
    with pytest.raises(ProfileError) as caught:
        reference.resolve()
    assert caught.value.line == 3
    assert "keyring:callpath/alice" in caught.value.message
    assert "run: callpath secret set callpath alice" in caught.value.message


def test_keyring_ref_without_backend_points_to_env(no_keyring: None) -> None:
    with pytest.raises(ProfileError) as caught:
        SecretRef.parse("keyring:callpath/alice").resolve()
    assert "no usable keyring backend" in caught.value.message
    assert "${env:NAME}" in caught.value.message


# --- profiles: good -----------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "profile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


FULL = """
version: 1
name: Example relays
description: Relays of Example NGO
sender: Helpdesk of Example NGO
target:
  kind: echo
  url: https://echo.example.org:8443
  token: ${env:CALLPATH_ECHO_TOKEN}
ice_servers:
  - urls: [stun:stun.example.org:3478]
  - urls:
      - turn:turn.example.org:3478?transport=udp
      - turn:turn.example.org:3478?transport=tcp
      - turns:turn.example.org:443
    username: alice
    credential: keyring:callpath/alice
paths: [direct, turn-udp, turn-tcp, turn-tls]
ca_bundle: ./certs/ca.pem
timeouts: {ice: 8}
quality: {window_s: 4, concurrency: 4, video_width: 320, video_height: 240}
"""


def test_full_profile(tmp_path: Path) -> None:
    make_server_certificate(tmp_path / "certs")
    path = write(tmp_path, FULL)
    profile = load_profile(path)
    assert profile.version == 1
    assert profile.name == "Example relays"
    assert profile.description == "Relays of Example NGO"
    assert profile.sender == "Helpdesk of Example NGO"
    assert profile.source == path
    assert profile.target.kind is TargetKind.ECHO
    assert profile.target.url == "https://echo.example.org:8443"
    assert profile.target.token is not None
    assert profile.target.token.text == "${env:CALLPATH_ECHO_TOKEN}"
    assert (profile.target.token.file, profile.target.token.line) == (str(path), 8)
    assert len(profile.ice_servers) == 2
    stun, turn = profile.ice_servers
    assert stun == IceServer(urls=(IceUri("stun", "stun.example.org", 3478, "udp"),))
    assert [str(uri) for uri in turn.urls] == [
        "turn:turn.example.org:3478?transport=udp",
        "turn:turn.example.org:3478?transport=tcp",
        "turns:turn.example.org:443?transport=tcp",
    ]
    assert turn.username == "alice"
    assert turn.credential == SecretRef.parse("keyring:callpath/alice")
    assert profile.paths == ("direct", "turn-udp", "turn-tcp", "turn-tls")
    assert profile.ca_bundle == tmp_path / "certs" / "ca.pem"
    assert profile.timeouts == Timeouts(ice=8.0)
    assert profile.quality == QualityConfig(
        window_s=4.0, concurrency=4, video_width=320, video_height=240
    )
    assert profile.server_for("direct") == (stun, stun.urls[0])
    assert profile.server_for("turn-udp") == (turn, turn.urls[0])
    assert profile.server_for("turn-tcp") == (turn, turn.urls[1])
    assert profile.server_for("turn-tls") == (turn, turn.urls[2])
    assert profile.server_for("masque") is None
    assert [ref.text for ref in profile.required_secrets()] == [
        "${env:CALLPATH_ECHO_TOKEN}",
        "keyring:callpath/alice",
    ]


def test_control_server_section() -> None:
    profile = parse_profile(
        MINIMAL + "control:\n  host: control.example.org\n  tcp_bulk_port: 8445\n  udp_port: 3479\n"
    )
    assert profile.control == ControlServer("control.example.org", 3479, 8445, None)
    assert parse_profile(MINIMAL).control is None


def test_parsing_does_not_resolve_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLPATH_ECHO_TOKEN", raising=False)
    profile = parse_profile(FULL.replace("ca_bundle: ./certs/ca.pem\n", ""))
    assert profile.target.token is not None
    with pytest.raises(ProfileError, match="CALLPATH_ECHO_TOKEN is not set"):
        profile.target.token.resolve()


MINIMAL = "version: 1\nname: n\ntarget: {kind: echo, url: 'http://127.0.0.1:8080'}\n"


def test_minimal_profile_defaults() -> None:
    profile = parse_profile(MINIMAL)
    assert profile.source is None
    assert profile.ice_servers == ()
    assert profile.paths == ("direct",)
    assert profile.server_for("direct") is None  # host candidates only
    assert profile.timeouts == Timeouts()
    assert profile.quality == QualityConfig()
    assert profile.ca_bundle is None
    assert (profile.description, profile.sender) == ("", "")
    assert profile.target.token is None
    assert profile.required_secrets() == ()


@pytest.mark.parametrize(
    ("kind", "urls", "paths"),
    [
        ("echo", ["stun:s.example.org"], ("direct",)),
        ("echo", ["turn:t.example.org"], ("direct", "turn-udp")),
        (
            "echo",
            ["turn:t.example.org?transport=tcp", "turns:t.example.org"],
            ("direct", "turn-tcp", "turn-tls"),
        ),
        ("relay-loopback", ["stun:s.example.org", "turns:t.example.org:443"], ("turn-tls",)),
        (
            "relay-loopback",
            ["turn:t.example.org", "turn:t.example.org?transport=tcp"],
            ("turn-udp", "turn-tcp"),
        ),
    ],
)
def test_default_paths(kind: str, urls: list[str], paths: tuple[str, ...]) -> None:
    target = (
        "{kind: relay-loopback}"
        if kind == "relay-loopback"
        else "{kind: echo, url: 'https://e.example.org'}"
    )
    text = f"version: 1\nname: n\ntarget: {target}\nice_servers:\n  - urls:\n"
    text += "".join(f"      - {url}\n" for url in urls)
    assert parse_profile(text).paths == paths


def test_server_for_takes_the_first_match_across_servers() -> None:
    profile = parse_profile(
        MINIMAL
        + textwrap.dedent(
            """
            ice_servers:
              - urls: turn:first.example.org?transport=tcp
              - urls:
                  - stun:stun.example.org
                  - turn:second.example.org?transport=tcp
                  - turn:second.example.org
                username: bob
                credential: ${env:BOB}
            """
        )
    )
    chosen = profile.server_for("turn-tcp")
    assert chosen is not None and chosen[1].host == "first.example.org"
    assert chosen[0].credential is None
    chosen = profile.server_for("turn-udp")
    assert chosen is not None and chosen[1].host == "second.example.org"
    assert profile.paths == ("direct", "turn-udp", "turn-tcp")
    assert [ref.text for ref in profile.required_secrets()] == ["${env:BOB}"]


def test_janus_and_relay_loopback_targets() -> None:
    janus = parse_profile(
        "version: 1\nname: j\ntarget:\n  kind: janus\n  url: https://janus.example.org/janus\n"
    )
    assert (janus.target.kind, janus.target.url) == (
        TargetKind.JANUS,
        "https://janus.example.org/janus",
    )
    loop = parse_profile(
        "version: 1\nname: l\ntarget: {kind: relay-loopback}\n"
        "ice_servers:\n  - urls: ['turns:r.example.org:443']\n    username: u\n"
        "    credential: ${env:U}\n"
    )
    assert (loop.target.kind, loop.target.url, loop.paths) == (
        TargetKind.RELAY_LOOPBACK,
        None,
        ("turn-tls",),
    )


def test_empty_values_count_as_absent() -> None:
    profile = parse_profile(MINIMAL + "description:\nsender: ~\npaths:\ntimeouts:\n")
    assert (profile.description, profile.sender, profile.paths) == ("", "", ("direct",))


def test_timeouts_and_quality_overrides() -> None:
    profile = parse_profile(
        MINIMAL + "timeouts: {resolve: 1, connect: 2.5, turn_allocate: 3, ice: 0.5, dtls: 6, "
        "media_up: 7, teardown: 10}\n"
        "quality: {window_s: 1.5, concurrency: 2, video_width: 640, video_height: 480, "
        "video_fps: 15, stall_s: 3}\n"
    )
    assert profile.timeouts == Timeouts(
        resolve=1, connect=2.5, turn_allocate=3, ice=0.5, dtls=6, media_up=7, teardown=10
    )
    assert profile.quality == QualityConfig(
        window_s=1.5, concurrency=2, video_width=640, video_height=480, video_fps=15, stall_s=3
    )
    assert isinstance(profile.quality.concurrency, int)


def test_ca_bundle_relative_to_profile_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate = make_server_certificate(tmp_path / "shared")
    folder = tmp_path / "profiles"
    folder.mkdir()
    path = write(folder, MINIMAL + "ca_bundle: ../shared/ca.pem\n")
    monkeypatch.chdir(tmp_path / "shared")  # the working directory must not matter
    profile = load_profile(path)
    assert profile.ca_bundle is not None
    assert profile.ca_bundle.resolve() == certificate.ca_path.resolve()
    # Without a source file, relative paths start from the working directory.
    assert (
        parse_profile(MINIMAL + "ca_bundle: ca.pem\n").ca_bundle == tmp_path / "shared" / "ca.pem"
    )


def test_utf8_bom_and_unicode_names(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes("\ufeff".encode() + (MINIMAL.replace("name: n", "name: Релеи НКО")).encode())
    assert load_profile(path).name == "Релеи НКО"


def test_example_profile_loads() -> None:
    profile = load_profile(REPO / "examples" / "profile.yaml")
    assert profile.target.kind is TargetKind.ECHO
    # The example shows every section: the relay paths, the user's proxies and MASQUE.
    assert profile.paths == (
        "direct",
        "turn-udp",
        "turn-tcp",
        "turn-tls",
        "socks5-udp",
        "socks5-turn",
        "http-turn",
        "masque",
    )
    for path_id in profile.paths[1:4]:
        assert profile.server_for(path_id) is not None
    assert profile.sender


# --- profiles: errors ---------------------------------------------------------------------------

HEAD = "version: 1\nname: n\n"
ECHO = HEAD + "target:\n  kind: echo\n  url: https://echo.example.org\n"  # lines 1-5
TURN_SERVER = (
    "ice_servers:\n"  # line 6
    "  - urls:\n"  # 7
    "      - turn:t.example.org?transport=udp\n"  # 8
    "    username: alice\n"  # 9
    "    credential: ${env:TURN_PASSWORD}\n"  # 10
)

ERRORS = [
    # (id, text, line, message fragment)
    ("empty", "", None, "the profile is empty"),
    ("comments only", "# nothing\n", None, "the profile is empty"),
    ("not a mapping", "- version: 1\n", 1, "a profile is a mapping"),
    (
        "scalar",
        "hello\n",
        1,
        "a profile is a mapping of key: value starting with 'version: 1', not text",
    ),
    (
        "bad yaml",
        "version: 1\nname: n\ntarget: {kind: echo\n",
        4,
        "invalid YAML: expected ',' or '}'",
    ),
    ("bad yaml context line", "version: 1\nname: [x\n", 3, "flow sequence that starts on line 2"),
    ("tab", "version: 1\nname: n\ntarget:\n\tkind: echo\n", 4, "cannot start any token"),
    ("two documents", "version: 1\n---\nname: n\n", 2, "expected a single document"),
    (
        "python tag",
        HEAD + "description: !!python/object:os.system x\n",
        3,
        "YAML tag tag:yaml.org,2002:python/object:os.system is not allowed",
    ),
    ("merge key", HEAD + "<<: {sender: x}\n", 3, "merge keys (<<) are not allowed"),
    ("no version", "name: n\n", 1, "the profile has no 'version'; add 'version: 1'"),
    (
        "version 2",
        "name: n\nversion: 2\n",
        2,
        "profile version 2 is not supported by this CallPath, which reads version 1",
    ),
    ("version quoted", "version: '1'\n", 1, "version must be the number 1 (without quotes)"),
    ("version list", "version: [1]\n", 1, "version must be the number 1"),
    (
        "unknown top key",
        HEAD + "timeout: {ice: 3}\n",
        3,
        "unknown top-level key 'timeout' (did you mean 'timeouts'?); expected one of: ca_bundle, "
        "control, description",
    ),
    ("duplicate key", HEAD + "name: m\n", 3, "top-level key 'name' appears twice; keep only one"),
    (
        "duplicate nested key",
        ECHO + "  kind: janus\n",
        6,
        "key 'kind' appears twice in 'target'; keep only one",
    ),
    (
        "no name",
        "version: 1\ntarget: {kind: relay-loopback}\n",
        1,
        "the profile needs 'name'; add it",
    ),
    ("empty name", "version: 1\nname: ''\n", 2, "name is empty; give it a value"),
    ("name list", "version: 1\nname: [a]\n", 2, "name must be text, not a list"),
    ("no target", HEAD, 1, "the profile needs 'target'; add it"),
    ("target text", HEAD + "target: echo\n", 3, "target must be a mapping of key: value, not text"),
    ("no kind", HEAD + "target:\n  url: https://e.example.org\n", 4, "target needs 'kind'"),
    (
        "bad kind",
        HEAD + "target:\n  kind: jitsi\n",
        4,
        "unknown target kind 'jitsi'; expected one of: echo, janus, relay-loopback",
    ),
    (
        "kind with a line break",  # found by tests/test_fuzz_inputs.py: messages stay one line
        HEAD + 'target:\n  kind: "0\\n0"\n',
        4,
        "unknown target kind '0?0'; expected one of: echo, janus, relay-loopback",
    ),
    (
        "unknown target key",
        HEAD + "target:\n  kind: echo\n  uri: https://e.example.org\n",
        5,
        "unknown key 'uri' in 'target' (did you mean 'url'?); expected one of: kind, token, url",
    ),
    ("echo without url", HEAD + "target:\n  kind: echo\n", 4, "target needs 'url'; add it"),
    ("janus without url", HEAD + "target: {kind: janus}\n", 3, "target needs 'url'"),
    (
        "url ftp",
        HEAD + "target:\n  kind: echo\n  url: ftp://e.example.org\n",
        5,
        "target.url 'ftp://e.example.org' is not an http:// or https:// URL with a host",
    ),
    (
        "url no scheme",
        HEAD + "target:\n  kind: janus\n  url: e.example.org:8088\n",
        5,
        "is not an http:// or https:// URL",
    ),
    (
        "url bad port",
        HEAD + "target:\n  kind: janus\n  url: https://e.example.org:99999\n",
        5,
        "is not an http:// or https:// URL",
    ),
    (
        "url with password",
        HEAD + "target:\n  kind: echo\n  url: https://u:hunter2@e.example.org\n",
        5,
        "target.url: secrets are never written in a profile",
    ),
    (
        "relay-loopback url",
        HEAD + "target:\n  kind: relay-loopback\n  url: https://e.example.org\n",
        5,
        "takes no url; remove 'url'",
    ),
    (
        "janus token",
        HEAD + "target:\n  kind: janus\n  url: https://j.example.org\n  token: ${env:T}\n",
        6,
        "target.token is only used by kind echo; remove it for kind janus",
    ),
    (
        "literal token",
        ECHO + "  token: hunter2\n",
        6,
        "target.token: secrets are never written in a profile; use ${env:NAME} or "
        "keyring:SERVICE/USER",
    ),
    (
        "bad env token",
        ECHO + "  token: ${env:my-token}\n",
        6,
        "malformed reference '${env:my-token}'",
    ),
    (
        "ice_servers mapping",
        ECHO + "ice_servers:\n  urls: [stun:s.example.org]\n",
        7,
        "ice_servers must be a list of ICE servers",
    ),
    (
        "ice server text",
        ECHO + "ice_servers:\n  - stun:s.example.org\n",
        7,
        "ice_servers[1] must be a mapping of key: value, not text",
    ),
    (
        "ice server unknown key",
        ECHO + "ice_servers:\n  - urls: [stun:s.example.org]\n    password: x\n",
        8,
        "unknown key 'password' in 'ice_servers[1]'; expected one of: credential, "
        "sni_alternatives, urls, username",
    ),
    ("no urls", ECHO + "ice_servers:\n  - username: u\n", 7, "ice_servers[1] needs 'urls'"),
    (
        "urls mapping",
        ECHO + "ice_servers:\n  - urls: {stun: s.example.org}\n",
        7,
        "ice_servers[1].urls: expected a list of URIs, not a mapping",
    ),
    (
        "urls empty",
        ECHO + "ice_servers:\n  - urls: []\n",
        7,
        "expected a list of URIs, not an empty list",
    ),
    (
        "urls nested",
        ECHO + "ice_servers:\n  - urls:\n      - [stun:s.example.org]\n",
        8,
        "expected a list of URIs; this item is a list",
    ),
    (
        "bad uri line",
        ECHO
        + "ice_servers:\n  - urls:\n      - stun:s.example.org\n      - turn:t.example.org:0\n",
        9,
        "ice_servers[1].urls: bad ICE server URI 'turn:t.example.org:0': port '0'",
    ),
    (
        "second server",
        ECHO
        + "ice_servers:\n  - urls: [stun:s.example.org]\n"
        + "  - urls: ['turns:t.example.org?transport=udp']\n",
        8,
        "ice_servers[2].urls: bad ICE server URI",
    ),
    (
        "unquoted ? in a [list]",
        ECHO + "ice_servers:\n  - urls: [turn:t.example.org?transport=tcp]\n",
        7,
        "quote values that contain ': ', ' #', '?' or '[' inside a [list]",
    ),
    (
        "username only",
        ECHO + "ice_servers:\n  - urls: [turn:t.example.org]\n    username: u\n",
        7,
        "has a username without a credential",
    ),
    (
        "credential only",
        ECHO + "ice_servers:\n  - urls: [turn:t.example.org]\n    credential: ${env:P}\n",
        7,
        "has a username without a credential",
    ),
    (
        "literal credential",
        ECHO
        + "ice_servers:\n  - urls: [turn:t.example.org]\n"
        + "    username: u\n    credential: hunter2\n",
        9,
        "ice_servers[1].credential: secrets are never written in a profile",
    ),
    (
        "credential on stun",
        ECHO
        + "ice_servers:\n  - urls: [stun:s.example.org]\n"
        + "    username: u\n    credential: ${env:P}\n",
        7,
        "only stun: URIs",
    ),
    (
        "paths text",
        ECHO + "paths: {direct: true}\n",
        6,
        "paths: expected a list of path ids, not a mapping",
    ),
    ("paths empty", ECHO + "paths: []\n", 6, "expected a list of path ids, not an empty list"),
    (
        "unknown path",
        ECHO + "paths:\n  - direct\n  - turn-quic\n",
        8,
        "unknown path 'turn-quic'; expected one of: direct, turn-udp, turn-tcp, turn-tls, "
        "socks5-udp",
    ),
    (
        "masque path without a masque section",
        ECHO + "paths: [direct, masque]\n",
        6,
        "path 'masque' needs a masque: section with the proxy's https:// URL",
    ),
    (
        "proxy path without a proxy",
        ECHO + "paths: [socks5-udp]\n",
        6,
        "path 'socks5-udp' needs a socks5:// proxy in proxies",
    ),
    (
        "proxy password in the URL",
        ECHO + "proxies:\n  - url: socks5://u:pw@127.0.0.1:1080\n",
        7,
        "proxies[1].url:",
    ),
    (
        "proxy password without a user",
        ECHO + "proxies:\n  - url: socks5://127.0.0.1:1080\n    password: ${env:P}\n",
        8,
        "has a password but its URL names no user",
    ),
    (
        "masque over plain http",
        ECHO + "masque:\n  url: http://masque.example.org:443\n",
        7,
        "masque.url must be an https:// URL",
    ),
    (
        "control without its bulk port",
        ECHO + "control:\n  host: control.example.org\n  udp_port: 3479\n",
        7,
        "control needs 'tcp_bulk_port'",
    ),
    (
        "control port out of range",
        ECHO + "control:\n  host: c.example.org\n  tcp_bulk_port: 70000\n",
        8,
        "control.tcp_bulk_port must be a port from 1 to 65535; got 70000",
    ),
    (
        "control port as text",
        ECHO + "control:\n  host: c.example.org\n  tcp_bulk_port: '8445'\n",
        8,
        "control.tcp_bulk_port must be a positive whole number",
    ),
    (
        "control without a host",
        ECHO + "control:\n  tcp_bulk_port: 8445\n",
        7,
        "control needs 'host'",
    ),
    (
        "http-turn without a TCP relay",
        ECHO + "proxies:\n  - url: http://127.0.0.1:3128\npaths: [http-turn]\n",
        8,
        "turns: or turn:...?transport=tcp",
    ),
    (
        "duplicate path",
        ECHO + "paths:\n  - direct\n  - direct\n",
        8,
        "path 'direct' is listed twice",
    ),
    (
        "missing turn-udp",
        ECHO + "paths: [direct, turn-udp]\n",
        6,
        "path 'turn-udp' needs a turn:HOST:PORT?transport=udp URI in ice_servers; add one or "
        "remove 'turn-udp' from paths",
    ),
    (
        "missing turn-tcp",
        ECHO + TURN_SERVER + "paths:\n  - turn-udp\n  - turn-tcp\n",
        13,
        "path 'turn-tcp' needs a turn:HOST:PORT?transport=tcp URI",
    ),
    (
        "missing turn-tls",
        ECHO + TURN_SERVER + "paths: [turn-tls]\n",
        11,
        "path 'turn-tls' needs a turns:HOST:PORT URI",
    ),
    (
        "loopback direct",
        HEAD
        + "target: {kind: relay-loopback}\n"
        + TURN_SERVER.replace("ice_servers", "ice_servers", 1)
        + "paths: [direct, turn-udp]\n",
        9,
        "path 'direct' cannot be used with target kind relay-loopback",
    ),
    (
        "loopback no relay",
        HEAD + "target:\n  kind: relay-loopback\nice_servers:\n  - urls: [stun:s.example.org]\n",
        4,
        "target kind relay-loopback needs a turn: or turns: URI in ice_servers",
    ),
    (
        "timeouts unknown",
        ECHO + "timeouts:\n  timeout: 3\n",
        7,
        "unknown key 'timeout' in 'timeouts'; expected one of: connect, dtls, ice, media_up, "
        "resolve, teardown, turn_allocate",
    ),
    (
        "timeouts list",
        ECHO + "timeouts: [3]\n",
        6,
        "timeouts must be a mapping of key: value, not a list",
    ),
    (
        "timeout zero",
        ECHO + "timeouts: {ice: 0}\n",
        6,
        "timeouts.ice must be a positive number, e.g. 4; got '0'",
    ),
    (
        "timeout negative",
        ECHO + "timeouts:\n  dtls: -2\n",
        7,
        "timeouts.dtls must be a positive number",
    ),
    (
        "timeout text",
        ECHO + "timeouts:\n  dtls: 5s\n",
        7,
        "timeouts.dtls must be a positive number, e.g. 4; got '5s'",
    ),
    (
        "timeout bool",
        ECHO + "timeouts:\n  dtls: yes\n",
        7,
        "timeouts.dtls must be a positive number",
    ),
    (
        "timeout inf",
        ECHO + "timeouts:\n  dtls: .inf\n",
        7,
        "timeouts.dtls must be a positive number",
    ),
    (
        "timeout nan",
        ECHO + "timeouts:\n  dtls: .nan\n",
        7,
        "timeouts.dtls must be a positive number",
    ),
    (
        "quality whole",
        ECHO + "quality:\n  concurrency: 2.5\n",
        7,
        "quality.concurrency must be a positive whole number",
    ),
    ("quality unknown", ECHO + "quality:\n  width: 640\n", 7, "unknown key 'width' in 'quality'"),
    (
        "ca_bundle missing",
        ECHO + "ca_bundle: ./nowhere.pem\n",
        6,
        "nowhere.pem does not exist; relative paths start from the profile's folder",
    ),
    (
        "ca_bundle not pem",
        ECHO + "ca_bundle: profile.yaml\n",
        6,
        "holds no PEM certificate that can be loaded",
    ),
    ("description list", ECHO + "description: [a, b]\n", 6, "description must be text, not a list"),
    ("sender mapping", ECHO + "sender:\n  name: x\n", 7, "sender must be text, not a mapping"),
]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_profile_errors(tmp_path: Path, text: str, line: int | None, fragment: str) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    error = caught.value
    assert error.file == str(path)
    assert error.line == line, error
    assert fragment in error.message, error.message
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(error) == prefix + error.message
    assert "hunter2" not in str(error)


def test_profile_error_without_file() -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(HEAD + "bogus: 1\n")
    assert caught.value.file is None
    assert str(caught.value).startswith("3: unknown top-level key 'bogus'")
    assert str(ProfileError("plain")) == "plain"


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert (caught.value.file, caught.value.line) == (str(path), None)
    assert str(caught.value) == f"{path}: file not found; check the path"


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="folder, not a file") as caught:
        load_profile(tmp_path)
    assert caught.value.line is None


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert (caught.value.file, caught.value.line) == (str(path), None)
    assert "not UTF-8 text; save it as UTF-8" in caught.value.message


def test_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (1024 * 1024 + 10))
    with pytest.raises(ProfileError, match="larger than 1 MB"):
        load_profile(path)


def test_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL)

    def refuse(name: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(name))

    # Root may read files whatever their mode, so refuse the open itself.
    monkeypatch.setattr(yaml_input.os, "open", refuse)
    with pytest.raises(ProfileError, match="permission denied") as caught:
        load_profile(path)
    assert (caught.value.file, caught.value.line) == (str(path), None)


def test_resolution_error_points_at_the_profile_line(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    path = write(
        tmp_path, ECHO + TURN_SERVER.replace("${env:TURN_PASSWORD}", "keyring:callpath/alice")
    )
    profile = load_profile(path)
    (reference,) = profile.required_secrets()
    with pytest.raises(ProfileError) as caught:
        reference.resolve()
    assert (caught.value.file, caught.value.line) == (str(path), 10)
    memory_keyring.passwords[("callpath", "alice")] = "pw"
    assert reference.resolve() == "pw"


def test_errors_are_translated() -> None:
    set_language("ru")
    try:
        with pytest.raises(ProfileError) as caught:
            parse_profile(
                HEAD + "target:\n  kind: echo\n  url: https://e.example.org\n  token: x\n"
            )
    finally:
        set_language("en")
    assert "секреты" in caught.value.message.lower()
    assert "${env:NAME}" in caught.value.message


def test_every_message_has_a_russian_translation() -> None:
    from babel.messages.extract import extract_from_file
    from babel.messages.pofile import read_po

    with (REPO / "assets/locale/ru/LC_MESSAGES/callpath.po").open("rb") as handle:
        translated = {message.id for message in read_po(handle, locale="ru") if message.string}
    for module in ("core/profile/document.py", "core/profile/secretstore.py", "core/cli/secret.py"):
        for _line, message, _comments, _context in extract_from_file(
            "python", str(REPO / module), keywords={"_": None}
        ):
            assert message in translated, f"{module}: no Russian for {message!r}"
