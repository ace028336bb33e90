"""SQL storage: the event index, the usage trail, counters and the indexer's cursor.

One schema serves SQLite (the embedded default, WAL mode) and PostgreSQL. Tables that
mirror the chain (members, resources, licences, anchored heads) are written only by the
indexer from contract events; the trail and its counters are written only by the access
service, in one transaction per decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, create_engine

from ledger.errors import StorageError


class MemberRow(SQLModel, table=True):
    __tablename__ = "member"

    account: str = Field(primary_key=True)
    library_id: str = Field(index=True, unique=True)
    tier: int
    country: str
    admitted_block: int


class ResourceRow(SQLModel, table=True):
    __tablename__ = "resource"

    id: str = Field(primary_key=True)  # 0x-hex bytes32
    owner: str = Field(index=True)  # account
    content_hash: str  # hex sha-256 of the plaintext
    cid: str
    metadata_hash: str
    licence_id: int = Field(index=True)
    superseded_by: str | None = None
    registered_block: int


class ResourceContentRow(SQLModel, table=True):
    """Where this instance keeps a resource's bytes, and the wrapped key if sealed."""

    __tablename__ = "resource_content"

    resource_id: str = Field(primary_key=True)
    stored_cid: str = Field(index=True)
    size: int  # plaintext bytes
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
    relation: int = Field(primary_key=True)
    target: str = Field(primary_key=True)


class LicenceRow(SQLModel, table=True):
    __tablename__ = "licence"

    licence_id: int = Field(primary_key=True)
    licensor: str = Field(index=True)
    latest_version: int
    revoked_block: int | None = None
    revoked_at: datetime | None = None


class LicenceVersionRow(SQLModel, table=True):
    __tablename__ = "licence_version"

    licence_id: int = Field(primary_key=True)
    version: int = Field(primary_key=True)
    terms_hash: str
    terms_json: str
    issued_block: int


class AnchoredHeadRow(SQLModel, table=True):
    __tablename__ = "anchored_head"

    member: str = Field(primary_key=True)  # account
    size: int = Field(primary_key=True)
    root: str
    block: int
    tx_hash: str


class TrailEntryRow(SQLModel, table=True):
    """One decision, as RFC 8785 canonical JSON, and its RFC 9162 leaf hash. Append-only."""

    __tablename__ = "trail_entry"

    member: str = Field(primary_key=True)  # library id
    seq: int = Field(primary_key=True)
    body: bytes
    leaf_hash: bytes


class TrailNodeRow(SQLModel, table=True):
    """A complete aligned subtree of a trail: leaves [index·2^level, (index+1)·2^level)."""

    __tablename__ = "trail_node"

    member: str = Field(primary_key=True)
    level: int = Field(primary_key=True)
    index: int = Field(primary_key=True)
    hash: bytes


class CounterRow(SQLModel, table=True):
    __tablename__ = "counter"

    key: str = Field(primary_key=True)
    value: int


class CounterEventRow(SQLModel, table=True):
    """One increment of a rolling-window counter; counted by time."""

    __tablename__ = "counter_event"

    id: int | None = Field(default=None, primary_key=True)
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
    block: int


class IndexedBlockRow(SQLModel, table=True):
    """The hash of a block the indexer indexed up to; the last few per cursor are kept.

    The indexer checks the newest against the chain before each sync: a different hash
    means a reorganisation replaced blocks already in the index.
    """

    __tablename__ = "indexed_block"

    name: str = Field(primary_key=True)  # the cursor's name
    block: int = Field(primary_key=True)
    block_hash: str  # 0x-hex


class Database:
    """An engine and its schema; sessions come from :meth:`session`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.generations: Counter[str] = Counter()
        """Per kind of index row ("members", "licences", "resources", "heads"): bumped when
        the indexer applies events of that kind, so caches of those rows refresh."""
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            SQLModel.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot open the database {_redact(url)} ({getattr(exc, 'orig', exc)})",
                hint="check the path or URL and that the server is running",
            ) from exc

    @classmethod
    def sqlite(cls, path: Path) -> Database:
        return cls(f"sqlite:///{path}")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()


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
