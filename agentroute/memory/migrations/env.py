"""Alembic environment of the agentroute memory.

Used two ways: programmatically by :func:`agentroute.memory.migrate.upgrade` (which passes an open
connection in ``config.attributes["connection"]``), and by hand with ``memory/alembic.ini``, where
the URL comes from ``-x url=...``, else ``$AGENTROUTE_MEMORY``, else ``sqlalchemy.url``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from agentroute.memory.migrate import VERSION_TABLE
from agentroute.memory.tables import include_object, metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds the table
        compare_type=True,
        include_object=include_object,
    )


def run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from agentroute.memory.engine import create_memory_engine

    engine = create_memory_engine(_url())
    try:
        with engine.begin() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def _url() -> str:
    from agentroute.memory.engine import default_url

    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("AGENTROUTE_MEMORY")
        or config.get_main_option("sqlalchemy.url")
        or default_url()
    )


if context.is_offline_mode():
    run_offline()
else:
    run_online()
