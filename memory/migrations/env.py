"""Alembic environment: run by ``Store.migrate()`` on the connection it passes in."""

from alembic import context

from memory.audit import metadata as audit_metadata
from memory.store import metadata as store_metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("memory migrations run through memory.store.Store.migrate(), which passes a connection")

context.configure(connection=connection, target_metadata=[store_metadata, audit_metadata])
with context.begin_transaction():
    context.run_migrations()
