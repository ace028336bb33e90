"""LicenceRegistry: issuing, versioning and revoking licences."""

from __future__ import annotations

import hashlib

import pytest
from evm_support import Deployment, expect_revert

TERMS_V1 = '{"actions":["copy"],"purposes":["personal_study"]}'
TERMS_V2 = '{"actions":["copy","loan"],"purposes":["personal_study"]}'
ZERO32 = b"\x00" * 32


def h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def issue(d: Deployment, licensor: str, terms: str = TERMS_V1) -> int:
    fn = d.licences.functions.issue(h(terms), terms)
    licence_id = int(fn.call({"from": licensor}))
    d.send(fn, licensor)
    return licence_id


def test_registry_points_at_its_consortium(d: Deployment) -> None:
    assert d.licences.functions.consortium().call() == d.consortium.address


def test_issued_licence_gets_id_one_and_version_one(d: Deployment) -> None:
    receipt = d.send(d.licences.functions.issue(h(TERMS_V1), TERMS_V1), d.a)
    assert d.events(d.licences, "LicenceIssued", receipt) == [
        {
            "licenceId": 1,
            "licensor": d.a,
            "version": 1,
            "termsHash": h(TERMS_V1),
            "termsJson": TERMS_V1,
        }
    ]
    f = d.licences.functions
    assert f.licenceCount().call() == 1
    assert f.licensorOf(1).call() == d.a
    assert f.latestVersion(1).call() == 1
    assert f.termsHashOf(1, 1).call() == h(TERMS_V1)
    assert f.revokedAt(1).call() == 0
    assert tuple(f.licenceOf(1).call()) == (d.a, 1, 0)


def test_licence_ids_are_sequential_across_members(d: Deployment) -> None:
    assert [issue(d, d.a), issue(d, d.b), issue(d, d.a)] == [1, 2, 3]
    assert d.licences.functions.licensorOf(2).call() == d.b


@pytest.mark.parametrize("who", ["outsider", "auditor", "delivery", "admin"])
def test_non_member_cannot_issue(d: Deployment, who: str) -> None:
    sender = getattr(d, who)
    with expect_revert("LicenceRegistryNotMember", account=sender):
        d.send(d.licences.functions.issue(h(TERMS_V1), TERMS_V1), sender)


@pytest.mark.parametrize("terms_hash, terms_json", [(ZERO32, TERMS_V1), (h(TERMS_V1), "")])
def test_issuing_empty_terms_is_rejected(d: Deployment, terms_hash: bytes, terms_json: str) -> None:
    with expect_revert("LicenceRegistryEmptyTerms"):
        d.send(d.licences.functions.issue(terms_hash, terms_json), d.a)


def test_new_version_keeps_the_old_one(d: Deployment) -> None:
    licence_id = issue(d, d.a)
    fn = d.licences.functions.issueVersion(licence_id, h(TERMS_V2), TERMS_V2)
    assert fn.call({"from": d.a}) == 2
    receipt = d.send(fn, d.a)
    assert d.events(d.licences, "LicenceIssued", receipt) == [
        {
            "licenceId": licence_id,
            "licensor": d.a,
            "version": 2,
            "termsHash": h(TERMS_V2),
            "termsJson": TERMS_V2,
        }
    ]
    f = d.licences.functions
    assert f.latestVersion(licence_id).call() == 2
    assert f.termsHashOf(licence_id, 1).call() == h(TERMS_V1)
    assert f.termsHashOf(licence_id, 2).call() == h(TERMS_V2)


@pytest.mark.parametrize("who", ["b", "outsider", "auditor", "delivery", "admin"])
def test_member_cannot_version_another_members_licence(d: Deployment, who: str) -> None:
    licence_id = issue(d, d.a)
    sender = getattr(d, who)
    with expect_revert("LicenceRegistryNotLicensor", licenceId=licence_id, account=sender):
        d.send(d.licences.functions.issueVersion(licence_id, h(TERMS_V2), TERMS_V2), sender)


def test_versioning_an_unknown_licence_reverts(d: Deployment) -> None:
    with expect_revert("LicenceRegistryUnknownLicence", licenceId=5):
        d.send(d.licences.functions.issueVersion(5, h(TERMS_V2), TERMS_V2), d.a)


def test_versioning_a_revoked_licence_reverts(d: Deployment) -> None:
    licence_id = issue(d, d.a)
    revoked = d.send(d.licences.functions.revoke(licence_id), d.a)
    with expect_revert(
        "LicenceRegistryRevoked", licenceId=licence_id, revokedAt=revoked["blockNumber"]
    ):
        d.send(d.licences.functions.issueVersion(licence_id, h(TERMS_V2), TERMS_V2), d.a)


@pytest.mark.parametrize("terms_hash, terms_json", [(ZERO32, TERMS_V2), (h(TERMS_V2), "")])
def test_versioning_with_empty_terms_is_rejected(
    d: Deployment, terms_hash: bytes, terms_json: str
) -> None:
    licence_id = issue(d, d.a)
    with expect_revert("LicenceRegistryEmptyTerms"):
        d.send(d.licences.functions.issueVersion(licence_id, terms_hash, terms_json), d.a)


def test_revoking_records_the_block_and_emits(d: Deployment) -> None:
    licence_id = issue(d, d.b)
    receipt = d.send(d.licences.functions.revoke(licence_id), d.b)
    block = receipt["blockNumber"]
    assert d.events(d.licences, "LicenceRevoked", receipt) == [
        {"licenceId": licence_id, "licensor": d.b, "blockNumber": block}
    ]
    assert d.licences.functions.revokedAt(licence_id).call() == block
    assert tuple(d.licences.functions.licenceOf(licence_id).call()) == (d.b, 1, block)


def test_licence_cannot_be_revoked_twice(d: Deployment) -> None:
    licence_id = issue(d, d.a)
    first = d.send(d.licences.functions.revoke(licence_id), d.a)
    with expect_revert(
        "LicenceRegistryRevoked", licenceId=licence_id, revokedAt=first["blockNumber"]
    ):
        d.send(d.licences.functions.revoke(licence_id), d.a)


@pytest.mark.parametrize("who", ["b", "outsider", "auditor", "delivery", "admin"])
def test_member_cannot_revoke_another_members_licence(d: Deployment, who: str) -> None:
    licence_id = issue(d, d.a)
    sender = getattr(d, who)
    with expect_revert("LicenceRegistryNotLicensor", licenceId=licence_id, account=sender):
        d.send(d.licences.functions.revoke(licence_id), sender)


def test_revoking_an_unknown_licence_reverts(d: Deployment) -> None:
    with expect_revert("LicenceRegistryUnknownLicence", licenceId=0):
        d.send(d.licences.functions.revoke(0), d.a)


@pytest.mark.parametrize("view", ["licensorOf", "latestVersion", "revokedAt"])
def test_views_of_an_unknown_licence_revert(d: Deployment, view: str) -> None:
    issue(d, d.a)
    with expect_revert("LicenceRegistryUnknownLicence", licenceId=2):
        getattr(d.licences.functions, view)(2).call()


def test_terms_hash_of_an_unknown_licence_reverts(d: Deployment) -> None:
    with expect_revert("LicenceRegistryUnknownLicence", licenceId=1):
        d.licences.functions.termsHashOf(1, 1).call()


@pytest.mark.parametrize("version", [0, 2])
def test_terms_hash_of_an_unknown_version_reverts(d: Deployment, version: int) -> None:
    licence_id = issue(d, d.a)
    with expect_revert("LicenceRegistryUnknownVersion", licenceId=licence_id, version=version):
        d.licences.functions.termsHashOf(licence_id, version).call()


def test_licence_of_an_unknown_licence_is_all_zero(d: Deployment) -> None:
    zero = "0x0000000000000000000000000000000000000000"
    assert tuple(d.licences.functions.licenceOf(9).call()) == (zero, 0, 0)
