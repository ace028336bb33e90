"""Keys at rest: Ethereum keystore v3 files (scrypt + AES-128-CTR) in the data dir.

A member library holds three kinds of secret: its chain account key, which signs every
write to the consortium contracts; its patron keys, under which patron ids become
HMAC-SHA-256 pseudonyms; and its key-encryption key (KEK), which wraps the data key of
each restricted resource it stores. Each is 32 random bytes kept as a keystore v3 file,
so the same well-known format (and tooling) protects them::

    <library>.account.json            the chain account key
    <library>.kek.json                the key-encryption key
    <library>.patron-<YYYY>.json      the patron key of calendar year YYYY (UTC)
    <library>.patron-forgotten.json   which patron years were destroyed, and when (no secret)

Patron keys are per calendar year, created on first use for that year. A pseudonym
(``"2026:" + hex HMAC``) names its year; it is stable within the year, so the
calendar-year limits keep counting a patron, and unlinkable across years.
:meth:`Keystore.forget_patron_keys` destroys the keys of years that have ended
(crypto-shredding): their pseudonyms stay in the trail, which still verifies, but can no
longer be linked to a patron id. A limit whose window outlives a calendar year (a
campaign across 31 December, a rolling window) sees a patron as two subjects.

Migration: a data dir made before per-year keys has one ``<library>.patron.json``. It is
renamed, unchanged, to the key of the year it was written (its mtime, UTC) the first
time the member's keys are loaded.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keyfile.keyfile import create_keyfile_json, decode_keyfile_json

from ledger.errors import ConfigError, Conflict, InvalidInput, NotFound, PermissionDenied
from ledger.types import PatronPseudonym

STANDARD_SCRYPT_N = 1 << 18
"""geth's standard scrypt cost: about a second to unlock, for production keys."""

LIGHT_SCRYPT_N = 1 << 12
"""geth's light scrypt cost, used only by the embedded demo so it starts in seconds."""

REVALIDATE_SECONDS = 10.0
"""How long an unlocked patron key is used before checking its file still exists.

Another process (``libshare privacy forget-patrons`` next to ``libshare serve``) may
destroy a year's key; a server stops using it at most this long afterwards.
"""

_FORGOTTEN = "patron-forgotten"


class PatronKeyDestroyed(Conflict):
    """The patron key of ``year`` was destroyed: that year's pseudonyms cannot be recomputed."""

    title = "Patron key destroyed"

    def __init__(self, library_id: str, year: int, destroyed_on: str) -> None:
        super().__init__(
            f"patron key for {year} of {library_id} was destroyed on {destroyed_on}; "
            "pseudonyms of that year can no longer be linked to patrons",
            hint="pseudonymise only requests made in a year whose key still exists",
        )
        self.library_id = library_id
        self.year = year
        self.destroyed_on = destroyed_on


@dataclass(frozen=True)
class MemberKeys:
    """A member's unlocked secrets: its chain account, its KEK, and its patron keys.

    Patron keys are fetched per year from ``keystore``, which unlocks each once and keeps it.
    """

    library_id: str
    account: LocalAccount
    kek: bytes
    keystore: Keystore = field(repr=False, compare=False)

    def pseudonym(self, patron_id: str, at: datetime) -> PatronPseudonym:
        """``"<year>:"`` + hex HMAC-SHA-256 of ``patron_id`` under the patron key of ``at``'s year.

        ``at`` is the time of the request (timezone-aware; its year is taken in UTC, as the
        calendar-year limits take it). Raises :class:`PatronKeyDestroyed` for a year whose
        key was forgotten.
        """
        if not patron_id:
            raise InvalidInput("patron id is empty", hint="send the patron's local id")
        year = utc_year(at)
        key = self.keystore.patron_key(self.library_id, year)
        mac = hmac.digest(key, patron_id.encode("utf-8"), "sha256")
        return PatronPseudonym(f"{year:04d}:{mac.hex()}")


def utc_year(at: datetime) -> int:
    """The calendar year (UTC) of a timezone-aware datetime."""
    if at.tzinfo is UTC:
        return at.year
    if at.utcoffset() is None:
        raise InvalidInput("request time is a naive datetime", hint="give it a timezone")
    return at.astimezone(UTC).year


@dataclass(frozen=True)
class _Forgotten:
    """``<library>.patron-forgotten.json``: years before ``before_year`` are forgotten."""

    before_year: int
    forgotten_on: str  # when before_year was last raised (ISO 8601, UTC)
    destroyed: dict[int, str]  # year -> when its key file was destroyed

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> _Forgotten:
        destroyed = {int(y): str(when) for y, when in dict(doc["destroyed"]).items()}
        return cls(int(doc["before_year"]), str(doc["forgotten_on"]), destroyed)

    def to_json(self) -> dict[str, object]:
        return {
            "version": 1,
            "before_year": self.before_year,
            "forgotten_on": self.forgotten_on,
            "destroyed": {str(y): when for y, when in sorted(self.destroyed.items())},
        }


@dataclass(frozen=True)
class _Unlocked:
    key: bytes
    path: Path
    checked: float  # time.monotonic() when the file was last seen


class Keystore:
    """The folder of keystore v3 files of the members this instance serves.

    Unlocked patron keys are kept in memory, shared by every :class:`MemberKeys` loaded
    from this keystore; creating, migrating and destroying key files happen under a lock
    (and key files are created with an exclusive link, so two processes agree on a year's key).
    """

    def __init__(self, folder: Path, password: str, *, scrypt_n: int = STANDARD_SCRYPT_N):
        if not password:
            raise ConfigError(
                "the keystore password is empty",
                hint="set LIBSHARE_KEYSTORE_PASSWORD (keys at rest are always encrypted)",
            )
        self.folder = folder
        self._password = password
        self._scrypt_n = scrypt_n
        self._lock = threading.Lock()
        self._patron_keys: dict[tuple[str, int], _Unlocked] = {}

    # -- member keys -----------------------------------------------------------------

    def create(self, library_id: str) -> MemberKeys:
        """Make a new account key and KEK for ``library_id`` and save both encrypted.

        Patron keys are made on first use, one per calendar year.
        """
        _check_library_id(library_id)
        if self._path(library_id, "account").exists():
            raise InvalidInput(
                f"keys for {library_id} already exist in {self.folder}",
                hint="use them (they are loaded automatically) or choose another library id",
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        account_key = secrets.token_bytes(32)
        kek = secrets.token_bytes(32)
        self._write(library_id, "account", account_key)
        self._write(library_id, "kek", kek)
        return MemberKeys(library_id, Account.from_key(account_key), kek, self)

    def load(self, library_id: str) -> MemberKeys:
        """Unlock the keys of ``library_id`` (patron keys are unlocked when first used)."""
        _check_library_id(library_id)
        account_key = self._read(library_id, "account")
        if not self._path(library_id, "kek").exists():
            # Data dirs made before content encryption: give the member its KEK now.
            self._write(library_id, "kek", secrets.token_bytes(32))
        kek = self._read(library_id, "kek")
        with self._lock:
            self._migrate_legacy_patron_key(library_id)
        return MemberKeys(library_id, Account.from_key(account_key), kek, self)

    def load_or_create(self, library_id: str) -> MemberKeys:
        if self._path(library_id, "account").exists():
            return self.load(library_id)
        return self.create(library_id)

    def library_ids(self) -> list[str]:
        """Library ids that have an account key here."""
        return sorted(
            p.name.removesuffix(".account.json") for p in self.folder.glob("*.account.json")
        )

    # -- patron keys -----------------------------------------------------------------

    def patron_key(self, library_id: str, year: int) -> bytes:
        """The patron key of ``library_id`` for calendar ``year``, created if it has none yet.

        Raises :class:`PatronKeyDestroyed` when that year was forgotten.
        """
        unlocked = self._patron_keys.get((library_id, year))
        if unlocked is not None and time.monotonic() - unlocked.checked < REVALIDATE_SECONDS:
            return unlocked.key
        with self._lock:
            return self._patron_key_locked(library_id, year)

    def patron_years(self, library_id: str) -> list[int]:
        """The years for which ``library_id`` has a patron key file."""
        _check_library_id(library_id)
        with self._lock:
            self._require_member(library_id)
            self._migrate_legacy_patron_key(library_id)
            return sorted(self._year_files(library_id))

    def forget_patron_keys(
        self, library_id: str, before: date, *, now: datetime | None = None
    ) -> list[int]:
        """Destroy the patron keys of every year that ended before ``before``; return those years.

        Year Y is forgotten when 31 December of Y is earlier than ``before``, that is when
        Y < ``before.year``; from then on no key is made for it again. The forgetting is
        recorded first (so an interrupted run still refuses those years, and running it again
        finishes the job); then each key file is overwritten, fsynced and unlinked, and the
        folder fsynced. Copies elsewhere (backups, snapshots, a copy-on-write filesystem's
        old blocks) are not reached: keep patron key files out of backups kept longer than
        the retention period.

        ``now`` (default: the current time) bounds ``before``: a date in the future would
        destroy the key of a year still running.
        """
        _check_library_id(library_id)
        now = now or datetime.now(UTC)
        if now.utcoffset() is None:
            raise InvalidInput("now is a naive datetime", hint="give it a timezone")
        today = now.astimezone(UTC).date()
        if before > today:
            raise InvalidInput(
                f"cannot forget patron keys before {before.isoformat()}: it is in the future "
                f"(today is {today.isoformat()})",
                hint="give a date no later than today; years still running keep their keys",
            )
        with self._lock:
            self._require_member(library_id)
            self._migrate_legacy_patron_key(library_id)
            files = {y: p for y, p in self._year_files(library_id).items() if y < before.year}
            record = self._forgotten(library_id)
            stamp = now.astimezone(UTC).isoformat(timespec="seconds")
            if before.year > record.before_year:
                record = _Forgotten(before.year, stamp, record.destroyed)
            record.destroyed.update({year: stamp for year in files})
            self._write_plain(self._path(library_id, _FORGOTTEN), record.to_json())
            for key in [k for k in self._patron_keys if k[0] == library_id and k[1] < before.year]:
                del self._patron_keys[key]
            for path in files.values():
                _shred(path)
            if files:
                _fsync_dir(self.folder)
            return sorted(files)

    def _patron_key_locked(self, library_id: str, year: int) -> bytes:
        unlocked = self._patron_keys.get((library_id, year))
        if unlocked is not None and time.monotonic() - unlocked.checked < REVALIDATE_SECONDS:
            return unlocked.key
        self._patron_keys.pop((library_id, year), None)
        if not 1 <= year <= 9999:
            raise InvalidInput(f"year {year} is out of range", hint="use a year from 1 to 9999")
        self._refuse_forgotten(library_id, year)
        path = self._path(library_id, f"patron-{year:04d}")
        if unlocked is not None and unlocked.path.exists():
            key = unlocked.key  # still there: keep using it without another scrypt unlock
        else:
            self._migrate_legacy_patron_key(library_id)
            try:
                key = self._read_path(path)
            except FileNotFoundError:
                self._refuse_forgotten(
                    library_id, year
                )  # another process may have just forgotten it
                key = self._create_patron_key(path)
        self._patron_keys[(library_id, year)] = _Unlocked(key, path, time.monotonic())
        return key

    def _require_member(self, library_id: str) -> None:
        if not self._path(library_id, "account").exists():
            raise NotFound(
                f"no keys for {library_id} in {self.folder}",
                hint="name a member whose keys this keystore holds",
            )

    def _refuse_forgotten(self, library_id: str, year: int) -> None:
        record = self._forgotten(library_id)
        if year < record.before_year:
            when = record.destroyed.get(year, record.forgotten_on)
            raise PatronKeyDestroyed(library_id, year, when[:10])

    def _forgotten(self, library_id: str) -> _Forgotten:
        path = self._path(library_id, _FORGOTTEN)
        try:
            return _Forgotten.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return _Forgotten(0, "", {})
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(
                f"the record of forgotten patron keys {path} is unreadable ({exc})",
                hint="restore it; without it forgotten years could be given new keys",
            ) from exc

    def _year_files(self, library_id: str) -> dict[int, Path]:
        found: dict[int, Path] = {}
        for path in self.folder.glob(f"{library_id}.patron-*.json"):
            year = path.name.removeprefix(f"{library_id}.patron-").removesuffix(".json")
            if len(year) == 4 and year.isascii() and year.isdigit():
                found[int(year)] = path
        return found

    def _create_patron_key(self, path: Path) -> bytes:
        """Write a new key to ``path`` unless one appeared meanwhile; return the key in force."""
        self.folder.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        tmp = self._write_tmp(path, key)
        try:
            # link() never replaces: if another process made this year's key first, use its.
            os.link(tmp, path)
        except FileExistsError:
            return self._read_path(path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.folder)
        return key

    def _migrate_legacy_patron_key(self, library_id: str) -> None:
        # Before per-year keys a member had one <library>.patron.json: it becomes the key of
        # the year it was written, so that year's pseudonyms (under the new prefix) use it.
        legacy = self._path(library_id, "patron")
        try:
            mtime = legacy.stat().st_mtime
        except FileNotFoundError:
            return
        year = datetime.fromtimestamp(mtime, UTC).year
        target = self._path(library_id, f"patron-{year:04d}")
        try:
            os.link(legacy, target)
        except FileExistsError:
            if target.read_bytes() != legacy.read_bytes():
                raise ConfigError(
                    f"{legacy} (the single patron key of older versions, written in {year}) "
                    f"and {target.name} both exist and differ",
                    hint=f"keep the one whose pseudonyms the {year} trail holds; move the other "
                    "out of the keystore",
                ) from None
        legacy.unlink()
        _fsync_dir(self.folder)

    # -- files -----------------------------------------------------------------------

    def _path(self, library_id: str, kind: str) -> Path:
        return self.folder / f"{library_id}.{kind}.json"

    def _write(self, library_id: str, kind: str, secret: bytes) -> None:
        path = self._path(library_id, kind)
        os.replace(self._write_tmp(path, secret), path)

    def _write_tmp(self, path: Path, secret: bytes) -> Path:
        keyfile = create_keyfile_json(
            secret, self._password.encode(), kdf="scrypt", iterations=self._scrypt_n
        )
        return _write_private(path, json.dumps(keyfile))

    def _write_plain(self, path: Path, doc: dict[str, object]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        os.replace(_write_private(path, json.dumps(doc, sort_keys=True)), path)
        _fsync_dir(self.folder)

    def _read(self, library_id: str, kind: str) -> bytes:
        path = self._path(library_id, kind)
        try:
            return self._read_path(path)
        except FileNotFoundError as exc:
            raise NotFound(
                f"no {kind} key for {library_id} in {self.folder}",
                hint="create it with the member's admission, or restore the keystore file",
            ) from exc

    def _read_path(self, path: Path) -> bytes:
        try:
            keyfile = json.loads(path.read_text())
        except FileNotFoundError:
            raise
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"the keystore file {path} is unreadable ({exc})") from exc
        try:
            return bytes(decode_keyfile_json(keyfile, self._password.encode()))
        except ValueError as exc:
            raise PermissionDenied(
                f"cannot unlock {path}: wrong password or damaged file",
                hint="check LIBSHARE_KEYSTORE_PASSWORD",
            ) from exc


def _write_private(path: Path, text: str) -> Path:
    """Write ``text`` to a fresh temporary file beside ``path``, fsynced; return its path."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # Owner-only permissions from the first byte written.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _shred(path: Path) -> None:
    """Overwrite ``path`` with random bytes, fsync, then unlink it."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        junk = memoryview(secrets.token_bytes(os.fstat(fd).st_size))
        while junk:
            junk = junk[os.write(fd, junk) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
