"""Hard per-task budgets: :class:`Budget` states the limits, :class:`Ledger` enforces them.

Every call goes through ``reserve(worst_case) → call → settle(reservation, actual)``. A call is
allowed only if ``spent + reserved + worst_case ≤ limit`` on every limited resource, so the total
spent can never exceed the limit, even with many concurrent steps racing for one budget (the ledger
is guarded by a lock and safe from threads and from asyncio tasks alike).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from agentroute.errors import BudgetExceededError, ConfigurationError

Resource = Literal["usd", "tokens", "calls", "seconds", "large_calls"]
RESOURCES: tuple[Resource, ...] = ("usd", "tokens", "calls", "seconds", "large_calls")


class Budget(BaseModel):
    """Limits for one task; any subset may be set. ``None`` means unlimited.

    >>> Budget(usd=0.01, large_calls=2).limits()
    {'usd': 0.01, 'large_calls': 2.0}
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd: float | None = None
    tokens: int | None = None
    calls: int | None = None
    seconds: float | None = None
    large_calls: int | None = None

    def __init__(self, **limits: Any):
        for name, value in limits.items():
            if name in RESOURCES and value is not None and (not isinstance(value, int | float) or value <= 0):
                raise ConfigurationError(f"budget {name} must be positive (got {value!r})")
        try:
            super().__init__(**limits)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid budget: {exc.errors()[0]['msg']} ({limits})") from exc

    def limits(self) -> dict[str, float]:
        return {r: float(getattr(self, r)) for r in RESOURCES if getattr(self, r) is not None}


@dataclass(frozen=True, slots=True)
class Cost:
    """An amount of every resource one call may use or used."""

    usd: float = 0.0
    tokens: float = 0.0
    calls: float = 1.0
    seconds: float = 0.0
    large_calls: float = 0.0

    def get(self, resource: str) -> float:
        return float(getattr(self, resource))


@dataclass(slots=True)
class Reservation:
    """A worst case held by the ledger until the call settles."""

    id: int
    worst_case: Cost
    settled: bool = False


@dataclass
class Ledger:
    """Tracks spending of one task against its :class:`Budget`.

    ``seconds`` is wall-clock time since the ledger was created; a call is allowed only while the
    time used plus the call's timeout stays within the limit.
    """

    budget: Budget = field(default_factory=Budget)
    _spent: dict[str, float] = field(default_factory=lambda: dict.fromkeys(RESOURCES, 0.0))
    _reserved: dict[int, Reservation] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 0
    _started: float = field(default_factory=time.monotonic)
    _limits: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self._limits = self.budget.limits()

    # -- views -------------------------------------------------------------------------------
    @property
    def spent(self) -> dict[str, float]:
        with self._lock:
            spent = dict(self._spent)
        spent["seconds"] = time.monotonic() - self._started
        return spent

    @property
    def spent_usd(self) -> float:
        return self._spent["usd"]

    def remaining(self) -> dict[str, float]:
        """What is left on each limited resource, net of open reservations."""
        with self._lock:
            return {r: lim - self._committed(r) for r, lim in self._limits.items()}

    def _committed(self, resource: str) -> float:
        if resource == "seconds":
            return time.monotonic() - self._started
        held = sum(r.worst_case.get(resource) for r in self._reserved.values())
        return self._spent[resource] + held

    def _shortfall(self, worst_case: Cost) -> BudgetExceededError | None:
        for resource, limit in self._limits.items():
            committed = self._committed(resource)
            need = worst_case.get(resource)
            if committed + need > limit + 1e-12:
                return BudgetExceededError(resource, limit, committed, need)
        return None

    def affordable(self, worst_case: Cost) -> bool:
        """Whether a call with this worst case could be reserved now."""
        with self._lock:
            return self._shortfall(worst_case) is None

    # -- reserve / settle -------------------------------------------------------------------
    def reserve(self, worst_case: Cost) -> Reservation:
        """Hold ``worst_case`` or raise :class:`BudgetExceededError` if it does not fit."""
        with self._lock:
            error = self._shortfall(worst_case)
            if error is not None:
                raise error
            self._next_id += 1
            reservation = Reservation(self._next_id, worst_case)
            self._reserved[reservation.id] = reservation
            return reservation

    def settle(self, reservation: Reservation, actual: Cost) -> None:
        """Replace the reservation by what the call really used.

        The actual cost is capped at the reserved worst case: a backend that reports more than its
        worst case (a mispriced card) is recorded at the cap in the ledger, so the limit holds; the
        step itself keeps the backend's figure for audit.
        """
        with self._lock:
            if reservation.settled:
                raise ConfigurationError(f"reservation {reservation.id} settled twice")
            reservation.settled = True
            self._reserved.pop(reservation.id, None)
            for resource in RESOURCES:
                if resource == "seconds":
                    continue
                self._spent[resource] += min(actual.get(resource), reservation.worst_case.get(resource))

    def release(self, reservation: Reservation, *, charge: Cost | None = None) -> None:
        """Drop a reservation whose call failed, charging ``charge`` if the failure still cost."""
        self.settle(reservation, charge or Cost(calls=1.0))
