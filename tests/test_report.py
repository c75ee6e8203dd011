"""JSON report: content, redaction, atomic writes, loading and the schema
(callpath.core.report.document)."""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import callpath.core
from callpath.core.call.quality import summarize
from callpath.core.call.verdict import decide
from callpath.core.model.findings import Confidence, Finding
from callpath.core.model.probe_results import ProbeResult
from callpath.core.model.results import (
    Direction,
    MediaKind,
    PathResult,
    QualitySample,
    RunResult,
    SelectedPair,
    Stage,
    StageResult,
)
from callpath.core.report.decode import report_from_dict
from callpath.core.report.document import (
    SCHEMA_VERSION,
    ReportError,
    load_report,
    report_to_dict,
    schema_path,
    validate_report,
    write_report,
)

RELAY_IP = "203.0.113.7"
RELAY_V6 = "2001:db8::42"


def samples(kind: MediaKind, bitrate: float) -> tuple[QualitySample, ...]:
    result = []
    for second in range(1, 5):
        for direction in Direction:
            result.append(
                QualitySample(
                    t=second + 0.0004,
                    kind=kind,
                    direction=direction,
                    rtt_ms=41.26 if direction == Direction.SENT else None,
                    jitter_ms=3.14159,
                    loss_pct=0.123456,
                    bitrate_kbps=bitrate + 0.04,
                )
            )
    return tuple(result)


def tls_path() -> PathResult:
    audio = samples(MediaKind.AUDIO, 40)
    video = samples(MediaKind.VIDEO, 300)
    return PathResult(
        path_id="turn-tls",
        exercised=True,
        failure=None,
        stages=(
            StageResult(
                Stage.RESOLVE,
                0.0,
                0.0123456,
                evidence={
                    "host": "relay.example.org",
                    "addresses": [RELAY_IP, RELAY_V6, "127.0.0.1"],
                },
            ),
            StageResult(
                Stage.CONNECT,
                0.0124,
                0.2,
                evidence={"peer": f"{RELAY_IP}:443", "sni": "relay.example.org", "tls": "1.3"},
            ),
            StageResult(
                Stage.TURN_ALLOCATE,
                0.2124,
                0.1,
                evidence={
                    "relayed": f"[{RELAY_V6}]:50000",
                    "username": "alice",
                    "password": "hunter2",
                    "nested": {"Auth_Token": "abc", "items": [{"client_secret": "x"}]},
                    "proxy": "socks5://bob:pa55@proxy.example.net:1080",
                    "loopback": "[::1]:3478",
                },
            ),
            StageResult(Stage.ICE, 0.3, 0.5, evidence={"pairs_checked": 2}),
            StageResult(Stage.DTLS, 0.8, 0.1),
            StageResult(Stage.MEDIA_UP, 0.9, 0.2),
            StageResult(Stage.QUALITY, 1.1, 4.0),
        ),
        server="turns:relay.example.org:443?transport=tcp",
        selected_pair=SelectedPair(
            local_type="relay",
            local_address=RELAY_V6,
            local_port=50000,
            remote_type="host",
            remote_address="198.51.100.9",
            remote_port=40000,
            relay_transport="tls",
            relay_server=f"{RELAY_IP}:443",
        ),
        voice=summarize(MediaKind.AUDIO, audio),
        video=summarize(MediaKind.VIDEO, video),
        duration=5.123456,
    )


def blocked_path() -> PathResult:
    return PathResult(
        path_id="direct",
        exercised=False,
        failure="ice_failed",
        stages=(
            StageResult(
                Stage.ICE,
                0.0,
                8.0,
                failure="ice_failed",
                evidence={"candidates": ["198.51.100.9:40000", "127.0.0.1:5000"]},
            ),
        ),
        server="stun:198.51.100.9:3478",
        duration=8.0,
    )


def run_result(**changes: Any) -> RunResult:
    paths = (tls_path(), blocked_path())
    fields: dict[str, Any] = {
        "started_at": datetime(2025, 8, 14, 10, 0, 0, 123456, tzinfo=UTC),
        "finished_at": datetime(2025, 8, 14, 13, 0, 9, tzinfo=timezone(timedelta(hours=3))),
        "profile_name": "acme support",
        "target": "echo",
        "paths": paths,
        "verdict": decide(paths),
    }
    fields.update(changes)
    return RunResult(**fields)


def test_report_fields_and_rounding() -> None:
    report = report_to_dict(run_result(), redact=False)
    assert report["schema_version"] == SCHEMA_VERSION == 1
    assert report["software"] == {"name": "callpath", "version": callpath.core.__version__}
    assert report["started_at"] == "2025-08-14T10:00:00.123Z"
    assert report["finished_at"] == "2025-08-14T10:00:09.000Z"
    assert (report["profile"], report["target"], report["scenario"]) == (
        "acme support",
        "echo",
        None,
    )
    assert report["cancelled"] is False
    assert report["redacted"] is False
    tls, direct = report["paths"]
    assert tls["id"] == "turn-tls"
    assert tls["exercised"] is True
    assert tls["duration_s"] == 5.123
    assert tls["server"] == "turns:relay.example.org:443?transport=tcp"
    assert tls["selected_pair"]["relay_transport"] == "tls"
    assert tls["selected_pair"]["remote_address"] == "198.51.100.9"
    assert [stage["stage"] for stage in tls["stages"]] == [
        "resolve",
        "connect",
        "turn_allocate",
        "ice",
        "dtls",
        "media_up",
        "quality",
    ]
    assert tls["stages"][0]["duration_s"] == 0.012
    assert tls["stages"][0]["evidence"]["host"] == "relay.example.org"
    voice = tls["voice"]
    assert voice["grade"] == "good"
    assert voice["rtt_ms"] == 41.3
    assert voice["jitter_ms"] == 3.1
    assert voice["loss_pct"] == 0.12
    assert voice["bitrate_kbps"] == 40.0
    assert 4.0 < voice["mos"] < 4.5 and voice["mos"] == round(voice["mos"], 2)
    assert voice["samples"][0] == {
        "t": 1.0,
        "direction": "sent",
        "rtt_ms": 41.3,
        "jitter_ms": 3.1,
        "loss_pct": 0.12,
        "bitrate_kbps": 40.0,
    }
    assert tls["video"]["mos"] is None
    assert tls["video"]["grade"] == "good"
    assert direct["selected_pair"] is None
    assert direct["failure"] == "ice_failed"
    assert direct["voice"]["grade"] == "not_tested"
    assert direct["voice"]["samples"] == []
    assert report["verdict"] == {
        "voice": {"restored_by": ["turn-tls"]},
        "video": {"restored_by": ["turn-tls"]},
        "headline": "Voice and video calls work via TURN over TLS.",
    }


def test_round_trip_validates(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    run = run_result(cancelled=True, scenario="udp-blocked", target="lab")
    write_report(target, run)
    text = target.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text.startswith('{\n  "schema_version": 1,')
    loaded = load_report(target)
    assert loaded == report_to_dict(run)
    assert loaded["cancelled"] is True
    assert loaded["scenario"] == "udp-blocked"
    validate_report(report_to_dict(run, redact=False))


def test_a_report_reads_back_into_the_run_it_describes(tmp_path: Path) -> None:
    """report_from_dict is the encoder's inverse up to rounding: encoding the decoded run gives
    the same report, and the typed fields come back (not dicts parsed by hand)."""
    finding = Finding(
        mechanism="udp_blocked",
        paths=("direct",),
        evidence={"stun_answered": False, "server": "198.51.100.7"},
        confidence=Confidence.HIGH,
        summary="UDP to 198.51.100.7 is dropped",
        recommendation="use TURN over TLS",
        technical="STUN got no answer",
    )
    probe = ProbeResult("stun", "198.51.100.7:3478", 0.5, 1.25, "generic_timeout_error", {})
    run = run_result(probes=(probe,), findings=(finding,), scenario="udp-blocked")
    report = report_to_dict(run, redact=False)
    target = tmp_path / "report.json"
    write_report(target, run, redact=False)
    decoded = report_from_dict(load_report(target))
    assert report_to_dict(decoded, redact=False) == report
    assert decoded.verdict.voice_restored_by == run.verdict.voice_restored_by
    assert decoded.verdict.video_restored_by == run.verdict.video_restored_by
    assert decoded.verdict.headline == report["verdict"]["headline"]
    assert decoded.findings == (finding,)
    assert decoded.probes == (probe,)
    assert decoded.paths[0].voice.grade == run.paths[0].voice.grade
    assert decoded.paths[0].stages[0].stage == run.paths[0].stages[0].stage
    assert decoded.started_at == run.started_at.replace(microsecond=123000)
    with pytest.raises(ReportError):
        report_from_dict({"paths": []})


def test_unicode_written_as_utf8(tmp_path: Path) -> None:
    target = tmp_path / "отчёт.json"
    write_report(target, run_result(profile_name="поддержка"))
    assert "поддержка" in target.read_text(encoding="utf-8")
    assert load_report(target)["profile"] == "поддержка"


def test_redaction_is_stable_and_keeps_ports_and_loopback() -> None:
    report = report_to_dict(run_result())
    assert report["redacted"] is True
    text = json.dumps(report)
    for secret in (RELAY_IP, RELAY_V6, "198.51.100.9", "relay.example.org", "example.net"):
        assert secret not in text
    tls, direct = report["paths"]
    # First appearance order: server, then the selected pair, then evidence.
    assert tls["server"] == "turns:host-1:443?transport=tcp"
    pair = tls["selected_pair"]
    assert (pair["local_address"], pair["local_port"]) == ("host-2", 50000)
    assert (pair["remote_address"], pair["remote_port"]) == ("host-3", 40000)
    assert pair["relay_server"] == "host-4:443"
    resolve, connect, allocate = (stage["evidence"] for stage in tls["stages"][:3])
    assert resolve == {"host": "host-1", "addresses": ["host-4", "host-2", "127.0.0.1"]}
    assert connect == {"peer": "host-4:443", "sni": "host-1", "tls": "1.3"}
    assert allocate["relayed"] == "[host-2]:50000"
    assert allocate["loopback"] == "[::1]:3478"
    # The same address in another path keeps its pseudonym.
    assert direct["server"] == "stun:host-3:3478"
    assert direct["stages"][0]["evidence"] == {"candidates": ["host-3:40000", "127.0.0.1:5000"]}


def test_pseudonyms_restart_in_each_report() -> None:
    first = report_to_dict(run_result())
    second = report_to_dict(run_result())
    assert first == second


def test_secrets_scrubbed_with_and_without_redaction() -> None:
    for redact in (True, False):
        report = report_to_dict(run_result(), redact=redact)
        allocate = report["paths"][0]["stages"][2]["evidence"]
        assert allocate["password"] == "***"
        assert allocate["nested"]["Auth_Token"] == "***"
        assert allocate["nested"]["items"] == [{"client_secret": "***"}]
        assert allocate["username"] == "alice"
        assert allocate["proxy"].startswith("socks5://***@")
        text = json.dumps(report)
        assert "hunter2" not in text and "pa55" not in text and '"abc"' not in text


def test_server_credentials_in_url_are_scrubbed() -> None:
    path = PathResult(
        path_id="socks5-turn",
        exercised=False,
        failure="socks_connection_refused",
        stages=(),
        server="socks5://user:secret@127.0.0.1:1080",
    )
    run = run_result(paths=(path,), verdict=decide((path,)))
    for redact in (True, False):
        server = report_to_dict(run, redact=redact)["paths"][0]["server"]
        assert server == "socks5://***@127.0.0.1:1080"


def test_evidence_with_odd_types_is_json_safe() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque via 192.0.2.1"

    stage = StageResult(
        Stage.CONNECT,
        0.0,
        1.0,
        failure="unknown_failure: connect to 192.0.2.1 failed",
        evidence={
            "stage": Stage.ICE,
            "ratio": float("nan"),
            "raw": b"\x16\x03",
            "ports": (1, 2),
            "kinds": {"b", "a"},
            "at": datetime(2025, 1, 1, tzinfo=UTC),
            "opaque": Opaque(),
        },
    )
    path = PathResult("turn-tcp", False, "connection_refused", (stage,), None)
    report = report_to_dict(run_result(paths=(path,), verdict=decide((path,))))
    validate_report(report)
    stage_dict = report["paths"][0]["stages"][0]
    assert stage_dict["failure"] == "unknown_failure: connect to host-1 failed"
    assert stage_dict["evidence"] == {
        "stage": "ice",
        "ratio": None,
        "raw": "1603",
        "ports": [1, 2],
        "kinds": ["a", "b"],
        "at": "2025-01-01T00:00:00.000Z",
        "opaque": "opaque via host-1",
    }
    json.dumps(report, allow_nan=False)


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_report(target, run_result())
    write_report(target, run_result(cancelled=True))
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["report.json"]
    assert load_report(target)["cancelled"] is True


def test_failed_write_keeps_the_old_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    write_report(target, run_result())
    before = target.read_bytes()

    def refuse(source: object, destination: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_report(target, run_result(cancelled=True))
    assert target.read_bytes() == before
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read a CallPath report"),
        ("[1, 2]", "not a CallPath report"),
        ('{"schema_version": 1, "software": {"name": "other"}}', "not a CallPath report"),
        ('{"software": {"name": "callpath"}}', "not a CallPath report"),
    ],
)
def test_load_rejects_other_files(tmp_path: Path, content: str, message: str) -> None:
    target = tmp_path / "other.json"
    target.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError, match=message) as caught:
        load_report(target)
    assert str(target) in str(caught.value)


def test_load_rejects_unknown_schema_version(tmp_path: Path) -> None:
    data = report_to_dict(run_result())
    data["schema_version"] = 2
    target = tmp_path / "future.json"
    target.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportError, match="unknown report schema_version 2") as caught:
        load_report(target)
    assert str(target) in str(caught.value)


def test_load_rejects_a_broken_report_naming_file_and_field(tmp_path: Path) -> None:
    data = report_to_dict(run_result())
    data["paths"][0]["voice"]["grade"] = "excellent"
    target = tmp_path / "broken.json"
    target.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportError) as caught:
        load_report(target)
    assert str(target) in str(caught.value)
    assert "$.paths[0].voice.grade" in str(caught.value)


def _set(data: dict[str, Any], json_path: tuple[str | int, ...], value: Any) -> None:
    node: Any = data
    for key in json_path[:-1]:
        node = node[key]
    node[json_path[-1]] = value


@pytest.mark.parametrize(
    ("json_path", "value", "where"),
    [
        (("paths", 0, "stages", 1, "stage"), "handshake", "$.paths[0].stages[1].stage"),
        (("paths", 0, "voice", "samples", 0, "direction"), "up", "$.paths[0].voice.samples[0]"),
        (("paths", 0, "video", "mos"), 4.0, "$.paths[0].video.mos"),
        (("paths", 0, "voice", "mos"), 5.0, "$.paths[0].voice.mos"),
        (("paths", 0, "surprise"), True, "$.paths[0]"),
        (("paths", 0, "voice", "surprise"), True, "$.paths[0].voice"),
        (("paths", 0, "selected_pair", "local_port"), 70000, "$.paths[0].selected_pair"),
        (("started_at",), "yesterday", "$.started_at"),
        (("verdict", "voice", "restored_by"), "turn-tls", "$.verdict.voice.restored_by"),
        (("software", "name"), "othertool", "$.software.name"),
        (("schema_version",), 2, "$.schema_version"),
    ],
)
def test_schema_rejects_broken_reports(
    json_path: tuple[str | int, ...], value: Any, where: str
) -> None:
    data = copy.deepcopy(report_to_dict(run_result()))
    validate_report(data)
    _set(data, json_path, value)
    with pytest.raises(ValueError) as caught:
        validate_report(data)
    assert str(caught.value).startswith(where)


def test_schema_rejects_missing_field() -> None:
    data = report_to_dict(run_result())
    del data["paths"][1]["stages"][0]["evidence"]
    with pytest.raises(ValueError, match=r"^\$\.paths\[1\]\.stages\[0\]: 'evidence'"):
        validate_report(data)


def test_schema_file_is_an_asset() -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_documented_example_is_valid() -> None:
    document = Path(__file__).resolve().parent.parent / "docs" / "report-format.md"
    text = document.read_text(encoding="utf-8")
    example = text.split("```json\n", 1)[1].split("```", 1)[0]
    validate_report(json.loads(example))
