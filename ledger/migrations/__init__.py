"""The schema's Alembic revisions, and bringing a database to the newest one.

``versions/`` holds one file per revision, oldest first (``0001_initial.py`` is the schema
as it was when migrations began); ``env.py`` is what Alembic runs, against the connection
:class:`~ledger.store.Database` hands it or, from the command line, a URL given with
``-x url=…``. How to add a revision: see :mod:`ledger.store`.

A database made before migrations existed (SQLite, by ``create_all``) has the tables of
the initial revision but no ``alembic_version``: it is stamped with that revision, then
upgraded like any other.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect
from sqlmodel import SQLModel

from ledger.errors import StorageError

HERE = Path(__file__).resolve().parent
INITIAL = "0001"
"""The first revision: the schema of the tables as ``create_all`` made them before."""

_INITIAL_TABLES = frozenset({"member", "resource", "trail_entry", "counter", "cursor"})


def models() -> MetaData:
    """The metadata of every table the code defines: every ``ledger`` module imported.

    Tables live in several modules (``store``, ``outbox``, …); importing them all means a
    new table is seen wherever it is defined, by autogenerate and by the schema test.
    """
    import ledger

    for module in pkgutil.walk_packages(ledger.__path__, "ledger."):
        if not module.name.startswith(__name__):
            importlib.import_module(module.name)
    return SQLModel.metadata


def config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    """An Alembic config over these revisions, bound to ``connection`` or ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None, "ledger/migrations/versions holds no revision"
    return revision


def current(connection: Connection) -> str | None:
    """The revision the database is at; None if it has none (new, or made before migrations)."""
    return MigrationContext.configure(connection).get_current_revision()


def at_head(connection: Connection) -> bool:
    return current(connection) == head()


def upgrade(connection: Connection) -> None:
    """Bring the database behind ``connection`` to :func:`head`, in its open transaction.

    The caller holds whatever lock serialises migrations and commits afterwards.
    """
    revision = current(connection)
    if revision == head():
        return
    script = ScriptDirectory.from_config(config())
    if revision is not None and revision not in {r.revision for r in script.walk_revisions()}:
        raise StorageError(
            f"the database is at schema revision {revision}, which this libshare does not "
            "know (a newer libshare migrated it)",
            hint="run the libshare version that migrated it, or a newer one",
        )
    cfg = config(connection)
    if revision is None and set(inspect(connection).get_table_names()) >= _INITIAL_TABLES:
        if connection.dialect.name != "sqlite":
            raise StorageError(
                "the database holds libshare tables but no schema revision",
                hint="it predates migrations: migrate its data into a new database",
            )
        command.stamp(cfg, INITIAL)
    command.upgrade(cfg, "head")
