"""``agentroute eval --agentic``: routers through k-step tasks of a dataset's test split under budgets.

    agentroute eval --agentic --dataset routerbench:DIR --steps K \\
        --routers always-small,always-large,first-step-large,bopo [--cap-large N | --budget-usd X] [--json]

:func:`agentic_eval_command` is a typer-compatible function; the ``eval`` command dispatches to it
when ``--agentic`` is given. Per router it prints ``name, success_rate, mean_cost,
mean_large_calls, budget_violations`` (plus exhausted tasks and the knob). BoPO is trained on the
train split with this run's steps and tiers (recipe fields from ``--config training/bopo.yaml``),
or loaded when a saved router directory is named instead of ``bopo``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from agentroute.cli.app import number
from agentroute.cli.errors import report
from agentroute.errors import AgentrouteError, ConfigurationError

DEFAULT_AGENTIC_ROUTERS = "always-small,always-large,first-step-large,random-mix,bopo"


def bopo_recipe(path: Path | None) -> dict[str, Any]:
    """The ``params.config`` mapping of a ``training/bopo.yaml`` recipe."""
    if path is None:
        return {}
    from agentroute.cli.train_cmd import read_recipe
    from agentroute.training.bopo_config import recipe_config

    return recipe_config(read_recipe(path), path)


def check_options(
    names: list[str], *, steps: int, max_attempts: int, success_rule: str, tiers: str | None = None
) -> tuple[Any, list[str] | None]:
    """(the success rule, the tiers) the options name, once those that need no data are checked:
    a bad one is a :class:`ConfigurationError` naming its option, before the dataset loads."""
    from agentroute.agentic.env import check_success_rule, check_tier_names
    from agentroute.checks import check_count

    if not names:
        raise ConfigurationError("--routers is empty")
    check_count(steps, "--steps")
    check_count(max_attempts, "--max-attempts")
    rule: Any = success_rule
    try:
        rule = float(success_rule)
    except ValueError:
        pass
    ladder = (
        None
        if tiers is None
        else list(check_tier_names([t.strip() for t in tiers.split(",") if t.strip()], "--tiers"))
    )
    return check_success_rule(rule, "--success-rule"), ladder


def agentic_eval_command(
    dataset: Annotated[
        str, typer.Option("--dataset", help="routerbench:DIR | dcrouter:DIR | routellm-mmlu:DIR")
    ],
    steps: Annotated[int, typer.Option("--steps", help="k: steps (logged queries) per task.")] = 3,
    routers: Annotated[
        str,
        typer.Option(
            "--routers", help="Comma-separated router specs (name[:key=value…]) or saved router dirs."
        ),
    ] = DEFAULT_AGENTIC_ROUTERS,
    cap_large: Annotated[
        float | None,
        typer.Option(
            "--cap-large", parser=number, metavar="INTEGER", help="Hard cap on large-tier calls per task."
        ),
    ] = None,
    budget_usd: Annotated[
        float | None, typer.Option("--budget-usd", help="Hard per-task budget in USD.")
    ] = None,
    tiers: Annotated[
        str | None,
        typer.Option("--tiers", help="Comma-separated tier models, cheapest first (default: dataset's)."),
    ] = None,
    success_rule: Annotated[
        str, typer.Option("--success-rule", help="all | majority | any | last | a fraction.")
    ] = "all",
    feedback: Annotated[
        bool, typer.Option("--feedback", help="Show step outcomes to the routers (an agent environment).")
    ] = False,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", help="Calls allowed per step (> 1: a router may escalate).")
    ] = 1,
    config: Annotated[
        Path | None, typer.Option("--config", help="BoPO recipe YAML (training/bopo.yaml).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of task grouping and of the routers.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print only the results as JSON.")] = False,
) -> None:
    """Roll each router through k-step tasks of the test split under an optional hard budget."""
    err = Console(stderr=True)
    names = [r.strip() for r in routers.split(",") if r.strip()]
    try:
        rule, ladder = check_options(
            names, steps=steps, max_attempts=max_attempts, success_rule=success_rule, tiers=tiers
        )
        from agentroute.eval.agentic import evaluate_agentic, make_budget

        budget = make_budget(cap_large, budget_usd)
        bopo_config = bopo_recipe(config)  # a bad --config is named before the dataset loads
        from agentroute.eval.datasets import load_dataset

        data = load_dataset(dataset)
        result = evaluate_agentic(
            data,
            names,
            steps=steps,
            tiers=ladder,
            budget=budget,
            success_rule=rule,
            feedback=feedback,
            max_attempts=max_attempts,
            seed=seed,
            bopo_config=bopo_config,
        )
    except AgentrouteError as exc:
        raise typer.Exit(report(exc, err)) from None
    if json_output:
        json.dump(result.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    limits = ", ".join(f"{k}={v:g}" for k, v in result.budget.items()) or "none"
    table = Table(
        title=f"{result.dataset}: {result.tasks} tasks × {result.steps} steps; tiers {' < '.join(result.tiers)}; budget {limits}"
    )
    for column in ("router", "success", "mean cost $", "large calls", "violations", "exhausted", "knob"):
        table.add_column(column, justify="left" if column in ("router", "knob") else "right")
    for row in result.rows:
        knob = ", ".join(f"{k}={v}" for k, v in row.params.items())
        table.add_row(
            row.name, f"{row.success_rate:.3f}", f"{row.mean_cost:.5f}", f"{row.mean_large_calls:.2f}",
            str(row.budget_violations), str(row.budget_exhausted), knob,
        )  # fmt: skip
    Console().print(table)
