"""TrailAnchor: members anchor RFC 9162 tree heads, each proven consistent on chain."""

from __future__ import annotations

import pytest
from evm_support import Deployment, expect_revert

from ledger.merkle import consistency_proof, leaf_hash, root_from_leaves

LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(64)]
OTHER_LEAVES = [leaf_hash(f"rewritten {i}".encode()) for i in range(64)]
ZERO32 = b"\x00" * 32


def root(size: int, leaves: list[bytes] = LEAVES) -> bytes:
    return bytes(root_from_leaves(leaves[:size]))


def proof(old: int, new: int, leaves: list[bytes] = LEAVES) -> list[bytes]:
    return [bytes(p) for p in consistency_proof(old, new, leaves[:new])]


def anchor(d: Deployment, member: str, old: int, new: int) -> None:
    d.send(d.anchor.functions.anchor(new, root(new), proof(old, new) if old else []), member)


def test_anchor_points_at_its_consortium(d: Deployment) -> None:
    assert d.anchor.functions.consortium().call() == d.consortium.address


def test_first_head_is_anchored_without_proof(d: Deployment) -> None:
    receipt = d.send(d.anchor.functions.anchor(5, root(5), []), d.a)
    assert d.events(d.anchor, "HeadAnchored", receipt) == [
        {"member": d.a, "size": 5, "root": root(5), "previousSize": 0, "previousRoot": ZERO32}
    ]
    assert tuple(d.anchor.functions.headOf(d.a).call()) == (5, root(5), receipt["blockNumber"])
    assert d.anchor.functions.headCount(d.a).call() == 1


def test_member_without_heads_has_a_zero_head(d: Deployment) -> None:
    assert tuple(d.anchor.functions.headOf(d.b).call()) == (0, ZERO32, 0)
    assert d.anchor.functions.headCount(d.b).call() == 0


def test_sequence_of_heads_with_valid_proofs_is_anchored(d: Deployment) -> None:
    sizes = [1, 3, 4, 7, 8, 20]
    previous = 0
    for size in sizes:
        p = proof(previous, size) if previous else []
        receipt = d.send(d.anchor.functions.anchor(size, root(size), p), d.a)
        (event,) = d.events(d.anchor, "HeadAnchored", receipt)
        assert (event["previousSize"], event["size"]) == (previous, size)
        assert event["previousRoot"] == (root(previous) if previous else ZERO32)
        previous = size
    assert tuple(d.anchor.functions.headOf(d.a).call())[:2] == (20, root(20))
    assert d.anchor.functions.headCount(d.a).call() == len(sizes)


@pytest.mark.parametrize("old", list(range(1, 13)))
def test_every_valid_proof_verifies_and_a_flipped_bit_fails(d: Deployment, old: int) -> None:
    # One anchored head per test, then eth_call for every larger size: fast and exhaustive.
    anchor(d, d.a, 0, old)
    f = d.anchor.functions
    for new in range(old + 1, 21):
        p = proof(old, new)
        f.anchor(new, root(new), p).call({"from": d.a})
        bad = list(p)
        i = new % len(p)  # a different element for each new size
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        with expect_revert("TrailAnchorInconsistent", previousSize=old, size=new):
            f.anchor(new, root(new), bad).call({"from": d.a})


def test_wrong_root_is_inconsistent(d: Deployment) -> None:
    anchor(d, d.a, 0, 3)
    with expect_revert("TrailAnchorInconsistent", previousSize=3, size=7):
        d.send(d.anchor.functions.anchor(7, root(7, OTHER_LEAVES), proof(3, 7)), d.a)


def test_proof_from_a_different_tree_is_inconsistent(d: Deployment) -> None:
    anchor(d, d.a, 0, 3)
    rewritten = root(7, LEAVES[:3] + OTHER_LEAVES[3:])
    other_proof = proof(3, 7, OTHER_LEAVES)
    with expect_revert("TrailAnchorInconsistent", previousSize=3, size=7):
        d.send(d.anchor.functions.anchor(7, rewritten, other_proof), d.a)


def test_rewritten_history_is_refused(d: Deployment) -> None:
    # The new tree keeps the size but changes an anchored entry: no proof can link them.
    anchor(d, d.a, 0, 4)
    forged = LEAVES[:2] + OTHER_LEAVES[2:]
    with expect_revert("TrailAnchorInconsistent", previousSize=4, size=8):
        d.send(d.anchor.functions.anchor(8, root(8, forged), proof(4, 8, forged)), d.a)


def test_truncated_proof_is_rejected(d: Deployment) -> None:
    anchor(d, d.a, 0, 3)
    p = proof(3, 20)[:-1]
    with expect_revert(
        "TrailAnchorInvalidProofLength", previousSize=3, size=20, proofLength=len(p)
    ):
        d.send(d.anchor.functions.anchor(20, root(20), p), d.a)


def test_overlong_proof_is_rejected(d: Deployment) -> None:
    anchor(d, d.a, 0, 4)
    p = [*proof(4, 7), ZERO32]
    with expect_revert("TrailAnchorInvalidProofLength", previousSize=4, size=7, proofLength=len(p)):
        d.send(d.anchor.functions.anchor(7, root(7), p), d.a)


def test_missing_proof_after_the_first_head_is_rejected(d: Deployment) -> None:
    anchor(d, d.a, 0, 4)
    with expect_revert("TrailAnchorInvalidProofLength", previousSize=4, size=7, proofLength=0):
        d.send(d.anchor.functions.anchor(7, root(7), []), d.a)


def test_first_head_with_a_proof_is_rejected(d: Deployment) -> None:
    with expect_revert("TrailAnchorInvalidProofLength", previousSize=0, size=4, proofLength=1):
        d.send(d.anchor.functions.anchor(4, root(4), [root(2)]), d.a)


@pytest.mark.parametrize("size", [8, 5])
def test_size_that_does_not_increase_is_rejected(d: Deployment, size: int) -> None:
    anchor(d, d.a, 0, 8)
    with expect_revert("TrailAnchorSizeNotIncreasing", previousSize=8, size=size):
        d.send(d.anchor.functions.anchor(size, root(size), proof(size, 8)), d.a)


def test_empty_first_head_is_rejected(d: Deployment) -> None:
    with expect_revert("TrailAnchorSizeNotIncreasing", previousSize=0, size=0):
        d.send(d.anchor.functions.anchor(0, root(1), []), d.a)


def test_zero_root_is_rejected(d: Deployment) -> None:
    with expect_revert("TrailAnchorEmptyRoot"):
        d.send(d.anchor.functions.anchor(1, ZERO32, []), d.a)


@pytest.mark.parametrize("who", ["outsider", "auditor", "delivery", "admin"])
def test_non_member_cannot_anchor(d: Deployment, who: str) -> None:
    sender = getattr(d, who)
    with expect_revert("TrailAnchorNotMember", account=sender):
        d.send(d.anchor.functions.anchor(1, root(1), []), sender)


def test_members_trails_are_independent(d: Deployment) -> None:
    anchor(d, d.a, 0, 8)
    # b starts its own trail: its first head needs no proof, and a's head is untouched.
    receipt = d.send(d.anchor.functions.anchor(3, root(3, OTHER_LEAVES), []), d.b)
    (event,) = d.events(d.anchor, "HeadAnchored", receipt)
    assert (event["member"], event["previousSize"]) == (d.b, 0)
    assert tuple(d.anchor.functions.headOf(d.a).call())[:2] == (8, root(8))
    # ...and a's proof does not extend b's head.
    with expect_revert("TrailAnchorInconsistent", previousSize=3, size=8):
        d.send(d.anchor.functions.anchor(8, root(8), proof(3, 8)), d.b)
