"""From a profile to what the engine runs: path plans, the echo target and engine options.

Secrets are resolved here, once, before any call is placed, so a missing secret stops the run
with a clear message (exit code 2) instead of failing one path later.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from callpath.core.call.engine import EngineOptions
from callpath.core.call.targets import EchoSession, EchoTarget, HttpEchoTarget, JanusEchoTarget
from callpath.core.model.results import PathId
from callpath.core.paths.base import PathPlan
from callpath.core.paths.registry import path_kind
from callpath.core.profile.document import (
    IMPLEMENTED_PATHS,
    ControlServer,
    Profile,
    ProfileError,
    TargetKind,
)


@dataclass(frozen=True)
class RunPlan:
    plans: tuple[PathPlan, ...]
    target: EchoTarget
    options: EngineOptions
    control: ControlServer | None = None  # the profile's control server, if it names one


class _RelayLoopbackTarget:
    """Marker target: the engine answers with a second local peer through the same relay."""

    kind = "relay-loopback"

    def open_session(self, path_id: str) -> EchoSession:
        raise AssertionError("the engine builds relay-loopback sessions itself")


def ca_context(ca_bundle: Path | None) -> ssl.SSLContext | None:
    """A TLS client context trusting the system store plus the profile's CA bundle."""
    if ca_bundle is None:
        return None
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError) as error:
        raise ProfileError(
            f"cannot use ca_bundle {ca_bundle}: {error}; give a PEM file of CA certificates",
            file=str(ca_bundle),
        ) from None
    return context


def select_paths(profile: Profile, only: Sequence[str] | None) -> tuple[str, ...]:
    """The profile's paths, or the ``--paths`` subset (which must be valid for this profile)."""
    if not only:
        return profile.paths
    chosen = []
    for path_id in only:
        if path_id not in {p.value for p in PathId}:
            known = ", ".join(p.value for p in PathId)
            raise ProfileError(f"unknown path {path_id!r} in --paths; known paths: {known}")
        if path_id not in IMPLEMENTED_PATHS:
            raise ProfileError(f"path {path_id!r} is not available in this version")
        if path_id not in profile.paths and path_id != PathId.DIRECT:
            raise ProfileError(
                f"--paths asks for {path_id!r} but the profile does not run it; add what it "
                "needs to the profile (see docs/profile.md) or list it under paths",
                file=str(profile.source) if profile.source else None,
            )
        if path_id not in chosen:
            chosen.append(path_id)
    return tuple(chosen)


def plan_run(
    profile: Profile,
    *,
    only_paths: Sequence[str] | None = None,
    base_options: EngineOptions | None = None,
) -> RunPlan:
    """Resolve secrets and build the engine's inputs; raises ProfileError on bad input."""
    for reference in profile.required_secrets():
        reference.resolve()  # fail early, before any network activity
    context = ca_context(profile.ca_bundle)
    plans = tuple(
        path_kind(path_id).plan(profile, PathId(path_id))
        for path_id in select_paths(profile, only_paths)
    )
    target = _target(profile, context)
    options = replace(
        base_options or EngineOptions(),
        timeouts=profile.timeouts,
        quality=profile.quality,
        ssl_context=context,
        profile_name=profile.name,
    )
    return RunPlan(plans, target, options, control=profile.control)


def _target(profile: Profile, context: ssl.SSLContext | None) -> EchoTarget:
    target = profile.target
    if target.kind == TargetKind.RELAY_LOOPBACK:
        return _RelayLoopbackTarget()
    assert target.url is not None
    if target.kind == TargetKind.JANUS:
        return JanusEchoTarget(target.url, ssl_context=context)
    token = target.token.resolve() if target.token is not None else None
    return HttpEchoTarget(target.url, token=token, ssl_context=context)
