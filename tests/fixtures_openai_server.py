"""Local OpenAI-compatible server fixture (owned by the backends work)."""
