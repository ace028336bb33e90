"""Export a member's usage trail as JSON Lines, and verify such an export offline.

The format (one JSON object per line, UTF-8)::

    {"type": "libshare-trail", "version": 1, "member": "CN-A", "account": "0x…",
     "chain_id": 1337, "trail_anchor": "0x…", "exported_at": "…", "size": 28}
    {"type": "entry", "seq": 0, "leaf_hash": "<64 hex>", "body": "<canonical JSON, as a string>"}
    … one line per entry, seq 0 to size - 1 …
    {"type": "head", "size": 20, "root": "<64 hex>", "block": 41, "tx": "0x…"}
    … the heads the exporter's index knew, oldest first …

The head lines are informational: :func:`verify_export` takes the heads from the chain
(:func:`load_chain_heads`), never from the file, and reports a head line that differs
from the chain's as forged. Verification streams: memory stays O(log n) in the entries.

A failure raises :class:`ExportMismatch` (the content does not match what was anchored;
names ``entry <seq>`` or ``head of size <n>``) or :class:`MalformedExport` (a line is
not what the format says; names the line). Both are :class:`~ledger.errors.ProofError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any, TextIO

import rfc8785
from sqlmodel import col, select
from web3 import Web3

from ledger import merkle
from ledger.audit import Head, TrailMismatch
from ledger.chain import Chain
from ledger.errors import ChainUnavailable, ProofError
from ledger.instance import Instance
from ledger.onchain import ConsortiumContracts, Deployment
from ledger.store import AnchoredHeadRow

__all__ = [
    "FORMAT",
    "VERSION",
    "ExportHeader",
    "ExportMismatch",
    "ExportReport",
    "MalformedExport",
    "export_trail",
    "load_chain_heads",
    "read_header",
    "verify_export",
]

FORMAT = "libshare-trail"
VERSION = 1

_HEADER_FIELDS = frozenset(
    ("type", "version", "member", "account", "chain_id", "trail_anchor", "exported_at", "size")
)
_ENTRY_FIELDS = frozenset(("type", "seq", "leaf_hash", "body"))
_HEAD_FIELDS = frozenset(("type", "size", "root", "block", "tx"))
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ACCOUNT = re.compile(r"0x[0-9a-fA-F]{40}")


class MalformedExport(ProofError):
    """A line of an export is not JSON, or lacks a field, or a field has the wrong type."""

    title = "Malformed trail export"

    def __init__(self, message: str, *, line: int) -> None:
        super().__init__(
            f"line {line}: {message}",
            hint="the file is not an untouched `libshare audit export`",
        )
        self.line = line


class ExportMismatch(TrailMismatch):
    """The exported trail does not match the heads anchored on chain.

    ``seq`` names the first entry that fails, or ``head_size`` the first head; ``line`` is
    the line of the file where it was found.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int,
        seq: int | None = None,
        head_size: int | None = None,
    ) -> None:
        super().__init__(message, seq=seq, head_size=head_size)
        self.line = line


@dataclass(frozen=True)
class ExportHeader:
    """The first line of an export: whose trail, on which chain, how many entries."""

    member: str
    account: str
    chain_id: int
    trail_anchor: str
    exported_at: str
    size: int


@dataclass(frozen=True)
class ExportReport:
    """What a successful verification covered."""

    header: ExportHeader
    entries: int
    heads: int  # chain heads whose root was recomputed and matched
    anchored_size: int  # size of the last chain head (0 when none)
    anchored_root: bytes  # its root, recomputed from the entries
    root: bytes  # root of every entry in the file, anchored or not
    file_heads: int  # head lines in the file, each equal to the chain's

    @property
    def unanchored(self) -> int:
        """Entries after the last anchored head: recorded, not yet anchored (not an error)."""
        return self.entries - self.anchored_size


# -- export --------------------------------------------------------------------------


def export_trail(instance: Instance, library_id: str, out: TextIO) -> int:
    """Write ``library_id``'s trail to ``out`` as JSON Lines; return the number of entries.

    Streams in pages (constant memory). The member's account is read from the chain, the
    heads from the index (synced first when the node answers). Entries appended while the
    export runs are left for the next export: the header's ``size`` is fixed at the start.
    """
    contracts = instance.require_contracts()
    account = Web3.to_checksum_address(
        contracts.chain.call(contracts.consortium.functions.accountOf(library_id))
    )
    with contextlib.suppress(ChainUnavailable):
        instance.sync()  # best effort: the head lines are informational
    with instance.db.session() as session:
        stmt = (
            select(AnchoredHeadRow)
            .where(AnchoredHeadRow.member == account)
            .order_by(col(AnchoredHeadRow.size))
        )
        heads = list(session.exec(stmt))
    trail = instance.access.trail(library_id)
    size = trail.head().size  # read after the heads: every known head is within it
    deployment = contracts.deployment
    header = {
        "type": FORMAT,
        "version": VERSION,
        "member": library_id,
        "account": account,
        "chain_id": deployment.chain_id,
        "trail_anchor": Web3.to_checksum_address(deployment.addresses["TrailAnchor"]),
        "exported_at": instance.clock().isoformat(),
        "size": size,
    }
    out.write(_line(header))
    count = 0
    for row in trail.entries(0, size):
        entry = {
            "type": "entry",
            "seq": row.seq,
            "leaf_hash": bytes(row.leaf_hash).hex(),
            "body": bytes(row.body).decode(),
        }
        out.write(_line(entry))
        count += 1
    for head in heads:
        if head.size <= size:
            out.write(
                _line(
                    {
                        "type": "head",
                        "size": head.size,
                        "root": head.root.removeprefix("0x"),
                        "block": head.block,
                        "tx": head.tx_hash,
                    }
                )
            )
    return count


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


def load_chain_heads(chain: Chain, deployment: Deployment, account: str) -> list[Head]:
    """Every head ``account`` anchored in ``deployment``'s TrailAnchor, read from its events."""
    contracts = ConsortiumContracts(chain, deployment)
    return [Head(h.size, h.root, h.block, h.tx_hash) for h in contracts.anchored_heads(account)]


# -- verification --------------------------------------------------------------------

# A trail entry (see ledger.access._entry) in RFC 8785 form, matched without parsing it.
# Anything this accepts is canonical: keys are the literal sorted ASCII keys of entry
# version 1; strings use exactly RFC 8785's escapes (\" \\ \b \f \n \r \t and lower-case
# \u00xx for the other control characters) and no others; integers have no sign on 0,
# no leading zeros and at most 15 digits (inside IEEE 754's exact range). A body this does
# not match is judged by the reference implementation instead (_canonical_slow).
_S = r'"[^"\\\x00-\x1f]*(?:\\(?:["\\bfnrt]|u00(?:0[0-7bef]|1[0-9a-f]))[^"\\\x00-\x1f]*)*"'
_I = r"(?:0|-?[1-9][0-9]{0,14})"
_V = rf"(?:{_S}|{_I}|null|true|false|\[(?:{_S}(?:,{_S})*)?\])"
_ENTRY_V1_KEYS = (
    *("at", "campaign", "currency", "decision", "decision_id", "destination_country"),
    *("fee_minor", "licence_id", "licence_version", "method", "obligations", "patron"),
    *("patron_category", "purpose", "reason", "requesting_member", "resource_id", "scope"),
    *("supplier", "term", "v"),
)
_FAST_CANONICAL = re.compile(
    r"\{" + ",".join(f'"{key}":{_V}' for key in sorted(_ENTRY_V1_KEYS)) + r"\}"
)


def _canonical_slow(data: bytes) -> bool:
    """RFC 8785 says ``data`` is canonical: parsing and re-canonicalising gives it back."""
    try:
        return bool(rfc8785.dumps(_DECODER.decode(data.decode())) == data)
    except (ValueError, TypeError, rfc8785.CanonicalizationError):
        return False  # not JSON, a duplicate key, or a value RFC 8785 cannot represent


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)  # built once: it is not cheap
# (object_pairs_hook refuses duplicate keys, which json.loads would resolve silently)


def _loads(line: str, lineno: int) -> dict[str, Any]:
    try:
        obj = _DECODER.decode(line)
    except ValueError as exc:  # JSONDecodeError, or a duplicate key
        text = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise MalformedExport(f"not a JSON object ({text})", line=lineno) from None
    if not isinstance(obj, dict):
        raise MalformedExport("not a JSON object", line=lineno)
    return obj


def _fields(obj: dict[str, Any], want: frozenset[str], what: str, lineno: int) -> None:
    if obj.keys() != want:
        missing = sorted(want - obj.keys())
        extra = sorted(obj.keys() - want)
        parts = []
        if missing:
            parts.append("lacks " + ", ".join(missing))
        if extra:
            parts.append("has unknown " + ", ".join(extra))
        raise MalformedExport(f"the {what} {' and '.join(parts)}", line=lineno)


def _field(obj: dict[str, Any], name: str, kind: type, what: str, lineno: int) -> Any:
    value = obj[name]
    if type(value) is not kind:  # exact: a bool is not an int here
        raise MalformedExport(
            f"the {what}'s {name} is {json.dumps(value)[:40]}, want a JSON "
            f"{'integer' if kind is int else 'string'}",
            line=lineno,
        )
    return value


def _hex64(obj: dict[str, Any], name: str, what: str, lineno: int) -> bytes:
    value = _field(obj, name, str, what, lineno)
    if not _HEX64.fullmatch(value):
        raise MalformedExport(
            f"the {what}'s {name} is {value[:70]!r}, want 64 lower-case hex digits", line=lineno
        )
    return bytes.fromhex(value)


def read_header(line: str) -> ExportHeader:
    """Parse the first line of an export; raise :class:`MalformedExport` if it is not one."""
    obj = _loads(line, 1)
    if obj.get("type") != FORMAT:
        raise MalformedExport(f"not a {FORMAT} header (type is {obj.get('type')!r})", line=1)
    if obj.get("version") != VERSION:
        raise MalformedExport(
            f"{FORMAT} version {obj.get('version')!r} is not supported, want {VERSION}", line=1
        )
    _fields(obj, _HEADER_FIELDS, "header", 1)
    header = ExportHeader(
        member=_field(obj, "member", str, "header", 1),
        account=_field(obj, "account", str, "header", 1),
        chain_id=_field(obj, "chain_id", int, "header", 1),
        trail_anchor=_field(obj, "trail_anchor", str, "header", 1),
        exported_at=_field(obj, "exported_at", str, "header", 1),
        size=_field(obj, "size", int, "header", 1),
    )
    for name in ("account", "trail_anchor"):
        if not _ACCOUNT.fullmatch(getattr(header, name)):
            raise MalformedExport(f"the header's {name} is not a 0x address", line=1)
    if header.size < 0:
        raise MalformedExport(f"the header's size is {header.size}, want 0 or more", line=1)
    return header


def _check_chain_heads(heads: Sequence[Head]) -> None:
    for earlier, later in pairwise(heads):
        if later.size <= earlier.size:
            raise ProofError(
                f"the chain's head of size {later.size} follows one of size {earlier.size}; "
                "anchored sizes must strictly increase",
                hint="the heads passed in are not the chain's HeadAnchored events in order",
            )


def verify_export(lines: Iterable[str], chain_heads: Sequence[Head]) -> ExportReport:
    """Verify an export (its lines, header first) against the heads anchored on chain.

    ``chain_heads`` are the member's heads in anchoring order, from the chain (see
    :func:`load_chain_heads`), never from the file. Every line is parsed strictly; every
    body must be RFC 8785 canonical and hash to its ``leaf_hash``; sequence numbers run
    from 0 without gaps; the root recomputed at each chain head's size must equal the
    anchored root; every head line must equal the chain's head of that size; the file must
    reach the chain's last head. Entries after it are counted as unanchored.

    Raises :class:`ExportMismatch` or :class:`MalformedExport` at the first failure.
    """
    _check_chain_heads(chain_heads)
    numbered: Iterator[tuple[int, str]] = enumerate(lines, start=1)
    first = next(numbered, None)
    if first is None:
        raise MalformedExport(f"the file is empty; want a {FORMAT} header", line=1)
    header = read_header(first[1])

    sha256 = hashlib.sha256
    compare = hmac.compare_digest
    fast_canonical = _FAST_CANONICAL.fullmatch
    split_entry = _split_entry
    # The right frontier (RFC 9162 §2.1.1 folded left to right): the roots of the complete
    # subtrees covering [0, size), largest first — merkle.CompactRange without its bookkeeping.
    frontier: list[bytes] = []
    size = 0
    pending = iter(chain_heads)
    head = next(pending, None)
    verified = 0
    anchored_size, anchored_root = 0, bytes(merkle.EMPTY_ROOT)
    chain_by_size = {h.size: h for h in chain_heads}
    file_heads = 0
    last_file_head = -1
    in_heads = False
    lineno = 1

    for lineno, line in numbered:
        fast = split_entry(line)
        if fast is None:
            obj = _loads(line, lineno)
            kind = obj.get("type")
            if kind == "head":
                if not in_heads:
                    _end_of_entries(header, size, head, lineno)
                    in_heads = True
                last_file_head = _check_head_line(obj, last_file_head, chain_by_size, lineno)
                file_heads += 1
                continue
            if kind != "entry":
                raise MalformedExport(
                    f"unknown line type {kind!r}, want 'entry' or 'head'", line=lineno
                )
            seq, body, claimed = _strict_entry(obj, lineno)
        else:
            seq, body, claimed = fast
        if in_heads:
            raise MalformedExport("an entry after the head lines", line=lineno)
        if seq != size:
            raise _out_of_sequence(seq, size, lineno, numbered)
        if seq >= header.size:
            raise ExportMismatch(
                f"entry {seq} is beyond the {header.size} entries the header declares",
                line=lineno,
                seq=seq,
            )
        try:
            data = body.encode()
        except UnicodeEncodeError:
            raise ExportMismatch(
                f"entry {seq}: the body holds an unpaired surrogate, so it is not the UTF-8 "
                "text that was anchored",
                line=lineno,
                seq=seq,
            ) from None
        if fast_canonical(body) is None and not _canonical_slow(data):
            raise ExportMismatch(
                f"entry {seq}: the body is not RFC 8785 canonical JSON; the trail only ever "
                "holds canonical bodies, so these bytes were rewritten",
                line=lineno,
                seq=seq,
            )
        leaf = sha256(b"\x00" + data).digest()  # RFC 9162 §2.1.1 leaf hash
        if not (type(claimed) is str and claimed.isascii() and compare(leaf.hex(), claimed)):
            claimed = _hex64(_loads(line, lineno), "leaf_hash", "entry", lineno).hex()
            raise ExportMismatch(
                f"entry {seq}: leaf hash does not match body: the line says {claimed}, "
                f"the body hashes to {leaf.hex()}",
                line=lineno,
                seq=seq,
            )
        # Append the leaf: each set low bit of `size` is a complete left sibling to merge.
        node, n = leaf, size
        while n & 1:
            node = sha256(b"\x01" + frontier.pop() + node).digest()
            n >>= 1
        frontier.append(node)
        size += 1
        if head is not None and head.size == size:
            root = bytes(merkle.root_from_subtrees(frontier))
            _check_head(head, root, anchored_size, lineno)
            verified += 1
            anchored_size, anchored_root = size, root
            head = next(pending, None)
    if not in_heads:
        _end_of_entries(header, size, head, lineno + 1)
    return ExportReport(
        header=header,
        entries=size,
        heads=verified,
        anchored_size=anchored_size,
        anchored_root=anchored_root,
        root=bytes(merkle.root_from_subtrees(frontier)),
        file_heads=file_heads,
    )


_ENTRY_PREFIX = '{"type":"entry","seq":'
_AFTER_SEQ = ',"leaf_hash":"'
_AFTER_LEAF = '","body":"'


def _split_entry(line: str) -> tuple[int, str, str] | None:
    """Split an entry line in the exact form the exporter writes, without a JSON parser.

    Returns (seq, body, leaf hash text), or None for any other form, which the strict parser
    then judges. Accepting only that one form keeps it equal to the strict parse: one key
    each, in order, a plain decimal seq, and the body string decoded by json's own scanner.
    """
    if not line.startswith(_ENTRY_PREFIX):
        return None
    comma = line.find(",", 22)
    digits = line[22:comma]
    if not (digits.isascii() and digits.isdigit() and (digits[0] != "0" or digits == "0")):
        return None
    if not (line.startswith(_AFTER_SEQ, comma) and line.startswith(_AFTER_LEAF, comma + 78)):
        return None
    try:
        body, end = scanstring(line, comma + 88)
    except ValueError:
        return None
    if line[end:] not in ("}", "}\n"):
        return None
    return int(digits), body, line[comma + 14 : comma + 78]


def _strict_entry(obj: dict[str, Any], lineno: int) -> tuple[int, str, Any]:
    _fields(obj, _ENTRY_FIELDS, "entry", lineno)
    seq: int = _field(obj, "seq", int, "entry", lineno)
    body: str = _field(obj, "body", str, "entry", lineno)
    return seq, body, obj["leaf_hash"]


def _check_head_line(
    obj: dict[str, Any], previous: int, chain_by_size: dict[int, Head], lineno: int
) -> int:
    """Check one head line against the chain's head of its size; return its size."""
    _fields(obj, _HEAD_FIELDS, "head", lineno)
    size: int = _field(obj, "size", int, "head", lineno)
    root = _hex64(obj, "root", "head", lineno)
    if obj["block"] is not None:
        _field(obj, "block", int, "head", lineno)
    if obj["tx"] is not None:
        _field(obj, "tx", str, "head", lineno)
    if size <= previous:
        raise MalformedExport(
            f"head of size {size} follows one of size {previous}; "
            "head lines must be in increasing size",
            line=lineno,
        )
    _check_file_head(size, root, chain_by_size.get(size), lineno)
    return size


def _out_of_sequence(
    seq: int, expected: int, lineno: int, rest: Iterator[tuple[int, str]]
) -> ExportMismatch:
    """Explain why entry ``seq`` stands where entry ``expected`` should."""
    if 0 <= seq < expected:
        # Entries 0..expected-1 were contiguous, so entry `seq` was on line seq + 2.
        return ExportMismatch(
            f"entry {seq} appears twice: line {lineno} repeats line {seq + 2}",
            line=lineno,
            seq=seq,
        )
    if seq > expected:
        peek = next(rest, None)  # one line ahead tells a swap from a gap
        if peek is not None:
            with contextlib.suppress(ProofError, LookupError, TypeError):
                if _loads(peek[1], peek[0]).get("seq") == expected:
                    return ExportMismatch(
                        f"entry {expected} is out of order: line {lineno} holds entry {seq} "
                        f"and line {peek[0]} holds entry {expected}",
                        line=lineno,
                        seq=expected,
                    )
        return ExportMismatch(
            f"entry {expected} is missing: line {lineno} holds entry {seq} in its place",
            line=lineno,
            seq=expected,
        )
    return ExportMismatch(
        f"entry {expected} is missing: line {lineno} holds entry {seq}", line=lineno, seq=expected
    )


def _check_head(head: Head, computed: bytes, previous: int, lineno: int) -> None:
    if not hmac.compare_digest(head.root, computed):
        where = f" (block {head.block})" if head.block is not None else ""
        raise ExportMismatch(
            f"head of size {head.size}{where}: anchored root {head.root.hex()}, recomputed "
            f"{computed.hex()}; an entry from {previous} to {head.size - 1} differs from what "
            "was anchored",
            line=lineno,
            head_size=head.size,
        )


def _end_of_entries(header: ExportHeader, size: int, head: Head | None, lineno: int) -> None:
    """The entries have ended: they must reach the chain's last head and the header's size."""
    if head is not None:
        raise ExportMismatch(
            f"head of size {head.size} is anchored on chain but the file ends after "
            f"{size} entries; it is truncated or an export older than that head",
            line=lineno,
            head_size=head.size,
        )
    if size < header.size:
        raise ExportMismatch(
            f"entry {size} is missing: the header declares {header.size} entries, the file "
            f"holds {size}",
            line=lineno,
            seq=size,
        )


def _check_file_head(size: int, claimed: bytes, chain: Head | None, lineno: int) -> None:
    if chain is None:
        raise ExportMismatch(
            f"head of size {size} in the file (root {claimed.hex()}) was never anchored on "
            "chain: a forged head",
            line=lineno,
            head_size=size,
        )
    if not hmac.compare_digest(chain.root, claimed):
        raise ExportMismatch(
            f"head of size {size} in the file claims root {claimed.hex()}, the chain "
            f"anchored {chain.root.hex()}: a forged head",
            line=lineno,
            head_size=size,
        )
