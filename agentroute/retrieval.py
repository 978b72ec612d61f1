"""BM25 retrieval over a corpus the user passes (Okapi BM25 with a non-negative idf).

The idf is Lucene's ``ln(1 + (N − n + 0.5) / (n + 0.5))``: always positive, so a term found in half
of a small corpus (or in its only paragraph) still counts — the classic ``ln((N − n + 0.5) / (n +
0.5))`` is zero or negative there and ranks a two-paragraph corpus in file order. Text is split into
words; Chinese, Japanese and Korean runs (:data:`agentroute.cjk.DENSE`) into single characters and
character pairs, so a query in those scripts matches the paragraphs that share its words. A paragraph longer
than ``chunk_chars`` is indexed as consecutive pieces of at most that length (cut at a space or a
sentence end, each keeping the title), so a retrieved passage always fits a model's prompt.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentroute.checks import check_count
from agentroute.cjk import DENSE, DENSE_RUN
from agentroute.errors import ConfigurationError

_TOKEN = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"[.!?](?=\s)|[。！？]")
_CUT = re.compile(r"[\s；，、;,]")
K1, B = 1.5, 0.75
#: The longest passage a retriever returns by default (characters; about 300 English tokens).
CHUNK_CHARS = 1200


def tokenize(text: str) -> list[str]:
    """Lower-cased words; a run of Chinese/Japanese/Korean characters gives its characters and their pairs.
    Text is NFKC-folded first, as Lucene's CJK width filter folds it: half-width katakana read as
    full-width, full-width Latin and digits as ASCII (``ｶﾚｰ`` is ``カレー``, ``ＰＡＲＩＳ`` is ``paris``).

    >>> tokenize("Paris, France")
    ['paris', 'france']
    >>> tokenize("法国的首都 Paris")
    ['法', '国', '的', '首', '都', '法国', '国的', '的首', '首都', 'paris']
    >>> tokenize("ＰＡＲＩＳ") == tokenize("paris") and tokenize("ｶﾚｰ") == tokenize("カレー")
    True
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    for word in _TOKEN.findall(text.lower()):
        if not DENSE.search(word):
            out.append(word)
            continue
        for i, part in enumerate(DENSE_RUN.split(word)):
            if i % 2 == 0:  # the pieces between unspaced runs
                out.extend([part] if part else [])
            else:
                out.extend(part)
                out.extend(part[j : j + 2] for j in range(len(part) - 1))
    return out


@dataclass(frozen=True)
class Passage:
    title: str
    text: str

    def __str__(self) -> str:
        return f"{self.title}: {self.text}" if self.title else self.text


class BM25Retriever:
    """Top-k passages for a query; ties keep the corpus order.

    >>> r = BM25Retriever(["Paris is the capital of France.", "Berlin is in Germany.", "Rome is old."])
    >>> r.search("capital of France", k=1)[0].text
    'Paris is the capital of France.'
    >>> BM25Retriever(["Berlin is in Germany.", "Paris is in France."]).search("France", k=1)[0].text
    'Paris is in France.'
    """

    def __init__(
        self, corpus: Iterable[str | Mapping[str, str] | Passage], *, chunk_chars: int | None = CHUNK_CHARS
    ):
        if chunk_chars is not None and (
            isinstance(chunk_chars, bool) or not isinstance(chunk_chars, int) or chunk_chars < 100
        ):
            raise ConfigurationError(
                f"chunk_chars must be a whole number >= 100 or None (got {chunk_chars!r})"
            )
        self.passages = [piece for p in corpus for piece in chunk(_as_passage(p), chunk_chars)]
        if not self.passages:
            raise ConfigurationError("the retrieval corpus is empty")
        docs = [Counter(tokenize(str(p))) for p in self.passages]
        self._lengths = [sum(d.values()) for d in docs]
        n = len(docs)
        self._avgdl = sum(self._lengths) / n or 1.0
        self._postings: dict[str, list[tuple[int, int]]] = {}
        for i, doc in enumerate(docs):
            for term, tf in doc.items():
                self._postings.setdefault(term, []).append((i, tf))
        self._idf = {t: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in self._postings.items()}

    @classmethod
    def from_file(cls, path: str | Path, *, chunk_chars: int | None = CHUNK_CHARS) -> BM25Retriever:
        """A retriever over the paragraphs of a corpus file (:func:`load_corpus`)."""
        return cls(load_corpus(path), chunk_chars=chunk_chars)

    def scores(self, query: str) -> list[float]:
        """The BM25 score of every passage for ``query`` (0 for a passage sharing no term)."""
        out = [0.0] * len(self.passages)
        for term in tokenize(query):
            idf = self._idf.get(term, 0.0)
            for i, tf in self._postings.get(term, ()):
                norm = K1 * (1 - B + B * self._lengths[i] / self._avgdl)
                out[i] += idf * tf * (K1 + 1) / (tf + norm)
        return out

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The ``k`` best passages, best first (``k`` ≥ 1)."""
        k = check_count(k, "top-k")
        scores = self.scores(query)
        best = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        return [self.passages[i] for i in best]


def chunk(passage: Passage, max_chars: int | None = CHUNK_CHARS) -> list[Passage]:
    """``passage`` as pieces of at most ``max_chars`` characters of text, each with its title.

    A piece ends at the last sentence end of its second half, else at its last space or comma.

    >>> [p.text for p in chunk(Passage("T", "one two three four"), 9)]
    ['one two', 'three', 'four']
    >>> [p.text for p in chunk(Passage("T", "It rains today. The Seine is high."), 24)]
    ['It rains today.', 'The Seine is high.']
    """
    text = passage.text
    if max_chars is None or len(text) <= max_chars:
        return [passage]
    pieces, start = [], 0
    while start < len(text):
        end = min(start + max_chars, len(text))
        if end < len(text):
            lo, hi = start + max_chars // 2, end + 1  # one more character: what follows a full stop
            cuts = [m.end() for m in _SENTENCE_END.finditer(text, lo, hi) if m.end() <= end]
            cuts = cuts or [m.end() for m in _CUT.finditer(text, lo, hi)]
            end = cuts[-1] if cuts else end
        piece = text[start:end].strip()
        if piece:
            pieces.append(Passage(passage.title, piece))
        start = end
    return pieces


def _as_passage(item: str | Mapping[str, str] | Passage) -> Passage:
    if isinstance(item, Passage):
        return item
    if isinstance(item, str):
        return Passage("", item)
    if isinstance(item, Mapping) and ("text" in item or "paragraph_text" in item):
        return Passage(str(item.get("title", "")), str(item.get("text", item.get("paragraph_text", ""))))
    raise ConfigurationError(f"corpus entries must be strings or {{title, text}} objects (got {item!r:.80})")


class _Pairs(dict[str, Any]):
    """A JSON object that also keeps every key-value pair in file order, repeated keys included."""

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        self.pairs = pairs


def load_corpus(path: str | Path) -> list[Passage]:
    """Paragraphs from a corpus file: a JSON list of strings or ``{title, text}`` objects, JSONL of
    them, or a JSON object ``{title: text or [sentences]}`` (HotpotQA's corpus layout; a title
    written twice keeps both paragraphs).

    Raises :class:`~agentroute.errors.ConfigurationError` naming the file when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"corpus file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"corpus file {path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data: Any = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.split("\n") if line.strip()]
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"corpus file {path}: neither JSON nor JSONL ({exc})") from None
    if isinstance(data, Mapping) and isinstance(data.get("text", data.get("paragraph_text")), str):
        data = [data]  # one JSONL line: one paragraph
    elif isinstance(data, Mapping):
        pairs = (
            data.pairs if isinstance(data, _Pairs) else list(data.items())
        )  # a repeated title keeps each text
        data = [
            Passage(str(title), "".join(map(str, body)) if isinstance(body, list) else str(body))
            for title, body in pairs
        ]
    if not isinstance(data, list) or not data:
        raise ConfigurationError(
            f"corpus file {path}: expected a non-empty list of paragraphs or a {{title: text}} object"
        )
    try:
        return [_as_passage(item) for item in data]
    except ConfigurationError as exc:
        raise ConfigurationError(f"corpus file {path}: {exc}") from None


def format_passages(passages: Sequence[Passage]) -> str:
    return "\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
