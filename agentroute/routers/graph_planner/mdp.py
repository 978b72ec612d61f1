"""GraphPlanner's MDP: a query's workflow as a tree of sub-queries processed depth-first.

From "Graph Memory-Augmented Agentic Routing for Multi-Agent LLMs" (GraphPlanner, ulab-uiuc):

- The root node holds the query. The node on top of the depth-first stack is the *current* node.
- A **pending** node may be **executed** (an executor answers it: the node is done) or **planned**
  (a planner splits it into 1–3 sub-queries, its children, pushed so that the first child is
  processed first) while fewer than ``max_planner_calls`` (2) planner calls were made and its
  depth is below ``max_depth`` (3).
- A **planned** node whose children are all done is **summarised** (a summariser combines the
  children's answers: the node is done).
- The episode ends when the root is done; its answer (the root's executor or summariser output)
  is the task's answer.

An action is a pair (role, agent): role ∈ {planner, executor, summarizer}, agent = one (model,
strategy) of the pool. :meth:`Workflow.legal_roles` is the stage machine's rule; the budget mask
(worst-case cost above what is left) is applied by the caller, who knows the costs. This module is
pure Python, shared by the offline environment and the LangGraph graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ROLES: tuple[str, ...] = ("planner", "executor", "summarizer")
STAGE_OF: dict[str, str] = {"planner": "plan", "executor": "execute", "summarizer": "summarize"}
PLAN, EXECUTE, SUMMARIZE = range(3)
#: Width of :meth:`Workflow.features`.
N_STRUCT = 10
#: Per-action features: [log-cost (scaled), cost / remaining budget (clipped), unavailable flag].
N_ACTION = 3
#: Per-workflow-row features: [role one-hot (3), cost_n, depth].
N_FLOW = 5
#: Width of a text embedding (node, query, task).
EMB = 384

NodeStatus = Literal["pending", "planned", "done"]


@dataclass
class Node:
    """One (sub-)query of the workflow tree."""

    id: int
    text: str
    depth: int
    parent: int | None = None
    index: int = 0  # position among its siblings
    children: list[int] = field(default_factory=list)
    status: NodeStatus = "pending"
    answer: str | None = None
    role: str | None = None  # the role that finished it (executor or summarizer)
    agent: str | None = None  # the agent that finished it
    value: float | None = None  # offline environment: the (composed) correctness of its answer


@dataclass
class Workflow:
    """The tree, the depth-first stack and the log of actions of one episode."""

    query: str
    max_planner_calls: int = 2
    max_depth: int = 3
    max_subqueries: int = 3
    nodes: list[Node] = field(default_factory=list)
    stack: list[int] = field(default_factory=list)
    planner_calls: int = 0
    actions: list[tuple[int, str, str, float]] = field(default_factory=list)  # (node, role, agent, cost)

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes.append(Node(0, self.query, 0))
            self.stack.append(0)

    # -- state ------------------------------------------------------------------------------
    @property
    def root(self) -> Node:
        return self.nodes[0]

    @property
    def done(self) -> bool:
        return self.root.status == "done"

    def current(self) -> Node | None:
        return self.nodes[self.stack[-1]] if self.stack else None

    def legal_roles(self) -> tuple[bool, bool, bool]:
        """Which of (planner, executor, summarizer) may act on the current node."""
        node = self.current()
        if node is None:
            return (False, False, False)
        if node.status == "pending":
            can_plan = self.planner_calls < self.max_planner_calls and node.depth < self.max_depth
            return (can_plan, True, False)
        if node.status == "planned" and all(self.nodes[c].status == "done" for c in node.children):
            return (False, False, True)
        return (
            False,
            False,
            False,
        )  # pragma: no cover - a planned node is on top only when its children are done

    def children_answers(self, node: Node) -> list[str]:
        return [self.nodes[c].answer or "" for c in node.children]

    def last_answer(self) -> Node | None:
        """The most recently finished node: the partial answer when the episode stops early."""
        for node_id, role, _, _ in reversed(self.actions):
            node = self.nodes[node_id]
            if role != "planner" and node.status == "done":
                return node
        return None

    # -- transitions ------------------------------------------------------------------------
    def finish(
        self, role: str, agent: str, answer: str, *, cost: float = 0.0, value: float | None = None
    ) -> Node:
        """An executor or summariser answered the current node."""
        node = self._check(role, ("executor", "summarizer"))
        node.status, node.answer, node.role, node.agent, node.value = "done", answer, role, agent, value
        self.actions.append((node.id, role, agent, cost))
        self.stack.pop()
        return node

    def plan(self, agent: str, subqueries: list[str], *, cost: float = 0.0) -> Node:
        """A planner split the current node into 1–``max_subqueries`` children."""
        node = self._check("planner", ("planner",))
        subqueries = [q for q in subqueries if q.strip()][: self.max_subqueries] or [node.text]
        self.planner_calls += 1
        node.status = "planned"
        self.actions.append((node.id, "planner", agent, cost))
        for k, text in enumerate(subqueries):
            child = Node(len(self.nodes), text, node.depth + 1, node.id, k)
            self.nodes.append(child)
            node.children.append(child.id)
        self.stack.extend(reversed(node.children))  # the first child on top: depth-first, in order
        return node

    def _check(self, role: str, allowed: tuple[str, ...]) -> Node:
        node = self.current()
        if node is None:
            raise ValueError("the workflow is finished")
        legal = self.legal_roles()
        if role not in allowed or not legal[ROLES.index(role)]:
            raise ValueError(
                f"role {role!r} is not legal on node {node.id} ({node.status}); legal: {[r for r, ok in zip(ROLES, legal, strict=True) if ok]}"
            )
        return node

    def features(self, budget_fraction: float = 1.0) -> list[float]:
        """:data:`N_STRUCT` structural features of the current node and episode."""
        node = self.current()
        if node is None:
            return [0.0] * N_STRUCT
        n_children = len(self.nodes[node.parent].children) if node.parent is not None else 1
        return [
            node.depth / max(1, self.max_depth),
            self.planner_calls / max(1, self.max_planner_calls),
            float(node.parent is None),
            float(node.status == "pending"),
            float(node.status == "planned"),
            len(node.children) / max(1, self.max_subqueries),
            node.index / max(1, self.max_subqueries),
            n_children / max(1, self.max_subqueries),
            min(1.0, len(self.actions) / 10.0),
            float(budget_fraction),
        ]

    # -- pictures ---------------------------------------------------------------------------
    def render(self, width: int = 60) -> str:
        """The tree as text: one line per node with the roles and agents that acted on it."""
        by_node: dict[int, list[str]] = {}
        for node_id, role, agent, _ in self.actions:
            by_node.setdefault(node_id, []).append(f"{role}@{agent}")
        lines: list[str] = []

        def walk(node_id: int, prefix: str, last: bool) -> None:
            node = self.nodes[node_id]
            text = " ".join(node.text.split())
            text = text if len(text) <= width else text[: width - 1] + "…"
            head = "" if node.parent is None else prefix + ("└─ " if last else "├─ ")
            acts = ", ".join(by_node.get(node_id, [])) or node.status
            mark = "" if node.value is None else f"  [{node.value:g}]"
            lines.append(f"{head}{text}  ⟨{acts}⟩{mark}")
            child_prefix = "" if node.parent is None else prefix + ("   " if last else "│  ")
            for k, child in enumerate(node.children):
                walk(child, child_prefix, k == len(node.children) - 1)

        walk(0, "", True)
        return "\n".join(lines)


def split_plan(text: str, limit: int = 3) -> list[str]:
    """Sub-queries from a planner's output: one per non-empty line, list markers removed.

    >>> split_plan("1. Who wrote X?\\n2) When?\\n\\n- Where?")
    ['Who wrote X?', 'When?', 'Where?']
    """
    out = []
    for line in text.splitlines():
        line = line.strip().lstrip("-*•").strip()
        while line[:1].isdigit():
            line = line[1:]
        line = line.lstrip(".):").strip()
        if line:
            out.append(line)
    return out[:limit]
