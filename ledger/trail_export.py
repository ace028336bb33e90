"""Export a member's usage trail as JSON Lines, and verify such an export offline.

The format (one JSON object per line, UTF-8)::

    {"type": "libshare-trail", "version": 2, "member": "CN-A", "account": "0x…",
     "chain_id": 1337, "trail_anchor": "0x…", "exported_at": "…", "size": 28}
    {"type":"entry","seq":0,"leaf_hash":"<64 hex>","body":<the canonical JSON, verbatim>}
    … one line per entry, seq 0 to size - 1 …
    {"type": "head", "size": 20, "root": "<64 hex>", "block": 41, "tx": "0x…"}
    … the heads the exporter's index knew, oldest first …

Version 2 embeds each entry's body as a JSON object, byte for byte the bytes that were
hashed, so a verifier slices the body out of the line and hashes it without parsing JSON.
The exporter writes entry lines in exactly the form above (no spaces, keys in that order);
a line in any other layout is still read, by a strict JSON parser. Version 1 (still read)
held the body as a JSON *string* of the canonical JSON.

The head lines are informational: :func:`verify_export` takes the heads from the chain
(:func:`load_chain_heads`), never from the file, and reports a head line that differs
from the chain's as forged. :func:`verify_export` streams in O(log n) memory;
:func:`verify_export_file` hashes a large file on two cores and keeps the leaf hashes
(32 bytes an entry) in memory.

A failure raises :class:`ExportMismatch` (the content does not match what was anchored;
names ``entry <seq>`` or ``head of size <n>``) or :class:`MalformedExport` (a line is
not what the format says; names the line). Both are :class:`~ledger.errors.ProofError`.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import pairwise
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any, BinaryIO, TextIO

import rfc8785
from sqlmodel import col, select
from web3 import Web3

from ledger import merkle
from ledger.audit import Head, TrailMismatch
from ledger.chain import Chain
from ledger.errors import ProofError
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
    "verify_export_file",
]

FORMAT = "libshare-trail"
VERSION = 2
"""The version :func:`export_trail` writes; :func:`verify_export` reads 1 and 2."""
_READABLE = (1, 2)

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
    version: int = VERSION


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
    instance.catch_up()  # the head lines are informational
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
        out.write(_entry_line(row.seq, bytes(row.leaf_hash), bytes(row.body)))
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


def _entry_line(seq: int, leaf: bytes, body: bytes) -> str:
    """A version 2 entry line: the canonical body embedded verbatim, as the verifier slices it."""
    return f'{{"type":"entry","seq":{seq},"leaf_hash":"{leaf.hex()}","body":{body.decode()}}}\n'


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


_JSON_KINDS = {int: "integer", str: "string", dict: "object"}


def _field(obj: dict[str, Any], name: str, kind: type, what: str, lineno: int) -> Any:
    value = obj[name]
    if type(value) is not kind:  # exact: a bool is not an int here
        raise MalformedExport(
            f"the {what}'s {name} is {json.dumps(value)[:40]}, want a JSON {_JSON_KINDS[kind]}",
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
    version = obj.get("version")
    if type(version) is not int or version not in _READABLE:
        raise MalformedExport(f"{FORMAT} version {version!r} is not supported, want 1 or 2", line=1)
    _fields(obj, _HEADER_FIELDS, "header", 1)
    header = ExportHeader(
        member=_field(obj, "member", str, "header", 1),
        account=_field(obj, "account", str, "header", 1),
        chain_id=_field(obj, "chain_id", int, "header", 1),
        trail_anchor=_field(obj, "trail_anchor", str, "header", 1),
        exported_at=_field(obj, "exported_at", str, "header", 1),
        size=_field(obj, "size", int, "header", 1),
        version=version,
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


def verify_export(lines: Iterable[str | bytes], chain_heads: Sequence[Head]) -> ExportReport:
    """Verify an export (its lines, header first) against the heads anchored on chain.

    ``chain_heads`` are the member's heads in anchoring order, from the chain (see
    :func:`load_chain_heads`), never from the file. Every body must hash to its entry's
    ``leaf_hash``; sequence numbers run from 0 without gaps; the root recomputed at each
    chain head's size must equal the anchored root; every head line must equal the chain's
    head of that size; the file must reach the chain's last head. Entries after it are
    counted as unanchored. Bodies must be RFC 8785 canonical: every body of a version 1
    file is checked; in version 2 an anchored body is bound byte for byte by its head, so
    only the unanchored ones are checked (and a body whose leaf hash fails, to say why).

    Lines may be ``str`` or UTF-8 ``bytes``. Raises :class:`ExportMismatch` or
    :class:`MalformedExport` at the first failure.
    """
    numbered = enumerate((_utf8(line) for line in lines), start=1)
    first = next(numbered, None)
    if first is None:
        raise MalformedExport(f"the file is empty; want a {FORMAT} header", line=1)
    return _Verifier(read_header(_text(*first)), chain_heads).run(numbered)


def verify_export_file(
    path: str | os.PathLike[str], chain_heads: Sequence[Head], *, workers: int = 2
) -> ExportReport:
    """Verify the export at ``path`` exactly as :func:`verify_export`, hashing on two cores.

    ``workers`` above 1 lets a version 2 file of more than ``_PARALLEL_MIN_BYTES`` be split
    in two at a line boundary: a forked process hashes the second half while this one
    hashes the first. Each half stops at its first line that is not a correct entry in the
    exporter's form, and the sequential verifier resumes after the prefix both proved, so
    a failure is named exactly as :func:`verify_export` names it. Raises :class:`OSError`
    when the file cannot be read.
    """
    with open(path, "rb") as file:
        first = file.readline()
        if not first:
            raise MalformedExport(f"the file is empty; want a {FORMAT} header", line=1)
        verifier = _Verifier(read_header(_text(1, first)), chain_heads)
        resume = file.tell()
        end = file.seek(0, os.SEEK_END)
        if (
            workers > 1
            and verifier.header.version >= 2
            and end - resume >= _PARALLEL_MIN_BYTES
            and "fork" in multiprocessing.get_all_start_methods()
        ):
            resume = _scan_in_two(os.fspath(path), file, resume, end, verifier)
        file.seek(resume)
        return verifier.run(enumerate(file, start=verifier.size + 2))


_PARALLEL_MIN_BYTES = 32 << 20  # ~50,000 entries: below that a fork costs more than it saves


def _utf8(line: str | bytes) -> bytes:
    # A str holding a lone surrogate cannot be the UTF-8 that was exported: encode it
    # undecodably (surrogatepass) so the line is reported malformed where it is read.
    return line if isinstance(line, bytes) else line.encode(errors="surrogatepass")


def _text(lineno: int, line: bytes) -> str:
    try:
        return line.decode()
    except UnicodeDecodeError as exc:
        raise MalformedExport(f"not UTF-8 text ({exc.reason})", line=lineno) from None


def _canonical(body: bytes) -> bool:
    """``body`` is UTF-8 RFC 8785 canonical JSON (the fast pattern first, then the reference)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return False
    return _FAST_CANONICAL.fullmatch(text) is not None or _canonical_slow(body)


_sha256 = hashlib.sha256
_hexlify = binascii.hexlify
_compare = hmac.compare_digest
_AFTER_LEAF_V2 = b'","body":'
_SEQ_V2 = re.compile(rb'\{"type":"entry","seq":(0|[1-9][0-9]{0,17}),"leaf_hash":"')


def _fast_leaf(line: bytes, seq: int, canonical: bool) -> bytes | None:
    """The leaf hash of ``line`` if it is entry ``seq`` exactly as the exporter writes it.

    That is ``{"type":"entry","seq":<seq>,"leaf_hash":"<hex>","body":<body>}`` and a
    newline, with ``<hex>`` the leaf hash of ``<body>`` (and ``<body>`` canonical, when
    ``canonical``). None for anything else, which the strict path then judges. No JSON is
    parsed: the leaf hash binds every byte of the body, so any other bytes than those
    anchored fail at the anchored head, and the unanchored ones are checked for canonicity.
    """
    prefix = b'{"type":"entry","seq":%d,"leaf_hash":"' % seq
    at = len(prefix)
    if not (
        line.startswith(prefix) and line.startswith(_AFTER_LEAF_V2, at + 64) and line[-2:] == b"}\n"
    ):
        return None
    body = line[at + 73 : -2]
    leaf = _sha256(b"\x00" + body).digest()  # RFC 9162 §2.1.1 leaf hash
    if not _compare(_hexlify(leaf), line[at : at + 64]):
        return None
    if canonical and not _canonical(body):
        return None
    return leaf


class _Verifier:
    """One verification's state, fed the lines after the header in order."""

    def __init__(self, header: ExportHeader, chain_heads: Sequence[Head]) -> None:
        _check_chain_heads(chain_heads)
        self.header = header
        self.chain_by_size = {h.size: h for h in chain_heads}
        self.pending = iter(chain_heads)
        self.head = next(self.pending, None)
        # From here on no head anchors an entry: only its own line vouches for it.
        self.tail_from = chain_heads[-1].size if chain_heads else 0
        # The right frontier (RFC 9162 §2.1.1 folded left to right): the roots of the complete
        # subtrees covering [0, size), largest first — merkle.CompactRange without bookkeeping.
        self.frontier: list[bytes] = []
        self.size = 0
        self.verified = 0
        self.anchored_size, self.anchored_root = 0, bytes(merkle.EMPTY_ROOT)
        self.file_heads = 0
        self.last_file_head = -1
        self.in_heads = False

    def run(self, numbered: Iterator[tuple[int, bytes]]) -> ExportReport:
        """Feed every remaining line, check that the entries are complete, and report."""
        fast = self.header.version >= 2
        limit, tail_from = self.header.size, self.tail_from
        lineno = self.size + 1
        for lineno, line in numbered:
            size = self.size
            leaf = _fast_leaf(line, size, size >= tail_from) if fast and size < limit else None
            if leaf is None:
                self._line(lineno, line, numbered)
            else:
                self._append(leaf, lineno)
        if not self.in_heads:
            self._end_of_entries(lineno + 1)
        return ExportReport(
            header=self.header,
            entries=self.size,
            heads=self.verified,
            anchored_size=self.anchored_size,
            anchored_root=self.anchored_root,
            root=bytes(merkle.root_from_subtrees(self.frontier)),
            file_heads=self.file_heads,
        )

    def _append(self, leaf: bytes, lineno: int) -> None:
        # Each set low bit of `size` is a complete left sibling the new leaf now merges with.
        frontier, node, n = self.frontier, leaf, self.size
        while n & 1:
            node = _sha256(b"\x01" + frontier.pop() + node).digest()
            n >>= 1
        frontier.append(node)
        self.size += 1
        if self.head is not None and self.head.size == self.size:
            self._anchor(bytes(merkle.root_from_subtrees(frontier)), lineno)

    def _anchor(self, root: bytes, lineno: int) -> None:
        """``root`` is the recomputed root at the next chain head's size: check it."""
        head = self.head
        assert head is not None
        _check_head(head, root, self.anchored_size, lineno)
        self.verified += 1
        self.anchored_size, self.anchored_root = head.size, root
        self.head = next(self.pending, None)

    def fast_forward(self, count: int, subtree: Callable[[int, int], bytes]) -> None:
        """Take entries ``[0, count)`` as checked line by line elsewhere; check their heads.

        ``subtree(level, index)`` returns the hash of the complete aligned subtree covering
        the leaves ``[index << level, (index + 1) << level)``.
        """
        while self.head is not None and self.head.size <= count:
            size = self.head.size
            hashes = [subtree(*node) for node in merkle.aligned_subtrees(0, size)]
            # The line of entry size - 1, as in the sequential pass: entry k is on line k + 2.
            self._anchor(bytes(merkle.root_from_subtrees(hashes)), size + 1)
        self.frontier[:] = [subtree(*node) for node in merkle.aligned_subtrees(0, count)]
        self.size = count

    def _line(self, lineno: int, line: bytes, rest: Iterator[tuple[int, bytes]]) -> None:
        """Judge a line off the fast path: parse it strictly, and name any failure."""
        text = _text(lineno, line)
        v1 = self.header.version == 1
        split = _split_entry(text) if v1 else None
        obj: dict[str, Any] | None = None
        if split is None:
            obj = _loads(text, lineno)
            kind = obj.get("type")
            if kind == "head":
                if not self.in_heads:
                    self._end_of_entries(lineno)
                    self.in_heads = True
                self.last_file_head = _check_head_line(
                    obj, self.last_file_head, self.chain_by_size, lineno
                )
                self.file_heads += 1
                return
            if kind != "entry":
                raise MalformedExport(
                    f"unknown line type {kind!r}, want 'entry' or 'head'", line=lineno
                )
            _fields(obj, _ENTRY_FIELDS, "entry", lineno)
            seq: int = _field(obj, "seq", int, "entry", lineno)
            body: str = _field(obj, "body", str if v1 else dict, "entry", lineno)
            claimed = obj["leaf_hash"]
            if not v1:  # the body's own bytes, exactly as they stand in the line
                start, end = _value_span(text, "body")
                body = text[start:end]
        else:
            seq, body, claimed = split
        if self.in_heads:
            raise MalformedExport("an entry after the head lines", line=lineno)
        if seq != self.size:
            raise _out_of_sequence(seq, self.size, lineno, rest)
        if seq >= self.header.size:
            raise ExportMismatch(
                f"entry {seq} is beyond the {self.header.size} entries the header declares",
                line=lineno,
                seq=seq,
            )
        try:
            data = body.encode()
        except UnicodeEncodeError:  # a version 1 body string can escape a lone surrogate
            raise ExportMismatch(
                f"entry {seq}: the body holds an unpaired surrogate, so it is not the UTF-8 "
                "text that was anchored",
                line=lineno,
                seq=seq,
            ) from None
        # Version 1 checks every body; version 2 the unanchored, and any that fails its hash.
        leaf = _sha256(b"\x00" + data).digest()  # RFC 9162 §2.1.1 leaf hash
        matches = type(claimed) is str and claimed.isascii() and _compare(leaf.hex(), claimed)
        if (v1 or not matches or seq >= self.tail_from) and not _canonical(data):
            raise ExportMismatch(
                f"entry {seq}: the body is not RFC 8785 canonical JSON; the trail only ever "
                "holds canonical bodies, so these bytes were rewritten",
                line=lineno,
                seq=seq,
            )
        if not matches:
            claimed = _hex64(obj or _loads(text, lineno), "leaf_hash", "entry", lineno).hex()
            raise ExportMismatch(
                f"entry {seq}: leaf hash does not match body: the line says {claimed}, "
                f"the body hashes to {leaf.hex()}",
                line=lineno,
                seq=seq,
            )
        self._append(leaf, lineno)

    def _end_of_entries(self, lineno: int) -> None:
        """The entries have ended: they must reach the chain's last head and the header's size."""
        _end_of_entries(self.header, self.size, self.head, lineno)


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, at: int) -> int:
    """The index of the first non-whitespace character (JSON's whitespace) from ``at``."""
    match = _WHITESPACE.match(text, at)
    return match.end() if match else at


def _value_span(text: str, key: str) -> tuple[int, int]:
    """Where the value of top-level ``key`` stands in ``text``, a JSON object already parsed.

    Walks the object's members with json's own scanners, so the span is exactly the text
    the parser read for that value.
    """
    at = _skip(text, 0) + 1  # past "{"
    while True:
        name, at = scanstring(text, _skip(text, at) + 1)
        start = _skip(text, _skip(text, at) + 1)  # past ":"
        _, end = _DECODER.raw_decode(text, start)
        if name == key:
            return start, end
        at = _skip(text, end) + 1  # past ","


def _scan_in_two(path: str, file: BinaryIO, start: int, end: int, verifier: _Verifier) -> int:
    """Hash the entries of ``[start, end)`` on two cores; fast-forward; return where to resume."""
    file.seek(start + (end - start) // 2)
    file.readline()
    middle = file.tell()  # the start of the first line at or after the halfway byte
    args = (verifier.header.size, verifier.tail_from)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        later = pool.submit(_scan, path, middle, end, None, *args)
        first = _scan(path, start, middle, 0, *args)
        try:
            second: _Scan | None = later.result()
        except (OSError, BrokenProcessPool):
            second = None  # the sequential pass resumes at the middle and reads it itself
    pieces, count, resume = [first], first.count, first.stop
    if first.stop == middle and second is not None and second.first == count:
        pieces.append(second)
        count, resume = count + second.count, second.stop
    verifier.fast_forward(count, _subtrees(pieces))
    return resume


@dataclass(frozen=True)
class _Scan:
    """Entries ``[first, first + count)``, checked line by line, ending at byte ``stop``.

    ``levels[k]`` is ``(offset, hashes)``: the complete aligned subtrees of height ``k``
    inside the range, from index ``offset`` on, concatenated (32 bytes each).
    """

    first: int
    count: int
    stop: int
    levels: list[tuple[int, bytes]]


def _scan(path: str, start: int, end: int, first: int | None, limit: int, tail_from: int) -> _Scan:
    """Check the entry lines of ``[start, end)`` on the fast path, until one is not on it.

    ``first`` is the sequence number the first line must hold (None: whatever it holds).
    """
    leaves: list[bytes] = []
    stop = start
    with open(path, "rb") as file:
        file.seek(start)
        for line in file:
            if stop >= end:
                break
            if first is None:
                match = _SEQ_V2.match(line)
                if match is None:
                    break
                first = int(match[1])
            seq = first + len(leaves)
            leaf = _fast_leaf(line, seq, seq >= tail_from) if seq < limit else None
            if leaf is None:
                break
            leaves.append(leaf)
            stop += len(line)
    return _Scan(first or 0, len(leaves), stop, _levels(first or 0, leaves))


def _levels(first: int, leaves: list[bytes]) -> list[tuple[int, bytes]]:
    """Every complete aligned subtree within the leaves ``[first, first + len(leaves))``."""
    levels = [(first, b"".join(leaves))]
    offset, row = first, leaves
    while len(row) > 1:
        skip = offset & 1  # a right child whose left sibling lies before the range
        row = [
            _sha256(b"\x01" + left + right).digest()
            for left, right in zip(row[skip::2], row[skip + 1 :: 2], strict=False)
        ]
        offset = (offset + skip) >> 1
        if row:
            levels.append((offset, b"".join(row)))
    return levels


def _subtrees(pieces: list[_Scan]) -> Callable[[int, int], bytes]:
    """A lookup of complete aligned subtrees over consecutive scans; hashes what straddles."""

    def subtree(level: int, index: int) -> bytes:
        low, high = index << level, (index + 1) << level
        for piece in pieces:
            if piece.first <= low and high <= piece.first + piece.count:
                offset, hashes = piece.levels[level]
                at = (index - offset) * merkle.HASH_SIZE
                return hashes[at : at + merkle.HASH_SIZE]
        # Straddles two scans (a leaf is always in one): hash its children, RFC 9162 §2.1.1.
        left, right = subtree(level - 1, 2 * index), subtree(level - 1, 2 * index + 1)
        return _sha256(b"\x01" + left + right).digest()

    return subtree


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
    seq: int, expected: int, lineno: int, rest: Iterator[tuple[int, bytes]]
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
                if _loads(_text(*peek), peek[0]).get("seq") == expected:
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
