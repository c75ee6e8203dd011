"""The lab's userspace TURN relay: the pure allocation state, then the real server on loopback
driven by aioice's TURN client, a raw STUN client (indication path) and an aiortc call."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from callpath.core.lab.turn_allocations import (
    Address,
    ClientKey,
    ClientTransport,
    CloseRelay,
    SendToClient,
    SendToPeer,
    TurnAllocations,
    TurnConfig,
    long_term_key,
)
from callpath.core.lab.turn_server import LabTurnServer, LabTurnServerLimits
from callpath.core.paths.relay import StreamCounters, TurnEndpoint, allocate, connect_stream

REALM = "lab.test"
USERS = {"alice": "wonderland", "bob": "builder"}
CONFIG = TurnConfig(users=USERS, realm=REALM)
UDP_CLIENT = ClientKey(ClientTransport.UDP, ("127.0.0.1", 40000))
TCP_CLIENT = ClientKey(ClientTransport.TCP, ("127.0.0.1", 40001))
PEER = ("127.0.0.2", 7000)
OTHER_PEER = ("127.0.0.3", 7000)
UDP_TRANSPORT = 17 << 24
TCP_TRANSPORT = 6 << 24
IO_TIMEOUT = 5.0


# -- pure core ------------------------------------------------------------------------------------


class Harness:
    """The pure core with a fake relay allocator, deterministic nonces and a signing client."""

    def __init__(self, config: TurnConfig = CONFIG) -> None:
        self.relays: list[Address] = []
        self.refuse_relays = False
        self.nonces_issued = 0
        self.core = TurnAllocations(config, self._allocate_relay, self._next_nonce)
        self.nonce: dict[ClientKey, bytes] = {}

    def _allocate_relay(self, client: ClientKey) -> Address | None:
        if self.refuse_relays:
            return None
        relay = ("127.0.0.1", 50000 + len(self.relays))
        self.relays.append(relay)
        return relay

    def _next_nonce(self) -> bytes:
        self.nonces_issued += 1
        return f"nonce-{self.nonces_issued}".encode()

    def exchange(
        self, now: float, client: ClientKey, data: bytes
    ) -> tuple[stun.Message, list[Any]]:
        """Sends one request; returns the parsed answer and the other actions."""
        actions = self.core.handle_client_message(now, client, data)
        answers = [a for a in actions if isinstance(a, SendToClient)]
        assert len(answers) == 1, actions
        assert answers[0].client == client
        return stun.parse_message(answers[0].data), [a for a in actions if a not in answers]

    def signed(
        self,
        client: ClientKey,
        message: stun.Message,
        user: str = "alice",
        password: str | None = None,
        realm: str = REALM,
    ) -> bytes:
        message.attributes["USERNAME"] = user
        message.attributes["REALM"] = realm
        message.attributes["NONCE"] = self.nonce[client]
        key = long_term_key(user, realm, password if password is not None else USERS[user])
        message.add_message_integrity(key)
        return bytes(message)

    def challenge(self, now: float, client: ClientKey) -> stun.Message:
        answer, _ = self.exchange(now, client, bytes(allocate_request()))
        self.nonce[client] = answer.attributes["NONCE"]
        return answer

    def allocate(self, now: float, client: ClientKey = UDP_CLIENT, user: str = "alice") -> Address:
        self.challenge(now, client)
        answer, _ = self.exchange(now, client, self.signed(client, allocate_request(), user))
        assert answer.message_class == stun.Class.RESPONSE, answer
        relay: Address = answer.attributes["XOR-RELAYED-ADDRESS"]
        return relay

    def request(
        self, now: float, client: ClientKey, message: stun.Message, user: str = "alice"
    ) -> stun.Message:
        answer, _ = self.exchange(now, client, self.signed(client, message, user))
        return answer

    def create_permission(self, now: float, peer: Address, client: ClientKey = UDP_CLIENT) -> int:
        message = stun.Message(stun.Method.CREATE_PERMISSION, stun.Class.REQUEST)
        message.attributes["XOR-PEER-ADDRESS"] = peer
        return outcome(self.request(now, client, message))

    def channel_bind(
        self, now: float, number: int, peer: Address, client: ClientKey = UDP_CLIENT
    ) -> int:
        message = stun.Message(stun.Method.CHANNEL_BIND, stun.Class.REQUEST)
        message.attributes["CHANNEL-NUMBER"] = number
        message.attributes["XOR-PEER-ADDRESS"] = peer
        return outcome(self.request(now, client, message))

    def refresh(self, now: float, lifetime: int, client: ClientKey = UDP_CLIENT) -> stun.Message:
        message = stun.Message(stun.Method.REFRESH, stun.Class.REQUEST)
        message.attributes["LIFETIME"] = lifetime
        return self.request(now, client, message)


def allocate_request(transport: int = UDP_TRANSPORT, lifetime: int | None = None) -> stun.Message:
    message = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
    message.attributes["REQUESTED-TRANSPORT"] = transport
    if lifetime is not None:
        message.attributes["LIFETIME"] = lifetime
    return message


def outcome(answer: stun.Message) -> int:
    """200 for a success response, else the error code."""
    if answer.message_class == stun.Class.RESPONSE:
        return 200
    code = answer.error_code
    assert code is not None
    return code


def send_indication(peer: Address, data: bytes) -> bytes:
    message = stun.Message(stun.Method.SEND, stun.Class.INDICATION)
    message.attributes["XOR-PEER-ADDRESS"] = peer
    message.attributes["DATA"] = data
    return bytes(message)


def with_raw_attributes(message: stun.Message, raw: list[tuple[int, bytes]], key: bytes) -> bytes:
    """Appends attributes aioice cannot encode, then MESSAGE-INTEGRITY computed by hand."""
    data = bytes(message)
    for kind, value in raw:
        data += (
            struct.pack("!HH", kind, len(value)) + value + bytes(stun.padding_length(len(value)))
        )
    data = stun.set_body_length(data, len(data) - stun.HEADER_LENGTH)
    integrity = stun.message_integrity(data, key)
    data += struct.pack("!HH", 0x0008, len(integrity)) + integrity
    return stun.set_body_length(data, len(data) - stun.HEADER_LENGTH)


def test_binding_request_gets_the_client_address() -> None:
    harness = Harness()
    answer, _ = harness.exchange(
        0, UDP_CLIENT, bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))
    )
    assert answer.message_class == stun.Class.RESPONSE
    assert answer.attributes["XOR-MAPPED-ADDRESS"] == UDP_CLIENT.address


def test_allocate_without_credentials_is_challenged() -> None:
    harness = Harness()
    answer = harness.challenge(0, UDP_CLIENT)
    assert outcome(answer) == 401
    assert answer.attributes["REALM"] == REALM
    assert answer.attributes["NONCE"] == b"nonce-1"
    assert "MESSAGE-INTEGRITY" not in answer.attributes
    assert harness.core.stats.allocations == 0


def test_allocate_with_good_credentials() -> None:
    harness = Harness()
    harness.challenge(0, UDP_CLIENT)
    request = allocate_request(lifetime=1200)
    answer, _ = harness.exchange(0, UDP_CLIENT, harness.signed(UDP_CLIENT, request))
    assert answer.message_class == stun.Class.RESPONSE
    assert answer.transaction_id == request.transaction_id
    assert answer.attributes["XOR-RELAYED-ADDRESS"] == harness.relays[0]
    assert answer.attributes["XOR-MAPPED-ADDRESS"] == UDP_CLIENT.address
    assert answer.attributes["LIFETIME"] == 1200
    assert answer.attributes["SOFTWARE"]
    assert answer.check_message_integrity(long_term_key("alice", REALM, USERS["alice"]))
    assert harness.core.stats.allocations == 1


@pytest.mark.parametrize(
    ("user", "password", "realm"),
    [("alice", "wrong", REALM), ("mallory", "x", REALM), ("alice", USERS["alice"], "other.realm")],
)
def test_bad_credentials_are_challenged_again(user: str, password: str, realm: str) -> None:
    harness = Harness()
    harness.challenge(0, UDP_CLIENT)
    message = allocate_request()
    message.attributes.update(USERNAME=user, REALM=realm, NONCE=harness.nonce[UDP_CLIENT])
    message.add_message_integrity(long_term_key(user, realm, password))
    answer, _ = harness.exchange(0, UDP_CLIENT, bytes(message))
    assert outcome(answer) == 401
    assert answer.attributes["NONCE"] == b"nonce-2"
    assert harness.relays == []


def test_integrity_without_username_is_a_bad_request() -> None:
    harness = Harness()
    harness.challenge(0, UDP_CLIENT)
    message = allocate_request()
    message.add_message_integrity(long_term_key("alice", REALM, USERS["alice"]))
    answer, _ = harness.exchange(0, UDP_CLIENT, bytes(message))
    assert outcome(answer) == 400


def test_stale_nonce_gets_438_and_a_fresh_nonce_works() -> None:
    config = replace(CONFIG, nonce_lifetime_s=100, default_lifetime_s=600)
    harness = Harness(config)
    harness.allocate(0)
    assert outcome(harness.refresh(99, 600)) == 200
    stale = harness.refresh(100, 600)
    assert outcome(stale) == 438
    assert stale.attributes["REALM"] == REALM
    harness.nonce[UDP_CLIENT] = stale.attributes["NONCE"]
    assert outcome(harness.refresh(101, 600)) == 200
    # A nonce the server never issued is stale too.
    harness.nonce[UDP_CLIENT] = b"forged"
    assert outcome(harness.refresh(102, 600)) == 438


def test_outstanding_nonces_are_bounded() -> None:
    harness = Harness(replace(CONFIG, nonce_lifetime_s=10, max_outstanding_nonces=3))
    for now in range(5):
        harness.challenge(now, UDP_CLIENT)
    assert harness.nonce[UDP_CLIENT] == b"nonce-5"
    harness.nonce[UDP_CLIENT] = b"nonce-1"  # evicted: only three are kept
    answer, _ = harness.exchange(5, UDP_CLIENT, harness.signed(UDP_CLIENT, allocate_request()))
    assert outcome(answer) == 438


def test_retransmitted_allocate_gets_the_same_answer_and_a_new_one_437() -> None:
    harness = Harness()
    harness.challenge(0, UDP_CLIENT)
    first = harness.signed(UDP_CLIENT, allocate_request())
    actions = harness.core.handle_client_message(0, UDP_CLIENT, first)
    again = harness.core.handle_client_message(1, UDP_CLIENT, first)
    assert actions == again
    answer, _ = harness.exchange(2, UDP_CLIENT, harness.signed(UDP_CLIENT, allocate_request()))
    assert outcome(answer) == 437
    # Errors to authenticated requests are signed, or aioice ignores them.
    assert answer.check_message_integrity(long_term_key("alice", REALM, USERS["alice"]))
    assert len(harness.relays) == 1


def test_allocate_refusals() -> None:
    harness = Harness()
    harness.challenge(0, UDP_CLIENT)
    tcp = harness.signed(UDP_CLIENT, allocate_request(TCP_TRANSPORT))
    assert outcome(harness.exchange(0, UDP_CLIENT, tcp)[0]) == 442
    missing = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
    assert outcome(harness.exchange(0, UDP_CLIENT, harness.signed(UDP_CLIENT, missing))[0]) == 400
    ipv6 = allocate_request()
    ipv6.attributes.update(USERNAME="alice", REALM=REALM, NONCE=harness.nonce[UDP_CLIENT])
    key = long_term_key("alice", REALM, USERS["alice"])
    data = with_raw_attributes(ipv6, [(0x0017, b"\x02\x00\x00\x00")], key)
    assert outcome(harness.exchange(0, UDP_CLIENT, data)[0]) == 440
    harness.refuse_relays = True
    refused = harness.signed(UDP_CLIENT, allocate_request())
    assert outcome(harness.exchange(0, UDP_CLIENT, refused)[0]) == 508
    assert harness.core.stats.allocations == 0


def test_allocation_limits_per_user_and_in_total() -> None:
    harness = Harness(replace(CONFIG, max_allocations_per_user=1, max_allocations_total=2))
    clients = [ClientKey(ClientTransport.UDP, ("127.0.0.1", 41000 + i)) for i in range(3)]
    harness.allocate(0, clients[0], "alice")
    harness.challenge(0, clients[1])
    second = harness.signed(clients[1], allocate_request(), "alice")
    assert outcome(harness.exchange(0, clients[1], second)[0]) == 486
    harness.allocate(0, clients[1], "bob")
    harness.challenge(0, clients[2])
    third = harness.signed(clients[2], allocate_request(), "bob")
    assert outcome(harness.exchange(0, clients[2], third)[0]) == 508
    assert harness.core.stats.allocations == 2


def test_refresh_extends_and_lifetime_zero_deletes() -> None:
    config = replace(CONFIG, default_lifetime_s=600, max_lifetime_s=3600, nonce_lifetime_s=10**6)
    harness = Harness(config)
    relay = harness.allocate(0)
    answer = harness.refresh(500, 99999)
    assert answer.attributes["LIFETIME"] == 3600
    assert harness.core.expire(4099) == []
    answer = harness.refresh(4099, 10)
    assert answer.attributes["LIFETIME"] == 600  # below the default: the default is granted
    assert harness.core.expire(4698) == []
    deleted, actions = harness.exchange(
        4698,
        UDP_CLIENT,
        harness.signed(
            UDP_CLIENT,
            stun.Message(stun.Method.REFRESH, stun.Class.REQUEST, attributes={"LIFETIME": 0}),
        ),
    )
    assert outcome(deleted) == 200
    assert deleted.attributes["LIFETIME"] == 0
    assert actions == [CloseRelay(relay)]
    assert outcome(harness.refresh(4699, 600)) == 437


def test_requests_need_the_allocation_owner() -> None:
    harness = Harness()
    harness.allocate(0)
    message = stun.Message(stun.Method.REFRESH, stun.Class.REQUEST)
    assert outcome(harness.request(1, UDP_CLIENT, message, user="bob")) == 441
    permission = stun.Message(stun.Method.CREATE_PERMISSION, stun.Class.REQUEST)
    permission.attributes["XOR-PEER-ADDRESS"] = PEER
    assert outcome(harness.request(1, UDP_CLIENT, permission, user="bob")) == 441
    assert outcome(harness.refresh(2, 600)) == 200


def test_requests_without_allocation_get_437() -> None:
    harness = Harness()
    harness.challenge(0, TCP_CLIENT)
    message = stun.Message(stun.Method.CREATE_PERMISSION, stun.Class.REQUEST)
    message.attributes["XOR-PEER-ADDRESS"] = PEER
    assert outcome(harness.request(0, TCP_CLIENT, message)) == 437


def test_allocation_expires_with_its_lifetime() -> None:
    harness = Harness()
    relay = harness.allocate(0)
    assert harness.create_permission(0, PEER) == 200
    assert harness.create_permission(400, PEER) == 200
    assert harness.core.expire(599.9) == []
    assert harness.core.handle_peer_datagram(599.9, relay, PEER, b"x")
    assert harness.core.handle_peer_datagram(600, relay, PEER, b"x") == []
    assert harness.core.expire(600) == [CloseRelay(relay)]
    assert harness.core.stats.allocations == 0


def test_permission_gates_both_directions_and_expires() -> None:
    harness = Harness()
    relay = harness.allocate(0)
    core = harness.core
    assert core.handle_client_message(1, UDP_CLIENT, send_indication(PEER, b"early")) == []
    assert core.handle_peer_datagram(1, relay, PEER, b"early") == []
    assert harness.create_permission(10, PEER) == 200

    assert core.handle_client_message(11, UDP_CLIENT, send_indication(PEER, b"hi")) == [
        SendToPeer(relay, PEER, b"hi")
    ]
    other_port = (PEER[0], 9999)  # permissions are per IP address, any port
    [delivered] = core.handle_peer_datagram(12, relay, other_port, b"back")
    assert isinstance(delivered, SendToClient)
    indication = stun.parse_message(delivered.data)
    assert indication.message_method == stun.Method.DATA
    assert indication.message_class == stun.Class.INDICATION
    assert indication.attributes["XOR-PEER-ADDRESS"] == other_port
    assert indication.attributes["DATA"] == b"back"
    assert core.handle_peer_datagram(12, relay, OTHER_PEER, b"nope") == []

    assert core.handle_peer_datagram(309.9, relay, PEER, b"x")
    assert core.handle_peer_datagram(310, relay, PEER, b"x") == []
    assert core.handle_client_message(310, UDP_CLIENT, send_indication(PEER, b"x")) == []
    core.expire(310)
    assert core.stats.permissions == 0
    assert core.stats.bytes_to_peers == 2
    assert core.stats.bytes_to_clients == 4 + 1
    assert core.stats.datagrams_dropped == 5


def test_one_create_permission_may_name_several_peers() -> None:
    harness = Harness()
    relay = harness.allocate(0)
    message = stun.Message(stun.Method.CREATE_PERMISSION, stun.Class.REQUEST)
    message.attributes.update(USERNAME="alice", REALM=REALM, NONCE=harness.nonce[UDP_CLIENT])
    raw = [
        (0x0012, stun.pack_xor_address(peer, message.transaction_id)) for peer in (PEER, OTHER_PEER)
    ]
    data = with_raw_attributes(message, raw, long_term_key("alice", REALM, USERS["alice"]))
    assert outcome(harness.exchange(0, UDP_CLIENT, data)[0]) == 200
    assert harness.core.handle_peer_datagram(1, relay, PEER, b"a")
    assert harness.core.handle_peer_datagram(1, relay, OTHER_PEER, b"b")


def test_channel_bind_and_channel_data_both_ways() -> None:
    harness = Harness()
    relay = harness.allocate(0)
    core = harness.core
    assert harness.channel_bind(0, 0x4001, PEER) == 200
    assert core.handle_client_message(1, UDP_CLIENT, struct.pack("!HH", 0x4001, 3) + b"abc") == [
        SendToPeer(relay, PEER, b"abc")
    ]
    # UDP ChannelData may carry padding after the payload.
    padded = struct.pack("!HH", 0x4001, 3) + b"abc\x00"
    assert core.handle_client_message(1, UDP_CLIENT, padded) == [SendToPeer(relay, PEER, b"abc")]
    [back] = core.handle_peer_datagram(2, relay, PEER, b"hello")
    assert back == SendToClient(UDP_CLIENT, struct.pack("!HH", 0x4001, 5) + b"hello")
    # Unbound channel, truncated frame: dropped.
    assert core.handle_client_message(3, UDP_CLIENT, struct.pack("!HH", 0x4002, 1) + b"z") == []
    assert core.handle_client_message(3, UDP_CLIENT, struct.pack("!HH", 0x4001, 9) + b"z") == []
    # Same peer from another port is not the bound peer: Data indication instead.
    [other] = core.handle_peer_datagram(4, relay, (PEER[0], 1), b"q")
    assert isinstance(other, SendToClient)
    assert stun.parse_message(other.data).message_method == stun.Method.DATA
    assert core.stats.channels == 1


def test_channel_data_is_padded_on_streams() -> None:
    harness = Harness()
    relay = harness.allocate(0, TCP_CLIENT)
    assert harness.channel_bind(0, 0x4000, PEER, TCP_CLIENT) == 200
    [back] = harness.core.handle_peer_datagram(1, relay, PEER, b"hello")
    assert back == SendToClient(TCP_CLIENT, struct.pack("!HH", 0x4000, 5) + b"hello\x00\x00\x00")
    # A closed TCP connection takes its allocation with it.
    assert harness.core.client_disconnected(2, TCP_CLIENT) == [CloseRelay(relay)]
    assert harness.core.stats.allocations == 0


def test_channel_bind_refusals() -> None:
    harness = Harness()
    harness.allocate(0)
    assert harness.channel_bind(0, 0x3FFF, PEER) == 400
    assert harness.channel_bind(0, 0x5000, PEER) == 400
    assert harness.channel_bind(0, 0x4000, PEER) == 200
    assert harness.channel_bind(1, 0x4000, PEER) == 200  # refresh
    assert harness.channel_bind(1, 0x4000, OTHER_PEER) == 400  # number taken by another peer
    assert harness.channel_bind(1, 0x4001, PEER) == 400  # peer already has a channel
    assert harness.channel_bind(1, 0x4001, ("::1", 7000)) == 443


def test_channel_expires_and_data_falls_back_to_indications() -> None:
    harness = Harness()
    relay = harness.allocate(0)
    assert harness.refresh(0, 3600).attributes["LIFETIME"] == 3600
    assert harness.channel_bind(0, 0x4000, PEER) == 200
    assert harness.create_permission(400, PEER) == 200  # keeps the permission until 700
    harness.core.expire(600)
    assert harness.core.stats.channels == 0
    assert (
        harness.core.handle_client_message(601, UDP_CLIENT, struct.pack("!HH", 0x4000, 1) + b"x")
        == []
    )
    [back] = harness.core.handle_peer_datagram(601, relay, PEER, b"late")
    assert isinstance(back, SendToClient)
    assert stun.parse_message(back.data).message_method == stun.Method.DATA


def test_live_channel_keeps_its_peer_permitted() -> None:
    harness = Harness()
    relay = harness.allocate(0)
    assert harness.channel_bind(0, 0x4000, PEER) == 200
    harness.core.expire(400)  # the permission itself lapsed at 300
    assert harness.core.handle_peer_datagram(400, relay, PEER, b"x")


def test_peers_outside_the_allowed_set_are_forbidden() -> None:
    harness = Harness()
    harness.allocate(0)
    assert harness.create_permission(0, ("192.0.2.1", 3478)) == 403
    assert harness.channel_bind(0, 0x4000, ("192.0.2.1", 3478)) == 403
    assert harness.create_permission(0, ("::1", 3478)) == 443

    only_one = Harness(replace(CONFIG, allowed_peer=lambda peer: peer[0] == PEER[0]))
    only_one.allocate(0)
    assert only_one.create_permission(0, PEER) == 200
    assert only_one.create_permission(0, OTHER_PEER) == 403


def test_peer_limit_per_allocation() -> None:
    harness = Harness(replace(CONFIG, max_peers_per_allocation=1))
    harness.allocate(0)
    assert harness.create_permission(0, PEER) == 200
    assert harness.create_permission(1, PEER) == 200
    assert harness.create_permission(1, OTHER_PEER) == 508
    assert harness.channel_bind(1, 0x4000, OTHER_PEER) == 508


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x01\x00\x00" + b"\x00" * 16,  # wrong magic cookie
        bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))[:-1] + b"\x01\x02",
        b"\x16\x03\x01\x00\x05hello",  # a TLS record
        b"\x00\x0a\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12,  # unknown method
        b"\x40\x00\x00",
    ],
)
def test_garbage_is_ignored(data: bytes) -> None:
    harness = Harness()
    assert harness.core.handle_client_message(0, UDP_CLIENT, data) == []


def test_non_turn_requests_get_400() -> None:
    harness = Harness()
    answer, _ = harness.exchange(
        0, UDP_CLIENT, bytes(stun.Message(stun.Method.SEND, stun.Class.REQUEST))
    )
    assert outcome(answer) == 400


# -- the real server on loopback ------------------------------------------------------------------


@dataclass(frozen=True)
class LabTls:
    server: ssl.SSLContext
    client: ssl.SSLContext


def make_test_tls(directory: Path) -> LabTls:
    """A throwaway CA and a certificate for 127.0.0.1 and localhost signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CallPath lab test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = directory / "turn-chain.pem"
    key = directory / "turn-key.pem"
    chain.write_bytes(
        leaf_cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain, key)
    client = ssl.create_default_context(
        cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    )
    return LabTls(server=server, client=client)


@pytest.fixture(scope="module")
def test_tls(tmp_path_factory: pytest.TempPathFactory) -> LabTls:
    return make_test_tls(tmp_path_factory.mktemp("lab-turn-tls"))


@pytest.fixture
async def lab_turn(test_tls: LabTls) -> AsyncIterator[LabTurnServer]:
    server = LabTurnServer(CONFIG)
    await asyncio.wait_for(server.start(tls_context=test_tls.server), IO_TIMEOUT)
    try:
        yield server
    finally:
        await asyncio.wait_for(server.close(), IO_TIMEOUT)


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))


class EchoPeer(asyncio.DatagramProtocol):
    """The peer behind the relay: echoes every datagram and remembers who sent it."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.sources: set[Address] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        assert self.transport is not None
        self.sources.add((addr[0], addr[1]))
        self.transport.sendto(data, addr)


@dataclass(frozen=True)
class RunningEcho:
    address: Address
    peer: EchoPeer


@pytest.fixture
async def echo() -> AsyncIterator[RunningEcho]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(EchoPeer, local_addr=("127.0.0.1", 0))
    try:
        address = transport.get_extra_info("sockname")
        yield RunningEcho((address[0], address[1]), peer)
    finally:
        transport.close()


async def eventually(condition: Callable[[], bool], timeout: float = IO_TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def listener_port(server: LabTurnServer, kind: str) -> int:
    port = {"udp": server.udp_port, "tcp": server.tcp_port, "tls": server.tls_port}[kind]
    assert port is not None
    return port


def test_listeners_are_optional_and_report_their_ports() -> None:
    async def scenario() -> None:
        server = LabTurnServer(CONFIG)
        await asyncio.wait_for(server.start(tcp_port=None), IO_TIMEOUT)
        try:
            assert server.udp_port
            assert server.tcp_port is None
            assert server.tls_port is None  # no TLS context, no TLS listener
        finally:
            await asyncio.wait_for(server.close(), IO_TIMEOUT)

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["udp", "tcp", "tls"])
async def test_aioice_allocates_and_relays_over_channels(
    kind: str, lab_turn: LabTurnServer, echo: RunningEcho, test_tls: LabTls
) -> None:
    turn, inbox = await asyncio.wait_for(
        create_turn_endpoint(
            Inbox,
            ("127.0.0.1", listener_port(lab_turn, kind)),
            "alice",
            USERS["alice"],
            ssl=test_tls.client if kind == "tls" else None,
            transport="udp" if kind == "udp" else "tcp",
        ),
        IO_TIMEOUT,
    )
    try:
        relayed = turn.get_extra_info("sockname")
        assert relayed[0] == "127.0.0.1"
        payloads = [f"ping {i} over {kind}".encode() for i in range(3)]
        for payload in payloads:
            turn.sendto(payload, echo.address)
        received = [await asyncio.wait_for(inbox.received.get(), IO_TIMEOUT) for _ in payloads]
        assert sorted(received) == sorted((payload, echo.address) for payload in payloads)
        assert echo.peer.sources == {relayed}
        stats = lab_turn.stats
        assert stats.allocations == 1
        assert stats.channels == 1
        assert stats.bytes_to_peers == stats.bytes_to_clients == sum(map(len, payloads))
    finally:
        turn.close()
    await eventually(lambda: lab_turn.stats.allocations == 0)


async def test_aioice_over_tls_refuses_an_untrusted_server(lab_turn: LabTurnServer) -> None:
    with pytest.raises(ssl.SSLError):
        await asyncio.wait_for(
            create_turn_endpoint(
                Inbox,
                ("127.0.0.1", listener_port(lab_turn, "tls")),
                "alice",
                USERS["alice"],
                ssl=ssl.create_default_context(),
                transport="tcp",
            ),
            IO_TIMEOUT,
        )


class RawLink:
    """A hand-driven TURN client connection, for what aioice's client never sends."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.local: Address = ("", 0)
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, kind: str, port: int, tls: LabTls) -> RawLink:
        link = cls()
        loop = asyncio.get_running_loop()
        if kind == "udp":

            class Receiver(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                    link.frames.put_nowait(data)

            link._udp, _ = await loop.create_datagram_endpoint(
                Receiver, remote_addr=("127.0.0.1", port)
            )
            sockname = link._udp.get_extra_info("sockname")
        else:
            reader, link._writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls.client if kind == "tls" else None
            )
            link._reading = asyncio.create_task(link._read_frames(reader))
            sockname = link._writer.get_extra_info("sockname")
        link.local = (sockname[0], sockname[1])
        return link

    async def _read_frames(self, reader: asyncio.StreamReader) -> None:
        while True:
            header = await reader.readexactly(4)
            length = struct.unpack("!HH", header)[1]
            if header[0] & 0xC0 == 0x40:
                length += stun.padding_length(length)
            else:
                length += stun.HEADER_LENGTH - 4
            self.frames.put_nowait(header + await reader.readexactly(length))

    def send(self, data: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(data)
        else:
            assert self._writer is not None
            self._writer.write(data)

    async def request(self, message: stun.Message) -> stun.Message:
        self.send(bytes(message))
        while True:
            answer = stun.parse_message(await asyncio.wait_for(self.frames.get(), IO_TIMEOUT))
            if answer.transaction_id == message.transaction_id:
                return answer

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._reading is not None:
            self._reading.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), IO_TIMEOUT)


async def authenticated_allocate(
    link: RawLink, lifetime: int | None = None
) -> tuple[bytes, Address]:
    """Allocate with the 401 round; returns the nonce and the relayed address."""
    challenge = await link.request(allocate_request(lifetime=lifetime))
    assert outcome(challenge) == 401
    nonce: bytes = challenge.attributes["NONCE"]
    request = allocate_request(lifetime=lifetime)
    sign(request, nonce)
    answer = await link.request(request)
    assert outcome(answer) == 200, answer
    assert answer.attributes["XOR-MAPPED-ADDRESS"] == link.local
    return nonce, answer.attributes["XOR-RELAYED-ADDRESS"]


def sign(message: stun.Message, nonce: bytes) -> None:
    message.attributes.update(USERNAME="alice", REALM=REALM, NONCE=nonce)
    message.add_message_integrity(long_term_key("alice", REALM, USERS["alice"]))


@pytest.mark.parametrize("kind", ["udp", "tcp", "tls"])
async def test_send_and_data_indications_through_the_server(
    kind: str, lab_turn: LabTurnServer, echo: RunningEcho, test_tls: LabTls
) -> None:
    link = await asyncio.wait_for(
        RawLink.open(kind, listener_port(lab_turn, kind), test_tls), IO_TIMEOUT
    )
    try:
        binding = await link.request(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))
        assert binding.attributes["XOR-MAPPED-ADDRESS"] == link.local

        nonce, relayed = await authenticated_allocate(link)
        permission = stun.Message(stun.Method.CREATE_PERMISSION, stun.Class.REQUEST)
        permission.attributes["XOR-PEER-ADDRESS"] = echo.address
        sign(permission, nonce)
        assert outcome(await link.request(permission)) == 200

        link.send(send_indication(echo.address, b"by indication"))
        data = stun.parse_message(await asyncio.wait_for(link.frames.get(), IO_TIMEOUT))
        assert data.message_method == stun.Method.DATA
        assert data.message_class == stun.Class.INDICATION
        assert data.attributes["XOR-PEER-ADDRESS"] == echo.address
        assert data.attributes["DATA"] == b"by indication"
        assert echo.peer.sources == {relayed}

        # ChannelData of odd length: padded on streams, and the next frame still parses.
        bind = stun.Message(stun.Method.CHANNEL_BIND, stun.Class.REQUEST)
        bind.attributes.update({"CHANNEL-NUMBER": 0x4ABC, "XOR-PEER-ADDRESS": echo.address})
        sign(bind, nonce)
        assert outcome(await link.request(bind)) == 200
        padding = bytes(3) if kind != "udp" else b""
        link.send(struct.pack("!HH", 0x4ABC, 5) + b"odd!!" + padding)
        # The echo answers from the bound peer address, so this comes back as ChannelData too.
        link.send(send_indication(echo.address, b"after"))
        frames = {await asyncio.wait_for(link.frames.get(), IO_TIMEOUT) for _ in range(2)}
        assert frames == {
            struct.pack("!HH", 0x4ABC, 5) + b"odd!!" + padding,
            struct.pack("!HH", 0x4ABC, 5) + b"after" + padding,
        }
        assert lab_turn.stats.allocations == 1

        refresh = stun.Message(stun.Method.REFRESH, stun.Class.REQUEST)
        refresh.attributes["LIFETIME"] = 0
        sign(refresh, nonce)
        assert outcome(await link.request(refresh)) == 200
        assert lab_turn.stats.allocations == 0
    finally:
        await link.close()


async def test_closing_a_tcp_connection_deletes_its_allocation(
    lab_turn: LabTurnServer, test_tls: LabTls
) -> None:
    link = await RawLink.open("tcp", listener_port(lab_turn, "tcp"), test_tls)
    try:
        await authenticated_allocate(link)
        assert lab_turn.stats.allocations == 1
    finally:
        await link.close()
    await eventually(lambda: lab_turn.stats.allocations == 0)


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],
    ids=["http", "tls-client-hello"],
)
async def test_a_stream_that_is_neither_stun_nor_channel_data_is_closed(
    garbage: bytes, lab_turn: LabTurnServer
) -> None:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", listener_port(lab_turn, "tcp")), IO_TIMEOUT
    )
    try:
        writer.write(garbage)
        assert await asyncio.wait_for(reader.read(), IO_TIMEOUT) == b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(writer.wait_closed(), IO_TIMEOUT)


async def test_allocations_expire_in_real_time(test_tls: LabTls) -> None:
    config = replace(CONFIG, default_lifetime_s=1, max_lifetime_s=1)
    server = LabTurnServer(config, LabTurnServerLimits(expiry_interval_s=0.05))
    await asyncio.wait_for(server.start(tcp_port=None), IO_TIMEOUT)
    link = await RawLink.open("udp", listener_port(server, "udp"), test_tls)
    try:
        await authenticated_allocate(link, lifetime=600)
        assert server.stats.allocations == 1
        await eventually(lambda: server.stats.allocations == 0)
    finally:
        await link.close()
        await asyncio.wait_for(server.close(), IO_TIMEOUT)


@pytest.mark.parametrize("kind", ["udp", "tcp"])
async def test_aiortc_call_relay_only_through_the_lab_server(
    kind: str, lab_turn: LabTurnServer
) -> None:
    url = f"turn:127.0.0.1:{listener_port(lab_turn, kind)}?transport={kind}"
    configuration = RTCConfiguration(
        iceServers=[RTCIceServer(urls=url, username="alice", credential=USERS["alice"])],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )
    caller = RTCPeerConnection(configuration)
    callee = RTCPeerConnection(configuration)
    try:
        await asyncio.wait_for(exchange_greetings(caller, callee), 30)
        assert caller.connectionState == "connected"
        assert callee.connectionState == "connected"
        for description in (caller.localDescription, callee.localDescription):
            candidates = [
                line for line in description.sdp.splitlines() if line.startswith("a=candidate")
            ]
            assert candidates
            assert all(" typ relay" in line for line in candidates)
        stats = lab_turn.stats
        assert stats.allocations == 2
        assert stats.bytes_to_peers > 0
        assert stats.bytes_to_clients > 0
    finally:
        await asyncio.wait_for(asyncio.gather(caller.close(), callee.close()), 10)


async def exchange_greetings(caller: RTCPeerConnection, callee: RTCPeerConnection) -> None:
    loop = asyncio.get_running_loop()
    greeting: asyncio.Future[str] = loop.create_future()
    reply: asyncio.Future[str] = loop.create_future()
    channel = caller.createDataChannel("chat")

    @channel.on("open")
    def say_hello() -> None:
        channel.send("hello through the lab relay")

    @channel.on("message")
    def got_reply(message: str) -> None:
        if not reply.done():
            reply.set_result(message)

    @callee.on("datachannel")
    def answer_channel(incoming: RTCDataChannel) -> None:
        @incoming.on("message")
        def got_greeting(message: str) -> None:
            if not greeting.done():
                greeting.set_result(message)
                incoming.send("hello back")

    await caller.setLocalDescription(await caller.createOffer())
    await callee.setRemoteDescription(caller.localDescription)
    await callee.setLocalDescription(await callee.createAnswer())
    await caller.setRemoteDescription(
        RTCSessionDescription(callee.localDescription.sdp, callee.localDescription.type)
    )
    assert await greeting == "hello through the lab relay"
    assert await reply == "hello back"


# -- the client's own byte counters on a TCP/TLS relay connection (core/paths/relay.py) ---------


@pytest.mark.parametrize("kind", ["tcp", "tls"])
async def test_relay_connection_counts_bytes_each_way_and_sees_the_far_end_close(
    kind: str, test_tls: LabTls
) -> None:
    """What the freeze diagnosis reads: bytes received and sent on the relay connection, when
    they stopped, and whether the connection is still open (docs/diagnosis.md)."""
    server = LabTurnServer(CONFIG)
    await asyncio.wait_for(server.start(tls_context=test_tls.server), IO_TIMEOUT)
    counters = StreamCounters()
    endpoint = TurnEndpoint(
        "localhost", "127.0.0.1", listener_port(server, kind), kind, "alice", "wonderland"
    )
    evidence: dict[str, Any] = {}
    try:
        transport, protocol = await connect_stream(
            endpoint, test_tls.client, IO_TIMEOUT, evidence, counters=counters
        )
        prepared = await allocate(endpoint, transport, protocol, evidence)
        counted = counters.evidence(endpoint.port)
        assert counted["relay_port"] == endpoint.port
        assert counted["relay_bytes_sent"] > 0 and counted["relay_bytes_received"] > 0
        assert counted["relay_open"] is True
        assert counted["relay_received_stopped_s"] is not None
        if "relay_wire_bytes_received" in counted:  # Linux: the kernel's count, TLS included
            assert counted["relay_wire_bytes_received"] >= counted["relay_bytes_received"]
            if kind == "tls":  # the handshake and record headers come on top
                assert counted["relay_wire_bytes_received"] > counted["relay_bytes_received"]
    finally:
        await asyncio.wait_for(server.close(), IO_TIMEOUT)
    for _ in range(100):
        if counters.closed_at is not None:
            break
        await asyncio.sleep(0.02)
    assert counters.evidence(endpoint.port)["relay_open"] is False
    prepared.close()
