"""Offers whose video has no codec the echo can forward (VP9-only, AV1-only browsers).

aiortc refuses a whole offer when one media section has no common codec. The echo server
instead answers the rest and rejects just that section, as JSEP allows: the section is taken out
of the offer aiortc sees, and put back into the answer with port 0 (rejected). Audio is still
echoed. Pure text functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

# What aiortc 1.16 negotiates; rtx/red/ulpfec only travel beside one of these.
SUPPORTED_CODECS = {
    "audio": frozenset({"OPUS", "PCMU", "PCMA"}),
    "video": frozenset({"VP8", "H264"}),
}
_HELPERS = frozenset({"RTX", "RED", "ULPFEC", "FLEXFEC-03", "TELEPHONE-EVENT", "CN"})


@dataclass(frozen=True)
class RejectedSection:
    index: int
    kind: str
    mid: str | None
    protocol: str
    first_format: str
    offered: tuple[str, ...]  # codec names, in offer order, helpers left out


@dataclass(frozen=True)
class SplitOffer:
    sdp: str  # the offer aiortc answers
    rejected: tuple[RejectedSection, ...]


def _sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    session: list[str] = []
    media: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        else:
            session.append(line)
    return session, media


def _join(lines: list[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


_STATIC_PAYLOAD_TYPES = {"0": "PCMU", "8": "PCMA"}


def _codecs(section: list[str]) -> tuple[str, ...]:
    names: list[str] = []
    mapped: set[str] = set()
    for line in section:
        if line.startswith("a=rtpmap:"):
            payload_type, _sep, encoding = line[len("a=rtpmap:") :].partition(" ")
            mapped.add(payload_type)
            name = encoding.split("/", 1)[0].upper()
            if name and name not in _HELPERS and name not in names:
                names.append(name)
    # Static payload types need no rtpmap line (RFC 3551).
    for payload_type in section[0].split()[3:]:
        static = _STATIC_PAYLOAD_TYPES.get(payload_type)
        if static and payload_type not in mapped and static not in names:
            names.append(static)
    return tuple(names)


def split_offer(sdp: str) -> SplitOffer:
    """Take the audio/video sections with no supported codec out of ``sdp``."""
    session, media = _sections(sdp)
    kept: list[list[str]] = []
    rejected: list[RejectedSection] = []
    for index, section in enumerate(media):
        fields = section[0][2:].split()
        kind = fields[0] if fields else ""
        offered = _codecs(section)
        port_zero = len(fields) > 1 and fields[1] == "0"
        if kind in SUPPORTED_CODECS and not port_zero and not set(offered) & SUPPORTED_CODECS[kind]:
            mid = next((line[6:] for line in section if line.startswith("a=mid:")), None)
            rejected.append(
                RejectedSection(
                    index=index,
                    kind=kind,
                    mid=mid,
                    protocol=fields[2] if len(fields) > 2 else "UDP/TLS/RTP/SAVPF",
                    first_format=fields[3] if len(fields) > 3 else "0",
                    offered=offered,
                )
            )
        else:
            kept.append(section)
    if not rejected:
        return SplitOffer(sdp, ())
    gone = {section.mid for section in rejected if section.mid is not None}
    new_session = []
    for line in session:
        if line.startswith("a=group:BUNDLE"):
            mids = [mid for mid in line.split()[1:] if mid not in gone]
            line = " ".join(["a=group:BUNDLE", *mids])
        new_session.append(line)
    return SplitOffer(
        _join(new_session + [line for section in kept for line in section]), tuple(rejected)
    )


def merge_answer(answer_sdp: str, rejected: tuple[RejectedSection, ...]) -> str:
    """Put each rejected section back into ``answer_sdp`` at its offer position, port 0."""
    if not rejected:
        return answer_sdp
    session, media = _sections(answer_sdp)
    for section in sorted(rejected, key=lambda section: section.index):
        lines = [
            f"m={section.kind} 0 {section.protocol} {section.first_format}",
            "c=IN IP4 0.0.0.0",
        ]
        if section.mid is not None:
            lines.append(f"a=mid:{section.mid}")
        lines.append("a=inactive")
        media.insert(min(section.index, len(media)), lines)
    return _join(session + [line for section in media for line in section])


def describe(rejected: RejectedSection) -> str:
    """``video offered only VP9 (the echo forwards VP8, H264)``, for logs and 4xx errors."""
    # The names come from the caller: a few, each cut short, keep log lines sane.
    names = [name[:24] for name in rejected.offered[:8]]
    offered = ", ".join(names) + (", …" if len(rejected.offered) > 8 else "") or "no codec"
    supported = ", ".join(sorted(SUPPORTED_CODECS[rejected.kind]))
    return f"{rejected.kind} offered only {offered} (the echo forwards {supported})"
