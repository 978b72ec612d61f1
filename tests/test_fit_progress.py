"""Progress of the fits as users meet it: one bar per fit (its epochs or steps, the current loss) on
stderr — from ``agentroute train`` and ``agentroute eval`` in a subprocess, and from ``Router.fit``
and ``evaluate`` in Python — and nothing at all when progress is off (``AGENTROUTE_PROGRESS=0``,
``evaluate(progress=False)``). Also: ``ResponseConfidence.save`` leaves the previous save loadable
when it fails half-way."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from agentroute.eval.datasets import load_dataset
from agentroute.eval.harness import evaluate
from agentroute.routers import make_router

pytest.importorskip("torch")

# a drawn tqdm bar: "desc:  40%|████      | 2/5 [00:01<00:01, 1.9epoch/s, loss 0.6109, val 0.7666]"
# (a slow one: "3.43s/epoch")
BAR = re.compile(r"(?P<desc>[^\r\n]*?): +\d+%\|[^|]*\| (?P<n>\d+)/(?P<total>\d+) \[[^,\]]*, (?P<rate>[^,\]]*)(?:, (?P<post>[^\]]*))?\]")
SMALL = {  # each router's fit in a few epochs (or steps)
    "mlp": ({"epochs": 3}, "mlp: training on", "epoch", 3),
    "mf": ({"epochs": 3}, "mf: training on", "epoch", 3),
    "graph-router": ({"epochs": 10}, "graph-router: training", "step", 10),
    "kg-gnn": ({"epochs": 2}, "kg-gnn: training on", "epoch", 2),
    "bopo": ({"config": {"sft_epochs": 2, "iterations": 3}}, "bopo: Bo", "step", 5),
}


def _bars(text: str) -> list[re.Match[str]]:
    return list(BAR.finditer(text.replace("\r", "\n")))


def _assert_fit_bar(text: str, router: str) -> None:
    """A bar of ``router``'s fit was drawn, counting its epochs (or steps), with the loss."""
    _, desc, unit, total = SMALL[router]
    mine = [m for m in _bars(text) if m["desc"].strip().startswith(desc)]
    assert mine, f"no {router} fit bar in {text[-3000:]!r}"
    assert {int(m["total"]) for m in mine} == {total}
    assert all(m["rate"].endswith((f"{unit}/s", f"s/{unit}")) for m in mine), mine[-1].group(0)
    assert any(int(m["n"]) >= 1 and (m["post"] or "").startswith("loss ") for m in mine), mine[-1].group(0)


def _assert_silent(text: str) -> None:
    assert "%|" not in text and "/s]" not in text and "epoch" not in text, text[-3000:]


@pytest.fixture(scope="module")
def small(data_dir):
    return load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=40)


class _Terminal(io.StringIO):
    """stderr as a terminal (bars show by default)."""

    def isatty(self) -> bool:
        return True


def _on_a_terminal(monkeypatch) -> _Terminal:
    """stderr a terminal, progress left to its default. Called in the test's body: pytest's
    capture puts its own ``sys.stderr`` back between a fixture's setup and the test."""
    monkeypatch.delenv("AGENTROUTE_PROGRESS", raising=False)
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    return err


# -- Python: Router.fit and evaluate ---------------------------------------------------------------
@pytest.mark.parametrize("router", list(SMALL))
def test_a_fit_draws_one_bar_with_its_epochs_and_loss_on_a_terminal_and_none_when_off(router, small, monkeypatch):
    params = SMALL[router][0]
    terminal = _on_a_terminal(monkeypatch)
    make_router(router, seed=0, **params).fit(small)
    _assert_fit_bar(terminal.getvalue(), router)

    monkeypatch.setenv("AGENTROUTE_PROGRESS", "0")
    terminal.seek(0)
    terminal.truncate()
    make_router(router, seed=0, **params).fit(small)
    assert terminal.getvalue() == ""


def test_evaluate_progress_false_silences_the_fits_inside_it_on_a_terminal(small, monkeypatch):
    terminal = _on_a_terminal(monkeypatch)
    evaluate(small, ["mlp:epochs=3"], peers=False, n_boot=0, progress=True)
    _assert_fit_bar(terminal.getvalue(), "mlp")
    terminal.seek(0)
    terminal.truncate()
    evaluate(small, ["mlp:epochs=3", "graph-router:epochs=10"], peers=False, n_boot=0, progress=False)
    assert terminal.getvalue() == ""


# -- the CLI, in a subprocess ----------------------------------------------------------------------
def _env(progress: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTROUTE_PROGRESS"}
    if progress is not None:
        env["AGENTROUTE_PROGRESS"] = progress
    return env


def test_cli_eval_draws_each_fit_bar_on_stderr_when_asked_and_nothing_when_off(tmp_path, data_dir):
    routers = ["kg-gnn", "graph-router", "mlp", "mf"]
    specs = ",".join(f"{r}:{k}={v}" for r in routers for k, v in SMALL[r][0].items())
    command = [sys.executable, "-m", "agentroute", "eval", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
               "--limit", "40", "--routers", specs, "--no-peers", "--boot", "0", "--json"]  # fmt: skip
    runs = {}  # both at once (CI's second core), their output in files (a full pipe would stall one)
    for progress in ("1", "0"):
        with open(tmp_path / f"{progress}.out", "w") as out, open(tmp_path / f"{progress}.err", "w") as err:
            runs[progress] = subprocess.Popen(command + ["--out", str(tmp_path / progress)], stdout=out, stderr=err,
                                              env=_env(progress))  # fmt: skip
    for proc in runs.values():
        proc.wait(timeout=600)
    for progress, proc in runs.items():
        stdout, stderr = ((tmp_path / f"{progress}.{name}").read_text() for name in ("out", "err"))
        assert proc.returncode == 0, stderr[-3000:]
        names = {r["name"].split(":")[0] for r in json.loads(stdout)["routers"]}  # stdout stays clean
        assert names >= set(routers)
        if progress == "1":
            for router in routers:
                _assert_fit_bar(stderr, router)
        else:
            _assert_silent(stderr)


def _start_on_a_terminal(command: list[str], env: dict[str, str]) -> Callable[[], tuple[int, str]]:
    """Start ``command`` with its stderr a pseudo-terminal (as in a shell); the function returned
    waits for it: (exit code, what it drew)."""
    master, slave = pty.openpty()
    # a terminal's size: tqdm draws nothing on one of 0 rows
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    finally:
        os.close(slave)

    def finish() -> tuple[int, str]:
        try:
            proc.wait(timeout=600)
        finally:
            reader.join(timeout=10)
            os.close(master)
        return proc.returncode, b"".join(chunks).decode(errors="replace")

    return finish


def test_cli_train_draws_the_bopo_bar_on_a_terminal_and_nothing_when_disabled(tmp_path, data_dir):
    recipe = tmp_path / "bopo.yaml"
    recipe.write_text("params:\n  config:\n    sft_epochs: 2\n    iterations: 3\n")
    command = [sys.executable, "-m", "agentroute", "train", "bopo", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
               "--limit", "40", "--config", str(recipe)]  # fmt: skip
    on = _start_on_a_terminal(command + ["--out", str(tmp_path / "on")], _env(None))  # both at once: CI's second core
    off = _start_on_a_terminal(command + ["--out", str(tmp_path / "off")], _env("0"))
    (code, drawn), (off_code, off_drawn) = on(), off()
    assert code == 0, drawn[-3000:]
    _assert_fit_bar(drawn, "bopo")
    assert off_code == 0, off_drawn[-3000:]
    _assert_silent(off_drawn)
    assert (tmp_path / "off" / "router.json").exists()


# -- ResponseConfidence.save -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def scorers(small):
    from agentroute.routers.confidence import ResponseConfidence

    return [ResponseConfidence(c=c, max_samples=150, seed=0).fit(small.train) for c in (1.0, 0.01)]


def _head(scorer) -> dict[str, np.ndarray]:
    return scorer.head_.to_arrays("head.")


@pytest.mark.parametrize("fails", ["arrays", "manifest"])
def test_a_confidence_save_that_fails_half_way_leaves_the_previous_save_loadable(tmp_path, scorers, monkeypatch, fails):
    from agentroute.routers.confidence import ResponseConfidence

    before, after = scorers
    assert not np.allclose(_head(before)["head.weight"], _head(after)["head.weight"])
    before.save(tmp_path)

    def half_written(file, *args, **kwargs):
        out = open(file, "wb") if isinstance(file, str | Path) else file  # noqa: SIM115
        out.write(b"PK\x03\x04 half an archive")
        out.flush()
        raise OSError(28, "No space left on device")

    def no_space(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    if fails == "arrays":
        monkeypatch.setattr(np, "savez", half_written)
    else:
        monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(OSError, match="No space"):
        after.save(tmp_path)
    monkeypatch.undo()

    again = ResponseConfidence.load(tmp_path)
    assert again.c == before.c and again.columns_ == before.columns_
    for key, value in _head(before).items():
        np.testing.assert_array_equal(_head(again)[key], value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confidence.json", "confidence.npz"]
