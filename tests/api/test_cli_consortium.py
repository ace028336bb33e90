"""The consortium set-up commands refuse bad input in one line; the full flow runs in
tests/federation/ against a Hardhat node."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner
from web3 import Web3

from api.cli import app

runner = CliRunner()
ENV = {"LIBSHARE_KEYSTORE_PASSWORD": "cli-consortium-test", "LIBSHARE_PEERS_FILE": None}


def test_init_creates_the_key_once_and_prints_its_account(tmp_path: Path) -> None:
    first = runner.invoke(app, ["init", "--library", "CN-A", "--data-dir", str(tmp_path)], env=ENV)
    assert first.exit_code == 0, first.output
    account = first.stdout.strip()
    assert Web3.is_checksum_address(account)
    assert (tmp_path / "keys" / "CN-A.account.json").exists()
    again = runner.invoke(app, ["init", "--library", "CN-A", "--data-dir", str(tmp_path)], env=ENV)
    assert again.exit_code == 0 and again.stdout.strip() == account
    assert "keys already exist" in again.stderr


def test_init_refuses_a_library_id_that_is_not_isil_like(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["init", "--library", "CN A/../x", "--data-dir", str(tmp_path)], env=ENV
    )
    assert result.exit_code == 1 and "is not ISIL-like" in result.stderr


def test_deploy_refuses_a_malformed_founder(tmp_path: Path) -> None:
    for founder, message in [
        ("CN-A", "is not ID=ACCOUNT[:TIER[:COUNTRY]]"),
        ("CN-A=0x1234", "is not an account address"),
        (f"CN-A={'0x' + '11' * 20}:first", "tier 'first' is not a number"),
    ]:
        result = runner.invoke(
            app,
            ["consortium", "deploy", "--founder", founder, "--data-dir", str(tmp_path)],
            env=ENV,
        )
        assert result.exit_code == 1, result.output
        assert message in result.stderr


def test_peers_set_writes_the_file_and_refuses_what_is_not_a_url(tmp_path: Path) -> None:
    ok = runner.invoke(
        app, ["peers", "set", "CN-A", "http://127.0.0.1:8101/", "--data-dir", str(tmp_path)],
        env=ENV,
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "peers.json").read_text()) == {"CN-A": "http://127.0.0.1:8101"}
    bad = runner.invoke(
        app, ["peers", "set", "CN-B", "libshare.b.example", "--data-dir", str(tmp_path)], env=ENV
    )
    assert bad.exit_code == 2 and "not an http(s) URL" in bad.stderr
    assert json.loads((tmp_path / "peers.json").read_text()) == {"CN-A": "http://127.0.0.1:8101"}


def test_reconcile_without_a_chain_cannot_verify(tmp_path: Path) -> None:
    deployment = tmp_path / "deployment.json"
    deployment.write_text(
        json.dumps(
            {
                "chain_id": 31337,
                "block": 1,
                "addresses": {
                    name: "0x" + "11" * 20
                    for name in ("Consortium", "LicenceRegistry", "ResourceRegistry", "TrailAnchor")
                },
            }
        )
    )
    result = runner.invoke(
        app,
        ["audit", "reconcile", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"),
         "--rpc", "http://127.0.0.1:9", "--deployment", str(deployment)],
        env={"LIBSHARE_KEYSTORE_PASSWORD": None},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "could not verify" in result.stderr
