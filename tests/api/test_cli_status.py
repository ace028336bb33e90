"""`libshare status`: chain, index lag, outbox depth, store and anchors; exit 1 on trouble."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from ledger.anchoring import anchor_trail
from ledger.outbox import OutboxRow, OutboxState
from ledger.store import Database
from tests.conftest import PASSWORD, make_consortium, record_checks

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    c = make_consortium(tmp_path)
    try:
        record_checks(c, 5)
        anchor_trail(c.instance, "CN-A", c.members["CN-A"].account)
        record_checks(c, 2, start=5)
    finally:
        c.instance.close()
    return c.instance.config.data_dir


def _status(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["status", "--data-dir", str(data_dir), *args],
        env={"LIBSHARE_KEYSTORE_PASSWORD": PASSWORD, "COLUMNS": "200"},
    )
    return result.exit_code, result.output


def test_a_healthy_instance_shows_its_trails_and_what_is_not_yet_anchored(data_dir: Path) -> None:
    code, out = _status(data_dir)
    assert code == 0, out
    assert "embedded chain" in out and "(0 behind)" in out
    assert "CN-A" in out and "all well" in out
    code, out = _status(data_dir, "--json")
    body = json.loads(out)
    assert code == 0
    assert body["index_lag"] == 0 and body["outbox_depth"] == 0 and body["problems"] == []
    [trail] = body["trails"]
    assert (trail["library_id"], trail["entries"], trail["anchored_size"]) == ("CN-A", 7, 5)


def test_a_failed_chain_write_needs_attention(data_dir: Path) -> None:
    db = Database.sqlite(data_dir / "libshare.sqlite")
    now = datetime.now(UTC)
    with db.session() as session:
        session.add(
            OutboxRow(
                kind="anchor", idempotency_key="anchor:x:0:1", sender="0x" + "11" * 20,
                target="0x" + "22" * 20, calldata="0x", state=OutboxState.FAILED,
                next_attempt_at=now, created_at=now, updated_at=now, last_error="reverted",
            )
        )  # fmt: skip
    db.close()
    code, out = _status(data_dir)
    assert code == 1
    assert "1 chain writes failed" in out
