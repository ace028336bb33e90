"""An instance whose content store is the IPFS node: register sealed, check, deliver."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ledger.access import ShareRequest
from ledger.delivery import redeem
from ledger.instance import Instance
from ledger.registration import NewResource, register_resources
from tests.conftest import make_consortium

pytestmark = pytest.mark.ipfs


def test_a_sealed_resource_stored_on_the_ipfs_node_is_delivered_after_an_allowed_check(
    kubo_api: str, tmp_path: Path
) -> None:
    base = make_consortium(tmp_path)
    config = dataclasses.replace(base.instance.config, ipfs_api=kubo_api)
    base.instance.close()
    with Instance(config) as instance:
        owner = instance.member_keys("CN-A")
        data = b"a rare map, scanned at 600 dpi " * 40_000
        (res,) = register_resources(
            instance, owner, [NewResource(data, "image", {"title": "Map"}, base.licence_id)]
        )
        assert instance.content.has(res.cid)  # the node holds the ciphertext
        request = ShareRequest.parse(
            resource_id=res.resource_id,
            requesting_member="CN-B",
            patron=instance.member_keys("CN-B").pseudonym("p-1", instance.clock()),
            patron_category="faculty",
            purpose="research",
            method="copy",
            scope="part",
            destination_country="CN",
        )
        result = instance.access.check_request(request, grant_to="delivery-key-1")
        assert result.decision.allowed
        delivery = redeem(instance, result.decision_id, "delivery-key-1")
        assert b"".join(delivery.chunks) == data
