"""``agentroute routers``: list the registered routers; show a saved router's learned state.

    agentroute routers list
    agentroute routers show ant-colony --state runs/ant-colony --out evidence/

``show`` loads a router saved by ``agentroute train`` (or ``Router.save``) and writes its evidence
into ``--out``: for the ant colony the pheromone matrices as JSON, a heatmap per task type, the
specialists' overview and the layered path graph per task type; for any other router its saved
JSON state (``state.json``).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentroute.cli.errors import EXIT_BAD_INPUT, missing_extra, report
from agentroute.cli.train_cmd import check_out_dir
from agentroute.errors import AgentrouteError, ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from agentroute.routers.base import Router

console = Console()
err_console = Console(stderr=True)

routers_app = typer.Typer(help="Registered routers and their learned state.", no_args_is_help=True)


@routers_app.command("list")
def list_routers(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Import torch now (seconds) and list its routers unavailable if it does not import.",
        ),
    ] = False,
) -> None:
    """Every registered router: whether it learns, its knob, its options and where it lives.

    Set options as `--router NAME:option=value` (ask, run, serve), `--routers NAME:option=value` (eval) or `make_router(NAME, option=value)`."""
    import importlib.util
    import sys

    from agentroute.routers import base, get_router_class, router_names

    try:
        torch_spec = importlib.util.find_spec("torch") if "torch" not in sys.modules else None
    except (ImportError, ValueError):  # not installed (or hidden): its routers are listed unavailable
        torch_spec = None
    broken = _broken_torch() if check and torch_spec is not None else None
    table = Table(title="routers")
    for col in ("name", "learned", "knob", "options (defaults)", "class"):
        table.add_column(col, overflow="fold")
    unavailable: dict[str, list[str]] = {}  # why → the routers it keeps out, told below the table
    for name in router_names():
        try:
            cls = get_router_class(name)
            shown = options(cls)  # builds it: a router that needs an extra only when made says so here too
        except Exception as exc:  # an optional dependency missing: still list it
            torch_refused = broken and isinstance(exc, MissingDependencyError) and exc.module == "torch"
            why = broken if torch_refused else missing_extra(exc) or f"{type(exc).__name__}: {exc}"
            unavailable.setdefault(str(why), []).append(name)
            table.add_row(name, "?", "?", "?", "[yellow]unavailable (below)[/]")
            continue
        target = base._LAZY.get(name) or f"{cls.__module__}:{cls.__name__}"
        table.add_row(name, "yes" if cls.learned else "no", cls.knob or "-", escape(shown) or "-", target)
    console.print(table)
    for why, names in unavailable.items():  # whole lines: an install command is never cut by a column
        console.print(f"[yellow]unavailable[/] {', '.join(names)}: {escape(why)}", soft_wrap=True)
    if torch_spec is not None and not check:  # found, not imported: say so, not that it works
        where = f" at {Path(torch_spec.origin).parent}" if torch_spec.origin else ""
        console.print(
            f"torch: found{where}, not imported (seconds): the routers that need it import it when fitted or "
            "loaded; `agentroute routers list --check` imports it now",
            soft_wrap=True,
            markup=False,
        )


def _broken_torch() -> str | None:
    """``None`` when torch imports; else the one line saying why (:func:`~agentroute.routers.base.import_torch`),
    and torch hidden from this process, so the routers that need it list as unavailable."""
    import sys

    from agentroute.routers.base import import_torch

    try:
        import_torch()
    except ConfigurationError as exc:
        for module in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
            del sys.modules[module]  # what the failed import left
        sys.modules["torch"] = None  # type: ignore[assignment]  # find_spec: not installed
        return str(exc)
    return None


def options(cls: type[Router]) -> str:
    """``name=default`` for each keyword parameter of ``cls.__init__``, one a line, as the code
    declares them; ``name (required)`` for one without a default, or whose default the router's
    own checks refuse (``fixed``'s ``model=''``: it must be given). A router that needs a package
    that is not installed raises its :class:`MissingDependencyError`."""
    try:
        cls._build({})
        refused = ""
    except ConfigurationError as exc:  # a default that stands for "must be given"
        refused = str(exc)
    except MissingDependencyError:
        raise
    except Exception:  # a router that cannot be built here otherwise: defaults as declared
        refused = ""
    shown = []
    for p in inspect.signature(cls).parameters.values():
        if p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        required = p.default is p.empty or f"'{p.name}'" in refused
        shown.append(f"{p.name} (required)" if required else f"{p.name}={p.default!r}")
    return "\n".join(shown)


@routers_app.command("show")
def show_router(
    router: Annotated[str, typer.Argument(help="Registered router name (e.g. ant-colony).")],
    state: Annotated[
        Path, typer.Option("--state", help="Directory (or router.json) saved by `agentroute train`.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the evidence (JSON + PNGs) into.")],
) -> None:
    """Export a saved router's learned state; for ant-colony, pheromone JSON and plots."""
    from agentroute.routers import get_router_class

    try:
        check_out_dir(out)
        if router == "graph-planner":  # workflow trees and action distributions, not a state dump
            from agentroute.cli.graph_planner_cmd import show_graph_planner

            return show_graph_planner(state=state, out=out)
        cls = get_router_class(router)
        loaded = cls.load(state)
        out.mkdir(parents=True, exist_ok=True)
        export = getattr(loaded, "export_pheromones", None)
        if export is not None:
            from agentroute.viz.pheromone import write_evidence

            written = write_evidence(export(), out)
        else:
            target = out / "state.json"
            target.write_text(
                json.dumps(
                    {"router": loaded.name, "params": repr(loaded), "state": loaded.get_state()}, indent=1
                )
            )
            written = [target]
    except AgentrouteError as exc:
        raise typer.Exit(report(exc, err_console)) from None
    except OSError as exc:  # --out not writable
        err_console.print(
            f"[bold red]error:[/] {escape(f'--out {out}: cannot write there ({exc.strerror or exc})')}"
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    for path in written:
        console.print(escape(f"wrote {path}"))
