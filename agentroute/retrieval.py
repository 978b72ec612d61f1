"""BM25 retrieval over a corpus the user passes (Okapi BM25 via ``rank_bm25``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentroute.errors import ConfigurationError

_TOKEN = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Passage:
    title: str
    text: str

    def __str__(self) -> str:
        return f"{self.title}: {self.text}" if self.title else self.text


class BM25Retriever:
    """Top-k passages for a query.

    >>> r = BM25Retriever(["Paris is the capital of France.", "Berlin is in Germany.", "Rome is old."])
    >>> r.search("capital of France", k=1)[0].text
    'Paris is the capital of France.'
    """

    def __init__(self, corpus: Iterable[str | Mapping[str, str] | Passage]):
        from rank_bm25 import BM25Okapi

        self.passages = [_as_passage(p) for p in corpus]
        if not self.passages:
            raise ConfigurationError("the retrieval corpus is empty")
        self._bm25 = BM25Okapi([tokenize(str(p)) for p in self.passages])

    @classmethod
    def from_file(cls, path: str | Path) -> BM25Retriever:
        """A JSON list of strings or of ``{title, text}`` objects, or a JSONL file of them."""
        path = Path(path)
        if not path.exists():
            raise ConfigurationError(f"corpus file {path} does not exist")
        text = path.read_text()
        try:
            items = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"corpus file {path}: invalid JSON ({exc})") from exc
        return cls(items)

    def search(self, query: str, k: int = 3) -> list[Passage]:
        scores = self._bm25.get_scores(tokenize(query))
        best = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        return [self.passages[i] for i in best]


def _as_passage(item: str | Mapping[str, str] | Passage) -> Passage:
    if isinstance(item, Passage):
        return item
    if isinstance(item, str):
        return Passage("", item)
    if isinstance(item, Mapping) and ("text" in item or "paragraph_text" in item):
        return Passage(str(item.get("title", "")), str(item.get("text", item.get("paragraph_text", ""))))
    raise ConfigurationError(f"corpus entries must be strings or {{title, text}} objects (got {item!r:.80})")


def format_passages(passages: Sequence[Passage]) -> str:
    return "\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
