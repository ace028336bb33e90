"""The content store interface: blocks addressed by CID, as IPFS addresses them.

Two implementations serve it: :class:`ledger.blockstore.LocalBlockstore` (the embedded
default, blocks in the data dir) and :class:`ledger.kubo.KuboStore` (an IPFS node over
the Kubo RPC API). Both store a file as the same UnixFS DAG, so the root CID of a file
is the same in either and equals Kubo's ``ipfs add`` for the same bytes and profile.
Every block read is checked against its CID before its bytes are used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol, runtime_checkable

from ledger.cid import Profile, RootInfo
from ledger.types import Cid


@runtime_checkable
class ContentStore(Protocol):
    """Where resource bytes live. All methods raise :mod:`ledger.errors` errors only."""

    def put(
        self, data: BinaryIO | Iterable[bytes], *, profile: Profile = Profile.KUBO_V0
    ) -> RootInfo:
        """Store a file (streamed, constant memory) as a UnixFS DAG and pin its root."""
        ...

    def cat(self, cid: Cid) -> Iterator[bytes]:
        """Stream the file whose root is ``cid``, verifying every block on the way."""
        ...

    def get_block(self, cid: Cid) -> bytes:
        """One block's raw bytes, verified against ``cid``."""
        ...

    def has(self, cid: Cid) -> bool:
        """Whether the block ``cid`` is present."""
        ...

    def pin(self, cid: Cid) -> None:
        """Keep the DAG under ``cid`` through garbage collection."""
        ...

    def unpin(self, cid: Cid) -> None:
        """Let the DAG under ``cid`` be collected (unless pinned otherwise)."""
        ...
