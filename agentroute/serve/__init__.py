"""Serving: an OpenAI-compatible HTTP API in front of a model pool (needs the ``serve`` extra)."""

from agentroute.serve.openai_server import ChatCompletionBody, ServerThread, create_app, serve
from agentroute.serve.routed import ROUTER_MODEL

__all__ = ["ROUTER_MODEL", "ChatCompletionBody", "ServerThread", "create_app", "serve"]
