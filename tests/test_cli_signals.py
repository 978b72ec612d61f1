"""Ctrl-C on the ``agentroute`` command as a user presses it: a real SIGINT to a real process, at
points of its start-up (while typer, rich and the subcommands import) and later. Every outcome is
one line on standard error and exit code 130, never a traceback, never death by SIGINT."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import agentroute
from tests.fixtures_signals import signal_after_import

SOURCE = Path(agentroute.__file__).resolve().parents[1]  # the checkout under test, for the subprocesses


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("NO_COLOR", None)
    return env


def _ctrl_c_after_import(command: list[str], module: str, cwd: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    """A Ctrl-C (SIGINT) as soon as ``module`` has imported: :func:`signal_after_import`. ``module``
    is one the command imports on its way to work, so the Ctrl-C lands in the start-up or, on a slow
    machine, a little after it."""
    return signal_after_import(command, module, signal.SIGINT, cwd=cwd, env=env, timeout_s=120)


def _assert_one_line_130(rc: int, lines: list[str], where: str) -> None:
    text = "\n".join(lines)
    assert rc == 130, f"{where}: exit status {rc}\n{text}"
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, f"{where}:\n{text}"
    said = [line for line in lines if line.startswith("interrupted")]
    assert len(said) == 1 and said[0] == lines[-1], f"{where}:\n{text}"


# modules the command imports on its way, in order: typer, rich, the subcommands
START_UP = ["typer.main", "rich.console", "agentroute.cli.errors", "agentroute.cli.memory_cmd",
            "agentroute.cli.train_cmd", "agentroute.cli.app"]  # fmt: skip
# then `train` at work: the routers, torch, and torch._dynamo, which torch imports on the fit's first step
TRAINING = ["agentroute.routers.base", "torch._utils", "torch._dynamo"]


def _train_command(data_dir: Path, tmp_path: Path) -> list[str]:
    recipe = tmp_path / "long.yaml"
    recipe.write_text("params:\n  epochs: 1000000\n  patience: 1000000\n")  # a fit that outlasts the test
    return ["train", "mlp", "--dataset", f"routerbench:{data_dir / 'routerbench'}", "--limit", "60",
            "--config", str(recipe), "--out", str(tmp_path / "out")]  # fmt: skip


@pytest.mark.parametrize("module", START_UP + TRAINING)
def test_ctrl_c_during_start_up_of_python_m_agentroute_train(module, tmp_path, data_dir):
    """During the imports: ``interrupted``; once training, the command's own line."""
    command = [sys.executable, "-m", "agentroute", *_train_command(data_dir, tmp_path)]
    rc, lines = _ctrl_c_after_import(command, module, tmp_path, _env())
    _assert_one_line_130(rc, lines, f"SIGINT after {module} imported")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module", ["typer.main", "agentroute.cli.train_cmd", "agentroute.cli.app", "torch._dynamo"])
def test_ctrl_c_during_start_up_of_the_agentroute_script(module, tmp_path, data_dir):
    """The console script imports ``agentroute.cli`` before ``main()`` can run."""
    script = shutil.which("agentroute", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the agentroute script is not installed next to this Python")
    rc, lines = _ctrl_c_after_import([script, *_train_command(data_dir, tmp_path)], module, tmp_path, _env())
    _assert_one_line_130(rc, lines, f"SIGINT after {module} imported")


@pytest.mark.parametrize("module", ["typer.main", "agentroute.cli.app", "agentroute.eval.datasets"])
def test_ctrl_c_during_start_up_of_eval(module, tmp_path, data_dir):
    """``eval`` has no message of its own: ``interrupted``, the same line as during the imports."""
    command = [sys.executable, "-m", "agentroute", "eval", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
               "--routers", "mlp:epochs=1000000:patience=1000000", "--no-peers", "--boot", "0",
               "--out", str(tmp_path / "eval")]  # fmt: skip
    rc, lines = _ctrl_c_after_import(command, module, tmp_path, _env())
    _assert_one_line_130(rc, lines, f"SIGINT after {module} imported")
    assert lines[-1] == "interrupted"


def test_a_ctrl_c_through_exec_d_code_exits_130_not_by_sigint(tmp_path):
    """CPython notes a KeyboardInterrupt that escaped code run from source text (dataclasses and
    namedtuples run such code while they import, torch its compiler on a fit's first step) and,
    under ``python -m``, ends the process by SIGINT after it was handled and ``sys.exit(130)``
    called: why ``agentroute train`` Ctrl-C'd mid-fit sometimes ended by signal (-2), not exit 130.
    Here the Ctrl-C comes while the user's graph file loads, in code it runs with ``exec``."""
    (tmp_path / "my_graph.py").write_text('exec("raise KeyboardInterrupt")\n')
    proc = subprocess.run([sys.executable, "-m", "agentroute", "ask", "what?", "--graph", "my_graph.py"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "interrupted\n"


SWALLOWED = """
import os, signal, sys, time
sys.argv = ["agentroute", "--help"]
try:  # a library's bare `except:` around an optional import, where the Ctrl-C lands
    import agentroute.cli as cli
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
except BaseException:
    pass
cli.main()
"""


def test_a_ctrl_c_of_the_start_up_whose_exit_code_swallowed_still_stops_the_command():
    """The start-up's Ctrl-C raises ``SystemExit`` wherever it lands; code that swallowed it let the
    command run on (was: the help printed, exit 0 — in CI a `train` that ran until its timeout)."""
    done = subprocess.run(
        [sys.executable, "-c", SWALLOWED], cwd=SOURCE, env=_env(), capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert done.returncode == 130, done.stdout + done.stderr
    assert "Usage" not in done.stdout  # the command did not run
    _assert_one_line_130(done.returncode, done.stderr.strip().splitlines(), "swallowed")
