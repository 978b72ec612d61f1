"""PostgreSQL server fixture (owned by the memory work)."""
