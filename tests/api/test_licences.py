"""Licences over HTTP: issue, version, revoke, and ODRL 2.2 in and out."""

from __future__ import annotations

import copy

from ledger.licence import consortium_terms
from ledger.licence_json import terms_to_json
from tests.api.conftest import Api

TERMS = terms_to_json(consortium_terms())


def test_a_licence_exported_to_odrl_and_issued_back_has_the_same_terms(api: Api) -> None:
    headers = api.headers("CN-A", "member")
    lid = api.consortium.licence_id
    policy = api.client.get(f"/v1/licences/{lid}/odrl", headers=headers).json()
    assert policy.get("@type", policy.get("type")) == "Offer"
    issued = api.client.post("/v1/licences", json={"odrl": policy}, headers=headers)
    assert issued.status_code == 201, issued.text
    original = api.client.get(f"/v1/licences/{lid}", headers=headers).json()
    assert issued.json()["versions"][0]["terms"] == original["versions"][0]["terms"]


def test_a_new_version_keeps_the_old_one_as_it_was(api: Api) -> None:
    headers = api.headers("CN-A", "member")
    created = api.client.post("/v1/licences", json={"terms": TERMS}, headers=headers).json()
    changed = copy.deepcopy(TERMS)
    changed["fee"]["amount_minor"] = 2000
    response = api.client.post(
        f"/v1/licences/{created['licence_id']}/versions", json={"terms": changed}, headers=headers
    )
    assert response.status_code == 201, response.text
    versions = response.json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["terms"] == created["versions"][0]["terms"]
    assert versions[1]["terms"]["fee"]["amount_minor"] == 2000


def test_revoking_twice_is_a_conflict_naming_the_contract_error(api: Api) -> None:
    headers = api.headers("CN-A", "member")
    lid = api.client.post("/v1/licences", json={"terms": TERMS}, headers=headers).json()[
        "licence_id"
    ]
    assert api.client.post(f"/v1/licences/{lid}/revoke", headers=headers).status_code == 200
    again = api.client.post(f"/v1/licences/{lid}/revoke", headers=headers)
    assert again.status_code == 409
    assert "LicenceRegistryRevoked" in again.json()["detail"]


def test_an_odrl_policy_with_an_action_the_profile_cannot_express_is_refused_by_name(
    api: Api,
) -> None:
    headers = api.headers("CN-A", "member")
    policy = api.client.get(
        f"/v1/licences/{api.consortium.licence_id}/odrl", headers=headers
    ).json()
    policy["permission"][0]["action"] = "odrl:sell"
    response = api.client.post("/v1/licences", json={"odrl": policy}, headers=headers)
    assert response.status_code == 422
    assert "odrl:sell" in response.json()["detail"]


def test_terms_with_an_unknown_key_are_refused_naming_the_key(api: Api) -> None:
    bad = dict(TERMS, discount_for_friends=True)
    response = api.client.post(
        "/v1/licences", json={"terms": bad}, headers=api.headers("CN-A", "member")
    )
    assert response.status_code == 422
    assert "discount_for_friends" in response.json()["detail"]


def test_terms_and_odrl_together_are_refused(api: Api) -> None:
    response = api.client.post(
        "/v1/licences",
        json={"terms": TERMS, "odrl": {"type": "Offer"}},
        headers=api.headers("CN-A", "member"),
    )
    assert response.status_code == 422
    assert "either terms or an odrl policy" in response.json()["detail"]
