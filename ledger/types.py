"""Distinct types for the kinds of bytes libshare handles.

A sha-256 content digest, a keccak-256 digest, a Merkle leaf hash, a Merkle root and a
CID string are all "some bytes" or "some text"; mixing them up is a silent bug. These
``NewType``s make the mix-up a type error without costing anything at run time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NewType

Sha256Digest = NewType("Sha256Digest", bytes)
"""sha-256 of a resource's plaintext bytes (32 bytes)."""

Keccak256Digest = NewType("Keccak256Digest", bytes)
"""keccak-256 digest, as Solidity computes it (32 bytes)."""

LeafHash = NewType("LeafHash", bytes)
"""RFC 9162 leaf hash: SHA-256(0x00 || entry bytes) (32 bytes)."""

NodeHash = NewType("NodeHash", bytes)
"""RFC 9162 interior or root hash: SHA-256(0x01 || left || right), or a leaf hash (32 bytes)."""

Cid = NewType("Cid", str)
"""An IPFS content identifier in its string form (CIDv0 base58btc or CIDv1 base32)."""

PatronPseudonym = NewType("PatronPseudonym", str)
"""HMAC-SHA-256 of a patron id under a member's patron key, hex encoded."""


def sha256(data: bytes) -> Sha256Digest:
    """Return the sha-256 digest of ``data``."""
    return Sha256Digest(hashlib.sha256(data).digest())


def digests_equal(a: bytes, b: bytes) -> bool:
    """Compare two digests in constant time."""
    return hmac.compare_digest(a, b)
