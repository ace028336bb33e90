"""A chain reorganisation on a real Hardhat node: the index follows the new chain."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.errors import NotFound
from ledger.licence import consortium_terms
from ledger.registration import NewResource, issue_licence, register_resources
from ledger.store import LicenceRow, ResourceRow
from tests.conftest import make_consortium

pytestmark = pytest.mark.hardhat


def test_after_a_reorg_the_index_drops_reverted_rows_and_holds_the_new_ones(
    rpc_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    consortium = make_consortium(tmp_path, rpc_url=rpc_url)
    instance = consortium.instance
    try:
        a, b = consortium.members["CN-A"], consortium.members["CN-B"]
        provider = instance.chain.w3.provider
        snapshot = provider.make_request("evm_snapshot", [])["result"]

        # On the branch that will be reverted: a licence and a resource, both indexed.
        now = datetime.now(UTC)
        terms = consortium_terms(valid_from=now - timedelta(days=1), valid_until=now)
        lost_licence, _ = issue_licence(instance, a.account, terms)
        (lost,) = register_resources(
            instance, a, [NewResource(b"a lost manuscript", "text", {"title": "Lost"}, 0)]
        )
        indexed_up_to = instance.chain.block_number()
        with instance.db.session() as session:
            assert session.get(LicenceRow, lost_licence) is not None
            assert session.get(ResourceRow, lost.resource_id) is not None

        assert provider.make_request("evm_revert", [snapshot])["result"] is True
        # Different blocks at the same heights: a transfer, then another member's resource.
        instance.chain.fund_from_node(b.account.address, 1)
        with caplog.at_level(logging.WARNING, logger="libshare.indexer"):
            (found,) = register_resources(
                instance, b, [NewResource(b"a found atlas", "text", {"title": "Atlas"}, 0)]
            )
        assert instance.chain.block_number() == indexed_up_to
        assert "chain reorganisation: indexed block" in caplog.text

        instance.sync()
        with instance.db.session() as session:
            assert session.get(LicenceRow, lost_licence) is None
            assert session.get(ResourceRow, lost.resource_id) is None
            assert session.get(ResourceRow, found.resource_id) is not None
            assert session.get(ResourceRow, consortium.resource_id) is not None
            assert session.get(LicenceRow, consortium.licence_id) is not None
        with pytest.raises(NotFound, match=f"resource {lost.resource_id} is not registered"):
            instance.access.check(
                resource_id=lost.resource_id,
                requesting_member="CN-B",
                patron="pseudonym-1",
                patron_category="student",
                purpose="research",
                method="copy",
                scope="part",
                destination_country="CN",
            )
        still = instance.access.check(
            resource_id=consortium.resource_id,
            requesting_member="CN-B",
            patron="pseudonym-2",
            patron_category="student",
            purpose="research",
            method="copy",
            scope="part",
            destination_country="CN",
        )
        assert still.supplier == "CN-A"
    finally:
        instance.close()
