"""BoPO training interrupted and resumed: the kept state resumes to the policy an uninterrupted run
trains; `agentroute train bopo` stopped by SIGTERM or Ctrl-C keeps it and the same command resumes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")

from agentroute.errors import ConfigurationError  # noqa: E402
from agentroute.training import BoPOConfig, BoPOTrainer  # noqa: E402
from agentroute.training.rewards import boundary_reward  # noqa: E402

CONFIG = BoPOConfig(steps=2, tiers=("mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview"), variants=2, boundary_rollouts=2,
                    sweep=2, sft_epochs=3, iterations=6, tasks_per_iteration=6, group_size=2, emb_proj=8, hidden=8)


def embed(texts: list[str]) -> np.ndarray:
    """A fixed embedding of each text (its bytes' histogram): fast, and the same in every run."""
    return np.stack([np.bincount(np.frombuffer(t.encode(), np.uint8) % 16, minlength=16) for t in texts]).astype(np.float32)


class StopAt:
    """BoPO's reward, with a Ctrl-C at its ``n``-th call (mid-iteration), as a user's Ctrl-C lands."""

    def __init__(self, n: int | None):
        self.n, self.calls = n, 0

    def __call__(self, **kwargs):  # noqa: ANN003, ANN204
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return boundary_reward(**kwargs)


@pytest.fixture(scope="module")
def table(data_dir: Path):
    from agentroute.eval.datasets import load_dataset
    from agentroute.outcomes import as_outcome_table

    return as_outcome_table(load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=60).train)


def _trainer(config: BoPOConfig = CONFIG, stop: int | None = None) -> BoPOTrainer:
    return BoPOTrainer(config, reward_funcs=[StopAt(stop)], embed=embed)


def _weights(result) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in result.policy.state_dict().items()}


def test_a_resumed_run_trains_the_policy_an_uninterrupted_run_trains(tmp_path: Path, table) -> None:
    straight = _trainer().train(table)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        _trainer(stop=8).train(table, checkpoint=checkpoint)  # in the 4th iteration (reward + reference rewards per one)
    from agentroute.training.checkpoint import checkpoint_done

    done = checkpoint_done(checkpoint)
    assert done is not None and done.endswith(" BoPO iterations") and 0 < int(done.split()[0]) < 6
    resumed = _trainer().train(table, checkpoint=checkpoint)
    assert resumed.report["bopo"]["iterations"] == straight.report["bopo"]["iterations"]
    for name, value in _weights(straight).items():
        np.testing.assert_array_equal(_weights(resumed)[name], value, err_msg=name)


def test_a_stop_right_after_the_warm_up_keeps_the_warm_up(tmp_path: Path, table) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    from agentroute.training.checkpoint import checkpoint_done

    with pytest.raises(KeyboardInterrupt):
        _trainer(stop=1).train(table, checkpoint=checkpoint)  # the first BoPO rollout's reward: the warm-up is done
    assert checkpoint_done(checkpoint) == "0 BoPO iterations"
    assert _trainer().train(table, checkpoint=checkpoint).report["sft"]["final_loss"] == _trainer().train(table).report["sft"]["final_loss"]


def test_a_checkpoint_of_another_config_or_past_the_iterations_is_refused(tmp_path: Path, table) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    _trainer().train(table, checkpoint=checkpoint)
    with pytest.raises(ConfigurationError, match="a checkpoint of another training run"):
        _trainer(CONFIG.replace(lr=1e-3)).train(table, checkpoint=checkpoint)
    with pytest.raises(ConfigurationError, match="after 6 BoPO iterations, more than the 4 asked for"):
        _trainer(CONFIG.replace(iterations=4)).train(table, checkpoint=checkpoint)
    more = _trainer(CONFIG.replace(iterations=8)).train(table, checkpoint=checkpoint)  # more iterations go on from it
    assert len(more.report["bopo"]["iterations"]) == 8


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


class _Stderr:
    """A process's standard error, read as it comes (a bar's updates end in a carriage return, not a line)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(proc.stderr.fileno(),), daemon=True)
        self._thread.start()

    def _read(self, fd: int) -> None:
        while chunk := os.read(fd, 65536):
            self._chunks.append(chunk)

    def steps(self) -> int:
        """The most steps its bar has counted so far (``3/100002 [``)."""
        return max((int(n) for n in re.findall(r"(\d+)/\d+ \[", self.text())), default=0)

    def text(self, *, ended: bool = False) -> str:
        """What came so far; ``ended``: all of it (read to its end, the process having ended)."""
        if ended:
            self._thread.join(timeout=30)
        return b"".join(self._chunks).decode(errors="replace")


STOPS = [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]  # (signal, exit code, word)


def test_the_cli_keeps_a_checkpoint_on_a_stop_and_the_same_command_resumes(tmp_path: Path, data_dir: Path) -> None:
    """Was: no checkpoint — a stopped `train bopo` said "nothing was saved" (SIGTERM: died with -15) and started over.
    A SIGTERM'd and a Ctrl-C'd run side by side (CI's second core), each resumed by its same command."""
    from agentroute.loading import load_router
    from agentroute.routers.bopo import BoPORouter
    from agentroute.training.checkpoint import checkpoint_done

    recipe = yaml.safe_load((Path(__file__).parents[1] / "training" / "bopo.yaml").read_text())
    recipe["params"]["config"].update(iterations=100000, tasks_per_iteration=8, group_size=2, sft_epochs=2,
                                      boundary_rollouts=2, sweep=2, hidden=8, emb_proj=8)
    runs = []  # (folder, command, process) per stop
    for _, _, word in STOPS:
        folder = tmp_path / word
        folder.mkdir()
        (folder / "bopo.yaml").write_text(yaml.safe_dump(recipe))
        command = [sys.executable, "-m", "agentroute", "train", "bopo", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
                   "--config", str(folder / "bopo.yaml"), "--limit", "40", "--out", str(folder / "bopo")]
        runs.append((folder, command, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                       env={**ENV, "AGENTROUTE_PROGRESS": "1"}, cwd=folder)))
    readers = [_Stderr(proc) for _, _, proc in runs]
    try:
        deadline = time.monotonic() + 300
        # its bar counts the BoSFT epochs, then the BoPO iterations: stopped once one iteration is
        # done (was a fixed 1 s after the warm-up's checkpoint: on a loaded machine, no iteration yet)
        for (_, _, proc), reader in zip(runs, readers, strict=True):
            while reader.steps() <= recipe["params"]["config"]["sft_epochs"]:
                assert proc.poll() is None and time.monotonic() < deadline, reader.text()
                time.sleep(0.05)
        for (signum, _, _), (_, _, proc) in zip(STOPS, runs, strict=True):
            proc.send_signal(signum)
        for _, _, proc in runs:
            proc.wait(timeout=120)
        errors = [reader.text(ended=True) for reader in readers]
    finally:
        for _, _, proc in runs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    resumes = []
    for (_, code, word), (folder, command, proc), err in zip(STOPS, runs, errors, strict=True):
        out = folder / "bopo"
        assert proc.returncode == code, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"{word}: --out {out}: a checkpoint after ") and last.endswith("rerun the same command to resume"), err
        done = checkpoint_done(out / "checkpoint.pt")
        assert done is not None and done.endswith(" BoPO iterations")
        iterations = int(done.split()[0])
        assert iterations > 0, done  # written by the stop, not the warm-up's checkpoint
        recipe["params"]["config"]["iterations"] = iterations + 2
        (folder / "bopo.yaml").write_text(yaml.safe_dump(recipe))
        resumes.append((out, iterations, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                          env=ENV, cwd=folder)))
    finished = [(out, iterations, proc.communicate(timeout=300), proc.returncode) for out, iterations, proc in resumes]
    for out, iterations, (stdout, stderr), returncode in finished:
        assert returncode == 0, stderr
        assert f"resuming from {out / 'checkpoint.pt'} ({iterations} BoPO iterations done)" in stdout.replace("\n", "")
        assert not (out / "checkpoint.pt").exists()
        router = load_router(out)
        assert isinstance(router, BoPORouter) and router.config_.iterations == iterations + 2


@pytest.mark.parametrize("router", ["bopo", "graph-planner"])
def test_resume_given_to_a_trainer_that_resumes_by_itself_says_so(tmp_path: Path, router: str) -> None:
    """Was: "--resume: for `train router-r1` only, not bopo" — as if bopo could not resume at all."""
    done = subprocess.run([sys.executable, "-m", "agentroute", "train", router, "--dataset", "routerbench", "--resume",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"--resume is for `train router-r1`: {router} resumes by itself; rerun the same command without it" in done.stderr.replace("\n", " ")
