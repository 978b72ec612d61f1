"""ModelPool: the model cards a graph may route to, loaded from YAML, and their backends."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agentroute.errors import ConfigurationError, UnknownNameError
from agentroute.pool.backends.base import Backend
from agentroute.pool.card import ModelCard
from agentroute.types import Agent

_BACKEND_CLASSES = {
    "local": "agentroute.pool.backends.local:LocalBackend",
    "litellm": "agentroute.pool.backends.litellm:LiteLLMBackend",
    "openai": "agentroute.pool.backends.openai:OpenAIBackend",
    "replay": "agentroute.pool.backends.replay:ReplayBackend",
}

DEFAULT_POOL = Path(__file__).with_name("default_pool.yaml")


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

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path, backends: Mapping[str, Backend] | None = None) -> ModelPool:
        """Load ``models: [...]`` from YAML; errors name the file, the line and the field."""
        path = Path(path)
        if not path.exists():
            raise ConfigurationError(f"pool file {path} does not exist")
        text = path.read_text()
        try:
            root = yaml.compose(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path}: invalid YAML: {exc}") from exc
        models = _mapping_get(root, "models")
        if models is None or not isinstance(models, yaml.SequenceNode):
            line = root.start_mark.line + 1 if root is not None else 1
            raise ConfigurationError(f"{path} line {line}: expected a top-level 'models:' list")
        cards = []
        for node in models.value:
            data = yaml.safe_load(yaml.serialize(node))
            if not isinstance(data, dict):
                raise ConfigurationError(f"{path} line {node.start_mark.line + 1}: each model must be a mapping")
            try:
                cards.append(ModelCard(**data))
            except ValidationError as exc:
                err = exc.errors()[0]
                field = str(err["loc"][0]) if err["loc"] else "?"
                key = _mapping_key_node(node, field)
                line = (key or node).start_mark.line + 1
                raise ConfigurationError(
                    f"{path} line {line}: model {data.get('id', '?')!r} field {field!r}: {err['msg']}"
                    f" (got {err.get('input')!r})"
                ) from exc
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

    def set_backend(self, name: str, backend: Backend) -> None:
        self._backends[name] = backend

    async def preload(self) -> None:
        """Load every backend's models now, so the first routed step does not wait for them."""
        for card in self:
            await self.backend(card.id).preload(card)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()


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
