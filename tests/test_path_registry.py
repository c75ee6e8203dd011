"""Paths as specs (callpath.core.paths): every path has a kind that plans it from a profile and
says what its selected pair must prove; the planner asks the kinds instead of branching."""

from __future__ import annotations

from pathlib import Path

import pytest

from callpath.core.model.results import PathId, SelectedPair
from callpath.core.paths.base import PairProof
from callpath.core.paths.registry import PATHS, path_ids, path_kind
from callpath.core.profile.document import parse_profile
from callpath.core.run.plan import plan_run

PROFILE = """\
version: 1
name: every path
target: {kind: echo, url: 'https://echo.example.org:8443/'}
ice_servers:
  - urls: ['stun:stun.example.org:3478']
  - urls: ['turn:relay.example.org:3478?transport=udp', 'turn:relay.example.org:3478?transport=tcp',
           'turns:relay.example.org:443']
    username: alice
    credential: ${env:CALLPATH_TEST_RELAY_PASSWORD}
proxies:
  - url: socks5://127.0.0.1:1080
    stun: stun:stun.example.org:3478
  - url: http://127.0.0.1:8888
masque:
  url: https://masque.example.org:443
  token: ${env:CALLPATH_TEST_MASQUE_TOKEN}
paths: [direct, turn-udp, turn-tcp, turn-tls, socks5-udp, socks5-turn, http-turn, masque]
"""


def pair(local: str = "host", remote: str = "host", relay: str | None = None) -> SelectedPair:
    return SelectedPair(local, "10.0.0.1", 5000, remote, "10.0.0.2", 6000, relay_transport=relay)


def test_every_path_id_has_a_spec_with_a_kind() -> None:
    assert set(PATHS) == set(PathId)
    assert path_ids() == tuple(PathId)
    for path_id in PathId:
        assert path_kind(path_id) is PATHS[path_id].kind
    with pytest.raises(KeyError):
        path_kind("carrier-pigeon")


def test_the_planner_asks_each_paths_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLPATH_TEST_RELAY_PASSWORD", "relay-secret")
    monkeypatch.setenv("CALLPATH_TEST_MASQUE_TOKEN", "masque-token")
    plans = {p.path_id: p for p in plan_run(parse_profile(PROFILE, Path("p.yaml"))).plans}
    assert list(plans) == [p.value for p in PathId]
    assert (plans["direct"].host, plans["direct"].port) == ("stun.example.org", 3478)
    turn_udp, turn_tls = plans["turn-udp"], plans["turn-tls"]
    assert (turn_udp.host, turn_udp.port, turn_udp.username) == ("relay.example.org", 3478, "alice")
    assert turn_udp.password == "relay-secret" and turn_udp.proxy is None
    assert (turn_tls.port, turn_tls.server_uri) == (
        443,
        "turns:relay.example.org:443?transport=tcp",
    )
    socks_udp = plans["socks5-udp"]
    assert socks_udp.host is None and socks_udp.proxy is not None
    assert socks_udp.proxy.stun == ("stun.example.org", 3478)
    # TURN through a proxy takes the TLS relay (a proxy carries TCP only).
    for path_id, scheme in (("socks5-turn", "socks5"), ("http-turn", "http")):
        proxied = plans[path_id]
        assert proxied.proxy is not None and proxied.proxy.url.scheme.startswith(scheme)
        assert (proxied.turn_transport, proxied.port, proxied.password) == (
            "tls",
            443,
            "relay-secret",
        )
    masque = plans["masque"]
    assert masque.masque is not None and masque.masque.token == "masque-token"
    assert masque.masque.first_target == ("echo.example.org", 8443)
    # What each selected pair must prove, from the same plans.
    proofs = {path_id: path_kind(path_id).proof(plan) for path_id, plan in plans.items()}
    assert proofs == {
        "direct": PairProof(None),
        "turn-udp": PairProof("udp"),
        "turn-tcp": PairProof("tcp"),
        "turn-tls": PairProof("tls"),
        "socks5-udp": PairProof("socks5-udp"),
        "socks5-turn": PairProof("tls"),
        "http-turn": PairProof("tls"),
        "masque": PairProof("masque"),
    }
    # A path through a TURN allocation is proven by a relay candidate over a TURN transport.
    for path_id, proof in proofs.items():
        if PATHS[PathId(path_id)].relay:
            assert proof.relay_transport in ("udp", "tcp", "tls"), path_id


def test_a_pair_proves_its_path_only_over_the_transport_under_test() -> None:
    assert PairProof(None).problem(pair()) is None
    assert PairProof(None).problem(pair(remote="relay")) == "call went through a relay"
    assert PairProof(None).problem(None) == "no nominated candidate pair"
    assert PairProof("tls").problem(pair("relay", relay="tls")) is None
    assert PairProof("tls").problem(pair("srflx")) == "local candidate is srflx, not relay"
    assert PairProof("tls").problem(pair("relay", relay="udp")) == "relay runs over udp, not tls"
    assert PairProof("masque").problem(pair("relay", relay="masque")) is None
