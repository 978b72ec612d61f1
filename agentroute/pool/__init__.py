"""Model cards, the model pool and its backends."""

from agentroute.pool.backends.base import Backend, show_progress
from agentroute.pool.backends.replay import LoggedOutcome, ReplayBackend
from agentroute.pool.backends.streaming import StreamingBackend
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool

__all__ = [
    "Backend",
    "LoggedOutcome",
    "ModelCard",
    "ModelPool",
    "ReplayBackend",
    "StreamingBackend",
    "show_progress",
]
