"""Delivering content after an allowed check: once, within its validity, to the caller.

An allowed access check records a delivery grant in the same transaction as the
decision. :func:`redeem` spends that grant atomically — a second fetch, another key or
a late one is refused — and streams the resource's bytes from the content store,
opening the seal with the data key that the owner's KEK unwraps. Decryption happens here
and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import update
from sqlmodel import col, select

from ledger.errors import Conflict, NotFound, PermissionDenied, StorageError
from ledger.instance import Instance
from ledger.sealed import open_sealed, unwrap_key
from ledger.store import DeliveryGrantRow, MemberRow, ResourceContentRow, ResourceRow
from ledger.types import Cid


@dataclass(frozen=True)
class Delivery:
    resource_id: str
    media_type: str
    size: int
    chunks: Iterator[bytes]


def redeem(instance: Instance, decision_id: str, key_id: str) -> Delivery:
    """Spend the grant of ``decision_id`` for ``key_id`` and stream the content."""
    now = instance.clock()
    with instance.db.session() as session:
        grant = session.get(DeliveryGrantRow, decision_id)
        if grant is None:
            raise NotFound(
                f"no delivery is allowed for decision {decision_id}",
                hint="only an allowed access check opens a delivery; check the decision id",
            )
        if grant.key_id != key_id:
            raise PermissionDenied(
                f"decision {decision_id} was asked for with another API key",
                hint="fetch the content with the key that made the access check",
            )
        if grant.used_at is not None:
            raise Conflict(
                f"the content of decision {decision_id} was already delivered",
                hint="each allowed check delivers once; ask again for another copy",
            )
        expires = _aware(grant.expires_at)
        if now >= expires:
            raise Conflict(
                f"the delivery of decision {decision_id} expired at {expires.isoformat()}",
                hint="make a new access check",
            )
        spent = session.execute(
            update(DeliveryGrantRow)
            .where(col(DeliveryGrantRow.decision_id) == decision_id)
            .where(col(DeliveryGrantRow.used_at).is_(None))
            .values(used_at=now)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"the content of decision {decision_id} was already delivered")
        content = session.get(ResourceContentRow, grant.resource_id)
        resource = session.get(ResourceRow, grant.resource_id)
        owner = (
            session.exec(select(MemberRow).where(MemberRow.account == resource.owner)).first()
            if resource
            else None
        )
    if content is None or resource is None or owner is None:
        raise NotFound(
            f"the content of resource {grant.resource_id} is not stored on this instance",
            hint="ask the owning member's instance",
        )
    chunks = instance.content.cat(Cid(content.stored_cid))
    if content.sealed:
        if content.wrapped_key is None:
            raise StorageError(f"resource {grant.resource_id} is sealed but has no wrapped key")
        kek = instance.member_keys(owner.library_id).kek
        data_key = unwrap_key(kek, content.wrapped_key, bytes.fromhex(resource.content_hash[2:]))
        chunks = open_sealed(chunks, data_key)
    return Delivery(grant.resource_id, content.media_type, content.size, chunks)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
