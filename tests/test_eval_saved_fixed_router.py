"""``agentroute eval --routers DIR`` with a saved ``fixed`` router whose model the dataset lacks is
refused naming the dataset's models, as ``--routers fixed:model=ID`` is — not "not in the pool"
(an eval has no pool). The CLI in-process through Typer's runner; a real saved router, a real file.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from agentroute import make_router
from agentroute.cli.app import app


def test_eval_names_the_dataset_for_a_saved_fixed_router(tmp_path: Path) -> None:
    (tmp_path / "logs.jsonl").write_text("".join(
        f'{{"query_id": "q{i}", "query": "question {i}", "agent": "{agent}", "score": 1, "cost_usd": 0.01}}\n'
        for i in range(10) for agent in ("small", "large")
    ))  # fmt: skip
    make_router("fixed", model="smal").save(tmp_path / "fixed")
    done = CliRunner().invoke(app, ["eval", "--dataset", f"outcomes:{tmp_path / 'logs.jsonl'}", "--routers",
                                    f"cheapest,{tmp_path / 'fixed'}", "--no-peers", "--boot", "0", "--out", str(tmp_path / "out")])  # fmt: skip
    assert done.exit_code == 2, done.output
    # was: "... is not in the pool (did you mean 'small'?) ..."
    assert done.stderr.strip() == "error: fixed: model 'smal' is not in the dataset (did you mean 'small'?); its models: large, small"
