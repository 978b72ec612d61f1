"""A column named exactly as the ``outcomes`` format names it is read over one that only reads as
it (or as its role's other name) once case and blanks are ignored: a file that loaded before the
names were read loosely still loads the same."""

from __future__ import annotations

from pathlib import Path

from agentroute.eval.datasets import load_outcomes


def _logs(path: Path, header: str, extra: dict[str, str]) -> Path:
    """Two models on four queries (two test), with ``extra`` (model → a value) in the second column."""
    lines = [header]
    for i in range(4):
        split = "test" if i < 2 else "train"
        lines += [f"q{i},{extra['gpt-4o-mini']},gpt-4o-mini,{i % 2},0.001,{split}", f"q{i},{extra['gpt-4o']},gpt-4o,1,0.01,{split}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_exact_model_column_is_read_beside_a_display_name_column(tmp_path: Path) -> None:
    """Before: 'model' and 'Model ' (a display name) both read as 'model', and the file was refused."""
    names = {"gpt-4o-mini": "GPT-4o mini", "gpt-4o": "GPT-4o"}
    data = load_outcomes(_logs(tmp_path / "logs.csv", "query,Model ,model,score,cost_usd,split", names))
    assert data.models == ["gpt-4o-mini", "gpt-4o"]
    assert data.test.scores.tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_an_exact_model_column_is_read_beside_an_agent_column_in_another_case(tmp_path: Path) -> None:
    """Before: 'Agent' (here the app's name, one value) read as 'agent', which wins over 'model':
    the file, which loaded on 'model' before names were read loosely, was read as one agent."""
    app = {"gpt-4o-mini": "support-bot", "gpt-4o": "support-bot"}
    assert load_outcomes(_logs(tmp_path / "logs.csv", "query,Agent,model,score,cost_usd,split", app)).models == ["gpt-4o-mini", "gpt-4o"]
