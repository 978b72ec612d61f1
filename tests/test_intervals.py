"""Bootstrap intervals from too few resamples are refused: a 90% interval needs each 5% tail to
hold a draw (20 resamples); with fewer its bounds are the extreme draws, and 1 resample gave a
zero-width interval beside the difference — 'better than zero' from a single draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.errors import ConfigurationError
from agentroute.eval import metrics as M
from agentroute.eval.datasets import load_outcomes
from agentroute.eval.harness import evaluate


def _outcomes(n: int = 200) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Two models' random outcomes and a router's five sweep points picking between them at random."""
    rng = np.random.default_rng(0)
    scores, costs = rng.random((n, 2)).round(), np.tile([1.0, 3.0], (n, 1))
    pick = rng.integers(0, 2, (5, n))
    return (scores[np.arange(n), pick], costs[np.arange(n), pick]), (scores, costs)


@pytest.mark.parametrize(("n_boot", "level"), [(1, 0.9), (19, 0.9), (39, 0.95)])
def test_too_few_resamples_for_the_level_are_refused(n_boot: int, level: float) -> None:
    router, single = _outcomes()
    with pytest.raises(ConfigurationError, match=f"n_boot {n_boot} is too few"):
        M.bootstrap_aiq_difference(router, None, single, n_boot=n_boot, level=level)


def test_the_fewest_resamples_that_fill_each_tail_give_an_interval_around_the_draws() -> None:
    router, single = _outcomes()
    assert [M.min_resamples(level) for level in (0.9, 0.95, 0.8, np.float32(0.8), 0.85)] == [20, 40, 10, 10, 14]
    d, low, high = M.bootstrap_aiq_difference(router, None, single, n_boot=20)
    assert low < high
    assert M.bootstrap_aiq_difference(router, router, single, n_boot=20) == (0.0, 0.0, 0.0)  # a router against itself


def test_eval_refuses_too_few_resamples_before_running_a_router(tmp_path: Path) -> None:
    rows = ["query,model,score,cost_usd,split"]
    rows += [f"q{i},{m},{(i + j) % 2},{1 + 2 * j},{'test' if i < 4 else 'train'}" for i in range(8) for j, m in enumerate(["a", "b"])]
    path = tmp_path / "logs.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ConfigurationError, match="at least 20"):
        evaluate(load_outcomes(path), "cheapest", peers=False, progress=False, n_boot=5)
    result = CliRunner().invoke(app, ["eval", "--dataset", str(path), "--routers", "cheapest", "--boot", "5"])
    assert result.exit_code == 2 and "n_boot 5 is too few" in result.output, result.output
