"""Per-request provider options: the one typed path from a caller (``agentroute serve``, your own
code) through :meth:`~agentroute.dispatch.Dispatcher.step` to the backend's provider call.

A backend names the options it sends in ``request_fields`` (``openai`` and ``litellm``:
:data:`~agentroute.pool.backends.openai.PROVIDER_FIELDS`); :func:`refused_option` says which
option a set of backends cannot honour, so a caller refuses it before any call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from agentroute.errors import ConfigurationError
from agentroute.types import CompletionRequest

#: The largest seed: OpenAI-compatible servers take a signed 64-bit one (vLLM refuses others).
SEED_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """Provider fields of one request; ``None`` leaves the provider's default.

    ``reasoning_effort`` and ``verbosity`` (reasoning models, GPT-5), ``seed`` (reproducible
    sampling, a signed 64-bit integer), ``response_format`` (JSON mode or a JSON schema),
    ``logprobs`` and ``top_logprobs`` (returned in the completion's ``raw["logprobs"]``): each
    sets the :class:`CompletionRequest` field of its name.
    """

    reasoning_effort: str | None = None
    verbosity: str | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    def __post_init__(self) -> None:
        """Nonsense is refused here, before any provider call (``agentroute serve`` refuses it as a 400)."""

        def refuse(name: str, what: str) -> None:
            raise ConfigurationError(f"RequestOptions: {name!r} must be {what} (got {getattr(self, name)!r})")

        for name in ("reasoning_effort", "verbosity"):
            if (value := getattr(self, name)) is not None and (not isinstance(value, str) or not value):
                refuse(name, "a non-empty string")
        if self.seed is not None and not _int_within(self.seed, -SEED_MAX - 1, SEED_MAX):
            refuse("seed", "a signed 64-bit integer")
        if self.response_format is not None and not isinstance(self.response_format, Mapping):
            refuse("response_format", "a mapping")
        if self.logprobs is not None and not isinstance(self.logprobs, bool):
            refuse("logprobs", "True or False")
        if self.top_logprobs is not None and not _int_within(self.top_logprobs, 0, 20):
            refuse("top_logprobs", "an integer in [0, 20]")
        if self.top_logprobs and not self.logprobs:
            refuse("top_logprobs", "0 or None without logprobs=True, as in OpenAI's API")

    def given(self) -> dict[str, Any]:
        """The options set, by name."""
        return {f.name: v for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None}

    def apply(self, request: CompletionRequest) -> CompletionRequest:
        """``request`` (changed in place: one the caller has just built) carrying these options
        (:class:`CompletionRequest` has a field of the same name for each)."""
        for name, value in self.given().items():
            setattr(request, name, value)
        return request


def _int_within(value: Any, low: int, high: int) -> bool:
    """``value`` is an integer (not a bool) in [low, high]."""
    return isinstance(value, Integral) and not isinstance(value, bool) and low <= int(value) <= high


def refused_option(options: RequestOptions, takers: Iterable[frozenset[str]]) -> str | None:
    """The first option set in ``options`` that one of ``takers`` (backends' ``request_fields``)
    does not take, or ``None``. ``seed`` is a mere hint: never refused."""
    given = [name for name in options.given() if name != "seed"]
    for takes in takers:
        for name in given:
            if name not in takes:
                return name
    return None


def nth_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th of several samples drawn with ``seed``: ``seed + index``,
    wrapped within the signed 64-bit range, so each sample differs and none overflows it."""
    return (seed + index + 2**63) % 2**64 - 2**63


__all__ = ["SEED_MAX", "RequestOptions", "nth_seed", "refused_option"]
