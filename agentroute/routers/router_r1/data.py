"""HotpotQA questions for Router-R1 (``$AGENTROUTE_DATA/hotpotqa``), split into train / held-out."""

from __future__ import annotations

import json
import math
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
    """``[{"id", "question", "answer"}]`` in file order: HotpotQA (HippoRAG v1 format), or your own
    questions — a JSON list or JSON Lines of objects with ``question`` (a non-blank text) and
    ``answer`` (a text or a number, read as its text) and optionally ``_id`` or ``id`` (else the row
    number; ids are unique)."""
    file = Path(path) if path else data_root() / "hotpotqa" / "hotpotqa_train.json"
    if file.is_dir():
        file = file / "hotpotqa_train.json"
    if not file.is_file():
        raise ConfigurationError(f"questions not found at {file}" + ("" if path else "; set AGENTROUTE_DATA"))
    rows = [_question(file, i, row) for i, row in enumerate(_read_rows(file))]
    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        seen = first.setdefault(row["id"], i)
        if seen != i:  # the id keys the question's tasks in memory (query_id): two questions, one id
            raise ConfigurationError(
                f"{file}: question {i} has the id {row['id']!r} of question {seen}; ids must be unique"
            )
    return rows


def _read_rows(file: Path) -> list[Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigurationError(
            f"{file}: line {line} is not UTF-8 text (byte {exc.object[exc.start]:#04x}); "
            "save the file as UTF-8"
        ) from None
    try:
        rows = json.loads(text)
    except json.JSONDecodeError:
        try:  # JSON Lines
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{file}: neither JSON nor JSON Lines ({exc})") from None
    if isinstance(rows, dict) and "question" in rows:  # JSON Lines of one question
        rows = [rows]
    if not isinstance(rows, list):
        raise ConfigurationError(f"{file}: expected a list of questions (got a {type(rows).__name__})")
    return rows


def _question(file: Path, i: int, row: Any) -> dict[str, Any]:
    answer = row.get("answer") if isinstance(row, dict) else None
    if isinstance(answer, int | float) and not isinstance(answer, bool) and math.isfinite(answer):
        answer = str(answer)  # a gold answer that is a number (1920) is its text
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(answer, str):
        raise ConfigurationError(
            f"{file}: question {i} must be an object with 'question' and 'answer' texts; got {str(row)[:120]}"
        )
    if not row["question"].strip():
        raise ConfigurationError(f"{file}: question {i} is empty; got {str(row)[:120]}")
    return {"id": str(row.get("_id", row.get("id", i))), "question": row["question"], "answer": answer}


def split(rows: list[dict[str, Any]], train: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first ``train`` rows train (SFT traces, GRPO prompts); the rest are held out.

    >>> split([{"q": i} for i in range(5)], 3)[1]
    [{'q': 3}, {'q': 4}]
    """
    if not 0 <= train <= len(rows):
        raise ConfigurationError(
            f"data: 'train' ({train}) must be between 0 and the {len(rows)} questions there are"
        )
    return rows[:train], rows[train:]
