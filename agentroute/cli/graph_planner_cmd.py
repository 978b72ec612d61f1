"""GraphPlanner's CLI: training with a progress bar, and the pictures of a saved policy.

    agentroute train graph-planner (--from MEMORY_URL | --dataset SPEC) --config training/graph_planner.yaml --out DIR
    agentroute routers show graph-planner --state DIR --out DIR/evidence

Both functions are typer-compatible commands (``app.command(...)(train_graph_planner)``); the
generic ``train``/``routers show`` commands may also delegate to them for ``graph-planner``.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agentroute.cli.errors import report
from agentroute.errors import AgentrouteError, ConfigurationError
from agentroute.routers.base import register_lazy
from agentroute.training.checkpoint import CHECKPOINT
from agentroute.training.stopping import exit_stopped, stop_word, terminate_as_interrupt


def _ensure_registered() -> None:
    """The registry line the routers package carries for every router (harmless when it is there)."""
    register_lazy("graph-planner", "agentroute.routers.graph_planner.router:GraphPlannerRouter")


_ensure_registered()

console = Console()
err_console = Console(stderr=True)


def train_graph_planner(
    out: Annotated[Path, typer.Option("--out", help="Directory to save the trained router into.")],
    memory_url: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Train on the trajectories this memory URL holds to learn from (scored ones, and failed ones by their agents' calls).",
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="routerbench:DIR | dcrouter:DIR | routellm-mmlu:DIR")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Recipe YAML (params, dataset).")] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show the PPO progress bar.")
    ] = True,
) -> None:
    """Train GraphPlanner's PPO policy on the offline environment and save it for `--router DIR`.

    Ctrl-C (exit 130) or SIGTERM (exit 143) keeps the last finished update in ``--out/checkpoint.pt``;
    the same command resumes from it."""
    _ensure_registered()
    with terminate_as_interrupt(
        exiting=True
    ):  # a job scheduler's SIGTERM keeps the checkpoint, as a Ctrl-C does
        path, seconds = _train(out, memory_url, dataset, config, progress)
    console.print(
        f"trained in {seconds:.1f}s; saved to {path} — use it with `--graph planner --router {path}`"
    )


def _train(
    out: Path, memory_url: str | None, dataset: str | None, config: Path | None, progress: bool
) -> tuple[Path, float]:
    """The training run of :func:`train_graph_planner`: (the saved router's path, seconds)."""
    from agentroute.cli.train_cmd import check_out_dir, read_recipe, recipe_params, training_data, warn_if_few
    from agentroute.routers import make_router
    from agentroute.routers.base import MANIFEST
    from agentroute.routers.graph_planner.router import GraphPlannerRouter  # no torch: bad recipes fail fast

    try:
        recipe = read_recipe(config)
        if recipe.get("router", "graph-planner") != "graph-planner":
            raise ConfigurationError(
                f"recipe {config} is for router {recipe['router']!r}, not 'graph-planner'"
            )
        dataset = dataset or (None if memory_url else recipe.get("dataset"))
        if not memory_url and not dataset:
            raise ConfigurationError("give --from MEMORY_URL or --dataset SPEC (or a recipe with dataset:)")
        # each option checked (name, type, range) with the recipe's file and line, before the data is read
        model = make_router("graph-planner", **recipe_params("graph-planner", recipe, config))
        if not isinstance(
            model, GraphPlannerRouter
        ):  # an entry point may register another class under the name
            raise ConfigurationError(
                f"router 'graph-planner' is registered as {type(model).__name__}: this trainer "
                "trains GraphPlannerRouter only; train it with its own command"
            )
        checkpoint = out / CHECKPOINT
        if not any(
            out.glob(f"{CHECKPOINT}*")
        ):  # an interrupted run's folder holds its checkpoint (or one a kill -9 cut short) and no router yet
            check_out_dir(out, saved=MANIFEST)  # before the data is read and the PPO fit runs (minutes)
        data, described = training_data(memory_url, dataset)
        from agentroute.routers.graph_planner.trainer import checkpoint_episodes  # loads torch

        resumed = checkpoint_episodes(checkpoint)
        console.print(
            f"training [bold]graph-planner[/] on {described}"
            + (f", resuming from {checkpoint} ({resumed} episodes done)" if resumed is not None else "")
        )
        warn_if_few("graph-planner", data)
        start = time.perf_counter()
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (
                TextColumn("[bold]PPO"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=False) as bar:
                task = bar.add_task("ppo", total=model.episodes, stats="")

                def on_update(row: dict[str, Any]) -> None:  # not `report`: that name is the error printer
                    stats = (
                        f"reward {row['reward']:+.3f}  score {row['score']:.3f}  cost ${row['cost']:.5f}  "
                        f"mask {row['mask_rate']:.2f}  steps {row['steps']:.1f}"
                    )
                    bar.update(task, completed=row["episodes"], stats=stats)

                model.fit(data, progress=on_update, checkpoint=checkpoint)
        else:
            model.fit(data, checkpoint=checkpoint)
        seconds = time.perf_counter() - start
        from agentroute.training.provenance import training_record

        model.trained_on_ = training_record(data, memory_url=memory_url, dataset=dataset)  # for `eval`
        try:
            path = model.save(out)
        except OSError as exc:  # e.g. a read-only folder: the check above cannot see permissions
            raise ConfigurationError(
                f"--out {out}: cannot write the router there ({exc.strerror or exc})"
            ) from None
        checkpoint.unlink(missing_ok=True)  # the router is saved: nothing left to resume
    except AgentrouteError as exc:
        raise typer.Exit(report(exc, err_console)) from None
    except KeyboardInterrupt as stop:  # Ctrl-C (exit 130) or SIGTERM (exit 143)
        exit_stopped(stop, f"{stop_word(stop)}: --out {out}: {kept_after_interrupt(out)}")
    return path, seconds


def kept_after_interrupt(out: Path) -> str:
    """What an interrupted ``train graph-planner`` leaves in ``out``."""
    from agentroute.routers.base import MANIFEST

    done = None
    if (out / CHECKPOINT).is_file():  # else torch is not imported: a Ctrl-C may have stopped its import
        from agentroute.routers.graph_planner.trainer import checkpoint_episodes

        done = checkpoint_episodes(out / CHECKPOINT)
    before = "; the router saved there before is unchanged" if (out / MANIFEST).is_file() else ""
    if done is None:
        return "nothing was saved" + before
    return (
        f"a checkpoint after {done} episodes ({out / CHECKPOINT}): rerun the same command to resume{before}"
    )


def write_graph_planner_evidence(router: Any, out: Path) -> list[Path]:
    """Workflow pictures (text trees) and the action distribution per role, as files in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    trees = out / "workflows.txt"
    trees.write_text("\n\n".join(router.examples_) + "\n")
    per_role: dict[str, dict[str, int]] = defaultdict(dict)
    for key, count in router.action_counts_.items():
        role, _, agent = key.partition("|")
        per_role[role][agent] = count
    dist = out / "actions.json"
    dist.write_text(json.dumps({"per_role": per_role, "train_log": router.train_log_[-10:]}, indent=1))
    written = [trees, dist]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pictures need the plotting extra; the text files are enough
        return written
    roles = sorted(per_role)
    if roles:
        fig, axes = plt.subplots(1, len(roles), figsize=(5 * len(roles), 3.5), squeeze=False)
        for ax, role in zip(axes[0], roles, strict=True):
            counts = per_role[role]
            agents = sorted(counts, key=counts.__getitem__, reverse=True)
            ax.barh(agents, [counts[a] for a in agents])
            ax.set_title(f"{role}: greedy actions")
            ax.invert_yaxis()
        fig.tight_layout()
        png = out / "actions.png"
        fig.savefig(png, dpi=100)
        plt.close(fig)
        written.append(png)
    return written


def show_graph_planner(
    state: Annotated[
        Path, typer.Option("--state", help="Directory (or router.json) saved by `agentroute train`.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory to write the pictures and JSON into.")
    ] = None,
) -> None:
    """Draw a few workflows the saved policy built and its action distribution per role."""
    from agentroute.routers.graph_planner.router import GraphPlannerRouter

    _ensure_registered()
    try:
        router = GraphPlannerRouter.load(state)
    except AgentrouteError as exc:
        raise typer.Exit(report(exc, err_console)) from None
    for tree in router.examples_:
        console.print(tree, markup=False, highlight=False)
        console.print()
    per_role: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for key, count in sorted(router.action_counts_.items(), key=lambda kv: -kv[1]):
        role, _, agent = key.partition("|")
        per_role[role].append((agent, count))
    for role, items in sorted(per_role.items()):
        total = sum(c for _, c in items)
        console.print(f"[bold]{role}[/]: " + ", ".join(f"{a} {c / total:.0%}" for a, c in items[:5]))
    if out is not None:
        for path in write_graph_planner_evidence(router, out):
            console.print(f"wrote {path}")
