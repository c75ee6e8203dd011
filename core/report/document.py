"""``RunResult`` → versioned JSON report, with redaction, atomic writes and schema validation.

The format is described in docs/report-format.md and assets/schemas/report.schema.json.
Redaction replaces every IP address and host name in the fields that carry them with a
pseudonym that is stable within one report; secrets are scrubbed whatever the redaction flag.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callpath.core import __version__
from callpath.core.model.errors import LocatedError
from callpath.core.model.json_input import load_bounded_json
from callpath.core.model.results import (
    HOLD_VERSION,
    HoldResult,
    MediaKind,
    MediaQuality,
    PathResult,
    QualitySample,
    RunResult,
    SelectedPair,
    StageResult,
)
from callpath.core.model.yaml_input import YamlLimits, read_input_file
from callpath.core.present.headline import headline
from callpath.core.resources import asset_path

if TYPE_CHECKING:
    from callpath.core.model.findings import Finding
    from callpath.core.model.probe_results import ProbeResult

SCHEMA_VERSION = 1
SOFTWARE_NAME = "callpath"
# Reports the echo server's phone test page builds (assets/web/app.js) name their own client.
SOFTWARE_NAMES = (SOFTWARE_NAME, "callpath-web")
SECRET_MASK = "***"

# Keys whose values are secrets by their name, wherever they appear in evidence.
_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|credential|token|secret|authori[sz]ation|api_?key|private_?key",
    re.IGNORECASE,
)
# user:password@ in a URL (a proxy URL put in ``server`` or evidence).
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# Candidates only; each is checked with the ipaddress module before it is replaced.
_IPV6_CANDIDATE = re.compile(r"(?<![\w:.%])[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(?:%[\w.-]+)?")
_IPV4_CANDIDATE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
# A dotted name ending in an alphabetic top-level label: relay.example.org, abc.local.
_HOST_NAME = re.compile(
    r"(?<![\w.-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-]|\.\w)"
)


class ReportError(ValueError):
    """A file or dict that is not a valid CallPath report of a version this code reads."""


class Redactor:
    """Replaces addresses and host names with ``host-N`` pseudonyms, stable within one report.

    Loopback addresses are kept: they reveal nothing about the user or the servers.
    """

    def __init__(self) -> None:
        self._pseudonyms: dict[str, str] = {}

    def text(self, value: str) -> str:
        value = _IPV6_CANDIDATE.sub(self._ipv6, value)
        value = _IPV4_CANDIDATE.sub(self._ipv4, value)
        return _HOST_NAME.sub(lambda match: self._pseudonym(match.group(0).lower()), value)

    def value(self, value: Any) -> Any:
        """Redact every string inside ``value`` (dict keys included), recursively."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(key): self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def _ipv6(self, match: re.Match[str]) -> str:
        # A sentence's full stop or a trailing colon is not part of the address.
        candidate = match.group(0).rstrip(".:")
        tail = match.group(0)[len(candidate) :]
        if candidate.count(":") < 2:
            return match.group(0)
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            return match.group(0)
        mapped = address.ipv4_mapped
        if address.is_loopback or (mapped is not None and mapped.is_loopback):
            return match.group(0)
        return self._pseudonym(str(address)) + tail

    def _ipv4(self, match: re.Match[str]) -> str:
        candidate = match.group(0)
        try:
            address = ipaddress.IPv4Address(candidate)
        except ValueError:
            return candidate
        return candidate if address.is_loopback else self._pseudonym(str(address))

    def _pseudonym(self, original: str) -> str:
        if original not in self._pseudonyms:
            self._pseudonyms[original] = f"host-{len(self._pseudonyms) + 1}"
        return self._pseudonyms[original]


def report_to_dict(run: RunResult, *, redact: bool = True) -> dict[str, Any]:
    """The JSON-ready report of ``run`` (schema version ``SCHEMA_VERSION``)."""
    redactor = Redactor() if redact else None
    return {
        "schema_version": SCHEMA_VERSION,
        "software": {"name": SOFTWARE_NAME, "version": __version__},
        "started_at": _timestamp(run.started_at),
        "finished_at": _timestamp(run.finished_at),
        "profile": run.profile_name,
        "target": run.target,
        "scenario": run.scenario,
        "cancelled": run.cancelled,
        "redacted": redact,
        "paths": [_with_hold(path_to_dict(path, redactor), run, redactor) for path in run.paths],
        "verdict": {
            "voice": {"restored_by": list(run.verdict.voice_restored_by)},
            "video": {"restored_by": list(run.verdict.video_restored_by)},
            # A run that did not pass through the investigation has no headline yet.
            "headline": run.verdict.headline or headline(run),
        },
        "probes": [_probe(probe, redactor) for probe in run.probes],
        "findings": [_finding(finding, redactor) for finding in run.findings],
        **({"route": run.route.to_dict()} if run.route is not None else {}),
    }


def write_report(path: Path, run: RunResult, *, redact: bool = True) -> None:
    """Write the report atomically: readers see the old file or the whole new one."""
    write_report_dict(path, report_to_dict(run, redact=redact))


def write_report_dict(path: Path, data: dict[str, Any]) -> None:
    """Write an already built (or loaded) report dict atomically."""
    write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    """Write UTF-8 text through a temporary file in the same folder and one rename."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed before the rename below
        mode="w",
        encoding="utf-8",
        dir=path.parent,
        prefix=f".{path.name}.",
        suffix=".tmp",
        delete=False,
    )
    temporary = Path(handle.name)
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def redact_addresses(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a report dict with the addresses in its paths replaced by pseudonyms, as
    ``report_to_dict(redact=True)`` writes them; for reports other front ends built (the echo
    server checks the ones the phone test page sends as redacted)."""
    redactor = Redactor()
    copy: dict[str, Any] = json.loads(json.dumps(data))
    for path in copy.get("paths") or ():
        if not isinstance(path, dict):
            continue
        if isinstance(path.get("server"), str):
            path["server"] = redactor.text(path["server"])
        pair = path.get("selected_pair")
        if isinstance(pair, dict):
            for key in ("local_address", "remote_address", "relay_server"):
                if isinstance(pair.get(key), str):
                    pair[key] = redactor.text(pair[key])
        for stage in path.get("stages") or ():
            if isinstance(stage, dict) and isinstance(stage.get("evidence"), dict):
                stage["evidence"] = redactor.value(stage["evidence"])
    return copy


MAX_REPORT_BYTES = 16 * 1024 * 1024
MAX_REPORT_DEPTH = 32
REPORT_LIMITS = YamlLimits(max_bytes=MAX_REPORT_BYTES)


class _UnreadableReport(LocatedError):
    pass


def load_report(path: Path) -> dict[str, Any]:
    """Read and validate a report file; ``ReportError`` names the file when it is not one.

    Only regular files of at most 16 MB are read (never a FIFO or device); JSON nested deeper
    than 32 levels, ``NaN``/``Infinity`` and over-long numbers are refused before the schema
    check, which then checks every field."""
    try:
        text = read_input_file(path, limits=REPORT_LIMITS, error_type=_UnreadableReport)
    except _UnreadableReport as error:
        raise ReportError(f"{path}: cannot read a CallPath report: {error.message}") from None
    try:
        data = load_bounded_json(text, max_depth=MAX_REPORT_DEPTH)
    except ValueError as error:
        raise ReportError(f"{path}: cannot read a CallPath report: {error}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("software"), dict)
        or data["software"].get("name") not in SOFTWARE_NAMES
        or "schema_version" not in data
    ):
        raise ReportError(f"{path}: not a CallPath report")
    version = data["schema_version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise ReportError(
            f"{path}: unknown report schema_version {version!r} "
            f"(this CallPath reads version {SCHEMA_VERSION})"
        )
    try:
        validate_report(data)
    except ReportError as error:
        raise ReportError(f"{path}: {error}") from error
    return data


def validate_report(data: dict[str, Any]) -> None:
    """Check ``data`` against the report schema; the error names the JSON path of the problem."""
    # jsonschema is imported here so that writing reports never depends on it.
    import jsonschema  # type: ignore[import-untyped, unused-ignore]

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise ReportError(f"{error.json_path}: {error.message}")


def schema_path() -> Path:
    return asset_path("schemas", "report.schema.json")


def path_to_dict(path: PathResult, redactor: Redactor | None = None) -> dict[str, Any]:
    """One path as the report holds it (redacted when given a redactor)."""
    encoded = {
        "id": path.path_id,
        "exercised": path.exercised,
        "failure": _redacted(path.failure, redactor),
        "server": _redacted(_scrub_userinfo(path.server), redactor),
        "duration_s": _round(path.duration, 3),
        "selected_pair": _selected_pair(path.selected_pair, redactor),
        "stages": [_stage(stage, redactor) for stage in path.stages],
        "voice": _media(path.voice),
        "video": _media(path.video),
    }
    if path.sni_attempts:
        # The relay's own name (tried first) is redacted like the server; the alternatives are
        # public names from a censor's allowlist, and which one carried the call is the point.
        encoded["sni_attempts"] = [
            {
                "server_name": (
                    _redacted(attempt.server_name, redactor) if index == 0 else attempt.server_name
                ),
                "failure": _redacted(attempt.failure, redactor),
            }
            for index, attempt in enumerate(path.sni_attempts)
        ]
    return encoded


def _with_hold(
    encoded: dict[str, Any], run: RunResult, redactor: Redactor | None
) -> dict[str, Any]:
    hold = next((h for h in run.holds if h.path_id == encoded["id"]), None)
    if hold is not None:
        encoded["hold"] = hold_to_dict(hold, redactor)
    return encoded


def hold_to_dict(hold: HoldResult, redactor: Redactor | None = None) -> dict[str, Any]:
    """A held path's ``hold`` section (its own ``version``, docs/report-format.md)."""
    return {
        "version": HOLD_VERSION,
        "held_for": [kind.value for kind in hold.held_for],
        "asked_s": _round(hold.asked_s, 1),
        "achieved_s": _round(hold.achieved_s, 1),
        "ended": hold.ended.value,
        "ended_at_s": _round(hold.ended_at_s, 1),
        "mechanism": hold.mechanism,
        "flow_age_s": _round(hold.flow_age_s, 1),
        "directions": [
            {
                "direction": end.direction.value,
                "stopped_at_s": _round(end.at_s, 1),
                "bytes": end.bytes,
                "flow_age_s": _round(end.flow_age_s, 1),
            }
            for end in hold.directions
        ],
        "evidence": _evidence(hold.evidence, redactor),
        "series": {
            "bytes": [
                {"t": _round(tick.t, 3), "sent": tick.sent_bytes, "received": tick.received_bytes}
                for tick in hold.ticks
            ],
            **{
                kind.value: [_sample(s) for s in hold.samples if s.kind == kind]
                for kind in MediaKind
            },
        },
    }


def _selected_pair(pair: SelectedPair | None, redactor: Redactor | None) -> dict[str, Any] | None:
    if pair is None:
        return None
    return {
        "local_type": pair.local_type,
        "local_address": _redacted(pair.local_address, redactor),
        "local_port": pair.local_port,
        "remote_type": pair.remote_type,
        "remote_address": _redacted(pair.remote_address, redactor),
        "remote_port": pair.remote_port,
        "relay_transport": pair.relay_transport,
        "relay_server": _redacted(pair.relay_server, redactor),
    }


def _stage(stage: StageResult, redactor: Redactor | None) -> dict[str, Any]:
    return {
        "stage": str(stage.stage),
        "started_at_s": _round(stage.started_at, 3),
        "duration_s": _round(stage.duration, 3),
        "failure": _redacted(stage.failure, redactor),
        "evidence": _evidence(stage.evidence, redactor),
    }


def _evidence(evidence: Mapping[str, Any], redactor: Redactor | None) -> Any:
    clean = _scrub_secrets(_json_value(evidence))
    return redactor.value(clean) if redactor is not None else clean


def _probe(probe: ProbeResult, redactor: Redactor | None) -> dict[str, Any]:
    return {
        "probe": probe.probe,
        "target": _redacted(probe.target, redactor),
        "control": probe.control,
        "started_at_s": _round(max(0.0, probe.started_at), 3),
        "duration_s": _round(max(0.0, probe.duration), 3),
        "failure": _redacted(probe.failure, redactor),
        "evidence": _evidence(probe.evidence, redactor),
    }


def _finding(finding: Finding, redactor: Redactor | None) -> dict[str, Any]:
    def text(value: str) -> str:
        return value if redactor is None else redactor.text(value)

    return {
        "mechanism": finding.mechanism,
        "censorship": finding.censorship,
        "confidence": str(finding.confidence),
        "paths": list(finding.paths),
        "summary": text(finding.summary),
        "recommendation": text(finding.recommendation),
        "technical": text(finding.technical),
        "evidence": _evidence(finding.evidence, redactor),
    }


def _media(quality: MediaQuality) -> dict[str, Any]:
    return {
        "grade": str(quality.grade),
        "mos": _round(quality.mos, 2),
        "rtt_ms": _round(quality.rtt_ms, 1),
        "jitter_ms": _round(quality.jitter_ms, 1),
        "loss_pct": _round(quality.loss_pct, 2),
        "bitrate_kbps": _round(quality.bitrate_kbps, 1),
        "reasons": list(quality.reasons),
        "samples": [_sample(sample) for sample in quality.samples],
    }


def _sample(sample: QualitySample) -> dict[str, Any]:
    return {
        "t": _round(sample.t, 3),
        "direction": str(sample.direction),
        "rtt_ms": _round(sample.rtt_ms, 1),
        "jitter_ms": _round(sample.jitter_ms, 1),
        "loss_pct": _round(sample.loss_pct, 2),
        "bitrate_kbps": _round(sample.bitrate_kbps, 1),
    }


def _redacted(value: str | None, redactor: Redactor | None) -> str | None:
    if value is None or redactor is None:
        return value
    return redactor.text(value)


def _scrub_userinfo(value: str | None) -> str | None:
    return None if value is None else _URL_USERINFO.sub(f"{SECRET_MASK}@", value)


def _scrub_secrets(value: Any) -> Any:
    """Mask values under secret-looking keys and credentials inside URLs, recursively."""
    if isinstance(value, str):
        return _scrub_userinfo(value)
    if isinstance(value, dict):
        return {
            key: SECRET_MASK if _SECRET_KEY.search(key) else _scrub_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_scrub_secrets(item) for item in value]
    return value


def _json_value(value: Any) -> Any:
    """Evidence as plain JSON types: dicts with string keys, lists, strings, finite numbers."""
    if isinstance(value, enum.Enum):
        return _json_value(value.value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(_json_value(key)): _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_json_value(item) for item in items]
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, datetime):
        return _timestamp(value)
    return str(value)


def _round(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z suffix; naive datetimes are taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
