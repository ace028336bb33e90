"""API keys: one per (member library, role), shown once, stored as a hash.

A key reads ``lsk_<key id>_<secret>``. The key id is public and finds the row; the
secret is 32 random bytes of which only the sha-256 is stored — a high-entropy secret
needs no slow hash — compared in constant time. Roles say what a key may do:

``admin``     everything for its member, including reading audits
``member``    register and change its own member's resources and licences; read
``delivery``  ask access checks for its own member's patrons and fetch allowed content
``auditor``   read trails, heads and proofs of every member; read everything else
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel import col, select

from ledger.errors import InvalidInput, NotFound, Unauthenticated
from ledger.store import ApiKeyRow, Database, MemberRow

PREFIX = "lsk_"


class Role(StrEnum):
    admin = "admin"
    member = "member"
    delivery = "delivery"
    auditor = "auditor"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key, the member library it acts for, and its role."""

    key_id: str
    member: str
    role: Role


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    member: str
    role: Role
    label: str
    created_at: datetime
    revoked_at: datetime | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class ApiKeys:
    """Creates, checks and revokes API keys."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock
        self._cache: dict[str, tuple[str, Principal]] = {}  # key id -> (hash, principal)
        self._lock = threading.Lock()

    def create(self, member: str, role: str, *, label: str = "") -> tuple[str, Principal]:
        """Make a key for ``member`` with ``role``; return the key (shown once) and who it is."""
        try:
            parsed = Role(role)
        except ValueError:
            raise InvalidInput(
                f"role {role!r} is not known", hint=f"use one of: {', '.join(Role)}"
            ) from None
        with self.db.session() as session:
            known = session.exec(select(MemberRow).where(MemberRow.library_id == member)).first()
            if known is None:
                raise NotFound(
                    f"{member} is not a member of the consortium",
                    hint="keys are issued to admitted member libraries only",
                )
            key_id = secrets.token_hex(6)
            secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            session.add(
                ApiKeyRow(
                    key_id=key_id,
                    member=member,
                    role=parsed.value,
                    secret_hash=_digest(secret),
                    label=label,
                    created_at=self.clock(),
                )
            )
        return f"{PREFIX}{key_id}_{secret}", Principal(key_id, member, parsed)

    def authenticate(self, token: str | None) -> Principal:
        """The principal of a presented key; :class:`Unauthenticated` otherwise."""
        if not token:
            raise Unauthenticated(
                "no API key was presented",
                hint="send it as 'Authorization: Bearer lsk_…' (create one with "
                "`libshare keys create`)",
            )
        if not token.startswith(PREFIX) or token.count("_") < 2:
            raise Unauthenticated(
                "the API key is malformed", hint="keys look like lsk_<id>_<secret>"
            )
        key_id, _, secret = token[len(PREFIX) :].partition("_")
        presented = _digest(secret) if secret.isascii() else ""
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is None:
            with self.db.session() as session:
                row = session.get(ApiKeyRow, key_id)
            if row is None or row.revoked_at is not None:
                raise Unauthenticated(
                    "the API key is unknown or revoked", hint="ask your administrator for a key"
                )
            cached = (row.secret_hash, Principal(row.key_id, row.member, Role(row.role)))
            with self._lock:
                self._cache[key_id] = cached
        if not hmac.compare_digest(cached[0], presented):
            raise Unauthenticated(
                "the API key is unknown or revoked", hint="ask your administrator for a key"
            )
        return cached[1]

    def revoke(self, key_id: str) -> None:
        """Revoke a key at once."""
        with self.db.session() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"no API key {key_id}", hint="`libshare keys list` shows them")
            row.revoked_at = self.clock()
            session.add(row)
        with self._lock:
            self._cache.pop(key_id, None)

    def list(self) -> list[KeyInfo]:
        with self.db.session() as session:
            rows = session.exec(select(ApiKeyRow).order_by(col(ApiKeyRow.created_at))).all()
        return [
            KeyInfo(r.key_id, r.member, Role(r.role), r.label, r.created_at, r.revoked_at)
            for r in rows
        ]
