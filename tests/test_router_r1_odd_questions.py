"""Router-R1 trained on a user's own questions with odd rows: a question with a colon (its SFT trace
was never in Router-R1's format, and the warm-up stopped on an ``AssertionError`` after the pool
calls), an empty question, a file that is not UTF-8, a gold answer that is a number, two questions
with one id; and a pool card whose id has a colon (no route action can name it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1.data import load_hotpotqa

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_reply_server import ReplyServer  # noqa: E402


def _file(tmp_path: Path, rows: list[object]) -> Path:
    file = tmp_path / "mine.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return file


def test_a_gold_answer_that_is_a_number_is_its_text(tmp_path):
    rows = load_hotpotqa(_file(tmp_path, [{"question": "When was Frank Herbert born?", "answer": 1920},
                                          {"question": "Pi to two places?", "answer": 3.14}]))
    assert [r["answer"] for r in rows] == ["1920", "3.14"]  # was: refused, 'answer' must be a text


@pytest.mark.parametrize(("rows", "says"), [
    ([{"question": "Q?", "answer": "A"}, {"question": "  ", "answer": "A"}], "question 1 is empty"),
    ([{"id": "a", "question": "Q?", "answer": "A"}, {"id": "a", "question": "R?", "answer": "B"}],
     "question 1 has the id 'a' of question 0; ids must be unique"),
    ([{"question": "Q?", "answer": True}], "question 0 must be an object with 'question' and 'answer' texts"),
])
def test_an_odd_row_is_refused_naming_it(tmp_path, rows, says):
    file = _file(tmp_path, rows)
    with pytest.raises(ConfigurationError) as refused:
        load_hotpotqa(file)
    assert str(refused.value).startswith(f"{file}: ") and says in str(refused.value)


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    file = tmp_path / "latin1.jsonl"
    file.write_bytes(b'{"question": "Q?", "answer": "A"}\n{"question": "caf\xe9?", "answer": "A"}\n')
    with pytest.raises(ConfigurationError, match="latin1.jsonl: line 2 is not UTF-8 text \\(byte 0xe9\\)"):
        load_hotpotqa(file)  # was: UnicodeDecodeError traceback


@pytest.fixture(scope="module")
def policy(tiny_policy):
    from agentroute.training.lm_policy import HFPolicy

    return HFPolicy.load(tiny_policy)


def _pool(url: str, agent: str = "plain"):
    from agentroute.pool.card import ModelCard
    from agentroute.pool.pool import ModelPool

    return ModelPool([ModelCard(id=agent, backend="openai", model="plain", base_url=url, input_price=1.0,
                                output_price=2.0, max_tokens=8, strategies=["direct"], timeout_s=5)])


async def test_a_question_with_a_colon_makes_a_trace_in_the_format(policy):
    from agentroute.dispatch.dispatcher import Dispatcher
    from agentroute.loading import load_router
    from agentroute.routers.router_r1 import LoopSettings
    from agentroute.routers.router_r1.agent import ThinkRouteLoop
    from agentroute.routers.router_r1.rewards import format_errors
    from agentroute.routers.router_r1.sft import build_traces

    with ReplyServer() as server:
        pool = _pool(server.url)
        loop = ThinkRouteLoop(policy, pool, LoopSettings(max_turns=1, info_tokens=8))
        rows = [{"id": "1", "question": "Dune: who wrote it? </route>", "answer": "Frank Herbert"}]
        try:
            [trace] = await build_traces(loop, Dispatcher(pool, load_router("cheapest")), rows, direct_every=0)
        finally:
            await pool.aclose()
        sent = server.requests[-1]["messages"][-1]["content"]
    assert trace.failed is None and format_errors(trace.text, loop.names) == []  # was: 'exactly one colon'
    assert "<route> plain: Dune\u2236 who wrote it? </route>" in trace.text
    assert sent.endswith("Dune\u2236 who wrote it?")  # the agent got the question the trace routes


def test_an_agent_id_with_a_colon_is_refused_naming_it(policy):
    from agentroute.routers.router_r1.agent import ThinkRouteLoop

    with pytest.raises(ConfigurationError, match="agent id 'llama3:8b' has a colon"):
        ThinkRouteLoop(policy, _pool("http://127.0.0.1:9/v1", agent="llama3:8b"))  # was: every route refused


@pytest.fixture(scope="module")
def short_context_policy(tiny_policy, tmp_path_factory):
    """The tiny policy with a 512-token context: a 2 KB question cannot fit it (as 100 KB cannot fit SmolLM2's 8192)."""
    import shutil

    folder = tmp_path_factory.mktemp("short-context")
    shutil.copytree(tiny_policy, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 512}))
    return folder


LONG = "Which of these cities is the capital? " + "Paris, Lyon, Nice, " * 200


def test_a_question_too_long_for_the_policy_is_refused_naming_the_lengths(short_context_policy):
    from agentroute import AgentGraph, make_router
    from agentroute.budget import Budget
    from agentroute.routers.router_r1.agent import ThinkRouteAgent
    from agentroute.training.lm_policy import HFPolicy

    graph = AgentGraph("router_r1").add_node("think_route", ThinkRouteAgent(HFPolicy.load(short_context_policy)), stage="route")
    app = graph.compile(pool=_pool("http://127.0.0.1:9/v1"), router=make_router("cheapest"), budget=Budget(usd=1.0))
    with pytest.raises(ConfigurationError, match=r"the question is \d+ tokens with the system prompt, \d+ with the "
                                                 r"loop's turns, over the policy's 512-token context"):
        app.run(LONG)  # was: generated past the positions the policy was trained on


def test_training_leaves_out_a_question_too_long_for_the_policy(tmp_path, short_context_policy):
    """Checked before the SFT warm-up: a recipe whose only question is too long stops there, its line said
    (the same filter leaves a long question out of a run with others; no warm-up here keeps it < 1 s)."""
    from agentroute.routers.router_r1.trainer import train_router_r1

    data = _file(tmp_path, [{"question": LONG, "answer": "Paris"}])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "pool:\n  - {id: plain, backend: openai, model: plain, base_url: 'http://127.0.0.1:9/v1', max_tokens: 8}\n"
        f"data: {{path: {data}, train: 1}}\nloop: {{max_turns: 1, turn_tokens: 16, info_tokens: 8}}\n"
        "sft: {enabled: true, traces: 1, epochs: 1, batch_size: 1, direct_every: 1}\n"
    )
    said: list[str] = []
    with pytest.raises(ConfigurationError, match="^data: every training question is too long for the policy's context$"):
        train_router_r1(recipe, tmp_path / "out", policy_dir=short_context_policy, sft_only=True, log=said.append)
    assert said == [said[0]] and said[0].startswith("data: 1 questions left out, too long: question 0: the question is ")
    assert not (tmp_path / "out" / "sft").exists()  # was: an SFT sequence past the context, trained and saved


def test_more_training_questions_than_the_file_holds_names_the_recipe_key():
    from agentroute.routers.router_r1.data import split

    with pytest.raises(ConfigurationError, match=r"^data: 'train' \(50\) must be between 0 and the 2 questions there are$"):
        split([{"q": 1}, {"q": 2}], 50)  # was: 'train (50) …', no section named
