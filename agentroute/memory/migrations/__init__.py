"""Alembic migrations of the memory schema (env + versions), shipped inside the package."""
