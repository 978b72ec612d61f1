"""Hard per-task budgets: :class:`Budget` states the limits, :class:`Ledger` enforces them.

Every provider attempt goes through ``reserve(worst_case) → attempt → settle(reservation, actual)``.
An attempt is allowed only if ``spent + reserved + worst_case ≤ limit`` on every limited resource,
so what honest providers bill can never exceed the limit, even with many concurrent steps racing for
one budget (the ledger is guarded by a lock and safe from threads and from asyncio tasks alike).
``settle`` books the **actual** cost, never capped: a provider that bills more than the worst case
(usage above ``max_tokens``, a mispriced card) shows up as an *overrun*, after which nothing more
fits and the task stops making calls.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from agentroute.errors import BudgetExceededError, ConfigurationError

Resource = Literal["usd", "tokens", "calls", "seconds", "large_calls"]
RESOURCES: tuple[Resource, ...] = ("usd", "tokens", "calls", "seconds", "large_calls")
_COUNTS = frozenset({"tokens", "calls", "large_calls"})
#: Limits above this are certainly typos (and lose integer precision as floats).
MAX_LIMIT = 1e15


def check_amount(name: str, value: Any, *, integer: bool = False, allow_zero: bool = True) -> float:
    """``value`` as a finite, non-negative float, or a :class:`ConfigurationError` naming ``name``.

    Accepts ``int``, ``float``, numpy scalars and :class:`~decimal.Decimal`; rejects booleans,
    strings, NaN, ±inf, negatives and values above :data:`MAX_LIMIT`.

    >>> check_amount("usd", Decimal("0.25"))
    0.25
    >>> check_amount("calls", 2.5, integer=True)
    Traceback (most recent call last):
    ...
    agentroute.errors.ConfigurationError: calls must be a whole number (got 2.5)
    """
    kind = type(value)
    if (kind is float or kind is int) and 0 < value <= MAX_LIMIT and (not integer or value == int(value)):
        return value + 0.0  # the common case, decided without the checks below (NaN fails ``<=``)
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        raise ConfigurationError(f"{name} must be a number (got {type(value).__name__} {_short(value)})")
    try:
        number = float(value)
    except (OverflowError, ValueError) as exc:
        raise ConfigurationError(f"{name} is out of range (got {str(value)[:60]})") from exc
    if math.isnan(number) or math.isinf(number) or number > MAX_LIMIT:
        raise ConfigurationError(f"{name} must be finite and at most {MAX_LIMIT:g} (got {str(value)[:60]})")
    if number < 0 or (number == 0 and not allow_zero):
        raise ConfigurationError(
            f"{name} must be {'non-negative' if allow_zero else 'positive'} (got {_short(value)})"
        )
    if integer and (
        number != int(number) or (isinstance(value, Decimal) and value != value.to_integral_value())
    ):
        raise ConfigurationError(f"{name} must be a whole number (got {_short(value)})")
    return number + 0.0  # -0.0 → 0.0


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


class Budget(BaseModel):
    """Limits for one task; any subset may be set. ``None`` means unlimited; ``0`` means none allowed.

    Immutable and validated on every path that builds one (``model_copy(update=...)`` is pydantic's
    unvalidated copy: build a new ``Budget`` instead).

    >>> Budget(usd=0.01, large_calls=0).limits()
    {'usd': 0.01, 'large_calls': 0.0}
    >>> Budget(usd=float("nan"))
    Traceback (most recent call last):
    ...
    agentroute.errors.ConfigurationError: budget usd must be finite and at most 1e+15 (got nan)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd: float | None = None
    tokens: int | None = None
    calls: int | None = None
    seconds: float | None = None
    large_calls: int | None = None

    def __init__(self, **limits: Any):
        unknown = sorted(set(limits) - set(RESOURCES))
        if unknown:
            raise ConfigurationError(f"unknown budget field(s) {unknown}; fields: {list(RESOURCES)}")
        clean: dict[str, float | int] = {}
        for name, value in limits.items():
            if value is None:
                continue
            number = check_amount(f"budget {name}", value, integer=name in _COUNTS)
            clean[name] = int(number) if name in _COUNTS else number
        super().__init__(**clean)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Budget:  # type: ignore[override]
        """Like ``Budget(**obj)``: a bad limit is a :class:`ConfigurationError`."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise ConfigurationError(
                f"invalid budget: {exc.errors()[0]['msg'].removeprefix('Value error, ')}"
            ) from None

    @field_validator("*", mode="before")
    @classmethod
    def _checked(cls, value: Any, info: ValidationInfo) -> Any:
        """The same rules on paths that skip ``__init__`` (``model_validate``, a nested ``Task``)."""
        if value is None:
            return None
        number = check_amount(f"budget {info.field_name}", value, integer=info.field_name in _COUNTS)
        return int(number) if info.field_name in _COUNTS else number

    def limits(self) -> dict[str, float]:
        return {r: float(v) for r, v in self.given().items()}

    def given(self) -> dict[str, float | int]:
        """The limits that are set, as given (``model_dump(exclude_none=True)``, faster)."""
        return {r: v for r in RESOURCES if (v := getattr(self, r)) is not None}


def make_budget(usd: Any = None, *, options: Mapping[str, str] | None = None, **limits: Any) -> Budget | None:
    """A :class:`Budget` from CLI options (``usd=``, ``tokens=``, ``calls=``, ``seconds=``,
    ``large_calls=``), or ``None`` when no limit is given.

    A bad value raises :class:`ConfigurationError` naming the option (``--budget-usd``, or the
    name ``options`` gives a field, e.g. ``{"large_calls": "--cap-large"}``): NaN,
    ±inf, negative, boolean, text or overflowing numbers are refused; ``0`` means "none allowed".

    >>> make_budget(usd=0.01, large_calls=0)
    Budget(usd=0.01, tokens=None, calls=None, seconds=None, large_calls=0)
    >>> make_budget(usd=float("nan"))
    Traceback (most recent call last):
    ...
    agentroute.errors.ConfigurationError: --budget-usd: budget usd must be finite and at most 1e+15 (got nan)
    """
    values = {k: v for k, v in {"usd": usd, **limits}.items() if v is not None}
    for name, value in values.items():  # one at a time, so the error names the option
        option = (options or {}).get(name) or f"--budget-{name.replace('_', '-')}"
        try:
            Budget(**{name: value})
        except ConfigurationError as exc:
            raise ConfigurationError(f"{option}: {exc}") from None
    return Budget(**values) if values else None


class Cost(NamedTuple):
    """An amount of every resource one attempt may use or used (a tuple in :data:`RESOURCES` order)."""

    usd: float = 0.0
    tokens: float = 0.0
    calls: float = 1.0
    seconds: float = 0.0
    large_calls: float = 0.0

    def get(self, resource: str) -> float:
        return float(getattr(self, resource))

    def is_valid(self) -> bool:
        """Every amount finite and non-negative (usage from a provider is outside data)."""
        usd, tokens, calls, seconds, large = self  # a NaN fails every comparison
        inf = math.inf
        return (
            0.0 <= usd < inf
            and 0.0 <= tokens < inf
            and 0.0 <= calls < inf
            and 0.0 <= seconds < inf
            and 0.0 <= large < inf
        )


_SECONDS = RESOURCES.index("seconds")
_EPS = 1e-12


#: The budget of a task given none (immutable, so one serves every ledger).
_UNLIMITED = Budget()


@functools.lru_cache(maxsize=256)
def _terms(
    budget: Budget,
) -> tuple[dict[str, float], tuple[tuple[int, str, float], ...], float | None, dict[str, float | int]]:
    """A budget's limits, the checks a ledger makes of them (index, resource, limit; time apart),
    its ``seconds`` limit and its limits as given: worked out once per distinct budget (equal
    budgets share them; a ledger copies the dicts it hands out)."""
    limits = budget.limits()
    checks = tuple((RESOURCES.index(r), r, lim) for r, lim in limits.items() if r != "seconds")
    return limits, checks, limits.get("seconds"), budget.given()


@dataclass(slots=True)
class Reservation:
    """A worst case held by the ledger until the attempt settles."""

    id: int
    worst_case: Cost
    settled: bool = False


@dataclass(slots=True, frozen=True)
class Attempt:
    """The write-ahead record of one provider attempt: made durable before the attempt is sent.

    A stored step of the same task and ``step_index`` settles it (the step's cost holds what the
    attempt was booked); an attempt left unsettled — its process died with the call in flight — is
    charged its ``worst_case`` when the task is resumed, as the provider may have billed it.
    """

    task_id: str
    step_index: int
    attempt: int
    agent: str  # its key, ``role:model:strategy``
    stage: str
    worst_case: Cost


class Ledger:
    """Tracks spending of one task against its :class:`Budget`.

    ``seconds`` is wall-clock time since the ledger was created (plus the time used before a
    checkpoint it was restored from); an attempt is allowed only while the time used plus the
    attempt's ``seconds`` stays within the limit. Spent and held amounts are kept as running totals,
    so every check costs one pass over the limited resources, whatever the number of calls in
    flight.
    """

    __slots__ = (
        "budget",
        "limits",
        "_checks",
        "_seconds_limit",
        "_given",
        "_spent",
        "_held",
        "_reserved",
        "_lock",
        "_next_id",
        "_started",
        "overruns",
    )

    def __init__(self, budget: Budget | None = None):
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigurationError(
                f"Ledger needs a Budget or None (got {type(budget).__name__} {_short(budget)}): Ledger(Budget(...))"
            )
        self.budget = budget if budget is not None else _UNLIMITED
        limits, self._checks, self._seconds_limit, self._given = _terms(self.budget)
        #: The limited resources and their limits (read-only).
        self.limits: dict[str, float] = dict(limits)
        self._spent = [0.0] * len(RESOURCES)
        self._held = [0.0] * len(RESOURCES)
        self._reserved: dict[int, Reservation] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._started = time.monotonic()
        #: Number of settlements whose actual cost exceeded the reserved worst case.
        self.overruns = 0

    def __repr__(self) -> str:
        return f"Ledger(limits={self.limits}, spent={self.spent})"

    # -- views -------------------------------------------------------------------------------
    @property
    def spent(self) -> dict[str, float]:
        with self._lock:
            spent: dict[str, float] = dict(zip(RESOURCES, self._spent, strict=True))
        spent["seconds"] = self.elapsed()
        return spent

    @property
    def spent_usd(self) -> float:
        return self._spent[0]

    @property
    def in_flight(self) -> int:
        """Reservations not yet settled."""
        return len(self._reserved)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def seconds_left(self) -> float | None:
        """Wall-clock seconds left under a ``seconds`` limit; ``None`` when time is unlimited."""
        return None if self._seconds_limit is None else self._seconds_limit - self.elapsed()

    def over_limit(self) -> str | None:
        """The first resource whose spending has passed its limit (after an overrun), or ``None``."""
        for i, resource, limit in self._checks:
            if self._spent[i] > limit + _EPS:
                return resource
        if self._seconds_limit is not None and self.elapsed() >= self._seconds_limit:
            return "seconds"
        return None

    def remaining(self) -> dict[str, float]:
        """What is left on each limited resource, net of open reservations."""
        left: dict[str, float] = {}
        with self._lock:  # a loop, not a comprehension: one frame less on every step (the router's context)
            spent, held = self._spent, self._held
            for i, r, lim in self._checks:
                left[r] = lim - spent[i] - held[i]
        if self._seconds_limit is not None:
            left["seconds"] = self._seconds_limit - self.elapsed()
        return left

    def _shortfall(self, worst_case: Cost) -> BudgetExceededError | None:
        spent, held = self._spent, self._held
        for i, resource, limit in self._checks:
            committed = spent[i] + held[i]
            if committed + worst_case[i] > limit + _EPS:
                return BudgetExceededError(resource, limit, committed, worst_case[i])
        if self._seconds_limit is not None:
            elapsed = self.elapsed()
            if elapsed + worst_case[_SECONDS] >= self._seconds_limit:
                return BudgetExceededError("seconds", self._seconds_limit, elapsed, worst_case[_SECONDS])
        return None

    def affordable(self, worst_case: Cost) -> bool:
        """Whether an attempt with this worst case could be reserved now."""
        with self._lock:
            return self._shortfall(worst_case) is None

    def affordable_each(self, worst_cases: Sequence[Cost]) -> list[bool]:
        """:meth:`affordable` for each worst case, checked against one state of the ledger."""
        if not self._checks and self._seconds_limit is None:  # nothing is limited
            return [True] * len(worst_cases)
        with self._lock:
            if (
                len(self._checks) == 1 and self._seconds_limit is None
            ):  # one limit (often usd): _shortfall's test, inlined
                [(i, _, limit)] = self._checks
                committed, bound = self._spent[i] + self._held[i], limit + _EPS
                fits = []
                for w in worst_cases:  # a loop, not a comprehension: no frame of its own on every step
                    fits.append(not committed + w[i] > bound)
                return fits
            return [self._shortfall(w) is None for w in worst_cases]

    # -- reserve / settle -------------------------------------------------------------------
    def reserve(self, worst_case: Cost) -> Reservation:
        """Hold ``worst_case`` or raise :class:`BudgetExceededError` if it does not fit."""
        if not isinstance(worst_case, Cost):
            raise ConfigurationError(
                f"reserve needs a Cost (got {type(worst_case).__name__} {_short(worst_case)})"
            )
        if not worst_case.is_valid():
            raise ConfigurationError(f"invalid worst case {worst_case}")
        with self._lock:
            error = self._shortfall(worst_case)
            if error is not None:
                raise error
            self._next_id += 1
            reservation = Reservation(self._next_id, worst_case)
            self._reserved[reservation.id] = reservation
            self._held = list(map(operator.add, self._held, worst_case))
            return reservation

    def settle(self, reservation: Reservation, actual: Cost) -> Cost:
        """Replace the reservation by what the attempt really used; returns the amount booked.

        The actual cost is booked as it is — never capped — so the ledger agrees with the
        provider's bill. An invalid amount (negative, NaN, infinite) is replaced by the worst case.
        When the booked amount exceeds the worst case on any resource, :attr:`overruns` grows; the
        caller audits it (see :meth:`overrun_of`). A reservation settled twice, or on a ledger other
        than the one that made it, is a :class:`ConfigurationError` that changes neither ledger.
        """
        if not isinstance(actual, Cost):
            raise ConfigurationError(f"settle needs a Cost (got {type(actual).__name__} {_short(actual)})")
        booked = actual if actual.is_valid() else reservation.worst_case
        with self._lock:
            if reservation.settled:
                raise ConfigurationError(f"reservation {reservation.id} settled twice")
            if self._reserved.get(reservation.id) is not reservation:
                raise ConfigurationError(f"reservation {reservation.id} was made by another ledger")
            reservation.settled = True
            del self._reserved[reservation.id]
            worst = reservation.worst_case
            spent = self._spent = list(map(operator.add, self._spent, booked))
            spent[_SECONDS] = 0.0  # time is the clock's (elapsed), never a sum of attempts
            if self._reserved:
                self._held = list(map(operator.sub, self._held, worst))
            else:  # nothing in flight: reset exactly, so float drift never accumulates
                self._held = [0.0] * len(RESOURCES)
            if (
                booked.usd > worst.usd
                or booked.tokens > worst.tokens
                or booked.calls > worst.calls
                or booked.large_calls > worst.large_calls
            ) and self.overrun_of(reservation, booked):
                self.overruns += 1
        return booked

    @staticmethod
    def overrun_of(reservation: Reservation, booked: Cost) -> dict[str, float]:
        """Resources on which ``booked`` exceeds the reservation's worst case, with the excess."""
        worst = reservation.worst_case
        return {
            r: booked[i] - worst[i]
            for i, r in enumerate(RESOURCES)
            if i != _SECONDS and booked[i] > worst[i] * (1 + 1e-9) + _EPS
        }

    def release(self, reservation: Reservation, *, charge: Cost | None = None) -> Cost:
        """Drop a reservation whose attempt failed, charging ``charge`` (default: one call)."""
        return self.settle(reservation, charge or Cost(calls=1.0, large_calls=0.0))

    # -- checkpoints --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: what is spent, with every open reservation counted as spent.

        An attempt in flight when the snapshot is taken may have been billed, so a ledger restored
        from it charges that attempt's worst case — the conservative reading of a crash.
        """
        with self._lock:
            spent = list(map(operator.add, self._spent, self._held))
            in_flight = len(self._reserved)
        spent[_SECONDS] = self.elapsed()
        limits = dict(self._given)  # the budget's own fields, as given
        return {"budget": limits, "spent": spent, "in_flight": in_flight, "overruns": self.overruns}

    @classmethod
    def restore(cls, snapshot: dict[str, Any], budget: Budget | None = None) -> Ledger:
        """A ledger that continues from :meth:`snapshot` (``budget`` defaults to the snapshot's)."""
        try:
            limits = snapshot.get("budget", {}) if budget is None else {}
            ledger = cls(budget if budget is not None else Budget(**limits))
            raw = snapshot["spent"]
            spent = [check_amount(f"spent {r}", x) for r, x in zip(RESOURCES, raw, strict=True)]
            overruns = int(check_amount("overruns", snapshot.get("overruns", 0), integer=True))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # ConfigurationError included
            raise ConfigurationError(
                f"invalid ledger snapshot ({type(exc).__name__}: {str(exc)[:160]})"
            ) from None
        ledger._started -= spent[_SECONDS]
        spent[_SECONDS] = 0.0
        ledger._spent = spent
        ledger.overruns = overruns
        return ledger
