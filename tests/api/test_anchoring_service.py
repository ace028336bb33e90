"""`libshare serve` anchors each member's trail head through the outbox as the trail grows."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from ledger.anchoring import verify_member_trail
from tests.conftest import make_consortium


def test_the_service_anchors_the_head_once_enough_entries_are_recorded(
    tmp_path: Path, database_url: str | None
) -> None:
    base = make_consortium(tmp_path, database_url=database_url)
    config = dataclasses.replace(
        base.instance.config, anchor_every_entries=3, anchor_every_seconds=3600
    )
    account = base.members["CN-A"].account.address
    base.instance.close()
    app = create_app(config)
    with TestClient(app) as client:
        instance = app.state.instance
        token, _ = instance.apikeys.create("CN-B", "delivery")
        for n in range(5):
            response = client.post(
                "/v1/access/check",
                json={
                    "resource_id": base.resource_id,
                    "requesting_member": "CN-B",
                    "patron_id": f"patron-{n}",
                    "patron_category": "staff",
                    "purpose": "teaching",
                    "method": "copy",
                    "scope": "part",
                    "destination_country": "CN",
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200
        contracts = instance.require_contracts()
        deadline = time.monotonic() + 20
        while contracts.head_of(account)[0] < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert contracts.head_of(account)[0] == 5
        report = verify_member_trail(instance, "CN-A", account)
        assert (report.entries, report.anchored_size) == (5, 5)
