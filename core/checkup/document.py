"""The messenger check's report (``callpath check --json``): ``messengers``, ``network`` and
``proxies`` with ``carries_udp``, and behind a VPN the ``route`` and, where it was measured, the
side around the VPN (``around_vpn`` and the ``around-vpn`` route); schema
``assets/schemas/check.schema.json``, documented in docs/report-format.md ("Messenger check").
Reports of ``check_version`` 1 (no side around a VPN) still validate and read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from callpath.core import __version__
from callpath.core.checkup.engine import CHECK_VERSION
from callpath.core.checkup.results import (
    AroundSide,
    CheckResult,
    MessengerOutcome,
    NameLookup,
    ReferenceResult,
)
from callpath.core.messengers.judge import REASONS, CheckedEndpoint, Judgement
from callpath.core.report.document import (
    SOFTWARE_NAME,
    ReportError,
    write_report_dict,
)
from callpath.core.resources import asset_path

KIND = "messenger-check"


def _timestamp(moment: Any) -> str:
    return str(moment.isoformat().replace("+00:00", "Z"))


def _judgement(judgement: Judgement) -> dict[str, Any]:
    return {
        "value": judgement.value.value,
        "reason": judgement.reason or None,
        "reason_text": REASONS.get(judgement.reason, "") or None,
    }


def _endpoint(endpoint: CheckedEndpoint) -> dict[str, Any]:
    return {
        "role": endpoint.role,
        "host": endpoint.host,
        "port": endpoint.port,
        "proto": endpoint.proto,
        "certainty": endpoint.certainty,
        "status": endpoint.status.value,
        "attempts": [{"failure": failure} for failure in endpoint.failures],
    }


def _messenger(outcome: MessengerOutcome) -> dict[str, Any]:
    return {
        "id": outcome.id,
        "name": outcome.name,
        "through": outcome.through,
        "messages": outcome.messages.value.value,
        "calls": outcome.calls.value.value,
        "messages_reason": _judgement(outcome.messages)["reason"],
        "calls_reason": _judgement(outcome.calls)["reason"],
        "endpoints": [_endpoint(e) for e in outcome.endpoints],
        "fixes": [
            {
                "id": fix.recipe.id,
                "text": fix.text(),
                "text_en": fix.text("en"),
                "platforms": list(fix.recipe.platforms),
                "source": fix.recipe.source,
                "date": fix.recipe.date,
            }
            for fix in outcome.fixes
        ],
    }


def _references(results: tuple[ReferenceResult, ...]) -> list[dict[str, Any]]:
    return [
        {"kind": r.kind, "host": r.host, "port": r.port, "proto": r.proto, "failure": r.failure}
        for r in results
    ]


def _dns(lookups: tuple[NameLookup, ...]) -> list[dict[str, Any]]:
    return [
        {
            "name": lookup.name,
            "for": lookup.role,
            "system": list(lookup.system),
            "system_failure": lookup.system_failure,
            "doh": list(lookup.doh),
            "doh_failure": lookup.doh_failure,
            "failure": lookup.failure,
            "tampered": lookup.tampered,
        }
        for lookup in lookups
    ]


def _around(side: AroundSide) -> dict[str, Any]:
    return {
        "interface": side.interface,
        "network": side.network.value,
        "udp": side.udp,
        "references": _references(side.references),
        "dns": _dns(side.dns),
    }


def check_to_dict(result: CheckResult) -> dict[str, Any]:
    """The JSON-ready check report (``check_version`` ``CHECK_VERSION``)."""
    return {
        "schema_version": 1,
        "kind": KIND,
        "check_version": CHECK_VERSION,
        "software": {"name": SOFTWARE_NAME, "version": __version__},
        "started_at": _timestamp(result.started_at),
        "finished_at": _timestamp(result.finished_at),
        "scenario": result.scenario,
        "country": result.country,
        "network": result.network.value,
        "udp": result.udp,
        **({"route": result.route.to_dict()} if result.route is not None else {}),
        **({"around_vpn": _around(result.around)} if result.around is not None else {}),
        "references": _references(result.references),
        "dns": _dns(result.dns),
        "proxies": [
            {
                "id": proxy.id,
                "url": proxy.url,
                "kind": proxy.kind,
                "source": proxy.source,
                "carries_udp": proxy.carries_udp,
                "failure": proxy.failure,
                "checked_through": proxy.usable,
            }
            for proxy in result.proxies
        ],
        "messengers": [_messenger(m) for m in result.messengers],
    }


def check_schema_path() -> Path:
    return asset_path("schemas", "check.schema.json")


def validate_check_report(data: dict[str, Any]) -> None:
    """Check ``data`` against the check schema; the error names the JSON path of the problem."""
    import jsonschema  # type: ignore[import-untyped, unused-ignore]

    schema = json.loads(check_schema_path().read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise ReportError(f"{error.json_path}: {error.message}")


def write_check_report(path: Path, result: CheckResult) -> None:
    write_report_dict(path, check_to_dict(result))
