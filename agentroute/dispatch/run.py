"""The live state of one task (:class:`TaskRun`) and its checkpointable snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentroute.budget import Ledger
from agentroute.types import Step, Task


@dataclass
class TaskRun:
    """The live state of one task: its record, ledger, steps so far and context for skills."""

    task: Task
    ledger: Ledger
    steps: list[Step] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    exhausted: bool = False
    failed: bool = False
    _index: int = 0

    def next_index(self) -> int:
        self._index += 1
        return self._index - 1

    @property
    def best_answer(self) -> str | None:
        """The latest successful output: the partial answer when the budget runs out."""
        for step in reversed(self.steps):
            if step.status == "ok" and step.output:
                return step.output
        return None
