"""The ``agentroute`` command line (typer + rich)."""

from __future__ import annotations

from agentroute.cli.app import app, main

__all__ = ["app", "main"]
