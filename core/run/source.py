"""Where a run comes from, and the one way every run goes.

A run source (a profile, the local demo, a lab scenario) says what it is (title, paths, how
long it takes) and, in ``inputs``, starts whatever local servers it needs and yields the
engine's inputs with the probes to run beside the calls. ``run_source`` is the only place a run
starts, for ``callpath run``, ``callpath lab``, the app and its demo alike: the engine and the
probes run together, the diagnosis follows, and the final ``RunFinished`` event comes once,
after ``DiagnosisFinished``, carrying the whole result.

Sources are described in the caller's thread; ``run_source`` runs on the asyncio thread, and
everything that touches asyncio or aiortc (servers, the engine) is made inside it. Cancelling
the task that awaits it stops the engine, which still returns the partial ``RunResult``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from callpath.core.call.engine import Engine, EngineOptions
from callpath.core.call.hold import run_hold
from callpath.core.call.targets import EchoTarget, HttpEchoTarget
from callpath.core.discovery.tunnels import detect
from callpath.core.i18n import _
from callpath.core.model.config import HoldConfig, QualityConfig, Timeouts
from callpath.core.model.events import EventSink
from callpath.core.model.results import PathId, RunResult
from callpath.core.model.route import RouteSituation
from callpath.core.paths.base import PathPlan
from callpath.core.profile.document import load_profile
from callpath.core.run.investigation import ProbePlan, profile_probe_plan, run_investigated
from callpath.core.run.plan import RunPlan, plan_run
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig

LOOPBACK = ("127.0.0.1",)
# Stored in reports as the profile name of demo runs; shown translated (see ``profile_title``).
DEMO_PROFILE_NAME = "local-demo"
SERVER_STOP_TIMEOUT_S = 5.0
# Typical time of the connectivity stages on a healthy path (not the timeouts, which are upper
# bounds): enough for the "about N seconds" promise on the app's Home page.
TYPICAL_SETUP_S = 3.0


@dataclass(frozen=True)
class RunInputs:
    """What the engine and the probes need once a source's local servers are up."""

    plans: Sequence[PathPlan]
    target: EchoTarget
    options: EngineOptions
    probes: ProbePlan | Awaitable[ProbePlan] = field(default_factory=ProbePlan)
    # What the calls go through on this machine (a VPN?): real runs only, not the labs.
    route: RouteSituation | None = None


class RunSource(Protocol):
    """One way of producing a run (see the module's docstring)."""

    @property
    def title(self) -> str:
        """Short name shown to the user (translated)."""
        ...

    @property
    def path_ids(self) -> tuple[str, ...]: ...

    def expected_seconds(self) -> int:
        """How long a normal run takes, for the app's promise."""
        ...

    def inputs(self) -> AbstractAsyncContextManager[RunInputs]:
        """Start the source's local servers (if any), yield the run's inputs, stop them."""
        ...


async def run_source(
    source: RunSource, sink: EventSink, hold: HoldConfig | None = None
) -> RunResult:
    """The run of ``source``: calls and probes together, then the diagnosis (module docstring);
    with ``hold``, the hold phase follows the verdict (``callpath.core.call.hold``): its events
    come after ``RunFinished`` and end with ``HoldFinished``, whose result is returned."""
    async with source.inputs() as inputs:
        options = inputs.options if hold is None else replace(inputs.options, hold=hold)
        engine = Engine(inputs.plans, inputs.target, sink, options)
        try:
            run = await run_investigated(engine.run(), inputs.probes, sink, route=inputs.route)
            if hold is not None and not run.cancelled:
                run = await run_hold(engine, run, hold, sink)
        finally:
            await asyncio.shield(engine.release())
        return run


def expected_seconds(path_count: int, quality: QualityConfig) -> int:
    """Connectivity runs for all paths at once; media is measured a few paths at a time."""
    rounds = math.ceil(max(1, path_count) / max(1, quality.concurrency))
    return round(TYPICAL_SETUP_S + rounds * (quality.window_s + 1.0))


def profile_title(profile_name: str) -> str:
    """The name of a run's profile as shown to people."""
    if profile_name == DEMO_PROFILE_NAME:
        return _("Local demo")
    return profile_name or _("(unnamed profile)")


@dataclass(frozen=True)
class ProfileSource:
    """The paths of a profile, against its echo target, with the probes the profile allows.

    ``from_file`` reads the profile and resolves its secrets at once (a ProfileError reaches the
    user before anything is sent); the engine is built when the run starts.
    """

    plan: RunPlan
    file: Path

    @staticmethod
    def from_file(file: Path) -> ProfileSource:
        """Raises ``callpath.core.profile.document.ProfileError`` (with file and line) for an
        unusable profile."""
        return ProfileSource(plan_run(load_profile(file)), file)

    @property
    def title(self) -> str:
        return self.plan.options.profile_name or self.file.name

    @property
    def path_ids(self) -> tuple[str, ...]:
        return tuple(plan.path_id for plan in self.plan.plans)

    def expected_seconds(self) -> int:
        return expected_seconds(len(self.plan.plans), self.plan.options.quality)

    @asynccontextmanager
    async def inputs(self) -> AsyncIterator[RunInputs]:
        plan = self.plan
        yield RunInputs(
            plan.plans, plan.target, plan.options, profile_probe_plan(plan), route=detect()
        )


@dataclass(frozen=True)
class DemoSource:
    """Calls an echo server started on 127.0.0.1 over the ``direct`` path.

    Nothing leaves the computer: it shows how the app works and that this machine can encode,
    send, receive and measure a call, not anything about the network.
    """

    timeouts: Timeouts = field(default_factory=Timeouts)
    quality: QualityConfig = field(default_factory=QualityConfig)

    @property
    def title(self) -> str:
        return _("Local demo")

    @property
    def path_ids(self) -> tuple[str, ...]:
        return (PathId.DIRECT.value,)

    def expected_seconds(self) -> int:
        return expected_seconds(1, self.quality)

    @asynccontextmanager
    async def inputs(self) -> AsyncIterator[RunInputs]:
        server = EchoServer(EchoServerConfig(host="127.0.0.1", port=0, ice_addresses=LOOPBACK))
        try:
            await server.start()
            options = EngineOptions(
                timeouts=self.timeouts,
                quality=self.quality,
                host_addresses=LOOPBACK,
                profile_name=DEMO_PROFILE_NAME,
            )
            yield RunInputs([PathPlan(PathId.DIRECT.value)], HttpEchoTarget(server.url), options)
        finally:
            # The run may end by cancellation; the server still has to go, in bounded time.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(server.stop()), SERVER_STOP_TIMEOUT_S)
