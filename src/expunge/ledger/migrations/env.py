"""Alembic's environment for the ledger: run on the connection :func:`expunge.ledger.store._upgrade`
passes in (``config.attributes["connection"]``); there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from expunge.ledger.store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
