"""``callpath check`` as a run source of the app: the messengers on this network, no profile;
with a scenario, the same against the built-in lab."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callpath.core.i18n import _
from callpath.core.lab.scenario import Scenario

CHECK_EXPECTED_S = 20


@dataclass(frozen=True)
class CheckSource:
    """``run`` returns a ``CheckResult`` (not a RunResult) and sends ``CheckProgress`` events to
    the sink."""

    scenario: Scenario | None = None

    @property
    def title(self) -> str:
        return _("Test my network")

    @property
    def path_ids(self) -> tuple[str, ...]:
        return ()

    def expected_seconds(self) -> int:
        return CHECK_EXPECTED_S

    async def run(self, sink: Callable[[Any], None]) -> Any:
        from callpath.core.checkup.engine import run_check
        from callpath.core.checkup.world import RealWorld
        from callpath.core.messengers.catalog import load_catalog
        from callpath.core.messengers.recipes import load_recipes
        from callpath.core.messengers.references import load_references

        if self.scenario is not None:
            from callpath.core.lab.check_world import run_lab_check

            return await run_lab_check(self.scenario, sink)
        references = load_references()
        return await run_check(
            RealWorld(references.doh_url),
            load_catalog(),
            references,
            load_recipes(),
            progress=sink,
        )
