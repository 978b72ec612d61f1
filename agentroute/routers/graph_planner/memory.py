"""GARNet's tables: the historical memory (past episodes) and its rows.

A row is one past step: (query key, agent key, role, score, normalised cost, input embedding,
output embedding) — the reference code's interaction table (query id, role-model id, score, cost,
input and output embeddings). Output embeddings are read wherever the memory holds the step's output
(the SQL memory; rows given as dicts with ``output``); a table of logged outcomes has none (the
offline environment). **The historical memory is agentroute's SQL
interaction memory**: :meth:`HistoryMemory.from_store` reads finished tasks and their steps through
the :class:`~agentroute.memory.base.MemoryStore` API (``trajectories``), so a router given a larger
memory at inference reads more rows, without retraining. The workflow memory (this episode's
rows) is kept by the caller, from the :class:`~agentroute.routers.graph_planner.mdp.Workflow`.

For a query embedding q the memory returns its ``k`` nearest rows (cosine similarity of q to the
rows' input embeddings) with softmax weights w = softmax(sim / τ); the policy network aggregates
them (per-row MLP, then a weighted scatter-mean by the rows' agent foreign key).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentroute.errors import ConfigurationError

#: Width of one row's numeric features: [score, cost_n, planner, executor, summarizer].
N_ROW = 5
_ROLE_COL = {"planner": 2, "executor": 3, "summarizer": 4}


@dataclass
class HistoryMemory:
    """Rows of past steps. ``emb`` (n × d, unit norm), ``agent`` (agent keys ``model:strategy``),
    ``role``, ``score`` in [0, 1], ``cost`` (USD), ``query`` (a foreign key: the task or query id) and
    ``out_emb`` (n × d embeddings of the steps' outputs, a zero row where the output is unknown;
    ``None`` when no row has one)."""

    emb: np.ndarray
    agent: list[str]
    role: list[str]
    score: np.ndarray
    cost: np.ndarray
    query: list[str]
    source: str = ""
    out_emb: np.ndarray | None = None
    _feats: np.ndarray | None = field(default=None, repr=False)
    _scale: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(self.agent)
        if not (len(self.emb) == len(self.role) == len(self.score) == len(self.cost) == len(self.query) == n):
            raise ConfigurationError("history memory: every column must have one entry per row")
        if self.out_emb is not None and self.out_emb.shape != self.emb.shape:
            raise ConfigurationError(
                "history memory: output embeddings must match the input embeddings' shape"
            )

    def __len__(self) -> int:
        return len(self.agent)

    @classmethod
    def empty(cls, dim: int = 384) -> HistoryMemory:
        return cls(np.zeros((0, dim), np.float32), [], [], np.zeros(0), np.zeros(0), [], "empty")

    def subset(self, index: Sequence[int] | np.ndarray) -> HistoryMemory:
        index = np.asarray(index, dtype=np.int64)
        return HistoryMemory(
            self.emb[index],
            [self.agent[i] for i in index],
            [self.role[i] for i in index],
            self.score[index],
            self.cost[index],
            [self.query[i] for i in index],
            self.source,
            self.out_emb[index] if self.out_emb is not None else None,
        )

    def features(self, cost_scale: float) -> np.ndarray:
        """(n × :data:`N_ROW`) numeric row features, cost normalised by ``cost_scale``."""
        if self._feats is None or self._scale != cost_scale:
            f = np.zeros((len(self), N_ROW), np.float32)
            f[:, 0] = self.score
            f[:, 1] = np.clip(self.cost / max(cost_scale, 1e-12), 0.0, 5.0)
            for i, role in enumerate(self.role):
                col = _ROLE_COL.get(role)
                if col is not None:
                    f[i, col] = 1.0
            self._feats, self._scale = f, cost_scale
        return self._feats

    def nearest(self, q: np.ndarray, k: int, *, exclude: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices and similarities of the ``k`` rows nearest to ``q`` (rows of ``exclude`` left out)."""
        if len(self) == 0 or k < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        sims = self.emb @ np.asarray(q, np.float32)
        if exclude is not None:
            sims = np.where(np.asarray(self.query) == exclude, -np.inf, sims)
        k = min(k, len(self))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        keep = np.isfinite(sims[top])
        return top[keep], sims[top][keep].astype(np.float32)

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]], embed: Any = None, source: str = "") -> HistoryMemory:
        """Rows as dicts with ``text`` (or ``emb``), ``agent``, ``role``, ``score``, ``cost``, ``query``
        and optionally ``output`` (the step's output text) or ``out_emb``."""
        rows = list(rows)
        missing = [key for key in ("agent", "score", "cost", "query") if rows and key not in rows[0]]
        if missing:
            raise ConfigurationError(f"history memory rows lack the columns {missing}")
        if not rows:
            return cls.empty()
        if "emb" in rows[0]:
            emb = np.asarray([r["emb"] for r in rows], np.float32)
        else:
            if embed is None:
                from agentroute.routers.utility import embed_texts as embed
            emb = np.asarray(embed([r["text"] for r in rows]), np.float32)
        return cls(
            emb,
            [str(r["agent"]) for r in rows],
            [str(r.get("role", "executor")) for r in rows],
            np.asarray([float(r["score"]) for r in rows]),
            np.asarray([float(r["cost"]) for r in rows]),
            [str(r["query"]) for r in rows],
            source,
            _output_embeddings(rows, emb.shape, embed),
        )

    @classmethod
    def from_store(
        cls, memory: Any, *, limit: int | None = None, graph: str | None = None, embed: Any = None
    ) -> HistoryMemory:
        """The rows of a :class:`~agentroute.memory.base.MemoryStore`: every step of a finished task
        with a learned score (:func:`agentroute.outcomes.learned_scores`: a failed call scores 0 for
        its agent, feedback judges the task's answer, else the step's own score or the task's).

        Raises :class:`ConfigurationError` when the store cannot be read as a memory or holds
        steps but no scores at all (nothing for the policy to learn from)."""
        if not callable(getattr(memory, "trajectories", None)):
            raise ConfigurationError(
                f"graph-planner: {type(memory).__name__} is not an interaction memory (no trajectories())"
            )
        from agentroute.outcomes import learned_scores

        memory.flush()
        rows: list[dict[str, Any]] = []
        seen_steps = 0
        for traj in memory.trajectories(graph=graph, status=["done", "budget_exhausted"]):
            for step, score in learned_scores(traj):  # the same rows in the same order in every read
                seen_steps += step.status == "ok"
                if score is None or not np.isfinite(score):
                    continue
                rows.append(
                    {
                        "text": step.input or traj.task.query,
                        "output": step.output,
                        "agent": f"{step.agent.model}:{step.agent.strategy}",
                        "role": step.agent.role,
                        "score": float(np.clip(score, 0.0, 1.0)),
                        "cost": float(step.cost_usd),
                        "query": str(traj.task.metadata.get("query_id") or traj.task.id),
                    }
                )
                if limit is not None and len(rows) >= limit:
                    break
            if limit is not None and len(rows) >= limit:
                break
        if seen_steps and not rows:
            raise ConfigurationError(
                "graph-planner: the memory holds steps but no scores (neither step.score nor task.score); "
                "record outcomes with memory.add_feedback(task_id, score) or finish tasks with a score"
            )
        return cls.from_rows(rows, embed=embed, source=f"memory:{type(memory).__name__}")

    @classmethod
    def from_table(cls, table: Any, emb: np.ndarray, *, role: str = "executor") -> HistoryMemory:
        """Every logged cell of an :class:`~agentroute.outcomes.OutcomeTable` as an executor row."""
        scores = np.asarray(table.scores, float)
        costs = np.asarray(table.costs, float)
        q_idx, m_idx = np.nonzero(~np.isnan(scores))
        col_mean = np.nan_to_num(np.nanmean(np.where(np.isnan(scores), np.nan, costs), axis=0))
        cost = np.where(np.isnan(costs[q_idx, m_idx]), col_mean[m_idx], costs[q_idx, m_idx])
        agents = [_agent_key(m) for m in table.models]
        return cls(
            np.asarray(emb, np.float32)[q_idx],
            [agents[j] for j in m_idx],
            [role] * len(q_idx),
            scores[q_idx, m_idx],
            cost,
            [table.query_ids[i] for i in q_idx],
            "table",
        )


def _output_embeddings(rows: list[dict[str, Any]], shape: tuple[int, ...], embed: Any) -> np.ndarray | None:
    """(n × d) output embeddings of ``rows`` (``out_emb``, or ``output`` texts embedded; a zero row
    where a row has neither), or ``None`` when no row has an output."""
    if any("out_emb" in r for r in rows):
        return np.asarray([r.get("out_emb", np.zeros(shape[1])) for r in rows], np.float32)
    texts = [str(r.get("output") or "") for r in rows]
    have = [i for i, t in enumerate(texts) if t.strip()]
    if not have:
        return None
    if embed is None:
        from agentroute.routers.utility import embed_texts as embed
    out = np.zeros(shape, np.float32)
    out[have] = np.asarray(embed([texts[i] for i in have]), np.float32)
    return out


def _agent_key(column: str) -> str:
    """``model:strategy`` of an outcome-table column (``direct`` when it names no strategy)."""
    from agentroute.outcomes import column_agent

    agent = column_agent(column)
    return f"{agent.model}:{agent.strategy}"
