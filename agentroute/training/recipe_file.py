"""One reader for every training recipe (``train ROUTER --config``, ``train router-r1``,
``BoPOConfig.from_yaml``): ``$VARS`` expanded from the environment, then untrusted YAML with YAML
1.2 numbers (``lr: 2e-3`` is a number, not the text PyYAML's ``safe_load`` makes of it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentroute._yaml import load_untrusted_yaml, read_untrusted_text


def load_recipe_yaml(path: str | Path, source: object = None) -> tuple[Any, Any]:
    """(the root node, the document) of the recipe at ``path``, ``$VARS`` and ``${VARS}`` expanded
    from the environment (an unset one is left as written); errors name ``source`` (default
    ``recipe PATH``) and the line."""
    text = read_untrusted_text(Path(path), "recipe")
    return load_untrusted_yaml(os.path.expandvars(text), f"recipe {path}" if source is None else source)


def read_recipe_file(path: str | Path) -> Any:
    """The document in ``path`` (``{}`` when empty; :func:`load_recipe_yaml`); a
    :class:`~agentroute.errors.ConfigurationError` naming the file (and the line) when it is
    missing, not text or not YAML."""
    _, data = load_recipe_yaml(path)
    return {} if data is None else data
