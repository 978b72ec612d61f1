"""Serving: an OpenAI-compatible HTTP API in front of a model pool (needs the ``serve`` extra)."""

from agentroute.serve.openai_server import ChatCompletionBody, ServerThread, create_app, serve

__all__ = ["ChatCompletionBody", "ServerThread", "create_app", "serve"]
