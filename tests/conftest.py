"""Shared fixtures: a small consortium on the embedded chain, set up once per module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.instance import Instance, InstanceConfig
from ledger.keys import LIGHT_SCRYPT_N, MemberKeys
from ledger.licence import Campaign, Fee, consortium_terms
from ledger.onchain import ConsortiumContracts, FounderInput
from ledger.registration import NewResource, issue_licence, register_resources

PASSWORD = "test-password"


@dataclass
class Consortium:
    instance: Instance
    admin: MemberKeys
    members: dict[str, MemberKeys]
    licence_id: int
    resource_id: str  # owned by CN-A, under licence_id
    unlicensed_id: str  # owned by CN-A, no licence


def make_consortium(data_dir: Path, *, rpc_url: str | None = None) -> Consortium:
    """CN-A (tier 1) and CN-B (tier 2); CN-A licenses one resource under the consortium rules.

    On the embedded chain unless ``rpc_url`` names a JSON-RPC node.
    """
    instance = Instance(
        InstanceConfig(data_dir, PASSWORD, chain_url=rpc_url, scrypt_n=LIGHT_SCRYPT_N)
    )
    admin = instance.keystore.create("ADMIN")
    members = {lib: instance.keystore.create(lib) for lib in ("CN-A", "CN-B")}
    for keys in (admin, *members.values()):
        instance.chain.fund_from_node(keys.account.address, 10**20)
    founders = [
        FounderInput("CN-A", 1, "CN", members["CN-A"].account.address),
        FounderInput("CN-B", 2, "CN", members["CN-B"].account.address),
    ]
    contracts = ConsortiumContracts.deploy(instance.chain, admin.account, founders, 1)
    instance.record_deployment(contracts)
    now = datetime.now(UTC)
    day = timedelta(days=1)
    terms = consortium_terms(
        valid_from=now - 10 * day,
        valid_until=now + 300 * day,
        campaigns=(Campaign("free-month", now - day, now + 20 * day, True),),
        fee=Fee(1500, "CNY"),
    )
    licence_id, _ = issue_licence(instance, members["CN-A"].account, terms)
    licensed, unlicensed = register_resources(
        instance,
        members["CN-A"],
        [
            NewResource(b"a rare book", "text", {"title": "Rare book"}, licence_id),
            NewResource(b"an unlicensed thesis", "text", {"title": "Thesis"}, 0),
        ],
    )
    return Consortium(
        instance, admin, members, licence_id, licensed.resource_id, unlicensed.resource_id
    )


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    c = make_consortium(tmp_path_factory.mktemp("consortium"))
    try:
        yield c
    finally:
        c.instance.close()
