"""SOCKS5 (RFC 1928) with username/password auth (RFC 1929), and media over UDP ASSOCIATE.

python-socks has no UDP ASSOCIATE client, so the wire format is here: pure encode/decode
functions first, then the I/O that opens a ``Socks5UdpTunnel``. The tunnel is a
``DatagramTunnel`` (see ``callpath.core.call.library_adapter``): aioice uses it in place of a TURN
allocation,
so the call's UDP really leaves through the proxy.

The UDP association lives exactly as long as the TCP control connection, so the tunnel keeps
that connection open and watches it: when the proxy closes it, the tunnel ends with
``eof_error`` or ``connection_reset`` and tells aioice its transport is lost.

The address the far side sees (the candidate the tunnel advertises) is found with a STUN
Binding request sent through the tunnel when a STUN server is given. The BND.ADDR in the
proxy's reply is only where *we* send to: Dante relays from a second socket, and ss-local's
datagrams leave from ss-server on another machine, so BND.ADDR is what peers see only for
simple single-socket relays. Without a STUN server the tunnel falls back to BND.ADDR and ICE
still works through peer-reflexive candidates, just less directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
from typing import Any

import aioice.stun

from callpath.core.call.stages import StageFailure
from callpath.core.i18n import N_
from callpath.core.model.failures import failure_from_exception
from callpath.core.model.proxy_url import ProxyUrl

logger = logging.getLogger(__name__)

SOCKS_VERSION = 0x05
AUTH_VERSION = 0x01  # RFC 1929 sub-negotiation version
METHOD_NO_AUTH = 0x00
METHOD_USERNAME_PASSWORD = 0x02
METHOD_NO_ACCEPTABLE = 0xFF
COMMAND_CONNECT = 0x01
COMMAND_UDP_ASSOCIATE = 0x03
ADDRESS_IPV4 = 0x01
ADDRESS_DOMAIN = 0x03
ADDRESS_IPV6 = 0x04
REPLY_SUCCEEDED = 0x00

# RFC 1928 section 6 reply codes, in the socks_* family of failure strings.
REPLY_FAILURES = {
    0x01: "socks_general_failure",
    0x02: "socks_connection_not_allowed",
    0x03: "socks_network_unreachable",
    0x04: "socks_host_unreachable",
    0x05: "socks_connection_refused",
    0x06: "socks_ttl_expired",
    0x07: "socks_command_not_supported",
    0x08: "socks_address_type_not_supported",
}
# Both mean "no UDP through this proxy": 0x07 from proxies without UDP support, 0x02 from
# proxies whose rules forbid it (Dante without ``udpassociate`` in its socks rules).
UDP_REFUSAL_FAILURES = ("socks_command_not_supported", "socks_connection_not_allowed")
UDP_REFUSED_EXPLANATION = N_("this proxy does not carry UDP; TURN through it may still work")

STUN_RETRY_INITIAL_S = 0.25
STUN_RETRY_MAX_S = 1.0
CONTROL_READ_BYTES = 256


# --- wire format (no I/O) -------------------------------------------------------------------


def greeting(offer_password: bool) -> bytes:
    """The client's method offer: no authentication, plus username/password if we have one."""
    methods = [METHOD_NO_AUTH, METHOD_USERNAME_PASSWORD] if offer_password else [METHOD_NO_AUTH]
    return bytes([SOCKS_VERSION, len(methods), *methods])


def parse_method_selection(data: bytes, offer_password: bool) -> int:
    """The method the proxy chose; StageFailure if it is not SOCKS5 or accepts no method.

    A method we did not offer is a protocol error: that is also how a TCP echo service, which
    sends our greeting back, is told apart from a proxy.
    """
    if len(data) != 2 or data[0] != SOCKS_VERSION:
        raise StageFailure("socks_protocol_error", {"reason": "not a SOCKS5 method selection"})
    if data[1] == METHOD_NO_ACCEPTABLE:
        raise StageFailure("socks_auth_refused", {"reason": "no acceptable method"})
    if data[1] not in greeting(offer_password)[2:]:
        raise StageFailure("socks_protocol_error", {"reason": f"unoffered method {data[1]}"})
    return data[1]


def username_password_request(username: str, password: str) -> bytes:
    """RFC 1929 sub-negotiation; each field is at most 255 bytes of UTF-8."""
    user = username.encode()
    secret = password.encode()
    if not 0 < len(user) <= 255 or len(secret) > 255:
        raise ValueError("SOCKS5 user names are 1-255 bytes and passwords at most 255 bytes")
    return bytes([AUTH_VERSION, len(user)]) + user + bytes([len(secret)]) + secret


def check_auth_reply(data: bytes) -> None:
    """Raise socks_auth_refused unless the RFC 1929 status is success."""
    if len(data) != 2:
        raise StageFailure("socks_protocol_error", {"reason": "short authentication reply"})
    if data[1] != 0x00:
        raise StageFailure("socks_auth_refused", {"reason": "username/password rejected"})


def encode_address(address: tuple[str, int]) -> bytes:
    """ATYP, address and port of ``address`` (an IP literal or a host name)."""
    host, port = address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        if not 0 < len(name) <= 255:
            raise ValueError("a SOCKS5 host name is 1-255 bytes") from None
        return bytes([ADDRESS_DOMAIN, len(name)]) + name + struct.pack("!H", port)
    kind = ADDRESS_IPV4 if ip.version == 4 else ADDRESS_IPV6
    return bytes([kind]) + ip.packed + struct.pack("!H", port)


def decode_address(data: bytes, offset: int) -> tuple[tuple[str, int], int]:
    """The address at ``data[offset:]`` and the offset after it; ValueError if truncated."""
    if len(data) <= offset:
        raise ValueError("no address type")
    kind = data[offset]
    start = offset + 1
    if kind == ADDRESS_IPV4:
        end = start + 4
        host = str(ipaddress.IPv4Address(data[start:end])) if len(data) >= end else ""
    elif kind == ADDRESS_IPV6:
        end = start + 16
        host = str(ipaddress.IPv6Address(data[start:end])) if len(data) >= end else ""
    elif kind == ADDRESS_DOMAIN:
        if len(data) <= start:
            raise ValueError("no domain length")
        end = start + 1 + data[start]
        host = data[start + 1 : end].decode("ascii", errors="replace")
    else:
        raise ValueError(f"unknown address type {kind}")
    if len(data) < end + 2:
        raise ValueError("truncated address")
    (port,) = struct.unpack("!H", data[end : end + 2])
    return (host, port), end + 2


def address_length(kind: int, first_byte: int) -> int:
    """Bytes of address and port after ATYP, given ATYP and the byte that follows it."""
    if kind == ADDRESS_IPV4:
        return 4 + 2
    if kind == ADDRESS_IPV6:
        return 16 + 2
    if kind == ADDRESS_DOMAIN:
        return 1 + first_byte + 2
    raise StageFailure("socks_protocol_error", {"reason": f"unknown address type {kind}"})


def command_request(command: int, address: tuple[str, int]) -> bytes:
    return bytes([SOCKS_VERSION, command, 0x00]) + encode_address(address)


def reply_failure(code: int) -> str:
    """The failure string of a non-success reply code."""
    return REPLY_FAILURES.get(code, "socks_protocol_error")


def parse_reply(data: bytes) -> tuple[str, int]:
    """BND.ADDR and BND.PORT of a complete reply; StageFailure for a refusal."""
    if len(data) < 4 or data[0] != SOCKS_VERSION:
        raise StageFailure("socks_protocol_error", {"reason": "not a SOCKS5 reply"})
    if data[1] != REPLY_SUCCEEDED:
        raise StageFailure(reply_failure(data[1]), {"reply_code": data[1]})
    try:
        address, _end = decode_address(data, 3)
    except ValueError as error:
        raise StageFailure("socks_protocol_error", {"reason": str(error)}) from None
    return address


def encode_udp_datagram(payload: bytes, destination: tuple[str, int]) -> bytes:
    """RSV RSV FRAG=0, the destination, then the payload (RFC 1928 section 7)."""
    return b"\x00\x00\x00" + encode_address(destination) + payload


def decode_udp_datagram(data: bytes) -> tuple[bytes, tuple[str, int]] | None:
    """Payload and source of a relayed datagram; None for fragments and malformed ones.

    Fragments (FRAG != 0) are dropped: reassembly is optional in RFC 1928, and no proxy
    CallPath targets fragments media-sized datagrams.
    """
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x00:
        return None
    try:
        source, end = decode_address(data, 3)
    except ValueError:
        return None
    return data[end:], source


def udp_relay_address(bound: tuple[str, int], proxy_ip: str) -> tuple[str, int]:
    """Where to send datagrams: BND.ADDR, or the proxy's own address when BND is unspecified."""
    host, port = bound
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = False
    return (proxy_ip, port) if unspecified else (host, port)


# --- I/O: the control connection ------------------------------------------------------------


async def _read_reply(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(4)
    if head[0] != SOCKS_VERSION or head[1] != REPLY_SUCCEEDED:
        return head
    first = await reader.readexactly(1)
    rest = await reader.readexactly(address_length(head[3], first[0]) - 1)
    return head + first + rest


async def negotiate(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    username: str | None,
    password: str | None,
) -> int:
    """Greeting and, if the proxy asks for it, username/password auth; returns the method."""
    offer_password = username is not None and password is not None
    writer.write(greeting(offer_password))
    await writer.drain()
    method = parse_method_selection(await reader.readexactly(2), offer_password)
    if method == METHOD_USERNAME_PASSWORD:
        if username is None or password is None:
            raise StageFailure("socks_auth_refused", {"reason": "credentials required"})
        writer.write(username_password_request(username, password))
        await writer.drain()
        check_auth_reply(await reader.readexactly(2))
    return method


async def request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    command: int,
    address: tuple[str, int],
) -> tuple[str, int]:
    """Send a command and return BND.ADDR/BND.PORT of the successful reply."""
    writer.write(command_request(command, address))
    await writer.drain()
    return parse_reply(await _read_reply(reader))


# --- the tunnel -----------------------------------------------------------------------------


class _RelaySocket(asyncio.DatagramProtocol):
    def __init__(self, tunnel: Socks5UdpTunnel) -> None:
        self._tunnel = tunnel

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._tunnel._relay_datagram(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on UDP are advisory; the control connection says when the proxy is gone.
        logger.debug("SOCKS5 UDP relay socket error: %s", exc)


class Socks5UdpTunnel:
    """A live UDP association: datagrams to and from peers through a SOCKS5 proxy."""

    tunnel_name = "socks5-udp"

    def __init__(
        self,
        proxy: ProxyUrl,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        relay_address: tuple[str, int],
    ) -> None:
        self._proxy = proxy
        self._reader = reader
        self._writer = writer
        self.relay_address = relay_address  # where we send (BND.ADDR/BND.PORT)
        self.external_address = relay_address  # what peers see; refined by discovery
        self.address_source = "bound_address"
        self.failure: str | None = None  # set when the proxy ends the association
        self.ended = asyncio.Event()  # set when closed by us or lost
        self._udp: asyncio.DatagramTransport | None = None
        self._receiver: asyncio.DatagramProtocol | None = None
        self._closing = False
        self._watch: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    async def _start(self) -> None:
        local_ip = self._writer.get_extra_info("sockname")[0]
        # Connected, so the kernel drops datagrams from anyone but the proxy's relay.
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _RelaySocket(self), local_addr=(local_ip, 0), remote_addr=self.relay_address
        )
        self._udp = transport
        self._watch = self._loop.create_task(self._watch_control(), name="socks5 control")

    # DatagramTunnel

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._closing or self._udp is None:
            return
        self._udp.sendto(encode_udp_datagram(data, (addr[0], addr[1])))

    def set_receiver(self, protocol: asyncio.DatagramProtocol | None) -> None:
        self._receiver = protocol

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info: dict[str, Any] = {
            "sockname": self.external_address,
            "proxy_address": self._proxy.address,
            "related_address": None,
            "relay_address": self.relay_address,
            "address_source": self.address_source,
        }
        return info.get(name, default)

    def close(self) -> None:
        if self._closing:
            return
        self._end(None)

    # internals

    def _relay_datagram(self, data: bytes) -> None:
        decoded = decode_udp_datagram(data)
        if decoded is None or self._receiver is None or self._closing:
            return
        payload, source = decoded
        self._receiver.datagram_received(payload, source)

    async def _watch_control(self) -> None:
        failure = "eof_error"
        try:
            while await self._reader.read(CONTROL_READ_BYTES):
                pass  # a proxy has nothing to say here; only the end of the stream matters
        except (OSError, EOFError) as error:
            failure = failure_from_exception(error)
        if not self._closing:
            self._end(failure)

    def _end(self, failure: str | None) -> None:
        self._closing = True
        self.failure = failure
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        if self._udp is not None:
            self._udp.close()
        self._writer.close()
        self.ended.set()
        receiver = self._receiver
        if receiver is not None:
            error = None if failure is None else ConnectionError(failure)
            # Like asyncio transports: the protocol hears of the loss on the next loop turn.
            self._loop.call_soon(receiver.connection_lost, error)


class _BindingProbe(asyncio.DatagramProtocol):
    """Collects the first STUN Binding success for one transaction."""

    def __init__(self, transaction_id: bytes) -> None:
        self._transaction_id = transaction_id
        self.mapped: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            message = aioice.stun.parse_message(data)
        except ValueError:
            return
        if message.transaction_id != self._transaction_id or self.mapped.done():
            return
        mapped = message.attributes.get("XOR-MAPPED-ADDRESS")
        if message.message_class == aioice.stun.Class.RESPONSE and mapped is not None:
            self.mapped.set_result((str(mapped[0]), int(mapped[1])))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.mapped.done():
            self.mapped.set_exception(exc or ConnectionError("eof_error"))


async def discover_external_address(
    tunnel: Socks5UdpTunnel, stun_server: tuple[str, int]
) -> tuple[str, int]:
    """STUN Binding through the tunnel: the address peers see. Bound by the caller's timeout."""
    request_message = aioice.stun.Message(
        message_method=aioice.stun.Method.BINDING, message_class=aioice.stun.Class.REQUEST
    )
    probe = _BindingProbe(request_message.transaction_id)
    tunnel.set_receiver(probe)
    interval = STUN_RETRY_INITIAL_S
    try:
        while True:
            tunnel.sendto(bytes(request_message), stun_server)
            done, _pending = await asyncio.wait({probe.mapped}, timeout=interval)
            if done:
                return probe.mapped.result()
            interval = min(interval * 2, STUN_RETRY_MAX_S)
    finally:
        tunnel.set_receiver(None)


async def open_socks5_udp(
    proxy: ProxyUrl,
    password: str | None,
    timeout: float,
    *,
    stun_server: tuple[str, int] | None = None,
    evidence: dict[str, Any] | None = None,
) -> Socks5UdpTunnel:
    """Associate, and (with ``stun_server``) learn the address peers will see.

    Failures are StageFailure: ``connection_refused`` and friends when the proxy is not
    reachable, ``socks_auth_refused``, a ``socks_*`` reply code when it refuses UDP (see
    ``UDP_REFUSAL_FAILURES``), ``generic_timeout_error``, and ``stun_no_response`` when
    nothing comes back through the association (the proxy accepts UDP ASSOCIATE but carries
    no UDP, as ss-local started without ``-u`` does).
    """
    if proxy.kind != "socks5":
        raise ValueError(f"UDP ASSOCIATE needs a SOCKS5 proxy, not {proxy.scheme}")
    evidence = evidence if evidence is not None else {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    started = loop.time()
    writer: asyncio.StreamWriter | None = None
    tunnel: Socks5UdpTunnel | None = None
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            evidence["proxy_connect_ms"] = round((loop.time() - started) * 1000, 1)
            method = await negotiate(reader, writer, proxy.username, password)
            evidence["auth"] = "username" if method == METHOD_USERNAME_PASSWORD else "none"
            try:
                # All zeros: behind NAT we cannot know our source address (RFC 1928 section 7).
                bound = await request(reader, writer, COMMAND_UDP_ASSOCIATE, ("0.0.0.0", 0))
            except StageFailure as refused:
                refused.evidence["command"] = "udp_associate"
                raise
            proxy_ip = writer.get_extra_info("peername")[0]
            tunnel = Socks5UdpTunnel(proxy, reader, writer, udp_relay_address(bound, proxy_ip))
            await tunnel._start()
    except StageFailure as known:
        known.evidence.update(evidence)
        _close_quietly(writer, tunnel)
        raise
    except TimeoutError:
        _close_quietly(writer, tunnel)
        raise StageFailure("generic_timeout_error", {**evidence, "timeout_s": timeout}) from None
    except (OSError, EOFError, asyncio.IncompleteReadError, ValueError) as error:
        _close_quietly(writer, tunnel)
        raise StageFailure(failure_from_exception(error), evidence) from error
    if stun_server is not None:
        try:
            async with asyncio.timeout_at(deadline):
                tunnel.external_address = await discover_external_address(tunnel, stun_server)
            tunnel.address_source = "stun"
        except (TimeoutError, ConnectionError) as error:
            failure = tunnel.failure or "stun_no_response"
            tunnel.close()
            evidence["through"] = tunnel.tunnel_name
            raise StageFailure(failure, evidence) from error
    evidence["address_source"] = tunnel.address_source
    return tunnel


def _close_quietly(writer: asyncio.StreamWriter | None, tunnel: Socks5UdpTunnel | None) -> None:
    if tunnel is not None:
        tunnel.close()
    elif writer is not None:
        with contextlib.suppress(Exception):
            writer.close()
