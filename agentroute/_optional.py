"""Import optional dependencies lazily, naming the extra that provides them."""

from __future__ import annotations

import importlib
from types import ModuleType

from agentroute.errors import MissingDependencyError

_EXTRA_OF = {
    "torch": "ml",
    "transformers": "ml",
    "gguf": "ml",
    "sentence_transformers": "ml",
    "torch_geometric": "ml",
    "sklearn": "ml",
    "litellm": "litellm",
    "psycopg": "postgres",
    "pandas": "eval",
    "pyarrow": "eval",
    "matplotlib": "eval",
    "trl": "train",
    "datasets": "train",
    "fastapi": "serve",
    "uvicorn": "serve",
    "vllm": "gpu",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming its extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependencyError(top, _EXTRA_OF.get(top, "all")) from exc


_THREADS_SET = False


def torch_module() -> ModuleType:
    """Import torch with one intra-op thread per process (10–40× faster than two under load here)."""
    global _THREADS_SET
    torch = require("torch")
    if not _THREADS_SET:
        import os

        torch.set_num_threads(int(os.environ.get("AGENTROUTE_TORCH_THREADS", "1")))
        _THREADS_SET = True
    return torch
