"""The Router-R1 graph: one :class:`ThinkRouteAgent` node whose route actions are dispatcher steps."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

from agentroute.errors import ConfigurationError
from agentroute.graph import AgentGraph
from agentroute.routers.router_r1.agent import LoopSettings, ThinkRouteAgent
from agentroute.routers.router_r1.served import ServedPolicy
from agentroute.training.lm_policy import DEFAULT_POLICY, HFPolicy, LMPolicy, one_line, read_whole_policy


def load_policy(
    policy: str | Path | None = None, *, policy_url: str | None = None, api_key: str | None = None
) -> LMPolicy:
    """The policy LM: a checkpoint directory, the default SmolLM2 (``None``), or a served one.

    With ``policy_url`` the model is served behind an OpenAI-compatible endpoint (``vllm serve``);
    its tokenizer is read from ``policy`` (the directory that was served) or is SmolLM2's. A
    ``policy`` that is no tokenizer's directory, or a server that does not answer, is a
    :class:`ConfigurationError` naming it.
    """
    if not policy_url:
        return HFPolicy.load(policy)
    check_policy_url(policy_url)
    tok = _default_tokenizer() if policy is None else _tokenizer(policy)
    return ServedPolicy(policy_url, tok, api_key=api_key or os.environ.get("VLLM_API_KEY"))


def _default_tokenizer() -> Any:
    """The default policy's (SmolLM2's) tokenizer alone: from its converted cache, else from the GGUF's
    metadata (seconds; its weights are neither read nor converted)."""
    import transformers

    from agentroute.pool.backends.local import ModelSource

    source = ModelSource.resolve(DEFAULT_POLICY)
    cached = source.cache_dir()
    if (cached / "tokenizer.json").is_file():
        return transformers.AutoTokenizer.from_pretrained(cached)
    return transformers.PreTrainedTokenizerFast.from_pretrained(source.location, gguf_file=source.gguf_file)


def check_policy_url(url: str) -> str:
    """``url`` when it is an ``http(s)://HOST[:PORT]…`` URL with a port in 1-65535; a
    :class:`ConfigurationError` naming it and what is wrong otherwise.

    >>> check_policy_url("http://h:0/v1")
    Traceback (most recent call last):
    ...
    agentroute.errors.ConfigurationError: policy server URL 'http://h:0/v1': the port must be a number 1-65535 (got '0')
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, "http://[::1:80/v1"
        parts = urllib.parse.SplitResult("", "", "", "", "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"policy server URL {url!r} is not an http(s) URL (e.g. http://127.0.0.1:8001/v1)"
        )
    try:
        port_ok = parts.port is None or parts.port > 0  # urllib raises for a port out of 0-65535 or no number
    except ValueError:
        port_ok = False
    if not port_ok:
        port = parts.netloc.rpartition(":")[2]
        raise ConfigurationError(
            f"policy server URL {url!r}: the port must be a number 1-65535 (got {port!r})"
        )
    return url


def _tokenizer(path: str | Path) -> Any:
    import transformers

    def read(folder: Path) -> Any:
        if not folder.is_dir():
            raise ConfigurationError(
                f"policy {str(path)!r} is not a directory (with --policy-url it supplies the served model's tokenizer)"
            )
        try:
            return transformers.AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"policy {str(path)!r} holds no tokenizer: {one_line(exc)}") from None

    return read_whole_policy(Path(path).expanduser(), read)  # a training run may be saving it meanwhile


def build_router_r1_graph(
    policy: LMPolicy | str | Path | None = None,
    *,
    policy_url: str | None = None,
    settings: LoopSettings | None = None,
) -> AgentGraph:
    """A graph with one ``think_route`` node (stage ``route``); the policy loads on first use
    (a ``policy_url`` that is no http(s) URL is refused at once)."""
    if policy_url:
        check_policy_url(policy_url)
    agent = ThinkRouteAgent(
        policy if hasattr(policy, "generate") else (lambda: load_policy(policy, policy_url=policy_url)),  # type: ignore[arg-type]
        settings,
    )
    graph = AgentGraph("router_r1")
    graph.add_node("think_route", agent, stage="route")
    return graph


def preload_policies(graph: AgentGraph) -> None:
    """Load the policy of every Router-R1 node of ``graph`` now, not in its first task (none: nothing to
    do): the CLI loads them before a task starts, so a load takes none of its ``--budget-seconds``."""
    for node in graph.nodes.values():
        agent = getattr(node, "fn", None)
        if isinstance(agent, ThinkRouteAgent):
            agent.policy  # noqa: B018 (the property loads it)


graph = build_router_r1_graph
