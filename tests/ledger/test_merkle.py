"""RFC 9162 §2.1 Merkle tree: published vectors, exhaustive small trees, tampered proofs."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput, ProofError, RootMismatch
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    aligned_subtrees,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    range_hasher,
    root_from_inclusion_proof,
    root_from_leaves,
    root_from_subtrees,
    verify_consistency,
    verify_inclusion,
)

DATA = Path(__file__).parent.parent / "data" / "merkle"
TREE: dict[str, Any] = json.loads((DATA / "rfc6962_tree.json").read_text())
TESTDATA: dict[str, Any] = json.loads((DATA / "transparency_dev_testdata.json").read_text())

GOLDEN_LEAVES = [leaf_hash(bytes.fromhex(x)) for x in TREE["leaf_inputs"]]
GOLDEN_ROOTS = [bytes.fromhex(x) for x in TREE["roots_by_size"]]

MAX = 64
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(2 * MAX + 1)]
HASHER = range_hasher(LEAVES)
ROOTS = [HASHER(0, n) for n in range(len(LEAVES) + 1)]


# A literal transcription of the RFC 9162 §2.1 recursions, to check the iterative code against.
def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return node_hash(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def flip(proof: list[bytes], which: int, bit: int) -> list[bytes]:
    tampered = bytearray(proof[which])
    tampered[bit // 8] ^= 1 << (bit % 8)
    return [*proof[:which], bytes(tampered), *proof[which + 1 :]]


def b64(value: str) -> bytes:
    return base64.b64decode(value)


# --- published vectors -------------------------------------------------------------------


def test_hasher_matches_published_rfc6962_vectors() -> None:
    hasher = TREE["hasher"]
    assert EMPTY_ROOT.hex() == hasher["empty_root"]
    for case in hasher["leaf"]:
        assert leaf_hash(bytes.fromhex(case["data"])).hex() == case["hash"]
    for case in hasher["node"]:
        left, right = bytes.fromhex(case["left"]), bytes.fromhex(case["right"])
        assert node_hash(left, right).hex() == case["hash"]


def test_leaf_hashes_of_published_inputs_match_published_level_zero() -> None:
    assert [h.hex() for h in GOLDEN_LEAVES] == TREE["node_hashes_by_level"][0]


@pytest.mark.parametrize("size", range(9))
def test_root_of_every_published_prefix_matches_published_root(size: int) -> None:
    leaves = GOLDEN_LEAVES[:size]
    compact = CompactRange()
    for h in leaves:
        compact.append(h)
    assert root_from_leaves(leaves) == GOLDEN_ROOTS[size]
    assert compact.root() == GOLDEN_ROOTS[size]
    assert range_hasher(GOLDEN_LEAVES)(0, size) == GOLDEN_ROOTS[size]
    assert ref_mth(leaves) == GOLDEN_ROOTS[size]


def test_every_complete_subtree_matches_published_node_hashes() -> None:
    hasher = range_hasher(GOLDEN_LEAVES)
    for level, row in enumerate(TREE["node_hashes_by_level"]):
        for index, want in enumerate(row):
            assert hasher(index << level, (index + 1) << level).hex() == want


def test_compact_range_frontier_matches_published_compact_trees() -> None:
    nodes = TREE["node_hashes_by_level"]
    compact = CompactRange()
    for size, frontier in enumerate(TREE["compact_trees"]):
        assert [h.hex() for h in compact.hashes] == [nodes[lv][ix] for lv, ix in frontier]
        assert aligned_subtrees(0, size) == [tuple(node) for node in frontier]
        if size < len(GOLDEN_LEAVES):
            compact.append(GOLDEN_LEAVES[size])


@pytest.mark.parametrize(
    "case", TREE["inclusion_proofs"], ids=lambda c: f"{c['index']}-of-{c['size']}"
)
def test_published_inclusion_proof_is_generated_and_verifies(case: dict[str, Any]) -> None:
    index, size = case["index"], case["size"]
    proof = inclusion_proof(index, size, GOLDEN_LEAVES)
    assert [h.hex() for h in proof] == case["proof"]
    verify_inclusion(index, size, GOLDEN_LEAVES[index], proof, GOLDEN_ROOTS[size])


@pytest.mark.parametrize(
    "case", TREE["consistency_proofs"], ids=lambda c: f"{c['old_size']}-to-{c['new_size']}"
)
def test_published_consistency_proof_is_generated_and_verifies(case: dict[str, Any]) -> None:
    old, new = case["old_size"], case["new_size"]
    proof = consistency_proof(old, new, range_hasher(GOLDEN_LEAVES))
    assert [h.hex() for h in proof] == case["proof"]
    verify_consistency(old, new, GOLDEN_ROOTS[old], GOLDEN_ROOTS[new], proof)


@pytest.mark.parametrize("case", TESTDATA["inclusion"], ids=lambda c: c["file"])
def test_published_inclusion_case_is_accepted_or_rejected_as_published(
    case: dict[str, Any],
) -> None:
    args = (
        case["leafIdx"],
        case["treeSize"],
        b64(case["leafHash"]),
        [b64(h) for h in case["proof"] or []],
        b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("case", TESTDATA["consistency"], ids=lambda c: c["file"])
def test_published_consistency_case_is_accepted_or_rejected_as_published(
    case: dict[str, Any],
) -> None:
    args = (
        case["size1"],
        case["size2"],
        b64(case["root1"]),
        b64(case["root2"]),
        [b64(h) for h in case["proof"] or []],
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --- every small tree --------------------------------------------------------------------


def test_every_inclusion_proof_up_to_64_leaves_is_the_rfc_path_and_verifies() -> None:
    for size in range(1, MAX + 1):
        for index in range(size):
            proof = inclusion_proof(index, size, HASHER)
            assert proof == ref_path(index, LEAVES[:size])
            verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])


def test_every_consistency_proof_up_to_64_leaves_is_the_rfc_proof_and_verifies() -> None:
    for new in range(MAX + 1):
        for old in range(new + 1):
            proof = consistency_proof(old, new, HASHER)
            assert proof == (ref_subproof(old, LEAVES[:new], True) if old else [])
            verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


def test_proofs_from_a_plain_list_equal_proofs_from_a_range_hasher() -> None:
    for size in range(1, 20):
        for index in range(size):
            assert inclusion_proof(index, size, LEAVES) == inclusion_proof(index, size, HASHER)
            assert consistency_proof(index, size, LEAVES) == consistency_proof(index, size, HASHER)


def test_inclusion_proof_in_a_single_leaf_tree_is_empty() -> None:
    assert inclusion_proof(0, 1, LEAVES) == []
    verify_inclusion(0, 1, LEAVES[0], [], LEAVES[0])


# --- tampered proofs ---------------------------------------------------------------------


@st.composite
def inclusion_cases(draw: st.DrawFn, nonempty: bool = False) -> tuple[int, int, list[bytes]]:
    size = draw(st.integers(2 if nonempty else 1, MAX))
    index = draw(st.integers(0, size - 1))
    return index, size, inclusion_proof(index, size, HASHER)


@st.composite
def consistency_cases(draw: st.DrawFn) -> tuple[int, int, list[bytes]]:
    new = draw(st.integers(3, MAX))
    old = draw(st.integers(1, new - 1))
    return old, new, consistency_proof(old, new, HASHER)


@settings(max_examples=300)
@given(inclusion_cases(nonempty=True), st.data())
def test_flipped_bit_in_inclusion_proof_is_rejected(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    index, size, proof = case
    which = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(RootMismatch, match="does not lead to the root"):
        verify_inclusion(index, size, LEAVES[index], flip(proof, which, bit), ROOTS[size])


@settings(max_examples=300)
@given(consistency_cases(), st.data())
def test_flipped_bit_in_consistency_proof_is_rejected(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    old, new, proof = case
    which = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(RootMismatch, match=r"does not lead to the (old|new) root"):
        verify_consistency(old, new, ROOTS[old], ROOTS[new], flip(proof, which, bit))


@given(inclusion_cases(nonempty=True), st.data())
def test_dropped_or_extra_hash_in_inclusion_proof_is_rejected(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    index, size, proof = case
    at = data.draw(st.integers(0, len(proof) - 1))
    dropped = proof[:at] + proof[at + 1 :]
    extra = [*proof[:at], ROOTS[size], *proof[at:]]
    for tampered in (dropped, extra):
        with pytest.raises(ProofError, match=f"inclusion proof has {len(tampered)} hashes"):
            verify_inclusion(index, size, LEAVES[index], tampered, ROOTS[size])


@given(consistency_cases(), st.data())
def test_dropped_or_extra_hash_in_consistency_proof_is_rejected(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    old, new, proof = case
    at = data.draw(st.integers(0, len(proof) - 1))
    dropped = proof[:at] + proof[at + 1 :]
    extra = [*proof[:at], ROOTS[old], *proof[at:]]
    for tampered in (dropped, extra):
        with pytest.raises(ProofError, match=f"consistency proof has {len(tampered)} hashes"):
            verify_consistency(old, new, ROOTS[old], ROOTS[new], tampered)


@given(inclusion_cases(nonempty=True), st.data())
def test_inclusion_proof_at_a_wrong_index_is_rejected(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    index, size, proof = case
    wrong = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    with pytest.raises(ProofError):
        verify_inclusion(wrong, size, LEAVES[index], proof, ROOTS[size])
    with pytest.raises(ProofError):
        verify_inclusion(wrong, size, LEAVES[wrong], proof, ROOTS[size])


@given(inclusion_cases(), st.data())
def test_inclusion_proof_for_another_tree_size_is_rejected(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    index, size, proof = case
    wrong = data.draw(st.integers(index + 1, 2 * MAX).filter(lambda n: n != size))
    with pytest.raises(ProofError):
        verify_inclusion(index, wrong, LEAVES[index], proof, ROOTS[wrong])


def test_inclusion_proof_binds_the_tree_size_only_through_the_root() -> None:
    # Leaves 0..2 hash the same way in trees of 3 and 4 leaves: a bare root does not pin the
    # size, which is why heads are anchored as (size, root) pairs.
    proof = inclusion_proof(0, 3, HASHER)
    verify_inclusion(0, 4, LEAVES[0], proof, ROOTS[3])
    with pytest.raises(RootMismatch):
        verify_inclusion(0, 4, LEAVES[0], proof, ROOTS[4])


@given(consistency_cases(), st.data())
def test_consistency_proof_between_other_sizes_is_rejected(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    old, new, proof = case
    wrong_new = data.draw(st.integers(old, 2 * MAX))
    wrong_old = data.draw(st.integers(1, wrong_new))
    if (wrong_old, wrong_new) == (old, new) or wrong_old == wrong_new:
        return
    with pytest.raises(ProofError):
        verify_consistency(wrong_old, wrong_new, ROOTS[wrong_old], ROOTS[wrong_new], proof)


@given(inclusion_cases())
def test_inclusion_proof_for_another_leaf_is_rejected(case: tuple[int, int, list[bytes]]) -> None:
    index, size, proof = case
    with pytest.raises(RootMismatch):
        verify_inclusion(index, size, LEAVES[size], proof, ROOTS[size])


def test_swapped_roots_in_consistency_check_are_rejected() -> None:
    proof = consistency_proof(5, 9, HASHER)
    with pytest.raises(RootMismatch):
        verify_consistency(5, 9, ROOTS[9], ROOTS[5], proof)


# --- compact range and subtree decomposition ---------------------------------------------


def test_compact_range_root_equals_root_from_leaves_at_every_size() -> None:
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT == root_from_leaves([])
    for size in range(1, len(LEAVES) + 1):
        compact.append(LEAVES[size - 1])
        assert compact.size == size
        assert compact.root() == root_from_leaves(LEAVES[:size]) == ROOTS[size]


def test_compact_range_reports_each_complete_subtree_once_with_its_hash() -> None:
    compact = CompactRange()
    formed = [node for h in LEAVES[:MAX] for node in compact.append(h)]
    want = {(lv, ix) for lv in range(7) for ix in range(MAX >> lv)}
    assert sorted((lv, ix) for lv, ix, _ in formed) == sorted(want)
    for level, index, h in formed:
        assert h == HASHER(index << level, (index + 1) << level)


def test_compact_range_resumed_from_its_frontier_continues_identically() -> None:
    for size in range(40):
        original = CompactRange()
        for h in LEAVES[:size]:
            original.append(h)
        resumed = CompactRange(original.size, original.hashes)
        for h in LEAVES[size:48]:
            assert resumed.append(h) == original.append(h)
        assert resumed.root() == original.root() == ROOTS[48]


def test_compact_range_frontier_is_the_aligned_subtrees_of_the_prefix() -> None:
    compact = CompactRange()
    for size in range(1, 100):
        compact.append(LEAVES[size - 1])
        want = [HASHER(ix << lv, (ix + 1) << lv) for lv, ix in aligned_subtrees(0, size)]
        assert compact.hashes == want


@given(st.integers(0, 1 << 40), st.integers(0, 1 << 40))
def test_aligned_subtrees_tile_the_range_with_maximal_aligned_blocks(start: int, n: int) -> None:
    end = start + n
    blocks = aligned_subtrees(start, end)
    at = start
    for i, (level, index) in enumerate(blocks):
        assert index << level == at  # contiguous and aligned
        at += 1 << level
        assert not (i and index % 2 and blocks[i - 1] == (level, index - 1))  # siblings merge
    assert at == end
    assert len(blocks) <= 2 * max(1, n.bit_length())


def test_range_hasher_equals_direct_mth_for_every_range() -> None:
    for end in range(34):
        for start in range(end + 1):
            assert HASHER(start, end) == ref_mth(LEAVES[start:end])


def test_subtree_roots_fold_to_mth_for_every_range_a_proof_asks_for() -> None:
    for start in range(0, 2 * MAX, 16):
        for end in range(start, start + 17):
            hashes = [HASHER(ix << lv, (ix + 1) << lv) for lv, ix in aligned_subtrees(start, end)]
            assert root_from_subtrees(hashes) == ref_mth(LEAVES[start:end])


def test_root_from_leaves_of_a_large_uneven_tree_equals_the_compact_range() -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range((1 << 14) + 5)]
    compact = CompactRange()
    for h in leaves:
        compact.append(h)
    assert root_from_leaves(leaves) == compact.root() == range_hasher(leaves)(0, len(leaves))


# --- bad arguments -----------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert root_from_leaves([]) == EMPTY_ROOT


def test_inclusion_proof_of_wrong_length_names_got_and_want() -> None:
    proof = inclusion_proof(5, 9, HASHER)
    with pytest.raises(
        ProofError, match=r"^inclusion proof has 3 hashes, want 4 for index 5 in a tree of 9$"
    ):
        verify_inclusion(5, 9, LEAVES[5], proof[:3], ROOTS[9])


def test_consistency_proof_of_wrong_length_names_got_and_want() -> None:
    with pytest.raises(
        ProofError, match=r"^consistency proof has 0 hashes, want 3 from size 6 to size 8$"
    ):
        verify_consistency(6, 8, ROOTS[6], ROOTS[8], [])


def test_root_mismatch_carries_expected_and_computed_roots() -> None:
    proof = inclusion_proof(2, 7, HASHER)
    with pytest.raises(RootMismatch, match="expected root " + ROOTS[6].hex()) as caught:
        verify_inclusion(2, 7, LEAVES[2], proof, ROOTS[6])
    assert caught.value.expected == ROOTS[6]
    assert caught.value.computed == ROOTS[7]
    assert root_from_inclusion_proof(2, 7, LEAVES[2], proof) == ROOTS[7]


@pytest.mark.parametrize(("index", "size"), [(8, 8), (0, 0), (-1, 4)])
def test_leaf_index_outside_the_tree_is_invalid_input(index: int, size: int) -> None:
    match = f"leaf index {index} is outside a tree of size {size}"
    with pytest.raises(InvalidInput, match=match):
        inclusion_proof(index, size, HASHER)
    with pytest.raises(InvalidInput, match=match):
        verify_inclusion(index, size, LEAVES[0], [], ROOTS[1])


@pytest.mark.parametrize(("old", "new"), [(5, 4), (-1, 3), (-2, -1)])
def test_tree_sizes_out_of_order_are_invalid_input(old: int, new: int) -> None:
    match = rf"tree sizes {old} -> {new} are not 0 <= old <= new"
    with pytest.raises(InvalidInput, match=match):
        consistency_proof(old, new, HASHER)
    with pytest.raises(InvalidInput, match=match):
        verify_consistency(old, new, ROOTS[1], ROOTS[1], [])


def test_hash_of_wrong_length_is_rejected_before_hashing() -> None:
    proof = inclusion_proof(1, 4, HASHER)
    with pytest.raises(InvalidInput, match="leaf hash is 31 bytes, want 32"):
        verify_inclusion(1, 4, LEAVES[1][:31], proof, ROOTS[4])
    with pytest.raises(InvalidInput, match="root is 0 bytes, want 32"):
        verify_inclusion(1, 4, LEAVES[1], proof, b"")
    with pytest.raises(InvalidInput, match="inclusion proof hash 1 is 33 bytes, want 32"):
        verify_inclusion(1, 4, LEAVES[1], [proof[0], proof[1] + b"\x00"], ROOTS[4])
    with pytest.raises(InvalidInput, match="new root is 9 bytes, want 32"):
        verify_consistency(1, 4, ROOTS[1], b"WrongRoot", consistency_proof(1, 4, HASHER))
    with pytest.raises(InvalidInput, match="leaf hash 2 is 4 bytes, want 32"):
        root_from_leaves([LEAVES[0], LEAVES[1], b"leaf"])
    with pytest.raises(InvalidInput, match="leaf hash is 5 bytes, want 32"):
        CompactRange().append(b"entry")


def test_consistency_between_equal_sizes_needs_an_empty_proof_and_equal_roots() -> None:
    verify_consistency(7, 7, ROOTS[7], ROOTS[7], [])
    assert consistency_proof(7, 7, HASHER) == []
    with pytest.raises(RootMismatch, match="two trees of size 7 have different roots"):
        verify_consistency(7, 7, ROOTS[7], ROOTS[6], [])
    with pytest.raises(ProofError, match="consistency proof has 1 hashes, want 0"):
        verify_consistency(7, 7, ROOTS[7], ROOTS[7], [ROOTS[7]])


def test_consistency_from_the_empty_tree_holds_with_an_empty_proof() -> None:
    assert consistency_proof(0, 9, HASHER) == []
    verify_consistency(0, 9, EMPTY_ROOT, ROOTS[9], [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="consistency proof has 1 hashes, want 0 from size 0"):
        verify_consistency(0, 9, EMPTY_ROOT, ROOTS[9], [EMPTY_ROOT])
    with pytest.raises(RootMismatch, match="the old root is not the root of an empty tree"):
        verify_consistency(0, 9, ROOTS[1], ROOTS[9], [])


def test_leaf_list_shorter_than_the_tree_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="5 leaf hashes given, want at least 6"):
        inclusion_proof(0, 6, LEAVES[:5])
    with pytest.raises(InvalidInput, match="5 leaf hashes given, want at least 6"):
        consistency_proof(2, 6, LEAVES[:5])


def test_range_hasher_refuses_a_range_beyond_its_leaves() -> None:
    hasher = range_hasher(LEAVES[:8])
    assert hasher(3, 3) == EMPTY_ROOT
    with pytest.raises(InvalidInput, match=r"leaf range \[4, 9\) is outside the 8 leaves held"):
        hasher(4, 9)
    with pytest.raises(InvalidInput, match=r"leaf range \[5, 4\) is not a range"):
        aligned_subtrees(5, 4)


def test_subtree_hasher_giving_a_short_hash_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"subtree hasher gave 4 bytes for \[4, 8\)"):
        inclusion_proof(0, 8, lambda start, end: b"\x00" * (4 if start == 4 else 32))


def test_compact_range_refuses_a_frontier_that_does_not_fit_its_size() -> None:
    with pytest.raises(InvalidInput, match="frontier has 1 hashes, want 2 for a tree of 5"):
        CompactRange(5, [ROOTS[4]])
    with pytest.raises(InvalidInput, match="tree size is -1, want 0 or more"):
        CompactRange(-1)
    with pytest.raises(InvalidInput, match="frontier hash 0 is 3 bytes, want 32"):
        CompactRange(1, [b"abc"])
