"""SFT warm-up on well-formed Router-R1 traces (a 135M policy does not follow the format zero-shot).

A trace is built from a training question with **real pool calls**: the policy's turns are
templated (``<think>`` … ``<route> agent: question </route>``), the ``<information>`` block is the
routed agent's actual reply, obtained through the dispatcher under the task's budget, and the
final ``<answer>`` is the gold answer. Traces alternate between the pool's agents, and every
``direct_every``-th trace answers without routing. The loss is next-token cross-entropy on the
policy's own tokens only: ``<information>`` tokens are masked out, as in GRPO.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentroute.budget import Budget
from agentroute.dispatch.dispatcher import Dispatcher
from agentroute.errors import StateFileError
from agentroute.pool.card import ModelCard
from agentroute.routers.router_r1.agent import AGENT_PROMPT, LoopSettings, ThinkRouteLoop
from agentroute.routers.router_r1.prompts import information
from agentroute.routers.router_r1.rewards import routable


@dataclass(slots=True)
class Trace:
    """A well-formed rollout as (text, from_policy) pieces after the chat prompt."""

    question: str
    pieces: list[tuple[str, bool]]
    failed: str | None = None  # why the pool call failed (such traces are not trained on)

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.pieces)


async def build_traces(
    loop: ThinkRouteLoop,
    dispatcher: Dispatcher,
    rows: Sequence[dict[str, Any]],
    *,
    budget: Any = None,
    direct_every: int = 4,
    seed: int = 0,
    concurrency: int = 8,
) -> list[Trace]:
    """One trace per row; routed traces call the named agent through ``dispatcher``.

    A routed trace whose call failed (timeout, budget) comes back with ``failed`` set and no pieces.
    A progress bar counts the finished traces (on a terminal, or with ``AGENTROUTE_PROGRESS=1``).
    """
    rng = random.Random(seed)
    names = loop.names
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, row: dict[str, Any]) -> Trace:
        q, gold = row["question"], row["answer"]
        if direct_every and i % direct_every == direct_every - 1:
            return Trace(q, [(f"<think>I can answer this directly.</think><answer>{gold}</answer>", True)])
        agent, query = names[i % len(names)], routable(q)  # the route the policy learns to write, and sends
        run = dispatcher.start(q, budget=budget, graph="router_r1_sft", query_id=row.get("id"))
        async with sem:
            step = await dispatcher.step(
                run,
                role=loop.settings.role,
                stage=loop.settings.stage,
                prompt=AGENT_PROMPT,
                input=query,
                models=[agent],
                max_tokens=loop.settings.route_max_tokens,
            )
        dispatcher.finish(run, answer=gold)
        if step is None or step.status != "ok" or not step.output.strip():
            why = "unaffordable" if step is None else step.error or "empty reply"
            return Trace(q, [], failed=f"{agent}: {why}")  # dropped: a trace must show a real reply
        reply = loop._truncate(step.output.strip())
        think = rng.choice(
            ["I should ask an agent.", "An agent can help with this.", "Let me route the question."]
        )
        return Trace(
            q,
            [
                (f"<think>{think}</think><route> {agent}: {query} </route>", True),
                (information(reply), False),
                (f"<think>I have the information I need.</think><answer>{gold}</answer>", True),
            ],
        )

    from agentroute.progress import bar

    with bar(
        len(rows), "sft traces", unit="trace", tick=True
    ) as shown:  # minutes of pool calls: a bar on a terminal

        async def counted(i: int, row: dict[str, Any]) -> Trace:
            trace = await one(i, row)
            shown.update(1)
            return trace

        return list(await asyncio.gather(*(counted(i, r) for i, r in enumerate(rows))))


#: What of a card shapes an agent's replies (a changed model or ``max_tokens`` changes the traces).
# what shapes a card's reply, or whether its call fits the task's budget (prices, tier: large_calls)
_REPLY_FIELDS = (
    "id",
    "backend",
    "model",
    "base_url",
    "max_tokens",
    "strategies",
    "context_window",
    "input_price",
    "output_price",
    "price_per_second",
    "tier",
)


def trace_inputs(
    rows: Sequence[dict[str, Any]],
    agents: Sequence[str | ModelCard],
    direct_every: int,
    settings: LoopSettings,
    budget: Budget | None = None,
    router: str | None = None,
) -> str:
    """A digest of what the traces of ``rows`` depend on (questions, gold answers, the pool's agents —
    names, or cards: then their model, reply length, prices and tier too —, ``direct_every``, the
    loop's settings, the per-task ``budget`` the routed calls ran under and the ``router`` that picked
    their strategies): a trace cache is reused only for the same inputs."""
    inputs = {
        "rows": [[r["question"], r["answer"]] for r in rows],
        "agents": [a if isinstance(a, str) else [getattr(a, f) for f in _REPLY_FIELDS] for a in agents],
        "direct_every": direct_every,
        "loop": dataclasses.asdict(settings),
        "budget": budget.limits() if budget is not None else None,
        **({"router": router} if router is not None else {}),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def cached_traces(
    cache: Path, inputs: str, build: Callable[[], list[Trace]], log: Callable[[str], object] = print
) -> list[Trace]:
    """The traces cached in ``cache`` when they were built from the same ``inputs``
    (:func:`trace_inputs`), else ``build()``'s, cached (the pool calls are the slow part).

    The first line of the file is ``{"inputs": DIGEST}``; a cache of other inputs (another recipe,
    pool or question set) is rebuilt, never reused. The file is replaced atomically, so a killed
    run leaves the old cache or the new one; a file that still does not parse is a
    :class:`~agentroute.errors.StateFileError` naming it.
    """
    if cache.is_file():
        lines = cache.read_text().splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
            if header.get("inputs") == inputs:
                log(
                    f"sft: {len(lines) - 1} traces from {cache} (built before from the same questions, agents and settings)"
                )
                return [
                    Trace(d["question"], [(t, bool(o)) for t, o in d["pieces"]])
                    for d in map(json.loads, lines[1:])
                ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateFileError(
                cache, f"not a trace cache ({exc}); delete it to rebuild the traces"
            ) from None
    log(f"sft: building the traces with real pool calls (kept in {cache} for the next run)")
    traces = build()
    body = [json.dumps({"inputs": inputs})] + [
        json.dumps({"question": t.question, "pieces": t.pieces}) for t in traces if not t.failed
    ]
    partial = cache.with_name(cache.name + ".partial")
    partial.write_text("\n".join(body) + "\n")
    os.replace(partial, cache)
    return traces


def encode_trace(loop: ThinkRouteLoop, trace: Trace) -> tuple[list[int], list[int]]:
    """(input ids, labels) with the prompt and ``<information>`` tokens labelled −100."""
    tok = loop.policy.tokenizer
    ids = loop.prompt_ids(trace.question)
    labels = [-100] * len(ids)
    for text, own in trace.pieces:
        piece = tok.encode(text, add_special_tokens=False)
        ids += piece
        labels += piece if own else [-100] * len(piece)
    eos = tok.eos_token_id
    if eos is not None:
        ids.append(eos)
        labels.append(eos)
    return ids, labels


def sft(
    model: Any,
    batches: Sequence[tuple[list[int], list[int]]],
    *,
    epochs: int = 2,
    lr: float = 5e-5,
    batch_size: int = 4,
    seed: int = 0,
    pad_id: int = 0,
    log: Any = None,
) -> list[float]:
    """A plain masked-CE fine-tune (AdamW); returns the loss of every optimiser step."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses: list[float] = []
    data = list(batches)
    for epoch in range(epochs):
        rng.shuffle(data)
        for start in range(0, len(data), batch_size):
            chunk = data[start : start + batch_size]
            width = max(len(i) for i, _ in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            lab = torch.full((len(chunk), width), -100, dtype=torch.long)
            att = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, (i, lb) in enumerate(chunk):
                ids[r, : len(i)] = torch.tensor(i)
                lab[r, : len(lb)] = torch.tensor(lb)
                att[r, : len(i)] = 1
            loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            if log:
                log(f"sft epoch {epoch} step {len(losses)} loss {losses[-1]:.4f}")
    model.eval()
    return losses
