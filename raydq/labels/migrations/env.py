"""Alembic environment of the label store.

``raydq.labels.migrate`` runs the migrations on a connection it opened (and locked) itself and passes it in
``config.attributes["connection"]``; every revision then runs in that one transaction, so an upgrade is all or
nothing. For developer use (``alembic -c ... revision --autogenerate``) a ``sqlalchemy.url`` option works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from raydq.labels.db import normalise_url
from raydq.labels.migrate import VERSION_TABLE
from raydq.labels.models import Base


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = create_engine(normalise_url(context.config.get_main_option("sqlalchemy.url")))
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
