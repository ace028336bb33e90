"""The whole flow over HTTP JSON-RPC, on a real Hardhat node."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from ledger.anchoring import queue_anchor, verify_member_trail
from ledger.instance import Instance, InstanceConfig
from ledger.keys import LIGHT_SCRYPT_N
from ledger.outbox import Outbox
from tests.conftest import PASSWORD, make_consortium

pytestmark = pytest.mark.hardhat


def test_the_demo_deploys_checks_anchors_and_verifies_on_the_node(
    rpc_url: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--data-dir", str(tmp_path), "--rpc", rpc_url, "--checks", "60"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("trail verified") == 3


def test_a_restart_against_the_node_finds_the_same_deployment(rpc_url: str, tmp_path: Path) -> None:
    consortium = make_consortium(tmp_path, rpc_url=rpc_url)
    deployment = consortium.instance.require_contracts().deployment
    consortium.instance.close()
    config = InstanceConfig(tmp_path, PASSWORD, chain_url=rpc_url, scrypt_n=LIGHT_SCRYPT_N)
    with Instance(config) as again:
        assert again.require_contracts().deployment == deployment


def test_anchors_queued_in_the_outbox_confirm_on_the_node_and_the_trail_verifies(
    rpc_url: str, tmp_path: Path
) -> None:
    consortium = make_consortium(tmp_path, rpc_url=rpc_url)
    instance = consortium.instance
    try:
        keys = consortium.members["CN-A"]
        outbox = Outbox(
            instance.db,
            instance.chain,
            lambda address: keys.account,
            lambda: datetime.now(UTC),
        )
        for round_ in range(3):
            for n in range(4):
                instance.access.check(
                    resource_id=consortium.resource_id,
                    requesting_member="CN-B",
                    patron=f"pseudonym-{round_}-{n}",
                    patron_category="student",
                    purpose="research",
                    method="copy",
                    scope="part",
                    destination_country="CN",
                )
            assert queue_anchor(instance, outbox, "CN-A", keys.account) is not None
            outbox.drain(timeout_s=60)
        instance.sync()
        verified = verify_member_trail(instance, "CN-A", keys.account.address)
        assert (verified.entries, verified.heads, verified.unanchored) == (12, 3, 0)
    finally:
        instance.close()
