"""Skills: tools or actions with preconditions and postconditions over the task context.

A skill runs only in its allowed stages and only when every precondition holds on the task
context; its postconditions are checked on the context after it ran. A failing check blocks the
skill (an audit event is written) instead of retrying blindly (SDOF).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from agentroute.errors import AgentrouteError, ConfigurationError, UnknownNameError

Context = MutableMapping[str, Any]


@dataclass(frozen=True)
class Condition:
    """A named predicate over the task context."""

    name: str
    check: Callable[[Context], bool]

    def holds(self, context: Context) -> bool:
        try:
            return bool(self.check(context))
        except Exception:  # a predicate that cannot be evaluated does not hold
            return False


def condition(name: str, check: Callable[[Context], bool]) -> Condition:
    return Condition(name, check)


def has_key(key: str) -> Condition:
    """Precondition: the context holds a non-empty ``key``."""
    return Condition(f"has {key}", lambda ctx: bool(ctx.get(key)))


@dataclass(frozen=True)
class Skill:
    """A tool the graph may call. ``run(context, **kwargs)`` may be sync or async."""

    id: str
    run: Callable[..., Any | Awaitable[Any]]
    stages: frozenset[str] | None = None
    preconditions: tuple[Condition, ...] = ()
    postconditions: tuple[Condition, ...] = ()
    level: int = 0
    description: str = ""


class SkillBlocked(AgentrouteError):
    """A skill was not allowed to run, or its postconditions failed."""

    def __init__(self, skill: str, kind: str, reason: str):
        self.skill, self.kind, self.reason = skill, kind, reason
        super().__init__(f"skill {skill!r} blocked ({kind}): {reason}")


@dataclass
class SkillRegistry:
    """Skills by id; :meth:`invoke` enforces stages and pre/postconditions."""

    skills: dict[str, Skill] = field(default_factory=dict)

    def register(
        self,
        id: str,
        run: Callable[..., Any],
        *,
        stages: Iterable[str] | None = None,
        preconditions: Iterable[Condition] = (),
        postconditions: Iterable[Condition] = (),
        level: int = 0,
        description: str = "",
    ) -> Skill:
        if id in self.skills:
            raise ConfigurationError(f"skill {id!r} is already registered")
        skill = Skill(
            id,
            run,
            frozenset(stages) if stages is not None else None,
            tuple(preconditions),
            tuple(postconditions),
            level,
            description,
        )
        self.skills[id] = skill
        return skill

    def get(self, id: str) -> Skill:
        try:
            return self.skills[id]
        except KeyError:
            raise UnknownNameError("skill", id, list(self.skills)) from None

    async def invoke(self, id: str, context: Context, *, stage: str, **kwargs: Any) -> Any:
        """Run skill ``id`` in ``stage``; raise :class:`SkillBlocked` when a check fails."""
        skill = self.get(id)
        if skill.stages is not None and stage not in skill.stages:
            raise SkillBlocked(
                id, "skill_blocked", f"not allowed in stage {stage!r} (allowed: {sorted(skill.stages)})"
            )
        failed = [c.name for c in skill.preconditions if not c.holds(context)]
        if failed:
            raise SkillBlocked(id, "precondition_failed", f"preconditions not met: {failed}")
        result = skill.run(context, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        elif asyncio.iscoroutinefunction(skill.run):  # pragma: no cover - covered by isawaitable
            result = await result
        failed = [c.name for c in skill.postconditions if not c.holds(context)]
        if failed:
            raise SkillBlocked(id, "postcondition_failed", f"postconditions not met: {failed}")
        return result
