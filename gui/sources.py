"""Where a run comes from: a profile file, the local demo or the built-in lab.

A run source is checked and described in the GUI thread, then its ``run`` coroutine is awaited
on the bridge's asyncio thread: everything that touches asyncio or aiortc (servers, the Engine,
peer connections) is created inside ``run``, never in the GUI thread. Cancelling the task that
awaits ``run`` stops the engine, which still returns the partial ``RunResult``.

This module is Qt-free so that sources can be unit-tested and reused without a display.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from callpath.core.call.engine import Engine, EngineOptions
from callpath.core.call.targets import HttpEchoTarget
from callpath.core.i18n import _
from callpath.core.lab.scenario import Scenario
from callpath.core.model.config import QualityConfig, Timeouts
from callpath.core.model.events import EventSink
from callpath.core.model.results import PathId, RunResult
from callpath.core.paths.base import PathPlan
from callpath.core.profile.document import load_profile
from callpath.core.run.plan import RunPlan, plan_run
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig

LOOPBACK = ("127.0.0.1",)
# Stored in reports as the profile name of demo runs; shown translated (see ``profile_title``).
DEMO_PROFILE_NAME = "local-demo"
SERVER_STOP_TIMEOUT_S = 5.0
# Starting the lab (relay, middlebox, resolvers, certificates) and the probes that outlast calls.
LAB_OVERHEAD_S = 4.0
# Typical time of the connectivity stages on a healthy path (not the timeouts, which are upper
# bounds): enough for the "about N seconds" promise on the Home page.
TYPICAL_SETUP_S = 3.0


class RunSource(Protocol):
    """One way of producing a run. ``run`` is awaited on the bridge's asyncio thread."""

    @property
    def title(self) -> str:
        """Short name shown to the user (translated)."""
        ...

    @property
    def path_ids(self) -> tuple[str, ...]: ...

    def expected_seconds(self) -> int:
        """How long a normal run takes, for the Home page's promise."""
        ...

    async def run(self, sink: EventSink) -> RunResult:
        """Build the engine (and any local servers) here, run it, tear the servers down."""
        ...


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

    async def run(self, sink: EventSink) -> RunResult:
        server = EchoServer(EchoServerConfig(host="127.0.0.1", port=0, ice_addresses=LOOPBACK))
        try:
            await server.start()
            engine = Engine(
                [PathPlan(PathId.DIRECT.value)],
                HttpEchoTarget(server.url),
                sink,
                EngineOptions(
                    timeouts=self.timeouts,
                    quality=self.quality,
                    host_addresses=LOOPBACK,
                    profile_name=DEMO_PROFILE_NAME,
                ),
            )
            return await engine.run()
        finally:
            # The run may end by cancellation; the server still has to go, in bounded time.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(server.stop()), SERVER_STOP_TIMEOUT_S)


@dataclass(frozen=True)
class ProfileSource:
    """The paths of a profile file, against the profile's echo target.

    ``from_file`` reads the profile and resolves its secrets in the GUI thread (a ProfileError
    is shown to the user before anything is sent); the Engine is built in ``run``.
    """

    file: Path
    plan: RunPlan

    @staticmethod
    def from_file(file: Path) -> ProfileSource:
        """Raises ``callpath.core.profile.document.ProfileError`` (with file and line) for an
        unusable profile."""
        return ProfileSource(file, plan_run(load_profile(file)))

    @property
    def title(self) -> str:
        return self.plan.options.profile_name or self.file.name

    @property
    def path_ids(self) -> tuple[str, ...]:
        return tuple(plan.path_id for plan in self.plan.plans)

    def expected_seconds(self) -> int:
        return expected_seconds(len(self.plan.plans), self.plan.options.quality)

    async def run(self, sink: EventSink) -> RunResult:
        # The same run as ``callpath run``: the calls, the probes beside them, the diagnosis.
        from callpath.core.run.investigation import run_profile

        return await run_profile(self.plan, sink)


@dataclass(frozen=True)
class LabSource:
    """A built-in lab scenario: the censored loopback network of ``callpath lab``.

    ``run`` is ``callpath.core.cli.lab.run_scenario`` itself (lab, engine, probes, diagnosis, lab
    torn
    down on the way out, cancellation included), so the app and the command line agree.
    """

    scenario: Scenario
    quality: QualityConfig = field(default_factory=QualityConfig)

    @property
    def title(self) -> str:
        return self.scenario.text("title")

    @property
    def path_ids(self) -> tuple[str, ...]:
        return tuple(self.scenario.paths)

    def expected_seconds(self) -> int:
        return expected_seconds(len(self.scenario.paths), self.quality) + round(LAB_OVERHEAD_S)

    async def run(self, sink: EventSink) -> RunResult:
        # Imported here: the lab pulls in its servers, which the other sources never need.
        from callpath.core.cli.lab import run_scenario

        return await run_scenario(self.scenario, sink)
