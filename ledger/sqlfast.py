"""Plain SQL for the decision writer's few hot statements, on SQLite and PostgreSQL alike.

SQLAlchemy's Core spends a few hundred microseconds per statement execution building
and processing it; the writer runs five of them per group commit, which at small
batches costs more than the decisions. These statements are written once per dialect
and handed to the DB-API cursor as they are. Each value still goes through its column
type's bind processor for the dialect (how SQLAlchemy stores a datetime in SQLite, for
one), so a row written here reads back exactly as one written through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Table


def _placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


class Statements:
    """The SQL text of a statement per dialect, made on first use."""

    def __init__(self) -> None:
        self._sql: dict[tuple[str, int], str] = {}

    def sql(self, conn: Connection, arity: int, make: Any) -> str:
        key = (conn.dialect.name, arity)
        text = self._sql.get(key)
        if text is None:
            text = self._sql[key] = make(conn, arity)
        return text


class BulkInsert:
    """``INSERT INTO table (columns) VALUES (…)`` for many rows, optionally an upsert.

    With ``upsert_on``, a row whose key exists replaces the ``update`` columns (``ON
    CONFLICT … DO UPDATE``, which SQLite 3.24+ and PostgreSQL both speak).
    """

    def __init__(
        self,
        table: Table,
        columns: Sequence[str],
        *,
        upsert_on: Sequence[str] = (),
        update: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.upsert_on = tuple(upsert_on)
        self.update = tuple(update)
        self._statements = Statements()
        self._processors: dict[str, list[tuple[int, Any]]] = {}  # dialect -> (column, fn)

    def _make(self, conn: Connection, _arity: int) -> str:
        quote = conn.dialect.identifier_preparer.quote
        names = ", ".join(quote(c) for c in self.columns)
        marks = ", ".join(_placeholder(conn) for _ in self.columns)
        sql = f"INSERT INTO {quote(self.table.name)} ({names}) VALUES ({marks})"
        if self.upsert_on:
            keys = ", ".join(quote(c) for c in self.upsert_on)
            sets = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in self.update)
            sql += f" ON CONFLICT ({keys}) DO UPDATE SET {sets}"
        return sql

    def run(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (tuples in column order) in one executemany."""
        if not rows:
            return
        processors = self._processors.get(conn.dialect.name)
        if processors is None:
            processors = self._processors[conn.dialect.name] = [
                (i, process)
                for i, name in enumerate(self.columns)
                if (process := self.table.c[name].type.bind_processor(conn.dialect)) is not None
            ]
        if processors:
            converted = []
            for row in rows:
                values = list(row)
                for i, process in processors:
                    values[i] = process(values[i])
                converted.append(tuple(values))
            rows = converted
        conn.exec_driver_sql(self._statements.sql(conn, 0, self._make), rows)


class SelectIn:
    """``SELECT columns FROM table WHERE key IN (…)``, in chunks of at most 500 keys."""

    CHUNK = 500

    def __init__(self, table: Table, columns: Sequence[str], key: str) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.key = key
        self._statements = Statements()

    def _make(self, conn: Connection, arity: int) -> str:
        quote = conn.dialect.identifier_preparer.quote
        names = ", ".join(quote(c) for c in self.columns)
        marks = ", ".join(_placeholder(conn) for _ in range(arity))
        return f"SELECT {names} FROM {quote(self.table.name)} WHERE {quote(self.key)} IN ({marks})"

    def run(self, conn: Connection, keys: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """The matching rows, in column order."""
        for start in range(0, len(keys), self.CHUNK):
            chunk = tuple(keys[start : start + self.CHUNK])
            sql = self._statements.sql(conn, len(chunk), self._make)
            yield from conn.exec_driver_sql(sql, chunk)
