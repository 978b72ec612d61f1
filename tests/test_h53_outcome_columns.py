"""A column named exactly as the ``outcomes`` format names it is read over one that only reads as
it once case and blanks are ignored: a file that loaded before the names were read loosely still
loads the same."""

from __future__ import annotations

from pathlib import Path

from agentroute.eval.datasets import load_outcomes


def test_an_exact_model_column_is_read_beside_a_display_name_column(tmp_path: Path) -> None:
    """Before: 'model' and 'Model ' (a display name) both read as 'model', and the file was refused."""
    lines = ["query,model,Model ,score,cost_usd,split"]
    for i in range(4):
        lines += [f"q{i},gpt-4o-mini,GPT-4o mini,{i % 2},0.001,{'test' if i < 2 else 'train'}",
                  f"q{i},gpt-4o,GPT-4o,1,0.01,{'test' if i < 2 else 'train'}"]  # fmt: skip
    path = tmp_path / "logs.csv"
    path.write_text("\n".join(lines) + "\n")
    data = load_outcomes(path)
    assert data.models == ["gpt-4o-mini", "gpt-4o"]
    assert data.test.scores.tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_an_exact_model_column_is_read_beside_an_agent_column_in_another_case(tmp_path: Path) -> None:
    """Before: 'Agent' (here the app's name, one value) read as 'agent', which wins over 'model':
    the file, which loaded on 'model' before names were read loosely, was read as one agent."""
    lines = ["query,Agent,model,score,cost_usd,split"]
    for i in range(4):
        lines += [f"q{i},support-bot,gpt-4o-mini,{i % 2},0.001,{'test' if i < 2 else 'train'}",
                  f"q{i},support-bot,gpt-4o,1,0.01,{'test' if i < 2 else 'train'}"]  # fmt: skip
    path = tmp_path / "logs.csv"
    path.write_text("\n".join(lines) + "\n")
    assert load_outcomes(path).models == ["gpt-4o-mini", "gpt-4o"]
