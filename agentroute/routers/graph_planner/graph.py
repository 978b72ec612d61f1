"""The planner graph: GraphPlanner's workflow as a router-driven LangGraph loop.

::

    decide ──► plan ──────┐
       ▲  ├──► execute ───┤      decide: the router picks the next (role, agent) among the
       │  └──► summarize ─┤      actions the tree allows and the ledger can afford; END when
       └──────────────────┘      the root is done or nothing is affordable (budget_exhausted)

Every plan / execute / summarize visit is one dispatcher step (stage ``plan``/``execute``/
``summarize``), so budgets, memory, audit and checkpoints apply as anywhere else; ``decide`` moves
the task to stage ``route`` through a $0 skill, so the stage machine derived from the graph
(route → plan/execute/summarize → route) checks every transition. The workflow tree travels in the
graph state (``context["graph_planner"]``), so a checkpointed thread resumes the same tree.

With a :class:`~agentroute.routers.graph_planner.router.GraphPlannerRouter` the policy chooses
role and agent, and the historical memory is read from the dispatcher's memory on first use.
With any other router the workflow is the fixed "execute the query" (the router picks the agent).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeGuard

import numpy as np

from agentroute.budget import Cost
from agentroute.errors import ConfigurationError
from agentroute.graph import END, AgentGraph, GraphState, NodeContext
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import register_lazy
from agentroute.routers.graph_planner.mdp import ROLES, STAGE_OF, Node, Workflow, split_plan
from agentroute.strategies import get_strategy
from agentroute.types import Agent, CompletionRequest

log = logging.getLogger(__name__)
# loading the graph makes a saved policy loadable by name (the routers package may list it too)
register_lazy("graph-planner", "agentroute.routers.graph_planner.router:GraphPlannerRouter")

KEY = "graph_planner"
DECIDE_SKILL = "graph_planner.decide"

PROMPTS = {
    "planner": (
        "Split the question into at most three simpler sub-questions whose answers together answer it. "
        "Write one sub-question per line and nothing else."
    ),
    "executor": "Answer the question.",
    "summarizer": "Combine the answers to the sub-questions into one final answer to the question. Give only the answer.",
}


def workflow_to_dict(wf: Workflow) -> dict[str, Any]:
    return dataclasses.asdict(wf)


def workflow_from_dict(data: dict[str, Any]) -> Workflow:
    fields = dict(data)
    fields["nodes"] = [Node(**n) for n in data["nodes"]]
    fields["actions"] = [tuple(a) for a in data["actions"]]
    fields["stack"] = list(data["stack"])
    return Workflow(**fields)


def step_input(wf: Workflow, role: str) -> str:
    """The user message of a step on the current node."""
    node = wf.current()
    assert node is not None
    if role != "summarizer":
        return node.text
    parts = [f"Question: {node.text}", "Sub-questions and their answers:"]
    for k, child in enumerate(node.children, 1):
        c = wf.nodes[child]
        parts.append(f"{k}. {c.text}\n   → {(c.answer or '').strip()}")
    return "\n".join(parts)


def worst_case(
    pool: ModelPool,
    agent: Agent,
    prompt: str,
    text: str,
    *,
    query_id: str | None = None,
    max_tokens: int | None = None,
) -> Cost:
    """The worst case of one step of ``agent`` as the dispatcher reserves it: the backend's prompt
    token count (or its bound) × input price + the strategy's max_tokens × output price, × samples."""
    card = pool.card(agent.model)
    strategy = get_strategy(agent.strategy)
    backend = pool.backend(card.id)
    limit = max(1, int((max_tokens or card.max_tokens) * strategy.max_tokens_factor))
    request = CompletionRequest(
        model=card.backend_model,
        messages=[
            {"role": "system", "content": strategy.system_prompt(prompt)},
            {"role": "user", "content": text},
        ],
        max_tokens=limit,
        temperature=strategy.temperature,
        query_id=query_id,
    )
    tokens_in = backend.prompt_tokens(request, card)
    usd = backend.worst_case_usd(request, card, tokens_in)
    sample = Cost(usd, tokens_in + limit, 1.0, 0.0, 1.0 if card.tier == "large" else 0.0)
    return Cost(*(x * strategy.samples for x in sample))


def _state(state: GraphState) -> dict[str, Any]:
    return dict((state.get("context") or {}).get(KEY) or {})


class _Planner(Protocol):
    """What the planner graph asks of a router that builds the workflow."""

    builds_workflow: bool

    def act(
        self,
        wf: Workflow,
        *,
        agents: Sequence[str],
        action_cost: np.ndarray,
        available: np.ndarray,
        **options: Any,
    ) -> tuple[int, np.ndarray]: ...

    def expect(self, task_id: str, agent: Agent | None) -> None: ...


def _is_planner(router: Any) -> TypeGuard[_Planner]:
    """A router that builds the workflow (GraphPlanner's policy, or a fixed workflow of
    :mod:`.live_env`): it sets ``builds_workflow`` and has ``act`` and ``expect`` (checked without
    importing torch for other routers)."""
    return (
        bool(getattr(router, "builds_workflow", False))
        and callable(getattr(router, "act", None))
        and callable(getattr(router, "expect", None))
    )


def build_planner_graph(
    *,
    max_planner_calls: int = 2,
    max_depth: int = 3,
    max_subqueries: int = 3,
    memory_rows: int | None = 10_000,
    greedy: bool = True,
    max_tokens: Mapping[str, int] | None = None,
) -> AgentGraph:
    """The planner graph (``decide`` → plan/execute/summarize → ``decide`` … → END).

    Args:
        max_planner_calls, max_depth, max_subqueries: the MDP's limits.
        memory_rows: historical rows read from the dispatcher's memory on first use (``None``: all,
            ``0``: none).
        greedy: the policy's argmax (else a sample of its distribution).
        max_tokens: output limit per role (``{"planner": 48}``; a role not named: the card's),
            times the strategy's factor, as the dispatcher applies it; masks use the same limit.
    """
    memory_read: dict[int, bool] = {}
    limits = dict(max_tokens or {})
    for role, value in limits.items():
        if role not in ROLES or not isinstance(value, int) or value < 1:
            raise ConfigurationError(
                f"planner graph: max_tokens must map roles {ROLES} to integers ≥ 1 (got {role!r}: {value!r})"
            )

    async def decide(state: GraphState, ctx: NodeContext) -> dict[str, Any]:
        run, dispatcher = ctx.run, ctx.dispatcher
        await dispatcher.use_skill(run, ctx.skills, DECIDE_SKILL, stage="route")
        data = _state(state)
        wf = (
            workflow_from_dict(data["workflow"])
            if "workflow" in data
            else Workflow(str(state.get("query", "")), max_planner_calls, max_depth, max_subqueries)
        )
        masked, legal_n = int(data.get("masked", 0)), int(data.get("legal", 0))

        def out(nxt: str, **extra: Any) -> dict[str, Any]:
            body = {
                **data,
                "workflow": workflow_to_dict(wf),
                "next": nxt,
                "masked": masked,
                "legal": legal_n,
                **extra,
            }
            return {"context": {KEY: body}}

        if wf.done:
            return {**out(END), "answer": wf.root.answer or ""}
        router = dispatcher.router
        pool = dispatcher.pool
        agents = pool.agents("executor")
        keys = [f"{a.model}:{a.strategy}" for a in agents]
        g = len(agents)
        legal = np.repeat(np.asarray(wf.legal_roles(), bool), g)
        qid = run.task.metadata.get("query_id")
        costs = np.zeros(len(ROLES) * g)
        affordable = np.zeros(len(ROLES) * g, bool)
        for r, role in enumerate(ROLES):
            if not legal[r * g]:
                continue
            text = step_input(wf, role)
            for j, agent in enumerate(agents):
                cost = worst_case(
                    pool,
                    agent.model_copy(update={"role": role}),
                    PROMPTS[role],
                    text,
                    query_id=qid,
                    max_tokens=limits.get(role),
                )
                costs[r * g + j] = cost.usd
                affordable[r * g + j] = run.ledger.affordable(cost)
        mask = legal & affordable
        legal_n += int(legal.sum())
        masked += int(legal.sum() - mask.sum())
        if not mask.any():  # the dispatcher finds nothing affordable: it audits and ends the task cleanly
            role = ROLES[int(np.argmax(legal)) // g]
            return out(STAGE_OF[role], action={"role": role, "model": None, "strategy": None, "p": None})
        if _is_planner(router):
            attach = getattr(router, "attach_memory", None)  # GraphPlanner's: the historical memory
            if (
                dispatcher.memory is not None
                and not memory_read.get(id(router))
                and memory_rows != 0
                and callable(attach)
            ):
                memory_read[id(router)] = True
                if getattr(router, "history", None) is None:
                    try:
                        attach(dispatcher.memory, limit=memory_rows)
                    except ConfigurationError as exc:  # a memory the policy cannot read: act without it
                        log.warning("graph-planner: historical memory not used: %s", exc)
            usd = run.ledger.remaining().get("usd")
            limit = run.ledger.limits.get("usd")
            recording = getattr(router, "recording", None)  # live training: the decisions of each task
            trace = recording.setdefault(run.task.id, []) if recording is not None else None
            action, probs = router.act(
                wf,
                agents=keys,
                action_cost=costs,
                available=mask,
                remaining=usd,
                budget=limit,
                greedy=greedy,
                **({"trace": trace, "exclude_query": qid} if trace is not None else {}),
            )
            role, j = ROLES[action // g], action % g
            chosen = {
                "role": role,
                "model": agents[j].model,
                "strategy": agents[j].strategy,
                "p": float(probs[action]),
            }
        else:  # any other router: execute (or summarise) and let the router pick the agent
            role = "executor" if mask[g : 2 * g].any() else "summarizer"
            chosen = {"role": role, "model": None, "strategy": None, "p": None}
        return out(STAGE_OF[role], action=chosen)

    def role_node(role: str) -> Any:
        stage = STAGE_OF[role]

        async def node(state: GraphState, ctx: NodeContext) -> dict[str, Any]:
            run, dispatcher = ctx.run, ctx.dispatcher
            data = _state(state)
            wf = workflow_from_dict(data["workflow"])
            action = data.get("action") or {}
            text = step_input(wf, role)
            router = dispatcher.router
            models = [action["model"]] if action.get("model") else None
            planner = router if models and _is_planner(router) else None  # told the agent it chose
            if planner is not None:
                planner.expect(
                    run.task.id, Agent(role=role, model=action["model"], strategy=action["strategy"])
                )
            try:
                step = await dispatcher.step(
                    run,
                    role=role,
                    stage=stage,
                    prompt=PROMPTS[role],
                    input=text,
                    models=models,
                    max_tokens=limits.get(role),
                )
            finally:
                if planner is not None:
                    planner.expect(run.task.id, None)
            if step is None or step.status != "ok":
                status = "budget_exhausted" if run.exhausted else "failed"
                partial = wf.last_answer()
                update: dict[str, Any] = {
                    "status": status,
                    "context": {KEY: {**data, "workflow": workflow_to_dict(wf)}},
                }
                if partial is not None and partial.answer:
                    update["answer"] = partial.answer
                return update
            key = f"{step.agent.model}:{step.agent.strategy}"
            if role == "planner":
                wf.plan(key, split_plan(step.output, wf.max_subqueries), cost=step.cost_usd)
                update = {}
            else:
                wf.finish(role, key, step.output, cost=step.cost_usd, value=step.score)
                update = {"answer": step.output}
            return {**update, "context": {KEY: {**data, "workflow": workflow_to_dict(wf)}}}

        node.__name__ = stage
        return node

    graph = AgentGraph("planner")
    graph.skills.register(
        DECIDE_SKILL,
        lambda context, **_: None,
        stages=["route"],
        description="GraphPlanner's next action ($0)",
    )
    graph.add_node("decide", decide, stage="route")
    for role in ROLES:
        graph.add_node(STAGE_OF[role], role_node(role), stage=STAGE_OF[role])
    graph.add_conditional_edges("decide", lambda s: _state(s).get("next", END), [*STAGE_OF.values(), END])
    for role in ROLES:
        graph.add_edge(STAGE_OF[role], "decide")
    return graph


graph = build_planner_graph
