"""Keys at rest are keystore v3 files; pseudonyms are HMACs under the patron key."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.errors import ConfigError, InvalidInput, NotFound, PermissionDenied
from ledger.keys import LIGHT_SCRYPT_N, Keystore

AT = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keys", "correct horse", scrypt_n=LIGHT_SCRYPT_N)


def test_created_keys_are_encrypted_keystore_v3_files_readable_only_by_owner(
    keystore: Keystore,
) -> None:
    keys = keystore.create("CN-XJTU")
    path = keystore.folder / "CN-XJTU.account.json"
    doc = json.loads(path.read_text())
    assert doc["version"] == 3
    assert doc["crypto"]["kdf"] == "scrypt"
    assert keys.account.key.hex()[2:] not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_loaded_keys_equal_created_keys(keystore: Keystore) -> None:
    created = keystore.create("CN-XJTU")
    loaded = keystore.load("CN-XJTU")
    assert loaded.account.address == created.account.address
    assert loaded.pseudonym("p-1", AT) == created.pseudonym("p-1", AT)


def test_wrong_password_is_refused(keystore: Keystore, tmp_path: Path) -> None:
    keystore.create("CN-XJTU")
    other = Keystore(keystore.folder, "wrong", scrypt_n=LIGHT_SCRYPT_N)
    with pytest.raises(PermissionDenied, match="wrong password"):
        other.load("CN-XJTU")


def test_empty_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="password is empty"):
        Keystore(tmp_path, "")


def test_missing_keys_are_not_found(keystore: Keystore) -> None:
    with pytest.raises(NotFound, match="no account key for CN-NONE"):
        keystore.load("CN-NONE")


def test_library_id_that_is_not_isil_like_is_refused(keystore: Keystore) -> None:
    with pytest.raises(InvalidInput, match="not ISIL-like"):
        keystore.create("../etc/passwd")


def test_pseudonym_is_stable_per_member_and_differs_between_members(keystore: Keystore) -> None:
    a = keystore.create("CN-A")
    b = keystore.create("CN-B")
    assert a.pseudonym("patron-1", AT) == a.pseudonym("patron-1", AT)
    assert a.pseudonym("patron-1", AT) != b.pseudonym("patron-1", AT)
    assert "patron-1" not in a.pseudonym("patron-1", AT)
    assert len(a.pseudonym("patron-1", AT)) == len("2026:") + 64
