"""The QA pipeline on HotpotQA with the local pool: EM, F1, cost and steps per router.

    python benchmarks/qa_hotpotqa.py --n 30 --train 20                  # what fits a loaded 2-core CPU
    python benchmarks/qa_hotpotqa.py --n 200 --train 100 \\
        --questions hotpot_dev_distractor_v1.json                       # ≥ 200 questions (official file)

Questions come from ``$AGENTROUTE_DATA/hotpotqa/hotpotqa_train.json`` (HippoRAG's 100 HotpotQA
questions; ``--questions`` takes any file in HotpotQA's own layout, e.g. the official dev set,
for more), retrieval from its 994-paragraph corpus ``hotpotqa_train_corpus.json`` by BM25
(``--corpus question`` restricts each question to its own 10 context paragraphs instead).
The first ``--train`` questions are served by an exploring router (``explore`` over ``cheapest``,
ε = ``--epsilon``) into a fresh memory, each task scored by F1 against its gold answer
(``memory.add_feedback(..., source="metric:f1")``); ``knn`` and ``per-task`` are then fitted on
``memory.trajectories()`` alone. The next ``--n`` questions are the test set for every router.

``--variants before,after`` runs the cheapest router through the QA graph as it was
(``keep_executor_answer=False``: the summarizer's text is the answer) and derives, from the very
same calls, what the graph answers now: with one sub-question the executor's answer (the
summarizer call is not made, its cost and step are taken off), else
:func:`~agentroute.graphs.qa.final_answer` (the summary unless it does not answer). With
greedy decoding the fixed graph makes exactly these calls, so one run measures both without
paying twice (``tests/test_qa_answer.py`` checks the graph against the same rule);
``--variants before,after-run`` runs the fixed graph for real instead.

Every answer is scored with SQuAD-normalised exact match and token F1
(:mod:`agentroute.eval.answers`). Prints one row per router; ``--out`` gets the JSON.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from agentroute.budget import Budget
from agentroute.eval.answers import exact_match, f1_score
from agentroute.graphs.qa import build_qa_graph, final_answer, load_corpus
from agentroute.memory import open_memory
from agentroute.pool import ModelPool
from agentroute.retrieval import BM25Retriever, Passage
from agentroute.routers import make_router


def data_dir() -> Path:
    return Path(os.environ.get("AGENTROUTE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "hotpotqa"


def load_questions(path: Path) -> list[dict[str, Any]]:
    """HotpotQA questions: ``question``, ``answer`` and ``context`` ([[title, [sentences]], …],
    stored as a Python literal string in HippoRAG's copy — parsed as a literal, never run)."""
    out = []
    for row in json.loads(path.read_text()):
        context = row.get("context") or []
        if isinstance(context, str):
            context = ast.literal_eval(context)
        out.append({
            "id": str(row.get("_id", len(out))), "question": row["question"], "answer": str(row["answer"]),
            "context": [Passage(str(t), "".join(s)) for t, s in context],
        })  # fmt: skip
    return out


def summarise(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    return {
        "router": name,
        "n": n,
        "em": sum(r["em"] for r in rows) / n,
        "f1": sum(r["f1"] for r in rows) / n,
        "mean_cost_usd": sum(r["cost_usd"] for r in rows) / n,
        "mean_steps": sum(r["steps"] for r in rows) / n,
        "done": sum(r["status"] == "done" for r in rows),
        "seconds_per_question": statistics.mean(r["seconds"] for r in rows),
    }


async def run_router(
    name: str, router: Any, questions: list[dict[str, Any]], args: argparse.Namespace, retriever: BM25Retriever | None,
    *, memory: Any = None, keep: bool = True, log: Any = None, derive: str | None = None,
) -> list[dict[str, Any]]:
    """Rows per question; with ``derive``, also the rows of the fixed graph derived from the same
    calls (module docstring), named ``derive``, returned after the others."""
    pool = ModelPool.load(args.pool)
    await pool.preload()
    rows: list[dict[str, Any]] = []
    shared = None if retriever is None else build_qa_graph(corpus=retriever, top_k=args.top_k, max_tokens=args.max_tokens, keep_executor_answer=keep)
    budget = Budget(usd=args.budget_usd)
    sem = asyncio.Semaphore(args.concurrency)

    async def one(q: dict[str, Any]) -> None:
        spec = shared or build_qa_graph(corpus=q["context"], top_k=args.top_k, max_tokens=args.max_tokens, keep_executor_answer=keep)
        # routers fitted on the memory never saw the summarizer (the fixed graph skips it for one
        # sub-question): they route over its agents anyway, from the training mean
        app = spec.compile(pool=pool, router=router, memory=memory, budget=budget, allow_new_agents=True)
        async with sem:
            start = time.perf_counter()
            result = await app.arun(q["question"], query_id=q["id"])
            seconds = time.perf_counter() - start
        row = {
            "router": name, "id": q["id"], "question": q["question"], "gold": q["answer"], "answer": result.answer,
            "em": exact_match(result.answer, q["answer"]), "f1": f1_score(result.answer, q["answer"]),
            "cost_usd": result.cost_usd, "steps": len(result.steps), "status": result.status, "seconds": seconds,
            "agents": [s.agent.key for s in result.steps], "task_id": result.task.id,
        }  # fmt: skip
        if memory is not None:
            memory.add_feedback(result.task.id, row["f1"], source="metric:f1")
        rows.append(row)
        if derive is not None:
            rows.append(_derived(derive, row, result, q))
        if log is not None:
            for r in rows[-2 if derive else -1 :]:
                log.write(json.dumps(r) + "\n")
            log.flush()

    try:
        await asyncio.gather(*(one(q) for q in questions))
    finally:
        await pool.aclose()
    return rows


def _derived(name: str, row: dict[str, Any], result: Any, q: dict[str, Any]) -> dict[str, Any]:
    """What the fixed graph answers with the same planner and executor calls."""
    state = result.state
    subs = (state.get("context") or {}).get("subquestions") or []
    outputs = state.get("outputs") or {}
    answers = outputs.get("executor") or []
    answers = [a for a in (answers if isinstance(answers, list) else [answers]) if isinstance(a, str)]
    summary = outputs.get("summarizer")
    summarizer = [s for s in result.steps if s.agent.role == "summarizer"]
    cost, steps = row["cost_usd"], row["steps"]
    if len(subs) <= 1 and answers:
        answer = answers[-1]
        cost -= sum(s.cost_usd for s in summarizer)
        steps -= len(summarizer)
    else:
        answer = final_answer(summary if isinstance(summary, str) else None, q["question"], answers)
    return {
        **row, "router": name, "answer": answer, "em": exact_match(answer, q["answer"]),
        "f1": f1_score(answer, q["answer"]), "cost_usd": cost, "steps": steps, "derived": True,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=Path, default=None, help="HotpotQA-layout JSON (default: $AGENTROUTE_DATA/hotpotqa/hotpotqa_train.json)")
    parser.add_argument("--corpus", default=None, help="corpus file (default: the shared 994-paragraph corpus) or `question`")
    parser.add_argument("--n", type=int, default=30, help="test questions")
    parser.add_argument("--train", type=int, default=20, help="questions served into the memory to train knn/per-task (0: skip them)")
    parser.add_argument("--routers", default="per-task,knn,strongest", help="run in this order after the variants (cheapest = the variants' rows)")
    parser.add_argument("--variants", default="before,after", help="cheapest router through the old (before) and fixed (after) graph; empty: skip")
    parser.add_argument("--epsilon", type=float, default=0.5)
    parser.add_argument("--pool", default=None, help="pool YAML (default: the local SmolLM2 pool)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--budget-usd", type=float, default=0.001)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--log", type=Path, default=Path("runs/qa_hotpotqa.jsonl"), help="one JSON line per answered question")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    questions = load_questions(args.questions or data_dir() / "hotpotqa_train.json")
    if args.train + args.n > len(questions):
        raise SystemExit(f"{len(questions)} questions in the file: --train {args.train} + --n {args.n} is too many (pass --questions)")
    train, test = questions[: args.train], questions[args.train : args.train + args.n]
    retriever = None if args.corpus == "question" else BM25Retriever(load_corpus(args.corpus or data_dir() / "hotpotqa_train_corpus.json"))
    args.log.parent.mkdir(parents=True, exist_ok=True)
    summary: list[dict[str, Any]] = []
    with args.log.open("a") as log:
        def report(name: str, rows: list[dict[str, Any]]) -> None:
            summary.append(summarise(name, rows))
            s = summary[-1]
            print(f"{name:22s} n={s['n']:3d} EM {s['em']:.3f} F1 {s['f1']:.3f} cost ${s['mean_cost_usd']:.7f} "
                  f"steps {s['mean_steps']:.2f} done {s['done']}/{s['n']} ({s['seconds_per_question']:.1f} s/question)", flush=True)

        variants = [v for v in args.variants.split(",") if v]
        if "before" in variants:
            derive = "cheapest (after)" if "after" in variants else None
            rows = asyncio.run(run_router("cheapest (before)", make_router("cheapest"), test, args, retriever, keep=False, log=log, derive=derive))
            report("cheapest (before)", [r for r in rows if r["router"] == "cheapest (before)"])
            if derive:
                report(derive, [r for r in rows if r["router"] == derive])
        if "after-run" in variants:
            rows = asyncio.run(run_router("cheapest (after, run)", make_router("cheapest"), test, args, retriever, log=log))
            report("cheapest (after, run)", rows)
        names = [r for r in args.routers.split(",") if r]
        learned = [r for r in names if r in ("knn", "per-task")]
        with tempfile.TemporaryDirectory() as tmp:
            trajectories: list[Any] = []
            if learned and train:
                from agentroute.routers.explore import ExploreRouter

                memory = open_memory(f"sqlite:///{tmp}/memory.db")
                explorer = ExploreRouter(base="cheapest", epsilon=args.epsilon, seed=0)
                rows = asyncio.run(run_router("explore (train)", explorer, train, args, retriever, memory=memory, log=log))
                report("explore (train traffic)", rows)
                memory.flush()
                trajectories = memory.trajectories(with_score=True)
                memory.close()
            for name in names:
                if name in learned:
                    if not trajectories:
                        continue
                    router = make_router(name).fit(trajectories)
                else:
                    router = make_router(name)
                rows = asyncio.run(run_router(name, router, test, args, retriever, log=log))
                report(name + (" (from memory)" if name in learned else ""), rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "routers": summary}, indent=1))


if __name__ == "__main__":
    main()
