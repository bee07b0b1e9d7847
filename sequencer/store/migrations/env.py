"""Alembic environment: runs on the connection `sequencer.store.db.Store.create` hands it."""

from __future__ import annotations

from alembic import context

from sequencer.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
context.run_migrations()
