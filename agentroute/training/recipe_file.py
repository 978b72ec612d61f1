"""A training recipe file read as the ``train`` command reads its recipes: untrusted YAML, YAML 1.2
numbers (``lr: 2e-3`` is a number, not the text PyYAML's ``safe_load`` makes of it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentroute._yaml import load_untrusted_yaml, read_untrusted_text


def read_recipe_file(path: str | Path) -> Any:
    """The document in ``path`` (``{}`` when empty); a :class:`~agentroute.errors.ConfigurationError`
    naming the file (and the line) when it is missing, not text or not YAML."""
    text = read_untrusted_text(Path(path), "recipe")
    _, data = load_untrusted_yaml(text, f"recipe {path}")
    return {} if data is None else data
