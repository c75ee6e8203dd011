"""Sans-I/O TURN relay state: the part of RFC 8656 that WebRTC clients use.

Every entry point takes `now` and returns actions for the I/O layer (`turn_server.py`), which
owns the sockets. STUN encoding and decoding is aioice's. Only UDP relaying is offered, and only
to peers the `allowed_peer` predicate accepts (loopback by default): the lab is never an open
relay.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aioice import stun

Address = tuple[str, int]

UDP_PROTOCOL = 17
CHANNEL_NUMBER_MIN = 0x4000
CHANNEL_NUMBER_MAX = 0x4FFF
CHANNEL_DATA_HEADER_LENGTH = 4
_XOR_PEER_ADDRESS = 0x0012
_REQUESTED_ADDRESS_FAMILY = 0x0017
_MESSAGE_INTEGRITY = 0x0008
_ADDRESS_FAMILY_IPV4 = 0x01


class ClientTransport(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    @property
    def is_stream(self) -> bool:
        return self is not ClientTransport.UDP


@dataclass(frozen=True)
class ClientKey:
    """One client 5-tuple: the listener's transport and the client's address on it."""

    transport: ClientTransport
    address: Address


def is_loopback_peer(peer: Address) -> bool:
    try:
        return ipaddress.ip_address(peer[0]).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TurnConfig:
    users: Mapping[str, str]
    realm: str = "callpath.lab"
    software: str = "CallPath lab TURN"
    default_lifetime_s: int = 600
    max_lifetime_s: int = 3600
    permission_lifetime_s: int = 300
    channel_lifetime_s: int = 600
    nonce_lifetime_s: float = 3600.0
    max_allocations_total: int = 64
    max_allocations_per_user: int = 16
    max_peers_per_allocation: int = 64
    max_outstanding_nonces: int = 4096
    allowed_peer: Callable[[Address], bool] = is_loopback_peer


@dataclass(frozen=True)
class SendToClient:
    client: ClientKey
    data: bytes


@dataclass(frozen=True)
class SendToPeer:
    relay: Address
    peer: Address
    data: bytes


@dataclass(frozen=True)
class CloseRelay:
    relay: Address


Action = SendToClient | SendToPeer | CloseRelay

RelayAllocator = Callable[[ClientKey], Address | None]
"""Binds a relay socket for the client and returns its address, or None when none is free."""


@dataclass(frozen=True)
class TurnStats:
    allocations: int
    allocations_created: int
    permissions: int
    channels: int
    bytes_to_peers: int
    bytes_to_clients: int
    datagrams_dropped: int


def long_term_key(username: str, realm: str, password: str) -> bytes:
    # MD5 is what RFC 8489 long-term credentials mandate, not our choice.
    text = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(text, usedforsecurity=False).digest()


def random_nonce() -> bytes:
    return secrets.token_hex(16).encode("ascii")


def is_channel_data(data: bytes) -> bool:
    return len(data) >= 1 and (data[0] & 0xC0) == 0x40


def padded(data: bytes) -> bytes:
    """Pads to 4 bytes, as ChannelData needs on TCP and TLS streams."""
    return data + bytes(stun.padding_length(len(data)))


@dataclass
class _Channel:
    peer: Address
    expires_at: float


@dataclass
class _Allocation:
    client: ClientKey
    relay: Address
    username: str
    key: bytes
    expires_at: float
    transaction_id: bytes
    response: bytes
    permissions: dict[str, float] = field(default_factory=dict)  # peer IP -> expiry
    channels: dict[int, _Channel] = field(default_factory=dict)
    peer_channels: dict[Address, int] = field(default_factory=dict)

    def channel_alive(self, number: int, now: float) -> _Channel | None:
        channel = self.channels.get(number)
        if channel is None or channel.expires_at <= now:
            return None
        return channel

    def permits(self, peer_ip: str, now: float) -> bool:
        if self.permissions.get(peer_ip, float("-inf")) > now:
            return True
        # aioice never sends CreatePermission and refreshes channels only every 500 s, so a live
        # channel keeps its peer's permission alive; otherwise its calls break after 300 s.
        return any(c.peer[0] == peer_ip and c.expires_at > now for c in self.channels.values())

    def peer_ips(self) -> set[str]:
        return set(self.permissions) | {c.peer[0] for c in self.channels.values()}


@dataclass(frozen=True)
class _Credentials:
    username: str
    key: bytes


class TurnAllocations:
    """All allocations of one TURN server, driven by client messages, peer datagrams and time."""

    def __init__(
        self,
        config: TurnConfig,
        allocate_relay: RelayAllocator,
        nonce_factory: Callable[[], bytes] = random_nonce,
    ) -> None:
        self._config = config
        self._allocate_relay = allocate_relay
        self._nonce_factory = nonce_factory
        self._nonces: OrderedDict[bytes, float] = OrderedDict()  # nonce -> issued at
        self._by_client: dict[ClientKey, _Allocation] = {}
        self._by_relay: dict[Address, _Allocation] = {}
        self._allocations_created = 0
        self._bytes_to_peers = 0
        self._bytes_to_clients = 0
        self._datagrams_dropped = 0

    # -- entry points -------------------------------------------------------------------------

    def handle_client_message(self, now: float, client: ClientKey, data: bytes) -> list[Action]:
        """One STUN message or ChannelData frame received from a client."""
        if is_channel_data(data):
            return self._channel_data_from_client(now, client, data)
        message = _parse_stun(data)
        if message is None:
            return []
        if message.message_class == stun.Class.REQUEST:
            return self._handle_request(now, client, message, data)
        if (
            message.message_class == stun.Class.INDICATION
            and message.message_method == stun.Method.SEND
        ):
            return self._send_indication(now, client, message)
        return []

    def handle_peer_datagram(
        self, now: float, relay: Address, peer: Address, data: bytes
    ) -> list[Action]:
        """One UDP datagram received on a relay socket from `peer`."""
        allocation = self._by_relay.get(relay)
        if allocation is None or allocation.expires_at <= now:
            self._datagrams_dropped += 1
            return []
        peer = _normalized(peer)
        if not allocation.permits(peer[0], now):
            self._datagrams_dropped += 1
            return []
        client = allocation.client
        number = allocation.peer_channels.get(peer)
        if number is not None and allocation.channel_alive(number, now) is not None:
            frame = struct.pack("!HH", number, len(data)) + data
            if client.transport.is_stream:
                frame = padded(frame)
        else:
            indication = stun.Message(stun.Method.DATA, stun.Class.INDICATION)
            indication.attributes["XOR-PEER-ADDRESS"] = peer
            indication.attributes["DATA"] = data
            frame = bytes(indication)
        self._bytes_to_clients += len(data)
        return [SendToClient(client, frame)]

    def client_disconnected(self, now: float, client: ClientKey) -> list[Action]:
        """A TCP or TLS client connection closed: its allocation goes with it (RFC 8656 §3.1)."""
        allocation = self._by_client.get(client)
        return [] if allocation is None else self._delete(allocation)

    def expire(self, now: float) -> list[Action]:
        """Deletes expired allocations, permissions, channels and nonces."""
        actions: list[Action] = []
        for allocation in list(self._by_client.values()):
            if allocation.expires_at <= now:
                actions.extend(self._delete(allocation))
                continue
            allocation.permissions = {
                ip: expiry for ip, expiry in allocation.permissions.items() if expiry > now
            }
            for number, channel in list(allocation.channels.items()):
                if channel.expires_at <= now:
                    del allocation.channels[number]
                    allocation.peer_channels.pop(channel.peer, None)
        while self._nonces:
            nonce, issued_at = next(iter(self._nonces.items()))
            if now - issued_at < self._config.nonce_lifetime_s:
                break
            del self._nonces[nonce]
        return actions

    def close_all(self) -> list[Action]:
        """Deletes every allocation, for server shutdown."""
        actions: list[Action] = []
        for allocation in list(self._by_client.values()):
            actions.extend(self._delete(allocation))
        return actions

    @property
    def stats(self) -> TurnStats:
        allocations = list(self._by_client.values())
        return TurnStats(
            allocations=len(allocations),
            allocations_created=self._allocations_created,
            permissions=sum(len(a.permissions) for a in allocations),
            channels=sum(len(a.channels) for a in allocations),
            bytes_to_peers=self._bytes_to_peers,
            bytes_to_clients=self._bytes_to_clients,
            datagrams_dropped=self._datagrams_dropped,
        )

    def relay_of(self, client: ClientKey) -> Address | None:
        allocation = self._by_client.get(client)
        return None if allocation is None else allocation.relay

    # -- requests -----------------------------------------------------------------------------

    def _handle_request(
        self, now: float, client: ClientKey, request: stun.Message, data: bytes
    ) -> list[Action]:
        method = request.message_method
        if method == stun.Method.BINDING:
            response = self._response(request, {"XOR-MAPPED-ADDRESS": client.address})
            return [SendToClient(client, response)]
        if method not in (
            stun.Method.ALLOCATE,
            stun.Method.REFRESH,
            stun.Method.CREATE_PERMISSION,
            stun.Method.CHANNEL_BIND,
        ):
            return [SendToClient(client, self._error(request, 400, "Bad Request"))]
        credentials = self._authenticate(now, request)
        if isinstance(credentials, bytes):
            return [SendToClient(client, credentials)]
        if method == stun.Method.ALLOCATE:
            return self._allocate(now, client, request, data, credentials)
        allocation = self._by_client.get(client)
        key = credentials.key
        if allocation is None:
            return [SendToClient(client, self._error(request, 437, "Allocation Mismatch", key))]
        if allocation.username != credentials.username:
            return [SendToClient(client, self._error(request, 441, "Wrong Credentials", key))]
        if method == stun.Method.REFRESH:
            return self._refresh(now, allocation, request)
        if method == stun.Method.CREATE_PERMISSION:
            response = self._create_permission(now, allocation, request, data)
        else:
            response = self._channel_bind(now, allocation, request)
        return [SendToClient(client, response)]

    def _allocate(
        self,
        now: float,
        client: ClientKey,
        request: stun.Message,
        data: bytes,
        credentials: _Credentials,
    ) -> list[Action]:
        key = credentials.key
        existing = self._by_client.get(client)
        if existing is not None:
            # A retransmitted Allocate gets the original answer (RFC 8656 §7.2).
            if existing.transaction_id == request.transaction_id:
                return [SendToClient(client, existing.response)]
            return [SendToClient(client, self._error(request, 437, "Allocation Mismatch", key))]
        requested_transport = request.attributes.get("REQUESTED-TRANSPORT")
        if not isinstance(requested_transport, int):
            return [SendToClient(client, self._error(request, 400, "Bad Request", key))]
        if requested_transport >> 24 != UDP_PROTOCOL:
            error = self._error(request, 442, "Unsupported Transport Protocol", key)
            return [SendToClient(client, error)]
        for family in _raw_attributes(data, _REQUESTED_ADDRESS_FAMILY):
            if family[:1] != bytes([_ADDRESS_FAMILY_IPV4]):
                error = self._error(request, 440, "Address Family not Supported", key)
                return [SendToClient(client, error)]
        if len(self._by_client) >= self._config.max_allocations_total:
            return [SendToClient(client, self._error(request, 508, "Insufficient Capacity", key))]
        owned = sum(1 for a in self._by_client.values() if a.username == credentials.username)
        if owned >= self._config.max_allocations_per_user:
            error = self._error(request, 486, "Allocation Quota Reached", key)
            return [SendToClient(client, error)]
        relay = self._allocate_relay(client)
        if relay is None:
            return [SendToClient(client, self._error(request, 508, "Insufficient Capacity", key))]
        relay = _normalized(relay)
        lifetime = self._granted_lifetime(request.attributes.get("LIFETIME"))
        response = self._response(
            request,
            {
                "XOR-RELAYED-ADDRESS": relay,
                "LIFETIME": lifetime,
                "XOR-MAPPED-ADDRESS": client.address,
            },
            key,
        )
        allocation = _Allocation(
            client=client,
            relay=relay,
            username=credentials.username,
            key=key,
            expires_at=now + lifetime,
            transaction_id=request.transaction_id,
            response=response,
        )
        self._by_client[client] = allocation
        self._by_relay[relay] = allocation
        self._allocations_created += 1
        return [SendToClient(client, response)]

    def _refresh(self, now: float, allocation: _Allocation, request: stun.Message) -> list[Action]:
        requested = request.attributes.get("LIFETIME")
        if requested == 0:
            response = self._response(request, {"LIFETIME": 0}, allocation.key)
            return [SendToClient(allocation.client, response), *self._delete(allocation)]
        lifetime = self._granted_lifetime(requested)
        allocation.expires_at = now + lifetime
        response = self._response(request, {"LIFETIME": lifetime}, allocation.key)
        return [SendToClient(allocation.client, response)]

    def _create_permission(
        self, now: float, allocation: _Allocation, request: stun.Message, data: bytes
    ) -> bytes:
        key = allocation.key
        try:
            # One request may carry several XOR-PEER-ADDRESS; aioice's parser keeps only the last.
            peers = [
                _normalized(stun.unpack_xor_address(raw, request.transaction_id))
                for raw in _raw_attributes(data, _XOR_PEER_ADDRESS)
            ]
        except (ValueError, struct.error):
            return self._error(request, 400, "Bad Request", key)
        if not peers:
            return self._error(request, 400, "Bad Request", key)
        for peer in peers:
            refusal = self._peer_refusal(allocation, request, peer)
            if refusal is not None:
                return refusal
        new_ips = {peer[0] for peer in peers} - allocation.peer_ips()
        if len(allocation.peer_ips()) + len(new_ips) > self._config.max_peers_per_allocation:
            return self._error(request, 508, "Insufficient Capacity", key)
        for peer in peers:
            allocation.permissions[peer[0]] = now + self._config.permission_lifetime_s
        return self._response(request, {}, key)

    def _channel_bind(self, now: float, allocation: _Allocation, request: stun.Message) -> bytes:
        key = allocation.key
        number = request.attributes.get("CHANNEL-NUMBER")
        raw_peer = request.attributes.get("XOR-PEER-ADDRESS")
        if not isinstance(number, int) or not isinstance(raw_peer, tuple):
            return self._error(request, 400, "Bad Request", key)
        if not CHANNEL_NUMBER_MIN <= number <= CHANNEL_NUMBER_MAX:
            return self._error(request, 400, "Bad Request", key)
        peer = _normalized(raw_peer)
        refusal = self._peer_refusal(allocation, request, peer)
        if refusal is not None:
            return refusal
        bound = allocation.channels.get(number)
        if bound is not None and bound.peer != peer:
            return self._error(request, 400, "Bad Request", key)
        if allocation.peer_channels.get(peer, number) != number:
            return self._error(request, 400, "Bad Request", key)
        known_ips = allocation.peer_ips()
        if peer[0] not in known_ips and len(known_ips) >= self._config.max_peers_per_allocation:
            return self._error(request, 508, "Insufficient Capacity", key)
        allocation.channels[number] = _Channel(peer, now + self._config.channel_lifetime_s)
        allocation.peer_channels[peer] = number
        allocation.permissions[peer[0]] = now + self._config.permission_lifetime_s
        return self._response(request, {}, key)

    def _peer_refusal(
        self, allocation: _Allocation, request: stun.Message, peer: Address
    ) -> bytes | None:
        if _family(peer) != _family(allocation.relay):
            return self._error(request, 443, "Peer Address Family Mismatch", allocation.key)
        if not self._config.allowed_peer(peer):
            return self._error(request, 403, "Forbidden", allocation.key)
        return None

    # -- data from clients --------------------------------------------------------------------

    def _send_indication(
        self, now: float, client: ClientKey, indication: stun.Message
    ) -> list[Action]:
        allocation = self._by_client.get(client)
        peer = indication.attributes.get("XOR-PEER-ADDRESS")
        payload = indication.attributes.get("DATA")
        if (
            allocation is None
            or allocation.expires_at <= now
            or not isinstance(peer, tuple)
            or not isinstance(payload, bytes)
        ):
            self._datagrams_dropped += 1
            return []
        peer = _normalized(peer)
        if not allocation.permits(peer[0], now):
            self._datagrams_dropped += 1
            return []
        self._bytes_to_peers += len(payload)
        return [SendToPeer(allocation.relay, peer, payload)]

    def _channel_data_from_client(self, now: float, client: ClientKey, data: bytes) -> list[Action]:
        allocation = self._by_client.get(client)
        if len(data) < CHANNEL_DATA_HEADER_LENGTH or allocation is None:
            self._datagrams_dropped += 1
            return []
        number, length = struct.unpack("!HH", data[:CHANNEL_DATA_HEADER_LENGTH])
        channel = allocation.channel_alive(number, now)
        if (
            CHANNEL_DATA_HEADER_LENGTH + length > len(data)
            or allocation.expires_at <= now
            or channel is None
        ):
            self._datagrams_dropped += 1
            return []
        payload = data[CHANNEL_DATA_HEADER_LENGTH : CHANNEL_DATA_HEADER_LENGTH + length]
        self._bytes_to_peers += len(payload)
        return [SendToPeer(allocation.relay, channel.peer, payload)]

    # -- helpers ------------------------------------------------------------------------------

    def _authenticate(self, now: float, request: stun.Message) -> _Credentials | bytes:
        """Long-term credential check (RFC 8489 §9.2.4): credentials, or the error to send."""
        attributes = request.attributes
        if "MESSAGE-INTEGRITY" not in attributes:
            return self._challenge(now, request, 401, "Unauthorized")
        username = attributes.get("USERNAME")
        realm = attributes.get("REALM")
        nonce = attributes.get("NONCE")
        if not (isinstance(username, str) and isinstance(realm, str) and isinstance(nonce, bytes)):
            return self._error(request, 400, "Bad Request")
        issued_at = self._nonces.get(nonce)
        if issued_at is None or now - issued_at >= self._config.nonce_lifetime_s:
            return self._challenge(now, request, 438, "Stale Nonce")
        password = self._config.users.get(username)
        if password is None or realm != self._config.realm:
            return self._challenge(now, request, 401, "Unauthorized")
        key = long_term_key(username, realm, password)
        if not request.check_message_integrity(key):
            return self._challenge(now, request, 401, "Unauthorized")
        return _Credentials(username, key)

    def _challenge(self, now: float, request: stun.Message, code: int, reason: str) -> bytes:
        nonce = self._nonce_factory()
        self._nonces[nonce] = now
        self._nonces.move_to_end(nonce)
        while len(self._nonces) > self._config.max_outstanding_nonces:
            self._nonces.popitem(last=False)
        return self._error(
            request, code, reason, attributes={"REALM": self._config.realm, "NONCE": nonce}
        )

    def _error(
        self,
        request: stun.Message,
        code: int,
        reason: str,
        key: bytes | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> bytes:
        return self._message(
            request, stun.Class.ERROR, {"ERROR-CODE": (code, reason), **(attributes or {})}, key
        )

    def _response(
        self, request: stun.Message, attributes: Mapping[str, Any], key: bytes | None = None
    ) -> bytes:
        return self._message(request, stun.Class.RESPONSE, attributes, key)

    def _message(
        self,
        request: stun.Message,
        message_class: stun.Class,
        attributes: Mapping[str, Any],
        key: bytes | None,
    ) -> bytes:
        message = stun.Message(request.message_method, message_class, request.transaction_id)
        message.attributes.update(attributes)
        message.attributes["SOFTWARE"] = self._config.software
        # Answers to authenticated requests are signed with the same key (RFC 8489 §9.2.4).
        if key is None:
            message.add_fingerprint()
        else:
            message.add_message_integrity(key)
        return bytes(message)

    def _granted_lifetime(self, requested: object) -> int:
        # RFC 8656 §7.2: min(requested, maximum), but never below the default.
        if not isinstance(requested, int):
            return self._config.default_lifetime_s
        return max(self._config.default_lifetime_s, min(requested, self._config.max_lifetime_s))

    def _delete(self, allocation: _Allocation) -> list[Action]:
        self._by_client.pop(allocation.client, None)
        self._by_relay.pop(allocation.relay, None)
        return [CloseRelay(allocation.relay)]


def _parse_stun(data: bytes) -> stun.Message | None:
    if len(data) < stun.HEADER_LENGTH or data[0] & 0xC0 != 0:
        return None
    if struct.unpack("!I", data[4:8])[0] != stun.COOKIE:
        return None
    try:
        return stun.parse_message(data)
    except (ValueError, struct.error):
        return None


def _raw_attributes(data: bytes, attribute_type: int) -> list[bytes]:
    """Values of every authenticated attribute of a type, including ones aioice drops."""
    values: list[bytes] = []
    position = stun.HEADER_LENGTH
    while position + 4 <= len(data):
        kind, length = struct.unpack("!HH", data[position : position + 4])
        if kind == _MESSAGE_INTEGRITY:
            break
        if kind == attribute_type:
            values.append(data[position + 4 : position + 4 + length])
        position += 4 + length + stun.padding_length(length)
    return values


def _normalized(address: Address) -> Address:
    """Canonical text for the IP, so '::1' and '0:0::1' are one peer."""
    try:
        return (str(ipaddress.ip_address(address[0])), int(address[1]))
    except ValueError:
        return (address[0], int(address[1]))


def _family(address: Address) -> int:
    try:
        return ipaddress.ip_address(address[0]).version
    except ValueError:
        return 0
