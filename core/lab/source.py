"""A built-in lab scenario as a run source: the censored loopback network of ``callpath lab``,
the app's lab runs and the tests' (``callpath.core.run.source`` runs it like any other)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from callpath.core.call.engine import EngineOptions
from callpath.core.lab.network import LabNetwork
from callpath.core.lab.scenario import Scenario
from callpath.core.model.config import QualityConfig
from callpath.core.model.events import EventSink
from callpath.core.model.results import RunResult
from callpath.core.run.source import RunInputs, expected_seconds, run_source

# Starting the lab (relay, middlebox, resolvers, certificates) and the probes that outlast calls.
LAB_OVERHEAD_S = 4.0


@dataclass(frozen=True)
class LabSource:
    """Every lab path of ``scenario`` and the lab's probes, through the lab's censor; the lab
    is torn down on the way out, cancellation included."""

    scenario: Scenario
    quality: QualityConfig = field(default_factory=QualityConfig)
    # Other server names the TLS relay is tried under (``callpath lab --relay-sni``).
    relay_sni: tuple[str, ...] = ()
    # A profile's timeouts and quality (``callpath lab --profile``); the lab's defaults otherwise.
    base_options: EngineOptions | None = None
    # Called with the running lab before the calls start (tests record what it saw).
    on_ready: Callable[[LabNetwork], None] | None = field(default=None, compare=False)

    @property
    def title(self) -> str:
        return self.scenario.text("title")

    @property
    def path_ids(self) -> tuple[str, ...]:
        return tuple(self.scenario.paths)

    def expected_seconds(self) -> int:
        return expected_seconds(len(self.scenario.paths), self.quality) + round(LAB_OVERHEAD_S)

    @asynccontextmanager
    async def inputs(self) -> AsyncIterator[RunInputs]:
        async with LabNetwork(self.scenario, self.relay_sni) as lab:
            if self.on_ready is not None:
                self.on_ready(lab)
            yield RunInputs(
                lab.plans(), lab.target(), lab.options(self.base_options), lab.probe_plan()
            )


async def run_scenario(
    scenario: Scenario,
    sink: EventSink,
    on_ready: Callable[[LabNetwork], None] | None = None,
    relay_sni: tuple[str, ...] = (),
) -> RunResult:
    """Start the lab for ``scenario``, run its paths and probes through it, diagnose, stop it.
    ``relay_sni``: other server names the TLS relay is tried under."""
    return await run_source(LabSource(scenario, on_ready=on_ready, relay_sni=relay_sni), sink)
