"""Router-R1's SFT trace cache (``OUT/traces.jsonl``) as a user meets it: rerunning into the same
``--out`` after changing the recipe's pool or questions, and a cache a killed run left behind."""

from __future__ import annotations

import json

import pytest

from agentroute.errors import StateFileError
from agentroute.routers.router_r1 import LoopSettings
from agentroute.routers.router_r1.sft import Trace, cached_traces, trace_inputs

ROWS = [{"question": "Who wrote Dune?", "answer": "Frank Herbert"}]


def _trace(agent: str) -> Trace:
    return Trace("Who wrote Dune?", [(f"<think>a</think><route> {agent}: Who wrote Dune? </route>", True),
                                     ("<information> Herbert </information>", False),
                                     ("<think>b</think><answer>Frank Herbert</answer>", True)])


class Builder:
    """Counts the (slow, pool-calling) builds."""

    def __init__(self, agent: str):
        self.agent, self.calls = agent, 0

    def __call__(self) -> list[Trace]:
        self.calls += 1
        return [_trace(self.agent)]


def test_the_same_inputs_reuse_the_cache(tmp_path):
    cache, key = tmp_path / "traces.jsonl", trace_inputs(ROWS, ["smol-direct"], 4, LoopSettings())
    build = Builder("smol-direct")
    said: list[str] = []
    first = cached_traces(cache, key, build, said.append)
    again = cached_traces(cache, key, build, said.append)
    assert build.calls == 1 and [t.text for t in again] == [t.text for t in first]
    assert said == [f"sft: building the traces with real pool calls (kept in {cache} for the next run)",
                    f"sft: 1 traces from {cache} (built before from the same questions, agents and settings)"]
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("changed", [
    {"agents": ["new-agent"]},  # another pool: the cached traces route to agents it does not have
    {"rows": [{"question": "Who wrote Emma?", "answer": "Jane Austen"}]},
    {"direct_every": 2},
    {"settings": LoopSettings(info_tokens=8)},  # replies were truncated to other lengths
])
def test_a_cache_of_other_inputs_is_rebuilt(tmp_path, changed):
    inputs = {"rows": ROWS, "agents": ["smol-direct"], "direct_every": 4, "settings": LoopSettings()}
    cache = tmp_path / "traces.jsonl"
    cached_traces(cache, trace_inputs(**inputs), Builder("smol-direct"))
    build = Builder("new-agent")
    traces = cached_traces(cache, trace_inputs(**{**inputs, **changed}), build)
    assert build.calls == 1 and "new-agent" in traces[0].text
    assert "new-agent" in cache.read_text()  # and the cache now holds the new traces


def test_a_cache_from_before_the_inputs_digest_is_rebuilt(tmp_path):
    cache = tmp_path / "traces.jsonl"  # the old format: trace lines only, built for whatever recipe
    cache.write_text(json.dumps({"question": "Who wrote Dune?", "pieces": _trace("old-agent").pieces}) + "\n")
    build = Builder("smol-direct")
    traces = cached_traces(cache, trace_inputs(ROWS, ["smol-direct"], 4, LoopSettings()), build)
    assert build.calls == 1 and "old-agent" not in traces[0].text


def test_a_corrupted_cache_is_an_error_naming_the_file(tmp_path):
    cache = tmp_path / "traces.jsonl"
    key = trace_inputs(ROWS, ["smol-direct"], 4, LoopSettings())
    cache.write_text(json.dumps({"inputs": key}) + '\n{"question": "Who wr')  # cut short
    with pytest.raises(StateFileError, match="traces.jsonl"):
        cached_traces(cache, key, Builder("smol-direct"))


@pytest.mark.slow
def test_rerunning_sft_into_the_same_out_with_another_pool_rebuilds_the_traces(tmp_path, tiny_policy):
    """Was: the first run's traces (routing to its pool's agents) were reused, and the warm-up
    stopped on an ``AssertionError`` (their agents are not this pool's)."""
    from agentroute.routers.router_r1.trainer import train_router_r1

    out = tmp_path / "out"
    out.mkdir()
    (out / "traces.jsonl").write_text(json.dumps({"question": "q", "pieces": _trace("gone-agent").pieces}) + "\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "pool:\n  - {id: smol-direct, backend: local, model: SmolLM2-135M-Instruct.Q4_1.gguf, input_price: 0.05,\n"
        "     output_price: 0.20, max_tokens: 8, strategies: [direct]}\n"
        "data: {train: 50}\nloop: {max_turns: 1, turn_tokens: 16, info_tokens: 8}\n"
        "sft: {enabled: true, traces: 1, epochs: 1, batch_size: 1, direct_every: 1}\n"  # direct traces: no pool call
    )
    said: list[str] = []
    summary = train_router_r1(recipe, out, policy_dir=tiny_policy, sft_only=True, log=said.append)
    assert summary["sft"]["traces"] == 1 and (out / "sft" / "config.json").is_file()
    assert said[0].startswith("sft: building the traces with real pool calls")  # progress before the slow part
    assert "gone-agent" not in (out / "traces.jsonl").read_text()
