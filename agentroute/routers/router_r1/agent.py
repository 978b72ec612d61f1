"""``ThinkRouteAgent``: Router-R1's think/route loop as a graph node, every route a dispatcher step.

Router-R1 (Zhang et al., arXiv:2506.09033) lets a policy LM interleave reasoning and routing: it
generates until ``</route>`` (or ``</search>``) or ``</answer>``; a route action
``agent-id: sub-query`` is sent to that agent and its reply is appended inside
``<information>…</information>`` (truncated to ``info_tokens``); generation then resumes. At most
``max_turns`` route turns, then one final turn in which routing is not executed.

In agentroute each route action is a :meth:`Dispatcher.step <agentroute.dispatch.Dispatcher.step>`
restricted to the named model, so the task's ledger, memory, audit, retries and the dispatcher's
router (choosing among that model's strategies) apply to it. A route that names an unknown agent,
or one the remaining budget cannot pay for, is not dispatched: the ``<information>`` block says so,
and the policy can learn from it. When no agent is affordable any more the next turn is the final
one: the policy must answer.

The same :class:`ThinkRouteLoop` runs a batch of episodes for GRPO rollouts (token ids of every
policy turn are kept, the ``<information>`` tokens marked so they can be masked from the loss).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from agentroute.budget import Cost
from agentroute.dispatch.dispatcher import Dispatcher
from agentroute.dispatch.run import TaskRun
from agentroute.errors import ConfigurationError
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import range_rule
from agentroute.routers.router_r1.prompts import (
    AGENT_PROMPT,
    FINAL_STOPS,
    ROUTE_STOPS,
    information,
    system_prompt,
)
from agentroute.routers.router_r1.rewards import extract_answer, format_valid, parse_route
from agentroute.routers.router_r1.served import PolicyServerError
from agentroute.strategies import get_strategy
from agentroute.training.lm_policy import LMPolicy, OpenAIPolicy

_OPEN_ROUTE = re.compile(r"<(route|search)>")


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """Settings of the think/route loop.

    Args:
        max_turns: route turns before the final turn (Router-R1: 4).
        turn_tokens: policy tokens per turn.
        info_tokens: an agent's reply is truncated to this many policy tokens.
        route_max_tokens: output limit of a routed call (default: the card's).
        temperature, top_p: policy sampling (0: greedy).
        role, stage: of the routed dispatcher steps.
    """

    max_turns: int = 4
    turn_tokens: int = 96
    info_tokens: int = 128
    route_max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    role: str = "executor"
    stage: str = "route"

    def __post_init__(self) -> None:
        """One error naming each setting refused."""
        refused = []
        for key, least in (("max_turns", 0), ("turn_tokens", 1), ("info_tokens", 1), ("route_max_tokens", 1)):
            value = getattr(self, key)
            if value is None and key == "route_max_tokens":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                refused.append(f"{key!r} must be an integer ≥ {least} (got {value!r})")
        number = {
            key: isinstance(getattr(self, key), int | float) and not isinstance(getattr(self, key), bool)
            for key in ("temperature", "top_p")
        }
        if not (number["temperature"] and 0 <= self.temperature < math.inf):
            refused.append(f"'temperature' must be {range_rule(0)}, 0 = greedy (got {self.temperature!r})")
        if not (number["top_p"] and 0 < self.top_p <= 1):
            refused.append(f"'top_p' must be {range_rule(0, 1, low_open=True)} (got {self.top_p!r})")
        if refused:
            raise ConfigurationError("loop: " + "; ".join(refused))


@dataclass
class Turn:
    """One policy turn and what the loop did with it."""

    policy: str
    kind: str  # route | refused | answer | final | invalid
    agent: str | None = None
    query: str | None = None
    information: str | None = None
    cost_usd: float = 0.0
    step_index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Episode:
    """One rollout: the prompt, the completion as (ids, from_policy, logprobs) segments, the turns."""

    question: str
    run: TaskRun
    prompt_ids: list[int]
    names: list[str]
    segments: list[tuple[list[int], bool, list[float] | None]] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    route_turns: int = 0
    final: bool = False
    done: bool = False
    cost_raw: float = 0.0  # Σ completion tokens × output price per 1M (Router-R1's cost)
    route_calls: int = 0
    budget_stopped: bool = False  # the budget ended the routing: no agent is affordable any more

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def answer(self) -> str | None:
        return extract_answer(self.text)

    @property
    def format_valid(self) -> bool:
        return format_valid(self.text, self.names)

    @property
    def completion_ids(self) -> list[int]:
        return [i for ids, _, _ in self.segments for i in ids]

    @property
    def env_mask(self) -> list[int]:
        """1 for tokens the policy sampled, 0 for ``<information>`` tokens (masked from the loss)."""
        return [int(own) for ids, own, _ in self.segments for _ in ids]

    @property
    def logprobs(self) -> list[float] | None:
        if any(own and lp is None for _, own, lp in self.segments):
            return None
        return [
            x for ids, own, lp in self.segments for x in (lp if own and lp is not None else [0.0] * len(ids))
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "turns": [t.as_dict() for t in self.turns],
            "completion": self.text,
            "format_valid": self.format_valid,
            "route_calls": self.route_calls,
            "cost_raw": self.cost_raw,
            "extracted_answer": self.answer,
        }


class ThinkRouteLoop:
    """Runs episodes of the think/route loop with ``policy`` over the cards of ``pool``.

    Args:
        policy: the LM that thinks and routes (:mod:`agentroute.training.lm_policy`).
        pool: the agents it may route to (their cards make the prompt's agent list).
        settings: :class:`LoopSettings`.
    """

    def __init__(self, policy: LMPolicy, pool: ModelPool, settings: LoopSettings | None = None):
        self.policy, self.pool = policy, pool
        self.settings = settings or LoopSettings()
        self.cards: list[ModelCard] = list(pool)
        self.names = [c.id for c in self.cards]
        colon = next((n for n in self.names if ":" in n), None)
        if colon is not None:  # `<route> llama3:8b: q </route>` has two colons: never a route action
            raise ConfigurationError(
                f"router-r1: agent id {colon!r} has a colon, which a route action (`agent-id: query`) cannot "
                "name; give the card another id (its model may keep the colon)"
            )
        self.system = system_prompt(self.cards, self.settings.max_turns)

    # -- prompts ----------------------------------------------------------------------------
    def messages(self, question: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": question}]

    def prompt_ids(self, question: str) -> list[int]:
        tok = self.policy.tokenizer
        ids = tok.apply_chat_template(self.messages(question), add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def too_long(self, question: str) -> str | None:
        """Why an episode on ``question`` cannot fit the policy's context (its model's
        ``max_position_embeddings``: the prompt, every turn and every information block), or ``None``."""
        config = getattr(getattr(self.policy, "model", None), "config", None)
        limit = getattr(config, "max_position_embeddings", None)
        if not isinstance(limit, int):
            return None  # a served policy: its server enforces its own length
        s = self.settings
        prompt = len(self.prompt_ids(question))
        most = (
            prompt + (s.max_turns + 1) * s.turn_tokens + s.max_turns * (s.info_tokens + 16)
        )  # 16: the tags, the notes
        if most <= limit:
            return None
        return (
            f"the question is {prompt} tokens with the system prompt, {most} with the loop's turns, over the "
            f"policy's {limit}-token context; shorten it (or loop: turn_tokens, info_tokens, max_turns)"
        )

    def episode(self, question: str, run: TaskRun) -> Episode:
        """A new episode on ``question``: a :class:`ConfigurationError` when it cannot fit the policy's context."""
        why = self.too_long(question)
        if why is not None:
            raise ConfigurationError(f"router-r1: {why}")
        return Episode(question, run, self.prompt_ids(question), self.names)

    # -- budget -----------------------------------------------------------------------------
    def worst_case(self, card: ModelCard, query: str) -> Cost:
        """The cheapest strategy's worst case of routing ``query`` to ``card`` (an estimate of the
        dispatcher's own check, which stays the authority)."""
        tok = self.policy.tokenizer
        best: Cost | None = None
        for name in card.strategies:
            s = get_strategy(name)
            tokens_in = (
                len(tok.encode(s.system_prompt(AGENT_PROMPT) + "\n" + query, add_special_tokens=False)) + 16
            )
            out = max(1, int((self.settings.route_max_tokens or card.max_tokens) * s.max_tokens_factor))
            one = Cost(
                card.usd(tokens_in, out), tokens_in + out, 1.0, 0.0, 1.0 if card.tier == "large" else 0.0
            )
            worst = Cost(*(a * s.samples for a in one))
            if best is None or worst.usd < best.usd:
                best = worst
        assert best is not None
        return best

    def affordable(self, run: TaskRun) -> list[str]:
        return [c.id for c in self.cards if run.ledger.affordable(self.worst_case(c, "a short question"))]

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, episodes: Sequence[Episode], dispatcher: Dispatcher) -> Sequence[Episode]:
        """Run every episode to its end, one policy turn for all live episodes at a time."""
        s = self.settings
        while True:
            live = [e for e in episodes if not e.done]
            if not live:
                return episodes
            for final in (False, True):  # one generate call per stop set
                group = [
                    e
                    for e in live
                    if e.final == final and not _out_of_time(e, "the policy did not start its turn")
                ]
                if not group:
                    continue
                contexts = [e.prompt_ids + e.completion_ids for e in group]
                served: dict[str, Any] = {}
                if isinstance(
                    self.policy, OpenAIPolicy
                ):  # a served call waits no longer than its tasks have left
                    lefts = [left for e in group if (left := e.run.ledger.seconds_left()) is not None]
                    served["timeout_s"] = min(lefts, default=None)
                try:
                    outs = await asyncio.to_thread(
                        self.policy.generate,
                        contexts,
                        max_tokens=s.turn_tokens,
                        stop=FINAL_STOPS if final else ROUTE_STOPS,
                        temperature=s.temperature,
                        top_p=s.top_p,
                        **served,
                    )
                except PolicyServerError as exc:  # a served policy failed: the task fails on its one line,
                    if not exc.timed_out or not all([_out_of_time(e, str(exc)) for e in group]):
                        raise  # (or its time ran out while the policy generated: its best partial answer)
                    continue
                await asyncio.gather(
                    *(self._after_turn(e, out, dispatcher) for e, out in zip(group, outs, strict=True))
                )

    async def _after_turn(self, ep: Episode, out: Any, dispatcher: Dispatcher) -> None:
        ep.segments.append((list(out.ids), True, out.logprobs))
        ep.pieces.append(out.text)
        if ep.final or out.stopped == "</answer>" or out.stopped is None:
            kind = "answer" if out.stopped == "</answer>" else "final" if ep.final else "invalid"
            ep.turns.append(Turn(out.text, kind))
            ep.done = True
            return
        ep.route_turns += 1
        opened = list(_OPEN_ROUTE.finditer(out.text))
        body = out.text[opened[-1].end() : -len(out.stopped)] if opened else ""
        turn = await self._route(ep, body, dispatcher)
        turn.policy = out.text
        ep.turns.append(turn)
        if ep.route_turns >= self.settings.max_turns:
            ep.final = True
        elif not ep.final and not self.affordable(ep.run):
            ep.final = ep.budget_stopped = True
            turn.information = f"{turn.information} [budget spent: answer now]"
        info = information(turn.information or "")
        ids = self.policy.tokenizer.encode(info, add_special_tokens=False)
        ep.segments.append((ids, False, None))
        ep.pieces.append(info)

    async def _route(self, ep: Episode, body: str, dispatcher: Dispatcher) -> Turn:
        parsed = parse_route(body, self.names)
        if isinstance(parsed, str):
            return Turn("", "refused", information=f"not routed: {parsed}; agents: {', '.join(self.names)}")
        name, query = parsed
        card = self.pool.card(name)
        run = ep.run
        if not run.ledger.affordable(self.worst_case(card, query)):
            left = self.affordable(run)
            hint = f"affordable: {', '.join(left)}" if left else "nothing is affordable: answer now"
            if not left:  # the budget ends the routing (with an agent left affordable, the policy may go on)
                ep.final = ep.budget_stopped = True
            return Turn(
                "",
                "refused",
                name,
                query,
                information=f"not routed: {name} is over the remaining budget; {hint}",
            )
        step = await dispatcher.step(
            run,
            role=self.settings.role,
            stage=self.settings.stage,
            prompt=AGENT_PROMPT,
            input=query,
            models=[name],
            max_tokens=self.settings.route_max_tokens,
        )
        if step is None:
            ep.final, ep.budget_stopped = True, run.exhausted
            why = "budget spent" if run.exhausted else "blocked"
            return Turn("", "refused", name, query, information=f"not routed: {why}; answer now")
        if step.status != "ok":
            return Turn(
                "",
                "route",
                name,
                query,
                information=f"{name} failed: {step.error}",
                cost_usd=step.cost_usd,
                step_index=step.index,
            )
        ep.route_calls += 1
        ep.cost_raw += step.tokens_out * (card.output_price or 0.0)
        return Turn(
            "",
            "route",
            name,
            query,
            information=self._truncate(step.output.strip()),
            cost_usd=step.cost_usd,
            step_index=step.index,
        )

    def _truncate(self, text: str) -> str:
        tok = self.policy.tokenizer
        ids = tok.encode(text, add_special_tokens=False)
        if len(ids) <= self.settings.info_tokens:
            return text
        return tok.decode(ids[: self.settings.info_tokens], skip_special_tokens=True)


def _out_of_time(ep: Episode, why: str) -> bool:
    """Whether ``ep``'s task has no time left under a ``seconds`` limit (a socket's timer may end a
    hair early); if so the episode ends there, its task ``budget_exhausted``, the turn ``stopped``."""
    left = ep.run.ledger.seconds_left()
    if left is None or left > 0.01:
        return False
    ep.run.exhausted = ep.done = True
    ep.turns.append(Turn("", "stopped", information=f"{why}: the task's time is spent"))
    return True


def _untagged(ep: Episode) -> str:
    """The policy's last turn without its tags: the answer of an episode with neither an
    ``<answer>`` nor an agent reply (an untrained policy answering in prose)."""
    text = ep.turns[-1].policy if ep.turns else ""
    return " ".join(re.sub(r"</?(think|route|search|answer|information)>", " ", text).split())


def _is_policy(policy: object) -> TypeGuard[LMPolicy]:
    """A policy, not a loader of one: it continues prompts (``generate``)."""
    return hasattr(policy, "generate")


class ThinkRouteAgent:
    """Router-R1's loop as a plain :class:`~agentroute.graph.AgentGraph` node.

    The node reads the query, runs one episode within the task's ledger and returns the
    extracted answer (the last agent reply when the policy never answers, else the policy's own
    text of its last turn) with the turns in
    ``context["router_r1"]``.

    Args:
        policy: an :class:`~agentroute.training.lm_policy.LMPolicy`, or a zero-argument callable
            returning one (loaded on first use).
        settings: :class:`LoopSettings`.
    """

    def __init__(self, policy: LMPolicy | Callable[[], LMPolicy], settings: LoopSettings | None = None):
        self._policy, self.settings = policy, settings or LoopSettings()
        self._loops: dict[int, ThinkRouteLoop] = {}

    @property
    def policy(self) -> LMPolicy:
        policy = self._policy
        if _is_policy(policy):
            return policy
        if not callable(policy):
            raise TypeError(
                f"policy {policy!r} is neither an LMPolicy (it has no generate) nor a loader of one"
            )
        loaded = self._policy = policy()  # the loader: called on first use
        return loaded

    def loop(self, pool: ModelPool) -> ThinkRouteLoop:
        found = self._loops.get(id(pool))
        if found is None:
            found = self._loops[id(pool)] = ThinkRouteLoop(self.policy, pool, self.settings)
        return found

    async def __call__(self, state: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
        loop = self.loop(ctx.dispatcher.pool)
        ep = loop.episode(state["query"], ctx.run)
        await loop.run([ep], ctx.dispatcher)
        summary = ep.summary()
        ctx.run.context["router_r1"] = summary
        answer = ep.answer if ep.answer is not None else ctx.run.best_answer or _untagged(ep)
        if (
            ep.answer is None and ep.budget_stopped
        ):  # a fallback answer because the budget stopped the routing:
            ctx.run.exhausted = (
                True  # the task ends budget_exhausted, as a graph whose step the budget refused
            )
        update: dict[str, Any] = {"context": {"router_r1": summary}, "outputs": {"think_route": ep.text}}
        if answer:
            update["answer"] = answer
        return update
