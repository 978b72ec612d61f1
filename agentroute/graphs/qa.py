"""Multi-hop question answering: planner → executor(s) → summarizer, every step routed.

The planner decomposes the question into at most ``max_subquestions`` sub-questions (one per line);
an executor answers each one concurrently, optionally reading passages that a BM25 retrieval skill
found in a corpus you pass; the summarizer writes the final answer from the sub-answers.

The final answer keeps a right executor answer (``keep_executor_answer=True``, the default):

- with a single sub-question there is nothing to combine, so the summarizer is not called and the
  executor's answer is the final answer (one call fewer);
- a summary that does not answer — empty, a question, or a restatement of the question that
  shares no word with any sub-answer (:func:`is_restatement`) — is replaced by the last
  executor answer. A small model asked to "combine" often just echoes the question
  ("The answer to the main question is: Who wrote Hamlet?").

``keep_executor_answer=False`` gives the plain planner → executors → summarizer pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from agentroute.checks import check_count
from agentroute.cjk import DENSE
from agentroute.dispatch.skills import has_key
from agentroute.graph import AgentGraph, GraphState, NodeContext
from agentroute.retrieval import BM25Retriever, Passage, format_passages, tokenize
from agentroute.retrieval import load_corpus as load_corpus  # where `run qa --corpus` finds it

PLANNER = (
    "You break a question into the simpler sub-questions needed to answer it. "
    "Write one sub-question per line and nothing else."
)
EXECUTOR = "You answer a question accurately and briefly. Use the passages when given."
SUMMARIZER = (
    "You combine answers to sub-questions into the final answer to the main question. "
    "Reply with the final answer only."
)

_LIST_MARK = re.compile(r"^\s*(?:[-*•・]|\d+[.)、．）]|[(（]\d+[)）]|Q\d*[:.)：])\s*")
_QUESTION_MARKS = ("?", "？")


def parse_subquestions(text: str, question: str, limit: int) -> list[str]:
    """Sub-questions from the planner's output; the question itself when none can be read.

    >>> parse_subquestions("1. Who directed Jaws?\\n2. When was he born?", "q", 3)
    ['Who directed Jaws?', 'When was he born?']
    >>> parse_subquestions("I cannot help", "Who won?", 3)
    ['Who won?']
    >>> parse_subquestions("1、哈姆雷特是谁写的？\\n（2）他生于哪年？", "q", 3)
    ['哈姆雷特是谁写的？', '他生于哪年？']
    """
    subs = []
    for line in text.splitlines():
        line = _LIST_MARK.sub("", line).strip()
        shortest = 5 if DENSE.search(line) else 8  # "法国首都？" is a question; "Why?" is not
        if line.endswith(_QUESTION_MARKS) and shortest <= len(line) <= 300 and line not in subs:
            subs.append(line)
    return subs[:limit] or [question]


_STOP = frozenset(
    "a an the is was are were be been of in on at to for by with from and or what who whom whose which "
    "when where why how did does do answer question main final sub answers".split()
)


def _content(text: str) -> set[str]:
    return {t for t in tokenize(text) if t not in _STOP}


def is_restatement(summary: str, question: str, answers: Iterable[str]) -> bool:
    """Whether a summary fails to answer: empty, a question, or only the question's words again
    while the sub-answers had words of their own.

    >>> is_restatement("The answer to the main question is: Who wrote Hamlet?", "Who wrote Hamlet?",
    ...                ["Hamlet by William Shakespeare."])
    True
    >>> is_restatement("William Shakespeare", "Who wrote Hamlet?", ["Hamlet by William Shakespeare."])
    False
    >>> is_restatement("Paris", "What is the capital of France?", ["I do not know"])
    False
    """
    text = summary.strip()
    if not text or text.endswith(_QUESTION_MARKS):
        return True
    words, asked = _content(text), _content(question)
    offered = set().union(*(_content(a) for a in answers)) - asked
    if not offered:  # the sub-answers add nothing: nothing better to fall back on
        return False
    return not (words & offered) and words <= asked | _content("answer question main final")


def final_answer(summary: str | None, question: str, answers: list[str]) -> str | None:
    """The summary, unless it does not answer (:func:`is_restatement`) and an executor answered.

    >>> final_answer("Who wrote Hamlet?", "Who wrote Hamlet?", ["Hamlet by William Shakespeare."])
    'Hamlet by William Shakespeare.'
    """
    answered = [a.strip() for a in answers if a and a.strip()]
    if summary is not None and (not answered or not is_restatement(summary, question, answered)):
        return summary
    return answered[-1] if answered else summary


def build_qa_graph(
    *,
    corpus: Iterable[str | Mapping[str, str] | Passage] | BM25Retriever | None = None,
    top_k: int = 3,
    max_subquestions: int = 3,
    max_tokens: int | None = None,
    keep_executor_answer: bool = True,
) -> AgentGraph:
    """The QA graph; with ``corpus``, a BM25 retrieval skill feeds the executors.

    Args:
        corpus: paragraphs (strings, ``{title, text}``, :class:`Passage`) or a built retriever.
        top_k: passages retrieved per sub-question.
        max_subquestions: most sub-questions taken from the planner.
        max_tokens: per-call output limit of every role (default: the card's).
        keep_executor_answer: skip the summarizer for a single sub-question and keep the executor's
            answer over a summary that does not answer (module docstring); ``False``: always
            summarise and return the summary.
    """
    top_k = check_count(top_k, "build_qa_graph: top_k")
    max_subquestions = check_count(max_subquestions, "build_qa_graph: max_subquestions")
    graph = AgentGraph("qa")
    graph.add_role("planner", prompt=PLANNER, stage="plan", max_tokens=max_tokens)

    def plan(state: GraphState, ctx: NodeContext) -> dict[str, Any]:
        subs = parse_subquestions(
            state.get("outputs", {}).get("planner", ""), state["query"], max_subquestions
        )
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

    graph.add_role(
        "executor", prompt=EXECUTOR, stage="execute", fan_out=executor_inputs, max_tokens=max_tokens
    )
    graph.add_edge(last, "executor")

    def summarizer_input(state: GraphState) -> str:
        subs = state.get("context", {}).get("subquestions") or []
        answers = state.get("outputs", {}).get("executor") or []
        lines = "\n".join(f"- {q} {a.strip()}" for q, a in zip(subs, answers, strict=False))
        return f"Main question: {state['query']}\nSub-answers:\n{lines}\nFinal answer:"

    graph.add_role(
        "summarizer", prompt=SUMMARIZER, stage="summarize", input=summarizer_input, max_tokens=max_tokens
    )
    if not keep_executor_answer:
        graph.add_edge("executor", "summarizer")
        return graph

    def answers_of(state: GraphState) -> list[str]:
        found = state.get("outputs", {}).get("executor") or []
        return [a for a in (found if isinstance(found, list) else [found]) if isinstance(a, str)]

    def after_executor(state: GraphState) -> str:
        subs = state.get("context", {}).get("subquestions") or []
        return "finalize" if len(subs) <= 1 else "summarizer"

    def finalize(state: GraphState, ctx: NodeContext) -> dict[str, Any]:
        answers = answers_of(state)
        summary = state.get("outputs", {}).get("summarizer")
        answer = final_answer(summary if isinstance(summary, str) else None, state["query"], answers)
        ctx.run.context["answer_from"] = "summarizer" if answer == summary else "executor"
        return {"answer": answer} if answer else {}

    graph.add_node("finalize", finalize)
    graph.add_conditional_edges("executor", after_executor, ["summarizer", "finalize"])
    graph.add_edge("summarizer", "finalize")
    return graph


graph = build_qa_graph()
