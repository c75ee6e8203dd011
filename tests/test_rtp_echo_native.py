"""The echo's per-packet loop in C (core/call/_rtp_echo.c) does what the Python it stands in
for does: aiortc's receiver statistics and NACK generator and ``ForwardedStream`` on random
packet sequences (Hypothesis), and a real SRTP exchange through a loopback UDP socket, where
it echoes what it may and leaves the rest (STUN, gaps, unknown payload types) to Python."""

from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from unittest import mock

import aiortc.rtcrtpreceiver
import pytest
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from hypothesis import given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy, Session

from callpath.core.call import library_adapter
from callpath.core.call.datagram_batch import parse_sockaddr, sockaddr_bytes
from callpath.core.call.rtp_forwarding import (
    HISTORY_SIZE,
    ForwardedStream,
    parse_rtp_header,
)

NATIVE = library_adapter.NATIVE_LOOP
needs_native = pytest.mark.skipif(
    NATIVE is None, reason="the native echo loop is not built here (see the first test)"
)
UNIX_TIME = 1_765_000_000.0
SOURCE_SSRC = 0x11223344
ECHO_SSRC = 0xCAFEBABE
VIDEO_TYPE = 96


def test_the_native_loop_is_built_where_a_c_compiler_is() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the native loop uses Linux's recvmmsg/sendmmsg")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the echo runs its Python loop")
    assert NATIVE is not None, (
        "core/call/_rtp_echo.c was not built although a C compiler is here: "
        "reinstall (pip install -e .) and read the compiler's output"
    )


def _sequence_numbers() -> st.SearchStrategy[list[int]]:
    """Mostly consecutive, with gaps, repeats, late packets and wrap-arounds."""
    steps = st.lists(
        st.one_of(st.just(1), st.just(1), st.integers(-20, 60), st.just(-30_000)),
        min_size=1,
        max_size=80,
    )
    return st.builds(
        lambda start, moves: [(start + sum(moves[:i])) & 0xFFFF for i in range(len(moves))],
        st.integers(0, 0xFFFF),
        steps,
    )


@needs_native
@settings(max_examples=200, deadline=None)
@given(
    sequence=_sequence_numbers(),
    timestamps=st.lists(st.integers(0, 2**32 - 1), min_size=80, max_size=80),
    arrivals=st.lists(st.floats(0, 0.2), min_size=80, max_size=80),
    clockrate=st.sampled_from([48000, 90000]),
)
def test_statistics_match_aiortcs(
    sequence: list[int], timestamps: list[int], arrivals: list[float], clockrate: int
) -> None:
    assert NATIVE is not None
    native = NATIVE.EchoStream(ECHO_SSRC, HISTORY_SIZE, False)
    native.clockrate = clockrate
    counted = library_adapter._NativeStatistics(native)
    reference = StreamStatistics(clockrate)
    now = UNIX_TIME
    clock = SimpleNamespace(time=lambda: now)
    with mock.patch.object(aiortc.rtcrtpreceiver, "time", clock):
        for index, sequence_number in enumerate(sequence):
            now += arrivals[index]
            packet = SimpleNamespace(sequence_number=sequence_number, timestamp=timestamps[index])
            reference.add(packet)
            native.add(sequence_number, timestamps[index], now)
            assert (
                counted.max_seq,
                counted.packets_received,
                counted.packets_expected,
                counted.packets_lost,
                counted.jitter,
            ) == (
                reference.max_seq,
                reference.packets_received,
                reference.packets_expected,
                reference.packets_lost,
                reference.jitter,
            )
            if index % 7 == 0:  # a receiver report: the interval's loss
                assert counted.fraction_lost == reference.fraction_lost


@needs_native
@settings(max_examples=200, deadline=None)
@given(sequence=_sequence_numbers())
def test_the_nack_view_matches_aiortcs_generator(sequence: list[int]) -> None:
    assert NATIVE is not None
    native = NATIVE.EchoStream(ECHO_SSRC, HISTORY_SIZE, True)
    nacks = library_adapter._NativeNacks(native)
    reference = NackGenerator()
    for sequence_number in sequence:
        header = SimpleNamespace(sequence_number=sequence_number)
        assert nacks.add(header) == reference.add(header)  # type: ignore[arg-type]
        assert nacks.missing == reference.missing
        assert native.nack_max_seq == reference.max_seq


def _rtp(
    sequence_number: int,
    *,
    payload: bytes = b"\x90\x80" + bytes(range(100)),
    payload_type: int = VIDEO_TYPE,
    timestamp: int = 3000,
    ssrc: int = SOURCE_SSRC,
    extension: bytes = b"",
    padding: int = 0,
    csrcs: int = 0,
) -> bytes:
    first = 0x80 | csrcs | (0x10 if extension else 0) | (0x20 if padding else 0)
    header = struct.pack("!BBHII", first, payload_type, sequence_number, timestamp, ssrc)
    header += bytes(4 * csrcs)
    if extension:
        header += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    tail = bytes(padding - 1) + bytes([padding]) if padding else b""
    return header + payload + tail


@needs_native
@settings(max_examples=100, deadline=None)
@given(
    sequence_numbers=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40),
    extension=st.sampled_from([b"", bytes(4), bytes(8)]),
    padding=st.integers(0, 4),
    csrcs=st.integers(0, 2),
)
def test_forwarding_matches_forwarded_stream(
    sequence_numbers: list[int], extension: bytes, padding: int, csrcs: int
) -> None:
    assert NATIVE is not None
    native = NATIVE.EchoStream(ECHO_SSRC, HISTORY_SIZE, False)
    reference = ForwardedStream(ECHO_SSRC)
    for index, sequence_number in enumerate(sequence_numbers):
        packet = _rtp(sequence_number, extension=extension, padding=padding, csrcs=csrcs)
        header = parse_rtp_header(packet)
        assert header is not None
        now = UNIX_TIME + index * 0.02
        assert native.forward(packet, now) == reference.rewrite(packet, header, now)
        assert (
            native.packets_sent,
            native.payload_bytes_sent,
            native.last_timestamp,
            native.last_sent_ntp,
        ) == (
            reference.packets_sent,
            reference.payload_bytes_sent,
            reference.last_timestamp,
            reference.last_sent_ntp,
        )
    for sequence_number in {*sequence_numbers, 7, 0xFFFF}:
        assert native.recall(sequence_number) == reference.recall(sequence_number)
    with pytest.raises(ValueError, match="RTP"):
        native.forward(b"\x00" * 20, UNIX_TIME)


# --- a real exchange over loopback -----------------------------------------------------------


def _session_pair() -> tuple[Session, Session]:
    """Sessions that protect and unprotect with one random key (a DTLS-SRTP direction)."""
    key = os.urandom(30)
    return (
        Session(policy=Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)),
        Session(policy=Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND)),
    )


@dataclass
class Exchange:
    caller: socket.socket
    echo_socket: socket.socket
    caller_protect: Session
    caller_unprotect: Session
    native: object  # EchoSocket
    stream: object  # EchoStream

    def send(self, *packets: bytes) -> None:
        for packet in packets:
            self.caller.sendto(self.caller_protect.protect(packet), self.echo_socket.getsockname())

    def read(self) -> list[tuple[object, bytes, bytes | None]]:
        """What the native loop left to Python, once everything sent has been read."""
        left: list[tuple[object, bytes, bytes | None]] = []
        while select.select([self.echo_socket], [], [], 0.5)[0]:
            left.extend(self.native.read() or [])  # type: ignore[attr-defined]
        return left

    def echoes(self) -> list[bytes]:
        received = []
        while select.select([self.caller], [], [], 0.3)[0]:
            received.append(self.caller_unprotect.unprotect(self.caller.recv(4096)))
        return received


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    assert NATIVE is not None
    caller_protect, echo_unprotect = _session_pair()
    echo_protect, caller_unprotect = _session_pair()
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (caller, echo_socket):
        sock.bind(("127.0.0.1", 0))
    echo_socket.setblocking(False)
    functions = library_adapter._srtp_functions()
    assert functions is not None
    native = NATIVE.EchoSocket(
        echo_socket.fileno(),
        echo_unprotect,
        library_adapter._session_address(echo_unprotect),
        echo_protect,
        library_adapter._session_address(echo_protect),
        *functions,
    )
    native.set_destination(sockaddr_bytes(socket.AF_INET, caller.getsockname()))
    stream = NATIVE.EchoStream(ECHO_SSRC, HISTORY_SIZE, True)
    stream.source_ssrc, stream.clockrate = SOURCE_SSRC, 90000
    stream.mark_media(VIDEO_TYPE)
    stream.nack_max_seq = 99  # as if packet 99 had come first, through Python
    native.add_stream(SOURCE_SSRC.to_bytes(4, "big"), stream)
    try:
        yield Exchange(caller, echo_socket, caller_protect, caller_unprotect, native, stream)
    finally:
        caller.close()
        echo_socket.close()


@needs_native
def test_media_comes_back_under_the_echos_ssrc_and_the_rest_is_left_to_python(
    exchange: Exchange,
) -> None:
    stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)  # a STUN binding request
    packets = [_rtp(100 + i, timestamp=3000 + 3000 * i) for i in range(10)]
    exchange.send(*packets[:5])
    exchange.caller.sendto(stun, exchange.echo_socket.getsockname())
    exchange.send(*packets[5:])
    left = exchange.read()
    assert left == [(None, stun, sockaddr_bytes(socket.AF_INET, exchange.caller.getsockname()))]
    assert parse_sockaddr(left[0][2] or b"") == exchange.caller.getsockname()
    echoes = exchange.echoes()
    assert echoes == [p[:8] + ECHO_SSRC.to_bytes(4, "big") + p[12:] for p in packets]
    stream, native = exchange.stream, exchange.native
    assert (stream.packets_sent, stream.packets_received, stream.nack_max_seq) == (10, 10, 109)  # type: ignore[attr-defined]
    assert (native.received, native.sent) == (10, 10)  # type: ignore[attr-defined]
    assert native.sent_bytes == sum(len(p) + 10 for p in packets)  # type: ignore[attr-defined]  # 80-bit tags
    assert stream.recall(105) == echoes[5]  # type: ignore[attr-defined]


@needs_native
def test_a_gap_leaves_the_rest_of_the_streams_read_to_python_in_order(
    exchange: Exchange,
) -> None:
    """Packet 102 is lost: 103 needs a NACK, which Python sends, so 103 and everything after it
    in the same read go to Python, decrypted, in the order they came."""
    exchange.send(_rtp(100), _rtp(101), _rtp(103), _rtp(104))
    left = exchange.read()
    assert [(s is exchange.stream, parse_rtp_header(p).sequence_number) for s, p, _ in left] == [  # type: ignore[union-attr]
        (True, 103),
        (True, 104),
    ]
    assert [p[2:4] for p in exchange.echoes()] == [b"\x00\x64", b"\x00\x65"]
    assert exchange.stream.nack_max_seq == 101  # type: ignore[attr-defined]


@needs_native
def test_unknown_payload_types_tampered_packets_and_a_paused_echo(exchange: Exchange) -> None:
    stream = exchange.stream
    exchange.send(_rtp(100, payload_type=97))  # not marked as media: Python learns it
    left = exchange.read()
    assert len(left) == 1 and left[0][0] is stream
    protected = bytearray(exchange.caller_protect.protect(_rtp(101)))
    protected[-1] ^= 1  # fails authentication: dropped, counted as received
    exchange.caller.sendto(bytes(protected), exchange.echo_socket.getsockname())
    assert exchange.read() == [] and exchange.echoes() == []
    stream.nack_max_seq = 101  # type: ignore[attr-defined]  # as Python would have moved it
    stream.allowed = 0  # type: ignore[attr-defined]  # the amplification limit: count, do not echo
    exchange.send(_rtp(102), _rtp(103))
    assert exchange.read() == [] and exchange.echoes() == []
    assert (stream.packets_received, stream.packets_sent) == (2, 0)  # type: ignore[attr-defined]
    assert exchange.native.received == 4  # type: ignore[attr-defined]
