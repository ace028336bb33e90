"""The schema as it was when migrations began: what ``create_all`` made until then.

Every integer column is BIGINT on PostgreSQL and INTEGER on SQLite (64-bit there, and the
type an autoincrementing key needs), so a SQLite database made by ``create_all`` before
migrations matches this revision exactly and is stamped with it.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 14:38:52.098897
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "anchored_head",
        sa.Column("member", sa.String(), nullable=False),
        sa.Column("size", BigInt, nullable=False),
        sa.Column("root", sa.String(), nullable=False),
        sa.Column("block", BigInt, nullable=False),
        sa.Column("tx_hash", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("member", "size"),
    )
    op.create_table(
        "api_key",
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("member", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("secret_hash", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_member"), ["member"], unique=False)

    op.create_table(
        "counter",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", BigInt, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "counter_event",
        sa.Column("id", BigInt, nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("counter_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_counter_event_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_counter_event_key"), ["key"], unique=False)

    op.create_table(
        "cursor",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("block", BigInt, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "delivery_grant",
        sa.Column("decision_id", sa.String(), nullable=False),
        sa.Column("resource_id", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("decision_id"),
    )
    op.create_table(
        "indexed_block",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("block", BigInt, nullable=False),
        sa.Column("block_hash", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("name", "block"),
    )
    op.create_table(
        "licence",
        sa.Column("licence_id", BigInt, nullable=False),
        sa.Column("licensor", sa.String(), nullable=False),
        sa.Column("latest_version", BigInt, nullable=False),
        sa.Column("revoked_block", BigInt, nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("licence_id"),
    )
    with op.batch_alter_table("licence", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_licence_licensor"), ["licensor"], unique=False)

    op.create_table(
        "licence_version",
        sa.Column("licence_id", BigInt, nullable=False),
        sa.Column("version", BigInt, nullable=False),
        sa.Column("terms_hash", sa.String(), nullable=False),
        sa.Column("terms_json", sa.String(), nullable=False),
        sa.Column("issued_block", BigInt, nullable=False),
        sa.PrimaryKeyConstraint("licence_id", "version"),
    )
    op.create_table(
        "member",
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("library_id", sa.String(), nullable=False),
        sa.Column("tier", BigInt, nullable=False),
        sa.Column("country", sa.String(), nullable=False),
        sa.Column("admitted_block", BigInt, nullable=False),
        sa.PrimaryKeyConstraint("account"),
    )
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_member_library_id"), ["library_id"], unique=True)

    op.create_table(
        "outbox",
        sa.Column("id", BigInt, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("sender", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("calldata", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("nonce", BigInt, nullable=True),
        sa.Column("raw_tx", sa.String(), nullable=True),
        sa.Column("tx_hash", sa.String(), nullable=True),
        sa.Column("attempts", BigInt, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("receipt_block", BigInt, nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("error_name", sa.String(), nullable=True),
        sa.Column("error_args", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_sender"), ["sender"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_state"), ["state"], unique=False)

    op.create_table(
        "provenance",
        sa.Column("resource_id", sa.String(), nullable=False),
        sa.Column("relation", BigInt, nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("resource_id", "relation", "target"),
    )
    op.create_table(
        "resource",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("cid", sa.String(), nullable=False),
        sa.Column("metadata_hash", sa.String(), nullable=False),
        sa.Column("licence_id", BigInt, nullable=False),
        sa.Column("superseded_by", sa.String(), nullable=True),
        sa.Column("registered_block", BigInt, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_licence_id"), ["licence_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_resource_owner"), ["owner"], unique=False)

    op.create_table(
        "resource_content",
        sa.Column("resource_id", sa.String(), nullable=False),
        sa.Column("stored_cid", sa.String(), nullable=False),
        sa.Column("size", BigInt, nullable=False),
        sa.Column("media_type", sa.String(), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("resource_id"),
    )
    with op.batch_alter_table("resource_content", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resource_content_stored_cid"), ["stored_cid"], unique=False
        )

    op.create_table(
        "resource_metadata",
        sa.Column("metadata_hash", sa.String(), nullable=False),
        sa.Column("media_type", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("metadata_hash"),
    )
    op.create_table(
        "trail_entry",
        sa.Column("member", sa.String(), nullable=False),
        sa.Column("seq", BigInt, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("member", "seq"),
    )
    op.create_table(
        "trail_node",
        sa.Column("member", sa.String(), nullable=False),
        sa.Column("level", BigInt, nullable=False),
        sa.Column("index", BigInt, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("member", "level", "index"),
    )


def downgrade() -> None:
    op.drop_table("trail_node")
    op.drop_table("trail_entry")
    op.drop_table("resource_metadata")
    with op.batch_alter_table("resource_content", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_content_stored_cid"))

    op.drop_table("resource_content")
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_owner"))
        batch_op.drop_index(batch_op.f("ix_resource_licence_id"))

    op.drop_table("resource")
    op.drop_table("provenance")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_state"))
        batch_op.drop_index(batch_op.f("ix_outbox_sender"))
        batch_op.drop_index(batch_op.f("ix_outbox_kind"))

    op.drop_table("outbox")
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_library_id"))

    op.drop_table("member")
    op.drop_table("licence_version")
    with op.batch_alter_table("licence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licence_licensor"))

    op.drop_table("licence")
    op.drop_table("indexed_block")
    op.drop_table("delivery_grant")
    op.drop_table("cursor")
    with op.batch_alter_table("counter_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_counter_event_key"))
        batch_op.drop_index(batch_op.f("ix_counter_event_at"))

    op.drop_table("counter_event")
    op.drop_table("counter")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_key_member"))

    op.drop_table("api_key")
    op.drop_table("anchored_head")
