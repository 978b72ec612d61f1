"""An index of tasks by the batch worker that ran them (``meta.agentroute_batch.worker``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The expression indexed, as :data:`agentroute.memory.batches.WORKER_OF` queries it (kept as written here: a
#: migration does not change with the code).
WORKER_OF = {
    "postgresql": "((meta -> 'agentroute_batch') ->> 'worker')",
    "sqlite": "json_extract(meta, '$.agentroute_batch.worker')",
}


def upgrade() -> None:
    expression = WORKER_OF[op.get_bind().dialect.name]
    op.execute(f"CREATE INDEX ix_tasks_batch_worker ON tasks ({expression}) WHERE {expression} IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX ix_tasks_batch_worker")
