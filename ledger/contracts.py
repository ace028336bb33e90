"""The compiled contracts at run time: artifacts, and decoding what a revert says.

No compiler is needed at run time. ``scripts/compile_contracts.py`` writes one JSON
artifact per contract into ``contracts/artifacts`` (committed); a wheel carries them as
``ledger/_artifacts``. :func:`load_artifact` reads them.

When a contract reverts, the in-process EVM (eth-tester) and real nodes report the raw
revert bytes in different places, and neither decodes libshare's custom errors.
:func:`revert_data_from` digs the bytes out of the exception and :func:`decode_revert`
names the error and its arguments from the contracts' ABIs.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_typing import ABI
from eth_utils.abi import collapse_if_tuple
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ledger.errors import ConfigError

__all__ = [
    "ALL_ABIS",
    "CONTRACT_NAMES",
    "Artifact",
    "all_abis",
    "artifacts_dir",
    "decode_revert",
    "load_artifact",
    "revert_data_from",
]

CONTRACT_NAMES: tuple[str, ...] = (
    "Consortium",
    "LicenceRegistry",
    "ResourceRegistry",
    "TrailAnchor",
)
"""The contracts libshare deploys, in deployment order."""

_PACKAGE_DIR = Path(__file__).resolve().parent
_WHEEL_ARTIFACTS = _PACKAGE_DIR / "_artifacts"
_CHECKOUT_ARTIFACTS = _PACKAGE_DIR.parent / "contracts" / "artifacts"

# Solidity's built-in revert payloads (not in any ABI).
_ERROR_STRING = keccak(text="Error(string)")[:4]
_PANIC = keccak(text="Panic(uint256)")[:4]


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: its ABI and the bytecode to deploy.

    ``deployed_bytecode`` is the runtime code as compiled; a deployed contract's code
    differs from it where immutables (such as the consortium address) were filled in.
    """

    name: str
    abi: ABI
    bytecode: bytes
    deployed_bytecode: bytes


def artifacts_dir() -> Path:
    """The directory the artifacts are read from: the wheel's, else the checkout's."""
    if _WHEEL_ARTIFACTS.is_dir():
        return _WHEEL_ARTIFACTS
    return _CHECKOUT_ARTIFACTS


@functools.cache
def load_artifact(name: str, directory: Path | None = None) -> Artifact:
    """Load the compiled contract ``name`` (one of :data:`CONTRACT_NAMES`).

    ``directory`` overrides where the ``<name>.json`` files are looked up.
    Raises :class:`~ledger.errors.ConfigError` when the artifact is missing or unreadable.
    """
    path = (directory or artifacts_dir()) / f"{name}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Artifact(
            name=name,
            abi=cast(ABI, tuple(raw["abi"])),
            bytecode=bytes.fromhex(_strip_0x(raw["bytecode"])),
            deployed_bytecode=bytes.fromhex(_strip_0x(raw["deployedBytecode"])),
        )
    except FileNotFoundError:
        raise ConfigError(
            f"no compiled contract {name!r} at {path}",
            hint="in a checkout run `python scripts/compile_contracts.py` "
            "(after `npm ci --prefix contracts`); otherwise reinstall libshare",
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the artifact of {name!r} at {path} is unreadable: {exc}",
            hint="recompile with `python scripts/compile_contracts.py`",
        ) from exc


def all_abis() -> tuple[ABI, ...]:
    """The ABIs of all libshare contracts, e.g. to decode any revert with."""
    return tuple(load_artifact(name).abi for name in CONTRACT_NAMES)


ALL_ABIS = all_abis
"""Alias of :func:`all_abis` (call it: ``decode_revert(ALL_ABIS(), data)``)."""


def decode_revert(abis: Iterable[ABI], revert_data: bytes) -> tuple[str, dict[str, Any]] | None:
    """Name the error in ``revert_data`` and decode its arguments.

    ``abis`` are the ABIs whose custom errors may have been raised (their union is
    searched). ``Error(string)`` decodes to ``("Error", {"message": ...})`` and
    ``Panic(uint256)`` to ``("Panic", {"code": ...})``. Arguments are keyed by their
    names in the ABI (``arg0``, ``arg1``... when unnamed). Returns ``None`` when the
    selector is unknown or the data does not decode.
    """
    data = bytes(revert_data)
    if len(data) < 4:
        return None
    selector, payload = data[:4], data[4:]
    if selector == _ERROR_STRING:
        return _decode("Error", ["message"], ["string"], payload)
    if selector == _PANIC:
        return _decode("Panic", ["code"], ["uint256"], payload)
    for entry in _errors_of(abis):
        inputs: list[dict[str, Any]] = list(entry.get("inputs", []))
        types = [collapse_if_tuple(param) for param in inputs]
        if keccak(text=f"{entry['name']}({','.join(types)})")[:4] != selector:
            continue
        names = [param.get("name") or f"arg{i}" for i, param in enumerate(inputs)]
        return _decode(str(entry["name"]), names, types, payload)
    return None


def revert_data_from(exc: BaseException) -> bytes | None:
    """The raw revert bytes carried by an exception from web3 or eth-tester, if any.

    Real nodes give web3's ``ContractLogicError`` a ``data`` hex string. The in-process
    EVM raises eth-tester's ``TransactionFailed``: web3's provider re-raises it with a
    message (having tried to decode the bytes as a reason string), and the original
    exception, chained as its context, holds the bytes or their ``repr``. A plain
    ``execution reverted: <reason>`` with no bytes anywhere was an ``Error(string)``
    and is re-encoded as one. Returns ``None`` when nothing revert-like is found.
    """
    for link in _exception_chain(exc):
        data = _bytes_in(getattr(link, "data", None))
        if data is not None:
            return data
        if link.args:
            data = _bytes_in(link.args[0])
            if data is not None:
                return data
    reason = _reason_string(exc)
    if reason is not None:
        return _ERROR_STRING + abi_encode(["string"], [reason])
    return None


def _decode(
    name: str, names: list[str], types: list[str], payload: bytes
) -> tuple[str, dict[str, Any]] | None:
    try:
        values = abi_decode(types, payload, strict=False)
    except (DecodingError, ValueError, OverflowError):
        return None
    # eth_abi gives addresses in lower case; web3 and eth-tester use checksummed ones.
    shown = [
        to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
    ]
    return name, dict(zip(names, shown, strict=True))


def _errors_of(abis: Iterable[ABI]) -> Iterator[dict[str, Any]]:
    for abi in abis:
        for entry in abi:
            if entry.get("type") == "error":
                yield cast(dict[str, Any], entry)


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        link = pending.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        # eth-tester wraps the EVM's exception in its own, passed as the first arg.
        nested = [a for a in link.args[:1] if isinstance(a, BaseException)]
        pending.extend(nested)
        pending.extend(e for e in (link.__cause__, link.__context__) if e is not None)


_BYTES_REPR = re.compile(r"(?:execution reverted: )?(b'.*'|b\".*\")", re.DOTALL)
_REVERT_REASON = re.compile(r"execution reverted: (.+)", re.DOTALL)


def _bytes_in(value: object) -> bytes | None:
    """Revert bytes from an exception's ``data`` or first argument, if it is one."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, dict):  # some nodes nest it: {"data": "0x..."}
        return _bytes_in(value.get("data"))
    if not isinstance(value, str):
        return None
    if re.fullmatch(r"0x(?:[0-9a-fA-F]{2})*", value):
        return bytes.fromhex(value[2:])
    match = _BYTES_REPR.fullmatch(value)
    if match:
        # eth-tester formats undecoded revert bytes with repr(); read them back.
        try:
            parsed = ast.literal_eval(match.group(1))
        except (ValueError, SyntaxError):
            return None
        return parsed if isinstance(parsed, bytes) else None
    return None


def _reason_string(exc: BaseException) -> str | None:
    message = exc.args[0] if exc.args else None
    if not isinstance(message, str):
        return None
    match = _REVERT_REASON.fullmatch(message)
    return match.group(1) if match else None


def _strip_0x(text: str) -> str:
    return text[2:] if text.startswith(("0x", "0X")) else text
