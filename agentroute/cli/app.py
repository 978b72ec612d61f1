"""``agentroute``: ask, run, pool, memory, eval, train, routers, serve."""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentroute.cli.errors import error_text, missing_extra, print_error, report
from agentroute.errors import AgentrouteError

app = typer.Typer(
    name="agentroute",
    help="Routed multi-agent LLM pipelines under hard budgets, with learnable routers and a SQL memory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from agentroute import __version__

        typer.echo(f"agentroute {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Routed multi-agent LLM pipelines under hard budgets, with learnable routers and a SQL memory."""


pool_app = typer.Typer(help="Inspect model pools.", no_args_is_help=True)
app.add_typer(pool_app, name="pool")

console = Console()
err_console = Console(stderr=True)

GraphOpt = Annotated[
    str, typer.Option("--graph", help="Built-in graph name, module:attr or path/file.py[:attr].")
]
RouterOpt = Annotated[
    str,
    typer.Option(
        "--router",
        help="Registered router name, or a directory saved by `train`; options as NAME:option=value (fixed:model=ID, cascade:threshold=0.6).",
    ),
]
PoolOpt = Annotated[str | None, typer.Option("--pool", help="Pool YAML (default: the local SmolLM2 pool).")]
BudgetOpt = Annotated[float | None, typer.Option("--budget-usd", help="Hard per-task budget in USD.")]


def number(text: str) -> int | float:
    """A command-line number as written: ``"3"`` → 3, ``"1.5"`` → 1.5 (text that is no number: ValueError).

    The ``--budget-*`` counts are parsed with it and checked by ``make_budget`` (one rule), so
    ``--budget-calls 1.5`` is one line naming the option, exit 2, as ``-1`` is (an int type refused
    it first, in a multi-line usage box)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


TokensOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-tokens",
        parser=number,
        metavar="INTEGER",
        help="Hard per-task limit on tokens (prompt + output).",
    ),
]
CallsOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-calls",
        parser=number,
        metavar="INTEGER",
        help="Hard per-task limit on provider calls (retries and samples count).",
    ),
]
SecondsOpt = Annotated[float | None, typer.Option("--budget-seconds", help="Per-task deadline in seconds.")]
LargeOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-large-calls",
        parser=number,
        metavar="INTEGER",
        help="Hard per-task limit on calls to large-tier models (0: none).",
    ),
]
MemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--memory", help="SQLAlchemy URL of the memory (default: $AGENTROUTE_MEMORY or a local SQLite file)."
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: MESSAGE`` (one line, as written) and return the ``typer.Exit`` to raise."""
    print_error(message, err_console)
    return typer.Exit(code)


def fail_on(exc: BaseException) -> typer.Exit:
    """:func:`fail` for an exception: its message (a missing extra: the install command) and exit code."""
    return typer.Exit(report(exc, err_console))


AllowNewOpt = Annotated[
    bool,
    typer.Option(
        "--allow-new-agents",
        help="Serve a trained router on a pool with agents it never saw (scored by its training mean; warned). "
        "Without it that is an error naming them.",
    ),
]


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}")


def routed(spec: Any, router: str, pool: str | None, allow_new_agents: bool = False) -> tuple[Any, Any]:
    """(pool, router) for ``spec.compile``: the router loaded and checked against the agents the
    graph routes over (:func:`agentroute.loading.load_router`; a misfit exits 2). ``router`` may carry
    options as eval's ``--routers`` do: ``fixed:model=gpt-4o-mini``, ``runs/knn:k=5``."""
    from agentroute.eval.harness import split_router_spec
    from agentroute.loading import load_router
    from agentroute.pool import ModelPool

    name, params = split_router_spec(router)
    models = ModelPool.load(pool)
    models.require_backends()  # a missing backend package: exit 2 before any task
    loaded = load_router(
        name, pool=models, graph=spec, allow_new_agents=allow_new_agents, warn=_warn, **params
    )
    return models, loaded


def _runtime(
    graph: str, router: str, pool: str | None, budget_usd: float | None, memory: str | None,
    allow_new_agents: bool = False, **limits: Any,
) -> Any:  # fmt: skip
    """The compiled graph and its memory; ``limits``: the other budget fields (tokens, calls, …)."""
    from agentroute.budget import make_budget

    budget = make_budget(budget_usd, **limits)  # a bad --budget-* is named before LangGraph loads
    from agentroute.loading import load_graph
    from agentroute.memory import open_memory
    from agentroute.routers.router_r1.graph import preload_policies

    spec = load_graph(graph)
    models, loaded = routed(spec, router, pool, allow_new_agents)
    preload_policies(spec)  # before the memory opens: a policy that fails to load leaves nothing open
    store = open_memory(memory)
    compiled = spec.compile(
        pool=models, router=loaded, memory=store, budget=budget, allow_new_agents=True
    )  # routed() checked
    return compiled, store


def step_rows(result: Any) -> list[dict[str, Any]]:
    return [
        {
            "index": s.index,
            "stage": s.stage,
            "role": s.agent.role,
            "model": s.agent.model,
            "strategy": s.agent.strategy,
            "cost_usd": s.cost_usd,
            "tokens_in": s.tokens_in,
            "tokens_out": s.tokens_out,
            "latency_ms": round(s.latency_ms, 2),
            "status": s.status,
        }
        for s in result.steps
    ]


def no_answer_reason(result: Any) -> str | None:
    """Why a task has no answer: its last step's error, or that no step fit the budget."""
    if result.answer is not None:
        return None
    error = next((s.error for s in reversed(result.steps) if s.error), None)
    if error is None and result.status == "budget_exhausted":
        return "no step fit within the budget"
    return error


def result_json(result: Any) -> dict[str, Any]:
    return {
        "task_id": result.task.id,
        "status": result.status,
        "answer": result.answer,
        "error": no_answer_reason(result),
        "cost_usd": result.cost_usd,
        "steps": step_rows(result),
    }


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    graph: GraphOpt = "qa",
    router: RouterOpt = "cascade",
    pool: PoolOpt = None,
    budget_usd: BudgetOpt = None,
    budget_tokens: TokensOpt = None,
    budget_calls: CallsOpt = None,
    budget_seconds: SecondsOpt = None,
    budget_large_calls: LargeOpt = None,
    memory: MemoryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="router_r1: the policy checkpoint directory (default: SmolLM2)."),
    ] = None,
    policy_url: Annotated[
        str | None,
        typer.Option(
            "--policy-url", help="router_r1: an OpenAI-compatible URL serving the policy (vllm serve)."
        ),
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option(
            "--corpus", help="qa: paragraphs to retrieve from (JSON/JSONL; BM25 feeds the executors)."
        ),
    ] = None,
    allow_new_agents: AllowNewOpt = False,
) -> None:
    """Answer one question through a routed graph; print the answer, the route and the cost."""
    if not question.strip():  # before any model loads or call is paid for
        raise fail("the question is empty", 2)
    try:
        if corpus is not None:
            from agentroute.cli.run_cmd import corpus_runtime

            compiled, store = corpus_runtime(
                graph,
                corpus,
                router,
                pool,
                budget_usd,
                memory,
                allow_new_agents=allow_new_agents,
                tokens=budget_tokens,
                calls=budget_calls,
                seconds=budget_seconds,
                large_calls=budget_large_calls,
            )
        elif policy is not None or policy_url is not None:
            compiled, store = _router_r1_runtime(
                graph,
                router,
                pool,
                budget_usd,
                memory,
                policy,
                policy_url,
                allow_new_agents=allow_new_agents,
                tokens=budget_tokens,
                calls=budget_calls,
                seconds=budget_seconds,
                large_calls=budget_large_calls,
            )
        else:
            compiled, store = _runtime(
                graph,
                router,
                pool,
                budget_usd,
                memory,
                allow_new_agents=allow_new_agents,
                tokens=budget_tokens,
                calls=budget_calls,
                seconds=budget_seconds,
                large_calls=budget_large_calls,
            )
        try:
            result = asyncio.run(_ask(compiled, question))
        finally:
            store.close()
    except AgentrouteError as exc:
        raise fail_on(exc) from None
    if as_json:
        sys.stdout.write(json.dumps(result_json(result)) + "\n")
    else:
        table = Table(title=f"route of task {result.task.id} ({result.status})")
        for col in ("step", "role", "model", "strategy", "tokens", "cost $", "latency ms", "status"):
            table.add_column(  # names fold onto a second line in a narrow terminal, never cut to "smollm2…"
                col,
                justify="right" if col in ("tokens", "cost $", "latency ms") else "left",
                overflow="fold" if col in ("role", "model", "strategy") else "ellipsis",
            )
        for row in step_rows(result):
            table.add_row(
                str(row["index"]),
                row["role"],
                row["model"],
                row["strategy"],
                f"{row['tokens_in']}+{row['tokens_out']}",
                f"{row['cost_usd']:.6f}",
                f"{row['latency_ms']:.0f}",
                row["status"],
            )
        console.print(table)
        turns = (result.state.get("context") or {}).get("router_r1", {}).get("turns")
        if turns:
            _print_router_r1_turns(turns)
        reason = no_answer_reason(result)
        if result.answer is not None:
            answer = escape(result.answer)
        else:
            answer = "(none)" + (f" — {escape(reason)}" if reason else "")
        console.print(f"[bold]answer:[/] {answer}")
        console.print(f"[bold]total cost:[/] ${result.cost_usd:.6f}  status: {result.status}")
    if result.status == "failed":
        raise typer.Exit(1)


def _router_r1_runtime(
    graph: str,
    router: str,
    pool: str | None,
    budget_usd: float | None,
    memory: str | None,
    policy: Path | None,
    policy_url: str | None,
    allow_new_agents: bool = False,
    **limits: Any,
) -> Any:
    from agentroute.budget import make_budget
    from agentroute.errors import ConfigurationError

    budget = make_budget(budget_usd, **limits)  # a bad --budget-* is named before LangGraph loads
    from agentroute.memory import open_memory
    from agentroute.routers.router_r1.graph import build_router_r1_graph, preload_policies

    source = graph.split(":")[0]
    if Path(source).stem != "router_r1" and not source.endswith((".router_r1", ".router_r1.graph")):
        raise ConfigurationError(f"--policy/--policy-url need --graph router_r1 (got {graph!r})")
    spec = build_router_r1_graph(policy, policy_url=policy_url)
    models, loaded = routed(spec, router, pool, allow_new_agents)
    preload_policies(spec)  # before the memory opens: a policy that fails to load leaves nothing open
    store = open_memory(memory)
    compiled = spec.compile(
        pool=models,
        router=loaded,
        memory=store,
        budget=budget,
        allow_new_agents=True,
    )  # routed() checked
    return compiled, store


def _print_router_r1_turns(turns: list[dict[str, Any]]) -> None:
    table = Table(title="think/route turns")
    for col in ("turn", "kind", "agent", "policy", "information", "cost $"):
        table.add_column(col)
    for i, t in enumerate(turns):
        table.add_row(
            str(i),
            t.get("kind", ""),
            t.get("agent", ""),
            t.get("policy", "")[:120],
            (t.get("information") or "")[:80],
            f"{t.get('cost_usd', 0.0):.6f}",
        )
    console.print(table)


async def _ask(compiled: Any, question: str) -> Any:
    try:
        await compiled.dispatcher.pool.preload()
        return await compiled.arun(question)
    finally:
        await compiled.dispatcher.pool.aclose()


@pool_app.command("list")
def pool_list(pool: PoolOpt = None) -> None:
    """List the models of a pool with prices, tiers and strategies."""
    from agentroute.pool import ModelPool

    try:
        models = ModelPool.load(pool)
    except AgentrouteError as exc:
        raise fail_on(exc) from None
    table = Table(title="model pool")
    for col in ("id", "backend", "tier", "$/1M in", "$/1M out", "context", "strategies", "description"):
        table.add_column(
            col, no_wrap=col == "id", overflow="fold"
        )  # never cut: the id was "smollm…" at 80 columns
    unpriced: list[str] = []
    for card in models:
        try:
            prices = _prices(card)
        except AgentrouteError as exc:  # what `ask` and `run` would refuse the pool for
            prices = ("none", "none")
            unpriced.append(str(exc))
        table.add_row(
            card.id,
            card.backend,
            card.tier,
            *prices,
            str(card.context_window),
            ", ".join(card.strategies),
            card.description[:60],
        )
    console.print(table)
    for message in unpriced:
        print_error(message, err_console)
    if unpriced:
        raise typer.Exit(2)


def _prices(card: Any) -> tuple[str, str]:
    """A card's USD per 1M input and output tokens: its own, else LiteLLM's cost table (the prices a
    call is charged); "provider" where that table is not installed."""
    if card.input_price is not None or card.backend != "litellm":
        own = ["provider" if p is None else f"{p:g}" for p in (card.input_price, card.output_price)]
        return own[0], own[1]
    from agentroute.pool.backends.litellm import litellm_usd

    try:
        return f"{litellm_usd(card, 1_000_000, 0):g}", f"{litellm_usd(card, 0, 1_000_000):g}"
    except ImportError:
        return "provider", "provider"


@app.command()
def serve(
    pool: PoolOpt = None,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on; the server has no authentication, keep it on loopback."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: a free one).")
    ] = 8000,
    drain_s: Annotated[
        float,
        typer.Option(
            "--drain-s",
            help="Seconds Ctrl-C/SIGTERM lets requests in flight finish before cancelling them (and, with --router, the memory retry writes its database refuses).",
        ),
    ] = 10.0,
    router: Annotated[
        str | None,
        typer.Option(
            "--router",
            help='Also serve model="router": each request routed over the pool by this router (a registered name or a directory saved by `train`; options as NAME:option=value).',
        ),
    ] = None,
    budget_usd: BudgetOpt = None,
    budget_tokens: TokensOpt = None,
    budget_calls: CallsOpt = None,
    budget_seconds: SecondsOpt = None,
    budget_large_calls: LargeOpt = None,
    memory: Annotated[
        str | None,
        typer.Option(
            "--memory",
            help="--router: SQLAlchemy URL where every routed request is kept as a task (default: $AGENTROUTE_MEMORY or the local SQLite file).",
        ),
    ] = None,
    memory_wait_s: Annotated[
        float | None,
        typer.Option(
            "--memory-wait-s",
            help="--router: seconds a request waits for the memory to store its write-ahead record before a retryable 503, its call not made (default 5).",
        ),
    ] = None,
    allow_new_agents: AllowNewOpt = False,
) -> None:
    """Serve a pool's models over an OpenAI-compatible HTTP API.

    POST /v1/chat/completions (also stream=true, as server-sent events) and GET /v1/models; a request's model is a card id.
    With --router, model="router" routes each request as one task under the per-request budget (--budget-*; a request may tighten it).
    Stop with Ctrl-C or SIGTERM. Example client: OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="x")."""
    from agentroute.budget import make_budget
    from agentroute.pool import ModelPool

    limits: dict[str, Any] = {"usd": budget_usd, "tokens": budget_tokens, "calls": budget_calls,
                              "seconds": budget_seconds, "large_calls": budget_large_calls}  # fmt: skip
    try:
        if router is None and (
            memory is not None or memory_wait_s is not None or any(v is not None for v in limits.values())
        ):
            raise fail(
                "--memory, --memory-wait-s and --budget-* apply to routed requests: give --router too", 2
            )
        budget = make_budget(limits.pop("usd"), **limits)  # a bad --budget-* is named before LangGraph loads
        from agentroute.serve import serve as run_server

        if router is None:
            models = ModelPool.load(pool)
            models.require_backends()  # a missing backend package: exit 2 before any task
            run_server(models, host, port, drain_s=drain_s)
            return
        from agentroute.serve.routed import MEMORY_WAIT_S, Routing

        if memory_wait_s is not None:
            Routing.check_memory_wait_s(memory_wait_s, "--memory-wait-s")
        models, loaded = routed(None, router, pool, allow_new_agents)
        from agentroute.memory import open_memory

        store = open_memory(
            memory, retry_s=math.inf
        )  # a server keeps the rows of what it answered, however long the outage
        try:
            run_server(
                models,
                host,
                port,
                drain_s=drain_s,
                router=loaded,
                memory=store,
                budget=budget,
                allow_new_agents=True,  # routed() checked the router against the pool
                memory_wait_s=MEMORY_WAIT_S if memory_wait_s is None else memory_wait_s,
            )
        finally:
            # stopping during an outage: the writes the database refuses are retried as long as requests drain
            store.close(retry_s=drain_s if drain_s >= 0 else None)  # a bad --drain-s: serve's own error
    except AgentrouteError as exc:
        if isinstance(
            exc.__context__, KeyboardInterrupt
        ):  # writes the stop gave up: still the stop's exit (130/143)
            from agentroute.cli import exit_interrupted
            from agentroute.training.stopping import stop_signal

            print_error(error_text(exc), err_console)
            exit_interrupted(signum=stop_signal(exc.__context__))
        raise fail_on(exc) from None


#: The ``eval`` options that only one of its modes uses (parameter names).
_AGENTIC_ONLY = (
    "steps",
    "cap_large",
    "budget_usd",
    "tiers",
    "success_rule",
    "feedback",
    "max_attempts",
    "config",
)
_SINGLE_ONLY = ("out", "output_tokens", "explore", "boot", "peers", "interval", "limit", "sample")
_FROM_ONLY = ("eval_pool", "graph")


def unused_options(ctx: typer.Context, names: tuple[str, ...], where: str) -> None:
    """Exit 2 naming those of the options ``names`` (parameter names) that the user typed, as typed
    (``--no-peers``), since this run would ignore them; a value the user did not type is never refused."""
    typed = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name in names else None
        if source is not None and source.name == "COMMANDLINE":  # typer's own copy of click's enum
            flags = (
                param.secondary_opts if param.secondary_opts and not ctx.params[param.name] else param.opts
            )
            typed.append(flags[0])
    if typed:
        raise fail(f"{', '.join(typed)}: {where}", 2)


@app.command("eval")
def eval_routers(
    ctx: typer.Context,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="routerbench:DIR | dcrouter:DIR | routellm-mmlu:DIR | outcomes:FILE"),
    ] = None,
    from_memory: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Counterfactual estimates (IPS, SNIPS, doubly robust) on the logged traffic of this memory URL.",
        ),
    ] = None,
    eval_pool: Annotated[
        str | None, typer.Option("--pool", help="--from: the pool the logged traffic ran on.")
    ] = None,
    graph: Annotated[
        str | None, typer.Option("--graph", help="--from: only the tasks of this graph (its name).")
    ] = None,
    routers: Annotated[
        str | None, typer.Option("--routers", help="Comma-separated router names (name:key=value…).")
    ] = None,
    agentic: Annotated[
        bool, typer.Option("--agentic", help="k-step tasks under per-task budgets instead of single queries.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (single-step evaluation).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    output_tokens: Annotated[
        int | None, typer.Option("--output-tokens", help="Assumed output tokens per call (priced datasets).")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="--agentic: steps per task.")] = 3,
    cap_large: Annotated[
        float | None,
        typer.Option(
            "--cap-large",
            parser=number,
            metavar="INTEGER",
            help="--agentic: hard cap on large calls per task.",
        ),
    ] = None,
    budget_usd: Annotated[
        float | None, typer.Option("--budget-usd", help="--agentic: hard per-task budget in USD.")
    ] = None,
    tiers: Annotated[
        str | None, typer.Option("--tiers", help="--agentic: tier models, cheapest first.")
    ] = None,
    success_rule: Annotated[
        str, typer.Option("--success-rule", help="--agentic: all | majority | any | last | a fraction.")
    ] = "all",
    feedback: Annotated[
        bool, typer.Option("--feedback", help="--agentic: routers see step outcomes.")
    ] = False,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", help="--agentic: calls allowed per step.")
    ] = 1,
    config: Annotated[Path | None, typer.Option("--config", help="--agentic: BoPO recipe YAML.")] = None,
    explore: Annotated[
        bool,
        typer.Option(
            "--explore", help="Also sweep exploring routers (ant-colony) in explore mode, as extra rows."
        ),
    ] = False,
    boot: Annotated[
        int,
        typer.Option(
            "--boot",
            help="Bootstrap resamples for the intervals (90%; --from: 95%) (0: none; else at least 20; --from: 40).",
        ),
    ] = 500,
    peers: Annotated[
        bool, typer.Option("--peers/--no-peers", help="Add the simple references per-task, knn and logreg.")
    ] = True,
    interval: Annotated[
        str,
        typer.Option(
            "--interval",
            help="Bootstrap interval: basic (corrects the hull's optimism; docs/eval.md) or percentile.",
        ),
    ] = "basic",
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most N queries per split (a seeded subset).")
    ] = None,
    sample: Annotated[
        float | None, typer.Option("--sample", help="This fraction (0, 1] of each split (a seeded subset).")
    ] = None,
) -> None:
    """Compare routers on logged outcomes (AIQ, cost–quality curves, success under budgets).

    Single queries: AIQ and cost–quality curves. --agentic: success under per-task budgets.
    --from MEMORY_URL: counterfactual estimates on your own logged traffic."""
    if from_memory and dataset:
        raise fail("give --dataset KIND:PATH or --from MEMORY_URL, not both", 2)
    if from_memory:
        single_only = tuple(name for name in _SINGLE_ONLY if name != "boot")  # --from has its resamples too
        unused_options(
            ctx, ("agentic", *_AGENTIC_ONLY, *single_only), "not used with --from (counterfactual estimates)"
        )
    elif agentic:
        unused_options(ctx, _SINGLE_ONLY, "single-query evaluation only, not used with --agentic")
    else:
        unused_options(
            ctx, _AGENTIC_ONLY, "--agentic only (k-step tasks under budgets): add --agentic, or leave out"
        )
    if not from_memory:
        unused_options(
            ctx, _FROM_ONLY, "--from only (estimates on your logged traffic): add --from, or leave out"
        )
    if from_memory:
        from agentroute.eval.counterfactual import eval_from_memory_command

        try:
            eval_from_memory_command(
                from_memory,
                "cheapest,strongest" if routers is None else routers,
                pool=eval_pool,
                graph=graph,
                json_output=as_json,
                seed=seed,
                n_boot=boot,
            )
        except AgentrouteError as exc:
            raise fail_on(exc) from None
        return
    if dataset is None:
        raise fail(
            "give --dataset KIND:PATH (logged outcomes) or --from MEMORY_URL (your own logged traffic)", 2
        )
    if agentic:
        from agentroute.cli.agentic_cmd import DEFAULT_AGENTIC_ROUTERS, agentic_eval_command

        agentic_eval_command(
            dataset=dataset,
            steps=steps,
            routers=DEFAULT_AGENTIC_ROUTERS if routers is None else routers,
            cap_large=cap_large,
            budget_usd=budget_usd,
            tiers=tiers,
            success_rule=success_rule,
            feedback=feedback,
            max_attempts=max_attempts,
            config=config,
            seed=seed,
            json_output=as_json,
        )
        return
    from agentroute.cli.eval_cmd import DEFAULT_ROUTERS, eval_command

    eval_command(
        dataset=dataset,
        routers=DEFAULT_ROUTERS if routers is None else routers,
        out=out,
        json_output=as_json,
        seed=seed,
        output_tokens=output_tokens,
        explore=explore,
        boot=boot,
        peers=peers,
        interval=interval,
        limit=limit,
        sample=sample,
    )


def _register() -> None:
    from agentroute.cli.memory_cmd import memory_app
    from agentroute.cli.routers_cmd import routers_app
    from agentroute.cli.run_cmd import RUN_CONTEXT_SETTINGS, run_batch
    from agentroute.cli.train_cmd import train_command

    app.add_typer(memory_app, name="memory")
    app.add_typer(routers_app, name="routers")
    app.command("train")(train_command)
    app.command("run", context_settings=RUN_CONTEXT_SETTINGS)(run_batch)
    from agentroute.cli.feedback_cmd import feedback_command

    app.command("feedback")(feedback_command)


_register()


def main() -> None:
    """The ``agentroute`` command: a missing optional package anywhere is one line naming the
    ``pip install`` command, exit code 2 (never a traceback); a Ctrl-C anywhere is one line and
    exit code 130 (:func:`agentroute.cli.exit_interrupted`)."""
    from agentroute.cli import end_command, exit_interrupted, forget_caught_interrupt, start_command

    # when the interpreter ends (never inside a notebook's kernel that called this): its last full
    # collection walked every object torch, transformers and LiteLLM made, to free what the exit frees
    # anyway (0.5–3 s after the command's last line, past 5 s for a Ctrl-C under load); what the
    # command opened it closed itself
    atexit.register(gc.freeze)
    try:
        start_command()
        _main()
    except KeyboardInterrupt:  # outside typer's reach (the `run web --help` path)
        exit_interrupted()
    except SystemExit as exc:
        if _unreported_interrupt(exc):
            exit_interrupted()
        raise
    finally:
        late = end_command()
        forget_caught_interrupt()  # a Ctrl-C the command handled: its exit code, not death by SIGINT
        if late is not None:  # a Ctrl-C swallowed as the command ended: its stop, not the caller's
            exit_interrupted(signum=late)


def _unreported_interrupt(exc: SystemExit) -> bool:
    """Whether ``exc`` is typer's exit for a Ctrl-C no command handled (``Exit(130)`` raised from the
    ``KeyboardInterrupt``, which says nothing); a command that handled it said why it stopped."""
    context = exc.__context__
    return exc.code == 130 and context is not None and isinstance(context.__cause__, KeyboardInterrupt)


def _main() -> None:
    args = sys.argv[1:]
    if args[:2] == ["run", "web"] and ("--help" in args or "-h" in args):
        # typer answers --help before `run` sees `web`: the web runner's own options (--tasks,
        # --episodes, …) were listed nowhere. Show them, then `run`'s options they combine with.
        from agentroute.cli.web_cmd import web_parser

        web_parser().print_help()
        print()
    try:
        app()
    except ImportError as exc:
        line = missing_extra(exc)
        if line is None:
            raise
        print_error(line, err_console)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
