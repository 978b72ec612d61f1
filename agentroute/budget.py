"""Hard per-task budgets: :class:`Budget` states the limits, :class:`Ledger` enforces them.

Every call goes through ``reserve(worst_case) → call → settle(reservation, actual)``. A call is
allowed only if ``spent + reserved + worst_case ≤ limit`` on every limited resource, so the total
spent can never exceed the limit, even with many concurrent steps racing for one budget (the ledger
is guarded by a lock and safe from threads and from asyncio tasks alike).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

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


class Cost(NamedTuple):
    """An amount of every resource one call may use or used (a tuple in :data:`RESOURCES` order)."""

    usd: float = 0.0
    tokens: float = 0.0
    calls: float = 1.0
    seconds: float = 0.0
    large_calls: float = 0.0

    def get(self, resource: str) -> float:
        return float(getattr(self, resource))


_SECONDS = RESOURCES.index("seconds")


@dataclass(slots=True)
class Reservation:
    """A worst case held by the ledger until the call settles."""

    id: int
    worst_case: Cost
    settled: bool = False


class Ledger:
    """Tracks spending of one task against its :class:`Budget`.

    ``seconds`` is wall-clock time since the ledger was created; a call is allowed only while the
    time used plus the call's ``seconds`` stays within the limit. Spent and held amounts are kept
    as running totals, so every check costs one pass over the limited resources, whatever the
    number of calls in flight.
    """

    __slots__ = ("budget", "limits", "_checks", "_seconds_limit", "_spent", "_held", "_reserved", "_lock", "_next_id", "_started")

    def __init__(self, budget: Budget | None = None):
        self.budget = budget if budget is not None else Budget()
        #: The limited resources and their limits (read-only).
        self.limits: dict[str, float] = self.budget.limits()
        self._checks = tuple((RESOURCES.index(r), r, lim) for r, lim in self.limits.items() if r != "seconds")
        self._seconds_limit = self.limits.get("seconds")
        self._spent = [0.0] * len(RESOURCES)
        self._held = [0.0] * len(RESOURCES)
        self._reserved: dict[int, Reservation] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._started = time.monotonic()

    def __repr__(self) -> str:
        return f"Ledger(limits={self.limits}, spent={self.spent})"

    # -- views -------------------------------------------------------------------------------
    @property
    def spent(self) -> dict[str, float]:
        with self._lock:
            spent = dict(zip(RESOURCES, self._spent, strict=True))
        spent["seconds"] = self.elapsed()
        return spent

    @property
    def spent_usd(self) -> float:
        return self._spent[0]

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def seconds_left(self) -> float | None:
        """Wall-clock seconds left under a ``seconds`` limit; ``None`` when time is unlimited."""
        return None if self._seconds_limit is None else self._seconds_limit - self.elapsed()

    def remaining(self) -> dict[str, float]:
        """What is left on each limited resource, net of open reservations."""
        with self._lock:
            left = {r: lim - self._spent[i] - self._held[i] for i, r, lim in self._checks}
        if self._seconds_limit is not None:
            left["seconds"] = self._seconds_limit - self.elapsed()
        return left

    def _shortfall(self, worst_case: Cost) -> BudgetExceededError | None:
        spent, held = self._spent, self._held
        for i, resource, limit in self._checks:
            committed = spent[i] + held[i]
            if committed + worst_case[i] > limit + 1e-12:
                return BudgetExceededError(resource, limit, committed, worst_case[i])
        if self._seconds_limit is not None:
            elapsed = self.elapsed()
            if elapsed + worst_case[_SECONDS] > self._seconds_limit + 1e-12:
                return BudgetExceededError("seconds", self._seconds_limit, elapsed, worst_case[_SECONDS])
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
            held = self._held
            for i, amount in enumerate(worst_case):
                held[i] += amount
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
            del self._reserved[reservation.id]
            spent, held, worst = self._spent, self._held, reservation.worst_case
            for i in range(len(RESOURCES)):
                if i != _SECONDS:
                    spent[i] += min(actual[i], worst[i])
            if self._reserved:
                for i, amount in enumerate(worst):
                    held[i] -= amount
            else:  # nothing in flight: reset exactly, so float drift never accumulates
                self._held = [0.0] * len(RESOURCES)

    def release(self, reservation: Reservation, *, charge: Cost | None = None) -> None:
        """Drop a reservation whose call failed, charging ``charge`` if the failure still cost."""
        self.settle(reservation, charge or Cost(calls=1.0))
