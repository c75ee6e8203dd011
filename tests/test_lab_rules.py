"""Unit tests of the lab censor's rules and of the SNI parsers, with fake time and fake flows."""

from __future__ import annotations

import itertools
import random
import ssl
import statistics
from collections.abc import Sequence

import pytest
from aioice import stun
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from callpath.core.lab.rules import (
    Action,
    AllowOnly,
    BlackholeAfter,
    BlockMode,
    BlockTcpConnect,
    BlockTlsSni,
    Censor,
    CutUdpFlow,
    Decision,
    Delay,
    DirectionCounters,
    DropQuic,
    DropStun,
    DropUdp,
    DropUdpTo,
    FlowDirection,
    FlowState,
    FreezeTcp,
    JitterDistribution,
    Packet,
    RandomLoss,
    Rule,
    Throttle,
    Transport,
    is_stun,
)
from callpath.core.lab.tls_sni import (
    CryptoChunk,
    ScanStatus,
    assemble_crypto_stream,
    is_quic_v1_long_header,
    read_quic_initial,
    scan_handshake_message,
    scan_tls_stream,
)

CLIENT = ("127.0.0.1", 40000)
OTHER_CLIENT = ("127.0.0.1", 40001)
RELAY = ("127.0.0.2", 3478)
ECHO = ("127.0.0.2", 50000)
ELSEWHERE = ("127.0.0.7", 3478)

OUT = FlowDirection.OUTBOUND
IN = FlowDirection.INBOUND
UDP = Transport.UDP
TCP = Transport.TCP


def packet(
    now: float = 0.0,
    payload: bytes = b"x" * 100,
    *,
    transport: Transport = UDP,
    direction: FlowDirection = OUT,
    client: tuple[str, int] = CLIENT,
    target: tuple[str, int] = RELAY,
    opening: bool = False,
) -> Packet:
    return Packet(now, transport, direction, client, target, payload, opening)


def run(rules: Sequence[Rule], packets: Sequence[Packet]) -> list[Decision]:
    censor = Censor(rules)
    return [censor.evaluate(p) for p in packets]


def actions(decisions: Sequence[Decision]) -> list[Action]:
    return [d.action for d in decisions]


def stun_request() -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    return bytes(message)


def client_hello(server_name: str | None) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def split_into_records(hello: bytes, size: int) -> bytes:
    """Re-frames one ClientHello record as several records of ``size`` handshake bytes."""
    header, body = hello[:5], hello[5:]
    records = b""
    for start in range(0, len(body), size):
        fragment = body[start : start + size]
        records += header[:3] + len(fragment).to_bytes(2, "big") + fragment
    return records


def quic_initial(server_name: str) -> bytes:
    connection = QuicConnection(
        configuration=QuicConfiguration(is_client=True, server_name=server_name)
    )
    connection.connect(ECHO, now=0.0)
    datagrams = connection.datagrams_to_send(now=0.0)
    return datagrams[0][0]


# --- 1, 2: UDP blocking ----------------------------------------------------------------------


def test_drop_udp_drops_both_directions_and_spares_tcp() -> None:
    decisions = run(
        [DropUdp()],
        [
            packet(0.0),
            packet(0.1, direction=IN),
            packet(0.2, transport=TCP),
            packet(0.3, transport=TCP, direction=IN),
        ],
    )
    assert actions(decisions) == [Action.DROP, Action.DROP, Action.PASS, Action.PASS]
    assert decisions[0].mechanism == "udp_blocked"
    assert decisions[0].rule == "drop_udp"


def test_drop_udp_can_be_limited_to_one_direction() -> None:
    decisions = run(
        [DropUdp(directions=frozenset({OUT}))], [packet(0.0), packet(0.1, direction=IN)]
    )
    assert actions(decisions) == [Action.DROP, Action.PASS]


def test_drop_udp_to_matches_networks_and_ports() -> None:
    by_network = DropUdpTo(addresses=frozenset({"127.0.0.0/30"}))
    assert actions(
        run([by_network], [packet(target=RELAY), packet(target=ELSEWHERE), packet(transport=TCP)])
    ) == [Action.DROP, Action.PASS, Action.PASS]

    by_port = DropUdpTo(ports=frozenset({3478}))
    assert actions(run([by_port], [packet(target=ELSEWHERE), packet(target=ECHO)])) == [
        Action.DROP,
        Action.PASS,
    ]

    both = DropUdpTo(addresses=frozenset({"127.0.0.2"}), ports=frozenset({3478}))
    decisions = run([both], [packet(target=RELAY), packet(target=ECHO), packet(target=ELSEWHERE)])
    assert actions(decisions) == [Action.DROP, Action.PASS, Action.PASS]
    assert decisions[0].mechanism == "udp_ip_blocked"


def test_drop_udp_to_refuses_empty_or_bad_configuration() -> None:
    with pytest.raises(ValueError):
        DropUdpTo()
    with pytest.raises(ValueError):
        DropUdpTo(addresses=frozenset({"not-an-address"}))


# --- 3: STUN by signature --------------------------------------------------------------------


def test_is_stun_tells_stun_from_channel_data_and_random_bytes() -> None:
    request = stun_request()
    assert is_stun(request)
    rng = random.Random(7)
    same_size_random = bytes(rng.randrange(256) for _ in range(len(request)))
    assert not is_stun(same_size_random)
    # ChannelData (first byte 0x40-0x7F) whose payload happens to hold the cookie at 4..8.
    channel_data = b"\x40\x00\x00\x10" + b"\x21\x12\xa4\x42" + b"\x00" * 12
    assert not is_stun(channel_data)
    assert not is_stun(request[:19])


def test_drop_stun_drops_only_stun() -> None:
    request = stun_request()
    decoy = bytes(random.Random(1).randrange(256) for _ in range(len(request)))
    decisions = run(
        [DropStun()],
        [
            packet(0.0, request),
            packet(0.1, decoy),
            packet(0.2, request, direction=IN),
            packet(0.3, request, transport=TCP),
        ],
    )
    assert actions(decisions) == [Action.DROP, Action.PASS, Action.DROP, Action.PASS]
    assert decisions[0].mechanism == "stun_signature_blocked"


# --- 4: flow cut-off and residual block ------------------------------------------------------


def test_cut_after_packets_counts_both_directions_then_drops_both() -> None:
    flow = [packet(i * 0.1, direction=OUT if i % 2 == 0 else IN) for i in range(8)]
    decisions = run([CutUdpFlow(max_packets=5)], flow)
    assert actions(decisions) == [Action.PASS] * 5 + [Action.DROP] * 3
    assert decisions[5].mechanism == "udp_flow_cutoff"


def test_cut_is_per_flow() -> None:
    decisions = run(
        [CutUdpFlow(max_packets=2)],
        [packet(0.0), packet(0.1), packet(0.2), packet(0.3, client=OTHER_CLIENT)],
    )
    assert actions(decisions) == [Action.PASS, Action.PASS, Action.DROP, Action.PASS]


def test_cut_after_bytes_lets_the_crossing_packet_through() -> None:
    decisions = run([CutUdpFlow(max_bytes=250)], [packet(i, b"y" * 100) for i in range(5)])
    assert actions(decisions) == [Action.PASS, Action.PASS, Action.PASS, Action.DROP, Action.DROP]


def test_cut_after_seconds() -> None:
    decisions = run([CutUdpFlow(max_seconds=2.0)], [packet(t) for t in (0.0, 1.0, 1.99, 2.0, 5.0)])
    assert actions(decisions) == [Action.PASS, Action.PASS, Action.PASS, Action.DROP, Action.DROP]


def test_residual_block_drops_new_flows_to_the_same_address_for_a_while() -> None:
    rule = CutUdpFlow(max_packets=2, residual_block_s=10.0)
    decisions = run(
        [rule],
        [
            packet(0.0),
            packet(0.1),
            packet(0.2),  # cut here, at t=0.2: residual block until 10.2
            packet(1.0, client=OTHER_CLIENT),  # new flow, same outside IP, other port
            packet(1.1, client=OTHER_CLIENT, target=("127.0.0.2", 9999)),
            packet(1.2, client=OTHER_CLIENT, target=ELSEWHERE),  # another IP: fine
            packet(10.3, client=("127.0.0.1", 40002)),  # after the residual block
        ],
    )
    assert actions(decisions) == [
        Action.PASS,
        Action.PASS,
        Action.DROP,
        Action.DROP,
        Action.DROP,
        Action.PASS,
        Action.PASS,
    ]
    assert [d.mechanism for d in decisions[2:5]] == [
        "udp_flow_cutoff",
        "residual_block",
        "residual_block",
    ]


def test_cut_needs_a_limit() -> None:
    with pytest.raises(ValueError):
        CutUdpFlow()


# --- 5: throttling ---------------------------------------------------------------------------


def test_throttle_drops_udp_beyond_the_bucket_and_refills() -> None:
    rule = Throttle(rate_bytes_per_s=1000, burst_bytes=300)
    decisions = run(
        [rule],
        [
            packet(0.0),
            packet(0.0),
            packet(0.0),
            packet(0.0),  # burst of 300 spent
            packet(0.1),  # 100 bytes refilled
            packet(0.1),
        ],
    )
    assert actions(decisions) == [
        Action.PASS,
        Action.PASS,
        Action.PASS,
        Action.DROP,
        Action.PASS,
        Action.DROP,
    ]
    assert decisions[3].mechanism == "udp_throttled"


def test_throttle_delays_tcp_by_the_debt() -> None:
    rule = Throttle(rate_bytes_per_s=1000, burst_bytes=500)
    chunk = b"z" * 500
    decisions = run(
        [rule],
        [
            packet(0.0, chunk, transport=TCP),
            packet(0.0, chunk, transport=TCP),
            packet(0.0, chunk, transport=TCP),
        ],
    )
    assert actions(decisions) == [Action.PASS, Action.DELAY, Action.DELAY]
    assert decisions[1].delay_s == pytest.approx(0.5)
    assert decisions[2].delay_s == pytest.approx(1.0)


def test_throttle_buckets_are_per_direction() -> None:
    rule = Throttle(rate_bytes_per_s=10, burst_bytes=100)
    decisions = run([rule], [packet(0.0), packet(0.0, direction=IN), packet(0.0)])
    assert actions(decisions) == [Action.PASS, Action.PASS, Action.DROP]


def test_a_shared_throttle_is_one_bucket_for_every_flow() -> None:
    """A link's rate cap: a second flow finds the bucket the first one emptied."""
    other = ("127.0.0.9", 5000)
    per_flow = Throttle(rate_bytes_per_s=10, burst_bytes=100)
    shared = Throttle(rate_bytes_per_s=10, burst_bytes=100, shared=True)
    sequence = [packet(0.0), packet(0.0, target=other)]
    assert actions(run([per_flow], sequence)) == [Action.PASS, Action.PASS]
    assert actions(run([shared], sequence)) == [Action.PASS, Action.DROP]


# --- 6: random loss --------------------------------------------------------------------------


def test_random_loss_is_reproducible_and_within_binomial_bounds() -> None:
    packets = [packet(i * 0.001) for i in range(10_000)]
    first = actions(run([RandomLoss(0.2, seed=42)], packets))
    again = actions(run([RandomLoss(0.2, seed=42)], packets))
    other_seed = actions(run([RandomLoss(0.2, seed=43)], packets))
    assert first == again
    assert first != other_seed
    lost = first.count(Action.DROP)
    # mean 2000, standard deviation 40: five deviations either way
    assert 1800 <= lost <= 2200


def test_random_loss_extremes_and_tcp() -> None:
    assert actions(run([RandomLoss(0.0)], [packet(i) for i in range(50)])) == [Action.PASS] * 50
    assert actions(run([RandomLoss(1.0)], [packet(i) for i in range(50)])) == [Action.DROP] * 50
    assert actions(run([RandomLoss(1.0)], [packet(transport=TCP)])) == [Action.PASS]
    with pytest.raises(ValueError):
        RandomLoss(1.5)


# --- 7: delay and jitter ---------------------------------------------------------------------


def test_delay_without_jitter_is_exact_per_direction() -> None:
    rule = Delay.round_trip(0.1, outbound_share=0.3)
    decisions = run([rule], [packet(0.0), packet(0.01, direction=IN), packet(0.02, transport=TCP)])
    assert [d.delay_s for d in decisions] == pytest.approx([0.03, 0.07, 0.03])
    assert actions(decisions) == [Action.DELAY] * 3


def test_uniform_jitter_stays_within_bounds_and_is_reproducible() -> None:
    rule = Delay(outbound_s=0.05, inbound_s=0.05, jitter_s=0.01, preserve_order=False, seed=3)
    packets = [packet(i * 0.02) for i in range(2000)]
    delays = [d.delay_s for d in run([rule], packets)]
    assert all(0.04 <= d <= 0.06 for d in delays)
    assert statistics.mean(delays) == pytest.approx(0.05, abs=0.001)
    assert delays == [d.delay_s for d in run([rule], packets)]


def test_normal_jitter_has_the_configured_spread_and_is_never_negative() -> None:
    rule = Delay(
        outbound_s=0.05,
        jitter_s=0.01,
        distribution=JitterDistribution.NORMAL,
        preserve_order=False,
        seed=5,
    )
    delays = [d.delay_s for d in run([rule], [packet(i * 0.1) for i in range(5000)])]
    assert statistics.mean(delays) == pytest.approx(0.05, abs=0.001)
    assert statistics.stdev(delays) == pytest.approx(0.01, rel=0.05)
    wide = Delay(outbound_s=0.001, jitter_s=0.05, distribution=JitterDistribution.NORMAL)
    decisions = run([wide], [packet(i * 0.1) for i in range(500)])
    assert all(d.delay_s >= 0.0 for d in decisions)


def test_order_is_kept_by_default_and_can_be_given_up() -> None:
    packets = [packet(i * 0.001) for i in range(500)]  # 1 ms apart, jitter ±20 ms

    def departures(preserve_order: bool) -> list[float]:
        rule = Delay(outbound_s=0.05, jitter_s=0.02, preserve_order=preserve_order, seed=9)
        return [p.now + d.delay_s for p, d in zip(packets, run([rule], packets), strict=True)]

    def reorderings(times: list[float]) -> int:
        return sum(1 for a, b in itertools.pairwise(times) if b < a - 1e-9)

    assert reorderings(departures(True)) == 0
    assert reorderings(departures(False)) > 50


def test_censor_records_the_delays_it_applied() -> None:
    censor = Censor([Delay(outbound_s=0.02, inbound_s=0.03, jitter_s=0.005, seed=1)])
    decisions = [
        censor.evaluate(packet(i * 0.05, direction=OUT if i % 2 else IN)) for i in range(20)
    ]
    recorded = censor.applied_delays
    assert [r.delay_s for r in recorded] == [d.delay_s for d in decisions]
    assert [r.direction for r in recorded] == [OUT if i % 2 else IN for i in range(20)]
    assert censor.count("delay", Action.DELAY) == 20


# --- 8: TLS SNI ------------------------------------------------------------------------------


def test_scan_reads_sni_from_a_real_client_hello() -> None:
    hello = client_hello("Blocked.Example")
    assert scan_tls_stream(hello).server_name == "blocked.example"
    assert scan_tls_stream(client_hello(None)).status is ScanStatus.NO_SNI


def test_scan_needs_more_on_every_prefix_and_survives_record_fragmentation() -> None:
    hello = client_hello("blocked.example")
    for end in range(len(hello)):
        assert scan_tls_stream(hello[:end]).status is ScanStatus.NEED_MORE, end
    fragmented = split_into_records(hello, 37)
    assert scan_tls_stream(fragmented).server_name == "blocked.example"
    for end in range(0, len(fragmented), 13):
        assert not scan_tls_stream(fragmented[:end]).decided


def test_scan_rejects_non_tls_and_never_raises_on_garbage() -> None:
    assert scan_tls_stream(b"GET / HTTP/1.1\r\n").status is ScanStatus.NOT_CLIENT_HELLO
    assert scan_tls_stream(b"\x17\x03\x03\x00\x10").status is ScanStatus.NOT_CLIENT_HELLO
    hello = client_hello("blocked.example")
    rng = random.Random(11)
    for _ in range(2000):
        mutated = bytearray(hello[: rng.randrange(len(hello) + 1)])
        for _ in range(rng.randrange(4)):
            if mutated:
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        scan = scan_tls_stream(bytes(mutated))  # must not raise
        assert scan.status in ScanStatus
        scan_tls_stream(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))


def test_sni_rule_resets_a_blocked_name_reassembled_from_small_chunks() -> None:
    hello = client_hello("www.blocked.example")
    chunks = [hello[i : i + 50] for i in range(0, len(hello), 50)]
    rule = BlockTlsSni(frozenset({"Blocked.Example"}))
    decisions = run(
        [rule],
        [
            packet(i * 0.01, c, transport=TCP, target=("127.0.0.2", 443))
            for i, c in enumerate(chunks)
        ],
    )
    assert actions(decisions) == [Action.PASS] * (len(chunks) - 1) + [Action.RESET]
    assert decisions[-1].mechanism == "tls_sni_reset"


def test_sni_rule_spares_neutral_names_and_can_drop_instead() -> None:
    neutral = run(
        [BlockTlsSni(frozenset({"blocked.example"}))],
        [
            packet(0.0, client_hello("neutral.example"), transport=TCP),
            packet(0.1, b"later data", transport=TCP),
            packet(0.2, b"reply", transport=TCP, direction=IN),
        ],
    )
    assert actions(neutral) == [Action.PASS] * 3
    lookalike = run(
        [BlockTlsSni(frozenset({"blocked.example"}))],
        [packet(0.0, client_hello("notblocked.example"), transport=TCP)],
    )
    assert actions(lookalike) == [Action.PASS]
    exact_only = BlockTlsSni(frozenset({"blocked.example"}), include_subdomains=False)
    assert actions(
        run([exact_only], [packet(0.0, client_hello("a.blocked.example"), transport=TCP)])
    ) == [Action.PASS]
    dropped = run(
        [BlockTlsSni(frozenset({"blocked.example"}), mode=BlockMode.DROP)],
        [
            packet(0.0, client_hello("blocked.example"), transport=TCP),
            packet(0.1, b"reply", transport=TCP, direction=IN),
        ],
    )
    assert actions(dropped) == [Action.DROP, Action.DROP]
    assert dropped[0].mechanism == "tls_sni_drop"


# --- 9: TCP freeze ---------------------------------------------------------------------------


def test_freeze_keeps_exactly_the_first_bytes_inbound() -> None:
    chunk = b"d" * 6000
    decisions = run(
        [FreezeTcp(after_bytes=16 * 1024)],
        [packet(0.0, b"request", transport=TCP)]
        + [packet(0.1 + i, chunk, transport=TCP, direction=IN) for i in range(4)]
        + [packet(5.0, b"more request", transport=TCP)],
    )
    assert actions(decisions) == [
        Action.PASS,
        Action.PASS,
        Action.PASS,
        Action.FREEZE,
        Action.FREEZE,
        Action.PASS,
    ]
    assert decisions[3].keep_bytes == 16 * 1024 - 12000
    assert decisions[4].keep_bytes == 0
    assert decisions[3].mechanism == "tcp_freeze_16k"


def test_freeze_can_target_addresses() -> None:
    rule = FreezeTcp(after_bytes=10, addresses=frozenset({"127.0.0.7"}))
    decisions = run(
        [rule],
        [
            packet(0.0, b"e" * 100, transport=TCP, direction=IN, target=RELAY),
            packet(0.0, b"e" * 100, transport=TCP, direction=IN, target=ELSEWHERE),
        ],
    )
    assert actions(decisions) == [Action.PASS, Action.FREEZE]


def _freeze_points(rule: FreezeTcp, connections: int) -> list[int]:
    """Where each of ``connections`` fresh connections froze (bytes passed inbound)."""
    censor = Censor([rule])
    points = []
    for index in range(connections):
        client = ("127.0.0.1", 40000 + index)
        passed = 0
        for _ in range(80):  # 80 KB offered, 1 KB at a time
            decision = censor.evaluate(
                packet(0.0, b"x" * 1024, transport=TCP, direction=IN, client=client)
            )
            if decision.action is Action.FREEZE:
                passed += decision.keep_bytes
                break
            passed += 1024
        points.append(passed)
    return points


def test_freeze_range_gives_each_connection_its_own_point_reproducibly() -> None:
    rule = FreezeTcp(after_bytes=12 * 1024, after_bytes_max=34 * 1024, seed=5)
    points = _freeze_points(rule, 40)
    assert all(12 * 1024 <= p <= 34 * 1024 for p in points), points
    assert len(set(points)) > 20  # not one fixed number
    assert max(points) - min(points) > 12 * 1024  # spread over the range
    assert _freeze_points(rule, 40) == points  # the same seed, the same cuts
    assert (
        _freeze_points(FreezeTcp(after_bytes=12 * 1024, after_bytes_max=34 * 1024, seed=6), 40)
        != points
    )


def test_freeze_spares_connections_naming_an_allowlisted_server() -> None:
    rule = FreezeTcp(after_bytes=100, except_names=frozenset({"vk.com"}))
    allowed, foreign, plain = ("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)
    hello_allowed = client_hello("api.vk.com")  # subdomains of a listed name too
    decisions = run(
        [rule],
        [
            packet(0.0, hello_allowed[:40], transport=TCP, client=allowed),
            packet(0.0, hello_allowed[40:], transport=TCP, client=allowed),
            packet(0.1, b"s" * 5000, transport=TCP, direction=IN, client=allowed),
            packet(0.0, client_hello("turn.callpath.lab"), transport=TCP, client=foreign),
            packet(0.1, b"s" * 5000, transport=TCP, direction=IN, client=foreign),
            packet(0.0, b"GET / HTTP/1.1\r\n\r\n", transport=TCP, client=plain),
            packet(0.1, b"s" * 5000, transport=TCP, direction=IN, client=plain),
        ],
    )
    assert actions(decisions) == [
        Action.PASS,
        Action.PASS,
        Action.PASS,  # allowlisted: never frozen
        Action.PASS,
        Action.FREEZE,
        Action.PASS,
        Action.FREEZE,
    ]


def test_freeze_range_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="after_bytes_max"):
        FreezeTcp(after_bytes=100, after_bytes_max=50)


# --- 10: QUIC --------------------------------------------------------------------------------


def test_quic_initial_is_recognised_and_decrypted() -> None:
    datagram = quic_initial("quic.blocked.example")
    assert is_quic_v1_long_header(datagram)
    initial = read_quic_initial(datagram)
    assert initial is not None
    scan = scan_handshake_message(assemble_crypto_stream(initial.chunks))
    assert scan.server_name == "quic.blocked.example"
    assert read_quic_initial(b"\xc0" + datagram[1:40]) is None
    assert read_quic_initial(bytes(1200)) is None


def test_crypto_stream_reassembly_takes_chunks_in_any_order() -> None:
    stream = bytes(range(200))
    chunks = [
        CryptoChunk(100, stream[100:200]),
        CryptoChunk(0, stream[:60]),
        CryptoChunk(50, stream[50:120]),
    ]
    assert assemble_crypto_stream(chunks) == stream
    assert assemble_crypto_stream([CryptoChunk(10, stream[10:20])]) == b""


def test_drop_all_quic_v1_spares_other_udp() -> None:
    datagram = quic_initial("anything.example")
    version_2 = datagram[:1] + bytes.fromhex("6b3343cf") + datagram[5:]
    decisions = run(
        [DropQuic()],
        [
            packet(0.0, datagram),
            packet(0.1, version_2),
            packet(0.2, stun_request()),
            packet(0.3, b"\x40" * 50),
        ],
    )
    assert actions(decisions) == [Action.DROP, Action.PASS, Action.PASS, Action.PASS]
    assert decisions[0].mechanism == "quic_blocked"


def test_drop_quic_by_sni_blocks_the_whole_flow() -> None:
    rule = DropQuic(server_names=frozenset({"blocked.example"}))
    blocked = run(
        [rule],
        [
            packet(0.0, quic_initial("media.blocked.example")),
            packet(0.1, b"\x41" + bytes(60), direction=IN),
            packet(0.2, b"\x41" + bytes(60)),
        ],
    )
    assert actions(blocked) == [Action.DROP] * 3
    assert blocked[0].mechanism == "quic_sni_blocked"
    neutral = run(
        [rule],
        [
            packet(0.0, quic_initial("neutral.example")),
            packet(0.1, b"\x41" + bytes(60), direction=IN),
        ],
    )
    assert actions(neutral) == [Action.PASS, Action.PASS]


# --- 11: TCP connect -------------------------------------------------------------------------


def test_tcp_connect_block_acts_on_the_attempt_only() -> None:
    for mode, expected in ((BlockMode.DROP, Action.DROP), (BlockMode.RESET, Action.RESET)):
        rule = BlockTcpConnect(ports=frozenset({3478}), mode=mode)
        decisions = run(
            [rule],
            [
                packet(0.0, b"", transport=TCP, opening=True),
                packet(0.0, b"", transport=TCP, opening=True, target=("127.0.0.2", 443)),
                packet(0.1, b"data", transport=TCP),
            ],
        )
        assert actions(decisions) == [expected, Action.PASS, Action.PASS]
        assert decisions[0].mechanism == "tcp_connect_blocked"


# --- 12, 13: data blackhole, allowlist ------------------------------------------------------


def test_blackhole_after_a_handshake_worth_of_bytes() -> None:
    rule = BlackholeAfter(after_bytes=250)
    decisions = run(
        [rule],
        [packet(0.0), packet(0.1, direction=IN), packet(0.2), packet(0.3, direction=IN)],
    )
    assert actions(decisions) == [Action.PASS, Action.PASS, Action.PASS, Action.DROP]
    assert decisions[3].mechanism == "transport_data_blackhole"
    tcp = run(
        [rule],
        [packet(0.0, b"", transport=TCP, opening=True)]
        + [packet(0.1 + i, transport=TCP) for i in range(4)],
    )
    assert actions(tcp) == [Action.PASS] * 4 + [Action.DROP]


def test_allowlist_lets_only_tcp_443_through() -> None:
    rule = AllowOnly(ports=frozenset({443}), transports=frozenset({TCP}))
    decisions = run(
        [rule],
        [
            packet(0.0, b"", transport=TCP, opening=True, target=("127.0.0.2", 443)),
            packet(0.1, b"", transport=TCP, opening=True, target=RELAY),
            packet(0.2, target=("127.0.0.2", 443)),
        ],
    )
    assert actions(decisions) == [Action.PASS, Action.DROP, Action.DROP]
    assert decisions[1].mechanism == "allowlist_mode"


# --- the censor ------------------------------------------------------------------------------


def test_first_blocking_rule_wins_and_later_rules_do_not_see_the_packet() -> None:
    censor = Censor([DropStun(), Throttle(rate_bytes_per_s=1, burst_bytes=100)])
    assert censor.evaluate(packet(0.0, stun_request())).action is Action.DROP
    # The throttle was not charged for the STUN packet: its whole burst is still there.
    assert censor.evaluate(packet(0.0, b"q" * 100)).action is Action.PASS
    assert censor.counters == {"drop_stun": {Action.DROP: 1}}
    assert censor.mechanisms() == ("stun_signature_blocked",)
    assert censor.evaluated == 2
    assert censor.passed == 1


def test_delays_add_up() -> None:
    censor = Censor([Delay(outbound_s=0.01, label="a"), Delay(outbound_s=0.02, label="b")])
    decision = censor.evaluate(packet(0.0))
    assert decision.action is Action.DELAY
    assert decision.delay_s == pytest.approx(0.03)
    assert censor.applied_delays[0].delay_s == pytest.approx(0.03)


def test_flow_state_counts_every_packet_offered() -> None:
    censor = Censor([DropUdp(directions=frozenset({IN}))])
    censor.evaluate(packet(1.0, b"a" * 10))
    censor.evaluate(packet(2.0, b"b" * 20, direction=IN))
    censor.evaluate(packet(3.0, b"c" * 30))
    state = censor.flow_state(packet().flow)
    assert state == FlowState(
        first_seen=1.0,
        last_seen=3.0,
        outbound=DirectionCounters(packets=2, bytes=40),
        inbound=DirectionCounters(packets=1, bytes=20),
    )
    assert state is not None and (state.packets, state.bytes) == (3, 60)
    censor.forget(packet().flow)
    assert censor.flow_state(packet().flow) is None


def test_replacing_rules_keeps_the_memory_of_rules_that_stay() -> None:
    cut = CutUdpFlow(max_packets=100, residual_block_s=60.0)
    censor = Censor([cut])
    for i in range(101):
        censor.evaluate(packet(i * 0.01))  # the flow is cut at packet 101
    new_flow = packet(2.0, client=OTHER_CLIENT)
    censor.set_rules([DropStun(), CutUdpFlow(max_packets=100, residual_block_s=60.0)])
    assert censor.evaluate(new_flow).mechanism == "residual_block"
    censor.set_rules([CutUdpFlow(max_packets=100, residual_block_s=30.0)])  # a different rule
    assert censor.evaluate(packet(2.1, client=("127.0.0.1", 40009))).action is Action.PASS
    censor.set_rules([])
    assert censor.rules == ()
    assert censor.evaluate(packet(2.2)).action is Action.PASS
