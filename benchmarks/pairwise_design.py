"""Routing on per-query *differences* between agents (issue 16): an experiment, not a router.

Every learned router predicts each agent's success ŝ(q, m) on its own, and routes by the argmax of
ŝ − λ·ĉ. Only the *differences* ŝ(q, m) − ŝ(q, m') enter that argmax, and a per-agent model spends
most of its fit on what all agents share (a query's difficulty). Residual models of the differences,
each on top of the per-task lookup (its prediction is the offset, so only the per-query part is
learned), on the MiniLM embedding e(q) (``--features``: ``whole`` prompt, ``tail:N`` = its last N
characters, ``both:N`` = the two vectors side by side):

``ridge``   the centred differences d(q, m) = s(q, m) − mean_j s(q, j), minus the per-task lookup's own
            centred prediction, regressed on e(q) (multi-output ridge, one penalty α for all agents).
            ŝ = ŝ_task + the predicted residual. Note: ridge is linear in its targets, so differences
            against any reference agent (the cheapest, the per-task best) give the same ranking as the
            centred ones.
``pair``    a pairwise (Bradley–Terry / RankNet) logistic model fitted only on the pairs of agents
            that *disagree* on a query — on RouteLLM MMLU exactly "GPT-4 right where Mixtral is wrong"
            against the reverse (Ong et al., arXiv 2406.18665):
                P(m beats m' | q) = σ(γ·(ŝ_task(q,m) − ŝ_task(q,m')) + u_m(q) − u_m'(q)),  u_m = w_m·e(q) + b_m
            with an L2 penalty α on w (dcrouter's fractional scores: the sign of s − s' is the label
            and |s − s'| the weight). Routing scores ŝ = ŝ_task + (u − mean_j u_j)/γ: the residual
            logit in the per-task lookup's score units.
``knn``     the mean residual difference (as in ``ridge``) of the k nearest training queries (cosine).
``mlp``     the residual differences by a one-hidden-layer MLP (128 ReLU units, dropout 0.2, squared
            error on centred outputs, early stopping on 15% of the fit rows); weight decay is the knob.

Hyper-parameters (α, k or weight decay; ∞ / k = 0 = the per-task lookup itself) are chosen by AIQ on a
25% validation split carved from train (:func:`agentroute.routers.utility.validation_split`; with
``--repeats R`` the AIQ is averaged over R seeded splits; ties go to the stronger penalty); the model is
then refitted on all of train with the chosen value and evaluated on test by the harness, with the 90%
paired bootstrap (500 resamples) against per-task, knn, logreg and mlp. ``--validate-only`` and
``--diagnose`` read no test row: the first prints the validation AIQ of every value, the second the
share of the variance of the centred differences that the per-task lookup and the residual models
explain on a validation split (and, on two-model data, the AUC of "strong right where weak wrong").

    python benchmarks/pairwise_design.py --datasets routerbench,dcrouter        # every variant, 1 split
    python benchmarks/pairwise_design.py --datasets routellm-mmlu --sample 0.5
    python benchmarks/pairwise_design.py --datasets routerbench --validate-only --repeats 5 \
        --variants ridge,pair,knn,mlp --features whole,tail:1000,both:1000
    python benchmarks/pairwise_design.py --datasets routerbench --variants ridge --features both:1000 --repeats 5
    python benchmarks/pairwise_design.py --datasets routellm-mmlu --sample 0.5 --diagnose

Result (2026-12-05, /tmp/h16b_results.md): no variant beats the per-task lookup, logistic regression
or the mlp peer beyond the 90% interval on RouterBench, dcrouter or RouteLLM MMLU; the embedding
explains ≤ 0.3 points more of the variance of the per-query differences than the per-task lookup.

Data: ``$AGENTROUTE_DATA``; embeddings come from the disk cache (as benchmarks/quality.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from agentroute.embed import context_text
from agentroute.eval import load_dataset
from agentroute.eval import metrics as M
from agentroute.eval.harness import evaluate
from agentroute.outcomes import OutcomeTable
from agentroute.routers.reference import PerTaskRouter
from agentroute.routers.utility import (
    KNOB_GRID,
    UtilityRouter,
    embed_texts,
    sweep,
    validation_split,
)
from agentroute.types import RouteContext

GRIDS: dict[str, tuple[float, ...]] = {
    "ridge": (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, np.inf),
    "pair": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, np.inf),
    "knn": (10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 0.0),  # k; 0 = no residual
    "mlp": (1e-4, 1e-3, 1e-2, np.inf),  # weight decay
}


def centred(a: np.ndarray) -> np.ndarray:
    return a - a.mean(axis=1, keepdims=True)


def val_aiq(score: np.ndarray, cost: np.ndarray, table: OutcomeTable, cost_scale: float) -> float:
    """AIQ on logged rows of ``table`` of routing by ``score − λ·cost`` over the harness's λ grid."""
    choices = sweep(score, cost, KNOB_GRID, cost_scale, table.models)  # ties as serving breaks them
    rows = np.arange(len(table))
    s, c = table.scores[rows, choices], table.costs[rows, choices]
    points = np.column_stack([c.mean(axis=1), s.mean(axis=1)])
    singles = M.single_model_points(table.scores, table.costs)
    return M.aiq(points, singles, M.anchor_index(singles, choices))


# -- the residual models ---------------------------------------------------------------------------
class Residual:
    """Fit on (x, scores, per-task prediction) of training rows; predict score corrections."""

    def __init__(self, variant: str, value: float, seed: int = 0):
        self.variant, self.value, self.seed = variant, float(value), seed

    @property
    def off(self) -> bool:
        return (self.variant == "knn" and self.value == 0) or (self.variant != "knn" and np.isinf(self.value))

    def fit(self, x: np.ndarray, s: np.ndarray, t: np.ndarray) -> Residual:
        if self.off:
            return self
        s = np.clip(s, 0.0, 1.0)
        if self.variant == "ridge":
            r = centred(s) - centred(t)
            self.mu_, self.r0_ = x.mean(axis=0), r.mean(axis=0)
            u, sig, vt = np.linalg.svd(x - self.mu_, full_matrices=False)
            self.w_ = vt.T @ ((sig / (sig**2 + self.value))[:, None] * (u.T @ (r - self.r0_)))
        elif self.variant == "knn":
            self.x_, self.r_ = x, centred(s) - centred(t)
        elif self.variant == "mlp":
            self._fit_mlp(x, centred(s) - centred(t))
        else:
            self._fit_pair(x, s, t)
        return self

    def _fit_pair(self, x: np.ndarray, s: np.ndarray, t: np.ndarray) -> None:
        from scipy.optimize import minimize

        n, k = s.shape
        d = x.shape[1]
        a, b = np.triu_indices(k, 1)
        diff = s[:, a] - s[:, b]  # n × pairs
        q, p = np.nonzero(diff != 0)
        ia, ib = a[p], b[p]
        y = (diff[q, p] > 0).astype(float)
        w = np.abs(diff[q, p])
        w = w / w.sum()
        dt = t[q, ia] - t[q, ib]
        alpha = self.value

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            wm = theta[: k * d].reshape(k, d)
            bm = theta[k * d : k * d + k]
            g = np.exp(theta[-1])
            u = x @ wm.T + bm  # n × k
            z = g * dt + u[q, ia] - u[q, ib]
            f = float(np.sum(w * (np.logaddexp(0.0, z) - y * z))) + 0.5 * alpha * float(np.sum(wm**2))
            e = w * (1.0 / (1.0 + np.exp(-z)) - y)  # dL/dz
            gu = np.bincount(q * k + ia, e, n * k) - np.bincount(q * k + ib, e, n * k)
            gu = gu.reshape(n, k)
            grad = np.concatenate(
                [(gu.T @ x + alpha * wm).ravel(), gu.sum(axis=0), [float(np.sum(e * dt)) * g]]
            )
            return f, grad

        theta0 = np.zeros(k * d + k + 1)
        theta0[-1] = np.log(5.0)
        res = minimize(
            loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-12}
        )
        self.w_ = res.x[: k * d].reshape(k, d)
        self.b_ = res.x[k * d : k * d + k]
        self.gamma_ = float(np.exp(res.x[-1]))

    def _fit_mlp(self, x: np.ndarray, r: np.ndarray) -> None:
        import torch

        from agentroute.routers.utility import train_early_stopping

        xt, rt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(r.astype(np.float32))
        tr, va = validation_split(len(x), 0.15, self.seed + 1)
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)

        def loss(rows: torch.Tensor) -> torch.Tensor:
            out = self.net_(xt[rows])
            return ((out - out.mean(dim=1, keepdim=True) - rt[rows]) ** 2).mean()

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net_ = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 128), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                            torch.nn.Linear(128, r.shape[1]))  # fmt: skip
            train_early_stopping(self.net_, lambda rows: loss(tr_t[rows]), lambda: float(loss(va_t)), n_train=len(tr),
                                 epochs=100, batch_size=64, lr=1e-3, weight_decay=self.value, patience=8, seed=self.seed)  # fmt: skip

    def predict(self, x: np.ndarray) -> np.ndarray | float:
        if self.off:
            return 0.0
        if self.variant == "ridge":
            return (x - self.mu_) @ self.w_ + self.r0_
        if self.variant == "mlp":
            import torch

            with torch.no_grad():
                return centred(self.net_(torch.from_numpy(x.astype(np.float32))).double().numpy())
        if self.variant == "knn":
            k = int(self.value)
            sims = x @ self.x_.T
            nn = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
            return self.r_[nn].mean(axis=1)
        return centred(x @ self.w_.T + self.b_) / self.gamma_


class DiffRouter(UtilityRouter):
    """Per-task lookup + a residual model of per-query differences (module docstring); the
    hyper-parameter is chosen by AIQ on a validation split of train at fit time."""

    name = "diff"

    def __init__(self, *, cost_weight: float = 0.0, variant: str = "ridge", grid: Sequence[float] | None = None,
                 validation_fraction: float = 0.25, seed: int = 0, features: str = "whole",
                 repeats: int = 1):  # fmt: skip
        self.repeats = repeats
        self.cost_weight = cost_weight
        self.features = features
        self.variant = variant
        self.grid = tuple(GRIDS[variant] if grid is None else grid)
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.name = f"diff-{variant}" + ("" if features == "whole" else f"-{features}")

    def _x(self, texts: Sequence[str]) -> np.ndarray:
        """The residual model's features: the whole-prompt vector (``whole``), the vector of the
        last N characters (``tail:N``, :func:`agentroute.embed.text_tail`), or both side by side
        (``both:N``)."""
        kind, _, n = self.features.partition(":")
        parts = [embed_texts(texts)] if kind in ("whole", "both") else []
        if kind in ("tail", "both"):
            parts.append(embed_texts(texts, int(n)))
        return np.concatenate(parts, axis=1).astype(float)

    def _fit_table(self, table: OutcomeTable) -> None:
        x = self._x(table.queries)
        ctx = [RouteContext(query=q, candidates=[]) for q in table.queries]
        self.val_ = {v: 0.0 for v in self.grid}
        for rep in range(self.repeats):  # seeded validation splits; the AIQ averaged over them
            fit_rows, val_rows = validation_split(len(table), self.validation_fraction, self.seed + rep)
            base = PerTaskRouter().fit(table.rows(fit_rows))
            t_fit, _ = base._predict_columns([ctx[i] for i in fit_rows])
            t_val, c_val = base._predict_columns([ctx[i] for i in val_rows])
            val = table.rows(val_rows)
            for value in self.grid:
                res = Residual(self.variant, value, self.seed).fit(x[fit_rows], table.scores[fit_rows], t_fit)
                a = val_aiq(t_val + res.predict(x[val_rows]), c_val, val, base.cost_scale_)
                self.val_[value] += a / self.repeats
        best = max(self.val_.values())
        # ties (within 1e-9) go to the stronger penalty: the grids run from weak to strong (knn: 0 last)
        self.value_ = [v for v in self.grid if self.val_[v] >= best - 1e-9][-1]
        self.base_ = PerTaskRouter().fit(table)
        t_all, _ = self.base_._predict_columns(ctx)
        self.res_ = Residual(self.variant, self.value_, self.seed).fit(x, table.scores, t_all)

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        t, c = self.base_._predict_columns(ctxs)
        x = self._x([context_text(c) for c in ctxs])
        return t + self.res_.predict(x), c


PEERS = ("per-task", "knn", "logreg", "mlp")


def diagnose(ds, features: str, seed: int = 0) -> None:  # noqa: ANN001
    """How much of the per-query *differences* the embedding explains beyond the per-task lookup,
    on a 25% validation split of train (no test row): the share of the variance of the centred
    differences d = s − mean_j s explained by the per-task offset alone and by offset + ridge residual
    (α from the grid), and on two-model data the AUC, over the validation queries where the two
    models disagree, of the predicted difference for "the stronger model right, the weaker wrong"."""
    from sklearn.metrics import roc_auc_score

    table = ds.train
    probe = DiffRouter(variant="ridge", features=features)
    x = probe._x(table.queries)
    fit_rows, val_rows = validation_split(len(table), 0.25, seed)
    base = PerTaskRouter().fit(table.rows(fit_rows))
    ctx = [RouteContext(query=q, candidates=[]) for q in table.queries]
    t_fit, _ = base._predict_columns([ctx[i] for i in fit_rows])
    t_val, _ = base._predict_columns([ctx[i] for i in val_rows])
    s_val = np.clip(table.scores[val_rows], 0, 1)
    d = centred(s_val)
    var = float(np.mean((d - d.mean(axis=0)) ** 2))
    line = [f"{ds.name} ({features}): variance of centred differences {var:.4f}; explained (R²) by per-task "
            f"{1 - np.mean((d - centred(t_val)) ** 2) / var:+.4f}"]  # fmt: skip
    two = len(table.models) == 2
    strong = int(np.argmax(table.scores.mean(axis=0)))
    dis = s_val[:, strong] != s_val[:, 1 - strong] if two else None
    if two:
        line.append(
            f"AUC(strong right | disagree) per-task {roc_auc_score(s_val[dis, strong], centred(t_val)[dis, strong]):.3f}"
        )
    for variant, values in (("ridge", (10.0, 100.0, 1000.0)), ("pair", (1e-3, 1e-2, 1e-1))):
        for v in values:
            res = Residual(variant, v).fit(x[fit_rows], table.scores[fit_rows], t_fit)
            pred = centred(t_val) + (res.predict(x[val_rows]) if variant == "ridge" else 0.0)
            if variant == "pair":
                pred = centred(t_val + res.predict(x[val_rows]))
            r2 = 1 - np.mean((d - pred) ** 2) / var
            auc = f", AUC {roc_auc_score(s_val[dis, strong], pred[dis, strong]):.3f}" if two else ""
            line.append(f"{variant} {v:g}: R² {r2:+.4f}{auc}")
    print("; ".join(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="routerbench,dcrouter")
    parser.add_argument("--variants", default="ridge,pair,knn")
    parser.add_argument(
        "--sample", type=float, default=None, help="fraction of each split (0.5 for MMLU as quality.py)"
    )
    parser.add_argument("--boot", type=int, default=500)
    parser.add_argument(
        "--features", default="whole", help="residual features: whole, tail:N or both:N (comma list)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="seeded validation splits averaged (default 1)"
    )
    parser.add_argument("--validate-only", action="store_true",
                        help="fit on train and print the validation AIQ of each value; read no test row")  # fmt: skip
    parser.add_argument(
        "--diagnose", action="store_true", help="validation R² / AUC of the differences (no test row)"
    )
    args = parser.parse_args()
    print(f"command: python {' '.join(sys.argv)}", flush=True)
    for spec in args.datasets.split(","):
        ds = load_dataset(spec, seed=0, sample=args.sample)
        routers = [
            DiffRouter(variant=v, features=f, repeats=args.repeats)
            for f in args.features.split(",")
            for v in args.variants.split(",")
        ]
        start = time.perf_counter()
        if args.diagnose:
            for f in args.features.split(","):
                diagnose(ds, f)
            continue
        if args.validate_only:
            for r in routers:
                t0 = time.perf_counter()
                r.fit(ds.train)
                vals = ", ".join(f"{v:g}: {a:.4f}" for v, a in r.val_.items())
                print(f"{ds.name} {r.name}: validation AIQ [{vals}] → chosen {r.value_:g}; "
                      f"gain over the per-task lookup (∞ / k=0) {max(r.val_.values()) - r.val_[r.grid[-1]]:+.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
            continue
        result = evaluate(ds, [*routers, *PEERS], progress=False, n_boot=args.boot, peers=list(PEERS))
        print(f"\n## {ds.name}: {len(ds.train)} train / {len(ds.test)} test; zero router {result.zero_router_aiq:.3f}; "
              f"best peer {result.reference} ({time.perf_counter() - start:.0f} s)")  # fmt: skip
        for r in routers:
            vals = ", ".join(f"{v:g}: {a:.4f}" for v, a in r.val_.items())
            print(f"{r.name}: validation AIQ by value [{vals}] → chosen {r.value_:g}"
                  + (f" (γ = {r.res_.gamma_:.2f})" if r.variant == "pair" and not r.res_.off else ""))  # fmt: skip
        print_peer_table(result, ds, PEERS, args.boot)


def print_peer_table(result: Any, ds: Any, peers: Sequence[str], boot: int) -> None:
    """One markdown row per router: AIQ, the bootstrap difference to the zero router and to each peer
    (90%), APGR / CPT on two-model data, and the fit time."""
    two = len(ds.test.models) == 2
    head = "| router | AIQ | vs zero | " + " | ".join(f"vs {p}" for p in peers)
    head += (" | APGR | CPT50 | CPT80" if two else "") + " | fit s |"
    print(head + "\n" + "|---" * (head.count("|") - 1) + "|")
    single = (ds.test.scores, ds.test.costs)
    for r in result.routers:
        if r.error:
            print(f"| {r.name} | error: {r.error} |")
            continue
        cells = [f"{r.aiq:.3f}", _ci(r.vs_zero)]
        for p in peers:
            pr = result.router(p)
            if p == r.name or boot <= 0 or pr.error:
                cells.append("")
                continue
            d = M.bootstrap_aiq_difference(result.outcomes(r.name), result.outcomes(p), single, n_boot=boot,
                                           level=0.9, seed=0, anchor_a=r.anchor, anchor_b=pr.anchor)  # fmt: skip
            cells.append(_ci(d))
        if two:
            cells += [f"{r.apgr:.3f}", *("—" if v is None else f"{100 * v:.1f}%" for v in (r.cpt50, r.cpt80))]
        print(f"| {r.name} | " + " | ".join(cells) + f" | {r.fit_s:.1f} |", flush=True)


def _ci(v: Sequence[float] | None) -> str:
    return "" if not v else f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]"


if __name__ == "__main__":
    main()
