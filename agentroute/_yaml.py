"""Reading YAML that a user hands us (pool files, training recipes) as untrusted input.

PyYAML's ``safe_load`` builds no objects, but it still lets a 368-byte file ask for a billion
strings ("billion laughs": nine levels of nine aliases), nests until the composer hits the
recursion limit, and quietly keeps the last of two equal keys. :func:`load_untrusted_yaml` refuses
all three, and every refusal is a :class:`~agentroute.errors.ConfigurationError` that names the
source and the line, with what it echoes of the file cut short.

Anchors and aliases are allowed — ``<<: *defaults`` is the idiomatic way to share settings between
model cards — as long as expanding them adds at most :data:`MAX_ALIAS_NODES` nodes: a limit on what
the document *means*, not on its bytes, so that no consumer can be made to walk a huge tree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from agentroute.errors import ConfigurationError

#: Largest YAML file read, in bytes (a pool of hundreds of models is a few tens of kB).
MAX_BYTES = 1 << 20
#: Most nodes that expanding a document's aliases may add (a "billion laughs" adds ~10⁹).
MAX_ALIAS_NODES = 10_000
#: Deepest nesting of collections (a model card is 3 levels deep).
MAX_DEPTH = 50


def read_untrusted_text(path: Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``, or a :class:`ConfigurationError` for anything that is not small
    text: a missing path, a directory or device, a file over :data:`MAX_BYTES`, binary bytes, or
    invalid UTF-8 (with its line)."""
    if not path.exists():
        raise ConfigurationError(f"{what} {path} does not exist")
    if path.is_dir():
        raise ConfigurationError(f"{what} {path} is a directory; expected a YAML file")
    if not path.is_file():
        raise ConfigurationError(f"{what} {path} is not a regular file")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigurationError(f"{what} {path} is larger than {MAX_BYTES} bytes; is it the right file?")
    if b"\0" in raw:
        raise ConfigurationError(f"{what} {path} is binary (it holds NUL bytes); expected YAML text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigurationError(
            f"{what} {path} line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None


def load_untrusted_yaml(text: str, source: object) -> tuple[Any, Any]:
    """``(root node, data)`` of a single YAML document, or a :class:`ConfigurationError` naming
    ``source`` and the line. The nodes keep their marks, so callers can name a field's line."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader checks the characters here
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except _Problem as exc:
        raise ConfigurationError(f"{source} line {exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(
            f"{source}{where}: invalid YAML: {cap(exc.problem or exc.context)}"
        ) from None
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
        raise ConfigurationError(f"{source}: invalid YAML: {cap(exc)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return root, data


def line_of(node: Any) -> int:
    """The 1-based line where a node (or event) starts; 1 when it has no mark."""
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else 1


def cap(text: object, limit: int = 300) -> str:
    """``str(text)`` cut to ``limit`` characters."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Problem(Exception):
    def __init__(self, line: int, message: str):
        self.line, self.message = line, message
        super().__init__(message)


class _Loader(yaml.SafeLoader):
    """A SafeLoader with bounded alias expansion and depth, no duplicate keys, YAML 1.2 floats."""

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
                raise _Problem(line_of(event), f"alias *{cap(event.anchor, 40)} refers to itself")
            anchored = self.anchors.get(event.anchor)
            if anchored is not None:
                self._added += _size(anchored, self._sizes)
                if self._added > MAX_ALIAS_NODES:
                    raise _Problem(
                        line_of(event),
                        f"aliases expand to more than {MAX_ALIAS_NODES} nodes; anchors may share "
                        "settings, not build large documents",
                    )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Problem(line_of(event), f"nesting deeper than {MAX_DEPTH} levels")
        anchor: str | None = (
            getattr(event, "anchor", None) if isinstance(event, yaml.CollectionStartEvent) else None
        )
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise _Problem(line_of(key), "mapping keys must be plain names, not lists or mappings")
            if key.tag == "tag:yaml.org,2002:merge":
                continue
            ident = (key.tag, key.value)
            if ident in seen:
                raise _Problem(
                    line_of(key), f"duplicate key {cap(key.value, 60)!r} (first at line {seen[ident]})"
                )
            seen[ident] = line_of(key)
        return node


_Loader.add_implicit_resolver(  # YAML 1.2 floats with an exponent and no dot: 1e-3, 5E6
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _size(node: Any, sizes: dict[int, int]) -> int:
    """Nodes in ``node``'s subtree with aliases expanded, memoised by node (a shared subtree is
    walked once; aliased nodes are complete when referenced, so the walk has no cycles)."""
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
