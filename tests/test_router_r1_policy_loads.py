"""How a Router-R1 policy loads, as `ask --policy/--policy-url` and the Python API load it.

- a folder of another kind of model (a BERT encoder: no causal-LM head) was loaded with its head at
  random and generated gibberish, exit 0: now one line naming the missing weights;
- transformers' several-line messages are one line;
- a plain :class:`OpenAIPolicy` waits no longer than the time its task has left (only the CLI's
  served policy did, through a copy of the request code);
- `ask --policy-url` loads the policy before the task starts: a server slow to list its model no
  longer spends the task's --budget-seconds (was: the route refused, 'budget spent');
- `--policy-url` without `--policy` reads SmolLM2's tokenizer alone, not its weights.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from agentroute.errors import StateFileError
from agentroute.training.lm_policy import HFPolicy, OpenAIPolicy

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_reply_server import JSONHandler, LoopbackServer, ReplyServer  # noqa: E402
from test_router_r1 import CharTokenizer  # noqa: E402

ROUTE = "<think>ask</think><route> stub: who wrote Dune? </route>"


class _PolicyHandler(JSONHandler):
    """A policy server: ``/v1/models`` after ``server.models_s`` seconds; ``/v1/completions`` routes
    first, then answers (``hang`` in the path: never answers in time)."""

    server: _PolicyServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        time.sleep(self.server.models_s)
        self.send_json(200, {"data": [{"id": "router-r1"}]})

    def do_POST(self) -> None:  # noqa: N802
        body = self.chat_body()
        assert body is not None
        if "hang" in self.path:
            self.server.stopping.wait(5)
            return
        text = ROUTE if len(self.server.requests) == 1 else "<think>ok</think><answer>Frank Herbert</answer>"
        self.send_json(200, {"choices": [{"index": 0, "text": text}]})


class _PolicyServer(LoopbackServer):
    def __init__(self, models_s: float = 0.0) -> None:
        super().__init__(_PolicyHandler)
        self.models_s, self.stopping = models_s, threading.Event()

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        super().__exit__(*exc)


@pytest.mark.parametrize("kind", ["BertModel", "BertForMaskedLM"])
def test_a_folder_of_another_kind_of_model_is_refused_in_one_line(tmp_path, kind):
    import transformers

    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    getattr(transformers, kind)(config).save_pretrained(tmp_path)  # an encoder, a masked LM: no causal LM
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefgh"]))
    with pytest.raises(StateFileError) as refused:
        HFPolicy.load(tmp_path)  # was: BertLMHeadModel, its head random (or a decoder it never was): gibberish
    text = str(refused.value)
    assert "\n" not in text and f"a {kind} checkpoint, not a causal LM: no policy" in text, text


def test_a_policy_whose_weights_are_missing_is_refused_naming_one(tmp_path, tiny_policy):
    shutil.copytree(tiny_policy, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))  # its own head: not saved
    with pytest.raises(StateFileError) as refused:
        HFPolicy.load(tmp_path)  # was: loaded, lm_head random
    assert "1 of the " in str(refused.value) and "llama causal LM are missing (lm_head.weight…)" in str(refused.value)


def test_a_policy_folder_without_its_tokenizer_is_one_line(tmp_path, tiny_policy):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_policy / name, tmp_path / name)
    with pytest.raises(StateFileError) as refused:
        HFPolicy.load(tmp_path)
    text = str(refused.value)
    assert "not a loadable policy checkpoint (" in text and "\n" not in text, text  # was: transformers' lines


def test_the_tiny_policy_still_loads(tiny_policy):
    assert HFPolicy.load(tiny_policy).model.config.hidden_size == 16  # tied embeddings are not 'missing'


def test_a_plain_openai_policy_waits_no_longer_than_its_call_allows():
    with _PolicyServer() as server:
        policy = OpenAIPolicy(server.url.replace("/v1", "/hang/v1"), CharTokenizer(), model="router-r1")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            policy.generate([[1, 2]], max_tokens=4, timeout_s=0.2)  # was: TypeError, no per-call timeout
        assert time.monotonic() - started < 2


def _pool_file(tmp_path: Path, url: str) -> Path:
    pool = tmp_path / "pool.yaml"
    pool.write_text(f"models:\n  - id: stub\n    backend: openai\n    model: stub\n    base_url: {url}\n"
                    "    input_price: 1.0\n    output_price: 2.0\n    max_tokens: 16\n")
    return pool


@pytest.mark.parametrize("how", ["flags", "graph-file"])
def test_ask_loads_the_policy_before_the_task_starts(tmp_path, tiny_policy, how):
    from typer.testing import CliRunner

    from agentroute.cli.app import app

    with ReplyServer() as agents, _PolicyServer(models_s=0.6) as policy_server:
        if how == "flags":
            graph = ["--graph", "router_r1", "--policy-url", policy_server.url, "--policy", str(tiny_policy)]
        else:  # a user's graph file building the same graph
            file = tmp_path / "router_r1.py"
            file.write_text("from agentroute.routers.router_r1 import build_router_r1_graph\n\n"
                            f"graph = build_router_r1_graph({str(tiny_policy)!r}, policy_url={policy_server.url!r})\n")
            graph = ["--graph", str(file)]
        result = CliRunner().invoke(app, ["ask", "Who wrote Dune?", *graph, "--pool", str(_pool_file(tmp_path, agents.url)),
                                          "--memory", "sqlite://", "--budget-seconds", "0.5", "--json"])
        assert result.exit_code == 0, result.output
        routed = len(agents.requests)
    out = json.loads(result.output.strip().splitlines()[-1])
    # was: the 0.6 s /models reply inside the task spent its 0.5 s, the route refused ('budget spent')
    assert out["status"] == "done" and out["answer"] == "Frank Herbert" and routed == 1, out


def test_policy_url_without_policy_reads_the_tokenizer_alone(tmp_path, monkeypatch):
    from agentroute.pool.backends.local import ModelSource
    from agentroute.routers.router_r1.graph import load_policy
    from agentroute.training.lm_policy import DEFAULT_POLICY

    source = ModelSource.resolve(DEFAULT_POLICY)
    real = source.cache_dir()
    if not (real / "tokenizer.json").is_file():
        pytest.skip("the default policy's cache is not converted here")
    cache = source.cache_dir(tmp_path)  # SmolLM2's cache with its tokenizer and config, no weights
    cache.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json", "agentroute-cache.json"):
        if (real / name).is_file():
            shutil.copy(real / name, cache / name)
    monkeypatch.setenv("AGENTROUTE_CACHE", str(tmp_path))
    with _PolicyServer() as server:
        policy = load_policy(None, policy_url=server.url)  # was: the 135M weights loaded (here: none to load)
    assert policy.tokenizer.encode("Who wrote Dune?", add_special_tokens=False)
