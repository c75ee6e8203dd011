"""Exact bytes of the MASQUE wire formats: varints (RFC 9000 §A.1), HTTP Datagram payloads of
CONNECT-UDP (RFC 9298 §5), capsules (RFC 9297 §3.2, §3.5) and the URI template (RFC 9298 §2)."""

from __future__ import annotations

import pytest

from callpath.core.paths.masque.capsule import (
    CAPSULE_TYPE_DATAGRAM,
    Capsule,
    CapsuleError,
    CapsuleParser,
    IncompleteVarint,
    decode_udp_payload,
    decode_varint,
    encode_capsule,
    encode_datagram_capsule,
    encode_udp_payload,
    encode_varint,
    expand_udp_path,
    format_address,
    parse_address,
    parse_udp_path,
)

# RFC 9000 Appendix A.1, "Sample Variable-Length Integer Decoding".
RFC9000_SAMPLES = [
    (bytes.fromhex("c2197c5eff14e88c"), 151_288_809_941_952_652),
    (bytes.fromhex("9d7f3e7d"), 494_878_333),
    (bytes.fromhex("7bbd"), 15_293),
    (bytes.fromhex("25"), 37),
]


@pytest.mark.parametrize(("encoded", "value"), RFC9000_SAMPLES)
def test_varint_rfc9000_samples(encoded: bytes, value: int) -> None:
    assert decode_varint(encoded) == (value, len(encoded))
    assert encode_varint(value) == encoded


def test_varint_non_minimal_encoding_decodes() -> None:
    # RFC 9000 §A.1: "the two-byte sequence 0x40 0x25 also decodes to 37".
    assert decode_varint(bytes.fromhex("4025")) == (37, 2)


def test_varint_boundaries() -> None:
    assert encode_varint(63) == b"\x3f"
    assert encode_varint(64) == b"\x40\x40"
    assert encode_varint(16_383) == b"\x7f\xff"
    assert encode_varint(16_384) == b"\x80\x00\x40\x00"
    assert encode_varint(2**62 - 1) == b"\xff" * 8
    with pytest.raises(ValueError):
        encode_varint(2**62)
    with pytest.raises(ValueError):
        encode_varint(-1)


def test_varint_decode_at_offset_and_truncated() -> None:
    data = b"\xaa\x7b\xbd\x25"
    assert decode_varint(data, 1) == (15_293, 3)
    assert decode_varint(data, 3) == (37, 4)
    with pytest.raises(IncompleteVarint):
        decode_varint(b"\x9d\x7f\x3e")
    with pytest.raises(IncompleteVarint):
        decode_varint(b"\x25", 1)


def test_udp_payload_is_context_zero_then_bytes() -> None:
    # RFC 9298 §5: UDP Proxying Payload { Context ID (i), UDP Proxying Payload (..) }.
    assert encode_udp_payload(b"\x01\x02\x03") == b"\x00\x01\x02\x03"
    assert encode_udp_payload(b"") == b"\x00"
    assert decode_udp_payload(b"\x00hello") == b"hello"
    # A non-minimal Context ID 0 is still Context ID 0.
    assert decode_udp_payload(b"\x40\x00hello") == b"hello"


def test_udp_payload_unknown_context_or_truncated_is_dropped() -> None:
    assert decode_udp_payload(b"\x02hello") is None
    assert decode_udp_payload(b"\x40\x02hello") is None
    assert decode_udp_payload(b"") is None
    assert decode_udp_payload(b"\x40") is None


def test_capsule_layout() -> None:
    # Capsule { Type (i), Length (i), Value (..) }; DATAGRAM is type 0x00.
    assert encode_capsule(0x00, b"abc") == b"\x00\x03abc"
    assert encode_capsule(0x2028, b"") == b"\x60\x28\x00"
    value = bytes(100)
    assert encode_capsule(0x00, value) == b"\x00\x40\x64" + value
    assert encode_datagram_capsule(encode_udp_payload(b"rtp")) == b"\x00\x04\x00rtp"


def test_parser_whole_and_byte_by_byte() -> None:
    stream = (
        encode_datagram_capsule(b"\x00one")
        + encode_capsule(0x17, b"skip me")
        + encode_datagram_capsule(b"\x00" + bytes(300))
    )
    expected = [
        Capsule(CAPSULE_TYPE_DATAGRAM, b"\x00one"),
        Capsule(0x17, b"skip me"),
        Capsule(CAPSULE_TYPE_DATAGRAM, b"\x00" + bytes(300)),
    ]
    assert CapsuleParser().feed(stream) == expected

    parser = CapsuleParser()
    collected: list[Capsule] = []
    for index in range(len(stream)):
        collected.extend(parser.feed(stream[index : index + 1]))
    assert collected == expected
    assert parser.buffered == 0
    parser.finish()


def test_parser_keeps_partial_capsule() -> None:
    parser = CapsuleParser()
    assert parser.feed(b"\x00\x40") == []  # type, then half a two-byte length
    assert parser.feed(b"\x05ab") == []
    assert parser.buffered == 5
    with pytest.raises(CapsuleError):
        parser.finish()
    assert parser.feed(b"cde") == [Capsule(0, b"abcde")]
    parser.finish()


def test_parser_rejects_oversized_capsule() -> None:
    parser = CapsuleParser(max_capsule_length=10)
    with pytest.raises(CapsuleError):
        parser.feed(b"\x00\x0b")


def test_template_rfc9298_examples() -> None:
    # RFC 9298 §3.5 example request: ":path = /.well-known/masque/udp/192.0.2.6/443/".
    assert expand_udp_path("192.0.2.6", 443) == "/.well-known/masque/udp/192.0.2.6/443/"
    # RFC 9298 §3.1: "2001:db8::42" is encoded in the URI as "2001%3Adb8%3A%3A42".
    assert expand_udp_path("2001:db8::42", 443) == (
        "/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/"
    )
    assert expand_udp_path("[2001:db8::42]", 53) == (
        "/.well-known/masque/udp/2001%3Adb8%3A%3A42/53/"
    )
    assert expand_udp_path("turn.example.net", 3478) == (
        "/.well-known/masque/udp/turn.example.net/3478/"
    )


def test_template_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        expand_udp_path("192.0.2.6", 0)
    with pytest.raises(ValueError):
        expand_udp_path("192.0.2.6", 65536)
    with pytest.raises(ValueError):
        expand_udp_path("fe80::1%eth0", 443)


def test_parse_path_round_trip_and_rejects() -> None:
    assert parse_udp_path("/.well-known/masque/udp/192.0.2.6/443/") == ("192.0.2.6", 443)
    assert parse_udp_path("/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/") == (
        "2001:db8::42",
        443,
    )
    assert parse_udp_path("/.well-known/masque/udp/2001%3adb8%3a%3a42/443/") == (
        "2001:db8::42",
        443,
    )
    for host, port in [("198.51.100.7", 3478), ("::1", 9), ("relay.example.org", 19302)]:
        assert parse_udp_path(expand_udp_path(host, port)) == (host, port)
    for bad in [
        "/.well-known/masque/udp/192.0.2.6/443",  # no trailing slash
        "/.well-known/masque/udp/192.0.2.6/0/",
        "/.well-known/masque/udp/192.0.2.6/70000/",
        "/.well-known/masque/udp/192.0.2.6/44x/",
        "/.well-known/masque/udp/192.0.2.6/443/extra/",
        "/.well-known/masque/ip/192.0.2.6/443/",
        "/.well-known/masque/udp/bad%2Fhost/443/",
        "/.well-known/masque/udp/fe80%3A%3A1%25eth0/443/",
        "/.well-known/masque/udp//443/",
    ]:
        with pytest.raises(ValueError):
            parse_udp_path(bad)


def test_address_header_format() -> None:
    assert format_address("192.0.2.6", 50000) == "192.0.2.6:50000"
    assert format_address("2001:db8::42", 443) == "[2001:db8::42]:443"
    assert parse_address("192.0.2.6:50000") == ("192.0.2.6", 50000)
    assert parse_address("[2001:db8::42]:443") == ("2001:db8::42", 443)
    for bad in ["relay.example:443", "192.0.2.6", "192.0.2.6:0", "[::1]:x"]:
        with pytest.raises(ValueError):
            parse_address(bad)
