"""The dispatcher's system-prompt cache hands each step its own role prompt (checked on the wire).

The cache is keyed by the two strings the system prompt is made of (the strategy's instruction and
the role's prompt), never by a role's name: a role whose text changes under the same name, or a
pool whose card gains a strategy, gets the prompt it asks for.
"""

from __future__ import annotations

from agentroute import Dispatcher, ModelCard, ModelPool, make_router
from tests.fixtures_reply_server import ReplyServer


def _pool(url: str, strategies: tuple[str, ...]) -> ModelPool:
    return ModelPool([ModelCard(id="m", backend="openai", model="plain", base_url=url, input_price=1.0,
                                output_price=2.0, max_tokens=16, timeout_s=10, strategies=strategies)])  # fmt: skip


async def test_same_role_name_with_new_text_and_a_reloaded_pool_get_their_own_system_prompt() -> None:
    with ReplyServer() as provider:
        dispatcher = Dispatcher(_pool(provider.url, ("direct",)), make_router("cheapest"))
        for prompt in ("You are A.", "You are B.", "You are A."):
            run = dispatcher.start("q")
            step = await dispatcher.step(run, role="executor", stage="executor", prompt=prompt, input="q")
            assert step is not None and step.status == "ok"
        reloaded = Dispatcher(_pool(provider.url, ("cot",)), make_router("cheapest"))
        run = reloaded.start("q")
        await reloaded.step(run, role="executor", stage="executor", prompt="You are B.", input="q")
        systems = [r["messages"][0]["content"] for r in provider.requests]
    direct, cot = "Answer concisely.", "Think step by step, then give the final answer after 'Answer:'."
    assert systems == [f"You are A.\n{direct}", f"You are B.\n{direct}", f"You are A.\n{direct}", f"You are B.\n{cot}"]
