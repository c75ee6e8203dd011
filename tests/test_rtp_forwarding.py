"""Packet-level echo: header parsing, SSRC rewriting, history and RTX wrapping, checked against
aiortc's own RTP implementation where it has one."""

from __future__ import annotations

import datetime

from aiortc import clock
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, wrap_rtx

from callpath.core.call.rtp_forwarding import (
    HISTORY_SIZE,
    ForwardedStream,
    RtpHeader,
    ntp_timestamp,
    parse_rtp_header,
    payload_bytes,
    readdress,
    wrap_retransmission,
)


def _packet(
    *,
    sequence_number: int = 1000,
    timestamp: int = 90_000,
    ssrc: int = 0x11223344,
    payload: bytes = b"\x10\x00frame",
    csrc: tuple[int, ...] = (),
    padding: int = 0,
    marker: int = 1,
    with_extensions: bool = True,
) -> bytes:
    packet = RtpPacket(
        payload_type=96, marker=marker, sequence_number=sequence_number, timestamp=timestamp
    )
    packet.ssrc = ssrc
    packet.csrc = list(csrc)
    packet.payload = payload
    packet.padding_size = padding
    extensions = HeaderExtensionsMap()
    if with_extensions:
        packet.extensions.abs_send_time = 0x123456
        packet.extensions.mid = "1"
        extensions.configure(
            RTCRtpParameters(
                headerExtensions=[
                    RTCRtpHeaderExtensionParameters(
                        id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"
                    ),
                    RTCRtpHeaderExtensionParameters(
                        id=3,
                        uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                    ),
                ]
            )
        )
    return packet.serialize(extensions)


def test_header_fields_match_aiortc() -> None:
    data = _packet(csrc=(7, 8), padding=5)
    header = parse_rtp_header(data)
    reference = RtpPacket.parse(data)
    assert header is not None
    assert header.payload_type == reference.payload_type == 96
    assert header.marker == reference.marker == 1
    assert header.sequence_number == reference.sequence_number
    assert header.timestamp == reference.timestamp
    assert header.ssrc == reference.ssrc
    assert header.padding_size == reference.padding_size == 5
    assert data[header.payload_offset : len(data) - header.padding_size] == reference.payload
    assert payload_bytes(data, header) == len(reference.payload)


def test_header_without_extensions_or_padding() -> None:
    data = _packet(with_extensions=False, marker=0)
    header = parse_rtp_header(data)
    assert header is not None
    assert (header.payload_offset, header.padding_size, header.marker) == (12, 0, 0)


def test_malformed_packets_are_refused() -> None:
    good = _packet()
    assert parse_rtp_header(good[:11]) is None  # shorter than the fixed header
    assert parse_rtp_header(bytes([0x40]) + good[1:]) is None  # RTP version 1
    with_extension = _packet()
    # The extension header claims more words than the packet holds.
    assert parse_rtp_header(with_extension[:12] + b"\xbe\xde\x00\x09") is None
    assert parse_rtp_header(with_extension[:13]) is None
    # Padding longer than what follows the header.
    padded = bytearray(_packet(with_extensions=False, payload=b"ab"))
    padded[0] |= 0x20
    padded[-1] = 200
    assert parse_rtp_header(bytes(padded)) is None


def test_rewrite_changes_only_the_ssrc_and_remembers_the_packet() -> None:
    stream = ForwardedStream(ssrc=0xCAFEBABE)
    data = _packet(sequence_number=65535)
    header = parse_rtp_header(data)
    assert header is not None
    sent = stream.rewrite(data, header, now=1_700_000_000.5)
    assert sent[:8] == data[:8] and sent[12:] == data[12:]
    assert RtpPacket.parse(sent).ssrc == 0xCAFEBABE
    assert stream.recall(65535) == sent
    assert stream.recall(65535 - HISTORY_SIZE) is None  # same slot, other packet
    assert stream.recall(3) is None
    assert (stream.packets_sent, stream.payload_bytes_sent) == (1, payload_bytes(data, header))
    assert stream.last_timestamp == header.timestamp
    assert stream.last_sent_ntp == ntp_timestamp(1_700_000_000.5)


def test_history_keeps_the_last_packets_only() -> None:
    stream = ForwardedStream(ssrc=1)
    for sequence_number in range(HISTORY_SIZE + 10):
        data = _packet(sequence_number=sequence_number)
        header = parse_rtp_header(data)
        assert header is not None
        stream.rewrite(data, header, now=0.0)
    assert stream.recall(5) is None
    assert stream.recall(10) is not None
    assert stream.recall(HISTORY_SIZE + 9) is not None


def test_retransmission_is_what_aiortc_would_send() -> None:
    data = _packet(csrc=(9,), padding=3)
    header = parse_rtp_header(data)
    assert isinstance(header, RtpHeader)
    ours = RtpPacket.parse(wrap_retransmission(data, header, 97, 4242, 0x0BADF00D))
    theirs = wrap_rtx(RtpPacket.parse(data), payload_type=97, sequence_number=4242, ssrc=0x0BADF00D)
    for field in ("payload_type", "marker", "sequence_number", "timestamp", "ssrc", "csrc"):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.payload == theirs.payload
    assert ours.padding_size == 0


def test_ntp_time_matches_aiortc_clock() -> None:
    moment = datetime.datetime(2026, 11, 28, 12, 0, 0, 250_000, tzinfo=datetime.UTC)
    expected = clock.datetime_to_ntp(moment)
    assert abs(ntp_timestamp(moment.timestamp()) - expected) < (1 << 32) // 1_000_000


def test_readdressed_retransmission_keeps_its_payload() -> None:
    original = _packet(sequence_number=77, payload=b"media")
    header = parse_rtp_header(original)
    assert header is not None
    incoming = wrap_retransmission(original, header, 97, 5, 0xAAAA)
    outgoing = RtpPacket.parse(readdress(incoming, 99, 6000, 0xBBBB))
    assert (outgoing.payload_type, outgoing.sequence_number, outgoing.ssrc) == (99, 6000, 0xBBBB)
    assert outgoing.payload == RtpPacket.parse(incoming).payload == b"\x00\x4dmedia"
    assert (outgoing.timestamp, outgoing.marker) == (header.timestamp, header.marker)
