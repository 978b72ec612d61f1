"""``agentroute train router-r1``: SFT warm-up + GRPO of a Router-R1 policy (TRL; vLLM with ``--gpu``).

Reached as ``agentroute train router-r1 …`` (:func:`agentroute.cli.train_cmd.train_command` delegates here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentroute.cli.errors import error_text, exit_code_for
from agentroute.errors import AgentrouteError


def train_router_r1(
    config: Annotated[Path, typer.Option("--config", help="Recipe YAML (training/router_r1.yaml).")] = Path(
        "training/router_r1.yaml"
    ),
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: sft/, policy/ (the trained policy), summary.json.")
    ] = Path("runs/router_r1"),
    gpu: Annotated[
        bool, typer.Option("--gpu", help="Apply the recipe's gpu: profile (vLLM generation).")
    ] = False,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Start from this checkpoint directory.")
    ] = None,
    sft: Annotated[
        bool | None, typer.Option("--sft/--no-sft", help="Override the recipe's SFT warm-up switch.")
    ] = None,
    sft_only: Annotated[
        bool, typer.Option("--sft-only", help="Stop after the SFT warm-up (writes OUT/sft).")
    ] = False,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Override the recipe's GRPO steps.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue GRPO from the last checkpoint in OUT/grpo (the recipe must save them)."
        ),
    ] = False,
) -> None:
    """Train a Router-R1 policy; ``agentroute ask --graph router_r1 --policy OUT/policy`` serves it."""
    from agentroute.cli.train_cmd import check_out_dir
    from agentroute.routers.router_r1.trainer import train_router_r1 as run
    from agentroute.training.stopping import exit_stopped, stop_word, terminate_as_interrupt

    try:
        check_out_dir(
            out
        )  # before torch/TRL load and the traces are built; sft/, policy/ and the trace cache may be there
        with terminate_as_interrupt(exiting=True):  # a job scheduler's SIGTERM stops the run as a Ctrl-C does
            summary = run(
                config,
                out,
                gpu=gpu,
                policy_dir=policy,
                sft=sft,
                sft_only=sft_only,
                max_steps=max_steps,
                resume=resume,
            )
    except (
        KeyboardInterrupt
    ) as stop:  # Ctrl-C (130) or SIGTERM (143): one line (also under `python -m`, the GPU script)
        saved = getattr(stop, "saved", [])  # the trainer's TrainingInterrupted says what it wrote
        kept = f"this run saved {', '.join(saved)}" if saved else "this run saved no policy"
        exit_stopped(stop, f"{stop_word(stop)}: --out {out}: {kept}")
    except AgentrouteError as exc:
        typer.echo(f"error: {error_text(exc)}", err=True)
        raise typer.Exit(exit_code_for(exc)) from None
    grpo = summary.get("grpo")
    if grpo:
        typer.echo(
            f"{grpo['steps']} GRPO steps, {grpo['seconds_per_step']:.1f} s/step; policy: {out / 'policy'}"
        )


if __name__ == "__main__":  # `python -m agentroute.cli.router_r1_cmd --config … [--gpu]` (the GPU script)
    typer.run(train_router_r1)
