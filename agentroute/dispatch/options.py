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
from typing import Any

from agentroute.types import CompletionRequest

#: ``CompletionRequest.metadata`` key of the options that have no field of their own there
#: (``response_format``, ``logprobs``, ``top_logprobs``): :func:`extra_fields` reads it.
EXTRA = "provider_fields"
_TYPED = ("reasoning_effort", "verbosity", "seed")  # CompletionRequest's own fields

#: The largest seed: OpenAI-compatible servers take a signed 64-bit one (vLLM refuses others).
SEED_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """Provider fields of one request; ``None`` leaves the provider's default.

    ``reasoning_effort`` and ``verbosity`` (reasoning models, GPT-5), ``seed`` (reproducible
    sampling, a signed 64-bit integer), ``response_format`` (JSON mode or a JSON schema),
    ``logprobs`` and ``top_logprobs`` (returned in the completion's ``raw["logprobs"]``).
    """

    reasoning_effort: str | None = None
    verbosity: str | None = None
    seed: int | None = None
    response_format: Mapping[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    def given(self) -> dict[str, Any]:
        """The options set, by name."""
        return {f.name: v for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None}

    def apply(self, request: CompletionRequest) -> CompletionRequest:
        """``request`` (changed in place: one the caller has just built) carrying these options."""
        extra: dict[str, Any] = {}
        for name, value in self.given().items():
            if name in _TYPED:
                setattr(request, name, value)
            else:
                extra[name] = value
        if extra:
            request.metadata = {**request.metadata, EXTRA: extra}
        return request


def extra_fields(request: CompletionRequest) -> Mapping[str, Any]:
    """The options of ``request`` that :class:`CompletionRequest` has no field for."""
    return request.metadata.get(EXTRA) or {} if request.metadata else {}


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


__all__ = ["EXTRA", "SEED_MAX", "RequestOptions", "extra_fields", "nth_seed", "refused_option"]
