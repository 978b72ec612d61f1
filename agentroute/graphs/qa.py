"""Multi-hop question answering: planner → executor(s) → summarizer, every step routed.

The planner decomposes the question into at most ``max_subquestions`` sub-questions (one per line);
an executor answers each one concurrently, optionally reading passages that a BM25 retrieval skill
found in a corpus you pass; the summarizer writes the final answer from the sub-answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from agentroute.dispatch.skills import has_key
from agentroute.graph import AgentGraph, GraphState, NodeContext
from agentroute.retrieval import BM25Retriever, Passage, format_passages

PLANNER = (
    "You break a question into the simpler sub-questions needed to answer it. "
    "Write one sub-question per line and nothing else."
)
EXECUTOR = "You answer a question accurately and briefly. Use the passages when given."
SUMMARIZER = (
    "You combine answers to sub-questions into the final answer to the main question. "
    "Reply with the final answer only."
)

_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)]|Q\d*[:.)])\s*")


def parse_subquestions(text: str, question: str, limit: int) -> list[str]:
    """Sub-questions from the planner's output; the question itself when none can be read.

    >>> parse_subquestions("1. Who directed Jaws?\\n2. When was he born?", "q", 3)
    ['Who directed Jaws?', 'When was he born?']
    >>> parse_subquestions("I cannot help", "Who won?", 3)
    ['Who won?']
    """
    subs = []
    for line in text.splitlines():
        line = _LIST_MARK.sub("", line).strip()
        if line.endswith("?") and 8 <= len(line) <= 300 and line not in subs:
            subs.append(line)
    return subs[:limit] or [question]


def build_qa_graph(
    *,
    corpus: Iterable[str | Mapping[str, str] | Passage] | BM25Retriever | None = None,
    top_k: int = 3,
    max_subquestions: int = 3,
    max_tokens: int | None = None,
) -> AgentGraph:
    """The QA graph; with ``corpus``, a BM25 retrieval skill feeds the executors."""
    graph = AgentGraph("qa")
    graph.add_role("planner", prompt=PLANNER, stage="plan", max_tokens=max_tokens)

    def plan(state: GraphState, ctx: NodeContext) -> dict[str, Any]:
        subs = parse_subquestions(state.get("outputs", {}).get("planner", ""), state["query"], max_subquestions)
        ctx.run.context["subquestions"] = subs
        return {"context": {"subquestions": subs}}

    graph.add_node("decompose", plan)
    graph.add_edge("planner", "decompose")
    last = "decompose"
    if corpus is not None:
        retriever = corpus if isinstance(corpus, BM25Retriever) else BM25Retriever(corpus)

        def bm25(context: dict[str, Any]) -> list[list[Passage]]:
            found = [retriever.search(q, k=top_k) for q in context["subquestions"]]
            context["passages"] = found
            return found

        graph.skills.register(
            "bm25",
            bm25,
            stages=["execute"],
            preconditions=[has_key("subquestions")],
            postconditions=[has_key("passages")],
            description="BM25 top-k passages for each sub-question",
        )

        async def retrieve(state: GraphState, ctx: NodeContext) -> dict[str, Any]:
            found = await ctx.dispatcher.use_skill(ctx.run, ctx.skills, "bm25", stage="execute")
            return {"context": {"passages": [format_passages(p) for p in found]}}

        graph.add_node("retrieve", retrieve)
        graph.add_edge(last, "retrieve")
        last = "retrieve"

    def executor_inputs(state: GraphState) -> list[str]:
        subs = state.get("context", {}).get("subquestions") or [state["query"]]
        passages = state.get("context", {}).get("passages") or [""] * len(subs)
        return [f"Passages:\n{p}\n\nQuestion: {q}" if p else q for q, p in zip(subs, passages, strict=True)]

    graph.add_role("executor", prompt=EXECUTOR, stage="execute", fan_out=executor_inputs, max_tokens=max_tokens)
    graph.add_edge(last, "executor")

    def summarizer_input(state: GraphState) -> str:
        subs = state.get("context", {}).get("subquestions") or []
        answers = state.get("outputs", {}).get("executor") or []
        lines = "\n".join(f"- {q} {a.strip()}" for q, a in zip(subs, answers, strict=False))
        return f"Main question: {state['query']}\nSub-answers:\n{lines}\nFinal answer:"

    graph.add_role("summarizer", prompt=SUMMARIZER, stage="summarize", input=summarizer_input, max_tokens=max_tokens)
    graph.add_edge("executor", "summarizer")
    return graph


graph = build_qa_graph()
