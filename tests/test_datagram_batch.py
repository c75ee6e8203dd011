"""Batched datagram reads and sends (core/call/datagram_batch.py), on loopback UDP sockets:
``recvmmsg``/``sendmmsg`` through ctypes where libc has them, and the ``recvfrom``/``sendto``
loop that stands in for them elsewhere, must behave the same."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from callpath.core.call import datagram_batch
from callpath.core.call.datagram_batch import (
    BATCH_SIZE,
    SLOT_BYTES,
    DatagramBatch,
    parse_sockaddr,
    sockaddr_bytes,
)

MODES = [
    pytest.param(False, id="recvfrom-loop"),
    pytest.param(
        True,
        id="mmsg",
        marks=pytest.mark.skipif(
            datagram_batch.BATCH_CALLS is None, reason="libc has no recvmmsg/sendmmsg here"
        ),
    ),
]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A non-blocking socket under test and a peer that talks to it."""
    mine = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (mine, peer):
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    mine.setblocking(False)
    peer.settimeout(2.0)
    try:
        yield mine, peer
    finally:
        mine.close()
        peer.close()


def test_sockaddr_round_trips_for_both_families() -> None:
    four = ("127.0.0.1", 40000)
    assert parse_sockaddr(sockaddr_bytes(socket.AF_INET, four)) == four
    six = ("::1", 5004, 0, 0)
    assert parse_sockaddr(sockaddr_bytes(socket.AF_INET6, six)) == six
    assert parse_sockaddr(sockaddr_bytes(socket.AF_INET6, ("fe80::1", 9, 0, 3)))[3] == 3  # type: ignore[index]
    assert parse_sockaddr(b"\x01\x00" + bytes(14)) is None  # AF_UNIX: not an IP address
    assert parse_sockaddr(b"\x02") is None


@pytest.mark.parametrize("batched", MODES)
def test_everything_waiting_is_read_in_order_with_its_sender(
    pair: tuple[socket.socket, socket.socket], batched: bool
) -> None:
    mine, peer = pair
    batch = DatagramBatch(mine, batched=batched)
    assert batch.batched is batched
    assert batch.receive() == []  # nothing waiting: no error, no wait
    sent = [bytes([i]) * (100 + i) for i in range(5)]
    for data in sent:
        peer.sendto(data, mine.getsockname())
    received = _receive_all(batch, len(sent))
    assert received == sent
    assert batch.address(len(sent) - 1) == peer.getsockname()


@pytest.mark.parametrize("batched", MODES)
def test_a_read_takes_at_most_one_batch(
    pair: tuple[socket.socket, socket.socket], batched: bool
) -> None:
    mine, peer = pair
    batch = DatagramBatch(mine, batched=batched)
    count = BATCH_SIZE + 3
    for i in range(count):
        peer.sendto(i.to_bytes(2, "big"), mine.getsockname())
    _wait_readable(mine)
    first = batch.receive()
    assert len(first) <= BATCH_SIZE
    rest = _receive_all(batch, count - len(first))
    assert [int.from_bytes(d, "big") for d in first + rest] == list(range(count))


@pytest.mark.parametrize("batched", MODES)
def test_a_datagram_too_long_for_a_slot_is_dropped_not_cut(
    pair: tuple[socket.socket, socket.socket], batched: bool
) -> None:
    mine, peer = pair
    batch = DatagramBatch(mine, batched=batched)
    peer.sendto(b"x" * (SLOT_BYTES + 10), mine.getsockname())
    peer.sendto(b"short", mine.getsockname())
    assert _receive_all(batch, 2) == [b"", b"short"]


@pytest.mark.parametrize("batched", MODES)
def test_sends_reach_one_address_in_order(
    pair: tuple[socket.socket, socket.socket], batched: bool
) -> None:
    mine, peer = pair
    batch = DatagramBatch(mine, batched=batched)
    datagrams = [bytes([i]) * (20 + i) for i in range(BATCH_SIZE + 5)]  # more than one batch
    assert batch.send(datagrams, peer.getsockname()) == len(datagrams)
    assert [peer.recv(4096) for _ in datagrams] == datagrams
    # A second destination replaces the first.
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.settimeout(2.0)
    with other:
        assert batch.send([b"a", b"b"], other.getsockname()) == 2
        assert [other.recv(10), other.recv(10)] == [b"a", b"b"]


@pytest.mark.parametrize("batched", MODES)
def test_ipv6_sends_and_reads(batched: bool) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    mine = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        try:
            mine.bind(("::1", 0))
            peer.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        mine.setblocking(False)
        peer.settimeout(2.0)
        batch = DatagramBatch(mine, batched=batched)
        assert batch.send([b"one", b"two"], peer.getsockname()) == 2
        assert [peer.recv(10), peer.recv(10)] == [b"one", b"two"]
        peer.sendto(b"back", mine.getsockname())
        assert _receive_all(batch, 1) == [b"back"]
        assert batch.address(0)[:2] == peer.getsockname()[:2]  # type: ignore[index]
    finally:
        mine.close()
        peer.close()


def _wait_readable(sock: socket.socket) -> None:
    import select

    ready, _, _ = select.select([sock], [], [], 2.0)
    assert ready, "nothing arrived"


def _receive_all(batch: DatagramBatch, count: int) -> list[bytes]:
    received: list[bytes] = []
    while len(received) < count:
        _wait_readable(batch._sock)
        received.extend(batch.receive())
    return received
