"""The stage machine: which stages exist, which transitions are legal, where each intent may act.

State-constrained dispatch (SDOF, "Taming the Alignment Tax in Multi-Agent Orchestration with
State-Constrained Dispatch"): a finite automaton (stages S, start s₀, transitions T ⊆ S×S, intents I,
binding Λ: I → 2^S). An operation with intent i may run in stage s only if s ∈ Λ(i), and the task
may move from stage a to stage b only if (a, b) ∈ T (staying in a stage is always legal). When the
machine has bindings, an intent bound to no stage is blocked: nothing runs that the machine does not
name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agentroute.errors import ConfigurationError


class StageMachine:
    """A finite automaton over stages with intent → stage bindings.

    >>> sm = StageMachine(["plan", "solve"], transitions=[("plan", "solve")], bindings={"planner": ["plan"]})
    >>> sm.check(None, "plan", intent="planner") is None
    True
    >>> sm.check("solve", "plan")
    "transition 'solve' → 'plan' is not allowed (allowed from 'solve': none)"
    """

    def __init__(
        self,
        stages: Iterable[str],
        *,
        start: str | None = None,
        transitions: Iterable[tuple[str, str]] = (),
        bindings: Mapping[str, Iterable[str]] | None = None,
    ):
        self.stages: list[str] = list(dict.fromkeys(stages))
        if not self.stages:
            raise ConfigurationError("a stage machine needs at least one stage")
        self.start = start or self.stages[0]
        self._check_stage(self.start)
        self.transitions: dict[str, set[str]] = {s: set() for s in self.stages}
        for a, b in transitions:
            self.add_transition(a, b)
        self.bindings: dict[str, set[str]] = {}
        for intent, stages_of in (bindings or {}).items():
            self.bind(intent, stages_of)

    def _check_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise ConfigurationError(f"unknown stage {stage!r}; stages: {self.stages}")

    def add_stage(self, stage: str) -> None:
        if stage not in self.transitions:
            self.stages.append(stage)
            self.transitions[stage] = set()

    def add_transition(self, src: str, dst: str) -> None:
        self._check_stage(src)
        self._check_stage(dst)
        self.transitions[src].add(dst)

    def bind(self, intent: str, stages: Iterable[str]) -> None:
        stages = set(stages)
        for stage in stages:
            self._check_stage(stage)
        self.bindings.setdefault(intent, set()).update(stages)

    def check(self, current: str | None, target: str, *, intent: str | None = None) -> str | None:
        """``None`` if moving to ``target`` (with ``intent``) is legal, else why it is blocked."""
        if target not in self.transitions:
            return f"unknown stage {target!r}"
        if current is None:
            if target != self.start:
                return f"tasks start in {self.start!r}, not {target!r}"
        elif current != target and target not in self.transitions.get(current, ()):
            allowed = sorted(self.transitions.get(current, ()))
            return f"transition {current!r} → {target!r} is not allowed (allowed from {current!r}: {', '.join(allowed) or 'none'})"
        if intent is not None and self.bindings:
            bound = self.bindings.get(intent)
            if bound is None:  # a machine with bindings allows only what it binds
                return f"intent {intent!r} is bound to no stage (bound intents: {', '.join(sorted(self.bindings))})"
            if target not in bound:
                return f"intent {intent!r} is not allowed in stage {target!r} (bound to {sorted(bound)})"
        return None
