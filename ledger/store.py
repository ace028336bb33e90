"""SQL storage: the event index, the usage trail, counters and the indexer's cursor.

One schema serves SQLite (the embedded default, WAL mode) and PostgreSQL (production).
Tables that mirror the chain (members, resources, licences, anchored heads) are written
only by the indexer from contract events; the trail and its counters are written only by
the access service, in one transaction per decision.

Both databases get their schema from the Alembic revisions in ``ledger/migrations``:
:class:`Database` brings a database to the newest revision when it opens it, never with
``create_all``. Every integer column is :data:`BigInt` (BIGINT on PostgreSQL: block
numbers, sizes, licence ids and trail positions outgrow 32 bits; INTEGER on SQLite, whose
integers are 64-bit anyway and whose autoincrement needs that exact type). Datetimes are
SQLModel's ``UTCDateTime``: TIMESTAMP WITH TIME ZONE on PostgreSQL (sessions run with
``timezone=UTC``), UTC text on SQLite, and aware UTC values when read back from either.

Adding or changing a table (here or in another module, such as ``ledger.outbox``):

1. change or add the SQLModel class, in any ``ledger`` module (Alembic sees them all:
   :func:`ledger.migrations.models` imports every module); declare integer fields with
   ``Field(sa_type=BigInt)``;
2. run ``python scripts/new_migration.py "what changed"``: it writes
   ``ledger/migrations/versions/NNNN_what_changed.py`` from the difference between the
   models and a database at the current head (the same as ``alembic revision
   --autogenerate`` with ``-c ledger/migrations/alembic.ini``);
3. read the file: autogenerate misses renames and server defaults, and on SQLite an
   ALTER needs ``op.batch_alter_table`` (the generated code uses it already);
4. ``pytest tests/ledger/test_migrations.py`` checks on SQLite and PostgreSQL that the
   migrated schema equals the models.

Every :class:`Database` then migrates its database when it opens it; two processes
opening one database at once migrate it once (a PostgreSQL advisory lock, SQLite's
write lock).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Connection, Integer, event, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Field, Session, SQLModel, create_engine

from ledger.errors import InvalidInput, StorageError, StorageUnavailable

BigInt = BigInteger().with_variant(Integer(), "sqlite")
"""The type of every integer column: BIGINT on PostgreSQL, INTEGER on SQLite."""

CONNECT_TIMEOUT_S = 3
"""How long opening a PostgreSQL connection may take before the request fails (503)."""

_MIGRATION_LOCK = 0x6C69627368617265  # "libshare": the advisory lock key of migrations


class MemberRow(SQLModel, table=True):
    __tablename__ = "member"

    account: str = Field(primary_key=True)
    library_id: str = Field(index=True, unique=True)
    tier: int = Field(sa_type=BigInt)
    country: str
    admitted_block: int = Field(sa_type=BigInt)


class ResourceRow(SQLModel, table=True):
    __tablename__ = "resource"

    id: str = Field(primary_key=True)  # 0x-hex bytes32
    owner: str = Field(index=True)  # account
    content_hash: str  # hex sha-256 of the plaintext
    cid: str
    metadata_hash: str
    licence_id: int = Field(index=True, sa_type=BigInt)
    superseded_by: str | None = None
    registered_block: int = Field(sa_type=BigInt)


class ResourceContentRow(SQLModel, table=True):
    """Where this instance keeps a resource's bytes, and the wrapped key if sealed."""

    __tablename__ = "resource_content"

    resource_id: str = Field(primary_key=True)
    stored_cid: str = Field(index=True)
    size: int = Field(sa_type=BigInt)  # plaintext bytes
    media_type: str
    sealed: bool
    wrapped_key: bytes | None = None  # the data key wrapped by the owner's KEK


class ResourceMetadataRow(SQLModel, table=True):
    """Dublin Core metadata kept off chain; the chain holds its sha-256."""

    __tablename__ = "resource_metadata"

    metadata_hash: str = Field(primary_key=True)
    media_type: str
    title: str
    body: str  # canonical JSON


class ProvenanceRow(SQLModel, table=True):
    __tablename__ = "provenance"

    resource_id: str = Field(primary_key=True)
    relation: int = Field(primary_key=True, sa_type=BigInt)
    target: str = Field(primary_key=True)


class LicenceRow(SQLModel, table=True):
    __tablename__ = "licence"

    licence_id: int = Field(primary_key=True, sa_type=BigInt)
    licensor: str = Field(index=True)
    latest_version: int = Field(sa_type=BigInt)
    revoked_block: int | None = Field(default=None, sa_type=BigInt)
    revoked_at: datetime | None = None


class LicenceVersionRow(SQLModel, table=True):
    __tablename__ = "licence_version"

    licence_id: int = Field(primary_key=True, sa_type=BigInt)
    version: int = Field(primary_key=True, sa_type=BigInt)
    terms_hash: str
    terms_json: str
    issued_block: int = Field(sa_type=BigInt)


class AnchoredHeadRow(SQLModel, table=True):
    __tablename__ = "anchored_head"

    member: str = Field(primary_key=True)  # account
    size: int = Field(primary_key=True, sa_type=BigInt)
    root: str
    block: int = Field(sa_type=BigInt)
    tx_hash: str


class TrailEntryRow(SQLModel, table=True):
    """One decision, as RFC 8785 canonical JSON, and its RFC 9162 leaf hash. Append-only."""

    __tablename__ = "trail_entry"

    member: str = Field(primary_key=True)  # library id
    seq: int = Field(primary_key=True, sa_type=BigInt)
    body: bytes
    leaf_hash: bytes


class TrailNodeRow(SQLModel, table=True):
    """A complete aligned subtree of a trail: leaves [index·2^level, (index+1)·2^level)."""

    __tablename__ = "trail_node"

    member: str = Field(primary_key=True)
    level: int = Field(primary_key=True, sa_type=BigInt)
    index: int = Field(primary_key=True, sa_type=BigInt)
    hash: bytes


class CounterRow(SQLModel, table=True):
    __tablename__ = "counter"

    key: str = Field(primary_key=True)
    value: int = Field(sa_type=BigInt)


class CounterEventRow(SQLModel, table=True):
    """One increment of a rolling-window counter; counted by time."""

    __tablename__ = "counter_event"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInt)
    key: str = Field(index=True)
    at: datetime = Field(index=True)


class ApiKeyRow(SQLModel, table=True):
    """An API key: only the sha-256 of its secret is kept; the key is shown once."""

    __tablename__ = "api_key"

    key_id: str = Field(primary_key=True)
    member: str = Field(index=True)  # library id
    role: str
    secret_hash: str
    label: str = ""
    created_at: datetime
    revoked_at: datetime | None = None


class DeliveryGrantRow(SQLModel, table=True):
    """Permission to fetch one resource's content, once, for an allowed decision."""

    __tablename__ = "delivery_grant"

    decision_id: str = Field(primary_key=True)
    resource_id: str
    key_id: str  # the API key that asked; only it may fetch
    expires_at: datetime
    used_at: datetime | None = None


class CursorRow(SQLModel, table=True):
    __tablename__ = "cursor"

    name: str = Field(primary_key=True)
    block: int = Field(sa_type=BigInt)


class IndexedBlockRow(SQLModel, table=True):
    """The hash of a block the indexer indexed up to; the last few per cursor are kept.

    The indexer checks the newest against the chain before each sync: a different hash
    means a reorganisation replaced blocks already in the index.
    """

    __tablename__ = "indexed_block"

    name: str = Field(primary_key=True)  # the cursor's name
    block: int = Field(primary_key=True, sa_type=BigInt)
    block_hash: str  # 0x-hex


class Database:
    """An engine and its schema; sessions come from :meth:`session`.

    Opening brings the schema to the newest migration. Errors reaching the database
    (refused connection, server restarting, connection lost, SQLite busy) surface as
    :class:`StorageUnavailable`, which the API answers with 503 and Retry-After; a
    PostgreSQL connection that died while the server was down is replaced on its next use.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.generations: Counter[str] = Counter()
        """Per kind of index row ("members", "licences", "resources", "heads"): bumped when
        the indexer applies events of that kind, so caches of those rows refresh."""
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StorageError(
                f"{_redact(url)} is not a database URL",
                hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
            ) from exc
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        elif parsed.get_backend_name() == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")  # the driver installed
            kwargs["pool_pre_ping"] = True  # connections that died with the server are replaced
            kwargs["pool_timeout"] = 10
            kwargs["connect_args"] = {
                "connect_timeout": CONNECT_TIMEOUT_S,
                "options": "-c timezone=UTC",
            }
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise StorageError(
                f"cannot use the database {_redact(url)} ({exc})",
                hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
            ) from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._migrate()
        except SQLAlchemyError as exc:
            self.engine.dispose()
            if _unavailable(exc, self.engine.dialect.name):
                raise StorageUnavailable(
                    f"cannot reach the database {_redact(url)} ({_cause(exc)})",
                    hint="check that the server is running and the URL's host, port and "
                    "database are right",
                ) from exc
            raise StorageError(
                f"cannot open the database {_redact(url)} ({_cause(exc)})",
                hint="check the path or URL and that the server is running",
            ) from exc
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def sqlite(cls, path: Path) -> Database:
        return cls(f"sqlite:///{path}")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error.

        A failure to reach the database raises :class:`StorageUnavailable`.
        """
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except SQLAlchemyError as exc:
                _rollback(session)
                if _unavailable(exc, self.engine.dialect.name):
                    raise StorageUnavailable(
                        f"the database {_redact(self.url)} is unavailable ({_cause(exc)})",
                        hint="retry in a few seconds",
                    ) from exc
                if isinstance(exc, DataError) and "NUL (0x00)" in str(exc.orig):
                    # PostgreSQL text cannot hold NUL (SQLite's can): a caller's malformed
                    # value, refused like one, not a server fault.
                    raise InvalidInput(
                        "a text value holds a NUL character (\\x00), which the database "
                        "cannot store or look up",
                        hint="remove the NUL character",
                    ) from exc
                raise
            except BaseException:
                _rollback(session)
                raise

    def close(self) -> None:
        self.engine.dispose()

    def _migrate(self) -> None:
        """Bring the schema to the newest revision, once even if several processes open it."""
        from ledger import migrations  # imports Alembic: only when a database is opened

        with self.engine.connect() as conn:
            if migrations.at_head(conn):
                return
            conn.rollback()
            _lock_for_migration(conn)
            migrations.upgrade(conn)  # checks the revision again, under the lock
            conn.commit()


def _lock_for_migration(conn: Connection) -> None:
    """Serialise migrations: released when the connection's transaction ends."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's single write lock
    elif conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))


def _unavailable(exc: BaseException, dialect: str) -> bool:
    """Whether ``exc`` means the database cannot be reached now (retrying may succeed)."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    if dialect == "postgresql":
        # psycopg's OperationalError: connection refused or lost, server shutting down or
        # starting up, out of connections, deadlock or serialisation failure.
        return True
    return "database is locked" in str(exc.orig)


def _cause(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split())[:300]


def _rollback(session: Session) -> None:
    # If the connection is gone, the server has rolled the transaction back already.
    with suppress(SQLAlchemyError):
        session.rollback()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
