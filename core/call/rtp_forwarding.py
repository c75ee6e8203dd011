"""Echoing RTP packet by packet, as a media server does: no reassembly, no re-packetising.

The echo peer sends every RTP packet it receives straight back under its own sender's SSRC.
Sequence numbers, timestamps, marker and header extensions pass through unchanged, so a packet
lost on the way in leaves a gap on the way out, exactly as with Janus's echotest: the caller's
downstream figures describe the whole loop (``callpath.core.call.engine`` takes the upstream share
back out).

Pure logic over bytes, with the time passed in; the aiortc wiring is in
``callpath.core.call.library_adapter``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_HEADER_BYTES = 12
RTP_VERSION = 2
# Packets kept for retransmission: as many as aiortc's own sender keeps.
HISTORY_SIZE = 128
NTP_UNIX_OFFSET_S = 2_208_988_800

_FIXED_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")


@dataclass(slots=True)
class RtpHeader:
    """The parts of a packet that forwarding and receiver statistics read (field names as
    aiortc's ``RtpPacket``, which its statistics classes accept)."""

    payload_type: int
    marker: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload_offset: int
    padding_size: int


def payload_bytes(packet: bytes, header: RtpHeader) -> int:
    """Bytes after the header, padding excluded: what a sender report counts."""
    return len(packet) - header.payload_offset - header.padding_size


def parse_rtp_header(packet: bytes) -> RtpHeader | None:
    """The header of an RTP packet (decrypted), or None when it is not a well-formed one."""
    if len(packet) < RTP_HEADER_BYTES:
        return None
    first, second, sequence_number, timestamp, ssrc = _FIXED_HEADER.unpack_from(packet)
    if first >> 6 != RTP_VERSION:
        return None
    offset = RTP_HEADER_BYTES + 4 * (first & 0x0F)
    if first & 0x10:  # header extensions: skipped whole, they pass through unchanged
        if len(packet) < offset + 4:
            return None
        _profile, words = _EXTENSION_HEADER.unpack_from(packet, offset)
        offset += 4 + 4 * words
        if len(packet) < offset:
            return None
    padding = packet[-1] if first & 0x20 and len(packet) > offset else 0
    if offset + padding > len(packet):
        return None
    return RtpHeader(
        payload_type=second & 0x7F,
        marker=second >> 7,
        sequence_number=sequence_number,
        timestamp=timestamp,
        ssrc=ssrc,
        payload_offset=offset,
        padding_size=padding,
    )


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP time (RFC 3550 sender reports) of a UNIX time."""
    return int((unix_time + NTP_UNIX_OFFSET_S) * (1 << 32))


def wrap_retransmission(
    packet: bytes, header: RtpHeader, payload_type: int, sequence_number: int, ssrc: int
) -> bytes:
    """An RFC 4588 retransmission of ``packet``: the RTX payload type, sequence number and SSRC,
    the original sequence number in front of the payload, padding dropped."""
    first = packet[0] & ~0x20 & 0xFF
    second = (packet[1] & 0x80) | payload_type
    fixed = _FIXED_HEADER.pack(first, second, sequence_number, header.timestamp, ssrc)
    end = len(packet) - header.padding_size
    return b"".join(
        (
            fixed,
            packet[RTP_HEADER_BYTES : header.payload_offset],
            header.sequence_number.to_bytes(2, "big"),
            packet[header.payload_offset : end],
        )
    )


def readdress(packet: bytes, payload_type: int, sequence_number: int, ssrc: int) -> bytes:
    """``packet`` with another payload type, sequence number and SSRC, the rest unchanged:
    how a retransmission (RFC 4588) that came in is sent on, since its payload, the original
    sequence number and the media, is the same both ways."""
    first_two = bytes((packet[0], (packet[1] & 0x80) | payload_type))
    return b"".join(
        (
            first_two,
            sequence_number.to_bytes(2, "big"),
            packet[4:8],
            ssrc.to_bytes(4, "big"),
            packet[RTP_HEADER_BYTES:],
        )
    )


class ForwardedStream:
    """One received stream sent back under ``ssrc``.

    Remembers the last ``HISTORY_SIZE`` packets it sent so that a retransmission request can be
    answered, and counts what it sent for the sender's reports."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self._ssrc_bytes = ssrc.to_bytes(4, "big")
        self._history: list[bytes | None] = [None] * HISTORY_SIZE
        self.packets_sent = 0
        self.payload_bytes_sent = 0
        self.last_timestamp = 0
        self.last_sent_ntp = 0

    def rewrite(self, packet: bytes, header: RtpHeader, now: float) -> bytes:
        """``packet`` as this stream sends it; ``now`` is the UNIX time."""
        forwarded = b"".join((packet[:8], self._ssrc_bytes, packet[RTP_HEADER_BYTES:]))
        self._history[header.sequence_number % HISTORY_SIZE] = forwarded
        self.packets_sent += 1
        self.payload_bytes_sent += payload_bytes(packet, header)
        self.last_timestamp = header.timestamp
        self.last_sent_ntp = ntp_timestamp(now)
        return forwarded

    def recall(self, sequence_number: int) -> bytes | None:
        """The packet sent with ``sequence_number``, if it is still remembered."""
        packet = self._history[sequence_number % HISTORY_SIZE]
        if packet is None or int.from_bytes(packet[2:4], "big") != sequence_number:
            return None
        return packet
