"""Router-R1: rewards (hand-computed from the released code's logic) and the think/route loop with a
scripted policy over a scripted pool (fast; the real local model is in test_router_r1_slow.py)."""

from __future__ import annotations

import math

import pytest

from agentroute.budget import Budget
from agentroute.graph import AgentGraph
from agentroute.pool.backends.base import Backend
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.routers import make_router
from agentroute.routers.router_r1 import (
    CostNormalizer,
    LoopSettings,
    RouterR1Reward,
    ThinkRouteAgent,
    exact_match,
    format_errors,
    format_valid,
    token_f1,
    total_reward,
)
from agentroute.training.lm_policy import PolicyOutput, cut_at_stop
from agentroute.types import Completion

AGENTS = ["small", "large"]
GOOD = (
    "<think>need a fact</think><route> small: who wrote Dune? </route>"
    "<information>Frank Herbert</information><think>ok</think><answer>Frank Herbert</answer>"
)


# -- rewards ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, ok",
    [
        (GOOD, True),
        ("<think>a</think><search>large: q</search><information>i</information><answer>x</answer>", True),
        ("  <think>a</think><answer>x</answer>  ", True),  # surrounding space is stripped
        ("<think>a</think><answer>x</answer><answer>y</answer>", False),  # two answers
        ("<think>a</think><route>small: q</route><answer>x</answer>", False),  # route without information
        ("<think>a</think><route>small q</route><information>i</information><answer>x</answer>", False),  # no colon
        ("<think>a</think><route>small: a: b</route><information>i</information><answer>x</answer>", False),  # 2 colons
        ("<think>a</think><route>gpt: q</route><information>i</information><answer>x</answer>", False),  # unknown
        ("<think>a</think><route>small: </route><information>i</information><answer>x</answer>", False),  # empty query
        ("<think>a<think>b</think></think><answer>x</answer>", False),  # nested
        ("<think>a</think><answer>x</answer> trailing", False),  # does not end with </answer>
        ("<think>a</think>", False),
        ("Dune was written by Frank Herbert.", False),
    ],
)
def test_format_rules(text, ok):
    assert format_valid(text, AGENTS) is ok, format_errors(text, AGENTS)


def test_outcome_em_and_f1_hand_computed():
    assert exact_match("the Frank Herbert.", ["Frank Herbert"]) == 1.0
    assert exact_match("Herbert", ["Frank Herbert"]) == 0.0
    # F1: pred {frank, herbert, wrote}, gold {frank, herbert}: P = 2/3, R = 1 → F1 = 0.8
    assert token_f1("Frank Herbert wrote", ["Frank Herbert"]) == pytest.approx(0.8)


def test_cost_normalizer_hand_computed():
    norm = CostNormalizer()
    # raw 0, 4, 16, 36 → r = 0, 2, 4, 6; lo = p5 = 0.3, hi = p95 = 5.7 (linear interpolation)
    c = norm([0.0, 4.0, 16.0, 36.0])
    lo, hi = 0.3, 5.7
    assert c == pytest.approx([1.0, 1 - (2 - lo) / (hi - lo), 1 - (4 - lo) / (hi - lo), 0.0])
    assert CostNormalizer()([3.0]) == [0.5]  # one value: hi − lo = 0


def test_cost_window_rolls():
    norm = CostNormalizer(window=2)
    norm([0.0, 100.0])
    assert list(norm.history) == [0.0, 10.0]
    norm([25.0])
    assert list(norm.history) == [10.0, 5.0]


def test_total_reward_hand_computed():
    # α = 0.3, correct (EM 1), c = 0.6 → 0.7·1 + 0.3·0.6 = 0.88; wrong → 0; bad format → −1
    assert total_reward(True, 1.0, 0.6, 0.3) == pytest.approx(0.88)
    assert total_reward(True, 0.0, 0.6, 0.3) == 0.0
    assert total_reward(False, 1.0, 0.6, 0.3) == -1.0
    reward = RouterR1Reward(alpha=0.3)
    got = reward(
        [GOOD, GOOD.replace("<answer>Frank Herbert", "<answer>Asimov"), "Frank Herbert"],
        answer=["Frank Herbert"] * 3, agents=[AGENTS] * 3, cost_raw=[0.0, 0.0, 0.0],
    )
    assert got == pytest.approx([0.7 + 0.3 * 0.5, 0.0, -1.0])  # degenerate window: c = 0.5


# -- the loop with a scripted policy -------------------------------------------------------------------
class CharTokenizer:
    """One token per character; id 0 is the end of sequence."""

    eos_token_id = 0
    pad_token_id = 0

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i)

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True):
        return self.encode("".join(f"[{m['role']}]{m['content']}" for m in messages) + "[assistant]")


class ScriptedPolicy:
    """Replies with the next scripted turn (each cut at the stop strings like a real policy)."""

    def __init__(self, turns):
        self.tokenizer, self.turns, self.calls = CharTokenizer(), list(turns), []

    def generate(self, prompts, *, max_tokens, stop=(), temperature=0.0, top_p=1.0):
        self.calls.append(tuple(stop))
        out = []
        for _ in prompts:
            text = self.turns.pop(0) if self.turns else "<think>…</think><answer>none</answer>"
            out.append(cut_at_stop(self.tokenizer, self.tokenizer.encode(text)[:max_tokens], stop))
        return out


class Echo(Backend):
    name = "echo"
    blocks = False

    def __init__(self):
        self.calls = []

    async def complete(self, request, card):
        self.calls.append((card.id, request.messages[-1]["content"]))
        return Completion(model=card.id, text=f"{card.id} says hi", tokens_in=10, tokens_out=4, cost_usd=card.usd(10, 4))


def echo_pool():
    cards = [
        ModelCard(id="small", backend="replay", input_price=1.0, output_price=2.0, max_tokens=8),
        ModelCard(id="large", backend="replay", input_price=100.0, output_price=400.0, max_tokens=8, tier="large"),
    ]
    backend = Echo()
    return ModelPool(cards, {"replay": backend}), backend


def run_graph(policy, budget, settings=None):
    pool, backend = echo_pool()
    graph = AgentGraph("router_r1").add_node("think_route", ThinkRouteAgent(policy, settings), stage="route")
    result = graph.compile(pool=pool, router=make_router("cheapest"), budget=budget).run("Who wrote Dune?")
    return result, backend


def test_route_is_a_dispatcher_step_and_the_answer_is_extracted():
    policy = ScriptedPolicy(["<think>ask</think><route> small: who wrote Dune? </route>", "<think>ok</think><answer>Frank Herbert</answer>"])
    result, backend = run_graph(policy, Budget(usd=1.0))
    r1 = result.state["context"]["router_r1"]
    assert backend.calls == [("small", "who wrote Dune?")]
    assert [s.agent.model for s in result.steps] == ["small"] and result.steps[0].stage == "route"
    assert result.answer == "Frank Herbert" and r1["format_valid"] and r1["route_calls"] == 1
    assert "<information>small says hi</information>" in r1["completion"]
    assert r1["cost_raw"] == pytest.approx(4 * 2.0)  # completion tokens × output price per 1M
    assert result.cost_usd == pytest.approx((10 * 1.0 + 4 * 2.0) / 1e6)


def test_unknown_and_unaffordable_agents_are_refused_in_information():
    policy = ScriptedPolicy([
        "<think>a</think><route> gpt-9: q </route>",
        "<think>b</think><route> large: q </route>",
        "<think>c</think><answer>x</answer>",
    ])
    # large's worst case (≥ 8 output tokens × $400/1M = $0.0032) is over the budget; small's is not
    result, backend = run_graph(policy, Budget(usd=0.001))
    turns = result.state["context"]["router_r1"]["turns"]
    assert backend.calls == []
    assert turns[0]["kind"] == "refused" and "unknown agent 'gpt-9'" in turns[0]["information"]
    assert turns[1]["kind"] == "refused" and "over the remaining budget" in turns[1]["information"]
    assert "affordable: small" in turns[1]["information"]
    assert "<information>not routed" in result.state["context"]["router_r1"]["completion"]
    assert not result.state["context"]["router_r1"]["format_valid"]  # an unknown agent breaks a format rule
    assert result.status == "done" and result.cost_usd == 0.0


def test_budget_spent_forces_the_final_turn():
    policy = ScriptedPolicy([
        "<think>a</think><route> small: q1 </route>",
        "<think>b</think><answer>done</answer>",
    ])
    # room for exactly one worst-case small call: after it nothing is affordable → the final turn
    result, backend = run_graph(policy, Budget(calls=1))
    turns = result.state["context"]["router_r1"]["turns"]
    assert len(backend.calls) == 1 and "answer now" in turns[0]["information"]
    assert policy.calls[-1] == ("</answer>",)  # the final turn may not route
    assert result.answer == "done"


def test_a_policy_that_never_answers_is_cut_off_at_the_turn_limit():
    policy = ScriptedPolicy(["<think>x</think><route> small: q </route>"] * 10)
    result, backend = run_graph(policy, Budget(usd=1.0))
    r1 = result.state["context"]["router_r1"]
    assert len(backend.calls) == 4  # 4 route turns …
    assert len(r1["turns"]) == 5 and r1["turns"][-1]["kind"] == "final"  # … then one final turn
    assert policy.calls == [("</route>", "</search>", "</answer>")] * 4 + [("</answer>",)]
    assert not r1["format_valid"] and result.answer == "small says hi"  # falls back to the last reply


def test_an_episode_with_no_answer_and_no_reply_answers_with_the_policy_text():
    """`agentroute ask "Who wrote Dune?" --graph graphs/router_r1.py` with the untrained policy: it
    answers in prose (no tags): format-invalid, no agent called — `ask` showed "answer: None"."""
    policy = ScriptedPolicy(["Dune is a novel by <think>Frank Herbert</think>."])
    result, backend = run_graph(policy, Budget(usd=1.0))
    r1 = result.state["context"]["router_r1"]
    assert backend.calls == [] and r1["turns"][0]["kind"] == "invalid" and not r1["format_valid"]
    assert result.answer == "Dune is a novel by Frank Herbert ."


def test_information_is_truncated_and_masked():
    from agentroute.routers.router_r1.agent import ThinkRouteLoop

    policy = ScriptedPolicy(["<think>x</think><route> small: q </route>", "<think>y</think><answer>z</answer>"])
    pool, _ = echo_pool()
    loop = ThinkRouteLoop(policy, pool, LoopSettings(info_tokens=5))
    from agentroute.dispatch.dispatcher import Dispatcher

    dispatcher = Dispatcher(pool, make_router("cheapest"))
    ep = loop.episode("q", dispatcher.start("q", budget=Budget(usd=1.0)))
    import asyncio

    asyncio.run(loop.run([ep], dispatcher))
    assert "<information>small</information>" in ep.text  # "small says hi" cut to 5 tokens
    info = "\n<information>small</information>\n"
    mask = ep.env_mask
    assert len(mask) == len(ep.completion_ids) and mask.count(0) == len(info)
    start = ep.text.index(info)
    assert set(mask[start : start + len(info)]) == {0} and set(mask[:start]) == {1}


def test_cut_at_stop_keeps_the_stop_string():
    tok = CharTokenizer()
    out = cut_at_stop(tok, tok.encode("<route>a: b</route> more"), ["</route>"])
    assert isinstance(out, PolicyOutput) and out.text == "<route>a: b</route>" and out.stopped == "</route>"
    assert len(out.ids) == len(out.text)
    assert math.isclose(len(cut_at_stop(tok, tok.encode("ab") + [0, 99], []).ids), 3)  # eos kept, rest dropped


def test_recipe_checks_name_the_problem(tmp_path):
    from agentroute.errors import ConfigurationError
    from agentroute.routers.router_r1.trainer import RouterR1TrainConfig

    bad = tmp_path / "r.yaml"
    bad.write_text("grpo: {per_device_train_batch_size: 3, num_generations: 2}\n")
    with pytest.raises(ConfigurationError, match="multiple of num_generations"):
        RouterR1TrainConfig.from_yaml(bad)
    bad.write_text("grpo: {not_a_field: 1}\n")
    with pytest.raises(ConfigurationError, match="not_a_field"):
        RouterR1TrainConfig.from_yaml(bad)
    cfg = RouterR1TrainConfig.from_yaml("training/router_r1.yaml", gpu=True)
    assert cfg.grpo["use_vllm"] and cfg.grpo["max_steps"] == 225 and cfg.grpo["learning_rate"] == 1e-6
    assert cfg.loop["turn_tokens"] == 256 and cfg.pool == RouterR1TrainConfig.from_yaml("training/router_r1.yaml").pool


def test_ask_policy_needs_the_router_r1_graph(tmp_path):
    from typer.testing import CliRunner

    from agentroute.cli.app import app

    out = CliRunner().invoke(app, ["ask", "q", "--graph", "qa", "--policy", str(tmp_path)])
    assert out.exit_code != 0 and "need --graph router_r1" in out.output  # a configuration error


def test_ask_policy_url_with_a_missing_policy_directory_is_a_configuration_error(tmp_path):
    """docs/router_r1.md's `ask … --policy-url URL --policy runs/router_r1/policy` before training:
    exit 2 naming the directory (was a transformers traceback: "Repo id must be in the form …")."""
    from typer.testing import CliRunner

    from agentroute.cli.app import app

    missing = tmp_path / "runs" / "router_r1" / "policy"
    args = ["ask", "Who wrote Dune?", "--graph", "router_r1", "--policy-url", "http://127.0.0.1:9/v1", "--policy", str(missing)]
    out = CliRunner().invoke(app, [*args, "--memory", f"sqlite:///{tmp_path / 'm.db'}"])
    assert out.exit_code == 2, out.output
    assert "is not a directory" in out.output and "tokenizer" in out.output and "Traceback" not in out.output


@pytest.mark.slow
def test_ask_policy_url_of_a_server_that_does_not_answer_says_so(tmp_path):
    """`ask … --graph router_r1 --policy-url URL` with no server there: exit 2 naming the URL and
    `vllm serve` (was a urllib traceback: "Connection refused"). Loads SmolLM2's tokenizer."""
    import socket

    from typer.testing import CliRunner

    from agentroute.cli.app import app

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    out = CliRunner().invoke(app, ["ask", "q", "--graph", "router_r1", "--policy-url", url, "--memory", f"sqlite:///{tmp_path / 'm.db'}"])
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.split())
    assert f"policy server {url} does not answer" in text and "vllm serve" in text


def test_train_gpu_on_a_machine_without_cuda_stops_at_once_naming_what_is_missing(tmp_path):
    """docs/router_r1.md: `agentroute train router-r1 --config training/router_r1.yaml --gpu` on a
    CPU machine: exit 2 at once (it built SFT traces and trained on the CPU for minutes before)."""
    import time

    import torch
    from typer.testing import CliRunner

    from agentroute.cli.app import app

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: --gpu is the real path (tests/test_router_r1_gpu.py)")
    started = time.perf_counter()
    out = CliRunner().invoke(app, ["train", "router-r1", "--config", "training/router_r1.yaml", "--out", str(tmp_path / "r1"), "--gpu"])
    assert out.exit_code == 2, out.output
    assert "no CUDA GPU is visible" in out.output and "leave out --gpu" in out.output
    assert time.perf_counter() - started < 30 and not (tmp_path / "r1").exists()


def test_sft_logs_its_losses_without_a_torch_warning():
    """`agentroute train router-r1` printed torch's "Converting a tensor with requires_grad=True to a
    scalar" UserWarning at its first SFT step (the log line read the loss from the graph)."""
    import types
    import warnings

    import torch

    from agentroute.routers.router_r1.sft import sft

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.out = torch.nn.Embedding(8, 4), torch.nn.Linear(4, 8)

        def forward(self, input_ids, attention_mask, labels):
            logits = self.out(self.emb(input_ids))
            return types.SimpleNamespace(loss=torch.nn.functional.cross_entropy(logits.view(-1, 8), labels.view(-1), ignore_index=-100))

    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses = sft(Tiny(), [([1, 2, 3], [-100, 2, 3]), ([4, 5], [4, 5])], epochs=1, batch_size=2, log=lines.append)
    assert len(losses) == 1 and lines == [f"sft epoch 0 step 1 loss {losses[0]:.4f}"]


def test_train_command_is_typer_compatible():
    import typer
    from typer.testing import CliRunner

    from agentroute.cli.router_r1_cmd import train_router_r1

    train = typer.Typer()
    train.command("router-r1")(train_router_r1)
    train.command("other")(lambda: None)  # a group, as `agentroute train` is
    out = CliRunner().invoke(train, ["router-r1", "--help"])
    assert out.exit_code == 0
    for flag in ("--config", "--out", "--gpu", "--policy", "--sft-only", "--max-steps"):
        assert flag in out.output
