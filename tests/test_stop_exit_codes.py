"""Every command a signal stops exits as a shell reports it — 130 for a Ctrl-C, 143 for a SIGTERM — with
one line, from one rule (``agentroute.cli.stopped_exit_code`` / ``exit_interrupted``): ``agentroute
train`` stopped while it reads its data (before training starts), ``agentroute run`` mid-batch, and a
SIGTERM's stop reaching a command's generic Ctrl-C handler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_signals import signal_after_import

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
WORD = {signal.SIGTERM: "terminated", signal.SIGINT: "interrupted"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("router", ["graph-planner", "bopo"])
def test_train_stopped_while_it_reads_its_data_exits_128_plus_the_signal(tmp_path: Path, data_dir: Path, router: str, sig: int) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "agentroute", "train", router, "--dataset", f"routerbench:{data_dir / 'routerbench'}",
               "--out", str(out)] + (["--no-progress"] if router == "graph-planner" else [])
    code, said = signal_after_import(command, "agentroute.eval.datasets", sig, cwd=tmp_path, env=ENV)
    assert code == 128 + sig, said
    assert said == [f"{WORD[sig]}: --out {out}: nothing was saved"], said
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_agentroute_run_stopped_mid_batch_exits_128_plus_the_signal(tmp_path: Path, sig: int) -> None:
    from tests.test_batch_server import GRAPH_PY, StubOpenAIServer, pool_yaml

    with StubOpenAIServer(delay_s=0.3) as server:
        (tmp_path / "pool.yaml").write_text(pool_yaml(server.url))
        (tmp_path / "graph.py").write_text(GRAPH_PY)
        (tmp_path / "in.jsonl").write_text("".join(json.dumps({"query": f"question {i}?", "query_id": f"q{i}"}) + "\n" for i in range(40)))
        out = tmp_path / "out.jsonl"
        proc = subprocess.Popen([sys.executable, "-m", "agentroute", "run", str(tmp_path / "graph.py"), "--input",
                                 str(tmp_path / "in.jsonl"), "--pool", str(tmp_path / "pool.yaml"), "--memory",
                                 f"sqlite:///{tmp_path}/memory.db", "--out", str(out), "--concurrency", "2", "--grace-s", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=tmp_path)
        deadline = time.monotonic() + 120
        while not (out.is_file() and out.read_text().count("\n") >= 1):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.05)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, output
    assert f"stopped by {signal.Signals(sig).name}" in output, output


def test_a_sigterms_stop_met_by_a_generic_ctrl_c_handler_exits_143() -> None:
    """Was: 130 and ``interrupted`` — ``exit_interrupted`` knew only Ctrl-C, so a SIGTERM's stop caught by a
    command's plain ``except KeyboardInterrupt`` (``agentroute train``'s, the command's last one) said
    it was a Ctrl-C."""
    code = ("from agentroute.cli import exit_interrupted\nfrom agentroute.training.stopping import Terminated\n"
            "try:\n    raise Terminated()\nexcept KeyboardInterrupt:\n    exit_interrupted()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert (done.returncode, done.stderr) == (143, "terminated\n")
    done = subprocess.run([sys.executable, "-c", code.replace("Terminated()", "KeyboardInterrupt()")], capture_output=True,
                          text=True, env=ENV, timeout=120)
    assert (done.returncode, done.stderr) == (130, "interrupted\n")


def test_a_second_sigterm_while_train_says_what_it_kept_still_exits_143(tmp_path: Path, data_dir: Path) -> None:
    """Was: killed by the second signal (-15) while it printed or exited — sometimes before its line —
    though the checkpoint was whole (a process group's SIGTERM and a supervisor's, say)."""
    import yaml

    from agentroute.training.checkpoint import checkpoint_done

    recipe = yaml.safe_load((Path(__file__).parents[1] / "training" / "bopo.yaml").read_text())
    recipe["params"]["config"].update(iterations=100000, tasks_per_iteration=8, group_size=2, sft_epochs=2,
                                      boundary_rollouts=2, sweep=2, hidden=8, emb_proj=8)
    (tmp_path / "bopo.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "agentroute", "train", "bopo", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
                             "--config", str(tmp_path / "bopo.yaml"), "--limit", "40", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.pt").is_file():  # the warm-up is done
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    said = proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)  # while it exits
    proc.wait(timeout=120)
    assert proc.returncode == 143, said
    assert said.startswith(f"terminated: --out {out}: a checkpoint after "), said
    assert (checkpoint_done(out / "checkpoint.pt") or "").endswith(" BoPO iterations")
