"""The agentroute exception tree.

``AgentrouteError`` is the root of everything the SDK raises on purpose:

- ``ConfigurationError`` — the developer's mistake, found before anything runs (bad YAML, an
  unknown model or router name, a zero or negative budget, an illegal graph edge).
  ``UnknownNameError`` narrows it to a name that is not registered and lists the ones that are.
- ``MissingDependencyError`` — an optional dependency is not installed; names the extra to install.
- ``BudgetExceededError(limit, spent)`` — a call would go over the task's budget. The dispatcher
  catches it and ends the task ``budget_exhausted``; it reaches user code only from the Ledger API.
- ``BackendError`` — a model call failed after its retries (unreachable endpoint, timeout, bad reply).
- ``ContextLengthError`` — the prompt and ``max_tokens`` do not fit the model's context window:
  refused before it ran (a call, $0), the step falls over to another model.
- ``ProtocolError`` — a backend reply broke the protocol (negative, NaN or absurd usage, garbage
  JSON): the attempt is charged its worst case, audited, and the endpoint is avoided for the task.
- ``NotFittedError`` — a learned router was asked to route before ``fit``/``load``.
- ``StateFileError`` — a saved router state is missing, corrupted or incompatible (names the file).
- ``DatasetError`` — a logged-outcome dataset path is missing or lacks the expected files.
"""

from __future__ import annotations

from typing import Any


def _rebuilt(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any] | None) -> BaseException:
    """An error of ``cls`` with ``args`` and the attributes in ``state``, its ``__init__`` not called."""
    error = cls.__new__(cls, *args)
    error.args = args
    if state:
        error.__dict__.update(state)
    return error


class AgentrouteError(Exception):
    """Root of all agentroute errors.

    Every agentroute error pickles with its fields (``limit``, ``model``, ``retryable``…), whatever
    its ``__init__`` takes: a worker process (``multiprocessing``, ``ProcessPoolExecutor``, Ray)
    hands it to its parent as it was raised. ``pickle`` would otherwise call ``cls(*args)`` with the
    one formatted message, which fails for every error whose ``__init__`` takes its fields.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuilt, (type(self), self.args, dict(self.__dict__) or None))


class ConfigurationError(AgentrouteError, ValueError):
    """A configuration or argument is invalid; raised before anything runs."""


def did_you_mean(name: str, names: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'knn'?)`` for the closest of ``names`` to a mistyped ``name``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(n) for n in names], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UnknownNameError(ConfigurationError, KeyError):
    """A name (model, router, graph, dataset) that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(
            f"unknown {kind} {name!r}{did_you_mean(name, self.known)}; known: {', '.join(self.known) or '(none)'}"
        )

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class MissingDependencyError(AgentrouteError, ImportError):
    """An optional dependency is missing; the message names the extra that provides it."""

    def __init__(self, module: str, extra: str):
        from agentroute._optional import missing_message  # the one home of install commands

        self.module, self.extra = module, extra
        super().__init__(missing_message(module, extra))  # torch first where the extra needs it


class BudgetExceededError(AgentrouteError):
    """A reservation would take spending past the budget's limit on ``resource``."""

    def __init__(self, resource: str, limit: float, spent: float, requested: float):
        self.resource, self.limit, self.spent, self.requested = resource, limit, spent, requested
        super().__init__(
            f"budget exceeded on {resource}: limit {limit:g}, committed {spent:g}, requested {requested:g}"
        )


class BackendError(AgentrouteError):
    """A model call failed (after retries, when the dispatcher made them)."""

    def __init__(
        self,
        model: str,
        message: str,
        *,
        retryable: bool = True,
        billed: bool = True,
        retry_after_s: float | None = None,
    ):
        #: ``billed``: whether the provider may have billed the attempt (a timeout, a dropped
        #: connection, an unreadable reply). ``False`` only when the provider refused the request
        #: before running the model (an HTTP error status); the attempt is then charged a call only.
        #: ``retry_after_s``: how long the server asked to wait before the next try (a 429's or a
        #: 503's ``Retry-After`` / ``retry-after-ms``); the dispatcher waits that long, or falls
        #: over to another model when the wait does not fit the task's deadline.
        self.model, self.retryable, self.billed, self.retry_after_s = model, retryable, billed, retry_after_s
        super().__init__(f"{model}: {message}")


class ContextLengthError(BackendError):
    """The prompt plus ``max_tokens`` exceed the model's context window: refused before the model
    ran (not billed, never retried; another model may take it). OpenAI's ``context_length_exceeded``."""

    def __init__(self, model: str, message: str):
        super().__init__(model, message, retryable=False, billed=False)


class ProtocolError(BackendError):
    """A reply that breaks the provider protocol: its usage cannot be trusted (never retried)."""

    def __init__(self, model: str, message: str):
        super().__init__(model, message, retryable=False)


class NotFittedError(AgentrouteError, RuntimeError):
    """A learned router was used before ``fit`` or ``load``."""

    def __init__(self, name: str):
        super().__init__(f"router {name!r} is not fitted: call fit(...) or load(path) first")


class StateFileError(AgentrouteError):
    """A saved state file is missing, corrupted or incompatible."""

    def __init__(self, path: object, problem: str):
        self.path = path
        super().__init__(f"{path}: {problem}")


class DatasetError(AgentrouteError, FileNotFoundError):
    """A dataset path is missing or lacks the files its format expects."""
