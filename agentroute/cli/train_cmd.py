"""``agentroute train``: fit any registered router on logged data and save it.

    agentroute train ROUTER (--from MEMORY_URL | --dataset SPEC) [--limit N | --sample F] [--config training/ROUTER.yaml] --out DIR

``graph-planner`` and ``router-r1`` are trained by their own commands
(:func:`~agentroute.cli.graph_planner_cmd.train_graph_planner`,
:func:`~agentroute.cli.router_r1_cmd.train_router_r1`), which this one runs with their options.

A recipe is YAML with ``params:`` (the router's keyword parameters) and optionally ``dataset:``
(used when neither --from nor --dataset is given). ``$VARS`` in it are expanded from the environment.
"""

from __future__ import annotations

import difflib
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from agentroute._yaml import line_of
from agentroute.cli.errors import check_out, report
from agentroute.errors import AgentrouteError, ConfigurationError

console = Console()
err_console = Console(stderr=True)

ROUTER_R1 = ("router-r1", "router_r1")  # (its two spellings)
RECIPE_KEYS = ("router", "dataset", "params")  # the top-level keys of a training recipe
SELF_RESUMING = ("graph-planner", "bopo")  # keep OUT/checkpoint.pt on a stop; the same command resumes
FEW_EXAMPLES = 20  # fewer queries or trajectories than this: the fit is warned about, not refused


def read_recipe(path: Path | None) -> dict[str, Any]:
    """A recipe file as a mapping, read as untrusted YAML (bounded aliases and nesting, no repeated
    keys; errors name the file and line). ``$VARS`` are expanded from the environment first
    (:func:`~agentroute.training.recipe_file.load_recipe_yaml`, every recipe's reader)."""
    from agentroute.training.recipe_file import load_recipe_yaml

    if path is None:
        return {}
    root, recipe = load_recipe_yaml(path, path)
    recipe = {} if recipe is None else recipe
    if not isinstance(recipe, dict) or not isinstance(recipe.get("params", {}), dict):
        raise ConfigurationError(f"{path}: expected a mapping with a 'params:' mapping")
    for key_node, _ in root.value if isinstance(root, yaml.MappingNode) else ():
        key = key_node.value
        if key not in RECIPE_KEYS:  # a misspelt 'params:' would otherwise train on the defaults
            close = difflib.get_close_matches(str(key), RECIPE_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"{path} line {line_of(key_node)}: unknown key {key!r} (a recipe takes {', '.join(RECIPE_KEYS)}){hint}"
            )
    return recipe


def recipe_params(router: str, recipe: dict[str, Any], config: Path | None) -> dict[str, Any]:
    """The recipe's ``params:``, checked against the router's keyword parameters
    (:func:`~agentroute.eval.harness.check_router_params`); one error names each key refused."""
    from agentroute.eval.harness import check_router_params

    params = dict(recipe.get("params", {}))
    lines = _param_lines(config)
    refused: list[str] = []
    for key, value in params.items():  # one by one first, so the error names each key's line
        where = f"recipe {config} line {lines[key]}" if key in lines else f"recipe {config}"
        try:
            check_router_params(router, {key: value}, where=where)
        except ConfigurationError as exc:
            refused.append(str(exc) if not refused else str(exc).removeprefix(f"recipe {config} "))
    if refused:
        raise ConfigurationError("; ".join(refused))
    check_router_params(router, params, where=f"recipe {config}")
    return params


def _param_lines(config: Path | None) -> dict[str, int]:
    """The line of each key under the recipe's ``params:`` (none without a recipe)."""
    from agentroute.training.recipe_file import load_recipe_yaml

    if config is None:
        return {}
    root, _ = load_recipe_yaml(config, config)
    for key_node, value_node in root.value if isinstance(root, yaml.MappingNode) else ():
        if key_node.value == "params" and isinstance(value_node, yaml.MappingNode):
            return {str(k.value): line_of(k) for k, _ in value_node.value}
    return {}


def training_data(
    memory_url: str | None,
    dataset: str | None,
    *,
    limit: int | None = None,
    sample: float | None = None,
    seed: int = 0,
) -> tuple[Any, str]:
    """Trajectories from the memory, or a logged-outcome dataset (its train split is used).

    ``limit``/``sample``: a seeded random subset (at most ``limit`` queries or trajectories, a
    ``sample`` fraction of them).
    """
    if sample is not None and not 0.0 < sample <= 1.0:
        raise ConfigurationError(f"--sample must be a fraction in (0, 1] (got {sample})")
    if limit is not None and limit < 1:
        raise ConfigurationError(f"--limit must be at least 1 (got {limit})")
    if memory_url:
        from agentroute.cli.memory_cmd import existing_memory_url
        from agentroute.memory import open_memory
        from agentroute.memory.export import learned_trajectories

        with open_memory(
            existing_memory_url(memory_url)
        ) as store:  # scored tasks, and failed ones by their agents
            trajectories = list(learned_trajectories(store, status=["done", "budget_exhausted", "failed"]))
            held = store.stats()["tasks"] if not trajectories else {}
        if not trajectories:
            tally = ", ".join(f"{status}: {n}" for status, n in held.items()) or "none"
            raise ConfigurationError(
                f"nothing to learn in memory {memory_url} (tasks {tally}): no scored done or budget_exhausted task, "
                "and no failed task failed by its agent's call (an outage, where every candidate failed, is nobody's): "
                "score finished ones first (`agentroute feedback TASK_ID --score X`, or `agentroute run --input` with gold answers)"
            )
        total = len(trajectories)
        if sample is not None or limit is not None:
            import numpy as np

            keep = total if sample is None else max(1, round(sample * total))
            keep = min(keep, limit) if limit is not None else keep
            # drawn over task ids: the same logs give the same subset in whatever order they were stored
            trajectories = sorted(trajectories, key=lambda t: t.task.id)
            order = np.sort(np.random.default_rng(seed).permutation(total)[:keep])
            trajectories = [trajectories[i] for i in order]
        subset = f" (seeded subset of {total})" if len(trajectories) < total else ""
        return trajectories, f"{len(trajectories)} trajectories{subset} from {memory_url}"
    from agentroute.eval.datasets import dataset_kind, load_dataset, row_notes

    options = (
        {"require_test": False} if dataset_kind(str(dataset)) == "outcomes" else {}
    )  # bandit logs train as they are (a bare logs.csv too)
    data = load_dataset(dataset, limit=limit, sample=sample, seed=seed, **options)  # type: ignore[arg-type]
    notes = row_notes(data.notes) + [
        str(data.notes[k])
        for k in ("scores", "subset", "models_dropped")
        if k in data.notes and data.notes[k] != "as given"
    ]
    if len(data.test):  # not trained on: say so, and how the split was made
        notes.insert(
            0, f"{len(data.test)} test queries held out: {data.notes.get('split', 'the test split')}"
        )
    return data, f"{data.name}: {len(data.train)} train queries × {len(data.train.models)} models" + (
        f" ({'; '.join(notes)})" if notes else ""
    )


def warn_if_few(router: str, data: Any) -> None:
    """A warning on standard error when ``data`` (trajectories, or a dataset: its train split) holds
    fewer than :data:`FEW_EXAMPLES` examples, or one agent (a memory of traffic one rule routed); the
    fit goes on."""
    if isinstance(data, list):
        agents = sorted({step.agent.key for trajectory in data for step in trajectory.steps})
    else:
        agents = list(data.train.models)
    if len(agents) == 1:
        err_console.print(
            escape(
                f"warning: the training data holds one agent ({agents[0]}): {router} can only ever choose it "
                "(log the outcomes of at least two agents)"
            ),
            highlight=False,
        )
    examples = len(data) if isinstance(data, list) else len(data.train)
    if examples < FEW_EXAMPLES:
        err_console.print(
            escape(
                f"warning: {examples} training examples: too few for {router} to learn from; its "
                f"choices will mostly reflect chance (log and score at least {FEW_EXAMPLES})"
            ),
            highlight=False,
        )


def check_out_dir(out: Path, *, saved: str | None = None) -> None:
    """``--out`` before any work: a directory, or a path where one can be created. With ``saved`` (the
    file a command writes, e.g. ``router.json``), a directory that holds other files but no
    ``saved`` is refused too, so a run never mixes its output into an unrelated folder."""
    check_out(out, folder=True, create=False)  # created when the router is saved: a refused run leaves none
    if saved and out.is_dir() and any(out.iterdir()) and not (out / saved).is_file():
        raise ConfigurationError(
            f"--out {out} holds other files and no {saved}: give a new or empty directory "
            f"(a directory holding a {saved} is overwritten)"
        )


def train_command(
    router: Annotated[str, typer.Argument(help="Registered router name.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to save the trained router into.")],
    memory_url: Annotated[
        str | None, typer.Option("--from", help="Train on trajectories from this memory URL.")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="routerbench:DIR | dcrouter:DIR | routellm-mmlu:DIR | outcomes:FILE"),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Recipe YAML (params, dataset).")] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", help="Train on at most N queries (trajectories with --from): a seeded random subset."
        ),
    ] = None,
    sample: Annotated[
        float | None,
        typer.Option(
            "--sample", help="Train on this fraction (0, 1] of the queries: a seeded random subset."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the subset and of drawn splits.")] = 0,
    gpu: Annotated[
        bool, typer.Option("--gpu", help="router-r1: the recipe's gpu profile (vLLM generation).")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="graph-planner: show the PPO progress bar (default: shown)."
        ),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="router-r1: start from this checkpoint directory.")
    ] = None,
    sft: Annotated[
        bool | None,
        typer.Option("--sft/--no-sft", help="router-r1: override the recipe's SFT warm-up switch."),
    ] = None,
    sft_only: Annotated[
        bool, typer.Option("--sft-only", help="router-r1: stop after the SFT warm-up (writes OUT/sft).")
    ] = False,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="router-r1: override the recipe's GRPO steps.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="router-r1: continue GRPO from the last checkpoint in OUT/grpo (graph-planner and bopo resume by themselves from OUT/checkpoint.pt).",
        ),
    ] = False,
) -> None:
    """Fit a router on logged trajectories or a dataset, then save it for `--router DIR`.

    ``graph-planner`` trains its PPO policy (with a progress bar) and ``router-r1`` its policy LM
    (SFT warm-up, then GRPO with TRL), each by its own command, as `train graph-planner|router-r1`
    runs it. A Ctrl-C (exit 130) or SIGTERM (143) says what the run kept in ``--out``; graph-planner
    and bopo keep a checkpoint there that the same command resumes from.
    """
    given = {"--from": memory_url is not None, "--dataset": dataset is not None, "--limit": limit is not None,
             "--sample": sample is not None, "--seed": seed != 0, "--gpu": gpu, "--policy": policy is not None,
             "--sft" if sft else "--no-sft": sft is not None, "--sft-only": sft_only, "--max-steps": max_steps is not None,
             "--resume": resume, "--progress" if progress else "--no-progress": progress is not None}  # fmt: skip
    try:
        check_router_options(router, [option for option, used in given.items() if used])
    except AgentrouteError as exc:
        raise typer.Exit(report(exc)) from None
    if router in ROUTER_R1:
        return _train_router_r1(out, config or Path("training/router_r1.yaml"), gpu=gpu, policy=policy, sft=sft,
                                sft_only=sft_only, max_steps=max_steps, resume=resume)  # fmt: skip
    if router == "graph-planner":
        return _train_graph_planner(out, memory_url, dataset, config, progress is not False)
    from agentroute.routers.base import MANIFEST  # routers load numpy: not on the CLI's --help path
    from agentroute.training.stopping import exit_stopped, stop_word, terminate_as_interrupt

    existed = (out / MANIFEST).is_file()
    try:
        with terminate_as_interrupt(exiting=True):  # a job scheduler's SIGTERM stops it as a Ctrl-C does
            _train(router, out, memory_url, dataset, config, limit, sample, seed)
    except KeyboardInterrupt as stop:  # Ctrl-C (130), SIGTERM (143): the save is the last step (and atomic)
        exit_stopped(stop, f"{stop_word(stop)}: --out {out}: {kept_after_stop(out, existed=existed)}")


def kept_after_stop(out: Path, *, existed: bool) -> str:
    """What a stopped ``train ROUTER`` leaves in ``out``: a checkpoint to resume (routers whose fit keeps
    one), and the router saved there before (``existed``), unchanged."""
    from agentroute.training.checkpoint import CHECKPOINT, checkpoint_done

    before = "the router saved there before is unchanged" if existed else ""
    done = checkpoint_done(out / CHECKPOINT)
    if done is None:
        return before or "nothing was saved"
    return f"a checkpoint after {done} ({out / CHECKPOINT}): rerun the same command to resume" + (
        f"; {before}" if before else ""
    )


#: The options only some routers take: the routers (``other``: any but these two) that take each.
_ROUTER_OPTIONS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("--limit", "--sample", "--seed"), ("other",)),
    **dict.fromkeys(("--from", "--dataset"), ("graph-planner", "other")),
    **dict.fromkeys(("--progress", "--no-progress"), ("graph-planner",)),
    **dict.fromkeys(
        ("--gpu", "--policy", "--sft", "--no-sft", "--sft-only", "--max-steps", "--resume"), ("router-r1",)
    ),
}


def check_router_options(router: str, given: list[str]) -> None:
    """Refuse the options ``given`` that ``router``'s training would ignore (one error naming them)."""
    family = "router-r1" if router in ROUTER_R1 else "graph-planner" if router == "graph-planner" else "other"
    ignored = [option for option in given if family not in _ROUTER_OPTIONS.get(option, (family,))]
    if not ignored:
        return
    if family != "other" and {"--limit", "--sample", "--seed"} & set(ignored):
        raise ConfigurationError(
            f"{router} trains on its recipe's data: --limit, --sample and --seed do not apply"
        )
    if "--resume" in ignored and router in SELF_RESUMING:
        raise ConfigurationError(
            f"--resume is for `train router-r1`: {router} resumes by itself; rerun the same command "
            "without it (it goes on from --out's checkpoint.pt)"
        )
    if family == "router-r1" and {"--from", "--dataset"} & set(ignored):
        raise ConfigurationError(f"{router} trains on its recipe's data: --from and --dataset do not apply")
    owners = sorted({owner for option in ignored for owner in _ROUTER_OPTIONS[option]})
    raise ConfigurationError(f"{', '.join(ignored)}: for `train {' or '.join(owners)}` only, not {router}")


# Each router's own command says what a Ctrl-C left in --out; these say it for one that lands before it starts.


def _train_router_r1(out: Path, config: Path, **options: Any) -> None:
    from agentroute.training.stopping import exit_stopped, stop_word

    try:
        from agentroute.cli.router_r1_cmd import train_router_r1

        train_router_r1(config=config, out=out, **options)
    except KeyboardInterrupt as stop:
        exit_stopped(stop, f"{stop_word(stop)}: --out {out}: this run saved no policy")


def _train_graph_planner(
    out: Path, memory_url: str | None, dataset: str | None, config: Path | None, progress: bool
) -> None:
    from agentroute.training.stopping import exit_stopped, stop_word

    try:
        from agentroute.cli.graph_planner_cmd import train_graph_planner

        train_graph_planner(out=out, memory_url=memory_url, dataset=dataset, config=config, progress=progress)
    except KeyboardInterrupt as stop:
        from agentroute.cli.graph_planner_cmd import kept_after_interrupt

        exit_stopped(stop, f"{stop_word(stop)}: --out {out}: {kept_after_interrupt(out)}")


def _train(
    router: str,
    out: Path,
    memory_url: str | None,
    dataset: str | None,
    config: Path | None,
    limit: int | None,
    sample: float | None,
    seed: int,
) -> None:
    from agentroute.routers import make_router
    from agentroute.routers.base import MANIFEST
    from agentroute.training.checkpoint import CHECKPOINT, checkpoint_done
    from agentroute.training.provenance import training_record

    try:
        recipe = read_recipe(config)
        if recipe.get("router", router) != router:
            raise ConfigurationError(f"recipe {config} is for router {recipe['router']!r}, not {router!r}")
        if memory_url and dataset:
            raise ConfigurationError("give --from MEMORY_URL or --dataset SPEC, not both")
        dataset = dataset or (None if memory_url else recipe.get("dataset"))
        if not memory_url and not dataset:
            raise ConfigurationError("give --from MEMORY_URL or --dataset SPEC (or a recipe with dataset:)")
        model = make_router(router, **recipe_params(router, recipe, config))
        checkpoint = out / CHECKPOINT if "checkpoint" in inspect.signature(model.fit).parameters else None
        if checkpoint is None or not any(
            out.glob(f"{CHECKPOINT}*")
        ):  # an interrupted run's folder holds its checkpoint
            check_out_dir(out, saved=MANIFEST)
        data, described = training_data(memory_url, dataset, limit=limit, sample=sample, seed=seed)
        done = checkpoint_done(checkpoint) if checkpoint is not None else None
        resuming = f", resuming from {checkpoint} ({done} done)" if done is not None else ""
        console.print(f"training [bold]{router}[/] on {escape(described + resuming)}")
        warn_if_few(router, data)
        start = time.perf_counter()
        fit: Callable[..., Any] = model.fit  # a router whose fit keeps a checkpoint (bopo) is given one:
        fit(
            data, **({"checkpoint": checkpoint} if checkpoint is not None else {})
        )  # the same command resumes from it
        seconds = time.perf_counter() - start
        model.trained_on_ = training_record(  # for `eval` to tell a test split that holds its queries
            data, memory_url=memory_url, dataset=dataset, seed=seed, limit=limit, sample=sample
        )
        summary = getattr(
            model, "fit_summary", None
        )  # what a router found in the data (task types, taxonomy…)
        if callable(summary):
            console.print(summary(), markup=False, highlight=False)
        try:
            path = model.save(out)
        except OSError as exc:
            raise ConfigurationError(
                f"--out {out}: cannot write the router there ({exc.strerror or exc})"
            ) from None
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)  # the router is saved: nothing left to resume
    except AgentrouteError as exc:
        raise typer.Exit(report(exc)) from None  # on standard error, like every command's errors
    console.print(escape(f"trained in {seconds:.1f}s; saved to {path} — use it with `--router {path}`"))
