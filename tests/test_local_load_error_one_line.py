"""A local model that transformers cannot load is refused in one line that keeps transformers' cause.

Was: ``agentroute ask --pool`` with such a model printed ``error: could not load local model '…':
Couldn't instantiate the backend tokenizer from one of:`` and five more lines of transformers' message.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentroute.cli import app

pytestmark = pytest.mark.skipif(  # not imported to collect: seconds
    not all(importlib.util.find_spec(m) for m in ("transformers", "torch")), reason="needs the [ml] extra"
)


def test_a_model_transformers_cannot_load_is_one_line_on_the_command_line(tmp_path: Path, monkeypatch) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "no-such-model"}')  # no tokenizer files either
    (tmp_path / "pool.yaml").write_text(
        f"models:\n  - {{id: tiny, backend: local, model: {model}, input_price: 0.1, output_price: 0.1}}\n"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing is fetched: the folder is all there is
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["ask", "hi", "--pool", "pool.yaml", "--memory", f"sqlite:///{tmp_path / 'm.db'}"])
    assert done.exit_code == 2, done.output
    errors = [line for line in done.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.output
    (line,) = errors
    assert line.startswith(f"error: could not load local model '{model}': "), done.output
    assert "tokenizer" in line and "sentencepiece" in line, done.output  # the cause, all of it, on that line
    assert done.output.rstrip().endswith(line.rstrip()), done.output  # nothing after it
