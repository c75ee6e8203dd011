"""How long ``callpath check --lab`` takes: to the network line (the first result the user can
act on: online / offline / allowlist) and to the end, with 7 messengers and 0–2 local proxies.

Targets (issue 23): first result ≤ 3 s, the whole check ≤ 20 s with 7 messengers and 2 local
proxies. The lab's start-up is not counted (it is started before the clock starts).

Run: ``python -m bench.check_speed``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from callpath.core.checkup.engine import run_check
from callpath.core.checkup.results import CheckProgress
from callpath.core.lab.check_world import LabCheckWorld
from callpath.core.lab.network import LabNetwork
from callpath.core.lab.scenario import find_scenario
from callpath.core.messengers.catalog import load_catalog
from callpath.core.messengers.recipes import load_recipes
from callpath.core.messengers.references import load_references

CASES = (
    ("open-network", ("socks5", "http")),
    ("russia-2025", ("socks5", "http")),
    ("proxy-without-udp", ("http", "socks5-tcp")),
    ("mobile-whitelist", ()),
)
FIRST_RESULT_TARGET_S = 3.0
TOTAL_TARGET_S = 20.0


async def measure(name: str, proxies: tuple[str, ...]) -> tuple[float, float]:
    scenario = replace(find_scenario(name), check_proxies=proxies)
    async with LabNetwork(scenario) as lab, LabCheckWorld(lab, proxies) as world:
        started = time.monotonic()
        first: list[float] = []

        def progress(event: CheckProgress) -> None:
            if event.phase == "network" and not first and event.text.startswith("Network"):
                first.append(time.monotonic() - started)

        await run_check(world, load_catalog(), load_references(), load_recipes(), progress=progress)
        return first[0], time.monotonic() - started


def main() -> None:
    for name, proxies in CASES:
        first, total = asyncio.run(measure(name, proxies))
        ok = first <= FIRST_RESULT_TARGET_S and total <= TOTAL_TARGET_S
        print(
            f"{name:20} proxies={len(proxies)} first result {first:4.1f} s, "
            f"total {total:4.1f} s {'ok' if ok else 'OVER TARGET'}"
        )


if __name__ == "__main__":
    main()
