"""The one error hierarchy of libshare.

Every error raised on purpose by ``ledger`` derives from :class:`LedgerError` and
says what happened, what was expected and what to do. The API maps the families to
HTTP status codes in one place; the command line prints ``str(error)`` on one line.

    LedgerError
    ├── InvalidInput        (also ValueError)   bad value from a caller
    │   └── PayloadTooLarge                      an upload beyond the instance's limit
    ├── NotFound            (also LookupError)  no such member, resource, licence...
    ├── PermissionDenied    (also PermissionError)
    │   └── Unauthenticated                      no credentials, or unknown / revoked ones
    ├── Conflict                                 the state forbids it (already exists...)
    ├── ProofError          (also ValueError)   a Merkle proof or trail does not verify
    │   └── RootMismatch                         carries the expected and computed roots
    ├── ConfigError                              settings or data dir unusable
    ├── StorageError                             the database or blockstore failed
    │   └── StorageUnavailable (also ConnectionError)  the database cannot be reached now
    ├── ChainError
    │   ├── ChainUnavailable (also ConnectionError)  the node cannot be reached
    │   └── ContractReverted                     a contract refused, with its custom error
    └── PeerError                                another member's instance failed a federated call
        └── PeerTimeout     (also TimeoutError)  it did not answer in time
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class LedgerError(Exception):
    """Root of every error libshare raises on purpose.

    ``hint`` says what the caller can do about it; it is appended to ``str(error)``.
    """

    title = "libshare error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message


class InvalidInput(LedgerError, ValueError):
    """A value given by the caller is malformed or out of range."""

    title = "Invalid input"


class NotFound(LedgerError, LookupError):
    """The named member, resource, licence, entry or head does not exist."""

    title = "Not found"


class PermissionDenied(LedgerError, PermissionError):
    """The caller's key or role may not do this."""

    title = "Permission denied"


class Unauthenticated(PermissionDenied):
    """The caller presented no credentials, or credentials that are unknown or revoked."""

    title = "Authentication required"


class Conflict(LedgerError):
    """The current state forbids the change (already registered, revoked, taken...)."""

    title = "Conflict"


class PayloadTooLarge(InvalidInput):
    """An upload or a request is larger than this instance accepts."""

    title = "Payload too large"


class ProofError(LedgerError, ValueError):
    """A Merkle proof, tree head or trail does not verify."""

    title = "Proof does not verify"


class RootMismatch(ProofError):
    """A recomputed Merkle root differs from the one it was checked against."""

    def __init__(
        self, message: str, *, expected: bytes, computed: bytes, hint: str | None = None
    ) -> None:
        super().__init__(
            f"{message}: expected root {expected.hex()}, computed {computed.hex()}", hint=hint
        )
        self.expected = expected
        self.computed = computed


class ConfigError(LedgerError):
    """The configuration or the data directory cannot be used as it is."""

    title = "Configuration error"


class StorageError(LedgerError):
    """The database or the content store failed."""

    title = "Storage error"


class StorageUnavailable(StorageError, ConnectionError):
    """The database cannot be reached now (down, restarting, busy); a retry may succeed."""

    title = "Database unavailable"


class ChainError(LedgerError):
    """Talking to the chain failed."""

    title = "Chain error"


class ChainUnavailable(ChainError, ConnectionError):
    """The chain node cannot be reached."""

    title = "Chain unavailable"


class ContractReverted(ChainError):
    """A contract call reverted; ``error`` is the decoded custom error's name."""

    title = "Contract refused the transaction"

    def __init__(
        self,
        error: str,
        args: Mapping[str, Any] | None = None,
        *,
        hint: str | None = None,
    ) -> None:
        self.error = error
        self.error_args: dict[str, Any] = dict(args or {})
        shown = ", ".join(f"{k}={_show(v)}" for k, v in self.error_args.items())
        super().__init__(f"contract reverted with {error}({shown})", hint=hint)


def _show(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    return str(value)


class PeerError(LedgerError):
    """Another member's libshare instance could not be reached, refused, or answered wrongly.

    ``peer`` is the library id of that member; ``status`` the HTTP status it answered, if any.
    """

    title = "Peer instance failed"

    def __init__(
        self, message: str, *, peer: str, status: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.peer = peer
        self.status = status


class PeerTimeout(PeerError, TimeoutError):
    """Another member's instance did not answer within the federation timeout."""

    title = "Peer instance timed out"
