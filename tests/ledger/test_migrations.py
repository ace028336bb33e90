"""The schema comes from Alembic revisions, equals the models, and migrates exactly once."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from ledger import migrations
from ledger.errors import StorageError, StorageUnavailable
from ledger.store import Database, TrailEntryRow
from tests.conftest import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(tmp_path: Path, database_url: str | None) -> str:
    """A fresh database's URL: a SQLite file, and (marked postgres) a PostgreSQL database."""
    return database_url or f"sqlite:///{tmp_path / 'libshare.sqlite'}"


def _diff(db: Database) -> list[object]:
    """What autogenerate would write to make the database's schema equal the models."""
    metadata = migrations.models()
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_the_migrated_schema_equals_the_models(url: str) -> None:
    db = Database(url)
    try:
        diff = _diff(db)
        assert diff == [], (
            f"the models and the migrations differ: {diff} — run "
            "`python scripts/new_migration.py 'what changed'` and review the revision"
        )
        with db.engine.connect() as conn:
            assert migrations.current(conn) == migrations.head()
    finally:
        db.close()


@pytest.mark.postgres
def test_every_integer_column_is_64_bit_on_postgresql(postgres_server: PostgresServer) -> None:
    url = postgres_server.create()
    db = Database(url)
    try:
        narrow = [
            f"{table}.{column['name']}"
            for table in inspect(db.engine).get_table_names()
            for column in inspect(db.engine).get_columns(table)
            if str(column["type"]) in ("INTEGER", "SMALLINT")
        ]
        assert narrow == [], "declare integer fields with Field(sa_type=ledger.store.BigInt)"
    finally:
        db.close()
        postgres_server.drop(url)


def test_downgrade_to_nothing_and_upgrade_again_restores_the_schema(url: str) -> None:
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            command.downgrade(migrations.config(conn), "base")
            conn.commit()
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
            command.upgrade(migrations.config(conn), "head")
            conn.commit()
        assert _diff(db) == []
    finally:
        db.close()


def test_a_sqlite_database_made_before_migrations_is_stamped_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # the tables as create_all made them: revision 0001's
        command.upgrade(migrations.config(conn), migrations.INITIAL)
        conn.execute(text("DROP TABLE alembic_version"))
    with engine.begin() as conn:
        conn.execute(
            TrailEntryRow.__table__.insert(),  # type: ignore[attr-defined]
            {"member": "CN-A", "seq": 0, "body": b"{}", "leaf_hash": b"\x00" * 32},
        )
    engine.dispose()

    db = Database.sqlite(path)
    try:
        with db.engine.connect() as conn:
            assert migrations.current(conn) == migrations.head()
        with db.session() as session:
            assert session.get(TrailEntryRow, ("CN-A", 0)) is not None
        assert _diff(db) == []
    finally:
        db.close()


def test_a_database_at_an_unknown_revision_is_refused(url: str) -> None:
    Database(url).close()
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()
    with pytest.raises(StorageError, match="schema revision ffff, which this libshare does not"):
        Database(url)


_OPEN = """
import sys
from ledger.store import Database
Database(sys.argv[1]).close()
"""


def test_processes_opening_a_new_database_at_once_migrate_it_once(url: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _OPEN, url], cwd=ROOT, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        assert versions == [(migrations.head(),)]
        assert _diff(db) == []
    finally:
        db.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    yield port


def test_an_unreachable_server_is_unavailable_at_once_with_what_to_do(closed_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match=r"cannot reach the database .*127\.0\.0\.1") as e:
        Database(f"postgresql+psycopg://libshare@127.0.0.1:{closed_port}/libshare")
    assert time.monotonic() - started < 5
    assert "check that the server is running" in str(e.value)


def test_a_url_without_a_driver_uses_psycopg(closed_port: int) -> None:
    with pytest.raises(StorageUnavailable):  # no server: the point is it gets that far
        Database(f"postgresql://libshare@127.0.0.1:{closed_port}/libshare")


def test_a_malformed_url_says_what_a_url_looks_like() -> None:
    with pytest.raises(StorageError, match=r"is not a database URL.*sqlite:///PATH"):
        Database("not a url")
