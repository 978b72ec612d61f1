"""``attempts.stage`` where a memory lacks it: revision 0003 as first released created ``attempts``
without the column (it was added to 0003 in place 18 minutes later, so a memory made in between is
at 0003 without it, and every attempt write, resume and reconcile of it failed).

Each existing attempt gets the stage of the stored step it made (same task and step index), else its
agent's role: a role's stage unless the graph names another (``AgentGraph.add_role(stage=)``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: An attempt's role, the part of its agent key (``role:model:strategy``) before the first colon.
ROLE_OF = {
    "postgresql": "split_part(agent, ':', 1)",
    "sqlite": "substr(agent, 1, instr(agent, ':') - 1)",
}


def upgrade() -> None:
    if context.is_offline_mode():
        return  # ``--sql``: no database to read; the SQL printed for 0003 already has the column
    bind = op.get_bind()
    if "stage" in {column["name"] for column in sa.inspect(bind).get_columns("attempts")}:
        return  # made by 0003 as it is now: nothing to do
    # NOT NULL needs a default for the rows there (SQLite's ADD COLUMN); every write gives the stage
    op.add_column("attempts", sa.Column("stage", sa.String(), nullable=False, server_default=""))
    op.execute(
        "UPDATE attempts SET stage = COALESCE((SELECT steps.stage FROM steps WHERE steps.task_id = attempts.task_id "
        f"AND steps.step_index = attempts.step_index ORDER BY steps.created_at LIMIT 1), {ROLE_OF[bind.dialect.name]})"
    )


def downgrade() -> None:
    pass  # 0003 as it is now has the column: going back to it keeps it
