"""The SDK's data model: agents, decisions, completions, steps, tasks and trajectories."""

from __future__ import annotations

import functools
import math
import numbers
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from agentroute.budget import Budget
from agentroute.errors import ConfigurationError

StepStatus = Literal["ok", "failed", "blocked"]
TaskStatus = Literal["running", "done", "budget_exhausted", "failed", "interrupted"]


_ids = random.SystemRandom(), random.Random()
_ids[1].seed(_ids[0].getrandbits(128))
os.register_at_fork(after_in_child=lambda: _ids[1].seed(_ids[0].getrandbits(128)))  # no shared ids after fork


def new_id() -> str:
    """A time-ordered 128-bit hex id: 48 bits of Unix milliseconds, then 80 random bits.

    The layout of UUIDv7 (RFC 9562): ids made later sort later, so a database appends them at the
    end of its primary-key index instead of splitting pages at random places. The random part is
    seeded from the OS once; ids need uniqueness, not secrecy.
    """
    return (time.time_ns() // 1_000_000 << 80 | _getrandbits(80)).to_bytes(16).hex()  # 5× a two-part f-string


_getrandbits = _ids[1].getrandbits  # reseeded in place after a fork: the bound method stays valid


def utcnow() -> datetime:
    return datetime.now(UTC)


class Agent(BaseModel):
    """The routable unit: a role played by a model with a prompting strategy."""

    model_config = ConfigDict(frozen=True)

    role: str = "executor"
    model: str
    strategy: str = "direct"

    @functools.cached_property
    def key(self) -> str:  # routers read it on every step: computed once per (frozen) agent
        return f"{self.role}:{self.model}:{self.strategy}"

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy.__dict__.pop("key", None)  # the cached key of the original no longer holds
        return copy

    def __str__(self) -> str:
        return self.key

    def __hash__(self) -> int:  # equal agents have equal keys; the key's hash is cached with it
        return hash(self.key)


def check_role(role: Any) -> None:
    """A role holds no ``:``: an agent's key ``role:model:strategy`` is read back on its first ``:``
    (a model id may hold one: ``ollama:llama3:8b``), and a graph's roles are LangGraph nodes, which refuse it.

    Checked where a role is given (:func:`~agentroute.graph_runtime.routed_node`,
    :meth:`~agentroute.dispatch.Dispatcher.step`), not by :class:`Agent`, so that logs stored
    before the check still read back."""
    if isinstance(role, str) and ":" in role:
        raise ConfigurationError(
            f"role {role!r} holds ':', the separator of an agent's key role:model:strategy; use '-' or '.'"
        )


class Decision(BaseModel):
    """A router's choice for one step: one agent, or several with weights (collaboration).

    Immutable: a plain single-agent decision is one shared object (see ``routers.base.decide``).
    Non-finite scores are written to JSON as strings (``"nan"``, ``"inf"``), so they read back.
    """

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    agents: list[Agent]
    weights: list[float] = Field(default_factory=list)
    router: str = ""
    scores: dict[str, float] = Field(default_factory=dict)
    evidence: dict[str, Any] = Field(default_factory=dict)
    why: str = ""

    @property
    def agent(self) -> Agent:
        return self.agents[0]


#: One chat message as OpenAI's chat API takes it: ``role`` and ``content`` (text, ``None`` beside an
#: assistant's ``tool_calls``, or a list of content parts), and any other field (``name``,
#: ``tool_calls``, ``tool_call_id``) the provider bills and a chat template renders.
Message = dict[str, Any]


@dataclass(slots=True)
class CompletionRequest:
    """One call to a model. ``query_id`` lets the replay backend find the logged outcome.

    A plain dataclass: the dispatcher builds one per candidate on every step, from values it has
    already checked, so it is not validated again. ``reasoning_effort``, ``verbosity``, ``seed``,
    ``response_format``, ``logprobs`` and ``top_logprobs`` (``None``: the provider's default; set
    from a :class:`~agentroute.dispatch.options.RequestOptions`) reach the providers of the backends
    that name them in their ``request_fields`` (``openai``, ``litellm``); others ignore them, so a
    caller refuses them first (the server does, but for ``seed``).
    """

    model: str
    messages: list[Message]
    max_tokens: int = 256
    temperature: float = 0.0
    stop: list[str] | None = None
    query_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    reasoning_effort: str | None = None
    verbosity: str | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @property
    def prompt_text(self) -> str:
        """The messages' contents, one per line (``None`` as empty; content parts as their text)."""
        return "\n".join(content_text(m.get("content")) for m in self.messages)


#: OpenAI's content parts that are text, by type: the field that holds their text (a part without a
#: ``type`` is a text part). Any other part (``image_url``, ``input_audio``, ``file``) is not text.
TEXT_PARTS: dict[str, str] = {"text": "text", "refusal": "refusal"}


def part_text(part: Any) -> str | None:
    """The text of one content part: a text or refusal part's text, a bare string as it is;
    ``None`` for a part that is not text (an image, audio, a file, an unknown type) or whose text is
    not a string."""
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return None
    kind = part.get("type", "text")
    field = TEXT_PARTS.get(kind) if isinstance(kind, str) else None
    text = part.get(field) if field is not None else None
    return text if isinstance(text, str) else None


def content_text(content: Any) -> str:
    """A message's ``content`` as text: a string as it is, ``None`` empty, OpenAI's content parts
    (``[{"type": "text", "text": …}, {"type": "refusal", "refusal": …}, …]``) their texts joined
    (parts of another type left out: :func:`part_text`; a part that is no dict ``str()``), anything
    else ``str()``."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(part_text(p) or "" if isinstance(p, dict) else str(p) for p in content)
    return str(content)


class Completion(BaseModel):
    """What a backend returns. ``score`` is set only by backends that know the outcome (replay).

    Usage left ``None`` was not reported: the dispatcher counts it — the prompt as reserved, the
    text with the backend's tokenizer (or the byte bound) — and prices it from the card
    (:func:`~agentroute.pool.backends.usage.with_usage`), so a backend of your own that returns
    only text is still billed, never free.
    """

    model: str
    text: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    latency_ms: float = 0.0
    score: float | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


def finite_number(value: Any) -> float | None:
    """``value`` as a ``float`` when it is a finite real number (an ``int``, a ``float``, a NumPy
    number; not a ``bool``), else ``None``: how a number a backend reports beside its answer (a
    reply's ``raw["confidence"]``) is read."""
    if type(value) is float:  # the common case, without the ABC check
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int of 400 digits, as JSON may carry one
        return None
    return number if math.isfinite(number) else None


class Step(BaseModel):
    """One call of one agent inside a task."""

    id: str = Field(default_factory=new_id)
    task_id: str
    index: int
    stage: str
    agent: Agent
    decision: Decision | None = None
    input: str = ""
    output: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    status: StepStatus = "ok"
    error: str | None = None
    score: float | None = None
    confidence: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Task(BaseModel):
    """One user query run through a graph, with its budget and outcome."""

    id: str = Field(default_factory=new_id)
    query: str
    graph: str = ""
    task_type: str | None = None
    budget: Budget | None = None
    status: TaskStatus = "running"
    answer: str | None = None
    cost_usd: float = 0.0
    score: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class Trajectory(BaseModel):
    """A task with its steps: the unit routers learn from."""

    task: Task
    steps: list[Step] = Field(default_factory=list)

    @property
    def score(self) -> float | None:
        return self.task.score

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps)


class AuditEvent(BaseModel):
    """A replayable record of a blocked operation, a retry, a fallback or a broken promise.

    ``overrun``: a provider billed more than the attempt's reserved worst case; ``protocol_error``:
    a reply whose usage could not be trusted (charged its worst case) or whose ``raw["confidence"]``
    is no finite number (recorded as absent; the step stands); ``router_error``: a router
    raised or chose outside its candidates (the step went to the cheapest candidate);
    ``deadline``: the task's ``seconds`` budget ran out during a step; ``unsettled_attempt``: a
    provider attempt was in flight when its process stopped (charged its worst case on resume).
    """

    id: str = Field(default_factory=new_id)
    task_id: str
    stage: str
    kind: Literal[
        "stage_blocked",
        "skill_blocked",
        "precondition_failed",
        "postcondition_failed",
        "budget_blocked",
        "retry",
        "fallback",
        "step_failed",
        "overrun",
        "protocol_error",
        "router_error",
        "deadline",
        "unsettled_attempt",
    ]
    subject: str = ""
    detail: str = ""
    created_at: datetime = Field(default_factory=utcnow)


@dataclass(slots=True)
class RouteContext:
    """What a router may look at when choosing an agent for a step.

    Only what a real deployment knows before the call: the query and step input, the stage and
    role, the task's history so far, earlier ``attempts`` at this step (cascades), the legal and
    affordable ``candidates`` with their card-priced worst-case ``costs`` (USD, by agent key), the
    ``cards`` of the whole pool (by model id; the candidates' models are among them), and the
    budget that remains. Never a logged outcome.
    """

    query: str
    candidates: list[Agent]
    stage: str = "execute"
    role: str = "executor"
    step_input: str = ""
    task_id: str = ""
    step_index: int = 0
    history: list[Step] = field(default_factory=list)
    attempts: list[Step] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)
    cards: dict[str, Any] = field(default_factory=dict)
    remaining: dict[str, float] = field(default_factory=dict)
    budget: dict[str, float] = field(default_factory=dict)
    query_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def cost_of(self, index: int) -> float:
        """The card-priced worst-case cost of candidate ``index`` (0 when unknown)."""
        return self.costs.get(self.candidates[index].key, 0.0)
