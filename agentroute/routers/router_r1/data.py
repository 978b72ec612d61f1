"""HotpotQA questions for Router-R1 (``$AGENTROUTE_DATA/hotpotqa``), split into train / held-out."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agentroute.errors import ConfigurationError


def data_root() -> Path:
    env = os.environ.get("AGENTROUTE_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[3]  # the checkout: ../shared/data beside it
    for candidate in (here.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return here.parent / "shared" / "data"


def load_hotpotqa(path: str | Path | None = None) -> list[dict[str, Any]]:
    """``[{"id", "question", "answer"}]`` in file order (HippoRAG v1 format)."""
    file = Path(path) if path else data_root() / "hotpotqa" / "hotpotqa_train.json"
    if file.is_dir():
        file = file / "hotpotqa_train.json"
    if not file.is_file():
        raise ConfigurationError(f"HotpotQA not found at {file}; set AGENTROUTE_DATA")
    rows = json.loads(file.read_text())
    return [{"id": r["_id"], "question": r["question"], "answer": r["answer"]} for r in rows]


def split(rows: list[dict[str, Any]], train: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first ``train`` rows train (SFT traces, GRPO prompts); the rest are held out.

    >>> split([{"q": i} for i in range(5)], 3)[1]
    [{'q': 3}, {'q': 4}]
    """
    if not 0 <= train <= len(rows):
        raise ConfigurationError(f"train ({train}) must be between 0 and the {len(rows)} questions")
    return rows[:train], rows[train:]
