"""What the messenger check found: frozen results, shared by the CLI, the app and the report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from callpath.core.messengers.judge import (
    AROUND_VPN,
    DIRECT,
    CheckedEndpoint,
    Judgement,
    Reachability,
)
from callpath.core.messengers.network_state import NetworkState
from callpath.core.messengers.recipes import ChosenRecipe
from callpath.core.model.route import RouteSituation


@dataclass(frozen=True)
class CheckProgress:
    """Something the check learnt, told as it happens (translated text)."""

    phase: str  # network | dns | proxy | messenger | done
    text: str
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class NameLookup:
    name: str
    role: str  # messenger id, or "reference"
    system: tuple[str, ...]
    system_failure: str | None
    doh: tuple[str, ...]
    doh_failure: str | None
    failure: str | None  # dns_nxdomain_error, dns_bogon_error, …: the system's answer is wrong

    @property
    def tampered(self) -> bool:
        return self.failure is not None and bool(self.doh)


@dataclass(frozen=True)
class ReferenceResult:
    kind: str  # domestic | public_stun
    host: str
    port: int
    proto: str
    failure: str | None


@dataclass(frozen=True)
class CheckedProxy:
    id: str
    url: str  # no credentials
    kind: str  # socks5 | http
    source: str
    carries_udp: bool | None  # None: could not tell (credentials needed, or no STUN reference)
    failure: str | None  # why it carries no UDP, or why it could not be asked
    usable: bool  # answered without credentials: the messengers are checked through it


@dataclass(frozen=True)
class MessengerOutcome:
    id: str
    name: str
    through: str  # direct, around-vpn or a proxy id
    messages: Judgement
    calls: Judgement
    endpoints: tuple[CheckedEndpoint, ...]
    fixes: tuple[ChosenRecipe, ...] = ()


@dataclass(frozen=True)
class AroundSide:
    """The check's side around the VPN: every socket bound to the physical ``interface``
    (its messengers are the ``around-vpn`` outcomes)."""

    interface: str
    network: NetworkState
    udp: str  # works | blocked | unknown (public STUN around the VPN)
    references: tuple[ReferenceResult, ...]
    dns: tuple[NameLookup, ...]


@dataclass(frozen=True)
class CheckResult:
    started_at: datetime
    finished_at: datetime
    network: NetworkState
    udp: str  # works | blocked | unknown (public STUN)
    country: str
    references: tuple[ReferenceResult, ...]
    dns: tuple[NameLookup, ...]
    proxies: tuple[CheckedProxy, ...]
    messengers: tuple[MessengerOutcome, ...]
    scenario: str | None = None
    route: RouteSituation | None = None  # a VPN the check went through, if any
    around: AroundSide | None = None  # measured around that VPN too

    def direct(self) -> tuple[MessengerOutcome, ...]:
        return tuple(m for m in self.messengers if m.through == DIRECT)

    def around_vpn(self) -> tuple[MessengerOutcome, ...]:
        return tuple(m for m in self.messengers if m.through == AROUND_VPN)

    @property
    def calls_blocked(self) -> bool:
        """Exit status 1: some messenger's calls do not get through directly."""
        if self.network is not NetworkState.ONLINE:
            return True
        bad = (Reachability.BLOCKED, Reachability.INTERMITTENT)
        return any(m.calls.value in bad for m in self.direct())
