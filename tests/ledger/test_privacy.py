"""Patron privacy: per-year pseudonyms, crypto-shredding, and no patron id at rest or in logs."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from typer.testing import CliRunner
from web3 import Web3

from api.app import create_app
from api.cli_privacy import privacy_app
from ledger import keys as keys_module
from ledger.anchoring import anchor_trail, verify_member_trail
from ledger.errors import InvalidInput, NotFound
from ledger.keys import LIGHT_SCRYPT_N, Keystore, PatronKeyDestroyed
from ledger.trail_export import export_trail
from tests.conftest import PASSWORD, Consortium, make_consortium

MID_2026 = datetime(2026, 6, 15, 12, tzinfo=UTC)
AFTER_2025 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DESTROYED = r"patron key for 2025 of CN-A was destroyed on 2026-03-02; pseudonyms of that year "
LINK = "can no longer be linked to patrons"


def _keystore(folder: Path) -> Keystore:
    return Keystore(folder, "correct horse", scrypt_n=LIGHT_SCRYPT_N)


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    ks = _keystore(tmp_path / "keys")
    ks.create("CN-A")
    ks.create("CN-B")
    return ks


def _in(year: int) -> datetime:
    return datetime(year, 6, 1, tzinfo=UTC)


# -- pseudonyms ------------------------------------------------------------------------


def test_a_pseudonym_is_stable_all_year_and_names_its_year(keystore: Keystore) -> None:
    a = keystore.load("CN-A")
    first = a.pseudonym("patron-1", datetime(2026, 1, 1, tzinfo=UTC))
    last = a.pseudonym("patron-1", datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert first == last
    year, mac = first.split(":")
    assert year == "2026"
    assert len(mac) == 64 and int(mac, 16) >= 0
    assert "patron-1" not in first


def test_pseudonyms_differ_across_years_and_across_members(keystore: Keystore) -> None:
    a, b = keystore.load("CN-A"), keystore.load("CN-B")
    in_2025, in_2026 = a.pseudonym("patron-1", _in(2025)), a.pseudonym("patron-1", _in(2026))
    assert in_2025.startswith("2025:") and in_2026.startswith("2026:")
    assert in_2025.split(":")[1] != in_2026.split(":")[1]
    assert a.pseudonym("patron-1", _in(2026)) != b.pseudonym("patron-1", _in(2026))


def test_the_year_of_a_pseudonym_is_the_utc_year(keystore: Keystore) -> None:
    a = keystore.load("CN-A")
    beijing_new_year = datetime(2026, 1, 1, 7, tzinfo=timezone(timedelta(hours=8)))
    assert a.pseudonym("p", beijing_new_year) == a.pseudonym(
        "p", datetime(2025, 12, 31, tzinfo=UTC)
    )


def test_a_naive_request_time_is_refused(keystore: Keystore) -> None:
    with pytest.raises(InvalidInput, match="naive datetime"):
        keystore.load("CN-A").pseudonym("p", datetime(2026, 1, 1))


def test_a_years_key_is_an_owner_only_keystore_file_made_on_first_use(keystore: Keystore) -> None:
    path = keystore.folder / "CN-A.patron-2026.json"
    assert not path.exists()
    pseudonym = keystore.load("CN-A").pseudonym("patron-1", MID_2026)
    doc = json.loads(path.read_text())
    assert (doc["version"], doc["crypto"]["kdf"]) == (3, "scrypt")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Another keystore over the folder (a restart, another process) unlocks the same key.
    assert _keystore(keystore.folder).load("CN-A").pseudonym("patron-1", MID_2026) == pseudonym


def test_concurrent_first_use_of_a_year_by_two_keystores_agrees_on_one_key(
    keystore: Keystore,
) -> None:
    others = [keystore.load("CN-A"), _keystore(keystore.folder).load("CN-A")]
    with ThreadPoolExecutor(max_workers=16) as pool:
        got = set(pool.map(lambda i: others[i % 2].pseudonym("p", _in(2031)), range(32)))
    assert len(got) == 1
    assert [p.name for p in keystore.folder.glob("*2031*")] == ["CN-A.patron-2031.json"]


def test_a_legacy_single_patron_key_becomes_the_key_of_the_year_it_was_written(
    keystore: Keystore,
) -> None:
    legacy_key = os.urandom(32)
    keystore._write("CN-A", "patron", legacy_key)
    legacy = keystore.folder / "CN-A.patron.json"
    written = datetime(2024, 9, 1, tzinfo=UTC).timestamp()
    os.utime(legacy, (written, written))
    a = _keystore(keystore.folder).load("CN-A")
    assert not legacy.exists()
    assert (keystore.folder / "CN-A.patron-2024.json").exists()
    expected = hmac.new(legacy_key, b"patron-1", hashlib.sha256).hexdigest()
    assert a.pseudonym("patron-1", _in(2024)) == f"2024:{expected}"


# -- forgetting ------------------------------------------------------------------------


def test_forgetting_destroys_exactly_the_keys_of_years_that_ended_before_the_date(
    keystore: Keystore,
) -> None:
    a = keystore.load("CN-A")
    for year in (2023, 2024, 2025, 2026):
        a.pseudonym("p", _in(year))
    keystore.load("CN-B").pseudonym("p", _in(2025))
    destroyed = keystore.forget_patron_keys("CN-A", date(2026, 1, 1), now=AFTER_2025)
    assert destroyed == [2023, 2024, 2025]
    left = sorted(p.name for p in keystore.folder.glob("*.patron-*.json"))
    assert left == ["CN-A.patron-2026.json", "CN-A.patron-forgotten.json", "CN-B.patron-2025.json"]
    assert not list(keystore.folder.glob(".*.tmp"))


def test_a_year_ending_on_the_date_itself_is_kept(keystore: Keystore) -> None:
    a = keystore.load("CN-A")
    for year in (2024, 2025):
        a.pseudonym("p", _in(year))
    assert keystore.forget_patron_keys("CN-A", date(2025, 12, 31), now=AFTER_2025) == [2024]
    assert a.pseudonym("p", _in(2025)).startswith("2025:")


def test_a_forgotten_years_pseudonyms_cannot_be_recomputed_even_after_a_restart(
    keystore: Keystore,
) -> None:
    a = keystore.load("CN-A")
    current = a.pseudonym("patron-1", MID_2026)
    a.pseudonym("patron-1", _in(2025))
    keystore.forget_patron_keys("CN-A", date(2026, 1, 1), now=AFTER_2025)
    with pytest.raises(PatronKeyDestroyed, match=DESTROYED + LINK) as info:
        a.pseudonym("patron-1", _in(2025))
    assert info.value.year == 2025
    restarted = _keystore(keystore.folder).load("CN-A")
    with pytest.raises(PatronKeyDestroyed, match=DESTROYED + LINK):
        restarted.pseudonym("patron-1", _in(2025))
    # A year that never had a key is not given one either.
    with pytest.raises(PatronKeyDestroyed, match=f"patron key for 2019 of CN-A .*{LINK}"):
        restarted.pseudonym("patron-1", _in(2019))
    assert not (keystore.folder / "CN-A.patron-2019.json").exists()
    assert restarted.pseudonym("patron-1", MID_2026) == current


def test_a_key_forgotten_by_another_process_stops_being_used_after_revalidation(
    keystore: Keystore, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = keystore.load("CN-A")
    server.pseudonym("p", _in(2025))  # unlocked and kept in the server's memory
    _keystore(keystore.folder).forget_patron_keys("CN-A", date(2026, 1, 1), now=AFTER_2025)
    monkeypatch.setattr(keys_module, "REVALIDATE_SECONDS", 0.0)
    with pytest.raises(PatronKeyDestroyed, match=LINK):
        server.pseudonym("p", _in(2025))


def test_a_destroyed_key_file_is_overwritten_before_it_is_unlinked(keystore: Keystore) -> None:
    keystore.load("CN-A").pseudonym("p", _in(2025))
    path = keystore.folder / "CN-A.patron-2025.json"
    before = path.read_bytes()
    witness = keystore.folder.parent / "witness"
    os.link(path, witness)  # a second name for the same inode sees what happens to its bytes
    keystore.forget_patron_keys("CN-A", date(2026, 1, 1), now=AFTER_2025)
    after = witness.read_bytes()
    assert len(after) == len(before)
    assert after != before and b"scrypt" not in after


def test_forgetting_up_to_a_future_date_is_refused(keystore: Keystore) -> None:
    with pytest.raises(InvalidInput, match="in the future"):
        keystore.forget_patron_keys("CN-A", date(2027, 1, 1), now=AFTER_2025)


def test_forgetting_for_an_unknown_member_is_not_found(keystore: Keystore) -> None:
    with pytest.raises(NotFound, match="no keys for CN-NONE"):
        keystore.forget_patron_keys("CN-NONE", date(2026, 1, 1), now=AFTER_2025)


# -- the trail after forgetting ----------------------------------------------------------


def _check(c: Consortium, patron: str, **overrides: str) -> None:
    fields = {
        "resource_id": c.resource_id,
        "requesting_member": "CN-B",
        "patron": patron,
        "patron_category": "faculty",
        "purpose": "research",
        "method": "copy",
        "scope": "part",
        "destination_country": "CN",
    }
    c.instance.access.check(**(fields | overrides))


def test_the_trail_still_verifies_after_last_years_patron_keys_are_destroyed(
    tmp_path: Path, database_url: str | None
) -> None:
    c = make_consortium(tmp_path, database_url=database_url)
    try:
        now = c.instance.clock()
        last_year = datetime(now.year - 1, 6, 1, tzinfo=UTC)
        b = c.members["CN-B"]
        old = b.pseudonym("patron-1", last_year)
        _check(c, old)  # stands for a decision recorded last year
        _check(c, b.pseudonym("patron-1", now))
        account = c.members["CN-A"].account
        anchor_trail(c.instance, "CN-A", account)

        destroyed = c.instance.keystore.forget_patron_keys("CN-B", date(now.year, 1, 1))

        assert destroyed == [now.year - 1]
        with pytest.raises(PatronKeyDestroyed, match=LINK):
            b.pseudonym("patron-1", last_year)
        report = verify_member_trail(c.instance, "CN-A", account.address)
        assert (report.entries, report.unanchored) == (2, 0)
        bodies = [json.loads(row.body) for row in c.instance.access.trail("CN-A").entries()]
        assert bodies[0]["patron"] == old  # still there, now unlinkable
        _check(c, b.pseudonym("patron-1", now))  # this year's checks go on
        anchor_trail(c.instance, "CN-A", account)
        assert verify_member_trail(c.instance, "CN-A", account.address).entries == 3
    finally:
        c.instance.close()


# -- no patron id anywhere ---------------------------------------------------------------

PATRONS = ("PATRON-7f3e-alice@example.edu", "PATRON-9c1d-bob@example.edu")


def _needles(patron_id: str) -> list[bytes]:
    raw = patron_id.encode()
    return [
        raw.lower(),
        raw.hex().encode(),  # as it would sit in hex calldata or a hex column
        patron_id.encode("utf-16-le").lower(),
        hashlib.sha256(raw).hexdigest().encode(),  # an unkeyed hash would be linkable too
    ]


def _leaks(haystacks: dict[str, bytes]) -> list[str]:
    return [
        f"{patron} in {where}"
        for where, data in haystacks.items()
        for patron in PATRONS
        for needle in _needles(patron)
        if needle in data.lower()
    ]


def _files(data_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(data_dir)): p.read_bytes() for p in data_dir.rglob("*") if p.is_file()
    }


def _rows(instance: Any) -> bytes:
    """Every value of every row of every table, as stored (bytes) or as text."""
    engine = instance.db.engine
    parts: list[bytes] = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                parts.extend(v if isinstance(v, bytes) else str(v).encode() for v in row)
    return b"\n".join(parts)


def _chain_data(instance: Any) -> bytes:
    """Every transaction's input and every log's topics and data, block 0 to head."""
    w3 = instance.chain.w3
    parts: list[bytes] = []
    for number in range(int(w3.eth.block_number) + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            parts.append(bytes(tx["input"] if "input" in tx else tx["data"]))  # eth-tester: data
            for log in w3.eth.get_transaction_receipt(tx["hash"])["logs"]:
                parts.extend(bytes(t) for t in log["topics"])
                parts.append(bytes(log["data"]))
    return b"\n".join(parts)


def test_no_patron_id_is_on_disk_on_chain_in_logs_or_in_the_export(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, database_url: str | None
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "fastapi", "httpx", "ledger"):
        caplog.set_level(logging.DEBUG, logger=name)
    data_dir = tmp_path / "data"
    c = make_consortium(data_dir, database_url=database_url)
    now = c.instance.clock()
    for patron in PATRONS:
        _check(c, c.members["CN-B"].pseudonym(patron, now))
        _check(c, c.members["CN-B"].pseudonym(patron, now), scope="whole")
    anchor_trail(c.instance, "CN-A", c.members["CN-A"].account)
    config = c.instance.config
    c.instance.close()

    app = create_app(config)
    with TestClient(app) as client:
        instance = app.state.instance
        token, _ = instance.apikeys.create("CN-B", "delivery")
        headers = {"Authorization": f"Bearer {token}"}
        body = {
            "resource_id": c.resource_id,
            "requesting_member": "CN-B",
            "patron_category": "faculty",
            "purpose": "research",
            "method": "copy",
            "scope": "part",
            "destination_country": "CN",
        }
        for patron in PATRONS:
            ok = client.post("/v1/access/check", json=body | {"patron_id": patron}, headers=headers)
            assert ok.status_code == 200, ok.text
            denied = client.post(
                "/v1/access/check",
                json=body | {"patron_id": patron, "purpose": "commercial"},
                headers=headers,
            )
            assert denied.json()["reason"] == "purpose_not_allowed"
            invalid = client.post(
                "/v1/access/check",
                json=body | {"patron_id": patron, "scope": "all"},
                headers=headers,
            )
            assert invalid.status_code == 422
        anchor_trail(instance, "CN-A", instance.member_keys("CN-A").account)
        export = io.StringIO()
        assert export_trail(instance, "CN-A", export) == 8  # 4 direct, 4 over HTTP
        chain = _chain_data(instance)
        anchor_selector = bytes(Web3.keccak(text="anchor(uint64,bytes32,bytes32[])")[:4])
        assert anchor_selector in chain  # the scan reached the anchoring transactions
        open_files = _files(data_dir)  # with the SQLite WAL and SHM files in place
        rows = _rows(instance)  # on PostgreSQL the database is on the server, not on disk here
        pseudonym = instance.member_keys("CN-B").pseudonym(PATRONS[0], instance.clock())
    closed_files = _files(data_dir)

    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)  # logs captured
    assert pseudonym in export.getvalue()  # what is recorded is the pseudonym...
    db = b"".join(data for name, data in open_files.items() if name.startswith("libshare.sqlite"))
    if database_url is None:
        assert pseudonym.encode() in db  # ...and the scan of the database sees recorded text
        assert "libshare.sqlite" in open_files
    assert pseudonym.encode() in rows  # ...and so does the scan of every row
    assert "chain.sqlite" in open_files
    assert any(name.startswith("keys/") for name in open_files)
    assert any(name.startswith("blocks/") for name in open_files)
    logs = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    haystacks = {
        "the chain": chain,
        "the logs": logs.encode(),
        "the export": export.getvalue().encode(),
        "the database's rows": rows,
        **{f"{name} (open)": data for name, data in open_files.items()},
        **{f"{name} (closed)": data for name, data in closed_files.items()},
    }
    assert _leaks(haystacks) == []


# -- the command line --------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Keystore:
    monkeypatch.setenv("LIBSHARE_KEYSTORE_PASSWORD", PASSWORD)
    monkeypatch.setenv("LIBSHARE_DATA_DIR", str(tmp_path / "data"))
    ks = Keystore(tmp_path / "data" / "keys", PASSWORD, scrypt_n=LIGHT_SCRYPT_N)
    this_year = datetime.now(UTC).year
    for lib in ("CN-A", "CN-B"):
        keys = ks.create(lib)
        for year in (this_year - 2, this_year - 1, this_year):
            keys.pseudonym("p", _in(year))
    return ks


def test_forget_patrons_destroys_past_years_of_every_member_once_confirmed(
    cli_env: Keystore,
) -> None:
    year = datetime.now(UTC).year
    result = CliRunner().invoke(
        privacy_app, ["forget-patrons", "--before", f"{year}-01-01"], input="y\n"
    )
    assert result.exit_code == 0, result.output
    for lib in ("CN-A", "CN-B"):
        assert f"{lib}: destroyed {year - 2}, {year - 1}" in result.output
        assert cli_env.patron_years(lib) == [year]


def test_forget_patrons_does_nothing_when_not_confirmed(cli_env: Keystore) -> None:
    year = datetime.now(UTC).year
    result = CliRunner().invoke(
        privacy_app, ["forget-patrons", "--before", f"{year}-01-01"], input="n\n"
    )
    assert result.exit_code == 1
    assert cli_env.patron_years("CN-A") == [year - 2, year - 1, year]


def test_forget_patrons_for_one_member_with_yes_asks_nothing(cli_env: Keystore) -> None:
    year = datetime.now(UTC).year
    args = ["forget-patrons", "--before", f"{year - 1}-06-30", "--member", "CN-B", "--yes"]
    result = CliRunner().invoke(privacy_app, args)
    assert result.exit_code == 0, result.output
    assert f"CN-B: destroyed {year - 2}" in result.output
    assert cli_env.patron_years("CN-A") == [year - 2, year - 1, year]
    assert cli_env.patron_years("CN-B") == [year - 1, year]


@pytest.mark.parametrize("bad", ["2026-13-01", "01/02/2026", "yesterday", "20260101"])
def test_forget_patrons_with_a_bad_date_says_so_in_one_line_and_exits_2(
    cli_env: Keystore, bad: str
) -> None:
    result = CliRunner().invoke(privacy_app, ["forget-patrons", "--before", bad, "--yes"])
    assert result.exit_code == 2
    assert "is not a date" in result.output and "YYYY-MM-DD" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_forget_patrons_refuses_a_date_in_the_future(cli_env: Keystore) -> None:
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    result = CliRunner().invoke(
        privacy_app, ["forget-patrons", "--before", tomorrow.isoformat(), "--yes"]
    )
    assert result.exit_code == 2
    assert "in the future" in result.output


def test_forget_patrons_for_an_unknown_member_exits_1(cli_env: Keystore) -> None:
    year = datetime.now(UTC).year
    args = ["forget-patrons", "--before", f"{year}-01-01", "--member", "CN-NONE", "--yes"]
    result = CliRunner().invoke(privacy_app, args)
    assert result.exit_code == 1
    assert "no keys for CN-NONE" in result.output
