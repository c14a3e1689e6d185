"""Alembic environment: always run on a connection handed in by ``cds_service.store.migrate``.

The caller opens the transaction (and takes the migration lock) so several workers or hosts
starting at once upgrade the schema exactly once; here we only run the scripts inside it.
"""

from __future__ import annotations

from alembic import context

from cds_service.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `diazepam-cds db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
