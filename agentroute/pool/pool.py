"""ModelPool: the model cards a graph may route to, loaded from YAML, and their backends."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

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
        """Load ``models: [...]`` from a YAML file; every error names the file, the line and the field.

        The file is read as untrusted input: it must be a regular UTF-8 text file of at most
        :data:`MAX_POOL_BYTES`; only plain YAML data is built (no tags that construct objects);
        a mapping may not repeat a key, and model ids must be unique. Anchors and aliases (and
        ``<<:`` merge keys) are allowed for shared settings, but expanding them may add at most
        :data:`MAX_ALIAS_NODES` nodes, and a document may nest at most :data:`MAX_DEPTH` levels, so a
        "billion laughs" file is refused at once instead of hanging. Numbers such as ``1e-3`` are
        read as floats (YAML 1.2), not strings.
        """
        path = Path(path)
        text = _read_pool_text(path)
        loader = _PoolLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        except _YamlProblem as exc:
            raise ConfigurationError(f"{path} line {exc.line}: {exc.message}") from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigurationError(f"{path}{where}: invalid YAML: {_cap(exc.problem or exc.context)}") from None
        except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
            raise ConfigurationError(f"{path}: invalid YAML: {_cap(exc)}") from None
        finally:
            loader.dispose()
        models_node = _mapping_get(root, "models")
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models_node, yaml.SequenceNode) or not isinstance(models, list):
            line = _line(root)
            raise ConfigurationError(f"{path} line {line}: expected a top-level 'models:' list")
        cards: list[ModelCard] = []
        first_line: dict[str, int] = {}
        for node, item in zip(models_node.value, models, strict=True):
            line = _line(node)
            if not isinstance(item, dict):
                raise ConfigurationError(f"{path} line {line}: each model must be a mapping (got {short_repr(item)})")
            bad_keys = [k for k in item if not isinstance(k, str)]
            if bad_keys:
                raise ConfigurationError(f"{path} line {line}: field names must be strings (got {short_repr(bad_keys[0])})")
            try:
                card = ModelCard(**item)
            except CardError as exc:
                key = _mapping_key_node(node, exc.field)
                raise ConfigurationError(f"{path} line {_line(key or node)}: {exc}") from None
            if card.id in first_line:
                key = _mapping_key_node(node, "id")
                raise ConfigurationError(
                    f"{path} line {_line(key or node)}: model id {short_repr(card.id)} appears twice "
                    f"(first at line {first_line[card.id]})"
                )
            first_line[card.id] = _line(_mapping_key_node(node, "id") or node)
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

    def set_backend(self, name: str, backend: Backend) -> None:
        self._backends[name] = backend

    async def preload(self) -> None:
        """Load every backend's models now, so the first routed step does not wait for them."""
        for card in self:
            await self.backend(card.id).preload(card)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()


# -- reading a pool file as untrusted input -----------------------------------------------------------
#: Largest pool file read, in bytes (a pool of hundreds of models is a few tens of kB).
MAX_POOL_BYTES = 1 << 20
#: Most nodes that expanding a document's aliases may add (a "billion laughs" adds ~10⁹).
MAX_ALIAS_NODES = 10_000
#: Deepest nesting of collections in a pool file (a card is 3 levels deep).
MAX_DEPTH = 50


class _YamlProblem(Exception):
    def __init__(self, line: int, message: str):
        self.line, self.message = line, message
        super().__init__(message)


def _read_pool_text(path: Path) -> str:
    """The file's text, or a :class:`ConfigurationError` for anything that is not small UTF-8 text."""
    if not path.exists():
        raise ConfigurationError(f"pool file {path} does not exist")
    if path.is_dir():
        raise ConfigurationError(f"pool file {path} is a directory; expected a YAML file")
    if not path.is_file():
        raise ConfigurationError(f"pool file {path} is not a regular file")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_POOL_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read pool file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_POOL_BYTES:
        raise ConfigurationError(f"pool file {path} is larger than {MAX_POOL_BYTES} bytes; is it the right file?")
    if b"\0" in raw:
        raise ConfigurationError(f"pool file {path} is binary (it holds NUL bytes); expected YAML text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigurationError(
            f"pool file {path} line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None


class _PoolLoader(yaml.SafeLoader):
    """A SafeLoader for untrusted pool files: bounded alias expansion and depth, no duplicate keys,
    and YAML 1.2 floats (``1e-3``)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._added = 0  # nodes added by expanding aliases
        self._depth = 0
        self._open: set[str] = set()  # anchors of collections still being composed
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise _YamlProblem(_line(event), f"alias *{_cap(event.anchor, 40)} refers to itself")
            anchored = self.anchors.get(event.anchor)
            if anchored is not None:
                self._added += _size(anchored, self._sizes)
                if self._added > MAX_ALIAS_NODES:
                    raise _YamlProblem(
                        _line(event),
                        f"aliases expand to more than {MAX_ALIAS_NODES} nodes; a pool file may use "
                        "anchors for shared settings, not to build large documents",
                    )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _YamlProblem(_line(event), f"nesting deeper than {MAX_DEPTH} levels")
        anchor = getattr(event, "anchor", None)
        collection = isinstance(event, yaml.CollectionStartEvent) and anchor is not None
        if collection:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if collection:
                self._open.discard(anchor)

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise _YamlProblem(_line(key), "mapping keys must be plain names, not lists or mappings")
            if key.tag == "tag:yaml.org,2002:merge":
                continue
            ident = (key.tag, key.value)
            if ident in seen:
                raise _YamlProblem(
                    _line(key), f"duplicate key {_cap(key.value, 60)!r} (first at line {seen[ident]})"
                )
            seen[ident] = _line(key)
        return node


_PoolLoader.add_implicit_resolver(  # YAML 1.2 floats with an exponent and no dot: 1e-3, 5E6
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _size(node: Any, sizes: dict[int, int]) -> int:
    """Nodes in ``node``'s subtree with aliases expanded (memoised: shared nodes count once each)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_size(k, sizes) + _size(v, sizes) for k, v in node.value)
    else:
        total = 1
    sizes[id(node)] = total
    return total


def _line(node: Any) -> int:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else 1


def _cap(text: object, limit: int = 300) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
