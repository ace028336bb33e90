"""Anchoring a member's trail head on chain, and verifying a trail against the chain.

:func:`anchor_trail` sends the member's current tree head with the RFC 9162 consistency
proof from its previously anchored head; the TrailAnchor contract checks that proof, so
the chain refuses any head that rewrites history. :func:`verify_member_trail` reads the
anchored heads from the chain's own events, not from this server's index.
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from ledger.audit import Head, TrailReport, verify_trail
from ledger.errors import Conflict
from ledger.instance import Instance
from ledger.onchain import AnchoredHead


def anchor_trail(instance: Instance, library_id: str, member: LocalAccount) -> AnchoredHead | None:
    """Anchor the current head of ``library_id``'s trail; None when nothing is new."""
    contracts = instance.require_contracts()
    trail = instance.access.trail(library_id)
    head = trail.head()
    old_size, old_root = contracts.head_of(member.address)
    if head.size == old_size:
        return None
    if head.size < old_size:
        raise Conflict(
            f"the chain has a head of size {old_size} for {library_id}, but the local trail "
            f"has only {head.size} entries",
            hint="this database is behind the chain; restore the trail before anchoring",
        )
    if old_size and trail.root_at(old_size) != old_root:
        raise Conflict(
            f"the local trail of {library_id} does not match its anchored head of size {old_size}",
            hint="run `libshare audit verify` to find the first entry that differs",
        )
    proof = trail.consistency_proof(old_size, head.size) if old_size else []
    anchored = contracts.anchor_head(member, head.size, head.root, proof)
    instance.sync()
    return anchored


def verify_member_trail(instance: Instance, library_id: str, account: str) -> TrailReport:
    """Verify ``library_id``'s stored trail against the heads the chain holds for ``account``."""
    contracts = instance.require_contracts()
    heads = [Head(h.size, h.root, h.block, h.tx_hash) for h in contracts.anchored_heads(account)]
    trail = instance.access.trail(library_id)
    entries = ((row.seq, row.body, row.leaf_hash) for row in trail.entries())
    return verify_trail(entries, heads)
