"""Registering resources over HTTP, and delivering them once after an allowed check."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from ledger.cid import cid_of_bytes
from tests.api.conftest import Api

SECRET_TEXT = b"Dunhuang manuscript, folio 17: restricted scan. " * 2000


def _upload(
    api: Api, data: bytes, *, member: str = "CN-A", role: str = "member", **form: Any
) -> Any:
    fields = {
        "media_type": "text",
        "metadata": json.dumps({"title": "Folio 17", "creator": "Mogao library"}),
        "licence_id": str(api.consortium.licence_id),
    }
    fields.update({k: str(v) for k, v in form.items()})
    return api.client.post(
        "/v1/resources",
        data=fields,
        files={"file": ("folio17.txt", data, "text/plain")},
        headers=api.headers(member, role),
    )


def _check(api: Api, resource_id: str, **overrides: Any) -> Any:
    body = {
        "resource_id": resource_id,
        "requesting_member": "CN-B",
        "patron_id": "patron-42",
        "patron_category": "faculty",
        "purpose": "research",
        "method": "copy",
        "scope": "part",
        "destination_country": "CN",
    }
    body.update(overrides)
    return api.client.post("/v1/access/check", json=body, headers=api.headers("CN-B", "delivery"))


def test_an_uploaded_resource_is_stored_sealed_and_registered_with_its_plaintext_hash(
    api: Api,
) -> None:
    response = _upload(api, SECRET_TEXT)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["owner"] == "CN-A"
    assert body["sealed"] is True
    assert body["content_hash"] == "0x" + hashlib.sha256(SECRET_TEXT).hexdigest()
    assert body["cid"] != cid_of_bytes(SECRET_TEXT)  # what is stored is the ciphertext
    assert body["metadata"]["title"] == "Folio 17"
    again = api.client.get(
        f"/v1/resources/{body['resource_id']}", headers=api.headers("CN-B", "auditor")
    )
    assert again.json() == body


def test_no_stored_block_holds_the_plaintext_of_a_sealed_resource(api: Api) -> None:
    marker = b"PLAINTEXT-MARKER-7f3a" * 100
    assert _upload(api, marker).status_code == 201
    blocks = Path(api.consortium.instance.config.data_dir) / "blocks"
    for path in blocks.rglob("*"):
        if path.is_file():
            assert b"PLAINTEXT-MARKER-7f3a" not in path.read_bytes()


def test_an_allowed_check_delivers_the_exact_bytes_once(api: Api) -> None:
    resource_id = _upload(api, SECRET_TEXT + b"once").json()["resource_id"]
    decision = _check(api, resource_id).json()
    assert decision["decision"] == "allow"
    url = decision["content_url"]
    first = api.client.get(url, headers=api.headers("CN-B", "delivery"))
    assert first.status_code == 200
    assert first.content == SECRET_TEXT + b"once"
    second = api.client.get(url, headers=api.headers("CN-B", "delivery"))
    assert second.status_code == 409
    assert "already delivered" in second.json()["detail"]


def test_content_is_refused_to_a_key_other_than_the_one_that_asked(api: Api) -> None:
    resource_id = _upload(api, SECRET_TEXT + b"other key").json()["resource_id"]
    url = _check(api, resource_id).json()["content_url"]
    response = api.client.get(url, headers=api.headers("CN-B", "admin"))
    assert response.status_code == 403
    assert "another API key" in response.json()["detail"]


def test_a_denied_check_opens_no_delivery(api: Api) -> None:
    resource_id = _upload(api, SECRET_TEXT + b"denied").json()["resource_id"]
    decision = _check(api, resource_id, purpose="commercial").json()
    assert decision["reason"] == "purpose_not_allowed"
    assert decision["content_url"] is None
    response = api.client.get(
        f"/v1/access/{decision['decision_id']}/content", headers=api.headers("CN-B", "delivery")
    )
    assert response.status_code == 404


def test_an_expired_delivery_is_refused(api: Api) -> None:
    instance = api.consortium.instance
    resource_id = _upload(api, SECRET_TEXT + b"late").json()["resource_id"]
    url = _check(api, resource_id).json()["content_url"]
    real_clock = instance.clock
    instance.clock = lambda: real_clock() + timedelta(hours=1)
    try:
        response = api.client.get(url, headers=api.headers("CN-B", "delivery"))
    finally:
        instance.clock = real_clock
    assert response.status_code == 409
    assert "expired" in response.json()["detail"]


def test_a_public_resource_registered_by_cid_keeps_its_plaintext_cid(api: Api) -> None:
    data = b"an open-access thesis abstract"
    stored = api.consortium.instance.content.put([data])
    response = api.client.post(
        "/v1/resources",
        data={
            "media_type": "text",
            "metadata": json.dumps({"title": "Abstract"}),
            "cid": stored.cid,
            "public": "true",
        },
        headers=api.headers("CN-A", "member"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["cid"] == cid_of_bytes(data) == stored.cid
    assert response.json()["sealed"] is False


def test_metadata_that_is_not_json_is_a_problem_naming_it(api: Api) -> None:
    response = _upload(api, b"x", metadata="{title:")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "metadata is not JSON" in response.json()["detail"]


def test_an_unknown_media_type_lists_the_known_ones(api: Api) -> None:
    response = _upload(api, b"y", media_type="hologram")
    assert response.status_code == 422
    assert "dataset" in response.json()["detail"]


def test_registering_the_same_content_twice_is_a_conflict_and_leaves_nothing_behind(
    api: Api,
) -> None:
    data = b"the same bytes twice"
    first = _upload(api, data, public="true").json()
    response = _upload(api, data, public="true")
    assert response.status_code == 409
    assert "already registered" in response.json()["detail"]
    url = _check(api, first["resource_id"]).json()["content_url"]
    delivered = api.client.get(url, headers=api.headers("CN-B", "delivery"))
    assert delivered.content == data  # the first registration is untouched
