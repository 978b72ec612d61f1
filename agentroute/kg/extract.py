"""Entities and relations of a query, found offline by deterministic rules (or a plugged-in NER).

AgentRouter (ROUTERS.md §2) builds one knowledge graph per query: named entities, dates and
numbers found in the query and its context, and the relations between them (a triple
h –r→ t becomes a relation node r with edges h →src→ r →tgt→ t). The default
:class:`RuleExtractor` needs no downloaded model:

- **dates**: ISO (``2021-03-04``), numeric (``3/4/2021``), ``March 3, 2021``, ``3 March 2021``,
  ``March 2021``;
- **quoted** strings: ``"…"``, ``“…”``, ``‘…’``, ``'…'`` (not apostrophes), ``「…」``, ``『…』`` and
  ``«…»``, 1–80 characters (the way Chinese and Japanese text marks names and titles);
- **capitalised** spans: runs of capitalised words or acronyms (``Eiffel Tower``, ``NASA``,
  ``Bank of America``), without leading function words (``The``, ``What`` …);
- **numbers**: integers, decimals, thousands separators, ``$`` amounts and percentages.

Earlier kinds win where spans overlap. :class:`KGExtractor` adds relations: consecutive entities
in one sentence are linked by the words between them (at most ``max_relation_words``; an empty
gap — ``Paris, France`` — gives the relation ``co-occurs with``).

Any callable ``text -> list[Entity]`` can replace the rules (:class:`EntityExtractor`), e.g. spaCy
through :func:`spacy_ner`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentroute.errors import ConfigurationError

__all__ = [
    "CO_OCCURS",
    "Entity",
    "EntityExtractor",
    "KGExtractor",
    "QueryKG",
    "Relation",
    "RuleExtractor",
    "spacy_ner",
]

#: The relation text of two adjacent entities with no words between them.
CO_OCCURS = "co-occurs with"


@dataclass(frozen=True, slots=True)
class Entity:
    """A span of the text: ``label`` is ``date``, ``quoted``, ``capitalised``, ``number`` or an NER
    label; ``start``/``end`` are character offsets (``-1`` when the extractor does not know them)."""

    text: str
    label: str
    start: int = -1
    end: int = -1


@dataclass(frozen=True, slots=True)
class Relation:
    """A triple ``head –text→ tail``; ``head`` and ``tail`` index :attr:`QueryKG.entities`."""

    head: int
    text: str
    tail: int


@dataclass(slots=True)
class QueryKG:
    """The knowledge graph of one query: its text, distinct entities and relations between them."""

    query: str
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    def triples(self) -> list[tuple[str, str, str]]:
        """``(head text, relation text, tail text)`` for each relation."""
        return [(self.entities[r.head].text, r.text, self.entities[r.tail].text) for r in self.relations]


@runtime_checkable
class EntityExtractor(Protocol):
    """The plug-in point for a real NER: any callable from text to entities."""

    def __call__(self, text: str) -> list[Entity]: ...


# -- the rules -------------------------------------------------------------------------------------
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_DATE = re.compile(
    r"\b(?:"
    r"\d{4}-\d{1,2}-\d{1,2}"  # 2021-03-04
    r"|\d{1,2}/\d{1,2}/\d{2,4}"  # 3/4/2021
    rf"|{_MONTH}\.?\s+{_DAY}(?:,?\s+\d{{4}})?"  # March 3, 2021 / March 3
    rf"|{_DAY}\s+(?:of\s+)?{_MONTH}\.?(?:,?\s+\d{{4}})?"  # 3 March 2021 / 3rd of March
    rf"|{_MONTH}\.?\s+\d{{4}}"  # March 2021
    r")\b"
)
_QUOTED = re.compile(
    r"\"([^\"\n]{1,80})\"|“([^”\n]{1,80})”|‘([^’\n]{1,80})’|(?<![\w'])'([^'\n]{1,80})'(?![\w])"
    r"|「([^」\n]{1,80})」|『([^』\n]{1,80})』|«\s?([^»\n]{1,80})\s?»"
)
_WORD = r"(?:[A-Z][\w'’&.-]*[\w]|[A-Z])"
_CONNECTOR = r"(?:of|the|de|da|del|der|di|du|la|le|van|von|y|&)"
_CAPITALISED = re.compile(rf"\b{_WORD}(?:[ \t]+(?:{_CONNECTOR}[ \t]+)*{_WORD})*")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\$?\d[\d,]*(?:\.\d+)?%?(?![\w])|(?<![\w.])[-+]?\$?\.\d+%?(?![\w])")
_SENTENCE_END = re.compile(r"[.!?;:]\s|\n|[。！？；]")
#: Capitalised function words dropped from the start of a capitalised span.
_STOP = frozenset(
    """a an the this that these those there here it its he she they we you i me my our your their his
    her what which who whom whose when where why how whether is are was were be been do does did can
    could should would will shall may might must if then else in on at to for from by with of as and
    or but not no yes so also please print answer write given let find compute calculate consider
    suppose assume use choose select explain describe answers question questions q options option
    true false none all each every some any both either neither one two three""".split()
)


def _overlaps(start: int, end: int, taken: list[tuple[int, int]]) -> bool:
    """Whether ``[start, end)`` overlaps a span of ``taken`` (sorted, disjoint): O(log n)."""
    i = bisect.bisect_left(taken, (end, end))  # the spans before i start before ``end``
    return i > 0 and taken[i - 1][1] > start


class RuleExtractor:
    """Deterministic entities: dates, quoted strings, capitalised spans and numbers.

    Args:
        kinds: which kinds to find, in priority order (earlier kinds win overlaps).
        min_chars: shortest entity kept (single letters such as answer options ``A)`` drop out).

    >>> [(e.text, e.label) for e in RuleExtractor()('Did "Abbey Road" sell 5,000 copies on March 3, 2021?')]
    [('Abbey Road', 'quoted'), ('5,000', 'number'), ('March 3, 2021', 'date')]
    """

    def __init__(
        self,
        kinds: Sequence[str] = ("date", "quoted", "capitalised", "number"),
        *,
        min_chars: int = 2,
    ):
        unknown = set(kinds) - {"date", "quoted", "capitalised", "number"}
        if unknown:
            raise ConfigurationError(
                f"unknown entity kinds {sorted(unknown)}; use date, quoted, capitalised, number"
            )
        self.kinds = tuple(kinds)
        self.min_chars = min_chars

    def __call__(self, text: str) -> list[Entity]:
        found: list[Entity] = []
        taken: list[tuple[int, int]] = []
        for kind in self.kinds:
            for start, end in getattr(self, f"_{kind}")(text):
                if end - start >= self.min_chars and not _overlaps(start, end, taken):
                    bisect.insort(taken, (start, end))
                    found.append(Entity(text[start:end], kind, start, end))
        found.sort(key=lambda e: e.start)
        return found

    @staticmethod
    def _date(text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _DATE.finditer(text)]

    @staticmethod
    def _quoted(text: str) -> list[tuple[int, int]]:
        out = []
        for m in _QUOTED.finditer(text):
            group = next(g for g in range(1, _QUOTED.groups + 1) if m.group(g) is not None)
            start, end = m.span(group)
            while start < end and text[start].isspace():
                start += 1
            while end > start and text[end - 1].isspace():
                end -= 1
            if start < end:
                out.append((start, end))
        return out

    @staticmethod
    def _capitalised(text: str) -> list[tuple[int, int]]:
        out = []
        for m in _CAPITALISED.finditer(text):
            words = list(re.finditer(r"\S+", m.group(0)))
            # drop leading function words ("What", "The") and trailing connectors
            while words and words[0].group(0).lower().strip(".") in _STOP:
                words.pop(0)
            while words and re.fullmatch(_CONNECTOR, words[-1].group(0)):
                words.pop()
            if words:
                out.append((m.start() + words[0].start(), m.start() + words[-1].end()))
        return out

    @staticmethod
    def _number(text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _NUMBER.finditer(text)]


def spacy_ner(nlp: Any) -> EntityExtractor:
    """Wrap a loaded spaCy pipeline (``spacy.load("en_core_web_sm")``) as an :class:`EntityExtractor`.

    spaCy is not a dependency of agentroute: the pipeline is used through its ``__call__`` and
    ``.ents`` only.
    """

    def extract(text: str) -> list[Entity]:
        return [Entity(e.text, str(e.label_), int(e.start_char), int(e.end_char)) for e in nlp(text).ents]

    return extract


# -- relations ------------------------------------------------------------------------------------
def _normalise_key(text: str) -> str:
    return " ".join(text.lower().split())


class KGExtractor:
    """Builds a :class:`QueryKG`: entities from ``ner`` (default :class:`RuleExtractor`) and
    relations between consecutive entities of a sentence.

    When a text holds more than ``max_entities`` distinct entities, those nearest its end are kept:
    prompts put the question last (few-shot examples and retrieved context come first).

    Args:
        ner: any :class:`EntityExtractor`; default the deterministic rules.
        max_entities: distinct entities kept per query (default 16).
        max_relations: relations kept per query (default 16), again nearest the end.
        max_relation_words: longest word gap rendered as the relation text; longer gaps keep their
            first ``max_relation_words`` words (default 6).

    >>> kg = KGExtractor()("Paris is the capital of France. Berlin, Germany.")
    >>> kg.triples()
    [('Paris', 'is the capital of', 'France'), ('Berlin', 'co-occurs with', 'Germany')]
    """

    def __init__(
        self,
        ner: EntityExtractor | Callable[[str], list[Entity]] | None = None,
        *,
        max_entities: int = 16,
        max_relations: int = 16,
        max_relation_words: int = 6,
    ):
        if max_entities < 0 or max_relations < 0 or max_relation_words < 1:
            raise ConfigurationError(
                "max_entities and max_relations must be >= 0 and max_relation_words >= 1 (got "
                f"{max_entities}, {max_relations}, {max_relation_words})"
            )
        self.ner = ner if ner is not None else RuleExtractor()
        self.max_entities = max_entities
        self.max_relations = max_relations
        self.max_relation_words = max_relation_words

    def __call__(self, text: str) -> QueryKG:
        mentions = [self._locate(text, e) for e in self.ner(text)]
        mentions = sorted((m for m in mentions if m.text.strip()), key=lambda e: (e.start, e.end))
        # distinct entities by normalised text; the last mention decides an entity's position
        last: dict[str, int] = {}
        for k, mention in enumerate(mentions):
            last[_normalise_key(mention.text)] = k
        keep = sorted(last.values())[-self.max_entities :] if self.max_entities else []
        entities = [mentions[k] for k in keep]
        index = {_normalise_key(e.text): i for i, e in enumerate(entities)}

        relations: list[Relation] = []
        seen: set[tuple[int, str, int]] = set()
        breaks = [m.start() for m in _SENTENCE_END.finditer(text)]
        for a, b in zip(mentions, mentions[1:], strict=False):
            ha, hb = index.get(_normalise_key(a.text)), index.get(_normalise_key(b.text))
            if ha is None or hb is None or ha == hb or a.start < 0 or b.start < a.end:
                continue
            i = bisect.bisect_left(breaks, a.end)
            if i < len(breaks) and breaks[i] < b.start:
                continue  # not in one sentence
            words = re.findall(r"[\w'’-]+", text[a.end : b.start])
            rel = " ".join(words[: self.max_relation_words]).lower() if words else CO_OCCURS
            key = (ha, rel, hb)
            if key not in seen:
                seen.add(key)
                relations.append(Relation(ha, rel, hb))
        if self.max_relations:
            relations = relations[-self.max_relations :]
        else:
            relations = []
        return QueryKG(text, entities, relations)

    @staticmethod
    def _locate(text: str, entity: Entity) -> Entity:
        """Give offsets to an entity of an NER that does not report them (its first occurrence)."""
        if entity.start >= 0:
            return entity
        start = text.find(entity.text)
        return Entity(entity.text, entity.label, start, start + len(entity.text) if start >= 0 else -1)
