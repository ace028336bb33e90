"""What Alembic runs: migrate the connection it is handed, or a URL given with -x url=….

:class:`ledger.store.Database` hands over an open connection in ``config.attributes``,
inside a transaction that holds the migration lock; the command line
(``alembic -c ledger/migrations/alembic.ini -x url=URL …``) gives a URL instead.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, create_engine
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from ledger.migrations import models


def _render_item(kind: str, obj: Any, autogen: AutogenContext) -> str | Literal[False]:
    """Write SQLModel's column types as the plain SQLAlchemy types they store as.

    Revisions then need no SQLModel import and mean the same under any SQLModel version.
    """
    if kind == "type" and isinstance(obj, AutoString):
        return "sa.String()"
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: Any) -> None:
    given = context.config.attributes.get("connection") is not None
    context.configure(
        # Only autogenerate reads the models; a Database upgrading itself does not need
        # every module imported.
        target_metadata=None if given else models(),
        compare_type=True,
        # SQLite cannot ALTER most things: autogenerate writes batch operations for it.
        render_as_batch=True,
        render_item=_render_item,
        **kwargs,
    )


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///PATH … (or a postgresql URL)")
    return url


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := context.config.attributes.get("connection")) is not None:
    _run(given)
else:
    engine = create_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()
