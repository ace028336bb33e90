"""`libshare demo` runs the whole path for real and verifies every trail against the chain."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.settings import DEMO_PASSWORD
from ledger.instance import Instance, InstanceConfig
from ledger.keys import LIGHT_SCRYPT_N

runner = CliRunner()


@pytest.fixture(scope="module")
def env(module_database_url: str | None) -> dict[str, str]:
    """The environment of the module's demo runs: its database, SQLite or PostgreSQL."""
    return {"LIBSHARE_DATABASE_URL": module_database_url} if module_database_url else {}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    data_dir = tmp_path_factory.mktemp("demo")
    result = runner.invoke(app, ["demo", "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.output
    return data_dir


def _open(data_dir: Path, env: dict[str, str]) -> Instance:
    return Instance(
        InstanceConfig(
            data_dir,
            DEMO_PASSWORD,
            database_url=env.get("LIBSHARE_DATABASE_URL"),
            scrypt_n=LIGHT_SCRYPT_N,
        )
    )


def test_demo_verifies_the_trail_of_each_of_the_three_members(
    demo_dir: Path, env: dict[str, str]
) -> None:
    with _open(demo_dir, env) as instance:
        contracts = instance.require_contracts()
        for library_id in ("CN-XJTU", "CN-LZU", "CN-NWU"):
            trail = instance.access.trail(library_id)
            size, root = contracts.head_of(instance.keystore.load(library_id).account.address)
            assert size == trail.head().size > 0
            assert root == trail.head().root


def test_demo_decisions_include_allows_and_denials_with_real_reasons(
    demo_dir: Path, env: dict[str, str]
) -> None:
    with _open(demo_dir, env) as instance:
        reasons: set[str] = set()
        total = 0
        for library_id in ("CN-XJTU", "CN-LZU", "CN-NWU"):
            for row in instance.access.trail(library_id).entries():
                reasons.add(json.loads(row.body)["reason"])
                total += 1
    assert total == 200
    assert {"allowed", "limit_exceeded", "purpose_not_allowed", "no_licence"} <= reasons


def test_demo_trail_entries_hold_no_patron_ids(demo_dir: Path, env: dict[str, str]) -> None:
    if env:  # on PostgreSQL: every stored entry, as the server returns it
        with _open(demo_dir, env) as instance:
            raw = b"".join(
                row.body
                for library_id in ("CN-XJTU", "CN-LZU", "CN-NWU")
                for row in instance.access.trail(library_id).entries()
            )
        assert b'"patron":"' in raw
    else:
        raw = (demo_dir / "libshare.sqlite").read_bytes()
    assert b"-patron-" not in raw


def test_a_restart_keeps_contract_addresses_and_block_hashes(
    demo_dir: Path, env: dict[str, str]
) -> None:
    with _open(demo_dir, env) as instance:
        before = instance.require_contracts().deployment
        head = instance.chain.w3.eth.get_block("latest")
    with _open(demo_dir, env) as instance:
        assert instance.require_contracts().deployment == before
        again = instance.chain.w3.eth.get_block(head["number"])
        assert again["hash"] == head["hash"]
        assert instance.require_contracts().is_member(
            instance.keystore.load("CN-NWU").account.address
        )


def test_demo_on_an_existing_consortium_reuses_it_and_verifies_again(
    demo_dir: Path, env: dict[str, str]
) -> None:
    result = runner.invoke(app, ["demo", "--data-dir", str(demo_dir), "--checks", "30"], env=env)
    assert result.exit_code == 0, result.output
    assert "Reusing the consortium" in result.output
    assert result.output.count("trail verified") == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_rpc_gives_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = runner.invoke(app, ["demo", "--data-dir", str(tmp_path), "--rpc", url])
    assert result.exit_code == 2
    assert "cannot reach the JSON-RPC node" in result.output
    assert "Traceback" not in result.output


def test_corrupt_data_dir_gives_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "chain.sqlite").write_bytes(b"garbage" * 1000)
    result = runner.invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "chain.sqlite is unreadable" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_database_gives_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://libshare@127.0.0.1:{_free_port()}/libshare"
    result = runner.invoke(
        app, ["demo", "--data-dir", str(tmp_path)], env={"LIBSHARE_DATABASE_URL": url}
    )
    assert result.exit_code == 2
    assert "cannot reach the database postgresql+psycopg://***@127.0.0.1:" in result.output
    assert "check that the server is running" in result.output
    assert "Traceback" not in result.output


def test_a_deployment_without_its_chain_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deployment.json").write_text("{}")
    result = runner.invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "chain file chain.sqlite is missing" in result.output
