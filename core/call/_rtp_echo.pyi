"""Types of the echo server's per-packet loop in C (core/call/_rtp_echo.c)."""

BATCH_SIZE: int
SLOT_BYTES: int

class EchoStream:
    def __init__(self, ssrc: int, history_size: int, nack: bool) -> None: ...
    @property
    def ssrc(self) -> int: ...
    packets_sent: int
    payload_bytes_sent: int
    last_timestamp: int
    last_sent_ntp: int
    unflushed: int
    source_ssrc: int
    clockrate: int
    base_seq: int
    max_seq: int
    cycles: int
    packets_received: int
    jitter_q4: int
    nack_max_seq: int
    receiving: int
    allowed: int
    packets_fast: int
    def mark_media(self, payload_type: int, /) -> None: ...
    def add(self, sequence_number: int, timestamp: int, now: float, /) -> None: ...
    def forward(self, packet: bytes, now: float, /) -> bytes: ...
    def recall(self, sequence_number: int, /) -> bytes | None: ...

class EchoSocket:
    def __init__(
        self,
        fd: int,
        rx_owner: object,
        rx_session: int,
        tx_owner: object,
        tx_session: int,
        unprotect: int,
        protect: int,
    ) -> None: ...
    @property
    def reads(self) -> int: ...
    @property
    def datagrams(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def received_bytes(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def sent_bytes(self) -> int: ...
    def add_stream(self, ssrc: bytes, stream: EchoStream, /) -> None: ...
    def set_destination(self, address: bytes, /) -> None: ...
    def read(self) -> list[tuple[EchoStream | None, bytes, bytes | None]] | None: ...
