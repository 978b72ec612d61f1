"""Train a Router-R1 policy: optional SFT warm-up, then GRPO with TRL's ``GRPOTrainer``.

GRPO (Shao et al., arXiv:2402.03300) replaces Router-R1's PPO critic with a group baseline (an
accepted alternative). Rollouts run the real think/route loop through TRL's ``rollout_func``: each
route action is a dispatcher step on the recipe's pool under the recipe's per-task budget; the
rollout returns the policy's prompt and completion ids with ``env_mask`` = 0 on every
``<information>`` token, so those tokens are masked out of the loss. On a CPU the trainer's own
model generates (``use_cpu``); with ``use_vllm=True`` (colocate, or server mode against
``trl vllm-serve``) the same rollout generates with TRL's vLLM engine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from agentroute.budget import Budget
from agentroute.errors import ConfigurationError
from agentroute.graph_runtime import run_sync
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import range_rule
from agentroute.routers.router_r1.agent import LoopSettings, ThinkRouteLoop
from agentroute.routers.router_r1.prompts import ROUTE_STOPS
from agentroute.routers.router_r1.rewards import RouterR1Reward, completion_text, format_errors, format_valid
from agentroute.training.lm_policy import restore_swap, save_atomically
from agentroute.training.recipe_file import read_recipe_file
from agentroute.training.stopping import is_terminated

#: GRPOConfig fields a recipe may set (anything else in ``grpo:`` is refused, naming the field).
_GRPO_DEFAULTS: dict[str, Any] = {
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "num_generations": 2,
    "learning_rate": 1e-6,
    "beta": 0.001,
    "epsilon": 0.2,
    "temperature": 1.0,
    "top_p": 0.95,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 0,
    "gradient_accumulation_steps": 1,
}

#: (least, most, whether the least is allowed) of a recipe's numbers; a NaN is outside every range.
_Range = tuple[float, float, bool]
_GRPO_RANGES: dict[str, _Range] = {
    "learning_rate": (0, 1, False),
    "beta": (0, math.inf, True),
    "epsilon": (0, 1, False),
    "temperature": (0, math.inf, False),
    "top_p": (0, 1, False),
    "max_steps": (1, math.inf, True),
    "per_device_train_batch_size": (1, math.inf, True),
    "gradient_accumulation_steps": (1, math.inf, True),
    "num_generations": (1, math.inf, True),
}
_SFT_RANGES: dict[str, _Range | None] = {
    "enabled": None,
    "traces": (1, math.inf, True),
    "epochs": (1, math.inf, True),
    "lr": (0, 1, False),
    "batch_size": (1, math.inf, True),
    "direct_every": (0, math.inf, True),
}
_DATA_RANGES: dict[str, _Range | None] = {"path": None, "train": (1, math.inf, True)}
_REWARD_RANGES: dict[str, _Range | None] = {"alpha": (0, 1, True), "metric": None}


def _check_section(section: str, values: dict[str, Any], known: dict[str, _Range | None]) -> None:
    """A recipe section: its keys are ``known``'s, its numbers in their ranges."""
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigurationError(f"{section}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    _check_ranges(section, values, {k: r for k, r in known.items() if r is not None})


def _check_ranges(section: str, values: dict[str, Any], ranges: dict[str, _Range]) -> None:
    """One error naming each of ``values`` out of its range."""
    refused = []
    for key, (least, most, closed) in ranges.items():
        if key not in values:
            continue
        value = values[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (
            number
            and math.isfinite(value)
            and (least <= value if closed else least < value)
            and value <= most
        ):
            rule = range_rule(least, None if most == math.inf else most, low_open=not closed)
            refused.append(f"{key!r} must be {rule} (got {value!r})")
    if refused:
        raise ConfigurationError(f"{section}: " + "; ".join(refused))


def _check_with_trl(given: dict[str, Any], grpo: dict[str, Any]) -> None:
    """TRL's rules for ``grpo:`` (``given``; ``grpo`` with the defaults): its field names and
    ``GRPOConfig``'s own checks (num_generations ≥ 2 …), before the SFT warm-up rather than after it."""
    from trl import GRPOConfig

    bad = set(given) - set(GRPOConfig.__dataclass_fields__)
    if bad:
        raise ConfigurationError(f"grpo: {sorted(bad)} are not GRPOConfig fields")
    try:
        with warnings.catch_warnings():  # its deprecation notes are the trainer's to show, once
            warnings.simplefilter("ignore", FutureWarning)
            GRPOConfig(output_dir="unused", use_cpu=True, **grpo)
    except ValueError as exc:
        raise ConfigurationError(f"grpo: {exc}") from None


RUN_ENTRIES = frozenset({"sft", "policy", "grpo", "base", "traces.jsonl", "summary.json"})
"""What a training run writes in ``out`` (``sft``/``policy`` also as ``NAME.partial``/``NAME.old``
while a save is swapped in, the trace cache as ``traces.jsonl.partial``)."""


def check_out_folder(out: Path) -> None:
    """Refuse an ``out`` that holds files but none a training run writes: the run would mix its
    policy, traces and checkpoints into an unrelated folder (an earlier run's folder is reused)."""
    if not out.is_dir():
        return
    names = {entry.name.removesuffix(".partial").removesuffix(".old") for entry in out.iterdir()}
    if names and not names & RUN_ENTRIES:
        raise ConfigurationError(
            f"--out {out} holds other files and no Router-R1 run (sft/, policy/, traces.jsonl): "
            "give a new or empty directory, or an earlier run's --out"
        )


@dataclass
class RouterR1TrainConfig:
    """A training recipe (``training/router_r1.yaml``); ``gpu:`` overrides apply with ``--gpu``."""

    policy: str | None = None
    pool: list[dict[str, Any]] | str | None = None
    router: str = "cheapest"
    budget: dict[str, float] = field(default_factory=lambda: {"usd": 0.001})
    data: dict[str, Any] = field(default_factory=lambda: {"path": None, "train": 50})
    loop: dict[str, Any] = field(default_factory=dict)
    reward: dict[str, Any] = field(default_factory=lambda: {"alpha": 0.0, "metric": "em"})
    sft: dict[str, Any] = field(
        default_factory=lambda: {"enabled": True, "traces": 50, "epochs": 2, "lr": 5e-5, "batch_size": 4}
    )
    grpo: dict[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path, *, gpu: bool = False) -> RouterR1TrainConfig:
        raw = read_recipe_file(path)
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{path}: a recipe is a mapping")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigurationError(
                f"{path}: unknown recipe keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        cfg = cls(**raw)
        if gpu and not cfg.gpu:
            raise ConfigurationError(f"{path}: --gpu given but the recipe has no `gpu:` profile")
        on_gpu = cfg.with_gpu_profile(path)
        if gpu:
            cfg = on_gpu
        cfg.check()  # the recipe as this run reads it first: a typo there is not blamed on gpu:
        if not gpu and cfg.gpu:
            try:  # the --gpu run's values too, here rather than once it reaches a GPU machine
                on_gpu.check()
            except ConfigurationError as exc:
                raise ConfigurationError(f"{path}: the gpu: profile (read with --gpu): {exc}") from None
        if isinstance(cfg.pool, str) and cfg.pool not in ("", "default") and not Path(cfg.pool).is_absolute():
            cfg.pool = str(Path(path).parent / cfg.pool)  # a pool file beside the recipe
        return cfg

    def with_gpu_profile(self, path: str | Path) -> RouterR1TrainConfig:
        """This recipe with its ``gpu:`` profile applied (a section's keys merged, other values replaced)."""
        if not isinstance(self.gpu, dict):
            raise ConfigurationError(f"{path}: gpu: is a mapping of recipe keys (got {self.gpu!r})")
        known = set(self.__dataclass_fields__) - {"gpu"}
        if set(self.gpu) - known:
            raise ConfigurationError(
                f"{path}: gpu: unknown recipe keys {sorted(set(self.gpu) - known)}; known: {sorted(known)}"
            )
        merged: dict[str, Any] = {
            key: {**getattr(self, key), **value}
            if isinstance(getattr(self, key), dict) and isinstance(value, dict)
            else value
            for key, value in self.gpu.items()
        }
        return dataclasses.replace(self, **merged)

    def check(self) -> None:
        """Every section's values, before any model loads or pool call is made: a
        :class:`ConfigurationError` saying which value, why, and what is allowed. The recipe's own
        rules come first, all named in one line, without importing TRL (seconds); then TRL's."""
        for section in ("budget", "data", "loop", "reward", "sft", "grpo"):
            if not isinstance(getattr(self, section), dict):
                raise ConfigurationError(
                    f"{section}: a mapping of its settings (got {getattr(self, section)!r}); "
                    "see training/router_r1.yaml"
                )
        grpo = {**_GRPO_DEFAULTS, **self.grpo}

        def grpo_batch() -> None:
            _check_ranges("grpo", grpo, _GRPO_RANGES)
            gen_batch = grpo["per_device_train_batch_size"] * grpo["gradient_accumulation_steps"]
            if gen_batch % grpo["num_generations"]:
                raise ConfigurationError(
                    f"grpo: per_device_train_batch_size × gradient_accumulation_steps ({gen_batch}) must be a multiple of "
                    f"num_generations ({grpo['num_generations']}): each prompt's group must fit one generation batch"
                )

        def reward() -> None:
            _check_section("reward", self.reward, _REWARD_RANGES)
            if self.reward.get("metric", "em") not in ("em", "f1"):
                raise ConfigurationError(
                    f"reward: 'metric' must be 'em' or 'f1' (got {self.reward['metric']!r})"
                )

        def loop() -> None:
            try:
                LoopSettings(**self.loop)
            except TypeError:
                known = sorted(LoopSettings.__dataclass_fields__)
                raise ConfigurationError(
                    f"loop: unknown keys {sorted(set(self.loop) - set(known))}; known: {known}"
                ) from None

        refused = []  # every section's refusals, in one line
        for check in (
            grpo_batch,
            partial(_check_section, "sft", self.sft, _SFT_RANGES),
            partial(_check_section, "data", self.data, _DATA_RANGES),
            reward,
            partial(Budget, **self.budget),
            loop,
        ):
            try:
                check()
            except ConfigurationError as exc:
                refused.append(str(exc))
        if refused:
            raise ConfigurationError("; ".join(refused))
        _check_with_trl(self.grpo, grpo)

    def make_pool(self) -> ModelPool:
        if self.pool is None or isinstance(self.pool, str):
            return ModelPool.load(self.pool)
        return ModelPool([ModelCard(**c) for c in self.pool])

    def grpo_args(self, out: Path, *, use_cpu: bool) -> Any:
        from trl import GRPOConfig

        grpo = {**_GRPO_DEFAULTS, **self.grpo}
        if grpo.get("use_vllm"):
            # vLLM stops at the tags itself (SamplingParams); the rollout cuts there again.
            kwargs = dict(grpo.get("generation_kwargs") or {})
            kwargs.setdefault("stop", list(ROUTE_STOPS))
            kwargs.setdefault("include_stop_str_in_output", True)
            grpo["generation_kwargs"] = kwargs
            grpo.setdefault("max_completion_length", LoopSettings(**self.loop).turn_tokens)
        return GRPOConfig(output_dir=str(out), use_cpu=use_cpu, gradient_checkpointing=False, **grpo)


class RouterR1Rollout:
    """TRL ``rollout_func``: runs the think/route loop for each prompt (a question) of the batch.

    Returns prompt/completion ids, ``env_mask`` (0 on ``<information>`` tokens), sampling
    log-probs (vLLM only) and, for the reward functions, ``cost_raw``, ``route_calls``,
    ``agents`` and ``episode_text``.
    """

    def __init__(
        self,
        pool: ModelPool,
        router: Any,
        settings: LoopSettings,
        budget: Budget | None,
        log: Callable[[dict[str, Any]], None] | None = None,
    ):
        from agentroute.dispatch.dispatcher import Dispatcher

        self.pool, self.settings, self.budget, self.log = pool, settings, budget, log
        self.dispatcher = Dispatcher(pool, router)
        self.seconds: list[float] = []

    def policy_for(self, trainer: Any) -> Any:
        from agentroute.training.lm_policy import HFPolicy, VLLMTrainerPolicy

        if getattr(trainer.args, "use_vllm", False):
            return VLLMTrainerPolicy(trainer)
        model = trainer.accelerator.unwrap_model(trainer.model)
        return HFPolicy(model, trainer.processing_class)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        started = time.perf_counter()
        args = trainer.args
        settings = dataclasses.replace(self.settings, temperature=args.temperature, top_p=args.top_p or 1.0)
        loop = ThinkRouteLoop(self.policy_for(trainer), self.pool, settings)
        questions = [completion_text(p) if not isinstance(p, str) else p for p in prompts]
        episodes = [
            loop.episode(q, self.dispatcher.start(q, budget=self.budget, graph="router_r1_grpo"))
            for q in questions
        ]
        run_sync(loop.run(episodes, self.dispatcher))  # also inside a running event loop (a notebook)
        for ep in episodes:
            self.dispatcher.finish(ep.run, answer=ep.answer or "")
        eos = loop.policy.tokenizer.eos_token_id
        completion_ids, masks, logprobs = [], [], []
        for ep in episodes:
            ids, mask, lps = ep.completion_ids, ep.env_mask, ep.logprobs
            if eos is not None and (not ids or ids[-1] != eos):  # the rollout ends the sequence
                ids, mask = ids + [eos], mask + [1]
                lps = lps + [0.0] if lps is not None else None
            completion_ids.append(ids)
            masks.append(mask)
            logprobs.append(lps)
        self.seconds.append(time.perf_counter() - started)
        if self.log:
            self.log(
                {
                    "rollout_s": self.seconds[-1],
                    "format_valid": sum(e.format_valid for e in episodes) / len(episodes),
                }
            )
        return {
            "prompt_ids": [ep.prompt_ids for ep in episodes],
            "completion_ids": completion_ids,
            "logprobs": None if any(lp is None for lp in logprobs) else logprobs,
            "env_mask": masks,
            "cost_raw": [ep.cost_raw for ep in episodes],
            "route_calls": [ep.route_calls for ep in episodes],
            "episode_text": [ep.text for ep in episodes],
        }


def format_valid_reward(
    completions: list[Any], *, agents: list[list[str]], episode_text: list[str] | None = None, **kwargs: Any
) -> list[float]:
    """1 for a well-formed rollout, else 0 (logged with weight 0: the format-valid rate)."""
    texts = episode_text or [completion_text(c) for c in completions]
    return [1.0 if format_valid(t, a) else 0.0 for t, a in zip(texts, agents, strict=True)]


def _say(msg: str) -> None:
    print(msg, flush=True)


def last_grpo_checkpoint(grpo_dir: Path) -> Path | None:
    """The checkpoint ``--resume`` continues from: the last whole ``checkpoint-N`` in ``grpo_dir``
    (``None``: none). Whole: TRL writes its ``trainer_state.json`` last, so a save cut short by a
    Ctrl-C or ``kill -9`` has none and the one before is taken (TRL's own pick fails on it)."""
    whole = [
        c
        for c in grpo_dir.glob("checkpoint-*")
        if c.name[11:].isdigit() and (c / "trainer_state.json").is_file()
    ]
    return max(whole, key=lambda c: int(c.name[11:]), default=None)


def check_resumable(grpo_dir: Path) -> None:
    """A :class:`ConfigurationError` unless ``grpo_dir`` holds a GRPO checkpoint to resume from."""
    if last_grpo_checkpoint(grpo_dir) is None:
        raise ConfigurationError(
            f"--resume: no GRPO checkpoint in {grpo_dir}; a run leaves them only when its recipe saves them "
            "(grpo: {save_strategy: steps, save_steps: N})"
        )


def check_gpu(cfg: RouterR1TrainConfig, *, vllm: bool = True) -> None:
    """``--gpu`` needs a CUDA device, and vLLM when the profile generates with it (GRPO): a
    :class:`ConfigurationError` naming what is missing, before any trace is built or model loaded
    (on a CPU machine ``--gpu`` otherwise trained SFT on the CPU, then failed in TRL)."""
    import importlib.util

    import torch

    missing = (
        [] if torch.cuda.is_available() else ["no CUDA GPU is visible (torch.cuda.is_available() is False)"]
    )
    if vllm and cfg.grpo.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        missing.append("vllm is not installed in this environment")
    if missing:
        raise ConfigurationError(
            f"--gpu: {'; '.join(missing)}. GPU training runs in its own venv (docs/router_r1.md, "
            "'On a GPU'); leave out --gpu to train on the CPU"
        )


def train_router_r1(
    config: str | Path,
    out: str | Path,
    *,
    gpu: bool = False,
    policy_dir: str | Path | None = None,
    sft: bool | None = None,
    sft_only: bool = False,
    max_steps: int | None = None,
    resume: bool = False,
    log: Callable[[str], None] = _say,
) -> dict[str, Any]:
    """Run a recipe; writes ``out/sft`` (after the warm-up) and ``out/policy`` (after GRPO).

    ``policy_dir`` overrides the recipe's starting policy, ``sft`` its warm-up switch,
    ``max_steps`` its GRPO steps; ``sft_only`` stops after the warm-up (the GPU script serves
    ``out/sft`` to vLLM, then trains GRPO from it). ``resume`` continues GRPO from the last
    checkpoint in ``out/grpo`` (TRL's ``resume_from_checkpoint``; the recipe must save them:
    ``grpo: {save_strategy: steps, save_steps: N}``).

    Returns a summary (also in ``out/summary.json``): trace count, SFT losses, GRPO log history,
    seconds per GRPO step. A Ctrl-C is a :class:`TrainingInterrupted` naming what this run saved;
    either way the pool's workers are stopped first (a local model's generation thread left running
    aborted the process at exit).
    """
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise ConfigurationError(
            f"--max-steps must be an integer >= 1 (got {max_steps!r}): the GRPO steps to train"
        )
    check_out_folder(Path(out))
    cfg = RouterR1TrainConfig.from_yaml(config, gpu=gpu)
    if gpu:
        check_gpu(cfg, vllm=not sft_only)

    import torch

    if policy_dir is not None:
        cfg.policy = str(policy_dir)
    if sft is not None:
        cfg.sft = {**cfg.sft, "enabled": sft}
    if max_steps is not None:
        cfg.grpo = {**cfg.grpo, "max_steps": max_steps}
    out = Path(out)
    for folder in ("sft", "policy"):
        restore_swap(out / folder)
    if resume:
        check_resumable(out / "grpo")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    if not gpu:
        torch.set_num_threads(1)
    pool = cfg.make_pool()
    saved: list[str] = []
    checkpoint_before = last_grpo_checkpoint(out / "grpo")

    def interrupted(stop: KeyboardInterrupt) -> TrainingInterrupted:
        checkpoint = last_grpo_checkpoint(out / "grpo")
        if checkpoint is not None and checkpoint != checkpoint_before:
            saved.append(f"grpo/{checkpoint.name} (rerun with --resume to continue GRPO from it)")
        return TrainingInterrupted(saved, terminated=is_terminated(stop))

    stopped: TrainingInterrupted | None = None
    try:
        return _run(
            cfg, str(config), out, pool, gpu=gpu, sft_only=sft_only, resume=resume, log=log, saved=saved
        )
    except KeyboardInterrupt as stop:
        stopped = interrupted(stop)
        raise stopped from None
    finally:
        try:
            run_sync(pool.aclose())
        except (
            KeyboardInterrupt
        ) as again:  # a second Ctrl-C while the workers stop: still the line naming what was saved
            raise (stopped or interrupted(again)) from None


def _run(
    cfg: RouterR1TrainConfig,
    config: str,
    out: Path,
    pool: ModelPool,
    *,
    gpu: bool,
    sft_only: bool,
    resume: bool,
    log: Callable[[str], None],
    saved: list[str],
) -> dict[str, Any]:
    """The recipe's SFT warm-up and GRPO; each folder written is added to ``saved``."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from agentroute.loading import load_router
    from agentroute.routers.router_r1.data import load_hotpotqa, split
    from agentroute.routers.router_r1.sft import build_traces, cached_traces, encode_trace, trace_inputs
    from agentroute.routers.router_r1.sft import sft as sft_fit
    from agentroute.training.lm_policy import HFPolicy

    settings = LoopSettings(**cfg.loop)
    budget = Budget(**cfg.budget) if cfg.budget else None
    router = load_router(cfg.router)
    train_rows, _ = split(load_hotpotqa(cfg.data.get("path")), int(cfg.data.get("train", 50)))
    policy = HFPolicy.load(cfg.policy)
    fits = ThinkRouteLoop(policy, pool, settings)
    long = [(i, why) for i, r in enumerate(train_rows) if (why := fits.too_long(r["question"]))]
    if long:  # a 100 KB question: its episode cannot fit the policy's context
        log(
            f"data: {len(long)} questions left out, too long: "
            + "; ".join(f"question {i}: {why}" for i, why in long[:3])
        )
        left_out = {i for i, _ in long}
        train_rows = [r for i, r in enumerate(train_rows) if i not in left_out]
        if not train_rows:
            raise ConfigurationError("data: every training question is too long for the policy's context")
    summary: dict[str, Any] = {"config": str(config), "gpu": gpu, "train_questions": len(train_rows)}

    if cfg.sft.get("enabled", True) and not (
        resume and (out / "sft" / "config.json").is_file()
    ):  # resume: the warm-up is done
        from agentroute.dispatch.dispatcher import Dispatcher

        loop = ThinkRouteLoop(policy, pool, settings)
        rows = train_rows[: int(cfg.sft.get("traces", len(train_rows)))]
        started = time.perf_counter()
        failed: list[str] = []
        direct_every = int(cfg.sft.get("direct_every", 4))
        traces = cached_traces(
            out / "traces.jsonl",
            trace_inputs(rows, loop.cards, direct_every, settings, budget, cfg.router),
            lambda: run_sync(
                build_traces(loop, Dispatcher(pool, router), rows, budget=budget, direct_every=direct_every)
            ),
            log,
        )
        trace_s = time.perf_counter() - started
        failed += [t.failed for t in traces if t.failed]
        traces = [t for t in traces if not t.failed]
        if failed:
            log(f"sft: {len(failed)} traces dropped, their pool call failed: {failed[:3]}")
        if not traces:
            raise ConfigurationError("sft: every trace's pool call failed (raise the cards' timeout_s?)")
        broken = [
            f"{t.question[:60]!r}: {format_errors(t.text, loop.names)[0]}"
            for t in traces
            if not format_valid(t.text, loop.names)
        ]
        if broken:  # a gold answer holding the loop's tags, say: not a trace to learn the format from
            log(f"sft: {len(broken)} traces dropped, not in Router-R1's format: {broken[:3]}")
            traces = [t for t in traces if format_valid(t.text, loop.names)]
        if not traces:
            raise ConfigurationError("sft: no trace is in Router-R1's format; see the dropped traces above")
        encoded = [encode_trace(loop, t) for t in traces]
        started = time.perf_counter()
        losses = sft_fit(
            policy.model,
            encoded,
            epochs=int(cfg.sft.get("epochs", 2)),
            lr=float(cfg.sft.get("lr", 5e-5)),
            batch_size=int(cfg.sft.get("batch_size", 4)),
            pad_id=policy.pad_id,
            log=log,
        )
        save_atomically(out / "sft", policy.model.save_pretrained, policy.tokenizer.save_pretrained)
        saved.append("sft/ (the SFT warm-up)")
        summary["sft"] = {
            "traces": len(traces),
            "dropped": len(failed),
            "routed": sum(len(t.pieces) > 1 for t in traces),
            "trace_s": trace_s,
            "train_s": time.perf_counter() - started,
            "losses": losses,
        }
        log(f"sft: {len(traces)} traces ({trace_s:.0f}s), {len(losses)} steps, last loss {losses[-1]:.3f}")
    if sft_only:
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary

    # GRPO starts from a directory, so that TRL's reference model (loaded from the policy's
    # config path) is the very policy being trained: the SFT output, or the base model saved once.
    start = (
        out / "sft"
        if cfg.sft.get("enabled", True)
        else Path(cfg.policy)
        if cfg.policy and Path(cfg.policy).is_dir()
        else None
    )
    if start is None:
        start = out / "base"
        policy.model.save_pretrained(start)
        policy.tokenizer.save_pretrained(start)
    policy = HFPolicy.load(start)
    summary["grpo_start"] = str(start)

    names = [c.id for c in pool]
    dataset = Dataset.from_list(
        [{"prompt": r["question"], "answer": r["answer"], "agents": names} for r in train_rows]
    )
    reward = RouterR1Reward(alpha=float(cfg.reward.get("alpha", 0.0)), metric=cfg.reward.get("metric", "em"))
    rollout = RouterR1Rollout(pool, router, settings, budget)
    args = cfg.grpo_args(out / "grpo", use_cpu=not gpu)
    args.reward_weights = [1.0, 0.0]
    policy.model.train()
    # TRL types a reward function's result as list[float | None]; ours never abstain (list[float]),
    # which list's invariance refuses: a gap of TRL's annotation, not of the functions
    reward_funcs = [reward, format_valid_reward]
    trainer = GRPOTrainer(
        model=policy.model,
        reward_funcs=reward_funcs,  # type: ignore[arg-type]
        args=args,
        train_dataset=dataset,  # type: ignore[arg-type]
        processing_class=policy.tokenizer,
        rollout_func=rollout,
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(last_grpo_checkpoint(out / "grpo")) if resume else None)
    grpo_s = time.perf_counter() - started
    save_atomically(
        out / "policy", lambda folder: trainer.save_model(str(folder)), policy.tokenizer.save_pretrained
    )
    saved.append("policy/ (the GRPO policy)")
    steps = max(1, trainer.state.global_step)
    summary["grpo"] = {
        "steps": trainer.state.global_step,
        "seconds": grpo_s,
        "seconds_per_step": grpo_s / steps,
        "rollout_seconds": rollout.seconds,
        "log_history": trainer.state.log_history,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    log(
        f"grpo: {trainer.state.global_step} steps in {grpo_s:.0f}s ({grpo_s / steps:.1f}s/step); policy → {out / 'policy'}"
    )
    return summary


class TrainingInterrupted(KeyboardInterrupt):
    """A Ctrl-C (or, ``terminated``, a SIGTERM) during :func:`train_router_r1`; ``saved``: the
    folders this run had finished writing."""

    def __init__(self, saved: list[str], *, terminated: bool = False):
        super().__init__(saved)
        self.saved, self.terminated = list(saved), terminated
