"""Alembic's environment for the serving database, driven by `serving.db.migrate`.

`serving.db.migrate` builds the Alembic config in code and hands over an open connection in
`config.attributes["connection"]`, inside a transaction it owns (and, on PostgreSQL, under an
advisory lock): this file only runs the revisions on it. There is no alembic.ini and no
offline (`--sql`) mode; use `brandforge db upgrade` (or `brandforge db revision` to write one).
"""

from __future__ import annotations

from alembic import context

from serving.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "run the serving database's migrations with `brandforge db upgrade` "
        "(serving.db.migrate), which passes the connection; there is no alembic.ini"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters a table by copying it: autogenerate writes batch operations for that.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
