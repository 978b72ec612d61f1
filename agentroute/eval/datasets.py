"""Logged-outcome routing datasets: queries × models → score and cost, with train/test splits.

Three public formats load into one :class:`RoutingDataset`:

- **RouterBench** (Hu et al., arXiv 2403.12031) wide format: ``sample_id, prompt, eval_name``, one
  0/1 column per model, ``<model>|model_response`` and ``<model>|total_cost`` (USD per query). A
  folder of ``<task>_train.csv``/``<task>_test.csv``, or one ``.csv``/``.parquet`` file (no split:
  seeded). The original ``.pkl`` is refused — reading a pickle runs code — with how to convert it.
- **LLMRouter dcrouter** (ulab-uiuc/LLMRouter): ``dcrouter_preprocessed/{train,test}.json`` with
  per-model scores in [0, 1], joined on the question text with
  ``example_data/query_data/default_query_*.jsonl`` (task names, gold answers) and priced from
  ``example_data/llm_candidates/default_llm.json``. No costs are logged: a query's cost is
  estimated as (prompt tokens × input price + ``output_tokens`` × output price) / 1e6 with a real
  tokenizer (:mod:`agentroute.eval.tokens`); ``notes`` say which tokenizer and output length.
- **RouteLLM MMLU** (Ong et al., arXiv 2406.18665): per-subject CSVs ``prompt, <model>, <model>``
  (True/False). Costs from the prices given (default RouteLLM's GPT-4 $10/$30 and Mixtral
  $0.24/$0.24 per M tokens) as for dcrouter; no split ships, so a seeded one is drawn (a prompt
  that appears twice lands on one side only).

- **outcomes** (agentroute's own long format, ``outcomes:PATH``; see ``docs/outcomes.md``): one row
  per query × agent — ``query_id, query, agent`` (or ``model``), ``score``, ``cost_usd`` (or
  ``tokens_in, tokens_out`` with ``input_price, output_price`` per 1M tokens), optional ``task``,
  ``split``, ``response`` — from JSONL, CSV or Parquet. What ``agentroute memory export --format
  outcomes`` writes.

Rows with an empty outcome cell (score or cost) are dropped whole and counted, never scored 0.
Every kind takes ``limit=N`` (at most N queries per split) and ``sample=FRACTION`` (that share of
each split), both a seeded random subset, recorded in ``notes``.
Files are read as untrusted data: no loader unpickles or evaluates anything, and a file that is
binary, not UTF-8, a directory or malformed raises :class:`~agentroute.errors.DatasetError` naming it.
Each loader also takes ``"hf:<dataset id>"`` (read through ``datasets.load_dataset``) for users
with hub access.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import numbers
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agentroute._optional import require
from agentroute.budget import check_amount
from agentroute.errors import ConfigurationError, DatasetError, UnknownNameError
from agentroute.eval.tokens import TokenCounter, default_token_counter
from agentroute.outcomes import MAX_COST_USD, OutcomeTable, bad_costs, borrowed_query_ids, column_agent
from agentroute.pool.backends.replay import LoggedOutcome, ReplayBackend
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.training.provenance import text_key

Split = Literal["train", "test"]
Prices = Mapping[str, tuple[float, float]]

#: RouteLLM's prices (USD per 1M input/output tokens) for its two MMLU models.
ROUTELLM_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.24, 0.24),
}
#: Output tokens assumed per call when a dataset logs no costs.
DEFAULT_OUTPUT_TOKENS = 256
#: Default subfolders of ``$AGENTROUTE_DATA`` for a bare dataset kind (``--dataset routerbench``).
DEFAULT_DIRS = {
    "routerbench": "routerbench",
    "dcrouter": "llmrouter",
    "routellm-mmlu": "routellm/mmlu_responses",
}


def data_root() -> Path:
    """``$AGENTROUTE_DATA``, else ``shared/data`` beside the checkout."""
    env = os.environ.get("AGENTROUTE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass
class RoutingDataset:
    """A logged-outcome dataset with its train and test :class:`OutcomeTable`.

    ``prices`` (USD per 1M tokens, by model) are set when costs were estimated from prices; then
    ``output_tokens`` and ``token_counter`` are the assumption and the tokenizer used. ``notes``
    record provenance, drops and assumptions, and go into every evaluation's output.
    """

    name: str
    train: OutcomeTable
    test: OutcomeTable
    dropped_rows: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    output_tokens: int | None = None
    token_counter: TokenCounter | None = field(default=None, repr=False)
    descriptions: dict[str, str] = field(default_factory=dict)
    _tokens: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _cards: dict[str, ModelCard] = field(default_factory=dict, repr=False)

    @property
    def models(self) -> list[str]:
        return list(self.test.models)

    def table(self, split: Split) -> OutcomeTable:
        if split not in ("train", "test"):
            raise ConfigurationError(f"split must be 'train' or 'test' (got {split!r})")
        return self.train if split == "train" else self.test

    def prompt_tokens(self, split: Split) -> np.ndarray:
        """Prompt token counts of a split (the dataset's tokenizer, else MiniLM's)."""
        if split not in self._tokens:
            counter = self.token_counter or default_token_counter()
            self._tokens[split] = counter.count(self.table(split).queries)
        return self._tokens[split]

    def cards(self) -> dict[str, ModelCard]:
        """Replay model cards, tiered by price. Datasets with logged costs only get an effective flat
        price per token (:meth:`_effective_prices`): a description of the data, not a price list."""
        if not self._cards:
            self._cards = self._make_cards()
        return dict(self._cards)

    def _make_cards(self) -> dict[str, ModelCard]:
        prices = dict(self.prices) or self._effective_prices()
        order = sorted(prices, key=lambda m: sum(prices[m]))
        tiers = {
            m: ("small", "medium", "large")[min(2, 3 * r // max(1, len(order)))] for r, m in enumerate(order)
        }
        return {
            m: ModelCard(
                id=m,
                backend="replay",
                input_price=p_in,
                output_price=p_out,
                tier=tiers[m],  # type: ignore[arg-type]
                description=self.descriptions.get(m, ""),
            )
            for m, (p_in, p_out) in prices.items()
        }

    def _effective_prices(self, sample: int = 400) -> dict[str, tuple[float, float]]:
        """Mean train cost ÷ mean (prompt + response) tokens per model, tokens counted on a seeded
        sample of ``sample`` train rows (the full count costs seconds and changes little)."""
        table = self.train
        counter = self.token_counter or default_token_counter()
        rows = np.sort(np.random.default_rng(0).permutation(len(table))[:sample])
        prompt = counter.count([table.queries[i] for i in rows]).astype(float)
        out: dict[str, tuple[float, float]] = {}
        for j, model in enumerate(table.models):
            resp = counter.count([table.responses[i][j] for i in rows]) if table.responses is not None else 0
            tokens = float(np.mean(prompt + resp))
            price = float(np.nanmean(table.costs[:, j]) / max(1.0, tokens) * 1e6)
            out[model] = (price, price)
        return out

    def replay_pool(self, split: Split = "test") -> ModelPool:
        """A :class:`ModelPool` of replay cards whose backend serves this split's logged outcomes.

        Requests name their query by ``query_id`` (the table's ids); missing cells are not served.
        """
        table = self.table(split)
        tokens = self.prompt_tokens(split)
        outcomes = [
            LoggedOutcome(
                query_id=table.query_ids[i],
                model=model,
                score=float(table.scores[i, j]),
                cost_usd=float(table.costs[i, j]),
                response=table.responses[i][j] if table.responses is not None else "",
                tokens_in=int(tokens[i]),
                tokens_out=self.output_tokens or 0,
            )
            for i in range(len(table))
            for j, model in enumerate(table.models)
            if not np.isnan(table.scores[i, j])
        ]
        return ModelPool(self.cards().values(), backends={"replay": ReplayBackend(outcomes)})

    def summary(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "dropped_rows": self.dropped_rows,
            "models": self.models,
            "notes": self.notes,
        }


# -- spec ------------------------------------------------------------------------------------------
def dataset_kinds() -> list[str]:
    return sorted(_LOADERS)


def check_seed(seed: object) -> None:
    """A seed is a non-negative integer (numpy's generators refuse anything else)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigurationError(f"seed must be a non-negative integer (got {seed!r})")


def load_dataset(
    spec: str,
    *,
    seed: int | None = None,
    limit: int | None = None,
    sample: float | None = None,
    **options: Any,
) -> RoutingDataset:
    """Load ``KIND:PATH`` (``routerbench:DIR``, ``dcrouter:DIR``, ``routellm-mmlu:DIR``,
    ``outcomes:FILE``, or ``KIND:hf:ID``); a bare ``KIND`` reads its default folder under
    :func:`data_root`, a bare ``.csv``/``.jsonl``/``.parquet`` file is ``outcomes:FILE``.

    ``seed`` goes to loaders that draw a split (RouteLLM MMLU, the RouterBench ``.pkl``,
    outcomes without a ``split`` column) and to the subset; ``limit``/``sample`` keep a seeded
    random subset of each split (:func:`subsample`); ``options`` go to the loader (e.g.
    ``output_tokens=`` for dcrouter).
    """
    if seed is not None:
        check_seed(seed)
    return _load(spec, seed=seed, limit=limit, sample=sample, **options)


def dataset_kind(spec: str) -> str:
    """The kind a dataset spec loads as: its ``KIND:`` prefix, ``outcomes`` for a bare
    ``.csv``/``.jsonl``/``.parquet`` file (``logs.csv`` is ``outcomes:logs.csv``), else the spec's
    first part (an unknown kind, which :func:`load_dataset` refuses)."""
    kind = spec.partition(":")[0]
    return "outcomes" if kind not in _LOADERS and Path(spec).suffix.lower() in OUTCOME_SUFFIXES else kind


def row_notes(notes: Mapping[str, Any]) -> list[str]:
    """What an outcomes file's loading did to its rows, in words (none for a clean file): rows
    dropped for lacking an outcome (never scored 0) and repeated (query, agent) rows averaged."""
    said = []
    if notes.get("dropped_rows_without_outcome"):
        said.append(
            f"{notes['dropped_rows_without_outcome']} rows without a query, agent, score or cost dropped"
        )
    if notes.get("repeated_rows_averaged"):
        said.append(
            f"{notes['repeated_rows_averaged']} repeated (query, agent) rows averaged into one outcome each"
        )
    if notes.get("agent_spellings"):
        said.append(f"warning: {notes['agent_spellings']}")
    return said


def subsample(
    data: RoutingDataset, *, limit: int | None = None, sample: float | None = None, seed: int = 0
) -> RoutingDataset:
    """A seeded random subset of each split: ``sample`` (a fraction in (0, 1]) of its queries,
    then at most ``limit`` of them. Query order within a split is kept; ``notes["subset"]`` says
    what was kept.

    >>> from agentroute.outcomes import OutcomeTable
    >>> t = OutcomeTable([str(i) for i in range(10)], [f"q{i}" for i in range(10)], ["m"], np.ones((10, 1)), np.ones((10, 1)))
    >>> d = subsample(RoutingDataset("x", t, t), limit=3)
    >>> len(d.train), len(d.test), d.notes["subset"]
    (3, 3, 'seeded random subset (seed 0): limit 3 per split; train 10 → 3, test 10 → 3')
    """
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise ConfigurationError(f"limit must be a positive number of queries (got {limit!r})")
    if sample is not None and not 0.0 < float(sample) <= 1.0:
        raise ConfigurationError(f"sample must be a fraction in (0, 1] (got {sample!r})")
    tables, sizes = {}, []
    for k, split in enumerate(("train", "test")):
        table = data.table(split)  # type: ignore[arg-type]
        n = len(table)
        keep = n if sample is None else max(1, int(round(float(sample) * n)))
        keep = min(keep, int(limit)) if limit is not None else keep
        order = np.random.default_rng([seed, k]).permutation(n)[:keep]
        tables[split] = table.rows(np.sort(order)) if keep < n else table
        sizes.append(f"{split} {n} → {len(tables[split])}")
    what = "; ".join(
        x
        for x in (
            f"sample {sample:g}" if sample is not None else "",
            f"limit {limit} per split" if limit is not None else "",
        )
        if x
    )
    notes = {**data.notes, "subset": f"seeded random subset (seed {seed}): {what}; {', '.join(sizes)}"}
    logged = ~np.isnan(tables["train"].scores).all(axis=0)  # sparse (bandit) train rows: an agent may vanish
    if not logged.all():
        gone = [m for m, ok in zip(tables["train"].models, logged, strict=True) if not ok]
        if not logged.any():
            raise ConfigurationError("the subset keeps no train outcome: raise the limit or the sample")
        tables = {split: t.columns(np.flatnonzero(logged)) for split, t in tables.items()}
        left = f"left out of the subset: {', '.join(gone)} (no train outcome in it)"
        notes["models_dropped"] = f"{notes['models_dropped']}; {left}" if "models_dropped" in notes else left
    return RoutingDataset(
        data.name, tables["train"], tables["test"], data.dropped_rows, notes, dict(data.prices),
        data.output_tokens, data.token_counter, dict(data.descriptions),
    )  # fmt: skip


def _load(
    spec: str,
    *,
    seed: int | None = None,
    limit: int | None = None,
    sample: float | None = None,
    **options: Any,
) -> RoutingDataset:
    """The loader of ``spec`` with ``options``, then :func:`subsample` (a loader taking ``limit``
    subsamples itself, before its costly parsing)."""
    kind, _, path = spec.partition(":")
    if dataset_kind(spec) != kind:
        kind, path = "outcomes", spec  # a bare file: the user's own logs
    if kind not in _LOADERS:
        _check_not_a_file(spec)
        raise UnknownNameError("dataset", kind, dataset_kinds())
    if not path:
        if kind not in DEFAULT_DIRS:
            raise ConfigurationError(f"dataset {kind!r} needs a path: {kind}:FILE")
        path = str(data_root() / DEFAULT_DIRS[kind])
    loader = _LOADERS[kind]
    accepted = inspect.signature(loader).parameters
    if seed is not None and "seed" in accepted:
        options["seed"] = seed
    takes = sorted(set(list(accepted)[1:]) - {"limit", "sample"})  # the path, and load_dataset's own
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise ConfigurationError(f"dataset {kind!r} takes no option {unknown}; it takes {takes}")
    if "limit" in accepted:
        return loader(path, **options, limit=limit, sample=sample)
    data = loader(path, **options)
    return (
        data
        if limit is None and sample is None
        else subsample(data, limit=limit, sample=sample, seed=seed or 0)
    )


def _check_not_a_file(spec: str) -> None:
    """Say what to pass when a dataset spec that names no kind is a folder or a file of another
    format (a user's logs: ``--dataset logs/``, ``--dataset logs.xlsx``), not an unknown kind."""
    p = Path(spec).expanduser()
    if p.is_dir():
        raise DatasetError(
            f"{spec}: a folder, not an outcomes file: pass the file in it (outcomes:{spec.rstrip('/')}/FILE.csv), "
            f"or a dataset kind with the folder ({', '.join(f'{k}:{spec}' for k in sorted(DEFAULT_DIRS))})"
        )
    if p.suffix and p.is_file():
        raise DatasetError(
            f"{spec}: an outcomes file is .csv, .tsv, .jsonl or .parquet (not {p.suffix}); export it as CSV "
            "(docs/outcomes.md), or name a dataset kind (KIND:PATH)"
        )


# -- RouterBench ------------------------------------------------------------------------------------
def load_routerbench(
    path: str | Path,
    *,
    test_fraction: float = 0.3,
    seed: int = 0,
    limit: int | None = None,
    sample: float | None = None,
) -> RoutingDataset:
    """RouterBench wide format: a folder of ``<task>_{train,test}.csv``, one ``.csv``/``.parquet``
    file, or ``hf:ID``.

    A source without a split (one file) is split at random with ``seed`` and ``test_fraction``.
    Prompts stored as a Python list literal are joined with newlines (parsed as literals, never
    run). The original release is a pandas pickle; it is refused, because unpickling a file runs
    whatever code it holds: convert it once, where you trust it, with
    ``pd.read_pickle("routerbench_0shot.pkl").to_parquet("routerbench_0shot.parquet")``.

    Args:
        path: the folder, a ``.csv`` or ``.parquet`` file, or ``"hf:withmartian/routerbench"``.
        test_fraction: test share when the source ships no split.
        seed: the seed of that split, and of the subset.
        limit, sample: keep a seeded random subset of each split (:func:`subsample`); the model
            responses, most of the parsing, are then parsed for the kept rows only.
    """
    pd = require("pandas")
    notes: dict[str, Any] = {"format": "routerbench", "source": str(path), "cost": "logged USD per query"}
    if str(path).startswith("hf:"):
        frames = _hf_frames(str(path)[3:])
    else:
        p = _existing(
            path, "a RouterBench folder of <task>_train.csv/<task>_test.csv, or one .csv/.parquet file"
        )
        if p.is_file():
            frames = {"all": _read_table_file(p)}
        else:
            frames = {}
            for split in ("train", "test"):
                files = sorted(f for f in p.glob(f"*_{split}.csv") if f.is_file())
                if files:
                    parts = [_read_csv(f).assign(_task=f.stem[: -len(split) - 1]) for f in files]
                    frames[split] = pd.concat(parts, ignore_index=True)
            if set(frames) != {"train", "test"}:
                raise DatasetError(
                    f"{p}: expected <task>_train.csv and <task>_test.csv files (RouterBench format)"
                )
    tables, dropped = {}, {}
    seen: dict[str, int] = {}
    for split, frame in frames.items():
        tables[split], dropped[split] = _routerbench_table(frame, seen)
    if "all" in tables:
        test, train = tables.pop("all").split(test_fraction, seed=seed)
        tables = {"train": train, "test": test}
        notes["split"] = f"seeded random split (seed {seed}, test fraction {test_fraction})"
    elif set(tables) != {"train", "test"}:
        tables["test"], tables["train"] = tables.pop(next(iter(tables))).split(test_fraction, seed=seed)
        notes["split"] = f"seeded random split (seed {seed}, test fraction {test_fraction})"
    _same_models(tables["train"], tables["test"], path)
    notes["dropped_by_split"] = dropped
    data = RoutingDataset("routerbench", tables["train"], tables["test"], sum(dropped.values()), notes)
    if limit is not None or sample is not None:
        data = subsample(data, limit=limit, sample=sample, seed=seed)
    data.train, data.test = _parsed_responses(data.train), _parsed_responses(data.test)
    return data


def _routerbench_table(frame: Any, seen: dict[str, int]) -> tuple[OutcomeTable, int]:
    models = [c for c in frame.columns if "|" not in c and f"{c}|total_cost" in frame.columns]
    if not models or "prompt" not in frame.columns:
        raise DatasetError(
            "expected RouterBench columns: prompt, <model>, <model>|total_cost (found "
            f"{list(frame.columns)[:8]}…)"
        )
    cost_cols = [f"{m}|total_cost" for m in models]
    resp_cols = [f"{m}|model_response" for m in models]
    complete = frame[models + cost_cols + ["prompt"]].notna().all(axis=1).to_numpy()
    frame = frame[complete].reset_index(drop=True)
    tasks = frame["eval_name"] if "eval_name" in frame.columns else frame.get("_task")
    ids = frame["sample_id"].astype(str).tolist() if "sample_id" in frame.columns else [None] * len(frame)
    responses = None
    if all(c in frame.columns for c in resp_cols):  # raw cells: parsed once subsampled (_parsed_responses)
        responses = frame[resp_cols].fillna("").astype(str).values.tolist()
    table = OutcomeTable(
        query_ids=[_unique_id(qid or _text_id(q), seen) for qid, q in zip(ids, frame["prompt"], strict=True)],
        queries=[_listed_text(q) for q in frame["prompt"]],
        models=models,
        scores=frame[models].to_numpy(dtype=float),
        costs=frame[cost_cols].to_numpy(dtype=float),
        task_types=[
            None if t is None else str(t) for t in (tasks if tasks is not None else [None] * len(frame))
        ],
        responses=responses,
    )
    return table, int((~complete).sum())


def _parsed_responses(table: OutcomeTable) -> OutcomeTable:
    """``table`` with its raw RouterBench response cells as text (:func:`_listed_text`)."""
    if table.responses is None:
        return table
    return dataclasses.replace(table, responses=[[_listed_text(r) for r in row] for row in table.responses])


def _listed_text(cell: Any) -> str:
    """A RouterBench prompt or response cell as text: the CSVs store ``str(list)`` of its parts
    (``"['B\\n']"``), which is unwrapped and joined; any other text is kept as it is."""
    text = str(cell)
    if text.startswith("[") and text.endswith("]"):
        try:
            parts = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(parts, list):
            return "\n".join(str(p) for p in parts)
    return text


# -- LLMRouter dcrouter -----------------------------------------------------------------------------
def load_dcrouter(
    path: str | Path,
    *,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    tokenizer: str | Path | None = None,
    prices: Prices | None = None,
) -> RoutingDataset:
    """LLMRouter's dcrouter split joined with its query files and priced per query.

    Args:
        path: the ``llmrouter`` folder (holding ``dcrouter_preprocessed/`` and ``example_data/``),
            or ``"hf:ID"`` (splits with ``question``, ``scores`` and optionally ``task_name``;
            then ``prices`` are required).
        output_tokens: output tokens assumed per call (the logs have none).
        tokenizer: a ``tokenizer.json`` or its folder to count prompt tokens; default MiniLM's.
        prices: USD per 1M (input, output) tokens by model; default ``default_llm.json``'s.
    """
    if output_tokens < 0:
        raise ConfigurationError(f"output_tokens must be >= 0 (got {output_tokens})")
    notes: dict[str, Any] = {"format": "dcrouter", "source": str(path)}
    records: dict[str, list[dict[str, Any]]] = {}
    descriptions: dict[str, str] = {}
    queries: dict[str, dict[str, dict[str, Any]]] = {"train": {}, "test": {}}
    if str(path).startswith("hf:"):
        for split, frame in _hf_frames(str(path)[3:]).items():
            records[split] = frame.to_dict("records")
        if prices is None:
            raise ConfigurationError(
                "a dcrouter dataset from the hub needs prices= (USD per 1M tokens by model)"
            )
    else:
        root = _existing(path, "the llmrouter folder with dcrouter_preprocessed/ and example_data/")
        expected = [
            "dcrouter_preprocessed/train.json",
            "dcrouter_preprocessed/test.json",
            "example_data/query_data/default_query_train.jsonl",
            "example_data/query_data/default_query_test.jsonl",
            "example_data/llm_candidates/default_llm.json",
        ]
        missing = [e for e in expected if not (root / e).is_file()]
        if missing:
            raise DatasetError(f"{root}: missing {', '.join(missing)} (LLMRouter dcrouter layout)")
        for split in ("train", "test"):
            records[split] = _read_json(root / f"dcrouter_preprocessed/{split}.json", list)
            query_file = root / f"example_data/query_data/default_query_{split}.jsonl"
            for number, line in enumerate(
                _read_text(query_file).split("\n"), 1
            ):  # not splitlines: U+2028 is text
                if line.strip():
                    row = _parse_json(line, f"{query_file} line {number}")
                    if isinstance(row, dict) and isinstance(row.get("query"), str):
                        queries[split].setdefault(row["query"], row)
        llms = _read_json(root / "example_data/llm_candidates/default_llm.json", dict)
        descriptions = {m: str(c.get("feature", "")) for m, c in llms.items()}
        if prices is None:
            prices = {m: _card_prices(m, c, root) for m, c in llms.items()}
    if set(records) != {"train", "test"}:
        raise DatasetError(f"{path}: expected a train and a test split (found {sorted(records)})")
    first = records["train"][0] if records["train"] else None
    if not isinstance(first, dict) or not isinstance(first.get("scores"), dict):
        raise DatasetError(f"{path}: expected dcrouter records {{question, scores: {{model: score}}}}")
    models = list(first["scores"])
    _check_prices(models, prices)
    counter = TokenCounter(tokenizer) if tokenizer else default_token_counter()
    tables: dict[str, OutcomeTable] = {}
    dropped: dict[str, int] = {}
    unjoined = 0
    for split, rows in records.items():
        other = "test" if split == "train" else "train"
        texts, tasks, gold, scores = [], [], [], []
        for row in rows:
            cells = [_float(row.get("scores", {}).get(m)) for m in models]
            if any(np.isnan(c) for c in cells) or not row.get("question"):
                dropped[split] = dropped.get(split, 0) + 1
                continue
            q = row["question"]
            meta = queries[split].get(q) or queries[other].get(q) or {}
            unjoined += not meta
            texts.append(q)
            tasks.append(meta.get("task_name", row.get("task_name")))
            gold.append(None if meta.get("ground_truth") is None else str(meta["ground_truth"]))
            scores.append(cells)
        dropped.setdefault(split, 0)
        tables[split] = _priced_table(
            split, texts, tasks, gold, np.array(scores), models, prices, counter, output_tokens
        )
    notes.update(_price_notes(counter, output_tokens), dropped_by_split=dropped, unjoined_queries=unjoined)
    return RoutingDataset(
        "dcrouter", tables["train"], tables["test"], sum(dropped.values()), notes,
        dict(prices), output_tokens, counter, descriptions,
    )  # fmt: skip


# -- RouteLLM MMLU ----------------------------------------------------------------------------------
def load_routellm_mmlu(
    path: str | Path,
    *,
    prices: Prices | None = None,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    tokenizer: str | Path | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> RoutingDataset:
    """RouteLLM's MMLU responses of two models, priced per query, split at random with ``seed``.

    The data ships no split (RouteLLM trains on Chatbot Arena and tests on all of MMLU), so a
    seeded split grouped by prompt text keeps duplicates on one side.

    Args:
        path: the ``mmlu_responses`` folder of ``mmlu_<subject>.csv`` (or its parent), or ``"hf:ID"``.
        prices: USD per 1M (input, output) tokens by model; default :data:`ROUTELLM_PRICES`.
        output_tokens: output tokens assumed per call.
        tokenizer: a ``tokenizer.json`` or its folder; default MiniLM's.
        test_fraction: share of distinct prompts in test.
        seed: the split's seed.
    """
    pd = require("pandas")
    prices = dict(prices or ROUTELLM_PRICES)
    notes: dict[str, Any] = {"format": "routellm-mmlu", "source": str(path)}
    if str(path).startswith("hf:"):
        frame = pd.concat(list(_hf_frames(str(path)[3:]).values()), ignore_index=True)
        if "subject" not in frame.columns:
            frame["subject"] = None
    else:
        root = _existing(path, "RouteLLM's mmlu_responses folder of mmlu_<subject>.csv files")
        if (root / "mmlu_responses").is_dir():
            root = root / "mmlu_responses"
        files = sorted(f for f in root.glob("mmlu_*.csv") if f.is_file())
        if not files:
            raise DatasetError(f"{root}: expected mmlu_<subject>.csv files (RouteLLM MMLU responses)")
        frame = pd.concat(
            [_read_csv(f).assign(subject=f.stem.removeprefix("mmlu_")) for f in files], ignore_index=True
        )
    models = [c for c in frame.columns if c not in ("prompt", "subject")]
    if "prompt" not in frame.columns or len(models) < 2:
        raise DatasetError(f"{path}: expected columns prompt, <model>, <model> (found {list(frame.columns)})")
    _check_prices(models, prices)
    values = frame[models].apply(lambda col: col.map(_bool_score)).to_numpy(dtype=float)
    complete = ~np.isnan(values).any(axis=1) & frame["prompt"].notna().to_numpy()
    frame, values = frame[complete].reset_index(drop=True), values[complete]
    prompts = frame["prompt"].astype(str).tolist()
    distinct = sorted(set(prompts), key=_text_id)
    order = np.random.default_rng(seed).permutation(len(distinct))
    test_prompts = {distinct[k] for k in order[: int(round(test_fraction * len(distinct)))]}
    counter = TokenCounter(tokenizer) if tokenizer else default_token_counter()
    subjects = frame["subject"].tolist()
    tables = {}
    for split in ("train", "test"):
        idx = [i for i, p in enumerate(prompts) if (p in test_prompts) == (split == "test")]
        tables[split] = _priced_table(
            split, [prompts[i] for i in idx], [subjects[i] for i in idx], None, values[idx],
            models, prices, counter, output_tokens,
        )  # fmt: skip
    notes.update(
        _price_notes(counter, output_tokens),
        split=f"seeded split by distinct prompt (seed {seed}, test fraction {test_fraction}); none ships",
        dropped_by_split={"all": int((~complete).sum())},
    )
    return RoutingDataset(
        "routellm-mmlu", tables["train"], tables["test"], int((~complete).sum()), notes,
        prices, output_tokens, counter,
    )  # fmt: skip


# -- agentroute's long format ------------------------------------------------------------------------
#: The files :func:`load_outcomes` reads; ``load_dataset("logs.csv")`` (no ``KIND:``) is ``outcomes:logs.csv``.
OUTCOME_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".txt", ".parquet"})
#: Score handling of :func:`load_outcomes` when a score lies outside [0, 1].
RESCALE_MODES = ("auto", "none", "minmax", "clip")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "train", "valid": "train", "validation": "train",
                "dev": "train", "test": "test", "eval": "test", "evaluation": "test"}  # fmt: skip


def load_outcomes(
    path: str | Path,
    *,
    test_fraction: float = 0.3,
    seed: int = 0,
    rescale: str = "auto",
    prices: Prices | None = None,
    require_test: bool = True,
) -> RoutingDataset:
    """agentroute's long logged-outcome format (one row per query × agent) from JSONL, CSV or Parquet.

    Columns (``docs/outcomes.md``): ``query`` (required), ``query_id`` (default: a hash of the
    query), ``agent`` or ``model`` (an agent key ``role:model:strategy``, ``model:strategy`` or a
    model id), ``score``, and ``cost_usd`` — or ``tokens_in``, ``tokens_out`` priced by
    ``input_price``/``output_price`` columns or ``prices`` (USD per 1M tokens by model). Optional:
    ``task``, ``split`` (train/test; validation and dev count as train), ``response``. Column
    names ignore case and blanks (``Cost USD`` is ``cost_usd``); a CSV file is separated by commas
    (``.tsv``: tabs). Repeated (query, agent) rows are averaged (``notes["repeated_rows_averaged"]``).
    Empty cells are missing (never 0); a score may be ``yes``/``no``, ``true``/``false``,
    ``pass``/``fail``, ``correct``/``incorrect``; any other cell that is not a number (``1,5``, ``$0.01``) is refused, naming the file, row and column.

    Train keeps missing cells (bandit logs: one agent per query, learnable from); test keeps only
    queries with every agent's outcome, since replaying another router's choice needs it — a log
    with none is refused with a pointer to counterfactual evaluation (``require_test=False``, as
    ``agentroute train`` loads it: every query goes to train and test is empty).

    Args:
        path: a ``.jsonl``/``.json``, ``.csv`` or ``.parquet`` file.
        test_fraction: test share of a seeded split by query when there is no ``split`` column.
        seed: that split's seed.
        rescale: scores outside [0, 1]: ``auto`` (default) min-max rescales the file's scores to
            [0, 1] only when some lie outside it; ``minmax`` always; ``clip`` clips; ``none`` keeps
            them as given. What was done is in ``notes["scores"]``.
        prices: USD per 1M (input, output) tokens by model, for rows priced by tokens.
        require_test: refuse a file without a replayable test split (evaluation needs one).
    """
    pd = require("pandas")
    if rescale not in RESCALE_MODES:
        raise ConfigurationError(f"rescale must be one of {list(RESCALE_MODES)} (got {rescale!r})")
    p = _existing(path, "an outcomes file (.jsonl, .csv or .parquet)")
    if p.is_dir():
        raise DatasetError(f"{p}: a directory; expected an outcomes file (.jsonl, .csv or .parquet)")
    if p.suffix.lower() not in OUTCOME_SUFFIXES | PICKLE_SUFFIXES:
        raise DatasetError(
            f"{p}: expected an outcomes file (.jsonl, .csv or .parquet), got {p.suffix or 'no suffix'!r}"
        )
    if p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        frame = pd.DataFrame(_json_rows(p))
    else:
        frame = _read_table_file(p)
    frame = _outcome_column_names(_plain_cells(frame), p)
    notes: dict[str, Any] = {"format": "outcomes", "source": str(p)}
    agent_col = "agent" if "agent" in frame.columns else "model" if "model" in frame.columns else None
    if len(frame) == 0:
        raise DatasetError(f"{p}: no outcome rows; expected one row per query × agent (docs/outcomes.md)")
    missing = [c for c in ("query", "score") if c not in frame.columns] + (
        [] if agent_col else ["agent or model"]
    )
    if missing:
        found = [str(c) for c in frame.columns]
        raise DatasetError(
            f"{p}: expected outcome rows with columns query, agent (or model), score, cost_usd; missing {missing} "
            f"(the file's columns: {_cap(found, 160)}; docs/outcomes.md){_rename_hint(found)}{_separator_hint(found)}"
            f"{_wide_hint(found) if not agent_col else ''}"
        )
    frame = frame.reset_index(drop=True)
    for column in ("query", agent_col, "query_id"):
        _check_text_cells(frame, column, p)
    frame["_agent"] = [_outcome_column(a) for a in frame[agent_col]]
    frame["_score"] = _numbers(frame, "score", p, words=_SCORE_WORDS)
    if "propensity" in frame.columns:  # not a probability (text, ≤ 0, > 1): missing, as if not logged
        frame["propensity"] = pd.to_numeric(frame["propensity"], errors="coerce")
    frame["_cost"] = _outcome_costs(frame, prices, p, notes)
    if "query_id" not in frame.columns:
        frame["query_id"] = None
    frame["_qid"] = _query_ids(frame)
    blank = frame["query"].isna() | (frame["query"].astype(str).str.strip() == "")
    bad = frame["_score"].isna() | frame["_cost"].isna() | blank | (frame["_agent"] == "")
    dropped = int(bad.sum())
    if bad.all():
        raise DatasetError(
            f"{p}: no row has a query, an agent, a score and a cost (row 1: {_missing_outcome(frame.iloc[0])})"
        )
    frame = frame[~bad].reset_index(drop=True)
    text = frame["query"].astype(str).str.strip()
    several = text.groupby(frame["_qid"], sort=False).nunique()
    if (several > 1).any():  # its rows would be averaged into one query, shown to routers as the first text
        qid = several.index[several.to_numpy() > 1][0]
        seen = list(dict.fromkeys(text[frame["_qid"] == qid]))
        raise DatasetError(
            f"{p}: query_id {qid!r} names different queries ({_cap(seen[0], 60)!r}, {_cap(seen[1], 60)!r}): a "
            "query_id groups the rows of one query; fix the ids, or drop the column to group by query text"
        )
    if rescale != "none":
        lo, hi = float(frame["_score"].min()), float(frame["_score"].max())
        outside = lo < 0.0 or hi > 1.0
        if rescale == "clip" and outside:
            frame["_score"] = frame["_score"].clip(0.0, 1.0)
            notes["scores"] = f"clipped from [{lo:g}, {hi:g}] to [0, 1]"
        elif (rescale == "minmax" or (rescale == "auto" and outside)) and hi > lo:
            frame["_score"] = (frame["_score"] - lo) / (hi - lo)
            notes["scores"] = f"rescaled (min-max) from [{lo:g}, {hi:g}] to [0, 1]"
    notes.setdefault("scores", "as given")
    split_of = _outcome_splits(frame, test_fraction, seed, notes, require_test)
    if not require_test and not len(
        _outcome_tables(frame, list(dict.fromkeys(frame["_agent"])), split_of)["test"]
    ):
        split_of = dict.fromkeys(split_of, "train")
        notes["split"] = "all train: no test query has every agent's outcome (bandit logs)"
    _note_agent_spellings(list(dict.fromkeys(frame["_agent"])), notes)
    models = _outcome_models(frame, split_of, require_test, notes)
    tables = _outcome_tables(frame, models, split_of)
    incomplete = tables.pop("_incomplete")  # type: ignore[arg-type]
    lacking = tables.pop("_lacking", "")
    if not len(tables["test"]) and require_test:
        raise DatasetError(
            f"{p}: no test query has every agent's outcome ({incomplete} incomplete): {_BANDIT_HINT}"
            f"{_per_call_ids_hint(frame)}{'. ' + notes['agent_spellings'] if 'agent_spellings' in notes else ''}"
        )
    _note_texts_on_both_sides(tables["train"], tables["test"], notes)
    notes["dropped_rows_without_outcome"] = dropped
    notes["repeated_rows_averaged"] = int(frame.duplicated(["_qid", "_agent"]).sum())
    notes["test_queries_dropped_incomplete"] = int(incomplete)  # type: ignore[call-overload]
    if lacking:
        notes["test_queries_incomplete"] = lacking
    notes["train_cells_missing"] = int(np.isnan(tables["train"].scores).sum())
    return RoutingDataset(
        "outcomes", tables["train"], tables["test"], dropped + int(incomplete), notes, dict(prices or {})
    )


def _json_rows(p: Path) -> list[dict[str, Any]]:
    """The rows of a JSON outcomes file: one object per line (JSONL), or one array of objects (what
    ``json.dump(rows)`` and ``DataFrame.to_json(orient="records")`` write). An object of columns
    (``to_json``'s default) is refused saying how to write rows."""
    text = _read_text(p)
    if text.lstrip().startswith("["):
        rows = _parse_json(text, str(p))
        bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
        if bad is not None:
            raise DatasetError(
                f"{p}: item {bad + 1} of the JSON array is not an object; expected one object per row"
            )
        return rows  # type: ignore[no-any-return]
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            row = _parse_json(line, f"{p} line {number}")
            if not isinstance(row, dict):
                raise DatasetError(f"{p} line {number}: expected a JSON object per line")
            rows.append(row)
    if len(rows) == 1 and rows[0] and all(isinstance(v, dict) for v in rows[0].values()):
        raise DatasetError(
            f"{p}: one JSON object of columns ({_cap(list(rows[0]), 80)}), not rows; write one object per row, "
            "e.g. DataFrame.to_json(path, orient='records', lines=True)"
        )
    return rows


def _outcome_tables(frame: Any, models: list[str], split_of: dict[str, str]) -> dict[str, Any]:
    """Train and test :class:`OutcomeTable` of the long frame (test: complete queries only), and
    ``_incomplete``: how many test queries were dropped."""
    tables: dict[str, Any] = {}
    incomplete = 0
    frame = frame[frame["_agent"].isin(models)]
    for split in ("train", "test"):
        part = frame[[split_of[q] == split for q in frame["_qid"]]]
        grouped = part.groupby(["_qid", "_agent"], sort=False)
        score = grouped["_score"].mean().unstack("_agent").reindex(columns=models)
        cost = grouped["_cost"].mean().unstack("_agent").reindex(columns=models)
        first = part.drop_duplicates("_qid").set_index("_qid")
        qids = list(score.index)
        scores, costs = score.to_numpy(dtype=float), cost.to_numpy(dtype=float)
        if split == "test":
            full = ~np.isnan(scores).any(axis=1)
            incomplete = int((~full).sum())
            tables["_lacking"] = _lacking_agent(np.isnan(scores), models)
            qids, scores, costs = [q for q, f in zip(qids, full, strict=True) if f], scores[full], costs[full]
        propensity = None  # logged by an exploring router (memory export): importance weights for train
        if split == "train" and "propensity" in part.columns:
            prop = np.array(
                grouped["propensity"].mean().unstack("_agent").reindex(columns=models), dtype=float
            )
            prop[(prop <= 0) | (prop > 1)] = np.nan
            propensity = prop if np.any(~np.isnan(prop)) else None
        responses = None
        if "response" in part.columns:
            resp = (
                part.groupby(["_qid", "_agent"], sort=False)["response"]
                .first()
                .unstack("_agent")
                .reindex(columns=models)
            )
            responses = [["" if v is None or v != v else str(v) for v in resp.loc[q]] for q in qids]
        tasks = first["task"].reindex(qids).tolist() if "task" in first.columns else [None] * len(qids)
        tables[split] = OutcomeTable(
            query_ids=qids,
            queries=[str(q) for q in first["query"].reindex(qids).tolist()],
            models=models,
            scores=scores.reshape(len(qids), len(models)),
            costs=costs.reshape(len(qids), len(models)),
            task_types=[None if t is None or t != t else str(t) for t in tasks],
            responses=responses,
            propensity=propensity,
        )
    tables["_incomplete"] = incomplete
    return tables


def _lacking_agent(missing: np.ndarray, models: list[str]) -> str:
    """Which agent most test queries dropped as incomplete lack (``missing``: queries × agents),
    and how many test queries would be kept without it: a sparsely logged agent can empty the
    test split of a log that is otherwise complete."""
    incomplete = missing.any(axis=1)
    if not incomplete.any() or len(models) < 3:  # two agents: leaving one out leaves nothing to compare
        return ""
    j = int(missing[incomplete].sum(axis=0).argmax())
    kept = int((~np.delete(missing, j, axis=1).any(axis=1)).sum())
    return (
        f"{int(incomplete.sum())} test queries lack some agent's outcome, {int(missing[:, j].sum())} of them "
        f"{models[j]}'s: without {models[j]} {kept} of {len(missing)} test queries would be kept "
        f"(leave its rows out of the file to compare the others on them)"
    )


def _missing_outcome(row: Any) -> str:
    """What a dropped outcome row lacks, in the file's own values."""
    if row["query"] is None or row["query"] != row["query"] or not str(row["query"]).strip():
        return "no query"
    if not row["_agent"]:
        return "no agent"
    if row["_score"] != row["_score"]:
        return f"score {row['score']!r} is not a number"
    return "no cost_usd, and no tokens_in/tokens_out to price"


def _outcome_models(
    frame: Any, split_of: dict[str, str], require_test: bool, notes: dict[str, Any]
) -> list[str]:
    """The agents a dataset keeps: those with a train outcome (a router cannot learn the others,
    and would route to them blind) and, when the test split is replayed, a test outcome (a test
    query is kept only when every agent has one). Whatever is left out is named in
    ``notes["models_dropped"]``."""
    split = frame["_qid"].map(split_of)
    seen = {s: set(frame.loc[split == s, "_agent"]) for s in ("train", "test")}
    every = list(dict.fromkeys(frame["_agent"]))
    why = {m: "no train outcome" for m in every if m not in seen["train"]}
    if require_test and seen["test"]:
        why |= {m: "no test outcome" for m in every if m not in seen["test"] and m not in why}
    models = [m for m in every if m not in why]
    notes.pop("models_dropped", None)
    if why:
        notes["models_dropped"] = "left out: " + "; ".join(f"{m} ({w})" for m, w in why.items())
    if len(models) < (2 if require_test else 1):  # one agent leaves a router nothing to choose
        if len(every) == 1:  # not bandit logs: a log of one model
            raise DatasetError(
                f"{notes['source']}: every row is {every[0]}'s: a router needs two agents to choose between; "
                "log another model's outcomes on the same queries (`agentroute train` fits one agent, with a warning)"
            )
        left = f" ({notes['models_dropped']})" if why else ""
        raise DatasetError(f"{notes['source']}: agents with outcomes in both splits: {models}{left}; a router needs "
                           f"two to choose between. {_BANDIT_HINT[0].upper()}{_BANDIT_HINT[1:]}")  # fmt: skip
    return models


_BANDIT_HINT = (
    "evaluating by replay needs full information (every agent's outcome on each test query). For bandit logs "
    "(one agent per query) use `agentroute eval --from MEMORY_URL` (counterfactual estimates); "
    "`agentroute train --dataset` uses the train rows as they are"
)


def _note_agent_spellings(agents: list[str], notes: dict[str, Any]) -> None:
    """Note agents whose names differ only in case or blanks (``GPT-4o``, ``gpt-4o``): they are
    read as different agents, each with part of one model's rows (``notes["agent_spellings"]``)."""
    spelt: dict[str, list[str]] = {}
    for agent in agents:
        spelt.setdefault(re.sub(r"\s+", "", agent).lower(), []).append(agent)
    twins = [names for names in spelt.values() if len(names) > 1]
    if twins:
        notes["agent_spellings"] = (
            f"{len(twins)} agent(s) spelt several ways, each read as its own agent: "
            + "; ".join(" vs ".join(repr(n) for n in names) for names in twins[:3])
            + ". If they are one model, write its name one way in the file"
        )


def _per_call_ids_hint(frame: Any) -> str:
    """Why a full-information log reads as one agent per query: its ``query_id`` names each call
    (a request id), so the agents' rows of one query text never meet under one id."""
    ids = frame.groupby(frame["query"].astype(str).str.strip(), sort=False)["_qid"].nunique()
    several = ids[ids > 1]
    if several.empty:
        return ""
    return (
        f". {len(several)} query texts are logged under several query_ids (e.g. {_cap(several.index[0], 60)!r}: "
        f"{int(several.iloc[0])} ids): if query_id names a call, not a query, drop the query_id column "
        "(rows are then grouped by query text)"
    )


def _outcome_column(value: Any) -> str:
    """The outcome-table column of an ``agent``/``model`` cell, as given: an agent key
    ``role:model:strategy`` stays one (roles are distinct targets, :mod:`agentroute.outcomes`);
    ``model[:strategy]`` is a role-free column, with ``:direct`` dropped."""
    if value is None or value != value:
        return ""
    text = str(value).strip()
    return text[: -len(":direct")] if text.count(":") == 1 and text.endswith(":direct") else text


#: The columns of the ``outcomes:`` format (``docs/outcomes.md``), by the names the loader reads.
OUTCOME_COLUMNS = ("query", "query_id", "agent", "model", "score", "cost_usd", "tokens_in", "tokens_out",
                   "input_price", "output_price", "task", "split", "response", "propensity")  # fmt: skip
#: The two names of the column that says who answered (``agent`` is read when both are there).
_SAME_ROLE = {"agent": "model", "model": "agent"}
#: Score cells written as words (spreadsheet and pandas booleans, graders' yes/no, pass/fail), as 1 or 0.
_SCORE_WORDS = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "pass": 1.0, "fail": 0.0, "passed": 1.0,
                "failed": 0.0, "correct": 1.0, "incorrect": 0.0}  # fmt: skip
#: Text cells that mean "no value" (pandas writes ``nan``, spreadsheets ``N/A``): a missing outcome.
_MISSING_WORDS = frozenset({"", "nan", "na", "n/a", "null", "none"})


def _query_ids(frame: Any) -> list[str]:
    """Each row's query id (:func:`~agentroute.outcomes.borrowed_query_ids`), else a hash of its
    query text. So a log that names some rows of a query and not others still groups them."""
    ids = borrowed_query_ids(frame["query_id"], list(frame["query"]))
    return [q if q is not None else f"q{_text_id(text)}" for q, text in zip(ids, frame["query"], strict=True)]


def _outcome_column_names(frame: Any, p: Path) -> Any:
    """The frame with the format's columns named as the loader reads them: case, surrounding blanks
    and inner spaces or hyphens do not matter (``Cost USD`` is ``cost_usd``); other columns keep
    their names. A column named exactly (``model``) is read over one that only reads as it or as
    the other name of its role (``Model ``, ``Agent``, which keep their names); two of the latter
    are refused."""
    exact = {column for column in frame.columns if column in OUTCOME_COLUMNS}
    exact |= {_SAME_ROLE[name] for name in exact if name in _SAME_ROLE}
    renamed: dict[Any, str] = {}
    for column in frame.columns:
        name = _column_name(column)
        if name not in OUTCOME_COLUMNS or name in exact:
            continue
        other = next((c for c, n in renamed.items() if n == name), None)
        if other is not None:
            raise DatasetError(
                f"{p}: columns {str(other)!r} and {str(column)!r} both read as {name!r}; keep one"
            )
        renamed[column] = name
    return frame.rename(columns=renamed)


#: Names logs often give the format's columns (normalised as column names are read), by the name
#: to give them: named in the error that refuses a file without the column, never read silently.
_OTHER_NAMES = {
    "query": (
        "prompt",
        "question",
        "input",
        "instruction",
        "user_input",
        "prompt_text",
        "query_text",
        "text",
    ),
    "score": (
        "correct",
        "is_correct",
        "accuracy",
        "acc",
        "reward",
        "success",
        "passed",
        "pass",
        "grade",
        "outcome",
    ),
    "model": ("model_name", "model_id", "llm", "engine", "deployment"),
    "cost_usd": ("cost", "price", "total_cost", "cost_dollars", "usd", "spend", "dollars"),
}


def _column_name(column: object) -> str:
    """A column's name as the loader reads it: case, surrounding blanks, inner spaces or hyphens ignored."""
    return re.sub(r"[\s\-]+", "_", str(column).strip()).lower()


def _rename_hint(columns: list[str]) -> str:
    """What to rename a file's columns that read as another name of a missing format column."""
    names = {_column_name(c): c for c in columns}
    pairs = []
    for wanted, others in _OTHER_NAMES.items():
        if wanted in names or (wanted == "model" and "agent" in names):
            continue
        other = next((o for o in others if o in names), None)
        if other is not None:
            pairs.append(f"{names[other]!r} to {wanted!r}")
    return f"; rename {', '.join(pairs)} if that is what they hold" if pairs else ""


def _plain_cells(frame: Any) -> Any:
    """The frame with its pandas extension columns (a parquet's nullable ``string``, ``Int64``,
    ``boolean``, ``category``) as plain objects, a missing cell as ``None``: pandas' ``NA`` has no
    truth value, so the checks that read cells one by one would stop on it with a TypeError."""
    for column in frame.columns:
        values = frame[column]
        if not isinstance(values.dtype, np.dtype):
            frame[column] = values.astype(object).where(values.notna(), None)
    return frame


def _wide_hint(columns: list[str]) -> str:
    """What to do with a wide file (one column per model) given where the long format is read."""
    if any(c.endswith(("|total_cost", "|model_response")) for c in columns):
        return ". This is RouterBench's wide format (a column per model): pass it as routerbench:FILE"
    if {_column_name(c) for c in columns} & set(_OTHER_NAMES["model"]):  # a model column to rename instead
        return ""
    return (
        ". A file with a score column per model is wide: make it one row per query × model first, e.g. "
        "df.melt(id_vars=['query'], var_name='model', value_name='score') (and its costs likewise)"
    )


def _separator_hint(columns: list[str]) -> str:
    """Why a CSV file's header reads as one column: it is separated by something else than commas."""
    if len(columns) != 1:
        return ""
    for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
        if sep in columns[0]:
            decimal = ", decimal=','" if sep == ";" else ""  # a semicolon export writes decimal commas
            return (
                f". The header is separated by {name}: a CSV file is read with commas (a .tsv file with tabs); "
                f"convert it once, e.g. pandas.read_csv(path, sep={sep!r}{decimal}).to_csv(new_path, index=False)"
            )
    return ""


def _check_text_cells(frame: Any, column: str | None, p: Path) -> None:
    """Refuse a nested JSON value (object or list) where the format wants text: read as text it
    would be its Python repr, silently (a query ``{'text': …}`` that no router should see)."""
    if column is None or column not in frame.columns:
        return
    nested = [i for i, v in enumerate(frame[column]) if isinstance(v, dict | list)]
    if nested:
        i = nested[0]
        raise DatasetError(
            f"{p}: row {i + 1}, column {column!r}: a nested JSON value ({_cap(frame[column].iloc[i], 80)}), "
            f"not text; {len(nested)} such row(s). Flatten it first (e.g. the user message's text as {column!r})"
        )


def _numbers(frame: Any, column: str, p: Path, *, words: Mapping[str, float] | None = None) -> Any:
    """A numeric column of an outcomes file as floats: empty cells (and ``nan``, ``N/A``, ``null``)
    are nan — missing, never 0; ``words`` (e.g. ``yes``/``no`` scores) read as their numbers. Any
    other cell that is not a finite number is refused, naming the file, the row (data rows from 1)
    and the column, so that no figure is computed on silently dropped rows."""
    pd = require("pandas")
    values = frame[column].astype(object)  # a nullable parquet column (boolean, Int64) takes 1.0/0.0 and nan
    text = values.astype(str).str.strip().str.lower()
    if words:
        values = values.where(~text.isin(list(words)), text.map(words))
    number = pd.to_numeric(values, errors="coerce").astype(float)
    missing = values.isna() | text.isin(_MISSING_WORDS)
    bad = ~missing & ~np.isfinite(number.to_numpy())
    if column == "cost_usd":  # an infinite or negative cost has its own message (_outcome_costs)
        bad &= number.isna()
    if not bad.any():
        return number.where(~missing)
    i = int(np.flatnonzero(bad.to_numpy())[0])
    value = frame[column].iloc[i]
    said = (
        f"{float(value)!r} is not a finite number"
        if isinstance(value, numbers.Real)
        else f"{value!r} is not a number"
    )
    raise DatasetError(
        f"{p}: column {column!r} holds a cell that is not a finite number (row {i + 1}: {column} {said}); "
        f"{int(bad.sum())} such cell(s) in all.{_number_hint(str(value))} Leave a cell empty for a missing outcome"
    )


def _number_hint(value: str) -> str:
    """What a spreadsheet-formatted number needs to be read (decimal comma, currency, percent)."""
    text = value.strip()
    if re.fullmatch(r"[-+]?\d*,\d+", text):
        return (
            " A comma in a number (a decimal comma, 1,5, or a thousands separator, 1,000): write 1.5 or 1000."
        )
    if text[:1] in "$€£¥" or text[-1:] in "$€£¥":
        return " Costs are plain numbers in USD: drop the currency sign."
    if text.endswith("%"):
        return " Write a percentage as a number (85% as 85 or 0.85)."
    return ""


def _outcome_costs(frame: Any, prices: Prices | None, p: Path, notes: dict[str, Any]) -> Any:
    pd = require("pandas")
    cost = (
        _numbers(frame, "cost_usd", p)
        if "cost_usd" in frame.columns
        else pd.Series(np.nan, index=frame.index)
    )
    need = cost.isna()
    if need.any() and {"tokens_in", "tokens_out"} <= set(frame.columns):
        t_in = _numbers(frame, "tokens_in", p)
        t_out = _numbers(frame, "tokens_out", p)
        if {"input_price", "output_price"} <= set(frame.columns):
            p_in = _numbers(frame, "input_price", p)
            p_out = _numbers(frame, "output_price", p)
        else:
            model_of = [column_agent(a).model for a in frame["_agent"]]
            unpriced = sorted({str(m) for m in np.array(model_of)[need.to_numpy()]} - set(prices or {}))
            if unpriced:  # the file's own fix first: the command line has no prices= to pass
                raise DatasetError(
                    f"{p}: no price for model(s) {_cap(', '.join(unpriced), 120)}: rows without cost_usd are priced "
                    "by tokens_in/tokens_out; add input_price and output_price columns (USD per 1M tokens) or a "
                    "cost_usd column (in Python: load_outcomes(path, prices={model: (input, output)}))"
                )
            p_in = pd.Series([prices[m][0] if prices else np.nan for m in model_of], index=frame.index)  # type: ignore[index]
            p_out = pd.Series([prices[m][1] if prices else np.nan for m in model_of], index=frame.index)  # type: ignore[index]
        cost = cost.where(~need, (t_in * p_in + t_out * p_out) / 1e6)
        notes["cost"] = (
            "cost_usd where given, else (tokens_in × input price + tokens_out × output price) / 1e6"
        )
    elif "cost_usd" not in frame.columns:
        found = [str(c) for c in frame.columns if not str(c).startswith("_")]
        raise DatasetError(
            f"{p}: no cost_usd column, and no tokens_in/tokens_out to price (the file's columns: "
            f"{_cap(found, 160)}; docs/outcomes.md){_rename_hint(found)}"
        )
    else:
        notes["cost"] = "logged cost_usd"
    bad = bad_costs(cost.to_numpy())
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"{p}: a cost must be a finite number ≥ 0 (row {row + 1}: {float(cost.iloc[row])}), "
            f"at most {MAX_COST_USD:g} USD a call"
        )
    return cost


def _outcome_splits(
    frame: Any, test_fraction: float, seed: int, notes: dict[str, Any], require_test: bool = True
) -> dict[str, str]:
    """Each query's split: the ``split`` column's when it names train and test; every query in train
    when it names only train and no test split is needed (``agentroute train``); without the column,
    a seeded random split by query text (the ids of one text — the same prompt logged twice — fall
    on one side, so no test query is judged on a twin the router was trained on). A column that
    names one split where both are needed is refused (a drawn split would judge a router trained on
    every row on queries it saw)."""
    qids = list(dict.fromkeys(frame["_qid"]))
    text_of = dict(zip(frame["_qid"], frame["query"].map(text_key), strict=True))
    if "split" in frame.columns and frame["split"].notna().any():
        given: dict[str, str] = {}
        for q, s, text in zip(frame["_qid"], frame["split"], frame["query"], strict=True):
            if s is not None and s == s:
                name = _SPLIT_NAMES.get(str(s).strip().lower())
                if name is None:
                    values = {str(v) for v in frame["split"].dropna()}
                    unknown = sorted(v for v in values if v.strip().lower() not in _SPLIT_NAMES)
                    raise DatasetError(
                        f"{notes['source']}: column 'split' holds {_cap(unknown, 80)} (query {q!r}): expected train "
                        "or test (validation/dev count as train); relabel them, or rename the column if it is "
                        "not a train/test split"
                    )
                if (
                    given.setdefault(q, name) != name
                ):  # its test rows would be trained on, or its train rows judged
                    raise DatasetError(
                        f"{notes['source']}: query {q!r} ({_cap(text, 60)!r}) has rows in both train and test in the "
                        "split column: a query belongs to one split; label all its rows alike"
                    )
        if len(set(given.values())) == 2:
            notes["split"] = "from the split column (validation/dev rows in train)"
            return {q: given.get(q, "train") for q in qids}
        only = next(iter(given.values()))
        if only == "train" and not require_test:
            notes["split"] = "from the split column: every query train"
            return dict.fromkeys(qids, "train")
        raise DatasetError(
            f"{notes['source']}: the split column names only {only} queries: label some "
            f"{'test' if only == 'train' else 'train'} (or drop the column for a seeded split by query)"
        )
    texts = list(dict.fromkeys(text_of[q] for q in qids))  # one per query unless a text has several ids
    order = np.random.default_rng(seed).permutation(len(texts))
    test = {texts[k] for k in order[: int(round(test_fraction * len(texts)))]}
    if require_test and not test:  # not bandit logs: too few queries for the fraction to hold one out
        raise DatasetError(
            f"{notes['source']}: {len(texts)} query text(s): a seeded split of test fraction {test_fraction:g} "
            "holds out none. Evaluation needs test queries: log more queries, or add a split column "
            "labelling some rows test"
        )
    notes["split"] = f"seeded random split by query text (seed {seed}, test fraction {test_fraction})"
    return {q: "test" if text_of[q] in test else "train" for q in qids}


def _note_texts_on_both_sides(train: OutcomeTable, test: OutcomeTable, notes: dict[str, Any]) -> None:
    """Note the test queries whose text is also a train query's (under another id, in a ``split``
    column's split): a router may recall their outcomes, so their figures flatter it."""
    trained = {text_key(q) for q in train.queries}
    seen = [q for q in test.queries if text_key(q) in trained]
    if seen:
        notes["test_queries_seen_in_train"] = (
            f"{len(seen)} of {len(test)} test queries have the text of a train query (under another "
            f"query_id; e.g. {_cap(seen[0], 60)!r}): a router can recall their outcomes, so its figures "
            "flatter it; give each text one split in the split column"
        )


# -- helpers ----------------------------------------------------------------------------------------
def _priced_table(
    split: str,
    texts: list[str],
    tasks: Iterable[Any],
    gold: list[str | None] | None,
    scores: np.ndarray,
    models: list[str],
    prices: Prices,
    counter: TokenCounter,
    output_tokens: int,
) -> OutcomeTable:
    tokens = counter.count(texts).astype(float)
    p_in = np.array([prices[m][0] for m in models])
    p_out = np.array([prices[m][1] for m in models])
    costs = (tokens[:, None] * p_in[None, :] + output_tokens * p_out[None, :]) / 1e6
    seen: dict[str, int] = {}
    return OutcomeTable(
        query_ids=[_unique_id(f"{split}/{_text_id(t)}", seen) for t in texts],
        queries=texts,
        models=list(models),
        scores=scores.reshape(len(texts), len(models)),
        costs=costs.reshape(len(texts), len(models)),
        task_types=[None if t is None or t != t else str(t) for t in tasks],
        gold=gold,
    )


def _price_notes(counter: TokenCounter, output_tokens: int) -> dict[str, Any]:
    return {
        "cost": "estimated: (prompt tokens × input price + output tokens × output price) / 1e6",
        "tokenizer": counter.name,
        "output_tokens_assumed": output_tokens,
    }


def _check_prices(models: list[str], prices: Prices | None) -> None:
    missing = [str(m) for m in models if prices is None or m not in prices]
    if missing:
        raise ConfigurationError(
            f"no price for model(s) {', '.join(missing)}: pass prices={{model: (input, output)}} per 1M tokens "
            "(an outcomes file: input_price and output_price columns, or cost_usd)"
        )


#: Suffixes of pickle files, which no loader reads (unpickling runs code stored in the file).
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pck", ".pcl", ".p"})
_PICKLE_MAGIC = (b"\x80",)  # protocol 2+ pickles start with PROTO


def _read_table_file(p: Path) -> Any:
    """One table file (``.csv`` or ``.parquet``) as a frame; pickles are refused, never opened."""
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise DatasetError(
            f"{p}: refusing to read a pickle file — unpickling runs whatever code the file holds. "
            f"Convert it once, in a Python session you trust: "
            f"pandas.read_pickle({str(p)!r}).to_parquet({str(p.with_suffix('.parquet'))!r}) "
            f"(or .to_csv(...)), then pass the .parquet or .csv file"
        )
    if suffix == ".parquet":
        pd = require("pandas")
        try:
            return pd.read_parquet(p)
        except Exception as exc:  # pyarrow's errors vary by version: name the file
            raise DatasetError(
                f"{p}: not a readable parquet file ({type(exc).__name__}: {_cap(exc)})"
            ) from None
    if suffix in (".csv", ".tsv", ".txt"):
        return _read_csv(p)
    raise DatasetError(
        f"{p}: expected a .csv or .parquet file (or a folder of <task>_train.csv/<task>_test.csv)"
    )


def _read_csv(p: Path) -> Any:
    """A CSV file as a frame, or a :class:`DatasetError` naming the file (binary, not UTF-8, malformed)."""
    pd = require("pandas")
    with p.open("rb") as fh:
        head = fh.read(4096)
    _check_not_utf16(p, head)
    if b"\0" in head or head.startswith(_PICKLE_MAGIC):
        raise DatasetError(f"{p}: a binary file, not CSV text")
    try:
        return pd.read_csv(p, encoding="utf-8", sep="\t" if p.suffix.lower() == ".tsv" else ",")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{p}: not UTF-8 text (byte offset {exc.start})") from None
    except (ValueError, OSError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        said = " ".join(str(exc).split())  # pandas' messages end in a newline: one line
        hint = ""
        if re.search(r"Expected \d+ fields in line \d+", said):
            hint = "; a cell that holds the separator (a prompt with a comma) must be in double quotes, as pandas and spreadsheets write it"
        elif "EOF inside string" in said:
            hint = (
                '; a double quote opens a cell that is never closed: write a quote inside a cell as two ("")'
            )
        raise DatasetError(
            f"{p}: not a readable CSV file ({type(exc).__name__}: {_cap(said)}){hint}"
        ) from None


def _check_not_utf16(p: Path, head: bytes) -> None:
    """Refuse UTF-16 text (Excel's "Unicode Text", PowerShell's default) saying so, rather than
    calling it binary."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DatasetError(
            f"{p}: UTF-16 text; save it as UTF-8 (Excel: CSV UTF-8), e.g. "
            f"pathlib.Path(path).write_text(pathlib.Path(path).read_text('utf-16'), 'utf-8')"
        )


def _read_text(p: Path) -> str:
    """A UTF-8 text file (a leading BOM dropped), or a :class:`DatasetError` naming it."""
    if not p.is_file():
        raise DatasetError(f"{p}: not a file")
    raw = p.read_bytes()
    _check_not_utf16(p, raw[:4])
    if b"\0" in raw[:4096]:
        raise DatasetError(f"{p}: a binary file, not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{p} line {line}: not UTF-8 text (byte offset {exc.start})") from None


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DatasetError(f"{where}: invalid JSON ({_cap(exc)})") from None


def _read_json(p: Path, kind: type) -> Any:
    """A JSON file whose top level is ``kind`` (``list`` or ``dict``)."""
    value = _parse_json(_read_text(p), str(p))
    if not isinstance(value, kind):
        raise DatasetError(f"{p}: expected a JSON {'list' if kind is list else 'object'} at the top level")
    return value


def _card_prices(model: str, card: Any, root: Path) -> tuple[float, float]:
    """(input, output) USD per 1M tokens of one ``default_llm.json`` entry, checked like a price card."""
    where = f"{root}/example_data/llm_candidates/default_llm.json model {model!r}"
    if not isinstance(card, dict):
        raise DatasetError(f"{where}: expected an object with input_price and output_price")
    try:
        return tuple(check_amount(f"{where} {k}", card.get(k)) for k in ("input_price", "output_price"))  # type: ignore[return-value]
    except ConfigurationError as exc:
        raise DatasetError(str(exc)) from None


def _cap(text: object, limit: int = 200) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _existing(path: str | Path, expected: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        hint = ""
        if not os.environ.get("AGENTROUTE_DATA"):
            if p.is_absolute() and p.parent == Path(p.anchor):
                # `routerbench:$AGENTROUTE_DATA/routerbench` with the variable unset is `/routerbench`
                hint = f" (is $AGENTROUTE_DATA unset? a bare kind, e.g. `routerbench`, finds the data under {data_root()})"
            elif p.is_relative_to(data_root()) and not data_root().is_dir():
                # a bare kind outside a checkout (an installed package): nothing beside it to find
                hint = "; set AGENTROUTE_DATA to the folder that holds the datasets (see the data README)"
        raise DatasetError(f"{p} does not exist; expected {expected}{hint}")
    return p


def _same_models(train: OutcomeTable, test: OutcomeTable, path: Any) -> None:
    if train.models != test.models:
        raise DatasetError(
            f"{path}: train and test have different model columns ({train.models} vs {test.models})"
        )


def _hf_frames(dataset_id: str) -> dict[str, Any]:
    """Every split of a hub dataset as a pandas frame (needs internet and ``datasets``)."""
    datasets = require("datasets")
    try:
        loaded = datasets.load_dataset(dataset_id)
    except Exception as exc:  # the hub's errors vary by version: name the dataset
        raise DatasetError(f"cannot load Hugging Face dataset {dataset_id!r}: {exc}") from exc
    return {str(split): loaded[split].to_pandas() for split in loaded}


def _bool_score(value: Any) -> float:
    if isinstance(value, str):
        return {"true": 1.0, "false": 0.0}.get(value.strip().lower(), float("nan"))
    return _float(value)


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _text_id(text: str) -> str:
    return hashlib.sha1(str(text).encode()).hexdigest()[:12]


def _unique_id(base: str, seen: dict[str, int]) -> str:
    n = seen.get(base, 0)
    seen[base] = n + 1
    return base if n == 0 else f"{base}~{n}"


_LOADERS: dict[str, Callable[..., RoutingDataset]] = {
    "routerbench": load_routerbench,
    "dcrouter": load_dcrouter,
    "routellm-mmlu": load_routellm_mmlu,
    "outcomes": load_outcomes,
}
