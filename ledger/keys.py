"""Keys at rest: Ethereum keystore v3 files (scrypt + AES-128-CTR) in the data dir.

A member library holds three secrets: its chain account key, which signs every write to
the consortium contracts; its patron key, under which patron ids become HMAC-SHA-256
pseudonyms; and its key-encryption key (KEK), which wraps the data key of each restricted
resource it stores. Each is 32 random bytes kept as a keystore v3 file, so the same
well-known format (and tooling) protects them. Deleting a patron key file makes that
member's pseudonyms unlinkable (crypto-shredding) while the trail still verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keyfile.keyfile import create_keyfile_json, decode_keyfile_json

from ledger.errors import ConfigError, InvalidInput, NotFound, PermissionDenied
from ledger.types import PatronPseudonym

STANDARD_SCRYPT_N = 1 << 18
"""geth's standard scrypt cost: about a second to unlock, for production keys."""

LIGHT_SCRYPT_N = 1 << 12
"""geth's light scrypt cost, used only by the embedded demo so it starts in seconds."""


@dataclass(frozen=True)
class MemberKeys:
    """A member's unlocked secrets: its chain account and its patron pseudonym key."""

    library_id: str
    account: LocalAccount
    patron_key: bytes
    kek: bytes

    def pseudonym(self, patron_id: str) -> PatronPseudonym:
        """HMAC-SHA-256 of ``patron_id`` under this member's patron key, in hex."""
        if not patron_id:
            raise InvalidInput("patron id is empty", hint="send the patron's local id")
        mac = hmac.new(self.patron_key, patron_id.encode("utf-8"), hashlib.sha256)
        return PatronPseudonym(mac.hexdigest())


class Keystore:
    """The folder of keystore v3 files: ``<library>.account.json``, ``<library>.patron.json``."""

    def __init__(self, folder: Path, password: str, *, scrypt_n: int = STANDARD_SCRYPT_N):
        if not password:
            raise ConfigError(
                "the keystore password is empty",
                hint="set LIBSHARE_KEYSTORE_PASSWORD (keys at rest are always encrypted)",
            )
        self.folder = folder
        self._password = password
        self._scrypt_n = scrypt_n

    def create(self, library_id: str) -> MemberKeys:
        """Make a new account key and patron key for ``library_id`` and save both encrypted."""
        _check_library_id(library_id)
        if self._path(library_id, "account").exists():
            raise InvalidInput(
                f"keys for {library_id} already exist in {self.folder}",
                hint="use them (they are loaded automatically) or choose another library id",
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        account_key = secrets.token_bytes(32)
        patron_key = secrets.token_bytes(32)
        kek = secrets.token_bytes(32)
        self._write(library_id, "account", account_key)
        self._write(library_id, "patron", patron_key)
        self._write(library_id, "kek", kek)
        return MemberKeys(library_id, Account.from_key(account_key), patron_key, kek)

    def load(self, library_id: str) -> MemberKeys:
        """Unlock the keys of ``library_id``."""
        _check_library_id(library_id)
        account_key = self._read(library_id, "account")
        patron_key = self._read(library_id, "patron")
        if not self._path(library_id, "kek").exists():
            # Data dirs made before content encryption: give the member its KEK now.
            self._write(library_id, "kek", secrets.token_bytes(32))
        kek = self._read(library_id, "kek")
        return MemberKeys(library_id, Account.from_key(account_key), patron_key, kek)

    def load_or_create(self, library_id: str) -> MemberKeys:
        if self._path(library_id, "account").exists():
            return self.load(library_id)
        return self.create(library_id)

    def library_ids(self) -> list[str]:
        """Library ids that have an account key here."""
        return sorted(
            p.name.removesuffix(".account.json") for p in self.folder.glob("*.account.json")
        )

    def _path(self, library_id: str, kind: str) -> Path:
        return self.folder / f"{library_id}.{kind}.json"

    def _write(self, library_id: str, kind: str, secret: bytes) -> None:
        keyfile = create_keyfile_json(
            secret, self._password.encode(), kdf="scrypt", iterations=self._scrypt_n
        )
        path = self._path(library_id, kind)
        tmp = path.with_suffix(".tmp")
        # Owner-only permissions from the first byte written.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(keyfile, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _read(self, library_id: str, kind: str) -> bytes:
        path = self._path(library_id, kind)
        try:
            keyfile = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise NotFound(
                f"no {kind} key for {library_id} in {self.folder}",
                hint="create it with the member's admission, or restore the keystore file",
            ) from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"the keystore file {path} is unreadable ({exc})") from exc
        try:
            return bytes(decode_keyfile_json(keyfile, self._password.encode()))
        except ValueError as exc:
            raise PermissionDenied(
                f"cannot unlock {path}: wrong password or damaged file",
                hint="check LIBSHARE_KEYSTORE_PASSWORD",
            ) from exc


def _check_library_id(library_id: str) -> None:
    # ISIL-like: letters, digits, '-', ':' and '/'; used in file names, so no dots or slashes.
    if (
        not library_id
        or len(library_id) > 64
        or not all(c.isalnum() or c in "-_:" for c in library_id)
    ):
        raise InvalidInput(
            f"library id {library_id!r} is not ISIL-like",
            hint="use letters, digits and '-', e.g. CN-XJTU",
        )
